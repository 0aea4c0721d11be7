"""The warehouse steps on PostgreSQL and on DuckDB, from one landing zone: the same outcome.

``land`` and ``audit`` (row rules → quarantine, Great Expectations' verdict, publication)
run on generated days, some with bad rows and one refused, once on a fresh PostgreSQL
database and once on the DuckDB file. What they publish and record must agree, compared
engine-independently: every row fetched from both, its values made plain (NaN, UTC
timestamps, lists), sorted in Python. The marts suite and ``snapshot`` run on marts
the tests write through the same interface to both engines.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, cast

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recflow.core.config import Settings
from recflow.core.errors import ContractViolation, DataQualityError, DayClaimed, PartitionRefused
from recflow.ingest.contract import partition_dir, staged_table
from recflow.ingest.days import audit_days, stage_and_audit
from recflow.ingest.land import stage_partitions
from recflow.producers.generate import GeneratorConfig, generate, write_partition
from recflow.quality import check_training_marts
from recflow.snapshot import take_snapshot
from recflow.warehouse import PostgresWarehouse, connect, content_checksum
from tests.integration.test_audit import _set

START = dt.date(2026, 1, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(4)]
D1, D2, D3, D4 = DAYS
CFG = GeneratorConfig(start=START, days=len(DAYS), users=60, pins=200, topics=6, seed=11)

REFUSED_ROWS = list(range(0, 300, 10))
"""Rows of D3 given an unknown event type: 30 of ~1,000, above the 1% the audit tolerates."""

COMPARED = {
    "raw.events": ("_loaded_at",),
    "raw.pins": (),
    "raw.users": (),
    "quality.quarantine_events": ("quarantined_at",),
    "quality.partition_audit": ("audited_at",),
    staged_table(D3): ("_loaded_at",),
}
"""The tables both engines must hold alike, and the columns that say only *when* a row was written."""


def _day(landing: Path, day: dt.date) -> pa.Table:
    return pq.read_table(partition_dir(landing, day) / "part-00000.parquet")


def _write_faults(landing: Path) -> None:
    """D2: bad rows (quarantined, day published), in two files; D3: too many bad rows (refused);
    D4: an id of D1 and an event outside the day (quarantined)."""
    d2 = _day(landing, D2)
    ids = d2.column("event_id").to_pylist()
    d2 = _set(d2, "value", [3], float("nan"))
    d2 = _set(d2, "value", [4], float("-inf"))
    d2 = _set(d2, "event_id", [40, 41], ids[3])
    d2 = _set(d2, "user_id", [7], "  ")
    d2 = _set(d2, "pin_id", [8], None)
    # padded ids: each engine's trim takes away other characters (DuckDB's the no-break space too)
    d2 = _set(d2, "user_id", [10], "u00001\r")
    d2 = _set(d2, "user_id", [11], "\u00a0u00001")
    d2 = _set(d2, "pin_id", [12], "p00001\t")
    d2 = _set(d2, "event_type", [9], " Click ")  # accepted: case and spaces aside
    write_partition(partition_dir(landing, D2), [d2.slice(0, 500), d2.slice(500)])
    write_partition(partition_dir(landing, D3), [_set(_day(landing, D3), "event_type", REFUSED_ROWS, "clik")])
    d4 = _set(_day(landing, D4), "event_id", [1, 2], _day(landing, D1).column("event_id")[5].as_py())
    write_partition(
        partition_dir(landing, D4), [_set(d4, "event_ts", [6], dt.datetime(2025, 1, 1, tzinfo=dt.UTC))]
    )


@pytest.fixture
def engines(tmp_path: Path, pg_database: str) -> Iterator[dict[str, Settings]]:
    """The same landing zone (with faults), read by a DuckDB warehouse and by a PostgreSQL one."""
    home = str(tmp_path / "home")
    duckdb = Settings.from_env({"RECFLOW_HOME": home})
    generate(duckdb.landing_dir, CFG)
    _write_faults(duckdb.landing_dir)
    yield {
        "duckdb": duckdb,
        "postgresql": Settings.from_env({"RECFLOW_HOME": home, "RECFLOW_WAREHOUSE_URL": pg_database}),
    }


def _plain(value: object) -> object:
    """A value compared across engines: NaN by name, instants in UTC, lists as tuples."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value


