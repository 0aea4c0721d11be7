"""``recflow sql``: one read-only query on the configured warehouse, for the runbooks' look at the
quarantine and the audit records (DuckDB has no command of its own in the project's environment, and
the same query runs on PostgreSQL and Spark).

The warehouse is opened read-only (DuckDB and PostgreSQL enforce it; a Thrift session to Spark has
no such mode), and the statement must be one query that reads: it is refused, before the warehouse
is opened, unless it is one statement, its first word is one of :data:`READ_VERBS` and no keyword of
:data:`WRITES` is in it. A query the engine refuses (a typo, a missing table) is one line: the
engine's own message. So is a warehouse that cannot be opened (a DuckDB file a running task holds, a
server that does not answer): the engine's error, by its type, names the engine and the place, never
a password.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from recflow.core.config import Settings
from recflow.core.errors import ConfigError, WarehouseUnavailable
from recflow.core.urls import shown_url
from recflow.warehouse import Warehouse, connect, is_spark_url
from recflow.warehouse.duckdb import require_file

READ_VERBS = ("select", "with", "show", "describe", "explain", "values", "table", "from")
"""The first words of a statement that reads (``from`` opens DuckDB's ``from t select …``)."""

WRITES = frozenset(
    [
        "insert",
        "update",
        "delete",
        "merge",
        "upsert",
        "replace",
        "drop",
        "create",
        "alter",
        "truncate",
        "overwrite",
        "grant",
        "revoke",
        "copy",
        "attach",
        "detach",
        "load",
        "vacuum",
        "checkpoint",
        "cache",
        "uncache",
        "refresh",
        "msck",
    ]
)
"""Keywords that write: refused anywhere in the statement (``with t as (…) insert …`` starts by
reading, and a Thrift session to Spark has no read-only mode to stop it)."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    more: bool
    """Whether the query had rows past the limit."""


def read_only_statement(sql: str) -> str:
    """``sql`` as one statement, or :class:`ConfigError` when it is not one query that only reads.

    Told apart by sqlparse's tokenizer, which reads quotes (with backslash escapes), quoted
    identifiers and comments as the engines do, so a ``;``, a quote or a keyword inside one of them
    counts for nothing, and one outside them counts wherever it is.

    The tokens are split into statements as ``sqlparse.split`` does, not grouped into a tree as
    ``sqlparse.parse`` does: the check reads every token and needs no tree, and the grouping is what
    sqlparse caps (``MAX_GROUPING_TOKENS``, ``MAX_GROUPING_DEPTH``, against run-away work), so a long
    query is read whole, in time linear in its length, and is never refused, or let through, for it."""
    from sqlparse import tokens  # noqa: PLC0415 (only this command needs it)
    from sqlparse.engine import FilterStack  # noqa: PLC0415

    stack: Any = FilterStack()  # type: ignore[no-untyped-call]
    statements = [(s, words) for s in stack.run(sql) if (words := _words(s, tokens))]
    if len(statements) != 1:
        raise ConfigError(
            "recflow sql runs one statement at a time: "
            + (f"the text holds {len(statements)}" if statements else "the text holds none")
        )
    statement, words = statements[0]
    first = next((t for t in words if not (t.ttype in tokens.Punctuation and t.value == "(")), words[0])
    verb = first.value.split(None, 1)[0].lower()  # a keyword of several words: ``create or replace``
    reads = ", ".join(READ_VERBS)
    if verb in WRITES:
        raise ConfigError(
            f"recflow sql runs one query that reads ({reads}); {verb!r} is not one of "
            "them: the warehouse is changed only by the pipeline's tasks"
        )
    if verb not in READ_VERBS:
        raise ConfigError(
            f"{first.value[:40]!r} is not a statement recflow sql runs; it runs one query that reads ({reads})"
        )
    for token in words:
        written = [w for w in token.value.lower().split() if w in WRITES]
        if token.ttype in tokens.Keyword and written:
            word = written[0]
            raise ConfigError(
                f"recflow sql runs queries that only read: {word!r} writes (the warehouse is changed "
                f'only by the pipeline\'s tasks; a column of that name is read quoted: "{word}", on Spark `{word}`)'
            )
    return str(statement).strip().rstrip(";").strip()


def _words(statement: Any, tokens: Any) -> list[Any]:
    """The statement's tokens less whitespace, comments and ``;`` (none: the text holds no statement)."""
    return [
        t
        for t in statement.flatten()
        if not (
            t.is_whitespace or t.ttype in tokens.Comment or (t.ttype in tokens.Punctuation and t.value == ";")
        )
    ]


def run_query(settings: Settings, sql: str, limit: int) -> QueryResult:
    """The columns and first ``limit`` rows (at least 1: the command's ``--limit`` refuses less) of
    ``sql`` on the settings' warehouse, opened read-only."""
    statement = read_only_statement(sql)
    with ExitStack() as stack:
        warehouse = open_warehouse(settings, stack)
        try:
            rows: Any = warehouse.execute(statement)
            columns = [str(d[0]) for d in rows.description or ()]
            fetched = [tuple(r) for r in rows.fetchmany(limit + 1)]
        # the engine's own errors only: a bug of ours keeps its traceback
        except _query_errors(warehouse.dialect.name) as exc:
            said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{warehouse.dialect.name} refused the query: {said}") from exc
    return QueryResult(columns, fetched[:limit], len(fetched) > limit)


READ_LOCK_WAIT = 10.0
"""How long a command waits for a DuckDB file a task holds before it says so: a task's hold is seconds
(land, audit) to minutes (the dbt build), and a person is waiting."""


def open_warehouse(settings: Settings, stack: ExitStack, *, read_only: bool = True) -> Warehouse:
    """The settings' warehouse, read-only unless said, closed with ``stack``; :class:`ConfigError`, naming
    the engine and the place, when the engine's driver cannot open it. A DuckDB file that does not exist
    is refused whatever ``read_only`` says: a command does not make the pipeline's warehouse."""
    url = settings.warehouse_url
    if not url:
        named = "RECFLOW_WAREHOUSE_PATH" if settings.warehouse_path else "under RECFLOW_HOME"
        engine, place = "DuckDB", f"{settings.duckdb_path} ({named})"
        password = ""
    else:
        from sqlalchemy.engine import make_url  # noqa: PLC0415 (driver: not at start-up)
        from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError) as exc:  # not a URL; a port that is not a number
            raise ConfigError(
                "RECFLOW_WAREHOUSE_URL is not a URL of a warehouse (postgresql://user:password@host:5432/db, "
                "hive://user@host:10000/default); its value is not repeated here: it may hold a password",
                invalid=("RECFLOW_WAREHOUSE_URL",),
            ) from exc
        engine = "Spark" if is_spark_url(url) else "PostgreSQL"
        place = f"{shown_url(url)} (RECFLOW_WAREHOUSE_URL)"
        password = parsed.password or ""
    try:
        if not url:  # opened to write too, a command does not make the pipeline's file
            require_file(settings.duckdb_path)
        return stack.enter_context(connect(settings, read_only=read_only, lock_wait=READ_LOCK_WAIT))
    except FileNotFoundError as exc:  # a DuckDB file the pipeline has not made yet
        raise ConfigError(str(exc)) from None
    except _connection_errors(engine) as exc:
        # the driver's words: the address and the setting are this message's own
        error = exc.__cause__ if isinstance(exc, WarehouseUnavailable) and exc.__cause__ else exc
        text = str(error).replace(password, "***") if password else str(error)
        said = " ".join(text.split()) or type(exc).__name__  # a driver's message may span several lines
        if engine == "DuckDB" and "Conflicting lock" in said:  # DuckDB's one type for every I/O error
            holder = re.search(r"\(PID (\d+)\)", said)
            raise ConfigError(
                f"the DuckDB warehouse {settings.duckdb_path} is held by a running task"
                + (f" (process {holder.group(1)})" if holder else "")
                + ": DuckDB lets no other process open a file while one writes it; "
                "try again when the task ends"
            ) from exc
        raise ConfigError(f"cannot open the {engine} warehouse {place}: {said}") from exc


