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
@pytest.mark.parametrize("fault", ["duplicate", "null", "padded"])
def test_catalogue_keys_are_unique_and_not_null(landed: Settings, catalogue: str, fault: str) -> None:
    """A padded key ('u00001 ') is not the events' id: its user or pin would have no features."""
    path = landed.landing_dir / catalogue / f"{catalogue}.parquet"
    table = pq.read_table(path)
    key = table.column_names[0]
    ids = table.column(key).to_pylist()
    ids[1] = {"duplicate": ids[0], "null": None, "padded": f"{ids[1]}\r"}[fault]
    pq.write_table(table.set_column(0, key, pa.array(ids, pa.string())), path)
    shown = {"duplicate": "duplicated", "null": "null or empty", "padded": "with spaces around them"}[fault]
    err = _refused(
        landed,
        rf"the catalogue's key '{key}' must be unique, not null and without spaces around it: 1 .*{shown}",
    )
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


def _staged_column(settings: Settings, column: str) -> list[object]:
    with connect(settings, read_only=True) as con:
        return [
            r[0]
            for r in con.execute(
                f"select {column} from {staged_table(DAY)} order by _source_file, _source_row"
            ).fetchall()
        ]


def test_nanosecond_timestamps_are_read_to_the_microsecond(landed: Settings) -> None:
    """pandas writes nanoseconds: what is below the microsecond no engine stores, so it is dropped (the
    walk's file crashed ``land`` with ArrowInvalid, retried as infrastructure)."""
    table = pq.read_table(_part(landed))
    micros = table.column("event_ts").cast(pa.int64()).to_pylist()
    nanos = pa.array([m * 1000 + 123 for m in micros], pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    _rewrite(landed, table.set_column(table.schema.get_field_index("event_ts"), "event_ts", nanos))
    stage_partitions(landed, [DAY])
    staged = _staged_column(landed, "epoch_us(event_ts)")
    assert staged == micros  # the file's own values, read back with pyarrow before it was rewritten


def test_an_instant_microseconds_cannot_hold_is_refused_by_file_and_column(landed: Settings) -> None:
    table = pq.read_table(_part(landed))
    far = pa.array([9_300_000_000_000_000] * table.num_rows, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    _rewrite(landed, table.set_column(table.schema.get_field_index("event_ts"), "event_ts", far))
    err = _refused(
        landed, r"part-00000.parquet: column 'event_ts' holds an instant timestamp\[us, tz=UTC\] cannot"
    )
    assert (err.check, err.columns) == ("column_type", ("event_ts",))
    assert _nothing_staged(landed)


@pytest.mark.parametrize("zone", ["Z", "GMT", "Etc/GMT", "utc", "Etc/UTC"])
def test_utc_by_its_other_names_and_dictionary_encoded_strings_are_accepted(
    landed: Settings, zone: str
) -> None:
    table = pq.read_table(_part(landed))
    expected_users = table.column("user_id").to_pylist()
    expected_ts = table.column("event_ts").cast(pa.int64()).to_pylist()
    zoned = table.column("event_ts").cast(pa.timestamp("us", tz=zone))
    table = table.set_column(table.schema.get_field_index("event_ts"), "event_ts", zoned)
    index = table.schema.get_field_index("user_id")  # pandas' category dtype is written this way
    table = table.set_column(index, "user_id", table.column("user_id").dictionary_encode())
    _rewrite(landed, table)
    assert pq.read_schema(_part(landed)).field("user_id").type == pa.dictionary(pa.int32(), pa.string())
    stage_partitions(landed, [DAY])
    assert _staged_column(landed, "user_id") == expected_users
    assert _staged_column(landed, "epoch_us(event_ts)") == expected_ts


def test_a_time_zone_other_than_utc_is_refused_saying_any_unit_is_fine(landed: Settings) -> None:
    table = pq.read_table(_part(landed))
    zoned = table.column("event_ts").cast(pa.timestamp("ms", tz="America/New_York"))
    _rewrite(landed, table.set_column(table.schema.get_field_index("event_ts"), "event_ts", zoned))
    err = _refused(landed, r"expected timestamp\[us, tz=UTC\] \(any unit; UTC or naive\)")
    assert err.check == "column_type"


def test_a_column_written_twice_is_named(landed: Settings) -> None:
    table = pq.read_table(_part(landed))
    pq.write_table(table.append_column("user_id", table.column("user_id")), _part(landed))
    err = _refused(landed, r"part-00000.parquet: column\(s\) 'user_id' occur more than once")
    assert (err.check, err.columns) == ("columns", ("user_id",))


def test_a_folder_in_a_partition_refuses_the_day_rather_than_dropping_its_files(landed: Settings) -> None:
    """Rows in ``hour=23/`` were left out without a word, and the day published without them."""
    table = pq.read_table(_part(landed))
    folder = partition_dir(landed.landing_dir, DAY)
    (folder / "hour=23").mkdir()
    pq.write_table(table.slice(0, 10), folder / "hour=23" / "part-00000.parquet")
    err = _refused(landed, r"holds hour=23, not a file: data files lie directly in the folder")
    assert err.check == "partition_layout"
    assert _nothing_staged(landed)
    (folder / "hour=23").rename(folder / "_hour=23")  # a folder the producer marks as not data
    assert stage_partitions(landed, [DAY])[0].rows == table.num_rows
    (folder / "part-00009.parquet").symlink_to(folder / "gone.parquet")  # a link to nothing: not a file
    _refused(landed, r"holds part-00009.parquet, not a file")


def test_an_error_of_the_file_system_is_not_a_verdict_on_the_data(
    landed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A permission or an I/O error (a stale network mount) is the machine's: it keeps its retries and is
    not sent to the producer as a file that is not Parquet."""

    def denied(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    read_schema = pq.read_schema
    monkeypatch.setattr(pq, "read_schema", denied)
    with pytest.raises(PermissionError, match="Permission denied"):
        stage_partitions(landed, [DAY])

    def rewritten(path: object, *args: object, **kwargs: object) -> None:
        # a producer rewriting the partition removed the file between its footer and its rows: pyarrow
        # raises FileNotFoundError without an errno
        raise FileNotFoundError(str(path))

    monkeypatch.setattr(pq, "read_schema", read_schema)
    monkeypatch.setattr(pq, "read_table", rewritten)
    with pytest.raises(FileNotFoundError):
        stage_partitions(landed, [DAY])


@pytest.mark.parametrize("catalogue", ["pins", "users"])
def test_every_file_of_a_catalogue_is_read_as_an_engine_reading_the_folder_reads_it(
    landed: Settings, catalogue: str
) -> None:
    """A second file without the .parquet suffix (Trino names its files so) was left out here while Spark,
    reading the folder, took it: one rule for which files are data, the partitions'."""
    path = landed.landing_dir / catalogue / f"{catalogue}.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 10), path)
    pq.write_table(table.slice(10), path.parent / "20260112_000000_00001_abcde")
    staged = stage_partitions(landed, [DAY])[0]
    assert getattr(staged, catalogue) == table.num_rows


@pytest.mark.parametrize("catalogue", ["pins", "users"])
def test_an_empty_catalogue_is_refused(landed: Settings, catalogue: str) -> None:
    """A full snapshot with no row (an export that failed half-way) was published: the model trained with
    every user's features null."""
    path = landed.landing_dir / catalogue / f"{catalogue}.parquet"
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    err = _refused(landed, rf"{catalogue}: the catalogue's 1 file\(s\) hold no row")
    assert err.check == "catalogue_present"
    assert _nothing_staged(landed)


def test_the_contract_lists_every_row_rule_the_audit_applies() -> None:
    """docs/data-contract.md's table of row rules is what producers read: each rule there, none missing."""
    import datetime as dt
    import re

    from recflow.core.config import PROJECT_ROOT
    from recflow.ingest.rules import row_rules

    text = (PROJECT_ROOT / "docs" / "data-contract.md").read_text()
    table = text.split("### Row rules (quarantine)", 1)[1].split("###", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    applied = [r.name for r in row_rules(start, start + dt.timedelta(days=1), start)]
    assert sorted(documented) == sorted(applied)
