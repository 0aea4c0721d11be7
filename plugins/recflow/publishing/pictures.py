"""The pictures a published version carries: its training curve, and the challenger against the champion.

Both are PNG files drawn with matplotlib's Agg backend (no display needed), imported
inside the functions: this module is cheap to import.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _save(fig: Any, out: Path) -> Path:
    import matplotlib.pyplot as plt  # noqa: PLC0415 (matplotlib only when a picture is drawn)

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def loss_curve(losses: Sequence[float], out: Path, title: str = "") -> Path:
    """Training loss per epoch (epoch 1 first) as a line chart."""
    import matplotlib  # noqa: PLC0415 (matplotlib only when a picture is drawn)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (matplotlib only when a picture is drawn)

    if not losses:
        raise ValueError("no loss values: the training job recorded no epoch")
    epochs = list(range(1, len(losses) + 1))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(epochs, losses, marker="o", color="#4C72B0")
    for epoch, loss in ((epochs[0], losses[0]), (epochs[-1], losses[-1])):
        ax.annotate(
            f"{loss:.3f}", (epoch, loss), textcoords="offset points", xytext=(0, 6), fontsize=8, ha="center"
        )
    ax.margins(x=0.08, y=0.15)  # the first and last labels inside the frame
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (weighted softmax cross-entropy)")
    ax.set_xticks(epochs)
    ax.set_title(_title(title or "Training loss per epoch"), fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, out)


TITLE_WIDTH = 70
"""Characters per title line: a long model or job name wraps instead of running off the picture."""


def _title(text: str, width: int = TITLE_WIDTH) -> str:
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) if text else text


def versus_chart(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    panels: Mapping[str, Sequence[str]],
    out: Path,
    title: str = "",
    judged: str | None = None,
) -> Path:
    """Grouped bars for the challenger and (when there is one) the champion: one panel per metric
    family (``panels``: its heading → its metrics), each on its own scale; the panel headed
    ``judged`` says it is the family the gate judged."""
    import matplotlib  # noqa: PLC0415 (matplotlib only when a picture is drawn)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (matplotlib only when a picture is drawn)
    import numpy as np  # noqa: PLC0415 (matplotlib only when a picture is drawn)

    series = [("challenger", challenger, "#DD8452")]
    if champion:
        series.append(("champion", champion, "#4C72B0"))
    width = 0.8 / len(series)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (heading, metrics) in zip(axes[0], panels.items(), strict=True):
        x = np.arange(len(metrics))
        top = 0.0
        for k, (label, values, color) in enumerate(series):
            heights = [float(values.get(m, float("nan"))) for m in metrics]
            top = max([top, *(h for h in heights if not math.isnan(h))])
            bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, heights, width, label=label, color=color)
            ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
        ax.set_xticks(x, list(metrics), fontsize=8)
        ax.set_ylim(0, min(1.0, top * 1.35) if top > 0 else 1.0)
        ax.set_title(
            _title(heading + (" (the gate judged these)" if heading == judged else ""), width=45),
            fontsize=9,
            fontweight="bold" if heading == judged else "normal",
        )
        ax.set_ylabel("holdout metric", fontsize=8)
        ax.legend(fontsize=7, loc="best")  # where it covers no bar (a label above a tall bar stayed hidden)
    fig.suptitle(
        _title(title or ("Challenger vs champion" if champion else "Challenger (no champion yet)")),
        fontsize=10,
    )
    return _save(fig, out)
