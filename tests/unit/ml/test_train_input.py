"""The train channel is read as Arrow: ids never become Python objects, one file or a directory of shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recflow_ml.train import INTERACTIONS_FILE, read_event_times, read_interactions, vocabulary


def _table(users: list[str], pins: list[str], weights: list[float]) -> pa.Table:
    return pa.table(
        {
            "user_id": users,
            "pin_id": pins,
            "weight": pa.array(weights, pa.float32()),
            "event_ts": pa.array(range(len(users)), pa.int64()).cast(pa.timestamp("s", tz="UTC")),
        }
    )


def test_ids_stay_arrow_strings_and_the_vocabulary_is_sorted_as_python_sorts(tmp_path: Path) -> None:
    users = ["b", "a", "é", "Z", "ä", "a", "10", "9"]
    pq.write_table(_table(users, ["p1"] * 8, [1.0] * 8), tmp_path / INTERACTIONS_FILE)
    ids, pins, weights = read_interactions(tmp_path)
    assert isinstance(ids, pa.ChunkedArray) and pa.types.is_string(ids.type)
    assert ids.to_pylist() == users and pins.to_pylist() == ["p1"] * 8
    assert weights.dtype == np.float32
    assert vocabulary(ids) == sorted(set(users))
    np.testing.assert_array_equal(read_event_times(tmp_path), np.arange(8) * 1_000_000)


def test_a_directory_of_shards_reads_as_one_table(tmp_path: Path) -> None:
    shards = tmp_path / INTERACTIONS_FILE
    shards.mkdir()
    pq.write_table(_table(["a", "b"], ["p1", "p2"], [1.0, 2.0]), shards / "part-0.parquet")
    pq.write_table(_table(["c"], ["p3"], [3.0]), shards / "part-1.parquet")
    ids, pins, weights = read_interactions(tmp_path)
    assert ids.to_pylist() == ["a", "b", "c"] and pins.to_pylist() == ["p1", "p2", "p3"]
    np.testing.assert_array_equal(weights, [1.0, 2.0, 3.0])
    assert read_event_times(tmp_path) is not None


def test_a_bad_weight_or_a_null_id_is_refused_with_the_row(tmp_path: Path) -> None:
    pq.write_table(_table(["a", "b"], ["p1", "p2"], [1.0, -2.0]), tmp_path / INTERACTIONS_FILE)
    with pytest.raises(ValueError, match=r"row 1 \(user_id='b', pin_id='p2'\) has .*-2\.0.* \(1 such rows\)"):
        read_interactions(tmp_path)
    table = _table(["a", "b"], ["p1", "p2"], [1.0, 1.0]).set_column(0, "user_id", pa.array(["a", None]))
    pq.write_table(table, tmp_path / INTERACTIONS_FILE)
    with pytest.raises(ValueError, match="column 'user_id' has 1 null id"):
        read_interactions(tmp_path)
