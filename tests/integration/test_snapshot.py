from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recflow.core.artifacts import LocalArtifactStore
from recflow.core.config import Settings
from recflow.evaluation import load_eval_set
from recflow.snapshot import take_snapshot
from tests.integration.conftest import home_with_warehouse_of

pytestmark = pytest.mark.integration


def test_snapshot_is_content_addressed_and_written_once(warehouse: Settings, tmp_path: Path) -> None:
    settings = home_with_warehouse_of(warehouse, tmp_path)
    first = take_snapshot(settings)
    train_file = Path(first.train_uri.removeprefix("file://"))
    mtime = train_file.stat().st_mtime_ns
    second = take_snapshot(settings)
    assert second == first
    assert train_file.stat().st_mtime_ns == mtime, "an existing snapshot must never be rewritten"
    train = pq.read_table(train_file)
    holdout = pq.read_table(first.holdout_uri.removeprefix("file://"))
    assert (first.rows["train"], first.rows["holdout"]) == (train.num_rows, holdout.num_rows)
    assert set(first.rows) == {"train", "holdout", "pins", "pin_features", "user_features"}
    channel = train_file.parent
    assert sorted(p.name for p in channel.iterdir()) == [
        "interactions.parquet",
        "pins.parquet",
        "users.parquet",
    ]
    assert len(set(holdout.column("user_id").to_pylist())) == holdout.num_rows
    assert first.dbt_invocation_id not in ("", "unknown")


def test_eval_set_from_snapshot(warehouse: Settings, tmp_path: Path) -> None:
    settings = home_with_warehouse_of(warehouse, tmp_path)
    snap = take_snapshot(settings)
    data = load_eval_set(LocalArtifactStore(), snap, tmp_path, seed=42)
    assert len(data.users) == snap.rows["holdout"]
    assert data.negatives.shape == (snap.rows["holdout"], 99)
