"""SASRec (Kang and McAuley, ICDM 2018) through ``rectools``: one fit, every user × item score.

Runs in the benchmark's own venv (``.venv-bench``, from ``requirements-bench.txt``:
rectools 0.19 and the CPU build of torch need numpy<2 and pandas<3, which the main venv's
pins exclude), so it imports nothing from ``recflow``; ``bench/quality_methods.py`` calls it as a
subprocess, once per grid point and once for the final fit::

    .venv-bench/bin/python -m bench.sasrec --train train.csv --index index.json \\
        --params '{"epochs": 40, "session_max_len": 50}' --out scores.npy

``train.csv``: ``user_id``, ``item_id`` (strings) and ``ts`` (seconds) of the training
interactions; each user's sequence is ordered by time, ties by the larger item id last (as
``bench/movielens_split.py`` orders them). ``index.json``: ``{"users": [...], "items": [...]}``,
the row and column order of the score matrix written to ``--out`` (float32 ``.npy``). Items
that never occur in ``train.csv`` cannot be scored by SASRec and get ``-inf``. A JSON
line with the fit's wall seconds is printed last.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FIXED: dict[str, Any] = {
    "n_blocks": 2,
    "n_heads": 2,
    "dropout_rate": 0.2,
    "loss": "softmax",
    "lr": 0.003,
    "batch_size": 128,
}
"""What the grid does not vary: the paper's two blocks and rectools' full-softmax loss (the factors
are on the grid, 64 or 128 like our model's embedding). One user is one training sequence, so an
epoch of MovieLens 100K is 8 steps: the learning rate is 3x the paper's to train in tens of epochs."""
SEED = 42
THREADS = 2


def fit_scores(train: Any, users: list[str], items: list[str], params: dict[str, Any]) -> np.ndarray:
    """Fit SASRec on ``train`` (a DataFrame: user_id, item_id, ts) and score every (user, item)."""
    import pandas as pd
    import torch
    from lightning_fabric import seed_everything
    from rectools import Columns
    from rectools.dataset import Dataset
    from rectools.models import SASRecModel
    from rectools.models.nn.item_net import IdEmbeddingsItemNet

    torch.set_num_threads(THREADS)
    seed_everything(SEED, workers=True)
    # ties in time: the split puts the larger item id later, so sort by (ts, item as a number)
    frame = pd.DataFrame(
        {
            Columns.User: train["user_id"].astype(str),
            Columns.Item: train["item_id"].astype(str),
            Columns.Weight: 1.0,
            Columns.Datetime: pd.to_datetime(train["ts"], unit="s")
            + pd.to_timedelta(train["item_id"].astype(int), unit="us"),
        }
    )
    dataset = Dataset.construct(frame)
    model = SASRecModel(
        **FIXED,
        **params,
        deterministic=False,  # seeded; the deterministic kernels double the fit time
        item_net_block_types=(IdEmbeddingsItemNet,),
        verbose=0,
    )
    model.fit(dataset)
    known_items = set(frame[Columns.Item])
    known_users = [u for u in users if u in set(frame[Columns.User])]
    recos = model.recommend(known_users, dataset, k=len(known_items), filter_viewed=False)
    scores = np.full((len(users), len(items)), -np.inf, dtype=np.float32)
    row = {u: i for i, u in enumerate(users)}
    col = {p: i for i, p in enumerate(items)}
    scores[
        recos[Columns.User].map(row).to_numpy(dtype=np.int64),
        recos[Columns.Item].map(col).to_numpy(dtype=np.int64),
    ] = recos[Columns.Score].to_numpy(dtype=np.float32)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--params", type=json.loads, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import pandas as pd

    index = json.loads(args.index.read_text())
    train = pd.read_csv(args.train, dtype={"user_id": str, "item_id": str, "ts": "int64"})
    started = time.perf_counter()
    scores = fit_scores(train, list(index["users"]), list(index["items"]), dict(args.params))
    seconds = time.perf_counter() - started
    np.save(args.out, scores)
    print(json.dumps({"fit_seconds": round(seconds, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
