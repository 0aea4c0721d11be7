"""A stand-in for the test the project never sees, on MovieLens 100K: ``python -m bench.stand_in``.

The project's data (``ratings.train.tsv``) lacks each user's true latest rating, which is kept
back to check the champion ``recflow benchmark movielens`` registers. That champion is trained
without the snapshot's holdout (each user's latest rating here) as a label, serves with it in the
user's history (fresh serving), and is judged on the rating after it. This script builds the
same situation one step earlier, from the data we have (``bench.movielens_split.leave_last_out``):

* the training job learns from the ``train`` rows only (neither of each user's last two ratings
  is a label);
* the served user vectors are recomputed from ``train`` + ``validation`` through the exported
  ``user_tower`` (``recflow.publishing.serving.refresh_user_vectors``), as the pipeline's
  champion is refreshed with the snapshot's holdout;
* the ``holdout`` rating is scored with ``recflow.evaluation`` (both families; candidates exclude
  train and validation pins).

The same job's own artifact (users represented by their ``train`` rows) is also scored on the
``validation`` rating, as ``bench.sweep_two_tower`` scores a configuration, so each run records
the figure a configuration is chosen by beside the one it carries one step later.

Nothing here chooses hyperparameters (the sweep does, on validation); it shows how a choice
carries one step past what the model saw. Each configuration given is trained once
(``--configs``, JSON objects of hyperparameters; ``{}`` is the defaults) and the results are
written to ``bench/results/stand-in-two-tower.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.movielens_split import leave_last_out
from bench.sweep_two_tower import DEFAULT_DATA, SELECTION, pairs, run_job, score, write_channel
from recflow.evaluation import build_eval_set, evaluate, savedmodel_scorer
from recflow.producers.movielens import read_items
from recflow.publishing.serving import refresh_user_vectors

log = logging.getLogger("stand_in")

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "stand-in-two-tower.json"
DEFAULT_CONFIGS = ('{"embedding_dim": 64, "dropout": 0.1}', "{}")
"""The defaults before the full-ranking sweep, and today's."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="JSON hyperparameter maps"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    split = leave_last_out(args.data_dir)
    catalogue = read_items(args.data_dir).column("pin_id").to_pylist()
    train, validation, holdout = pairs(split.train), pairs(split.validation), pairs(split.holdout)
    data = build_eval_set(holdout, train + validation, catalogue, seed=42)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_channel(work / "labels", split.train, args.data_dir)
        write_channel(work / "history", pa.concat_tables([split.train, split.validation]), args.data_dir)
        for number, text in enumerate(args.configs):
            config = json.loads(text)
            base = work / f"run-{number}"
            meta = run_job(work / "labels", base, {k: str(v) for k, v in config.items()})
            served = work / f"served-{number}"
            refresh_user_vectors(base / "model", [work / "history" / "interactions.parquet"], served)
            metrics = evaluate(savedmodel_scorer(served), data)
            chosen_by = score(base / "model", validation, train + holdout, catalogue)
            runs.append(
                {
                    "hyperparameters": meta["hyperparameters"],
                    "given": config,
                    "validation": chosen_by,
                    "metrics": metrics,
                }
            )
            log.info(
                "%s → validation %s %.4f; one step later %s",
                config or "defaults",
                SELECTION,
                chosen_by[SELECTION],
                {k: round(v, 4) for k, v in metrics.items()},
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "protocol": " ".join((__doc__ or "").split("\n\n", 1)[1].split()),
                "command": shlex.join(["python", "-m", "bench.stand_in", "--configs", *args.configs]),
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
