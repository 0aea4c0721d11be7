"""Preparation for the quality benchmark: the MovieLens 100K data, its split and the evaluation sets.

Where the data lives (``../shared/data/ml-100k`` by default) and the check that it is
complete; the leave-last-out split (``bench.movielens_split``) turned into the user and
item index, the train and train+validation interaction matrices and the validation and
holdout evaluation sets every method is scored on (:class:`Context`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.baselines import Index, interaction_matrix
from bench.movielens_split import leave_last_out
from recflow.core.config import PROJECT_ROOT
from recflow.evaluation import build_eval_set
from recflow.producers.movielens import REQUIRED_FILES, read_items

log = logging.getLogger("bench.quality")

DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data" / "ml-100k"
SEED = 42
BENCH_PYTHON = PROJECT_ROOT / ".venv-bench" / "bin" / "python"
"""The interpreter of the benchmark venv (rectools + torch), made by ``make bench-quality``."""

Pairs = list[tuple[str, str]]


class DataMissing(Exception):
    """The MovieLens directory is not where the benchmark was told to look."""


def check_data(data_dir: Path) -> None:
    if not data_dir.is_dir():
        raise DataMissing(
            f"MovieLens 100K not found: {data_dir} does not exist. Put the ml-100k files there "
            f"(see ../shared/data/README.md) or pass --data-dir."
        )
    missing = [name for name in REQUIRED_FILES if not (data_dir / name).is_file()]
    if missing:
        raise DataMissing(f"MovieLens 100K incomplete: {data_dir} lacks {', '.join(missing)}")


def _pairs(table: Any) -> Pairs:
    return list(zip(table.column("user_id").to_pylist(), table.column("item_id").to_pylist(), strict=True))


@dataclass
class Context:
    data_dir: Path
    split: Any
    index: Any
    x_train: Any
    x_full: Any
    validation_eval: Any
    holdout_eval: Any
    bench_python: Path = BENCH_PYTHON


def prepare(data_dir: Path) -> Context:
    split = leave_last_out(data_dir)
    catalogue = read_items(data_dir).column("pin_id").to_pylist()
    train, validation, holdout = _pairs(split.train), _pairs(split.validation), _pairs(split.holdout)
    log.info(
        "split: train %d, validation %d, holdout %d; catalogue %d items",
        len(train),
        len(validation),
        len(holdout),
        len(catalogue),
    )
    index = Index.build((u for u, _ in (*train, *validation, *holdout)), catalogue)
    return Context(
        data_dir=data_dir,
        split=split,
        index=index,
        x_train=interaction_matrix(train, index),
        x_full=interaction_matrix(train + validation, index),
        # Validation negatives exclude the holdout item too, so tuning never sees it as a negative.
        validation_eval=build_eval_set(validation, train + holdout, catalogue, seed=SEED),
        holdout_eval=build_eval_set(holdout, train + validation, catalogue, seed=SEED),
    )
