"""The publication gate's settings: the floors a challenger must clear, and its tolerance.

A group of :class:`recflow.core.config.Settings` (``settings.gate``), declared like the others
(:mod:`recflow.core.declare`); ``recflow.evaluation`` applies it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic.dataclasses import dataclass

from recflow.core.declare import SETTINGS_CONFIG, Env, Share


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class GateSettings:
    """Absolute floors a challenger must clear, and how much worse than the champion it may be."""

    min_hr_at_10: Annotated[
        Share,
        Env(
            "RECFLOW_GATE_MIN_HR_AT_10", "Floor on the challenger's hit rate at 10; below it, no publication."
        ),
    ] = 0.15
    min_ndcg_at_10: Annotated[
        Share,
        Env("RECFLOW_GATE_MIN_NDCG_AT_10", "Floor on the challenger's NDCG at 10; below it, no publication."),
    ] = 0.07
    tolerance: Annotated[
        Share,
        Env(
            "RECFLOW_GATE_TOLERANCE",
            "How much lower than the champion's a challenger's metrics may be and still be published.",
        ),
    ] = 0.01
