"""The DuckDB engine: the embedded profile's warehouse file."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from recflow.warehouse.base import EXPORT_BATCH_ROWS, Dialect, Rows, Warehouse

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

DUCKDB = Dialect()
T = TypeVar("T")
log = logging.getLogger(__name__)

LOCK_WAIT_SECONDS = 60.0
"""How long opening the DuckDB file waits while another process holds it. DuckDB lets no other process
open a file one process writes, nor write one another reads: a task that met a ``recflow sql`` or
``recflow claims`` of on-call (a second's read) failed its try. A task that holds the file (the pool
has one slot with DuckDB) still fails the waiter, after this long, as before."""


def require_file(path: Path) -> None:
    """Refuse a DuckDB file the pipeline has not made yet (a reader, or a command, does not make it)."""
    if not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist yet: run the recsys_warehouse DAG first")


def is_lock_error(error: BaseException) -> bool:
    """DuckDB refused the file because another process holds it."""
    return "Conflicting lock is held" in str(error)  # DuckDB's IOException, or dbt's error around it


def waiting_for_the_file(open_file: Callable[[], T], path: Path, wait: float = LOCK_WAIT_SECONDS) -> T:
    """``open_file()``, tried again every half second for ``wait`` seconds while another process holds
    ``path``; its last lock error after that, any other error at once."""
    deadline = time.monotonic() + wait
    said = False
    while True:
        try:
            return open_file()
        except Exception as exc:
            if not is_lock_error(exc) or time.monotonic() > deadline:
                raise
            if not said:
                log.warning("%s is held by another process (%s): waiting up to %.0f s", path, exc, wait)
                said = True
            time.sleep(0.5)


class DuckDBWarehouse(Warehouse):
    """The embedded warehouse: a DuckDB file."""

    dialect = DUCKDB

    def __init__(
        self, path: Path, *, read_only: bool, memory_limit: str, lock_wait: float = LOCK_WAIT_SECONDS
    ) -> None:
        import duckdb  # noqa: PLC0415 (driver: not at DAG parse time)

        super().__init__()
        if read_only:
            require_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # No ``config=``: DuckDB refuses a second connection to a file that this process already holds
        # open with another configuration, and dbt-duckdb (in-process in the build task, and in
        # ``airflow dags test``, which runs every task in one process) opens it with none. The memory
        # limit is a setting of the database instance, so ``set`` gives it to both connections.
        self.connection: duckdb.DuckDBPyConnection = waiting_for_the_file(
            lambda: duckdb.connect(str(path), read_only=read_only), path, lock_wait
        )
        self.connection.execute(f"set memory_limit = '{memory_limit}'")
        self.location = str(path)
        self.sqlalchemy_url = f"duckdb:///{path}"

    def execute(self, sql: str, params: Sequence[object] | None = None) -> Rows:
        return self.connection.execute(sql, params)

    def close(self) -> None:
        self.connection.close()

    def _view(self, data: pa.Table) -> str:
        name = f"_recflow_arrow_{id(data):x}"
        self.connection.register(name, data)
        return name

    def append_arrow(self, table: str, data: pa.Table, constants: Mapping[str, object] | None = None) -> None:
        constants = constants or {}
        view = self._view(data)
        try:
            names = [f'"{c}"' for c in data.column_names]
            columns = ", ".join([*names, *(f'"{c}"' for c in constants)])
            values = ", ".join([*names, *("?" for _ in constants)])
            self.connection.execute(
                f"insert into {table} ({columns}) select {values} from {view}", list(constants.values())
            )
        finally:
            self.connection.unregister(view)

    def replace_table_with_arrow(self, table: str, data: pa.Table) -> None:
        view = self._view(data)
        try:
            self.execute_all(self.dialect.replace_table_as(table, f"select * from {view}"))
        finally:
            self.connection.unregister(view)

    def fetch_batches(self, query: str) -> Iterator[pa.RecordBatch]:
        self.connection.complete()  # a result of execute() left unread would refuse the query
        reader = self.connection.sql(query).to_arrow_reader(EXPORT_BATCH_ROWS)
        empty = True
        for batch in reader:
            empty = False
            yield batch
        if empty:
            yield _empty_batch(reader.schema)

    def fetch_arrow(self, query: str, params: Sequence[object] | None = None) -> pa.Table:
        self.connection.complete()  # a result of execute() left unread would refuse the query
        return self.connection.sql(query, params=params).to_arrow_table()


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)

    return pa.RecordBatch.from_pylist([], schema=schema)
