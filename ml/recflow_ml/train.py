"""Training-job entrypoint: ``python -m recflow_ml.train`` (the image's ENTRYPOINT).

Reads the ``train`` channel (``interactions.parquet``: user_id, pin_id, weight,
event_ts, split), trains the two-tower model, and saves a SavedModel into the
model directory with ``metadata.json`` beside it. Any failure is written to
``output/failure`` (what DescribeTrainingJob reports as FailureReason) and the
process exits non-zero.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from recflow_ml.contract import TrainingEnv
from recflow_ml.hyperparameters import Hyperparameters

log = logging.getLogger("recflow_ml")

REQUIRED_COLUMNS = ("user_id", "pin_id", "weight")


def read_interactions(channel: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    files = sorted(channel.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet files in channel directory {channel}")
    table = pq.read_table(files[0]) if len(files) == 1 else pq.ParquetDataset(files).read()
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{channel}: missing column(s) {missing} (found {table.column_names})")
    users = np.asarray(table.column("user_id").to_pylist(), dtype=object)
    items = np.asarray(table.column("pin_id").to_pylist(), dtype=object)
    weights = np.asarray(table.column("weight").to_numpy(zero_copy_only=False), dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(weights) | (weights <= 0))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{channel}: column 'weight' must be a positive number; row {i} "
            f"(user_id={users[i]!r}, pin_id={items[i]!r}) has {weights[i]!r} ({len(bad)} such rows)"
        )
    return users, items, weights


def run(env: TrainingEnv) -> dict[str, object]:
    from recflow_ml.model import TrainingData, TwoTowerModel, export

    started = time.monotonic()
    hp = Hyperparameters.from_strings(env.hyperparameters)
    log.info("job %s: hyperparameters %s", env.job_name, hp.as_strings())
    users, items, weights = read_interactions(env.channel("train"))
    user_vocab = sorted(set(users.tolist()))
    item_vocab = sorted(set(items.tolist()))
    log.info(
        "train channel: %d interactions, %d users, %d pins", len(users), len(user_vocab), len(item_vocab)
    )

    counts = np.ones(len(item_vocab) + 1)
    index = {item: i + 1 for i, item in enumerate(item_vocab)}
    for item in items:
        counts[index[item]] += 1
    log_q = np.log(counts / counts.sum()).astype(np.float32)

    model = TwoTowerModel(user_vocab, item_vocab, hp)
    history = model.fit(TrainingData(users.astype(str), items.astype(str), weights), log_q)
    env.model_dir.mkdir(parents=True, exist_ok=True)
    export(model, env.model_dir)
    metadata: dict[str, object] = {
        "job_name": env.job_name,
        "hyperparameters": hp.as_strings(),
        "users": len(user_vocab),
        "pins": len(item_vocab),
        "interactions": len(users),
        "history": [{"epoch": h.epoch, "loss": h.loss, "seconds": h.seconds} for h in history],
        "train_seconds": time.monotonic() - started,
    }
    (env.model_dir / "metadata.json").write_text(json.dumps(metadata, indent=2))
    env.output_data_dir.mkdir(parents=True, exist_ok=True)
    (env.output_data_dir / "history.json").write_text(json.dumps(metadata["history"], indent=2))
    log.info("saved SavedModel to %s in %.1fs", env.model_dir, metadata["train_seconds"])
    return metadata


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] != "train":
        log.error("unknown command %r: SageMaker starts training containers with 'train'", args[0])
        return 2
    env = TrainingEnv.from_env()
    try:
        run(env)
    except Exception as exc:  # the contract: every failure becomes output/failure
        env.write_failure(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
