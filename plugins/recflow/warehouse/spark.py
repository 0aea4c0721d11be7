"""The Spark engine: a Thrift (HiveServer2) server, through PyHive; its dialect.

``RECFLOW_WAREHOUSE_URL=hive://user@host:10000/default`` names the server (``recflow spark up``
starts one on this machine, submitting to a standalone cluster; Kyuubi, EMR or Dataproc serve the
same protocol). Every statement runs on the cluster: the landing zone's Parquet is read by Spark
itself (:meth:`SparkWarehouse.insert_parquet`), so no landed row passes through this process.

What Spark lacks, and what recflow does instead:

- **No multi-statement transaction** (Parquet tables; Delta or Iceberg would add one per table).
  :meth:`SparkWarehouse.transaction` groups nothing and undoes nothing: :attr:`transactional` is
  false, and the steps that need atomicity write on Spark one partition replacement at a time,
  checked before and after, in an order a rerun repairs (``recflow.ingest.audit``).
- **No DELETE**: a day's rows are a partition (tables partitioned by ``ds``), replaced by
  ``insert overwrite`` or dropped (:meth:`SparkWarehouse.delete_where` on partition keys only).
- **No locks** (:meth:`SparkDialect.serialize_writers`): one run of a day at a time rests on the
  day claims and the ``warehouse`` pool.
- **No information_schema**: ``show tables`` and ``describe``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.core.urls import shown_url
from recflow.warehouse.base import EXPORT_BATCH_ROWS, Dialect, Rows, Warehouse, placeholders
from recflow.warehouse.spark_errors import spark_errors

if TYPE_CHECKING:
    import pyarrow as pa

_TYPES = {
    "varchar": "string",
    "text": "string",
    "timestamptz": "timestamp",
    "double precision": "double",
    "varchar[]": "array<string>",
}
"""The portable column types recflow's DDL uses, as Spark spells them (others are the same)."""


SESSION = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.legacy.parquet.nanosAsLong": "true",
}
"""Each connection's session: timestamps read and written as UTC instants (rows come back as UTC wall
times); ``insert overwrite ... partition (ds)`` replaces only the days it writes (in Spark's default,
static, mode it would empty every other partition of the table); Parquet timestamps as microsecond
instants (Spark's default INT96 is read as nanoseconds elsewhere); a landing file's nanosecond timestamps
(pandas' default), which Spark refuses to read as instants, as their counts, converted where they are read
(``SparkDialect.nanoseconds_as_timestamp``)."""


class SparkDialect(Dialect):
    name = "spark"

    def __init__(self, table_format: str = "parquet") -> None:
        self.table_format = table_format

    def column_type(self, sql_type: str) -> str:
        bare = sql_type.lower().replace(" not null", "").strip()
        return _TYPES.get(bare, bare)

    def create_table(
        self, table: str, columns: Sequence[tuple[str, str]], partitioned_by: Sequence[str] = ()
    ) -> str:
        # a partitioned Parquet table keeps its partition columns last, whatever order is declared
        body = ", ".join(f"{name} {self.column_type(sql_type)}" for name, sql_type in columns)
        partitions = f" partitioned by ({', '.join(partitioned_by)})" if partitioned_by else ""
        return f"create table if not exists {table} ({body}) using {self.table_format}{partitions}"

    def replace_table_as(self, table: str, query: str) -> list[str]:
        return [f"drop table if exists {table}", f"create table {table} using {self.table_format} as {query}"]

    def overwrite_table(self, table: str, query: str) -> list[str]:
        return [
            f"create table if not exists {table} using {self.table_format} as select * from ({query}) as q limit 0",
            f"insert overwrite table {table} {query}",
        ]

    def non_null_array(self, expressions: Sequence[str]) -> str:
        return f"filter(array({', '.join(expressions)}), r -> r is not null)"

    def row_hash(self, columns: str) -> str:
        return f"xxhash64({columns})"

    def timestamp_literal(self, iso: str) -> str:
        return f"timestamp '{iso}'"

    def nanoseconds_as_timestamp(self, column: str) -> str:
        # Spark has no nanosecond instant: the session reads the column as its count (SESSION), which
        # loses below the microsecond what Spark's timestamp cannot hold
        return f"timestamp_micros(div({column}, 1000))"

    def double_literal(self, text: str) -> str:
        return f"cast('{text}' as double)"

    def unnest(self, expression: str) -> str:
        return f"explode({expression})"

    def array_to_string(self, expression: str, separator: str) -> str:
        return f"array_join({expression}, '{separator}')"

    def string_type(self) -> str:
        return "string"

    def delete_statement(self, table: str, keys: Mapping[str, str]) -> str:
        """No DELETE on Parquet tables: the partition of ``keys`` (every partition column, in order) is dropped."""
        return f"alter table {table} drop if exists partition ({', '.join(f'{k} = {v}' for k, v in keys.items())})"

    def rename_table(self, table: str, new_name: str) -> str:
        return f"alter table {table} rename to {table.split('.', 1)[0]}.{new_name}"

    def invalid_text(self, column: str) -> str:
        return f"(not is_valid_utf8({column}) or instr({column}, char(0)) > 0)"