def _rows(
    settings: Settings, table: str, exclude: tuple[str, ...] = ()
) -> tuple[list[str], list[tuple[object, ...]]]:
    """(columns, sorted plain rows) of ``table`` without the ``exclude`` columns."""
    with connect(settings, read_only=True) as con:
        columns = [c for c in con.columns(table) if c not in exclude]
        assert columns, f"{table} does not exist in {con.location}"
        rows = con.execute(f"select {', '.join(columns)} from {table}").fetchall()
    return columns, sorted((tuple(_plain(v) for v in row) for row in rows), key=repr)


class Audited(NamedTuple):
    ds: dt.date
    landed: int
    accepted: int
    quarantined: int
    verdict: str


def _land_and_audit(settings: Settings, run_id: str) -> tuple[list[Audited], PartitionRefused]:
    """``land`` + ``audit`` of every day (one is refused); the audit's record of each day."""
    with pytest.raises(PartitionRefused) as refused:
        stage_and_audit(settings, DAYS, run_id=run_id)
    with connect(settings, read_only=True) as con:
        results = con.execute(
            "select ds, landed, accepted, quarantined, verdict from quality.partition_audit "
            "where run_id = ? order by ds",
            [run_id],
        ).fetchall()
    return [Audited(*row) for row in results], refused.value


def test_land_and_audit_agree_on_postgres_and_duckdb(engines: dict[str, Settings]) -> None:
    outcomes = {engine: _land_and_audit(settings, "run-1") for engine, settings in engines.items()}

    with connect(engines["postgresql"]) as con:
        assert isinstance(con, PostgresWarehouse), "the URL setting selects PostgreSQL"
    results, refused = outcomes["postgresql"]
    assert [(r.ds, r.verdict) for r in results] == [
        (D1, "published"),
        (D2, "published"),
        (D3, "refused"),
        (D4, "published"),
    ]
    assert [r.quarantined for r in results] == [0, 6 + 3, len(REFUSED_ROWS), 3]  # D2: 6 faults, 3 padded ids
    assert all(r.accepted + r.quarantined == r.landed for r in results)
    assert refused.check == "quarantine_share"
    assert list(refused.columns) == ["event_type"]
    assert f"{len(REFUSED_ROWS)} of" in refused.observed and "event_type_unknown" in refused.observed

    duck_results, duck_refused = outcomes["duckdb"]
    assert results == duck_results, "the same counts and verdict per day"
    assert (refused.check, refused.columns, refused.observed, refused.expected) == (
        duck_refused.check,
        duck_refused.columns,
        duck_refused.observed,
        duck_refused.expected,
    ), "refused for the same reason"
    assert str(refused) == str(duck_refused)

    for table, exclude in COMPARED.items():
        pg_columns, pg_rows = _rows(engines["postgresql"], table, exclude)
        duck_columns, duck_rows = _rows(engines["duckdb"], table, exclude)
        assert pg_columns == duck_columns, table
        assert len(pg_rows) == len(duck_rows), table
        assert pg_rows == duck_rows, f"{table}: the engines disagree"
    columns, quarantined = _rows(engines["postgresql"], "quality.quarantine_events", ("quarantined_at",))
    rules = {
        rule for row in quarantined for rule in cast(tuple[str, ...], row[columns.index("broken_rules")])
    }
    assert rules == {
        "value_not_finite",
        "event_id_duplicate_in_day",
        "user_id_missing",
        "pin_id_missing",
        "user_id_padded",
        "pin_id_padded",
        "event_type_unknown",
        "event_id_seen_on_other_day",
        "event_ts_outside_interval",
    }


