"""``recflow sql QUERY``: one read-only query on the warehouse (``recflow.warehouse.query``)."""

from __future__ import annotations

import argparse
import json

from recflow.cli.args import Subcommands, positive_int
from recflow.core.config import Settings


def cmd_sql(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.warehouse.query import run_query, table_lines  # noqa: PLC0415 (drivers: not at start-up)

    result = run_query(settings, args.query, args.limit)
    if args.json:
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
    sql.add_argument("--limit", type=positive_int, default=100, help="rows shown at most (default 100)")
    sql.add_argument("--json", action="store_true", help="the rows as JSON objects")
    sql.set_defaults(func=cmd_sql)