def _literal(value: object) -> str:  # noqa: PLR0911 (one return per kind of literal)
    """``value`` as a Spark SQL literal (PyHive's own escaping makes strings of dates and timestamps)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            word = "NaN" if math.isnan(value) else ("-" if value < 0 else "") + "Infinity"
            return f"cast('{word}' as double)"
        return repr(value)
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return f"timestamp '{aware.astimezone(dt.UTC).isoformat()}'"
    if isinstance(value, dt.date):
        return f"date '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return f"array({', '.join(_literal(v) for v in value)})"
    raise TypeError(f"no Spark SQL literal for {type(value).__name__} value {value!r}")


def _bind(sql: str, params: Sequence[object]) -> str:
    """``sql`` with each ``?`` placeholder (outside quotes) replaced by the literal of its parameter."""
    literals = iter([_literal(p) for p in params])
    return placeholders(sql, lambda: next(literals))


class SparkWarehouse(Warehouse):
    """A Spark Thrift server, through PyHive (one session per connection; its own SQL dialect).

    ``read_only`` is recorded, not enforced: a Thrift session has no read-only mode (the callers that
    ask for one only read)."""

    transactional = False
    reads_files = True

    def __init__(self, url: str, *, read_only: bool, table_format: str = "parquet") -> None:
        from pyhive import hive  # noqa: PLC0415 (driver, an optional package: not at DAG parse time)
        from sqlalchemy.engine import make_url  # noqa: PLC0415 (driver: not at DAG parse time)

        super().__init__()
        # PyHive logs each statement at INFO; Thrift a server it cannot reach as a traceback (the error says it)
        for name, level in (("pyhive", logging.WARNING), ("thrift", logging.CRITICAL)):
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(level)
        parsed = make_url(url)
        self.dialect = self.spark_dialect = SparkDialect(table_format)
        self.sqlalchemy_url = url
        self.location = shown_url(url)
        self.read_only = read_only
        self.connection = hive.connect(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 10000,
            username=parsed.username or "recflow",
            password=parsed.password,
            auth="CUSTOM" if parsed.password else None,
            database=parsed.database or "default",
        )
        self._cursor = self.connection.cursor()
        for key, value in SESSION.items():  # whatever the server's defaults
            self._cursor.execute(f"set {key} = {value}")

    def _begin(self) -> None:
        """Nothing: Spark has no multi-statement transaction (see the module's docstring)."""

    def _end(self, *, commit: bool) -> None:
        """Nothing to commit or roll back: each statement took effect when it ran."""

    def execute(self, sql: str, params: Sequence[object] | None = None) -> Rows:
        statement = _bind(sql, params) if params else sql
        with spark_errors(statement):
            self._cursor.execute(statement)
        return _TypedRows(self._cursor, statement)

    def close(self) -> None:
        try:
            self._cursor.close()
        finally:  # a cursor that cannot close (the server gone) leaves no connection open
            self.connection.close()

    def table_exists(self, schema: str, table: str) -> bool:
        if not any(row[0] == schema for row in self.execute("show databases").fetchall()):
            return False
        return bool(self.execute(f"show tables in {schema} like '{table}'").fetchall())

    def columns(self, table: str) -> list[str]:
        schema, name = table.split(".", 1)
        if not self.table_exists(schema, name):
            return []
        names = []
        for row in self.execute(f"describe {table}").fetchall():
            if not row[0] or row[0].startswith("#"):
                break  # the partition information follows the columns
            names.append(str(row[0]))
        return names

    def delete_where(self, table: str, keys: Mapping[str, object]) -> None:
        """Drop the partition of ``keys`` (every partition column of ``table``, in order)."""
        self.execute(self.dialect.delete_statement(table, {k: _literal(v) for k, v in keys.items()}))

    def replace_day(self, table: str, ds: dt.date, columns: Sequence[str], query: str) -> None:
        """The ``ds`` partition of ``table`` becomes the rows of ``query`` in one ``insert overwrite``
        (dynamic partition overwrite: the other days are untouched); dropped when it has none."""
        row = self.execute(f"select count(*) from ({query}) as replacing").fetchone()
        if not row or int(row[0]) == 0:
            self.delete_where(table, {"ds": ds})
            return
        ordered = [c for c in columns if c != "ds"] + ["ds"]  # partition columns last, as Spark stores them
        self.execute(
            f"insert overwrite table {table} partition (ds) select {', '.join(ordered)} from ({query}) as q"
        )

    def insert_parquet(
        self, table: str, path: Path, selects: Mapping[str, str], constants: Mapping[str, object]
    ) -> None:
        """Insert the rows of the Parquet file (or folder) ``path``, read by Spark's executors:
        ``selects`` maps a column of ``table`` to its expression over the file's columns (with
        ``_metadata.row_index``, a row's position in its file), ``constants`` gives further columns."""
        names = [*selects, *constants]
        expressions = [*selects.values(), *(_literal(v) for v in constants.values())]
        self.execute(
            f"insert into {table} ({', '.join(names)}) select {', '.join(expressions)} "
            f"from parquet.`file://{path.resolve()}`"
        )

    def write_parquet(self, folder: Path, query: str) -> None:
        """One file, in the query's order (its sorted partitions coalesced, not shuffled)."""
        self.execute(
            f"insert overwrite directory 'file://{folder.resolve()}' using parquet "
            f"select /*+ COALESCE(1) */ * from ({query}) as q"
        )

    def append_arrow(self, table: str, data: pa.Table, constants: Mapping[str, object] | None = None) -> None:
        """Rows as literal ``values`` (for small tables: tests, records; bulk loads read files instead)."""
        constants = dict(constants or {})
        names = ", ".join([*data.column_names, *constants])
        for batch in data.to_batches(max_chunksize=1000):
            rows = zip(*(column.to_pylist() for column in batch.columns), strict=True)
            values = ", ".join(
                "(" + ", ".join(_literal(v) for v in [*row, *constants.values()]) + ")" for row in rows
            )
            if values:
                self.execute(f"insert into {table} ({names}) values {values}")

    def replace_table_with_arrow(self, table: str, data: pa.Table) -> None:
        ddl = ", ".join(f"{f.name} {_spark_type(f.type)}" for f in data.schema)
        self.execute(f"drop table if exists {table}")
        self.execute(f"create table {table} ({ddl}) using {self.spark_dialect.table_format}")
        self.append_arrow(table, data)

    def _batches(self, query: str, params: Sequence[object] | None) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)

        self.execute(query, params)
        names = [d[0].split(".")[-1] for d in self._cursor.description]
        kinds = [str(d[1]) for d in self._cursor.description]
        while True:
            with spark_errors(query):  # a query fails on the executors while its rows are fetched
                rows = self._cursor.fetchmany(EXPORT_BATCH_ROWS)
            columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
            arrays = [_to_arrow(values, kind) for values, kind in zip(columns, kinds, strict=True)]
            yield pa.RecordBatch.from_arrays(arrays, names=names)
            if len(rows) < EXPORT_BATCH_ROWS:
                return

    def fetch_batches(self, query: str) -> Iterator[pa.RecordBatch]:
        return self._batches(query, None)

    def fetch_arrow(self, query: str, params: Sequence[object] | None = None) -> pa.Table:
        import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)

        return pa.Table.from_batches(list(self._batches(query, params)))