def test_a_rerun_on_postgres_changes_nothing_but_run_metadata(engines: dict[str, Settings]) -> None:
    pg = engines["postgresql"]
    _land_and_audit(pg, "run-1")
    with connect(pg, read_only=True) as con:
        before = {t: content_checksum(con, t) for t in ("raw.events", "raw.pins", "raw.users")}
    rows_before = _rows(pg, "quality.quarantine_events", ("quarantined_at", "run_id"))

    results, refused = _land_and_audit(pg, "run-2")

    assert [r.verdict for r in results] == ["published", "published", "refused", "published"]
    assert refused.check == "quarantine_share"
    with connect(pg, read_only=True) as con:
        assert {t: content_checksum(con, t) for t in before} == before
        published = con.execute("select count(distinct ds) from raw.events").fetchone()
    assert published == (3,), "the refused day is never published"
    assert _rows(pg, "quality.quarantine_events", ("quarantined_at", "run_id")) == rows_before


def test_a_refused_reland_on_postgres_leaves_the_staged_day_as_it_was(engines: dict[str, Settings]) -> None:
    pg = engines["postgresql"]
    _land_and_audit(pg, "run-1")  # D3 refused: it stays staged
    before = _rows(pg, staged_table(D3))
    (partition_dir(pg.landing_dir, D3) / "part-00001.parquet").write_bytes(b"")

    with pytest.raises(ContractViolation, match=r"part-00001.parquet: the file is empty"):
        stage_partitions(pg, [D3])

    assert _rows(pg, staged_table(D3)) == before
    with connect(pg, read_only=True) as con:
        leftovers = con.execute(
            "select table_name from information_schema.tables where table_name like ?", ["%landing%"]
        ).fetchall()
    assert leftovers == []


def test_one_run_of_a_day_at_a_time_on_postgres(engines: dict[str, Settings]) -> None:
    """The claims under PostgreSQL's locks: a second run of a day is refused at ``land``; a run that
    took a stale claim over publishes its own staging, and the late audit of the other is refused."""
    pg = engines["postgresql"]
    stage_partitions(pg, [D1], run_id="scheduled")
    with pytest.raises(DayClaimed, match=r"ds=2026-01-01 by run 'scheduled'"):
        stage_partitions(pg, [D1, D2], run_id="reload")
    with connect(pg) as con:
        con.execute("update raw_staging.day_claims set claimed_at = claimed_at - interval '7 hours'")
    stage_partitions(pg, [D1], run_id="reload")

    with pytest.raises(DayClaimed, match=r"ds=2026-01-01 was landed by run 'reload'"):
        audit_days(pg, [D1], run_id="scheduled")
    audit_days(pg, [D1], run_id="reload")

    with connect(pg, read_only=True) as con:
        published = con.execute("select count(*) from raw.events where ds = ?", [D1]).fetchone()
        claims = con.execute("select count(*) from raw_staging.day_claims").fetchone()
    assert (published, claims) == ((_day(pg.landing_dir, D1).num_rows,), (0,))


def test_bulk_fetch_and_load_round_trip_on_postgres(engines: dict[str, Settings]) -> None:
    """A fetch streams out, and a bulk load copies back in, the same rows on both engines."""
    query = "select event_id, user_id, value, event_ts, ds, _source_row from raw.events"
    fetched, reloaded = {}, {}
    for engine, settings in engines.items():
        _land_and_audit(settings, "run-1")
        with connect(settings) as con:
            table = con.fetch_arrow(f"{query} where ds <> ?", [D4])
            con.execute(f"create table raw_staging.reloaded as {query} where false")
            con.append_arrow("raw_staging.reloaded", table)
        assert table.num_rows > 0
        fetched[engine] = sorted((tuple(_plain(v) for v in r.values()) for r in table.to_pylist()), key=repr)
        reloaded[engine] = _rows(settings, "raw_staging.reloaded")[1]
    assert fetched["postgresql"] == fetched["duckdb"]
    assert reloaded["postgresql"] == reloaded["duckdb"] == sorted(fetched["duckdb"], key=repr)


# -- marts: the suite and the snapshot, on tables the test writes --------------------------------------


