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

import io
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from recflow.core.config import Settings

if TYPE_CHECKING:
    import duckdb
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
_COPY_CHUNK = 1 << 20
"""Bytes psycopg2 reads at a time from a bulk load's CSV stream."""


class Rows(Protocol):
    """The result of :meth:`Warehouse.execute` (a DuckDB connection, a DB-API cursor)."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Dialect:
    """The SQL that differs between the engines, each difference named once (DuckDB's here)."""

    name = "duckdb"

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


class PostgresDialect(Dialect):
    name = "postgresql"

    def replace_table_as(self, table: str, query: str) -> list[str]:
        return [f"drop table if exists {table}", f"create table {table} as {query}"]

    def overwrite_table(self, table: str, query: str) -> list[str]:
        # PostgreSQL refuses to drop a table a view depends on: keep the table, replace its rows
        # (``delete``, not ``truncate``: readers keep seeing the old rows until the commit)
        return [
            f"create table if not exists {table} as {query} with no data",
            f"delete from {table}",
            f"insert into {table} {query}",
        ]

    def serialize_writers(self, table: str) -> list[str]:
        # a mode that conflicts with itself and with writers, not with readers (dbt, the checks)
        return [f"lock table {table} in share row exclusive mode"]

    def day_index(self, table: str, column: str) -> list[str]:
        name = f"{table.rsplit('.', maxsplit=1)[-1]}_{column}_idx"
        return [f"create index if not exists {name} on {table} ({column})"]

    def non_null_array(self, expressions: Sequence[str]) -> str:
        return f"array_remove(array[{', '.join(expressions)}]::varchar[], null)"

    def bytewise(self, expression: str) -> str:
        return f'{expression} collate "C"'

    def row_hash(self, columns: str) -> str:
        return f"hashtextextended(row({columns})::text, 0)"


DUCKDB = Dialect()
POSTGRES = PostgresDialect()


class Warehouse(ABC):
    """A connection to the warehouse: statements, transactions, bulk loads and Arrow fetches."""

    dialect: Dialect
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

    @abstractmethod
    def append_arrow(self, table: str, data: pa.Table, constants: Mapping[str, object] | None = None) -> None:
        """Insert ``data``'s columns (by name) into the existing ``table``; ``constants`` fill further
        columns with one value for every row."""

    @abstractmethod
    def replace_table_with_arrow(self, table: str, data: pa.Table) -> None:
        """Replace ``table`` by a table of ``data``'s columns and types."""

    @abstractmethod
    def fetch_arrow(self, query: str, params: Sequence[object] | None = None) -> pa.Table:
        """The result of ``query`` as an Arrow table."""


class DuckDBWarehouse(Warehouse):
    """The embedded warehouse: a DuckDB file."""

    dialect = DUCKDB

    def __init__(self, path: Path, *, read_only: bool, memory_limit: str) -> None:
        import duckdb

        super().__init__()
        if read_only and not path.exists():
            raise FileNotFoundError(
                f"warehouse {path} does not exist yet: run the recsys_warehouse DAG first"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        # No ``config=``: DuckDB refuses a second connection to a file that this process already holds
        # open with another configuration, and dbt-duckdb (in-process under Cosmos, and in
        # ``airflow dags test``, which runs every task in one process) opens it with none. The memory
        # limit is a setting of the database instance, so ``set`` gives it to both connections.
        self.connection: duckdb.DuckDBPyConnection = duckdb.connect(str(path), read_only=read_only)
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

    def fetch_arrow(self, query: str, params: Sequence[object] | None = None) -> pa.Table:
        self.connection.complete()  # a result of execute() left unread would refuse the query
        return self.connection.sql(query, params=params).to_arrow_table()


def _pyformat(sql: str) -> str:
    """``?`` placeholders (outside quotes) as psycopg2's ``%s``; literal ``%`` doubled."""
    out, quote = [], ""
    for char in sql:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append("%%" if char == "%" else char)
    return "".join(out)


def _postgres_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL column type of an Arrow type (those the landing contract and the marts use)."""
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{_postgres_type(t.value_type)}[]"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    kinds = (
        (pa.types.is_null, "varchar"),
        (pa.types.is_string, "varchar"),
        (pa.types.is_large_string, "varchar"),
        (pa.types.is_string_view, "varchar"),
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_int8, "smallint"),
        (pa.types.is_int16, "smallint"),
        (pa.types.is_int32, "integer"),
        (pa.types.is_int64, "bigint"),
        (pa.types.is_float32, "real"),
        (pa.types.is_float64, "double precision"),
        (pa.types.is_date, "date"),
    )
    for matches, sql_type in kinds:
        if matches(t):
            return sql_type
    raise TypeError(f"no PostgreSQL column type for Arrow type {t}")


def _array_literals(column: pa.Array) -> pa.Array:
    """A list column as PostgreSQL array literals (``{"a","b"}``), null lists kept null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pc.cast(column.values, pa.string())
    escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    quoted = pc.fill_null(pc.binary_join_element_wise('"', escaped, '"', ""), "NULL")
    lists = pa.ListArray.from_arrays(column.offsets, quoted, mask=column.is_null())
    joined = pc.binary_join(lists, ",")
    return pc.binary_join_element_wise("{", joined, "}", "")


def _csv_ready(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with the columns Arrow's CSV writer cannot write (lists) as PostgreSQL literals."""
    import pyarrow as pa

    columns = [
        _array_literals(column.cast(pa.list_(column.type.value_type)))
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
        else column
        for column in batch.columns
    ]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


class _CsvStream(io.RawIOBase):
    """Arrow record batches read as one CSV stream (for ``COPY ... FROM STDIN``), a batch at a time."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        super().__init__()
        self._batches = batches
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        import pyarrow.csv as pcsv

        while not self._buffer:
            batch = next(self._batches, None)
            if batch is None:
                return 0
            sink = io.BytesIO()
            pcsv.write_csv(batch, sink, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
            self._buffer = sink.getbuffer()
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]  # a view: no copy of the rest
        return n


_OID_TYPES = {
    16: "bool",
    20: "int64",
    21: "int16",
    23: "int32",
    25: "string",
    700: "float32",
    701: "float64",
    1043: "string",
    1042: "string",
    1082: "date32",
    1114: "timestamp",
    1184: "timestamptz",
    1700: "numeric",
    1009: "list<string>",
    1015: "list<string>",
    1016: "list<int64>",
    1007: "list<int32>",
    1022: "list<float64>",
}
"""PostgreSQL type OIDs and the Arrow types their values are fetched as."""


def _arrow_type(name: str) -> pa.DataType:
    import pyarrow as pa

    simple = {
        "bool": pa.bool_(),
        "int64": pa.int64(),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "string": pa.string(),
        "float32": pa.float32(),
        "float64": pa.float64(),
        "numeric": pa.float64(),
        "date32": pa.date32(),
        "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
    }
    if name.startswith("list<"):
        return pa.list_(simple[name[5:-1]])
    return simple[name]


class PostgresWarehouse(Warehouse):
    """A PostgreSQL warehouse (psycopg2), in autocommit mode outside :meth:`transaction`; sessions in UTC."""

    dialect = POSTGRES

    def __init__(self, url: str, *, read_only: bool) -> None:
        import psycopg2
        from sqlalchemy.engine import make_url

        super().__init__()
        parsed = make_url(url)
        self.sqlalchemy_url = url
        self.location = parsed.render_as_string(hide_password=True)
        libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self.connection = psycopg2.connect(libpq, options="-c TimeZone=UTC")
        self.connection.set_session(readonly=read_only, autocommit=True)
        self._cursor = self.connection.cursor()

    def _begin(self) -> None:
        self.connection.autocommit = False  # psycopg2 opens the transaction (server-side cursors need one)

    def _end(self, *, commit: bool) -> None:
        try:
            if commit:
                self.connection.commit()
            else:
                self.connection.rollback()
        finally:
            self.connection.autocommit = True

    def execute(self, sql: str, params: Sequence[object] | None = None) -> Rows:
        if params:
            self._cursor.execute(_pyformat(sql), list(params))
        else:
            self._cursor.execute(sql)
        rows: Rows = self._cursor
        return rows

    def close(self) -> None:
        self._cursor.close()
        self.connection.close()

    def append_arrow(self, table: str, data: pa.Table, constants: Mapping[str, object] | None = None) -> None:
        import pyarrow as pa

        constants = dict(constants or {})

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in data.to_batches(max_chunksize=EXPORT_BATCH_ROWS):
                extra = [pa.repeat(pa.scalar(value), batch.num_rows) for value in constants.values()]
                yield _csv_ready(
                    pa.RecordBatch.from_arrays(
                        [*batch.columns, *extra], names=[*batch.schema.names, *constants]
                    )
                )

        columns = ", ".join(f'"{c}"' for c in [*data.column_names, *constants])
        with self.connection.cursor() as cursor:
            cursor.copy_expert(
                f"copy {table} ({columns}) from stdin with (format csv)",
                _CsvStream(batches()),
                size=_COPY_CHUNK,
            )

    def replace_table_with_arrow(self, table: str, data: pa.Table) -> None:
        ddl = ", ".join(f'"{f.name}" {_postgres_type(f.type)}' for f in data.schema)
        with self.transaction():
            self.execute(f"drop table if exists {table}")
            self.execute(f"create table {table} ({ddl})")
            self.append_arrow(table, data)

    def _batches(self, query: str, params: Sequence[object] | None) -> Iterator[pa.RecordBatch]:
        """The result of ``query`` in record batches, from a server-side cursor (in a transaction)."""
        import pyarrow as pa

        with self.transaction(), self.connection.cursor(name="recflow_export") as cursor:
            cursor.itersize = EXPORT_BATCH_ROWS
            cursor.execute(_pyformat(query) if params else query, list(params) if params else None)
            first = cursor.fetchmany(EXPORT_BATCH_ROWS)
            assert cursor.description is not None
            names = [d.name for d in cursor.description]
            kinds = [_OID_TYPES.get(d.type_code, "") for d in cursor.description]
            rows = first
            while True:
                columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
                arrays = [_to_arrow(values, kind) for values, kind in zip(columns, kinds, strict=True)]
                yield pa.RecordBatch.from_arrays(arrays, names=names)
                if len(rows) < EXPORT_BATCH_ROWS:
                    return
                rows = cursor.fetchmany(EXPORT_BATCH_ROWS)
                if not rows:
                    return

    def fetch_arrow(self, query: str, params: Sequence[object] | None = None) -> pa.Table:
        import pyarrow as pa

        batches = list(self._batches(query, params))
        return pa.Table.from_batches(batches)


def _to_arrow(values: Sequence[object], kind: str) -> pa.Array:
    import pyarrow as pa

    if not kind:  # a type with no declared mapping: let Arrow infer it from the values
        return pa.array(values)
    if kind == "numeric":
        values = [None if v is None else float(v) for v in values]  # type: ignore[arg-type]
    return pa.array(values, _arrow_type(kind))


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


def table_exists(con: Warehouse, schema: str, table: str) -> bool:
    return con.table_exists(schema, table)


def content_checksum(
    con: Warehouse, table: str, exclude: Sequence[str] = tuple(RUN_METADATA_COLUMNS)
) -> tuple[int, str]:
    """(rows, checksum) of a table's content, independent of row order and of run metadata columns.

    Two tables with the same multiset of rows (over the kept columns) have the same
    checksum; it is how reruns prove they changed nothing. The values are the engine's
    own: compare checksums taken on the same engine only.
    """
    columns = [c for c in con.columns(table) if c not in exclude]
    if not columns:
        raise ValueError(f"{table} does not exist or has no columns besides {sorted(exclude)}")
    kept = ", ".join(f'"{c}"' for c in columns)
    row_hash = con.dialect.row_hash(kept)
    row = con.execute(
        f"select count(*), coalesce(sum({row_hash} % 1000000007), 0), "
        f"coalesce(bit_xor({row_hash}), 0) from {table}"
    ).fetchone()
    assert row is not None
    return int(row[0]), f"{int(row[1]):x}-{int(row[2]):x}"
