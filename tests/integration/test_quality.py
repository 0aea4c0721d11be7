"""The data-quality suites against a real DuckDB warehouse file, through Great Expectations."""

from __future__ import annotations

import datetime as dt
import logging
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest

from recflow.config import Settings
from recflow.landing import RAW_EVENTS_DDL
from recflow.quality import (
    DataQualityError,
    ExpectationFailure,
    QualityReport,
    check_raw_events,
    check_training_marts,
)
from recflow.warehouse import connect

pytestmark = pytest.mark.integration

UTC = dt.UTC
DS = dt.date(2026, 1, 3)
START = dt.datetime(2026, 1, 3, tzinfo=UTC)
END = dt.datetime(2026, 1, 4, tzinfo=UTC)
PREVIOUS_DS = dt.date(2026, 1, 2)
N_GOOD = 20
TYPES = ("impression", "closeup", "click", "save", "hide")


def _settings(home: Path, **env: str) -> Settings:
    return Settings.from_env({"RECFLOW_HOME": str(home), **env})


def _event(i: int, ds: dt.date = DS, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event_id": f"{ds.isoformat()}-e{i:03d}",
        "user_id": f"u{i % 4}",
        "pin_id": f"p{i % 7}",
        "event_type": TYPES[i % len(TYPES)],
        "event_ts": dt.datetime.combine(ds, dt.time(0), tzinfo=UTC) + dt.timedelta(hours=i % 24, minutes=i),
        "surface": "home_feed",
        "value": None,
        "ds": ds,
        "_source_file": f"/landing/events/ds={ds.isoformat()}/part-0.parquet",
        "_loaded_at": dt.datetime(2026, 1, 5, tzinfo=UTC),
    }
    row.update(overrides)
    return row


def _insert_events(settings: Settings, rows: Sequence[dict[str, Any]]) -> None:
    with connect(settings) as con:
        con.execute("create schema if not exists raw")
        con.execute(RAW_EVENTS_DDL)
        con.executemany(
            "insert into raw.events values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [list(row.values()) for row in rows],
        )


def _rejected(settings: Settings, ds: dt.date = DS) -> list[tuple[Any, ...]]:
    with connect(settings, read_only=True) as con:
        return con.execute(
            "select event_id, expectation, column_name, reason, source_file from quality.rejected_events "
            "where ds = ? order by event_id, expectation",
            [ds],
        ).fetchall()


@pytest.fixture(autouse=True)
def _no_warnings_from_recflow(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """E.g. the rejected rows of an expectation always match GX's unexpected count."""
    yield
    warnings = [r for r in caplog.records if r.name.startswith("recflow") and r.levelno == logging.WARNING]
    assert warnings == []


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Settings]:
    """A warehouse with a clean partition for DS and one for the day before."""
    settings = _settings(tmp_path)
    _insert_events(settings, [_event(i, PREVIOUS_DS) for i in range(N_GOOD)])
    _insert_events(settings, [_event(i) for i in range(N_GOOD)])
    yield settings


def _bad(settings: Settings, **overrides: Any) -> DataQualityError:
    """Replace the event e005 of DS with a bad version and run the suite, which must fail."""
    with connect(settings) as con:
        con.execute("delete from raw.events where event_id = ?", [f"{DS.isoformat()}-e005"])
    _insert_events(settings, [_event(5, **overrides)])
    with pytest.raises(DataQualityError) as caught:
        check_raw_events(settings, DS, START, END)
    return caught.value


def _only_failure(err: DataQualityError) -> ExpectationFailure:
    assert not err.report.success
    assert len(err.report.failures) == 1, err.report.summary()
    return err.report.failures[0]


# -- raw.events -------------------------------------------------------------------------------------


def test_clean_partition_passes(warehouse: Settings) -> None:
    report = check_raw_events(warehouse, DS, START, END)

    assert isinstance(report, QualityReport)
    assert report.success
    assert report.failures == ()
    assert report.rows == N_GOOD
    assert report.evaluated == 11
    assert report.target == "raw.events ds=2026-01-03"
    assert "all 11 expectations passed on 20 rows" in report.summary()
    assert _rejected(warehouse) == []


