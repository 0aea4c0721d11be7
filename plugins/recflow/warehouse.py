"""Warehouse access: one place that opens connections to the warehouse.

The embedded profile's warehouse is a DuckDB file. DuckDB lets one process
write a file at a time, so every Airflow task that touches it runs in the
``warehouse`` pool (one slot in the embedded profile); here we only open and
close connections promptly. ``duckdb`` is imported when a connection is opened,
not when this module is (it is imported while DAG files are parsed).

Schemas: ``raw_staging`` holds what ``land`` wrote and the audit has not published
yet; ``raw`` holds published days only (all that dbt reads); ``quality`` holds the
quarantine and the audit records; ``analytics`` holds dbt's models.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from recflow.config import Settings

if TYPE_CHECKING:
    import duckdb

WAREHOUSE_POOL = "warehouse"
STAGING_SCHEMA = "raw_staging"
RAW_SCHEMA = "raw"
ANALYTICS_SCHEMA = "analytics"
QUALITY_SCHEMA = "quality"

RUN_METADATA_COLUMNS = frozenset(
    {"_loaded_at", "loaded_at", "run_id", "quarantined_at", "audited_at", "dbt_invocation_id"}
)
"""Columns that say *when* or *by which run* a row was written: a rerun changes them, not the content."""


@contextmanager
def connect(settings: Settings, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection to the warehouse file, closed on exit."""
    import duckdb

    path = settings.duckdb_path
    if read_only and not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist yet: run the recsys_warehouse DAG first")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        str(path), read_only=read_only, config={"memory_limit": settings.duckdb_memory_limit}
    )
    try:
        yield con
    finally:
        con.close()


def sqlalchemy_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the warehouse (duckdb-engine), for tools that speak SQLAlchemy."""
    return f"duckdb:///{settings.duckdb_path}"


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    row = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(row and row[0])


def content_checksum(
    con: duckdb.DuckDBPyConnection, table: str, exclude: Sequence[str] = tuple(RUN_METADATA_COLUMNS)
) -> tuple[int, str]:
    """(rows, checksum) of a table's content, independent of row order and of run metadata columns.

    Two tables with the same multiset of rows (over the kept columns) have the same
    checksum; it is how reruns prove they changed nothing.
    """
    schema, name = table.split(".", 1)
    columns = [
        str(row[0])
        for row in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, name],
        ).fetchall()
        if row[0] not in exclude
    ]
    if not columns:
        raise ValueError(f"{table} does not exist or has no columns besides {sorted(exclude)}")
    kept = ", ".join(f'"{c}"' for c in columns)
    row = con.execute(
        f"select count(*), coalesce(sum(hash({kept}) % 1000000007), 0), "
        f"coalesce(bit_xor(hash({kept})), 0) from {table}"
    ).fetchone()
    assert row is not None
    return int(row[0]), f"{int(row[1]):x}-{int(row[2]):x}"
