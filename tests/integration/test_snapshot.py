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


def test_the_content_id_depends_on_the_rows_not_on_how_the_file_groups_them(tmp_path: Path) -> None:
    import pyarrow as pa

    from recflow.snapshot import ROW_GROUP_ROWS, content_id

    n = ROW_GROUP_ROWS + 1234  # more than one chunk
    table = pa.table(
        {
            "user_id": [f"u{i % 977}" for i in range(n)],
            "history": pa.array([[f"p{i % 13}"] * (i % 3) for i in range(n)], pa.list_(pa.string())),
        }
    )
    ids = []
    for rows in (500, ROW_GROUP_ROWS, n):
        path = tmp_path / f"groups-{rows}.parquet"
        pq.write_table(table, path, row_group_size=rows)
        assert pq.ParquetFile(path).metadata.num_row_groups == -(-n // rows)
        ids.append(content_id({"train": path}))
    assert len(set(ids)) == 1, ids
    changed = tmp_path / "changed.parquet"
    pq.write_table(
        table.set_column(0, "user_id", pa.array(["x", *table.column("user_id").to_pylist()[1:]])), changed
    )
    assert content_id({"train": changed}) != ids[0]
    assert content_id({"holdout": tmp_path / f"groups-{n}.parquet"}) != ids[0], "the table's name counts"


def test_the_train_table_is_written_in_row_groups_the_stream_can_shuffle(
    warehouse: Settings, tmp_path: Path
) -> None:
    from recflow.snapshot import ROW_GROUP_ROWS
    from recflow.warehouse import connect

    snapshot = take_snapshot(home_with_warehouse_of(warehouse, tmp_path))
    written = pq.ParquetFile(snapshot.train_uri.removeprefix("file://")).metadata
    assert written.num_rows == snapshot.rows["train"]
    assert all(written.row_group(i).num_rows <= ROW_GROUP_ROWS for i in range(written.num_row_groups))
    assert {"history", "n_earlier"} <= set(
        pq.ParquetFile(snapshot.train_uri.removeprefix("file://")).schema_arrow.names
    )
    with connect(warehouse, read_only=True) as con:
        (empty,) = list(
            con.fetch_batches("select user_id, history from analytics.training_interactions where false")
        )
        expected = con.fetch_arrow(
            "select count(*) as n from analytics.training_interactions where split = 'train'"
        )
    assert empty.num_rows == 0 and empty.schema.names == ["user_id", "history"], (
        "an empty result keeps its schema"
    )
    assert expected.column("n")[0].as_py() == snapshot.rows["train"]