def test_naive_interval_is_utc(warehouse: Settings) -> None:
    report = check_raw_events(warehouse, DS, START.replace(tzinfo=None), END.replace(tzinfo=None))
    assert report.success


def test_null_user_id(warehouse: Settings) -> None:
    err = _bad(warehouse, user_id=None)

    failure = _only_failure(err)
    assert failure.expectation == "expect_column_values_to_not_be_null"
    assert failure.column == "user_id"
    assert failure.unexpected_count == 1
    assert failure.element_count == N_GOOD
    assert failure.offending_rows[0]["event_id"] == "2026-01-03-e005"
    message = str(err)
    assert "suite raw_events on raw.events ds=2026-01-03" in message
    assert "expect_column_values_to_not_be_null on user_id" in message
    assert "1 of 20 rows (5.00%) unexpected" in message
    assert "event_id='2026-01-03-e005'" in message
    assert "user_id=None" in message
    assert "1 row(s) kept in quality.rejected_events" in message
    assert "What to do: fix the upstream export for ds=2026-01-03" in message
    assert _rejected(warehouse) == [
        (
            "2026-01-03-e005",
            "expect_column_values_to_not_be_null",
            "user_id",
            "user_id is null; the data contract requires it",
            "/landing/events/ds=2026-01-03/part-0.parquet",
        )
    ]


def test_duplicated_event_id(warehouse: Settings) -> None:
    err = _bad(warehouse, event_id="2026-01-03-e006")

    failure = _only_failure(err)
    assert failure.expectation == "expect_column_values_to_be_unique"
    assert failure.column == "event_id"
    assert failure.unexpected_count == 2
    message = str(err)
    assert "expect_column_values_to_be_unique on event_id" in message
    assert "2 of 20 rows (10.00%) unexpected" in message
    assert "'2026-01-03-e006'" in message
    rejected = _rejected(warehouse)
    assert [r[:3] for r in rejected] == [
        ("2026-01-03-e006", "expect_column_values_to_be_unique", "event_id"),
        ("2026-01-03-e006", "expect_column_values_to_be_unique", "event_id"),
    ]
    assert rejected[0][3] == "event_id 2026-01-03-e006 occurs 2 times in ds=2026-01-03"


def test_event_id_of_another_partition(warehouse: Settings) -> None:
    err = _bad(warehouse, event_id="2026-01-02-e007")

    failure = _only_failure(err)
    assert failure.expectation == "expect_column_values_to_be_null"
    assert failure.column == "event_id_also_in_ds"
    assert failure.sample == [dt.date(2026, 1, 2)]
    message = str(err)
    assert "event_id is unique across partitions" in message
    assert "event_id='2026-01-02-e007'" in message
    assert "event_id_also_in_ds=2026-01-02" in message
    assert [r[3] for r in _rejected(warehouse)] == ["event_id 2026-01-02-e007 also occurs in ds=2026-01-02"]


def test_unknown_event_type(warehouse: Settings) -> None:
    err = _bad(warehouse, event_type="clik")

    failure = _only_failure(err)
    assert failure.expectation == "expect_column_values_to_be_in_set"
    assert failure.column == "event_type"
    assert failure.sample == ["clik"]
    message = str(err)
    assert "expect_column_values_to_be_in_set on event_type" in message
    assert "'clik'" in message
    assert "1 of 20 rows (5.00%) unexpected" in message
    assert [r[1:4] for r in _rejected(warehouse)] == [
        (
            "expect_column_values_to_be_in_set",
            "event_type",
            "event_type clik is not one of impression, closeup, click, save, hide",
        )
    ]


