"""Warehouse access: one interface, one module per engine; this module opens the right one.

Every step that touches the warehouse (``land``, the audit, the quality suites,
``snapshot``) goes through :class:`Warehouse`, opened by :func:`connect`:

- :class:`DuckDBWarehouse`, the embedded profile's DuckDB file. DuckDB lets one process
  write a file at a time, so every Airflow task that touches it runs in the
  ``warehouse`` pool (one slot in the embedded profile);
- :class:`PostgresWarehouse`, a server named by ``RECFLOW_WAREHOUSE_URL``
  (``postgresql://user:password@host:5432/db``), through psycopg2: bulk loads stream
  Arrow as CSV into ``COPY ... FROM STDIN``, fetches stream a server-side cursor into
  Arrow batch by batch;
- :class:`SparkWarehouse`, a Spark Thrift server named by a ``hive://user@host:10000/default``
  ``RECFLOW_WAREHOUSE_URL`` (``recflow spark up`` starts one on a local standalone cluster),
  through PyHive: Spark reads the landing Parquet itself, a day is a partition, and there is no
  multi-statement transaction (``spark.py`` says what replaces it).

The steps write their SQL once, in the subset both engines agree on (``exists`` /
``not exists`` for semi and anti joins, aliased sub-queries, ``cardinality``,
``count(*) filter``, typed literals); what differs is named in :class:`Dialect`.
Statements take ``?`` placeholders on both engines.

The package:

- ``base``: the interface (:class:`Warehouse`, :class:`Rows`, :class:`Dialect`), the schema and
  pool names, :func:`table_exists`;
- ``duckdb``, ``postgres``, ``spark``: one engine each, a :class:`Warehouse` subclass and its dialect;
- ``checksum``: content checksums of a table (:func:`content_checksum` on one engine, the
  engine-independent ``table_digest`` across engines);
- this module: :func:`connect` and :func:`sqlalchemy_url` (which engine a profile's settings
  name), and the names callers import from ``recflow.warehouse``.

Adding an engine is one module, as ``spark.py`` was: a :class:`Warehouse` subclass
that implements the engine-specific methods, each a named method of the class
(``execute``, ``close``, ``append_arrow``, ``replace_table_with_arrow``, ``fetch_arrow``;
``_begin``/``_end`` where a transaction is not ``begin``/``commit`` statements), and a
:class:`Dialect` subclass that overrides the SQL it spells differently (the base class
spells DuckDB's); then a branch in :func:`connect` and :func:`sqlalchemy_url`. An engine
module imports ``base``, never this module (no import circle).

The package imports ``recflow.core`` only, of recflow. ``duckdb``, ``psycopg2`` and
``pyarrow`` are imported when a connection is opened, not when this package is (it is
imported while DAG files are parsed).

Schemas: ``raw_staging`` holds what ``land`` wrote and the audit has not published
yet; ``raw`` holds published days only (all that dbt reads); ``quality`` holds the
quarantine and the audit records; ``analytics`` holds dbt's models.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from recflow.core.config import Settings
from recflow.core.errors import WarehouseUnavailable, first_line
from recflow.core.urls import shown_url
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
from recflow.warehouse.duckdb import DUCKDB, LOCK_WAIT_SECONDS, DuckDBWarehouse
from recflow.warehouse.postgres import POSTGRES, PostgresDialect, PostgresWarehouse
from recflow.warehouse.spark import SparkDialect, SparkWarehouse

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
    "SparkDialect",
    "SparkWarehouse",
    "Warehouse",
    "connect",
    "content_checksum",
    "is_spark_url",
    "sqlalchemy_url",
    "table_exists",
]

log = logging.getLogger(__name__)


@contextmanager
def connect(
    settings: Settings, *, read_only: bool = False, lock_wait: float = LOCK_WAIT_SECONDS
) -> Iterator[Warehouse]:
    """The warehouse of ``settings``, closed on exit: Spark's Thrift server for a ``hive://``
    ``warehouse_url``, PostgreSQL for another, else the DuckDB file (waiting up to ``lock_wait`` seconds
    while another process holds it)."""
    warehouse: Warehouse
    if settings.warehouse_url:
        warehouse = _open_server(settings, settings.warehouse_url, read_only=read_only)
    else:
        warehouse = DuckDBWarehouse(
            settings.duckdb_path,
            read_only=read_only,
            memory_limit=settings.duckdb_memory_limit,
            lock_wait=lock_wait,
        )
    try:
        yield warehouse
    except BaseException:
        # the error that ended the work is the one to report: a close that fails too (the server went away,
        # which is often why the work failed) is logged, and would otherwise replace it
        try:
            warehouse.close()
        except Exception as closing:
            log.warning("closing the warehouse %s after an error failed too: %s", warehouse.location, closing)
        raise
    warehouse.close()


def _open_server(settings: Settings, url: str, *, read_only: bool) -> Warehouse:
    """A server warehouse; one that cannot be opened is a :class:`WarehouseUnavailable` naming its address
    and the two settings that give it, since the driver's words name neither."""
    try:
        if is_spark_url(url):
            return SparkWarehouse(url, read_only=read_only, table_format=settings.spark.table_format)
        return PostgresWarehouse(url, read_only=read_only)
    except ImportError:  # a driver not installed is the deployment's, said as Python says it
        raise
    except Exception as exc:
        reason = first_line(exc)
        conn_id = settings.warehouse_conn_id
        raise WarehouseUnavailable(
            f"cannot open the warehouse {shown_url(url)}: {type(exc).__name__}: {reason}. Its address is "
            f"the Airflow connection {conn_id} in a task when that connection exists, else "
            f"RECFLOW_WAREHOUSE_URL (`recflow airflow connections get {conn_id}` shows it): bring the "
            "server back or correct the address"
        ) from exc


def is_spark_url(url: str) -> bool:
    """Whether a warehouse URL names a Spark Thrift server (``hive://``, PyHive's SQLAlchemy scheme)."""
    return url.split("://", 1)[0].split("+", 1)[0] == "hive"


def sqlalchemy_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the warehouse (duckdb-engine for the file), for tools that speak SQLAlchemy."""
    return settings.warehouse_url or f"duckdb:///{settings.duckdb_path}"
