"""A failed Spark statement in one line: PyHive's error is the server's whole ``TStatus``, thousands of
characters of Java frames around the one message that says what broke (``errorMessage``: Spark's error
class, its text and SQLSTATE). The task's log and its ON-CALL line show that message and the
statement; PyHive's error stays attached as the cause, so nothing is lost."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from contextlib import contextmanager

from recflow.core.errors import ConfigError, EngineFailed, WarehouseUnavailable, first_line

STATEMENT_CHARS = 300
"""How much of the statement the message repeats (its start names the table and the step)."""


class SparkStatementFailed(EngineFailed):
    """Spark refused a statement or failed while running it (a missing table, an executor lost, out of
    memory). Not a verdict on the data: the kind is ``infrastructure`` and the task keeps its retries."""

    def __init__(self, spark_says: str, statement: str) -> None:
        super().__init__(
            f"Spark failed the statement: {spark_says.strip()}; the statement: {_shown(statement)}"
            f"{_leftover_advice(spark_says)}"
        )
        self.spark_says = spark_says
        self.statement = statement

    def __reduce__(self) -> tuple[type[SparkStatementFailed], tuple[str, str]]:
        # rebuilt from what it was made of (its args hold the composed message, not these two)
        return type(self), (self.spark_says, self.statement)

    @property
    def missing_table(self) -> bool:
        return "[TABLE_OR_VIEW_NOT_FOUND]" in self.spark_says


_LEFTOVER = re.compile(r"\[LOCATION_ALREADY_EXISTS\].*?associated location '([^']+)'", re.DOTALL)
"""Spark refusing to create a managed table over a folder that no table owns, and that folder."""


def _leftover_advice(said: str) -> str:
    """What to do when a create was refused for a folder a cut-off write left: no try can succeed until
    it is removed (Spark creates a managed table only over a missing or empty folder, whatever the
    session says), and only someone with the cluster's storage can remove it."""
    found = _LEFTOVER.search(said)
    if found is None:
        return ""
    return (
        f". The folder {found.group(1)} is what a write cut off mid-way (the Thrift server or the cluster "
        "lost) left, with no table owning it; every try fails on it until it is removed: remove it (`rm -r` "
        "on a file: path of the cluster's machine, `hdfs dfs -rm -r` on HDFS) and clear the task"
    )


def _shown(statement: str) -> str:
    """The statement on one line, its first :data:`STATEMENT_CHARS` characters."""
    flat = " ".join(statement.split())
    return flat if len(flat) <= STATEMENT_CHARS else flat[: STATEMENT_CHARS - 1] + "…"


def spark_says(error: BaseException) -> str:
    """Spark's own message in PyHive's error (the response's ``status.errorMessage``), else its text."""
    status = getattr(error.args[0] if error.args else None, "status", None)
    message = getattr(status, "errorMessage", None)
    return str(message) if message else str(error)


_ERROR_MESSAGE = re.compile(r"""errorMessage=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
"""``errorMessage=`` and the Python literal of Spark's message, in the text of PyHive's error."""


def spark_says_in(text: str) -> str | None:
    """Spark's own message in the *text* of PyHive's error, where only the text travelled (SQLAlchemy's
    wrapper, as Great Expectations reports a query it could not run); None when there is none."""
    found = _ERROR_MESSAGE.search(text)
    if found is None:
        return None
    try:
        message = ast.literal_eval(found.group(1))
    except (ValueError, SyntaxError):
        return None
    return message if isinstance(message, str) and message.strip() else None


@contextmanager
def spark_errors(statement: str) -> Iterator[None]:
    """Raise PyHive's database errors within as :class:`SparkStatementFailed` for ``statement``, and a
    connection to the Thrift server lost meanwhile (Thrift's transport error) as ``WarehouseUnavailable``."""
    from pyhive import exc  # noqa: PLC0415 (driver, an optional package: not at DAG parse time)
    from thrift.transport.TTransport import TTransportException  # noqa: PLC0415 (PyHive's transport)

    try:
        yield
    except TTransportException as error:
        raise WarehouseUnavailable(
            f"lost the Spark Thrift server while it ran a statement ({type(error).__name__}: "
            f"{first_line(error)}); the statement: {_shown(statement)}. The server or its machine went away: "
            "bring it back (a local cluster: `recflow spark status`); another try opens a new connection"
        ) from error
    except exc.DatabaseError as error:
        said = spark_says(error)
        if "[DATA_SOURCE_NOT_FOUND]" in said:  # a table format whose jars the cluster lacks: no try helps
            raise ConfigError(
                f"the Spark cluster has no data source for a table format this statement writes or reads: "
                f"{said.strip().splitlines()[0]}; the statement: {_shown(statement)}. Its jars are not on "
                "the cluster: RECFLOW_SPARK_TABLE_FORMAT names the format recflow writes (parquet needs none), "
                "and tables written in another format need that format's jars to be read; retrying does not help"
            ) from error
        raise SparkStatementFailed(said, statement) from error
