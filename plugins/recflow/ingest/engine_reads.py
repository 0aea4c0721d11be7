"""The landing contract where an engine reads the landing files itself (Spark): each contract column's
expression over a checked file, and the contract's checks of text values on the rows the engine loaded
(the in-memory path's are :func:`recflow.ingest.contract.read_file`'s)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recflow.core.errors import ContractViolation
from recflow.ingest.contract import CONTRACT, EVENT_COLUMNS
from recflow.warehouse import Dialect, Warehouse

_SQL_TYPES = dict(EVENT_COLUMNS)


def nanosecond_counts(path: Path) -> frozenset[str]:
    """The file's columns stored as INT64 nanosecond timestamps (pandas' default), which Spark reads as
    counts (its session's ``nanosAsLong``). Arrow also calls INT96 (Spark's and Hive's old timestamps)
    ``timestamp[ns]``, and engines read those as timestamps: the file's Parquet schema tells them apart."""
    parquet = pq.read_metadata(path).schema
    return frozenset(
        column.name
        for column in (parquet.column(i) for i in range(len(parquet)))
        if column.physical_type == "INT64" and "timeUnit=nanoseconds" in str(column.logical_type)
    )


def engine_columns(
    found: pa.Schema, schema: pa.Schema, dialect: Dialect, nanoseconds: frozenset[str] = frozenset()
) -> dict[str, str]:
    """For an engine that reads a checked file itself: each contract column's expression over the file,
    in the column's type (a missing optional column is a typed null; a naive timestamp is read as UTC,
    the session's time zone; a column of ``nanoseconds``, :func:`nanosecond_counts`, from its count)."""

    def read(fld: pa.Field) -> str:
        if fld.name not in found.names:
            return "null"
        if fld.name in nanoseconds:
            return dialect.nanoseconds_as_timestamp(fld.name)
        return str(fld.name)

    return {fld.name: f"cast({read(fld)} as {dialect.column_type(_SQL_TYPES[fld.name])})" for fld in schema}


def value_checks(con: Warehouse, table: str, columns: Sequence[str]) -> None:
    """The contract's checks of text values (UTF-8, no NUL) on rows an engine loaded itself from files:
    the first offending row refuses its file, as :func:`read_file` would have (``_source_file``,
    ``_source_row``)."""
    for column in columns:
        row = con.execute(
            f"select _source_file, _source_row, cast({column} as {con.dialect.string_type()}) from {table} "
            f"where {con.dialect.invalid_text(column)} order by _source_file, _source_row limit 1"
        ).fetchone()
        if row is None:
            continue
        source, index, value = row
        check = "nul_character" if value is not None and "\x00" in str(value) else "utf8"
        what = "holds a NUL character (\\x00)" if check == "nul_character" else "is not valid UTF-8"
        raise ContractViolation(
            f"{source}: column {column!r} row {index} {what}: {value!r}; see {CONTRACT}",
            check=check,
            columns=[column],
            observed=f"{'a NUL character' if check == 'nul_character' else 'invalid UTF-8'} in row {index}",
            expected="UTF-8 text without NUL characters",
            evidence=str(source),
        )
