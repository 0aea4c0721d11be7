"""The warehouse interface that every engine implements, and what the engines share.

:class:`Warehouse` (statements, transactions, bulk loads, Arrow fetches), :class:`Rows` (what
:meth:`Warehouse.execute` returns), :class:`Dialect` (the SQL that differs between engines), the
schema and pool names, and :func:`table_exists`.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

WAREHOUSE_POOL = "warehouse"
STAGING_SCHEMA = "raw_staging"
RAW_SCHEMA = "raw"
ANALYTICS_SCHEMA = "analytics"
QUALITY_SCHEMA = "quality"

RUN_METADATA_COLUMNS = frozenset(
    {"_loaded_at", "loaded_at", "run_id", "quarantined_at", "audited_at", "dbt_invocation_id"}
)
"""Columns that say *when* or *by which run* a row was written: a rerun changes them, not the content."""

EXPORT_BATCH_ROWS = 100_000
"""Rows per batch when a query's result is streamed (a PostgreSQL fetch, a bulk load's CSV)."""


def placeholders(sql: str, value: Callable[[], str], percent: str = "%") -> str:
    """``sql`` with each ``?`` placeholder outside quotes replaced by ``value()`` (a driver's own marker,
    or a literal), and each ``%`` by ``percent`` (``%%`` where the driver formats with ``%``)."""
    out, quote = [], ""
    for char in sql:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "?":
            out.append(value())
            continue
        out.append(percent if char == "%" else char)
    return "".join(out)


class Rows(Protocol):
    """The result of :meth:`Warehouse.execute` (a DuckDB connection, a DB-API cursor): what every
    engine's rows give (``recflow sql`` reads ``description`` and ``fetchmany``)."""

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchmany(self, size: int) -> list[Any]: ...

    def fetchall(self) -> list[Any]: ...


class Dialect:
    """The SQL that differs between the engines, each difference named once (DuckDB's here).

    An engine whose SQL differs subclasses it and overrides those methods only
    (:class:`~recflow.warehouse.postgres.PostgresDialect`).
    """

    name = "duckdb"

    def create_table(
        self, table: str, columns: Sequence[tuple[str, str]], partitioned_by: Sequence[str] = ()
    ) -> str:
        """``create table if not exists`` of ``columns`` (name, portable type); ``partitioned_by`` names the
        columns a day's rows are replaced by (a partitioned table where the engine has them)."""
        return f"create table if not exists {table} ({', '.join(f'{n} {t}' for n, t in columns)})"

    def column_type(self, sql_type: str) -> str:
        """A portable column type (``varchar``, ``timestamptz``, ``double precision``, ``varchar[]``) as
        this engine spells it, without its ``not null``."""
        return sql_type.replace(" not null", "")

    def timestamp_literal(self, iso: str) -> str:
        """A literal instant (``iso`` with its offset)."""
        return f"timestamptz '{iso}'"

    def nanoseconds_as_timestamp(self, column: str) -> str:
        """A Parquet file's nanosecond timestamp column, read by the engine itself, as an instant (DuckDB
        reads it as one already)."""
        return column

    def double_literal(self, text: str) -> str:
        """A double from its text (``NaN``, ``Infinity``)."""
        return f"'{text}'::double precision"

    def unnest(self, expression: str) -> str:
        """One row per element of the array ``expression`` (in a select list)."""
        return f"unnest({expression})"

    def array_to_string(self, expression: str, separator: str) -> str:
        return f"array_to_string({expression}, '{separator}')"

    def string_type(self) -> str:
        """The type of text in a ``cast``."""
        return "varchar"

    def delete_statement(self, table: str, keys: Mapping[str, str]) -> str:
        """The statement that deletes the rows whose columns equal ``keys`` (SQL literals)."""
        return f"delete from {table} where {' and '.join(f'{k} = {v}' for k, v in keys.items())}"

    def rename_table(self, table: str, new_name: str) -> str:
        """The statement that renames ``schema.table`` to ``new_name`` in its schema."""
        return f"alter table {table} rename to {new_name}"

    def invalid_text(self, column: str) -> str:
        """True for a text value the landing contract refuses that this engine can hold (Spark keeps
        Parquet's bytes as they are; the Arrow path checks them before they reach DuckDB or PostgreSQL)."""
        return "false"

    def replace_table_as(self, table: str, query: str) -> list[str]:
        """Statements that replace ``table`` by the result of ``query``."""
        return [f"create or replace table {table} as {query}"]

    def overwrite_table(self, table: str, query: str) -> list[str]:
        """Statements that make the rows of ``table`` those of ``query`` (creating it if needed), for
        tables that views read (dbt's staging models)."""
        return self.replace_table_as(table, query)

    def serialize_writers(self, table: str) -> list[str]:
        """Statements, inside a transaction, after which no other transaction writes ``table`` until it
        ends (DuckDB: none needed, one process writes the file at a time)."""
        return []

    def day_index(self, table: str, column: str) -> list[str]:
        """Statements that let a query of one value of ``column`` (a day) skip the rest of ``table``
        (DuckDB: none, its min-max zone maps already skip the row groups of other days)."""
        return []

    def non_null_array(self, expressions: Sequence[str]) -> str:
        """An array of the non-null values of ``expressions`` (in their order)."""
        return f"list_filter([{', '.join(expressions)}], lambda r: r is not null)"

    def bytewise(self, expression: str) -> str:
        """A string expression that sorts by code point (as Python does), whatever the database's collation."""
        return expression

    def row_hash(self, columns: str) -> str:
        """A 64-bit hash of a row of ``columns`` (for :func:`content_checksum`; engine-specific values)."""
        return f"hash({columns})"


