"""Warehouse access: one interface, a DuckDB and a PostgreSQL implementation.

Every step that touches the warehouse (``land``, the audit, the quality suites,
``snapshot``) goes through :class:`Warehouse`, opened by :func:`connect`:

- :class:`DuckDBWarehouse`, the embedded profile's DuckDB file. DuckDB lets one process
  write a file at a time, so every Airflow task that touches it runs in the
  ``warehouse`` pool (one slot in the embedded profile);
- :class:`PostgresWarehouse`, a server named by ``RECFLOW_WAREHOUSE_URL``
  (``postgresql://user:password@host:5432/db``), through psycopg2: bulk loads stream
  Arrow as CSV into ``COPY ... FROM STDIN``, fetches stream a server-side cursor into
  Arrow batch by batch.

The steps write their SQL once, in the subset both engines agree on (``exists`` /
``not exists`` for semi and anti joins, aliased sub-queries, ``cardinality``,
``count(*) filter``, typed literals); what differs is named in :class:`Dialect`.
Statements take ``?`` placeholders on both engines.

``duckdb``, ``psycopg2`` and ``pyarrow`` are imported when a connection is opened,
not when this module is (it is imported while DAG files are parsed).

Schemas: ``raw_staging`` holds what ``land`` wrote and the audit has not published
yet; ``raw`` holds published days only (all that dbt reads); ``quality`` holds the
quarantine and the audit records; ``analytics`` holds dbt's models.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from recflow.core.config import Settings
from recflow.warehouse.base import (
    ANALYTICS_SCHEMA,
    EXPORT_BATCH_ROWS,
    QUALITY_SCHEMA,
    RAW_SCHEMA,
    RUN_METADATA_COLUMNS,
    STAGING_SCHEMA,
    WAREHOUSE_POOL,
    Dialect,
    Rows,
    Warehouse,
    table_exists,
)
from recflow.warehouse.checksum import content_checksum
from recflow.warehouse.duckdb import DUCKDB, DuckDBWarehouse
from recflow.warehouse.postgres import POSTGRES, PostgresDialect, PostgresWarehouse

__all__ = [
    "ANALYTICS_SCHEMA",
    "DUCKDB",
    "EXPORT_BATCH_ROWS",
    "POSTGRES",
    "QUALITY_SCHEMA",
    "RAW_SCHEMA",
    "RUN_METADATA_COLUMNS",
    "STAGING_SCHEMA",
    "WAREHOUSE_POOL",
    "Dialect",
    "DuckDBWarehouse",
    "PostgresDialect",
    "PostgresWarehouse",
    "Rows",
    "Warehouse",
    "connect",
    "content_checksum",
    "sqlalchemy_url",
    "table_exists",
]


@contextmanager
def connect(settings: Settings, *, read_only: bool = False) -> Iterator[Warehouse]:
    """The warehouse of ``settings`` (PostgreSQL when ``warehouse_url`` is set, else the DuckDB file),
    closed on exit."""
    warehouse: Warehouse
    if settings.warehouse_url:
        warehouse = PostgresWarehouse(settings.warehouse_url, read_only=read_only)
    else:
        warehouse = DuckDBWarehouse(
            settings.duckdb_path, read_only=read_only, memory_limit=settings.duckdb_memory_limit
        )
    try:
        yield warehouse
    finally:
        warehouse.close()


def sqlalchemy_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the warehouse (duckdb-engine for the file), for tools that speak SQLAlchemy."""
    return settings.warehouse_url or f"duckdb:///{settings.duckdb_path}"