def _value(value: Any, kind: str) -> Any:
    """A value as PyHive fetched it (dates and timestamps as text, arrays as JSON) as Python's type."""
    if value is None:
        return None
    if kind == "TIMESTAMP_TYPE":  # the session's (UTC) wall time
        parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        return parsed.replace(tzinfo=dt.UTC)
    if kind == "DATE_TYPE":
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
    if kind == "ARRAY_TYPE":
        return json.loads(value) if isinstance(value, str) else list(value)
    return value


class _TypedRows:
    """A PyHive cursor's rows with each value in its Python type (as DuckDB and psycopg2 give them)."""

    def __init__(self, cursor: Any, statement: str) -> None:
        self._cursor = cursor
        self._statement = statement
        self._kinds = [str(d[1]) for d in cursor.description or ()]

    def _typed(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(_value(v, k) for v, k in zip(row, self._kinds, strict=True))

    def fetchone(self) -> Any:
        with spark_errors(self._statement):
            row = self._cursor.fetchone()
        return None if row is None else self._typed(row)

    @property
    def description(self) -> Any:
        """The DB-API columns (name, type, ...), as the other engines' rows carry them."""
        return self._cursor.description

    def fetchmany(self, size: int) -> list[Any]:
        with spark_errors(self._statement):
            rows = self._cursor.fetchmany(size)
        return [self._typed(row) for row in rows]

    def fetchall(self) -> list[Any]:
        with spark_errors(self._statement):
            rows = self._cursor.fetchall()
        return [self._typed(row) for row in rows]


def _spark_type(arrow_type: pa.DataType) -> str:
    """The Spark column type of an Arrow type (those the landing contract and the marts use)."""
    import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)

    t = arrow_type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"array<{_spark_type(t.value_type)}>"
    kinds = (
        (pa.types.is_timestamp, "timestamp"),
        (pa.types.is_string, "string"),
        (pa.types.is_large_string, "string"),
        (pa.types.is_null, "string"),
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_int8, "tinyint"),
        (pa.types.is_int16, "smallint"),
        (pa.types.is_int32, "int"),
        (pa.types.is_int64, "bigint"),
        (pa.types.is_float32, "float"),
        (pa.types.is_float64, "double"),
        (pa.types.is_date, "date"),
    )
    for matches, sql_type in kinds:
        if matches(t):
            return sql_type
    raise TypeError(f"no Spark column type for Arrow type {t}")


def _to_arrow(values: Sequence[Any], kind: str) -> pa.Array:
    """A column as PyHive fetched it (timestamps and dates as text, arrays as JSON) in its Arrow type."""
    import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)

    if kind == "TIMESTAMP_TYPE":
        return pa.array([_value(v, kind) for v in values], pa.timestamp("us", tz="UTC"))
    if kind == "DATE_TYPE":
        return pa.array([_value(v, kind) for v in values], pa.date32())
    if kind == "ARRAY_TYPE":
        return pa.array([_value(v, kind) for v in values], pa.list_(pa.string()))
    simple = {
        "STRING_TYPE": pa.string(),
        "BIGINT_TYPE": pa.int64(),
        "INT_TYPE": pa.int32(),
        "SMALLINT_TYPE": pa.int16(),
        "TINYINT_TYPE": pa.int8(),
        "DOUBLE_TYPE": pa.float64(),
        "FLOAT_TYPE": pa.float32(),
        "BOOLEAN_TYPE": pa.bool_(),
        "DECIMAL_TYPE": pa.float64(),
    }
    if kind == "DECIMAL_TYPE":
        values = [None if v is None else float(v) for v in values]
    return pa.array(values, simple.get(kind))
