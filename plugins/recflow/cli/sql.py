"""``recflow sql QUERY``: one read-only query on the warehouse (``recflow.warehouse.query``)."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from recflow.cli.args import Subcommands, count_up_to
from recflow.core.config import Settings
from recflow.core.errors import ConfigError

MAX_LIMIT = 1_000_000
"""The most rows ``--limit`` shows: they are held in memory and printed at once (and the engines'
``fetchmany`` takes a machine integer, not any number Python reads)."""


row_limit = count_up_to(MAX_LIMIT, "rows")
"""``--limit``: a count from 1 to :data:`MAX_LIMIT`, refused by argparse otherwise."""


def cmd_sql(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.warehouse.query import run_query, table_lines  # noqa: PLC0415 (drivers: not at start-up)

    result = run_query(settings, args.query, args.limit)
    if args.json:
        twice = [name for name, count in Counter(result.columns).items() if count > 1]
        if twice:  # a JSON object keeps one value of a key: the others would be lost
            raise ConfigError(
                f"recflow sql --json: the query has more than one column named {twice[0]!r}, and a JSON "
                f"object holds one value per name: name each apart with `as` (… as {twice[0]}_2), "
                "or leave out --json for the table"
            )
        print(
            json.dumps(
                [dict(zip(result.columns, row, strict=True)) for row in result.rows], indent=2, default=str
            )
        )
    else:
        print("\n".join(table_lines(result)))
    return 0


def add_command(sub: Subcommands) -> None:
    sql = sub.add_parser(
        "sql",
        help="one read-only query on the warehouse (DuckDB, PostgreSQL or Spark, as configured): "
        "the runbooks' look at quality.quarantine_events and quality.partition_audit",
    )
    sql.add_argument("query", help="one select (or with, show, describe, explain) statement")
    sql.add_argument(
        "--limit", type=row_limit, default=100, help=f"rows shown at most, 1 to {MAX_LIMIT:,} (default 100)"
    )
    sql.add_argument("--json", action="store_true", help="the rows as JSON objects")
    sql.set_defaults(func=cmd_sql)
