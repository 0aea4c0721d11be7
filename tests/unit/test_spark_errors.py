"""Spark's own message found in the text of PyHive's error, where only the text travelled (Great
Expectations passes on SQLAlchemy's wrapper as a string). The texts are built as PyHive's Thrift
response prints itself: each field ``name=repr(value)``."""

from __future__ import annotations

import pytest

from recflow.warehouse.spark_errors import spark_says_in


def _pyhive_text(error_message: str) -> str:
    frames = [
        "*org.apache.hive.service.cli.HiveSQLException:" + error_message + ":42:41",
        "java.lang.Thread:run",
    ]
    return (
        "(pyhive.exc.OperationalError) TExecuteStatementResp(status=TStatus(statusCode=3, "
        f"infoMessages={frames!r}, sqlState='42P01', errorCode=0, errorMessage={error_message!r}), "
        "operationHandle=None)\n[SQL: SELECT count(*) FROM (select 1) AS anon_1]\n"
        "(Background on this error at: https://sqlalche.me/e/21/e3q8)"
    )


@pytest.mark.parametrize(
    "said",
    [
        "Error running query: [TABLE_OR_VIEW_NOT_FOUND] The table or view `raw`.`x` cannot be found.",
        "a message with 'single' quotes, so Python prints it in double quotes",
        "both ' and \" quotes\nover two lines, with a backslash \\ too",
    ],
)
def test_spark_says_in_finds_the_error_message_whatever_its_quoting(said: str) -> None:
    assert spark_says_in(_pyhive_text(said)) == said


@pytest.mark.parametrize(
    "text",
    [
        "(duckdb.CatalogException) Catalog Error: Table with name x does not exist!",
        _pyhive_text("").replace("errorMessage=''", "errorMessage=None"),
        _pyhive_text("   "),
        "errorMessage='cut off in the middle",
    ],
)
def test_no_message_of_spark_is_none(text: str) -> None:
    assert spark_says_in(text) is None


def test_a_failed_statement_survives_pickling() -> None:
    """Exceptions cross processes pickled (a deferred task's trigger, a pool's worker): rebuilding this
    one from its args gave ``__init__`` one argument of two, a TypeError in place of Spark's words."""
    import pickle

    from recflow.warehouse.spark_errors import SparkStatementFailed

    failed = SparkStatementFailed(
        "[TABLE_OR_VIEW_NOT_FOUND] The table `marts`.`x` cannot be found.", "select 1"
    )
    back = pickle.loads(pickle.dumps(failed))
    assert type(back) is SparkStatementFailed and str(back) == str(failed)
    assert (back.spark_says, back.statement, back.missing_table) == (failed.spark_says, "select 1", True)


def test_a_create_refused_for_a_leftover_folder_says_which_folder_to_remove() -> None:
    """On the Spark walk the Thrift server was killed while `audit` wrote its table: the folder stayed with
    no table in the metastore, and every later try failed on it with no word of what to do."""
    from recflow.warehouse.spark_errors import SparkStatementFailed

    said = (
        "[LOCATION_ALREADY_EXISTS] Cannot name the managed table as `spark_catalog`.`raw_staging`.`audit__20261204`, "
        "as its associated location 'file:/srv/spark/warehouse/raw_staging.db/audit__20261204' already exists. "
        "Please pick a different table name, or remove the existing location first. SQLSTATE: 42710"
    )
    failed = SparkStatementFailed(said, "create table raw_staging.audit__20261204 using parquet as select 1")
    assert (
        "The folder file:/srv/spark/warehouse/raw_staging.db/audit__20261204 is what a write cut off"
        in str(failed)
    )
    assert "remove it" in str(failed) and "clear the task" in str(failed)
    assert str(pickle_round_trip(failed)) == str(failed)
    other = SparkStatementFailed(
        "[TABLE_OR_VIEW_NOT_FOUND] The table `marts`.`x` cannot be found.", "select 1"
    )
    assert "The folder" not in str(other)


def pickle_round_trip(error: BaseException) -> BaseException:
    import pickle

    return pickle.loads(pickle.dumps(error))  # type: ignore[no-any-return]