@pytest.mark.parametrize(
    ("event_ts", "shown"),
    [
        (END, "2026-01-04T00:00:00Z"),  # the interval is half-open
        (START - dt.timedelta(microseconds=1), "2026-01-02T23:59:59.999999Z"),
    ],
)
def test_event_ts_outside_the_interval(warehouse: Settings, event_ts: dt.datetime, shown: str) -> None:
    err = _bad(warehouse, event_ts=event_ts)

    failure = _only_failure(err)
    assert failure.expectation == "expect_column_values_to_be_between"
    assert failure.column == "event_ts"
    message = str(err)
    assert "expect_column_values_to_be_between on event_ts" in message
    assert shown in message
    assert "1 of 20 rows (5.00%) unexpected" in message
    rejected = _rejected(warehouse)
    assert [r[:3] for r in rejected] == [
        ("2026-01-03-e005", "expect_column_values_to_be_between", "event_ts")
    ]
    assert "outside the partition's interval" in rejected[0][3]


def test_event_ts_on_the_interval_start_is_inside(warehouse: Settings) -> None:
    with connect(warehouse) as con:
        con.execute("update raw.events set event_ts = ? where event_id = '2026-01-03-e005'", [START])
    assert check_raw_events(warehouse, DS, START, END).success


def test_too_few_rows(warehouse: Settings, tmp_path: Path) -> None:
    settings = _settings(tmp_path, RECFLOW_RAW_MIN_ROWS="100")

    with pytest.raises(DataQualityError) as caught:
        check_raw_events(settings, DS, START, END)

    failure = _only_failure(caught.value)
    assert failure.expectation == "expect_table_row_count_to_be_between"
    assert failure.column is None
    message = str(caught.value)
    assert "expect_table_row_count_to_be_between" in message
    assert "observed 20, expected 100 .. 5000000" in message
    assert "0 row(s) kept in quality.rejected_events (the failures are not about single rows)" in message
    assert _rejected(settings) == []


def test_empty_partition(warehouse: Settings) -> None:
    with pytest.raises(DataQualityError) as caught:
        check_raw_events(warehouse, dt.date(2026, 1, 4), END, END + dt.timedelta(days=1))
    assert "observed 0, expected 1 .. 5000000" in str(caught.value)


def test_error_survives_pickling(warehouse: Settings) -> None:
    err = _bad(warehouse, event_type="clik")
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err)
    assert copy.report == err.report


