"""The publication gate's settings: which ranking it judges on, the floors a challenger must clear,
and its tolerance.

A group of :class:`recflow.core.config.Settings` (``settings.gate``), declared like the others
(:mod:`recflow.core.declare`); ``recflow.evaluation`` applies it.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Final, Literal

from pydantic.dataclasses import dataclass

from recflow.core.declare import SETTINGS_CONFIG, Env, Share, walk

Ranking = Literal["full", "sampled"]
SAMPLED_METRICS = ("hr@10", "ndcg@10")
"""The positive ranked against 99 sampled pins its user never engaged with (``recflow.evaluation``)."""
FULL_METRICS = ("full_hr@10", "full_ndcg@10", "full_recall@50")
"""The positive ranked against every pin its user has not engaged with in training."""
FAMILIES: dict[Ranking, tuple[str, tuple[str, ...]]] = {
    "full": ("full ranking (every pin the user has not engaged with)", FULL_METRICS),
    "sampled": ("sampled (against 99 pins never engaged with)", SAMPLED_METRICS),
}
"""Each metric family's heading, as the model card and its picture show it, and its metrics."""


def family_heading(ranking: str | None) -> str | None:
    """The heading of the family ``ranking`` names (``None`` for none recorded, or one unknown)."""
    headings: dict[str | None, str] = {name: heading for name, (heading, _) in FAMILIES.items()}
    return headings.get(ranking)


RANKING_METRICS: dict[Ranking, tuple[str, str]] = {
    "full": ("full_hr@10", "full_ndcg@10"),
    "sampled": ("hr@10", "ndcg@10"),
}
"""The (hit rate, NDCG) at 10 the gate judges, per ``GateSettings.ranking``."""


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class GateSettings:
    """The metric family the gate judges on, the absolute floors a challenger must clear there,
    and how much worse than the champion it may be."""

    ranking: Annotated[
        Ranking,
        Env(
            "RECFLOW_GATE_RANKING",
            "Which metrics the gate judges: `full` (the positive ranked against every pin the user has "
            "not engaged with: `full_hr@10`, `full_ndcg@10`) or `sampled` (against 99 sampled pins: "
            "`hr@10`, `ndcg@10`). The floors and the tolerance apply to that family.",
        ),
    ] = "full"

    min_hr_at_10: Annotated[
        Share,
        Env(
            "RECFLOW_GATE_MIN_HR_AT_10",
            "Floor on the challenger's hit rate at 10 in the gate's ranking; below it, no publication. "
            "On the full ranking a random ranker scores about 10 / catalogue size; on the sampled one "
            "about 0.10 (10 of 100 candidates), above this default: raise both floors when you judge "
            "on `sampled`.",
        ),
    ] = 0.05
    min_ndcg_at_10: Annotated[
        Share,
        Env(
            "RECFLOW_GATE_MIN_NDCG_AT_10",
            "Floor on the challenger's NDCG at 10 in the gate's ranking; below it, no publication.",
        ),
    ] = 0.02
    tolerance: Annotated[
        Share,
        Env(
            "RECFLOW_GATE_TOLERANCE",
            "How much lower than the champion's a challenger's metrics may be and still be published.",
        ),
    ] = 0.01


GATE_APPLIED: Final = tuple(field.name for field in dataclasses.fields(GateSettings))
"""The :class:`GateSettings` fields a gate decision records beside its verdict and reason (its XCom
and the published version's ``gate.*`` tags)."""


def gate_setting(field: str) -> str:
    """The environment variable that sets :class:`GateSettings` ``field`` (its declaration's name),
    for messages that tell on-call which setting a verdict came from."""
    return next(setting.env.name for setting in walk(GateSettings, ()) if setting.path == (field,))