def _connection_errors(engine: str) -> tuple[type[BaseException], ...]:
    """The exception types of ``engine``'s driver (imported on a failure only: the driver is loaded), and for
    a server the :class:`WarehouseUnavailable` that ``connect`` makes of its refusal to open."""
    if engine == "DuckDB":
        import duckdb  # noqa: PLC0415 (driver: not at start-up)

        return (duckdb.Error,)  # a file, not a server: never WarehouseUnavailable
    if engine == "PostgreSQL":
        import psycopg2  # noqa: PLC0415

        return (WarehouseUnavailable, psycopg2.Error)
    try:
        from pyhive import exc  # noqa: PLC0415 (an optional package)
        from thrift.Thrift import TException  # noqa: PLC0415
    except ImportError:
        return (WarehouseUnavailable,)
    return (WarehouseUnavailable, exc.Error, TException)


def _query_errors(dialect: str) -> tuple[type[BaseException], ...]:
    """What an engine raises for a query it refuses or fails: its driver's errors, and on Spark what
    :func:`~recflow.warehouse.spark.spark_errors` makes of them."""
    engine = {"duckdb": "DuckDB", "postgresql": "PostgreSQL"}.get(dialect, "Spark")
    if engine != "Spark":
        return _connection_errors(engine)
    from recflow.warehouse.spark_errors import SparkStatementFailed  # noqa: PLC0415 (only on Spark)

    return (*_connection_errors(engine), SparkStatementFailed)


def table_lines(result: QueryResult) -> list[str]:
    """The result as an aligned text table, with a line saying when rows were left out."""
    cells = [result.columns, *([_cell(v) for v in row] for row in result.rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(result.columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    count = f"{len(result.rows)} row{'s' if len(result.rows) != 1 else ''}"
    lines.append(f"({count}; more past --limit)" if result.more else f"({count})")
    return lines


def _cell(value: Any) -> str:
    return "NULL" if value is None else str(value)
