"""The PostgreSQL engine (psycopg2): its dialect, bulk loads streamed as CSV into ``COPY``, fetches
streamed from a server-side cursor into Arrow."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from recflow.core.urls import shown_url
from recflow.warehouse.base import EXPORT_BATCH_ROWS, Dialect, Rows, Warehouse, placeholders

if TYPE_CHECKING:
    import pyarrow as pa

_COPY_CHUNK = 1 << 20
"""Bytes psycopg2 reads at a time from a bulk load's CSV stream."""


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


POSTGRES = PostgresDialect()


def _pyformat(sql: str) -> str:
    """``?`` placeholders (outside quotes) as psycopg2's ``%s``; literal ``%`` doubled."""
    return placeholders(sql, lambda: "%s", percent="%%")


def _postgres_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL column type of an Arrow type (those the landing contract and the marts use)."""
    import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)

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
    import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)
    import pyarrow.compute as pc  # noqa: PLC0415 (heavy: not at DAG parse time)

    values = pc.cast(column.values, pa.string())
    escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    quoted = pc.fill_null(pc.binary_join_element_wise('"', escaped, '"', ""), "NULL")
    lists = pa.ListArray.from_arrays(column.offsets, quoted, mask=column.is_null())
    joined = pc.binary_join(lists, ",")
    return pc.binary_join_element_wise("{", joined, "}", "")


def _csv_ready(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with the columns Arrow's CSV writer cannot write (lists) as PostgreSQL literals."""
    import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)

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
        import pyarrow.csv as pcsv  # noqa: PLC0415 (heavy: not at DAG parse time)

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
    import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)

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
        import psycopg2  # noqa: PLC0415 (driver: not at DAG parse time)
        from sqlalchemy.engine import make_url  # noqa: PLC0415 (driver: not at DAG parse time)

        super().__init__()
        parsed = make_url(url)
        self.sqlalchemy_url = url
        self.location = shown_url(url)
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
        try:
            self._cursor.close()
        finally:  # a cursor that cannot close (the server gone) leaves no connection open
            self.connection.close()

    def append_arrow(self, table: str, data: pa.Table, constants: Mapping[str, object] | None = None) -> None:
        import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)

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
        import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)

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

    def fetch_batches(self, query: str) -> Iterator[pa.RecordBatch]:
        return self._batches(query, None)

    def fetch_arrow(self, query: str, params: Sequence[object] | None = None) -> pa.Table:
        import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)

        batches = list(self._batches(query, params))
        return pa.Table.from_batches(batches)


def _to_arrow(values: Sequence[object], kind: str) -> pa.Array:
    import pyarrow as pa  # noqa: PLC0415 (heavy: not at DAG parse time)

    if not kind:  # a type with no declared mapping: let Arrow infer it from the values
        return pa.array(values)
    if kind == "numeric":
        values = [None if v is None else float(v) for v in values]  # type: ignore[arg-type]
    return pa.array(values, _arrow_type(kind))
