"""``land``: the landing contract, checked file by file before anything is staged (no GX, no dbt)."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recflow.core.config import Settings
from recflow.core.errors import ContractViolation, LandingLate
from recflow.ingest.contract import SUCCESS_MARKER, partition_complete, partition_dir, staged_table
from recflow.ingest.land import stage_partitions
from recflow.producers.generate import GeneratorConfig, generate, write_partition
from recflow.warehouse import connect, content_checksum, table_exists

DAY = date(2026, 1, 1)


@pytest.fixture
def landed(settings: Settings) -> Settings:
    generate(settings.landing_dir, GeneratorConfig(start=DAY, days=2, users=30, pins=120, topics=5))
    return settings


def _part(settings: Settings, day: date = DAY) -> Path:
    return partition_dir(settings.landing_dir, day) / "part-00000.parquet"


def _rewrite(settings: Settings, table: pa.Table, day: date = DAY) -> None:
    write_partition(partition_dir(settings.landing_dir, day), [table])


def _refused(settings: Settings, match: str) -> ContractViolation:
    with pytest.raises(ContractViolation, match=match) as caught:
        stage_partitions(settings, [DAY])
    return caught.value


def _nothing_staged(settings: Settings) -> bool:
    if not settings.duckdb_path.exists():
        return True
    with connect(settings, read_only=True) as con:
        return not table_exists(con, "raw_staging", staged_table(DAY).split(".")[1])


def test_stage_is_idempotent_and_writes_nothing_dbt_reads(landed: Settings) -> None:
    first = stage_partitions(landed, [DAY, date(2026, 1, 2)])
    with connect(landed, read_only=True) as con:
        before = content_checksum(con, staged_table(DAY))
        assert not table_exists(con, "raw", "events"), "land must not publish: the audit does"
    again = stage_partitions(landed, [DAY])
    with connect(landed, read_only=True) as con:
        assert content_checksum(con, staged_table(DAY)) == before
    assert again[0].rows == first[0].rows == before[0]


def test_partition_without_success_marker_is_late(landed: Settings) -> None:
    (partition_dir(landed.landing_dir, DAY) / SUCCESS_MARKER).unlink()
    assert not partition_complete(landed.landing_dir, DAY)
    with pytest.raises(LandingLate, match=r"ds=2026-01-01 exists but has no _SUCCESS marker"):
        stage_partitions(landed, [DAY])


def test_missing_partition_is_late(landed: Settings) -> None:
    with pytest.raises(
        LandingLate,
        match=r"ds=2026-02-01 does not exist \(nothing exported for 2026-02-01 yet\); 1 day\(s\) not complete",
    ):
        stage_partitions(landed, [date(2026, 2, 1)])


def test_missing_column_names_file_and_column(landed: Settings) -> None:
    _rewrite(landed, pq.read_table(_part(landed)).drop_columns(["user_id"]))
    err = _refused(landed, r"part-00000.parquet: required column\(s\) 'user_id' missing")
    assert (err.check, err.columns) == ("columns", ("user_id",))
    assert err.evidence.endswith("part-00000.parquet")
    assert _nothing_staged(landed)


def test_extra_column_is_refused(landed: Settings) -> None:
    table = pq.read_table(_part(landed))
    _rewrite(landed, table.append_column("country", pa.array(["FR"] * table.num_rows)))
    err = _refused(landed, r"column\(s\) 'country' not in the contract")
    assert err.columns == ("country",)


def test_renamed_column_is_refused(landed: Settings) -> None:
    table = pq.read_table(_part(landed))
    _rewrite(landed, table.rename_columns(["eventid" if c == "event_id" else c for c in table.column_names]))
    err = _refused(landed, r"'event_id' missing; column\(s\) 'eventid' not in the contract")
    assert err.columns == ("event_id", "eventid")


@pytest.mark.parametrize(
    ("column", "values", "found"),
    [
        ("user_id", lambda n: pa.array(range(n), pa.int64()), "int64"),
        ("event_ts", lambda n: pa.array([1_767_225_600 + i for i in range(n)], pa.int64()), "int64"),
        ("event_ts", lambda n: pa.array(["2026-01-01T10:00:00Z"] * n), "string"),
        ("value", lambda n: pa.array([1.0] * n, pa.float32()), "float"),
    ],
    ids=["integer-ids", "integer-timestamps", "string-timestamps", "float32-value"],
)
def test_castable_type_drift_is_refused(landed: Settings, column: str, values, found: str) -> None:
    table = pq.read_table(_part(landed))
    index = table.schema.get_field_index(column)
    _rewrite(landed, table.set_column(index, column, values(table.num_rows)))
    err = _refused(landed, rf"part-00000.parquet: column '{column}' has type {found}, expected")
    assert (err.check, err.columns, err.observed) == ("column_type", (column,), found)


def test_equivalent_encodings_are_accepted(landed: Settings) -> None:
    table = pq.read_table(_part(landed))
    ts = table.column("event_ts").cast(pa.timestamp("ms")).cast(pa.timestamp("ns"))  # naive = UTC
    table = table.set_column(table.schema.get_field_index("event_ts"), "event_ts", ts)
    table = table.set_column(0, "event_id", table.column("event_id").cast(pa.large_string()))
    _rewrite(landed, table.drop_columns(["value"]))  # value is optional
    staged = stage_partitions(landed, [DAY])
    assert staged[0].rows == table.num_rows


def test_file_that_is_not_parquet(landed: Settings) -> None:
    (partition_dir(landed.landing_dir, DAY) / "part-00001.parquet").write_text("event_id,user_id\n1,2\n")
    err = _refused(landed, r"part-00001.parquet: not a readable Parquet file")
    assert err.check == "parquet"
    assert _nothing_staged(landed)


def test_zero_byte_file(landed: Settings) -> None:
    (partition_dir(landed.landing_dir, DAY) / "part-00001.parquet").write_bytes(b"")
    _refused(landed, r"part-00001.parquet: the file is empty \(0 bytes\)")


def test_invalid_utf8_in_a_string_column(landed: Settings) -> None:
    table = pq.read_table(_part(landed))
    raw = [s.encode() for s in table.column("pin_id").to_pylist()]
    raw[3] = b"p\xff\xfe"
    offsets = pa.array([0, *itertools.accumulate(len(b) for b in raw)], pa.int32())
    bad = pa.StringArray.from_buffers(len(raw), offsets.buffers()[1], pa.py_buffer(b"".join(raw)))
    _rewrite(landed, table.set_column(table.schema.get_field_index("pin_id"), "pin_id", bad))
    err = _refused(landed, r"column 'pin_id' row 3 is not valid UTF-8")
    assert (err.check, err.columns) == ("utf8", ("pin_id",))


def test_a_nul_character_in_a_string_column(landed: Settings) -> None:
    """PostgreSQL cannot store NUL in text: the contract refuses it on every engine, naming the row."""
    table = pq.read_table(_part(landed))
    ids = table.column("user_id").to_pylist()
    ids[5] = "u\x0042"
    _rewrite(landed, table.set_column(table.schema.get_field_index("user_id"), "user_id", pa.array(ids)))
    err = _refused(landed, r"column 'user_id' row 5 holds a NUL character")
    assert (err.check, err.columns) == ("nul_character", ("user_id",))
    assert _nothing_staged(landed)


@pytest.mark.parametrize("catalogue", ["pins", "users"])
@pytest.mark.parametrize("fault", ["duplicate", "null"])
def test_catalogue_keys_are_unique_and_not_null(landed: Settings, catalogue: str, fault: str) -> None:
    path = landed.landing_dir / catalogue / f"{catalogue}.parquet"
    table = pq.read_table(path)
    key = table.column_names[0]
    ids = table.column(key).to_pylist()
    ids[1] = ids[0] if fault == "duplicate" else None
    pq.write_table(table.set_column(0, key, pa.array(ids, pa.string())), path)
    shown = "duplicated" if fault == "duplicate" else "null or empty"
    err = _refused(landed, rf"the catalogue's key '{key}' must be unique and not null: 1 {shown}")
    assert (err.check, err.columns) == ("catalogue_key", (key,))


def test_a_refused_reland_leaves_the_staged_day_as_it_was(landed: Settings) -> None:
    stage_partitions(landed, [DAY])
    with connect(landed, read_only=True) as con:
        before = content_checksum(con, staged_table(DAY))
    (partition_dir(landed.landing_dir, DAY) / "part-00001.parquet").write_bytes(b"")
    _refused(landed, r"part-00001.parquet: the file is empty")
    with connect(landed, read_only=True) as con:
        assert content_checksum(con, staged_table(DAY)) == before
        leftovers = con.execute(
            "select table_name from information_schema.tables where table_name like '%landing%'"
        ).fetchall()
    assert leftovers == []
