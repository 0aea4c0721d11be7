"""``recflow sql``: one read-only query on the configured warehouse, for the runbooks' look at the
quarantine and the audit records (DuckDB has no command of its own in the project's environment, and
the same query runs on PostgreSQL and Spark).

The warehouse is opened read-only (DuckDB and PostgreSQL enforce it; a Thrift session to Spark has
no such mode), and the statement must be one query that reads: it is refused, before the warehouse
is opened, unless it is one statement, its first word is one of :data:`READ_VERBS` and no keyword of
:data:`WRITES` is in it. A query the engine refuses (a typo, a missing table) is one line: the
engine's own message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from recflow.core.config import Settings
from recflow.core.errors import ConfigError
from recflow.warehouse import connect

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
    counts for nothing, and one outside them counts wherever it is."""
    import sqlparse  # noqa: PLC0415 (only this command needs it)
    from sqlparse import tokens  # noqa: PLC0415

    statements = [s for s in sqlparse.parse(sql) if _first(s) is not None]
    if len(statements) != 1:
        raise ConfigError(
            "recflow sql runs one statement at a time: "
            + (f"the text holds {len(statements)}" if statements else "the text holds none")
        )
    statement = statements[0]
    first = _first(statement)
    verb = re.sub(r"^[(\s]+", "", str(first)).split(None, 1)[0].lower()
    if verb not in READ_VERBS:
        raise ConfigError(
            f"recflow sql runs one query that reads ({', '.join(READ_VERBS)}); {verb!r} is not one of "
            "them: the warehouse is changed only by the pipeline's tasks"
        )
    for token in statement.flatten():  # type: ignore[no-untyped-call]
        word = token.normalized.lower()
        if token.ttype in tokens.Keyword and word in WRITES:
            raise ConfigError(
                f"recflow sql runs queries that only read: {word!r} writes (the warehouse is changed "
                f'only by the pipeline\'s tasks; a column of that name is read quoted: "{word}")'
            )
    return str(statement).strip().rstrip(";").strip()


def _first(statement: Any) -> Any:
    """The statement's first token that is neither whitespace nor a comment (``None``: it has none)."""
    return statement.token_first(skip_cm=True, skip_ws=True)


def run_query(settings: Settings, sql: str, limit: int) -> QueryResult:
    """The columns and first ``limit`` rows (at least 1: the command's ``--limit`` refuses less) of
    ``sql`` on the settings' warehouse, opened read-only."""
    statement = read_only_statement(sql)
    try:
        with connect(settings, read_only=True) as warehouse:
            try:
                rows: Any = warehouse.execute(statement)
                columns = [str(d[0]) for d in rows.description or ()]
                fetched = [tuple(r) for r in rows.fetchmany(limit + 1)]
            except Exception as exc:
                said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"{warehouse.dialect.name} refused the query: {said}") from exc
    except FileNotFoundError as exc:  # a DuckDB file the pipeline has not made yet
        raise ConfigError(str(exc)) from None
    return QueryResult(columns, fetched[:limit], len(fetched) > limit)


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
