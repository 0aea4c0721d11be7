"""Content checksums of a warehouse table: one engine's own, and one that is the same on every engine.

:func:`content_checksum` hashes inside the engine with the engine's own hash function: fast,
but comparable only with checksums taken on the same engine (it is how reruns prove they
changed nothing). :func:`table_digest` proves that two warehouses hold the same content (the
dbt project built on DuckDB and on PostgreSQL, say): rows are fetched through the driver,
each value is brought to one canonical form, and the rows are hashed here; the rest of this
docstring is about it.

What is normalised, and why (a difference these rules hide is one of engine or driver, not
of content):

- **Row order**: rows are combined by a sum of their hashes (modulo 2**256), so order does
  not count and a repeated row does (a multiset; XOR would cancel duplicates).
- **Columns**: run-metadata columns (:data:`recflow.warehouse.RUN_METADATA_COLUMNS`: when and by
  which run a row was written) are left out; names are compared lower-case (Snowflake folds
  unquoted names to upper case) and in sorted order (column order is not content). The kept
  names are part of the digest, so a renamed column changes it.
- **Timestamps**: to UTC ISO-8601 text with microseconds. Drivers return aware values in the
  session's time zone (DuckDB's ``TimeZone`` setting, PostgreSQL's ``timezone``); naive values
  (``timestamp`` without time zone) are read as UTC, as the data contract reads them.
- **Numbers**: integers exactly; floats and non-integral decimals rounded to
  ``float_digits`` significant digits (default :data:`FLOAT_DIGITS` = 12) and written in one
  format, so an integral decimal equals the same integer, ``-0.0`` equals ``0.0`` and NaN and
  infinities have one spelling. A double carries about 16 significant digits; engines sum and
  average in different orders (parallel aggregation), which moves the last one to three; 12
  digits leave that out, and a change within a value's first 12 significant digits still
  shows. A value that lies
  on a rounding boundary of the 12th digit can still round two ways: if that ever shows, the
  two values differ by a few ulps.
- **Types of the same kind**: ``varchar``/``text``, ``integer``/``bigint``/``hugeint``/``numeric``/
  ``double``: a value is tagged by kind (text, number, timestamp, date, list, ...), not by its
  SQL type, so ``id / 3.0`` (a double on DuckDB, a numeric on PostgreSQL) compares equal while a
  string ``'6'`` and a number ``6`` still differ. A ``real`` (float4) is not a double: its
  value differs from the double's in the 8th digit.
- **NULL** is one value of its own, also inside lists; lists keep their order (it is content:
  a pin's topics), and maps are sorted by key.

Anything else (a type this module does not know) raises ``TypeError`` rather than being
hashed through ``str()``, which would tie the digest to a driver's repr.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import hashlib
import json
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from recflow.warehouse.base import RUN_METADATA_COLUMNS, Warehouse

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Connection, Engine

FLOAT_DIGITS = 12
"""Significant digits kept of a float or a non-integral decimal."""

_BATCH_ROWS = 10_000
_MODULUS = 1 << 256


class TableDigest(NamedTuple):
    """How many rows a table holds and a checksum of their content (see the module's rules)."""

    rows: int
    checksum: str


class DBAPIConnection(Protocol):
    """A DB-API 2 connection (psycopg2, duckdb)."""

    def cursor(self) -> Any: ...


def table_digest(
    con: Connection | Engine | DBAPIConnection,
    table: str,
    *,
    exclude: Collection[str] = RUN_METADATA_COLUMNS,
    float_digits: int = FLOAT_DIGITS,
) -> TableDigest:
    """The digest of ``table`` (``schema.name``) read through ``con``.

    ``con`` is a SQLAlchemy ``Connection`` or ``Engine``, or a DB-API connection (psycopg2,
    duckdb). The table is read whole with ``select *``, in batches.
    """
    from sqlalchemy.engine import Connection, Engine  # noqa: PLC0415 (not at DAG parse time)

    sql = f"select * from {table}"
    if isinstance(con, Engine):
        with con.connect() as connection:
            return table_digest(connection, table, exclude=exclude, float_digits=float_digits)
    if isinstance(con, Connection):
        result = con.exec_driver_sql(sql)
        names = [str(name) for name in list(result.keys())]
        batches: Iterator[Sequence[Any]] = iter(lambda: result.fetchmany(_BATCH_ROWS), [])
        return rows_digest(names, (row for batch in batches for row in batch), exclude, float_digits)
    cursor = con.cursor()
    try:
        cursor.execute(sql)
        names = [str(column[0]) for column in cursor.description]
        rows = (row for batch in iter(lambda: cursor.fetchmany(_BATCH_ROWS), []) for row in batch)
        return rows_digest(names, rows, exclude, float_digits)
    finally:
        cursor.close()


def arrow_digest(
    table: pa.Table, *, exclude: Collection[str] = RUN_METADATA_COLUMNS, float_digits: int = FLOAT_DIGITS
) -> TableDigest:
    """The digest of an Arrow table (fetched from either engine), equal to :func:`table_digest`'s."""
    names = list(table.column_names)

    def rows() -> Iterator[Sequence[Any]]:
        for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
            yield from zip(*(column.to_pylist() for column in batch.columns), strict=True)

    return rows_digest(names, rows(), exclude, float_digits)


def rows_digest(
    names: Sequence[str],
    rows: Iterable[Sequence[Any]],
    exclude: Collection[str] = RUN_METADATA_COLUMNS,
    float_digits: int = FLOAT_DIGITS,
) -> TableDigest:
    """The digest of ``rows`` whose columns are ``names`` (the other two functions end here)."""
    excluded = {name.lower() for name in exclude}
    lowered = [name.lower() for name in names]
    if len(set(lowered)) != len(lowered):
        raise ValueError(f"column names are not unique once lower-cased: {list(names)}")
    kept = sorted((name, i) for i, name in enumerate(lowered) if name not in excluded)
    if not kept:
        raise ValueError(f"no column left besides {sorted(excluded)}: {list(names)}")
    positions = [i for _, i in kept]
    count = 0
    total = 0
    for row in rows:
        canonical = [canonical_value(row[i], float_digits) for i in positions]
        encoded = json.dumps(canonical, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        total = (total + int.from_bytes(hashlib.sha256(encoded.encode()).digest(), "big")) % _MODULUS
        count += 1
    header = json.dumps([name for name, _ in kept], separators=(",", ":"))
    checksum = hashlib.sha256(header.encode() + total.to_bytes(32, "big")).hexdigest()
    return TableDigest(count, checksum)


@functools.singledispatch
def canonical_value(value: Any, float_digits: int = FLOAT_DIGITS) -> Any:
    """One value in its engine-independent form: JSON-encodable, tagged by kind.

    Dispatched on the value's Python type (the most specific registration wins: ``bool``
    before ``int``, ``datetime`` before ``date``).
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        return ["map", sorted([str(k), canonical_value(v, float_digits)] for k, v in value.items())]
    raise TypeError(f"no canonical form for {type(value).__name__} value {value!r}")


@canonical_value.register
def _(value: bool, float_digits: int = FLOAT_DIGITS) -> Any:
    return ["bool", value]


@canonical_value.register
def _(value: int, float_digits: int = FLOAT_DIGITS) -> Any:
    return ["num", str(value)]


@canonical_value.register
def _(value: float, float_digits: int = FLOAT_DIGITS) -> Any:
    return ["num", _inexact_number_text(value, float_digits)]


@canonical_value.register
def _(value: decimal.Decimal, float_digits: int = FLOAT_DIGITS) -> Any:
    if value.is_finite() and value == value.to_integral_value():
        return ["num", str(int(value))]
    return ["num", _inexact_number_text(value, float_digits)]


@canonical_value.register
def _(value: str, float_digits: int = FLOAT_DIGITS) -> Any:
    return ["str", value]


@canonical_value.register
def _(value: uuid.UUID, float_digits: int = FLOAT_DIGITS) -> Any:
    return ["str", str(value)]


@canonical_value.register
def _(value: dt.datetime, float_digits: int = FLOAT_DIGITS) -> Any:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return ["ts", aware.astimezone(dt.UTC).isoformat(timespec="microseconds")]


@canonical_value.register
def _(value: dt.date, float_digits: int = FLOAT_DIGITS) -> Any:
    return ["date", value.isoformat()]


@canonical_value.register
def _(value: dt.time, float_digits: int = FLOAT_DIGITS) -> Any:
    return ["time", value.isoformat(timespec="microseconds")]


@canonical_value.register
def _(value: dt.timedelta, float_digits: int = FLOAT_DIGITS) -> Any:
    return ["interval", str(value // dt.timedelta(microseconds=1))]


@canonical_value.register(bytes)
@canonical_value.register(bytearray)
@canonical_value.register(memoryview)
def _(value: bytes | bytearray | memoryview, float_digits: int = FLOAT_DIGITS) -> Any:
    return ["bytes", bytes(value).hex()]


@canonical_value.register(list)
@canonical_value.register(tuple)
def _(value: list[Any] | tuple[Any, ...], float_digits: int = FLOAT_DIGITS) -> Any:
    return ["list", [canonical_value(item, float_digits) for item in value]]


def _inexact_number_text(value: float | decimal.Decimal, digits: int) -> str:
    """A float or decimal rounded to ``digits`` significant digits, written one way for both.

    The value goes through its exact decimal expansion (``Decimal(float)`` is exact), so a float
    and a decimal that round to the same number give the same text; an integral result is
    written as an integer, so ``6.0`` reads like ``6``.
    """
    exact = decimal.Decimal(value) if isinstance(value, float) else value
    if exact.is_nan():
        return "NaN"
    if exact.is_infinite():
        return "-Infinity" if exact.is_signed() else "Infinity"
    rounded = decimal.Context(prec=digits, rounding=decimal.ROUND_HALF_EVEN).plus(exact)
    if rounded == rounded.to_integral_value():
        return str(int(rounded))
    return str(rounded.normalize())


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
