"""The training-marts suite against a real DuckDB warehouse file, through Great Expectations.

(The raw-events audit has its own tests: ``test_audit.py``.)
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from recflow.core.config import Settings
from recflow.core.errors import DataQualityError, DataVerdict
from recflow.quality import ExpectationFailure, check_training_marts
from recflow.warehouse import connect

pytestmark = pytest.mark.integration


def _settings(home: Path, **env: str) -> Settings:
    return Settings.from_env({"RECFLOW_HOME": str(home), **env})


def _only_failure(err: DataQualityError) -> ExpectationFailure:
    assert not err.report.success
    assert len(err.report.failures) == 1, err.report.summary()
    return err.report.failures[0]


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
    assert "Evidence: the offending ids above" in message


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


def test_marts_error_is_a_data_verdict_that_survives_pickling(marts: Settings) -> None:
    _sql(marts, f"update {TI} set split = 'holdout' where user_id = 'u1' and pin_id = 'p2'")
    err = _marts_fail(marts)
    assert isinstance(err, DataVerdict)
    assert err.columns == ("n_holdout",)
    assert "at most one holdout pair per user" in err.check
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.report == err.report and again.columns == err.columns


def test_warehouse_is_writable_after_a_check(marts: Settings) -> None:
    check_training_marts(marts)
    con = duckdb.connect(str(marts.duckdb_path))
    try:
        con.execute("insert into analytics.dim_pins select * from analytics.dim_pins limit 0")
    finally:
        con.close()
