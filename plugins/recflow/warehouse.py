"""Warehouse access: one place that opens connections to the warehouse.

The embedded profile's warehouse is a DuckDB file. DuckDB lets one process
write a file at a time, so every Airflow task that touches it runs in the
``warehouse`` pool (one slot in the embedded profile); here we only open and
close connections promptly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from recflow.config import Settings

WAREHOUSE_POOL = "warehouse"
RAW_SCHEMA = "raw"
ANALYTICS_SCHEMA = "analytics"
QUALITY_SCHEMA = "quality"


@contextmanager
def connect(settings: Settings, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection to the warehouse file, closed on exit."""
    path = settings.duckdb_path
    if read_only and not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist yet: run the recsys_warehouse DAG first")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
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
