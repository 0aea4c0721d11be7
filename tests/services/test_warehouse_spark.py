"""The warehouse steps on Spark (a two-worker cluster) and on DuckDB, from one landing zone: one outcome.

``land`` (Spark reads the landing Parquet itself) and ``audit`` (row rules → quarantine, Great
Expectations' verdict, publication as partition replacements) run on generated days with bad
rows, once on the Spark cluster and once on the DuckDB file. What they publish and record must
agree, compared engine-independently (rows fetched as Arrow from both, values made plain, sorted
in Python). The bad-input cases the issue names: 0.5% null ``user_id`` quarantined exactly, 5% bad
rows refused, the next clean day published, nothing of the refused day in ``raw.events``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recflow import cli
from recflow.core.config import Settings
from recflow.core.errors import ConfigError, ContractViolation, DayClaimed, PartitionRefused
from recflow.ingest.contract import partition_dir, staged_table
from recflow.ingest.days import audit_days, stage_and_audit
from recflow.ingest.land import stage_partitions
from recflow.oncall.incidents import record_failure
from recflow.producers.generate import GeneratorConfig, generate, write_partition
from recflow.warehouse import SparkWarehouse, connect, content_checksum
from recflow.warehouse.spark_errors import SparkStatementFailed
from tests.integration.test_audit import _set
from tests.services.test_warehouse_postgres import _plain
from tests.unit.test_incidents import _champion, _warehouse_failure

START = dt.date(2026, 1, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(4)]
D1, D2, D3, D4 = DAYS
CFG = GeneratorConfig(start=START, days=len(DAYS), users=60, pins=200, topics=6, seed=11)
COMPARED = {
    "raw.events": ("_loaded_at",),
    "raw.pins": (),
    "raw.users": (),
    "quality.quarantine_events": ("quarantined_at",),
    "quality.partition_audit": ("audited_at",),
    staged_table(D3): ("_loaded_at",),
}
"""The tables both engines must hold alike, and the columns that say only *when* a row was written."""


def _day(landing: Path, day: dt.date) -> Any:
    return pq.read_table(partition_dir(landing, day) / "part-00000.parquet")


def _write_faults(landing: Path) -> dict[str, list[int]]:
    """D2: 0.5% null user_id and other bad rows (quarantined, published), in two files; D3: 5% unknown
    event types (refused); D4: clean (published). The bad rows of each day, by fault."""
    d2 = _day(landing, D2)
    null_users = list(range(100, 100 + round(0.005 * d2.num_rows)))
    d2 = _set(d2, "user_id", null_users, None)
    d2 = _set(d2, "value", [3], float("nan"))
    d2 = _set(d2, "event_type", [9], " Click ")  # accepted: case and spaces aside
    padded = [10, 11, 12]  # each engine's trim takes away other characters: the rule compares by code
    d2 = _set(d2, "user_id", padded[:2], "\u00a0u00001")
    d2 = _set(d2, "pin_id", padded[2:], "p00001\r")
    write_partition(partition_dir(landing, D2), [d2.slice(0, 500), d2.slice(500)])
    d3 = _day(landing, D3)
    unknown = list(range(0, d3.num_rows, 20))  # 5%
    write_partition(partition_dir(landing, D3), [_set(d3, "event_type", unknown, "clik")])
    return {"null_users": null_users, "unknown": unknown, "padded": padded}


@pytest.fixture
def engines(tmp_path: Path, spark_warehouse: Any) -> dict[str, Any]:
    """The same landing zone (with faults), read by a DuckDB warehouse and by the Spark cluster."""
    home = str(tmp_path / "home")
    duckdb = Settings.from_env({"RECFLOW_HOME": home})
    generate(duckdb.landing_dir, CFG)
    faults = _write_faults(duckdb.landing_dir)
    return {"duckdb": duckdb, "spark": spark_warehouse.settings(RECFLOW_HOME=home), "faults": faults}


def _rows(settings: Settings, table: str, exclude: tuple[str, ...] = ()) -> tuple[list[str], list[Any]]:
    """(sorted column names, sorted plain rows) of ``table`` without the ``exclude`` columns."""
    with connect(settings, read_only=True) as con:
        columns = sorted(c for c in con.columns(table) if c not in exclude)
        assert columns, f"{table} does not exist in {con.location}"
        fetched = con.fetch_arrow(f"select {', '.join(columns)} from {table}")
    rows = zip(*(fetched.column(c).to_pylist() for c in columns), strict=True)
    return columns, sorted((tuple(_plain(v) for v in row) for row in rows), key=repr)


def _land_and_audit(settings: Settings, run_id: str) -> tuple[list[tuple[Any, ...]], PartitionRefused]:
    with pytest.raises(PartitionRefused) as refused:
        stage_and_audit(settings, DAYS, run_id=run_id)
    with connect(settings, read_only=True) as con:
        table = con.fetch_arrow(
            "select ds, landed, accepted, quarantined, verdict from quality.partition_audit where run_id = ? "
            "order by ds",
            [run_id],
        )
    return [tuple(r.values()) for r in table.to_pylist()], refused.value


def test_land_and_audit_agree_on_spark_and_duckdb(engines: dict[str, Any]) -> None:
    spark, duck, faults = engines["spark"], engines["duckdb"], engines["faults"]
    results, refused = _land_and_audit(spark, "run-1")
    with connect(spark) as con:
        assert isinstance(con, SparkWarehouse), "the hive:// URL selects Spark"

    landed = {
        day: sum(pq.read_table(p).num_rows for p in partition_dir(spark.landing_dir, day).glob("*.parquet"))
        for day in DAYS
    }
    assert [(r[0], r[4]) for r in results] == [
        (D1, "published"),
        (D2, "published"),
        (D3, "refused"),
        (D4, "published"),
    ]
    assert [r[1] for r in results] == [landed[d] for d in DAYS], "landed counted from the files"
    assert results[1][3] == len(faults["null_users"]) + 1 + len(faults["padded"]), (
        "0.5% null user_id, one NaN value and the padded ids quarantined"
    )
    assert results[2][3] == len(faults["unknown"]), "the 5% of unknown event types"
    assert refused.check == "quarantine_share" and list(refused.columns) == ["event_type"]

    duck_results, duck_refused = _land_and_audit(duck, "run-1")
    assert results == duck_results, "the same counts and verdict per day"
    assert str(refused) == str(duck_refused), "refused for the same reason, in the same words"
    # the refusal as the failed audit task records it: one incident, the same for on-call on either engine
    incidents = [
        record_failure(settings, _warehouse_failure(error), champion=_champion)
        for settings, error in ((spark, refused), (duck, duck_refused))
    ]
    shown = [{k: v for k, v in dataclasses.asdict(i).items() if k not in ("at", "id")} for i in incidents]
    assert shown[0] == shown[1] and incidents[0].kind == "data" and incidents[0].check == "quarantine_share"
    for table, exclude in COMPARED.items():
        assert _rows(spark, table, exclude) == _rows(duck, table, exclude), f"{table}: the engines disagree"
    with connect(spark, read_only=True) as con:
        days = con.execute(
            "select count(*), count(distinct ds) from raw.events where ds = ?", [D3]
        ).fetchone()
        nulls = con.execute("select count(*) from quality.quarantine_events where user_id is null").fetchone()
    assert days is not None and int(days[0]) == 0, "nothing of the refused day is published"
    assert nulls is not None and int(nulls[0]) == len(faults["null_users"])

    # a rerun of every day changes nothing but run metadata (checksums inside Spark, before and after)
    with connect(spark, read_only=True) as con:
        before = {t: content_checksum(con, t) for t in ("raw.events", "raw.pins", "raw.users")}
    quarantine = _rows(spark, "quality.quarantine_events", ("quarantined_at", "run_id"))
    again, _ = _land_and_audit(spark, "run-2")
    assert [r[1:] for r in again] == [r[1:] for r in results]
    with connect(spark, read_only=True) as con:
        assert {t: content_checksum(con, t) for t in before} == before
    assert _rows(spark, "quality.quarantine_events", ("quarantined_at", "run_id")) == quarantine


def test_a_refused_reland_on_spark_leaves_the_staged_day_as_it_was(engines: dict[str, Any]) -> None:
    spark = engines["spark"]
    _land_and_audit(spark, "run-1")  # D3 refused: it stays staged
    before = _rows(spark, staged_table(D3))
    (partition_dir(spark.landing_dir, D3) / "part-00001.parquet").write_bytes(b"")

    with pytest.raises(ContractViolation, match=r"part-00001.parquet: the file is empty"):
        stage_partitions(spark, [D3])

    assert _rows(spark, staged_table(D3)) == before
    with connect(spark, read_only=True) as con:
        leftovers = [r[1] for r in con.execute("show tables in raw_staging like '*landing*'").fetchall()]
    assert leftovers == []


def _invalid_utf8(table: Any, column: str, row: int) -> Any:
    raw = [v.encode() for v in table.column(column).to_pylist()]
    raw[row] = b"p\xff\xfe"
    offsets = pa.array([0, *itertools.accumulate(len(b) for b in raw)], pa.int32())
    bad = pa.StringArray.from_buffers(len(raw), offsets.buffers()[1], pa.py_buffer(b"".join(raw)))
    return table.set_column(table.schema.get_field_index(column), column, bad)


@pytest.mark.parametrize(
    ("fault", "check", "words"),
    [
        (lambda t: _set(t, "surface", [17], "home\x00feed"), "nul_character", "holds a NUL character"),
        (lambda t: _invalid_utf8(t, "pin_id", 17), "utf8", "is not valid UTF-8"),
    ],
    ids=["nul", "utf8"],
)
def test_a_bad_text_value_refuses_its_file_on_spark_as_on_duckdb(
    engines: dict[str, Any], fault: Any, check: str, words: str
) -> None:
    """Spark loads the file itself: the value checks run there, and name the same file, column and row."""
    spark, duck = engines["spark"], engines["duckdb"]
    d1 = _day(spark.landing_dir, D1)
    write_partition(partition_dir(spark.landing_dir, D1), [fault(d1)])
    errors = []
    for settings in (spark, duck):
        with pytest.raises(ContractViolation) as refused:
            stage_partitions(settings, [D1])
        errors.append(refused.value)
    column = errors[1].columns[0]
    assert [(e.check, list(e.columns)) for e in errors] == [(check, [column])] * 2
    assert all(f"part-00000.parquet: column '{column}' row 17 {words}" in str(e) for e in errors), errors
    with connect(spark, read_only=True) as con:
        assert not con.table_exists("raw_staging", staged_table(D1).split(".")[1]), (
            "nothing of the day staged"
        )


@pytest.mark.parametrize("stored", ["int64-nanoseconds", "int96"])
def test_the_encodings_pandas_writes_land_alike_on_spark_and_duckdb(
    engines: dict[str, Any], stored: str
) -> None:
    """Nanosecond timestamps (pandas' default; Spark refuses to read them as instants), UTC by another name
    and dictionary-encoded strings (a category column) are the contract's types: both engines stage the
    day, to the microsecond, as the file holds it. INT96 (Spark's and Hive's old timestamps, which Arrow
    also calls nanoseconds) is read as the timestamp it is."""
    spark, duck = engines["spark"], engines["duckdb"]
    d1 = _day(spark.landing_dir, D1)
    micros = d1.column("event_ts").cast(pa.int64()).to_pylist()
    nanos = pa.array([m * 1000 + 999 for m in micros], pa.int64()).cast(pa.timestamp("ns", tz="Z"))
    d1 = d1.set_column(d1.schema.get_field_index("event_ts"), "event_ts", nanos)
    d1 = d1.set_column(
        d1.schema.get_field_index("user_id"), "user_id", d1.column("user_id").dictionary_encode()
    )
    folder = partition_dir(spark.landing_dir, D1)
    write_partition(folder, [d1])
    if stored == "int96":
        part = folder / "part-00000.parquet"
        pq.write_table(d1, part, use_deprecated_int96_timestamps=True)
        column = pq.read_metadata(part).schema.column(d1.schema.get_field_index("event_ts"))
        assert column.physical_type == "INT96"
    for settings in (spark, duck):
        stage_partitions(settings, [D1])
    staged = [_rows(settings, staged_table(D1), ("_loaded_at",)) for settings in (spark, duck)]
    assert staged[0] == staged[1], "the engines disagree on the staged day"
    columns, rows = staged[0]
    at = columns.index("event_ts")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    expected = sorted(str(_plain(epoch + dt.timedelta(microseconds=m))) for m in micros)
    assert sorted(str(row[at]) for row in rows) == expected, (
        "the file's instants, below the microsecond dropped"
    )


def test_one_run_of_a_day_at_a_time_on_spark(engines: dict[str, Any]) -> None:
    spark = engines["spark"]
    stage_partitions(spark, [D1], run_id="scheduled")
    with pytest.raises(DayClaimed, match=r"ds=2026-01-01 by run 'scheduled'"):
        stage_partitions(spark, [D1, D2], run_id="reload")
    audit_days(spark, [D1], run_id="scheduled")
    with connect(spark, read_only=True) as con:
        published = con.execute("select count(*) from raw.events where ds = ?", [D1]).fetchone()
        claims = con.execute("select count(*) from raw_staging.day_claims").fetchone()
    assert published is not None and int(published[0]) == _day(spark.landing_dir, D1).num_rows
    assert claims is not None and int(claims[0]) == 0


@pytest.mark.parametrize(
    ("statement", "spark_says"),
    [
        ("select * from raw.no_such_table", "[TABLE_OR_VIEW_NOT_FOUND]"),  # refused when submitted
        (
            "select raise_error('the executor gave up') from range(4)",
            "the executor gave up",
        ),  # failed running
    ],
)
def test_a_failed_statement_says_what_spark_said_in_one_line(
    engines: dict[str, Any], statement: str, spark_says: str
) -> None:
    """PyHive's error is the server's whole TStatus (thousands of characters of Java frames); the task's
    error and its incident carry Spark's own message and the statement, PyHive's error as the cause."""
    with connect(engines["spark"], read_only=True) as con, pytest.raises(SparkStatementFailed) as failed:
        con.execute(statement).fetchall()
    message = str(failed.value)
    assert message.startswith("Spark failed the statement: ") and spark_says in message, message
    assert message.endswith(f"the statement: {statement}") and len(message) < 2000, message
    cause = failed.value.__cause__
    assert cause is not None and spark_says in str(cause) and len(str(cause)) > 2 * len(message)
    incident = record_failure(engines["spark"], _warehouse_failure(failed.value), champion=_champion)
    assert incident.kind == "infrastructure", "not a verdict on the data: the task keeps its retries"
    assert incident.root_cause.startswith("SparkStatementFailed: Spark failed the statement: "), incident


def _recflow_sql(
    settings: Settings, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """``recflow sql ARGV`` as on-call runs it, in an environment that names ``settings``' warehouse."""
    with monkeypatch.context() as env:
        for name, value in settings.child_env().items():
            env.setenv(name, value)
        code = cli.main(["sql", *argv])
    said = capsys.readouterr()
    return code, said.out, said.err


def test_recflow_sql_reads_spark_as_it_reads_duckdb(
    engines: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runbooks' look at the quarantine failed on Spark for every query (its rows had no
    ``description``), and said Spark had refused it."""
    spark, duck = engines["spark"], engines["duckdb"]
    _land_and_audit(spark, "run-1")
    _land_and_audit(duck, "run-1")
    query = (
        "select ds, verdict, count(*) as quarantined from quality.quarantine_events "
        "group by ds, verdict order by ds, verdict"
    )
    answers = {}
    for name, settings in (("spark", spark), ("duckdb", duck)):
        code, out, err = _recflow_sql(settings, [query, "--json"], monkeypatch, capsys)
        assert (code, err) == (0, ""), f"{name}: {err}"
        answers[name] = json.loads(out)
    assert answers["spark"] == answers["duckdb"]
    # the counts read back through the warehouse's own Arrow path, not recflow sql's
    with connect(spark, read_only=True) as con:
        table = con.fetch_arrow("select ds, verdict from quality.quarantine_events")
    by_day = collections.Counter((str(d), v) for d, v in zip(*table.to_pydict().values(), strict=True))
    assert {(r["ds"], r["verdict"]): r["quarantined"] for r in answers["spark"]} == dict(by_day)

    code, out, _ = _recflow_sql(spark, [query, "--limit", "1"], monkeypatch, capsys)
    assert code == 0 and out.rstrip().endswith("(1 row; more past --limit)"), out
    code, _, err = _recflow_sql(spark, ["select * from raw.no_such_table"], monkeypatch, capsys)
    assert code == 2 and err.startswith("recflow: spark refused the query: ") and len(err.splitlines()) == 1


def test_a_table_format_without_its_jars_is_a_setting_to_fix_not_a_failure_to_retry(
    engines: dict[str, Any],
) -> None:
    """RECFLOW_SPARK_TABLE_FORMAT=delta on a cluster without Delta's jars failed land as an infrastructure
    error, retried to no end (Spark walk): no try can succeed until the setting changes."""
    with connect(engines["spark"]) as con, pytest.raises(ConfigError) as refused:
        con.execute("create table default.recflow_delta_probe (a int) using delta")
    message = str(refused.value)
    assert message.startswith("the Spark cluster has no data source for a table format this statement ")
    assert (
        "RECFLOW_SPARK_TABLE_FORMAT" in message
        and "the statement: create table default.recflow_delta" in message
    )
    assert "[DATA_SOURCE_NOT_FOUND]" in message and "delta" in message
    assert not refused.value.retryable
    incident = record_failure(engines["spark"], _warehouse_failure(refused.value), champion=_champion)
    assert (incident.kind, incident.runbook.rpartition("#")[2]) == ("pipeline", "configuration")
