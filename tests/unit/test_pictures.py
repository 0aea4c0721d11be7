"""The model card's pictures, read back from the PNG files they write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from recflow.core.gate import family_heading
from recflow.publishing import pictures
from recflow.publishing.pictures import loss_curve, versus_chart
from recflow.registry.model import CHART_METRICS

LONG = "movielens-100k: challenger recsys-train-4a5d9d5a59f7-b440b879-c27506 (no champion yet)"


def _ink_at_the_edges(png: Path, margin: int = 2) -> dict[str, bool]:
    """Whether any pixel within ``margin`` of each edge is darker than the white background."""
    image = imread(png)[..., :3]
    dark = image.mean(axis=2) < 0.85
    return {
        "left": bool(dark[:, :margin].any()),
        "right": bool(dark[:, -margin:].any()),
        "top": bool(dark[:margin, :].any()),
    }


@pytest.mark.parametrize("champion", [None, {"hr@10": 0.7, "ndcg@10": 0.45, "full_hr@10": 0.2}])
def test_the_versus_chart_keeps_a_long_title_inside_the_picture(
    tmp_path: Path, champion: dict[str, float] | None
) -> None:
    challenger = {
        "hr@10": 0.8,
        "ndcg@10": 0.5,
        "full_hr@10": 0.21,
        "full_ndcg@10": 0.12,
        "full_recall@50": 0.5,
    }
    png = versus_chart(challenger, champion, CHART_METRICS, tmp_path / "versus.png", title=LONG)
    assert _ink_at_the_edges(png) == {"left": False, "right": False, "top": False}


def test_the_loss_curve_keeps_a_long_title_inside_the_picture(tmp_path: Path) -> None:
    png = loss_curve([5.0, 4.2, 3.9], tmp_path / "loss.png", title=LONG + " " + LONG)
    assert _ink_at_the_edges(png) == {"left": False, "right": False, "top": False}


def test_an_unwrapped_title_would_run_off_the_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the edge check sees a title that does not fit."""
    monkeypatch.setattr("recflow.publishing.pictures.TITLE_WIDTH", 10_000)
    png = versus_chart({"hr@10": 0.8}, None, {"sampled": ("hr@10",)}, tmp_path / "v.png", title=LONG * 2)
    assert _ink_at_the_edges(png)["right"] or _ink_at_the_edges(png)["left"]


def test_each_family_is_drawn_on_its_own_scale(tmp_path: Path) -> None:
    """Full-ranking bars (about 0.2) are not flattened by a 0-1 axis shared with the sampled ones."""
    challenger = {"hr@10": 0.8, "ndcg@10": 0.5, "full_hr@10": 0.2, "full_ndcg@10": 0.1, "full_recall@50": 0.5}
    png = versus_chart(challenger, None, CHART_METRICS, tmp_path / "v.png")
    image = imread(png)[..., :3]
    orange = np.abs(image - np.array([0xDD, 0x84, 0x52]) / 255).sum(axis=2) < 0.05
    columns = np.flatnonzero(orange.any(axis=0))
    halves = columns[columns < image.shape[1] / 2], columns[columns >= image.shape[1] / 2]
    tallest = [orange[:, c].sum(axis=0).max() for c in halves]
    # full_recall@50 = 0.5 tops the left panel as hr@10 = 0.8 tops the right: both near full height
    assert min(tallest) > 0.6 * max(tallest)


@pytest.mark.parametrize(
    ("ranking", "heading"),
    [
        ("full", "full ranking (every pin the user has not engaged with)"),
        ("sampled", "sampled (against 99 pins never engaged with)"),
    ],
)
def test_the_panel_of_the_family_the_gate_judged_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ranking: str, heading: str
) -> None:
    """Under RECFLOW_GATE_RANKING=sampled the picture read as if the full ranking decided, as the README
    says it does by default: the panels were alike."""
    drawn: list[str] = []
    save = pictures._save

    def keep_titles(fig: Any, out: Path) -> Path:
        drawn.extend(ax.get_title().replace("\n", " ") for ax in fig.axes if ax.get_title())
        return save(fig, out)

    monkeypatch.setattr(pictures, "_save", keep_titles)
    challenger = {"hr@10": 0.8, "ndcg@10": 0.5, "full_hr@10": 0.2, "full_ndcg@10": 0.1, "full_recall@50": 0.5}
    versus_chart(challenger, None, CHART_METRICS, tmp_path / "v.png", judged=family_heading(ranking))
    marked = [title for title in drawn if title.endswith("(the gate judged these)")]
    assert marked == [f"{heading} (the gate judged these)"], drawn