def _marts() -> dict[str, pa.Table]:
    ts = pa.timestamp("us", tz="UTC")
    at = [dt.datetime(2026, 1, d, 10, tzinfo=dt.UTC) for d in (1, 2, 3, 1, 2, 3)]
    split = ["train", "train", "holdout", "train", "train", "holdout"]
    return {
        "dim_users": pa.table(
            {
                "user_id": ["u1", "u2"],
                "country": ["FR", None],
                "age": pa.array([31, None], pa.int32()),
                "gender": ["F", "M"],
                "occupation": ["writer", None],
            }
        ),
        "dim_pins": pa.table(
            {"pin_id": ["p1", "p2", "p3", "p10"], "topics": [["a", "b"], [], None, ["c"]]},
            schema=pa.schema([("pin_id", pa.string()), ("topics", pa.list_(pa.string()))]),
        ),
        "training_interactions": pa.table(
            {
                "user_id": ["u1", "u1", "u1", "u2", "u2", "u2"],
                "pin_id": ["p1", "p2", "p10", "p2", "p3", "p1"],
                "weight": [1.0, 3.5, 2.0, 1.0, 0.25, 1.0],
                "n_positive_events": pa.array([1, 2, 1, 1, 1, 3], pa.int64()),
                "event_ts": pa.array(at, ts),
                "split": split,
                "history": pa.array([[], ["p1"], [], [], ["p2"], []], pa.list_(pa.string())),
                "n_earlier": pa.array([0, 1, 0, 0, 1, 0], pa.int64()),
                "dbt_invocation_id": ["inv-1"] * 6,
            }
        ),
    }


def _write_marts(settings: Settings, marts: dict[str, pa.Table]) -> None:
    with connect(settings) as con:
        con.execute("create schema if not exists analytics")
        for name, table in marts.items():
            con.replace_table_with_arrow(f"analytics.{name}", table)


@pytest.fixture
def mart_engines(tmp_path: Path, pg_database: str) -> dict[str, Settings]:
    """Two homes (their own artifact stores), one on DuckDB, one on PostgreSQL."""
    return {
        "duckdb": Settings.from_env({"RECFLOW_HOME": str(tmp_path / "duckdb")}),
        "postgresql": Settings.from_env(
            {"RECFLOW_HOME": str(tmp_path / "postgresql"), "RECFLOW_WAREHOUSE_URL": pg_database}
        ),
    }


def test_marts_suite_agrees_on_postgres_and_duckdb(mart_engines: dict[str, Settings]) -> None:
    for settings in mart_engines.values():
        _write_marts(settings, _marts())
    reports = {engine: check_training_marts(settings) for engine, settings in mart_engines.items()}
    assert reports["postgresql"].success and reports["postgresql"].evaluated == reports["duckdb"].evaluated

    # the rows' invariants are dbt's (test_dbt_postgres.py); what the suite still says is volume
    errors = {}
    for engine, settings in mart_engines.items():
        _write_marts(settings, {name: table.slice(0, 0) for name, table in _marts().items()})
        with pytest.raises(DataQualityError) as caught:
            check_training_marts(settings)
        errors[engine] = caught.value
    pg_lines = [f.line() for f in errors["postgresql"].report.failures]
    assert pg_lines == [f.line() for f in errors["duckdb"].report.failures]
    assert any("there is something to train on" in line for line in pg_lines)
    assert errors["postgresql"].report.failures[0].expectation == "expect_table_row_count_to_be_between"


def test_snapshot_on_postgres_holds_what_duckdb_holds(mart_engines: dict[str, Settings]) -> None:
    snapshots = {}
    for engine, settings in mart_engines.items():
        _write_marts(settings, _marts())
        snapshots[engine] = take_snapshot(settings)
    pg, duck = snapshots["postgresql"], snapshots["duckdb"]
    assert (
        pg.rows == duck.rows == {"train": 4, "holdout": 2, "pins": 4, "pin_features": 4, "user_features": 2}
    )
    assert pg.dbt_invocation_id == duck.dbt_invocation_id == "inv-1"
    for uri in ("train_uri", "holdout_uri", "pins_uri"):
        tables = [pq.read_table(Path(getattr(s, uri).removeprefix("file://"))) for s in (pg, duck)]
        assert tables[0].column_names == tables[1].column_names
        assert [[_plain(v) for v in r.values()] for r in tables[0].to_pylist()] == [
            [_plain(v) for v in r.values()] for r in tables[1].to_pylist()
        ], f"{uri}: same rows, same order"
    assert take_snapshot(mart_engines["postgresql"]).snapshot_id == pg.snapshot_id, "content-addressed"
