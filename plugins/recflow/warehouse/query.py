"""``recflow sql``: one read-only query on the configured warehouse, for the runbooks' look at the
quarantine and the audit records (DuckDB has no command of its own in the project's environment, and
the same query runs on PostgreSQL and Spark).

The warehouse is opened read-only (DuckDB and PostgreSQL enforce it; a Thrift session to Spark has
no such mode), and the statement must be one query: it is refused, before the warehouse is opened,
unless its first word is one of :data:`READ_VERBS` and it holds no second statement.
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

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    more: bool
    """Whether the query had rows past the limit."""


def read_only_statement(sql: str) -> str:
    """``sql`` without its trailing ``;``, or :class:`ConfigError` when it is not one reading query."""
    bare = _COMMENTS.sub(" ", _quoted_out(sql)).strip().rstrip(";").strip()
    words = bare.lstrip("(").split(None, 1)
    verb = words[0].lower() if words else ""
    if verb not in READ_VERBS:
        raise ConfigError(
            f"recflow sql runs one query that reads ({', '.join(READ_VERBS)}); {verb or 'an empty statement'!r} "
            "is not one of them: the warehouse is changed only by the pipeline's tasks"
        )
    if ";" in bare:
        raise ConfigError("recflow sql runs one statement at a time: the text holds a ';' between two")
    writes = _WRITES.search(bare)
    if writes:  # `with t as (...) insert ...` reads first; Spark would run it (no read-only session)
        raise ConfigError(
            f"recflow sql runs queries that only read: {writes.group(0)!r} writes (the warehouse is "
            "changed only by the pipeline's tasks)"
        )
    return sql.strip().rstrip(";").strip()


_WRITES = re.compile(
    r"\b(insert|update|delete|merge|drop|create|alter|truncate|overwrite|grant|revoke|copy|attach|"
    r"detach|msck|refresh|cache|uncache|load|vacuum|checkpoint)\b",
    re.I,
)
"""Words that write, outside quotes and comments: refused anywhere in the statement."""


def _quoted_out(text: str) -> str:
    """``text`` without its quoted strings and identifiers (``'…'``, ``"…"``, Spark's backquotes), so a
    ``;``, a comment marker or a word inside one counts for nothing."""
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`(?:[^`]|``)*`", "''", text)


def run_query(settings: Settings, sql: str, limit: int) -> QueryResult:
    """The columns and first ``limit`` rows of ``sql`` on the settings' warehouse, opened read-only."""
    if limit < 1:
        raise ConfigError(f"--limit {limit}: give at least 1 row")
    statement = read_only_statement(sql)
    try:
        with connect(settings, read_only=True) as warehouse:
            rows: Any = warehouse.execute(statement)
            columns = [str(d[0]) for d in rows.description or ()]
            fetched = [tuple(r) for r in rows.fetchmany(limit + 1)]
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