class Warehouse(ABC):
    """A connection to the warehouse: statements, transactions, bulk loads and Arrow fetches."""

    dialect: Dialect
    transactional = True
    """Whether :meth:`transaction` makes its statements one atomic change (Spark: no, see ``spark.py``)."""
    reads_files = False
    """Whether the engine reads the landing zone's Parquet itself (:meth:`insert_parquet`); else recflow
    reads each file with pyarrow and loads it (:meth:`append_arrow`)."""
    location: str
    """Where the warehouse is, for messages (the file, or the URL without its password)."""
    sqlalchemy_url: str
    """The SQLAlchemy URL of the warehouse, for tools that speak SQLAlchemy (Great Expectations)."""

    def __init__(self) -> None:
        self._depth = 0

    @abstractmethod
    def execute(self, sql: str, params: Sequence[object] | None = None) -> Rows:
        """Run one statement (``?`` placeholders), or several without parameters; fetch from the result."""

    @abstractmethod
    def close(self) -> None: ...

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all; a nested ``transaction`` joins the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._begin()
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._end(commit=False)
            raise
        self._depth = 0
        self._end(commit=True)

    def _begin(self) -> None:
        self.execute("begin transaction")

    def _end(self, *, commit: bool) -> None:
        self.execute("commit" if commit else "rollback")

    def table_exists(self, schema: str, table: str) -> bool:
        row = self.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()
        return bool(row and row[0])

    def columns(self, table: str) -> list[str]:
        """The column names of ``schema.table``, in order (empty when it does not exist)."""
        schema, name = table.split(".", 1)
        return [
            str(row[0])
            for row in self.execute(
                "select column_name from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, name],
            ).fetchall()
        ]

    def execute_all(self, statements: Iterable[str]) -> None:
        """Run ``statements`` (a :class:`Dialect`'s pieces) one after the other."""
        for statement in statements:
            self.execute(statement)

    def delete_where(self, table: str, keys: Mapping[str, object]) -> None:
        """Delete the rows whose columns equal ``keys`` (on Spark: the partition of those keys)."""
        condition = " and ".join(f"{name} = ?" for name in keys)
        self.execute(f"delete from {table} where {condition}", list(keys.values()))

    def replace_day(self, table: str, ds: dt.date, columns: Sequence[str], query: str) -> None:
        """The rows of ``table`` whose ``ds`` is ``ds`` become the rows of ``query`` (whose columns are
        ``columns``, and all of whose rows are of ``ds``)."""
        self.delete_where(table, {"ds": ds})
        names = ", ".join(columns)
        self.execute(f"insert into {table} ({names}) select {names} from ({query}) as q")

    def insert_parquet(
        self, table: str, path: Path, selects: Mapping[str, str], constants: Mapping[str, object]
    ) -> None:
        """Insert the rows of a Parquet file, read by the engine itself (only where :attr:`reads_files`)."""
        raise NotImplementedError(f"{type(self).__name__} does not read Parquet files itself")

    def write_parquet(self, folder: Path, query: str) -> None:
        """The rows of ``query``, in its order, as one Parquet file (``part-*.parquet``) in ``folder``, written
        by the engine itself (only where :attr:`reads_files`)."""
        raise NotImplementedError(f"{type(self).__name__} does not write Parquet files itself")

    @abstractmethod
    def append_arrow(self, table: str, data: pa.Table, constants: Mapping[str, object] | None = None) -> None:
        """Insert ``data``'s columns (by name) into the existing ``table``; ``constants`` fill further
        columns with one value for every row."""

    @abstractmethod
    def replace_table_with_arrow(self, table: str, data: pa.Table) -> None:
        """Replace ``table`` by a table of ``data``'s columns and types."""

    @abstractmethod
    def fetch_batches(self, query: str) -> Iterator[pa.RecordBatch]:
        """The result of ``query`` in record batches of at most ``EXPORT_BATCH_ROWS`` rows, never whole
        in this process; at least one batch (maybe empty), so the result's schema is always known."""

    @abstractmethod
    def fetch_arrow(self, query: str, params: Sequence[object] | None = None) -> pa.Table:
        """The result of ``query`` as an Arrow table."""


def table_exists(con: Warehouse, schema: str, table: str) -> bool:
    return con.table_exists(schema, table)