def test_missing_table(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with connect(settings) as con:
        con.execute("select 1")
    with pytest.raises(DataQualityError, match=r"raw\.events does not exist"):
        check_raw_events(settings, DS, START, END)


def test_several_failures_rerun_and_fix(warehouse: Settings) -> None:
    with connect(warehouse) as con:
        con.execute("update raw.events set event_type = 'clik' where event_id = '2026-01-03-e001'")
        con.execute("update raw.events set pin_id = null where event_id = '2026-01-03-e002'")
        con.execute(
            "update raw.events set user_id = null, event_type = 'CLICK' where event_id = '2026-01-03-e003'"
        )
    # a rejected row of another day is not touched by this day's runs
    with connect(warehouse) as con:
        con.execute("create schema quality")
    with pytest.raises(DataQualityError):
        check_raw_events(warehouse, DS, START, END)
    with connect(warehouse) as con:
        con.execute(
            "insert into quality.rejected_events (ds, event_id, expectation, reason, rejected_at) "
            "values (?, 'old', 'x', 'y', now())",
            [PREVIOUS_DS],
        )

    with pytest.raises(DataQualityError) as caught:
        check_raw_events(warehouse, DS, START, END)  # a rerun replaces the day's rows

    report = caught.value.report
    assert {(f.expectation, f.column) for f in report.failures} == {
        ("expect_column_values_to_be_in_set", "event_type"),
        ("expect_column_values_to_not_be_null", "pin_id"),
        ("expect_column_values_to_not_be_null", "user_id"),
    }
    assert report.rejected_rows == 4
    assert "4 row(s) kept in quality.rejected_events" in str(caught.value)
    assert [r[:3] for r in _rejected(warehouse)] == [
        ("2026-01-03-e001", "expect_column_values_to_be_in_set", "event_type"),
        ("2026-01-03-e002", "expect_column_values_to_not_be_null", "pin_id"),
        ("2026-01-03-e003", "expect_column_values_to_be_in_set", "event_type"),
        ("2026-01-03-e003", "expect_column_values_to_not_be_null", "user_id"),
    ]

    with connect(warehouse) as con:
        con.execute("update raw.events set event_type = 'click' where event_type in ('clik', 'CLICK')")
        con.execute("update raw.events set pin_id = 'p1' where pin_id is null")
        con.execute("update raw.events set user_id = 'u1' where user_id is null")
    assert check_raw_events(warehouse, DS, START, END).success
    assert _rejected(warehouse) == []
    assert len(_rejected(warehouse, PREVIOUS_DS)) == 1


def test_wrong_columns(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _insert_events(settings, [_event(i) for i in range(3)])
    with connect(settings) as con:
        con.execute("alter table raw.events add column extra varchar")

    with pytest.raises(DataQualityError) as caught:
        check_raw_events(settings, DS, START, END)

    failure = _only_failure(caught.value)
    assert failure.expectation == "expect_table_columns_to_match_set"
    assert "unexpected ['extra']" in failure.observed


def test_missing_column_is_reported_not_crashed_on(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _insert_events(settings, [_event(i) for i in range(3)])
    with connect(settings) as con:
        con.execute("alter table raw.events drop column pin_id")

    with pytest.raises(DataQualityError) as caught:
        check_raw_events(settings, DS, START, END)

    failures = {(f.expectation, f.column): f for f in caught.value.report.failures}
    assert set(failures) == {
        ("expect_table_columns_to_match_set", None),
        ("expect_column_values_to_not_be_null", "pin_id"),
    }
    assert "missing ['pin_id']" in failures["expect_table_columns_to_match_set", None].observed
    assert failures["expect_column_values_to_not_be_null", "pin_id"].observed.startswith(
        "could not be evaluated: "
    )
    assert caught.value.report.rejected_rows == 0


# -- analytics marts -------------------------------------------------------------------------------

TI = "analytics.training_interactions"
MART_DDL = """
create schema if not exists analytics;
create table analytics.dim_users (user_id varchar, country varchar);
create table analytics.dim_pins (pin_id varchar, title varchar);
create table analytics.training_interactions (
    user_id varchar, pin_id varchar, weight double, n_positive_events bigint,
    event_ts timestamptz, split varchar
);
insert into analytics.dim_users values ('u1', 'FR'), ('u2', 'US'), ('u3', null), ('u4', 'DE');
insert into analytics.dim_pins values ('p1', 'a'), ('p2', 'b'), ('p3', 'c'), ('p10', 'd');
insert into analytics.training_interactions values
    ('u1', 'p1', 1.0, 1, '2026-01-01 10:00:00+00', 'train'),
    ('u1', 'p2', 3.5, 2, '2026-01-02 10:00:00+00', 'train'),
    ('u1', 'p10', 2.0, 1, '2026-01-03 10:00:00+00', 'holdout'),
    ('u2', 'p1', 1.0, 1, '2026-01-01 11:00:00+00', 'train'),
    ('u3', 'p2', 1.0, 1, '2026-01-02 12:00:00+00', 'train'),
    ('u3', 'p3', 1.0, 1, '2026-01-02 12:00:00+00', 'holdout');
"""


@pytest.fixture
def marts(tmp_path: Path) -> Iterator[Settings]:
    settings = _settings(tmp_path)
    with connect(settings) as con:
        con.execute(MART_DDL)
    yield settings


def _sql(settings: Settings, sql: str) -> None:
    with connect(settings) as con:
        con.execute(sql)


def _marts_fail(settings: Settings) -> DataQualityError:
    with pytest.raises(DataQualityError) as caught:
        check_training_marts(settings)
    return caught.value


def test_good_marts_pass(marts: Settings) -> None:
    report = check_training_marts(marts)

    assert report.success
    assert report.rows == 6
    assert report.evaluated == 12
    assert report.suite == "training_marts"


def test_two_holdouts_for_one_user(marts: Settings) -> None:
    _sql(marts, f"update {TI} set split = 'holdout' where user_id = 'u1' and pin_id = 'p2'")

    err = _marts_fail(marts)

    failure = _only_failure(err)
    assert failure.expectation == "expect_column_values_to_be_between"
    assert failure.column == "n_holdout"
    assert failure.offending_rows == [{"user_id": "u1", "n_holdout": 2}]
    message = str(err)
    assert "at most one holdout pair per user" in message
    assert "1 of 3 users (33.33%) unexpected" in message
    assert "user_id='u1' n_holdout=2" in message
    assert "What to do:" in message and "no model was trained" in message


def test_holdout_earlier_than_train(marts: Settings) -> None:
    _sql(marts, f"update {TI} set event_ts = '2026-01-01 09:00:00+00' where pin_id = 'p10'")

    err = _marts_fail(marts)

    failure = _only_failure(err)
    assert failure.expectation == "expect_column_pair_values_a_to_be_greater_than_b"
    assert failure.column == "holdout_event_ts, latest_train_event_ts"
    message = str(err)
    assert "holdout is not earlier than the user's latest train pair" in message
    assert "user_id='u1'" in message
    assert "2026-01-01T09:00:00Z" in message and "2026-01-02T10:00:00Z" in message


def test_user_without_holdout(marts: Settings) -> None:
    _sql(marts, f"update {TI} set split = 'train' where user_id = 'u3'")

    err = _marts_fail(marts)

    failure = _only_failure(err)
    assert failure.column == "n_holdout"
    assert "every user with >= 2 positive pairs has a holdout pair" in str(err)
    assert failure.offending_rows[0]["user_id"] == "u3"


def test_pin_missing_from_dim_pins(marts: Settings) -> None:
    _sql(marts, f"insert into {TI} values ('u1', 'p999', 1.0, 1, '2026-01-01 08:00:00+00', 'train')")

    err = _marts_fail(marts)

    failure = _only_failure(err)
    assert failure.expectation == "expect_column_values_to_be_null"
    assert failure.column == "pin_id_missing_from_dim_pins"
    assert failure.sample == ["p999"]
    message = str(err)
    assert "every pin_id of training_interactions is in dim_pins" in message
    assert "'p999'" in message
    assert "1 of 5 distinct pin_ids (20.00%) unexpected" in message


def test_user_missing_from_dim_users_and_bad_weight_and_split(marts: Settings) -> None:
    _sql(marts, "delete from analytics.dim_users where user_id = 'u2'")
    _sql(marts, f"update {TI} set weight = 0 where pin_id = 'p1' and user_id = 'u1'")
    _sql(marts, f"update {TI} set split = 'test' where user_id = 'u2'")

    err = _marts_fail(marts)

    assert {(f.expectation, f.column) for f in err.report.failures} == {
        ("expect_column_values_to_be_null", "user_id_missing_from_dim_users"),
        ("expect_column_values_to_be_between", "weight"),
        ("expect_column_values_to_be_in_set", "split"),
    }
    message = str(err)
    assert "'u2'" in message and "'test'" in message


def test_missing_marts(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with connect(settings) as con:
        con.execute("select 1")
    with pytest.raises(DataQualityError, match=r"analytics\.training_interactions does not exist"):
        check_training_marts(settings)


def test_importing_the_package_does_not_import_great_expectations() -> None:
    import subprocess
    import sys

    code = "import sys, recflow.quality; assert 'great_expectations' not in sys.modules"
    plugins = Path(__file__).resolve().parents[2] / "plugins"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(plugins)})


def test_warehouse_is_writable_after_a_check(warehouse: Settings) -> None:
    check_raw_events(warehouse, DS, START, END)
    con = duckdb.connect(str(warehouse.duckdb_path))
    try:
        con.execute("insert into raw.events select * from raw.events limit 0")
    finally:
        con.close()
