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
