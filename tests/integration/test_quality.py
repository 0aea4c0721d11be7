"""The training-marts suite against a real DuckDB warehouse file, through Great Expectations.

The suite keeps what dbt does not say (its volume); the marts' invariants are dbt tests, whose
refusals are tested in ``test_dbt_build.py``.

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
    failure: ExpectationFailure = err.report.failures[0]
    return failure


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
    assert report.evaluated == 1
    assert report.suite == "training_marts"


def test_an_empty_mart_is_refused(marts: Settings) -> None:
    _sql(marts, f"delete from {TI}")

    err = _marts_fail(marts)

    failure = _only_failure(err)
    assert failure.expectation == "expect_table_row_count_to_be_between"
    assert failure.observed == "observed 0, expected 1 .. inf"
    message = str(err)
    assert "there is something to train on" in message
    assert f"Evidence: select count(*) from {TI}" in message


def test_the_invariants_dbt_owns_are_not_checked_again(marts: Settings) -> None:
    """Each of these breaks fails its dbt test (tests/integration/test_dbt_build.py), not this suite."""
    _sql(marts, f"update {TI} set split = 'holdout' where user_id = 'u1' and pin_id = 'p2'")
    _sql(marts, f"update {TI} set split = 'train' where user_id = 'u3'")
    _sql(marts, f"update {TI} set event_ts = '2026-01-01 09:00:00+00' where pin_id = 'p10'")
    _sql(marts, f"insert into {TI} values ('u1', 'p999', 1.0, 1, '2026-01-01 08:00:00+00', 'train')")
    _sql(marts, "delete from analytics.dim_users where user_id = 'u2'")
    _sql(marts, f"update {TI} set weight = 0 where pin_id = 'p1' and user_id = 'u1'")
    _sql(marts, f"update {TI} set split = 'test' where user_id = 'u2'")
    _sql(marts, f"update {TI} set weight = null where user_id = 'u3'")

    assert check_training_marts(marts).success


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
    _sql(marts, f"delete from {TI}")
    err = _marts_fail(marts)
    assert isinstance(err, DataVerdict)
    assert err.columns == ()
    assert "there is something to train on" in err.check
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.report == err.report and again.columns == err.columns


def test_warehouse_is_writable_after_a_check(marts: Settings) -> None:
    check_training_marts(marts)
    con = duckdb.connect(str(marts.duckdb_path))
    try:
        con.execute("insert into analytics.dim_pins select * from analytics.dim_pins limit 0")
    finally:
        con.close()


def test_an_expectation_that_cannot_be_evaluated_is_no_verdict_and_is_retried(marts: Settings) -> None:
    """A query GX cannot run (here a column the asset lacks; on Spark, a driver out of memory) says nothing
    about the data: no refusal, no data verdict, but a retryable infrastructure error naming it."""
    from great_expectations.expectations.core.expect_column_values_to_be_null import (
        ExpectColumnValuesToBeNull,
    )

    from recflow.quality._gx import Asset, SuiteNotEvaluated, rule, run_suite

    asset = Asset(
        name="training_interactions",
        query=f"select * from {TI}",
        expectations=[ExpectColumnValuesToBeNull(column="no_such_column", **rule("nulls", "a check"))],
    )
    with pytest.raises(SuiteNotEvaluated) as caught:
        run_suite(marts, "training_marts", [asset])
    err = caught.value
    assert not isinstance(err, DataVerdict) and err.retryable
    assert err.runbook == "infrastructure"
    assert "expect_column_values_to_be_null (nulls): could not be evaluated" in str(err)
