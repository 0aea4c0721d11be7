"""The landing contract: the zone's schemas, its partition paths, and the checks every file must pass.

The landing zone's format is the contract in ``docs/data-contract.md``. A partition
is complete when its ``_SUCCESS`` marker exists (written last by the producer, the
Spark/Hadoop convention). Landing checks the *shape* of every file strictly: a
missing, extra or renamed column, a column of another type (even one that could be
cast, such as integer ids), a file that is not Parquet, an empty file or invalid
UTF-8 refuses the whole day with a :class:`~recflow.core.errors.ContractViolation`
naming the file, the column, the type found and the type expected. The catalogues
(pins, users) must have unique, non-null ids.

Also here: the columns of ``raw.events`` and of a staged day (:data:`EVENT_COLUMNS`), and the
name of a day's staging table (:func:`staged_table`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recflow.core.config import Settings
from recflow.core.errors import ContractViolation, LandingLate
from recflow.warehouse import STAGING_SCHEMA

SUCCESS_MARKER = "_SUCCESS"
"""Written last by the producer: its presence says the partition is complete."""

EVENT_TYPES = ("impression", "closeup", "click", "save", "hide")

EVENTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("pin_id", pa.string()),
        ("event_type", pa.string()),
        ("event_ts", pa.timestamp("us", tz="UTC")),
        ("surface", pa.string()),
        ("value", pa.float64()),
    ]
)
OPTIONAL_EVENT_COLUMNS = frozenset({"value"})

PINS_SCHEMA = pa.schema(
    [
        ("pin_id", pa.string()),
        ("board_id", pa.string()),
        ("title", pa.string()),
        ("topics", pa.list_(pa.string())),
    ]
)
USERS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("country", pa.string()),
        ("age", pa.int32()),
        ("gender", pa.string()),
        ("occupation", pa.string()),
    ]
)

EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "varchar"),
    ("user_id", "varchar"),
    ("pin_id", "varchar"),
    ("event_type", "varchar"),
    ("event_ts", "timestamptz"),
    ("surface", "varchar"),
    ("value", "double precision"),
    ("ds", "date not null"),
    ("_source_file", "varchar not null"),
    ("_source_row", "bigint not null"),
    ("_loaded_at", "timestamptz not null"),
)
"""The columns of ``raw.events`` and of a staged day: the contract's, then where each row came from
(portable types: each engine's dialect spells them)."""

CONTRACT = "docs/data-contract.md"

_Read = TypeVar("_Read")


def partition_dir(landing_dir: Path, ds: date) -> Path:
    return landing_dir / "events" / f"ds={ds.isoformat()}"


def partition_complete(landing_dir: Path, ds: date) -> bool:
    """True when the producer has finished the partition (its ``_SUCCESS`` marker exists)."""
    return (partition_dir(landing_dir, ds) / SUCCESS_MARKER).is_file()


def staged_table(ds: date) -> str:
    return f"{STAGING_SCHEMA}.events__{ds:%Y%m%d}"


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


_UTC_SPELLINGS = (
    "utc etc/utc z +00:00 -00:00 +00 uct etc/uct universal etc/universal zulu etc/zulu greenwich etc/greenwich "
    "gmt etc/gmt gmt0 etc/gmt0 gmt+0 etc/gmt+0 gmt-0 etc/gmt-0"
)
UTC_NAMES = frozenset(_UTC_SPELLINGS.split())
"""The names a writer may give UTC (Arrow keeps the one it was given), case aside: an offset of 0 all year."""

ID_PADDING = " \t\n\v\f\r\u00a0"
"""What may not start or end an id (event, user, pin; a catalogue's key): spaces, tabs, line breaks (a CSV's
``\r``), the no-break space. The audit's rules and the catalogues' check both read it."""


def _same_type(found: pa.DataType, expected: pa.DataType) -> bool:
    """The same logical type: string encodings (dictionary-encoded too, as pandas' categories are
    written), timestamp units (UTC by any of its names, or naive) and list layouts may differ."""
    if pa.types.is_null(found):
        return True  # a column with no values at all carries no type to disagree with
    if pa.types.is_dictionary(found):
        found = found.value_type  # an encoding of its values, which are what the contract types
    if _is_string(expected):
        return _is_string(found)
    if pa.types.is_timestamp(expected):
        return bool(pa.types.is_timestamp(found)) and (found.tz is None or found.tz.casefold() in UTC_NAMES)
    if pa.types.is_list(expected):
        return bool(
            pa.types.is_list(found) or pa.types.is_large_list(found) or pa.types.is_list_view(found)
        ) and _same_type(found.value_type, expected.value_type)
    return bool(found.equals(expected))


def _check_schema(found: pa.Schema, schema: pa.Schema, source: Path, optional: frozenset[str]) -> None:
    """Refuse (naming file, column and types) a file whose columns or types are not the contract's."""
    twice = sorted({name for name in found.names if found.names.count(name) > 1})
    if twice:
        raise ContractViolation(
            f"{source}: column(s) {', '.join(repr(c) for c in twice)} occur more than once (found columns: "
            f"{', '.join(found.names)}); see {CONTRACT}",
            check="columns",
            columns=twice,
            observed=", ".join(found.names),
            expected=", ".join(schema.names),
            evidence=str(source),
        )
    expected = set(schema.names)
    extra = [name for name in found.names if name not in expected]
    missing = [f.name for f in schema if f.name not in found.names and f.name not in optional]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"required column(s) {', '.join(repr(c) for c in missing)} missing")
        if extra:
            parts.append(f"column(s) {', '.join(repr(c) for c in extra)} not in the contract")
        raise ContractViolation(
            f"{source}: {'; '.join(parts)} (found columns: {', '.join(found.names)}; "
            f"expected: {', '.join(schema.names)}); see {CONTRACT}",
            check="columns",
            columns=missing + extra,
            observed=", ".join(found.names),
            expected=", ".join(schema.names),
            evidence=str(source),
        )
    for fld in schema:
        if fld.name in found.names and not _same_type(found.field(fld.name).type, fld.type):
            wanted = (
                f"{fld.type} (any unit; UTC or naive)" if pa.types.is_timestamp(fld.type) else str(fld.type)
            )
            raise ContractViolation(
                f"{source}: column {fld.name!r} has type {found.field(fld.name).type}, expected {wanted}; "
                f"values are never cast into the contract's type (see {CONTRACT})",
                check="column_type",
                columns=[fld.name],
                observed=str(found.field(fld.name).type),
                expected=wanted,
                evidence=str(source),
            )


def _conform(table: pa.Table, schema: pa.Schema, source: Path, optional: frozenset[str]) -> pa.Table:
    """The contract's columns in the contract's types, or a refusal naming file, column and values, of a
    table whose schema :func:`check_footer` has checked."""
    columns = []
    for fld in schema:
        if fld.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, fld.type))
            continue
        column = table.column(fld.name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if _is_string(column.type):
            _check_utf8(column, fld.name, source)
            _check_no_nul(column, fld.name, source)
        if pa.types.is_timestamp(column.type):
            column = _microseconds(column, fld, source)
        columns.append(column.cast(fld.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _microseconds(column: pa.ChunkedArray, fld: pa.Field, source: Path) -> pa.ChunkedArray:
    """A timestamp column in the warehouse's microseconds, UTC (naive = UTC, per the contract): a finer
    unit (pandas writes nanoseconds) loses what no engine stores; an instant microseconds cannot hold
    (a far year in milliseconds) is refused, naming file and column."""
    column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))
    try:
        return pc.cast(column, options=pc.CastOptions(target_type=fld.type, allow_time_truncate=True))
    except pa.ArrowInvalid as exc:
        raise ContractViolation(
            f"{source}: column {fld.name!r} holds an instant {fld.type} cannot hold ({exc}); see {CONTRACT}",
            check="column_type",
            columns=[fld.name],
            observed=f"{column.type}: {exc}",
            expected=str(fld.type),
            evidence=str(source),
        ) from None


def _check_utf8(column: pa.ChunkedArray, name: str, source: Path) -> None:
    offset = 0
    for chunk in column.chunks:
        try:
            chunk.validate(full=True)
        except pa.ArrowInvalid:
            binary = chunk.cast(pa.binary()) if not pa.types.is_string_view(chunk.type) else chunk
            for i, raw in enumerate(binary.to_pylist()):
                if raw is None:
                    continue
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ContractViolation(
                        f"{source}: column {name!r} row {offset + i} is not valid UTF-8 ({exc.reason} at "
                        f"byte {exc.start}: {raw[: exc.start + 4]!r}); see {CONTRACT}",
                        check="utf8",
                        columns=[name],
                        observed=f"invalid UTF-8 in row {offset + i}",
                        expected="UTF-8 strings",
                        evidence=str(source),
                    ) from None
            raise
        offset += len(chunk)


def _check_no_nul(column: pa.ChunkedArray, name: str, source: Path) -> None:
    """No NUL character in text: PostgreSQL cannot store one, so the contract refuses it on every engine."""
    has_nul = pc.fill_null(pc.match_substring(column, "\x00"), False)
    if not pc.any(has_nul).as_py():
        return
    row = int(pc.index(has_nul, True).as_py())
    raise ContractViolation(
        f"{source}: column {name!r} row {row} holds a NUL character (\\x00): "
        f"{column[row].as_py()!r}; see {CONTRACT}",
        check="nul_character",
        columns=[name],
        observed=f"a NUL character in row {row}",
        expected="text without NUL characters",
        evidence=str(source),
    )


def _not_parquet(path: Path, error: Exception | None) -> ContractViolation:
    if error is None:
        return ContractViolation(
            f"{path}: the file is empty (0 bytes), not a Parquet file; see {CONTRACT}",
            check="parquet",
            observed="0 bytes",
            expected="a Parquet file",
            evidence=str(path),
        )
    return ContractViolation(
        f"{path}: not a readable Parquet file ({error}); see {CONTRACT}",
        check="parquet",
        observed=str(error),
        expected="a Parquet file",
        evidence=str(path),
    )


def _is_file_system_error(error: Exception) -> bool:
    """An error of the operating system (a permission, an I/O error, a stale network mount: it has an
    errno; a file removed while it was read, which pyarrow raises without one: a producer rewriting the
    partition), which another try may not meet; Arrow's own errors about a file's bytes have none."""
    return isinstance(error, OSError) and (
        error.errno is not None or isinstance(error, FileNotFoundError | PermissionError | IsADirectoryError)
    )


def _parquet(path: Path, read: Callable[[Path], _Read]) -> _Read:
    """``read(path)``, a file that is not Parquet refused (``ContractViolation``); an error of the file
    system raised as it is: not a verdict."""
    try:
        return read(path)
    except (pa.ArrowInvalid, OSError) as exc:
        if _is_file_system_error(exc):
            raise
        raise _not_parquet(path, exc) from None


def read_file(path: Path, schema: pa.Schema, optional: frozenset[str]) -> pa.Table:
    check_footer(path, schema, optional)
    return _conform(_parquet(path, pq.read_table), schema, path, optional)


def check_footer(path: Path, schema: pa.Schema, optional: frozenset[str]) -> pa.Schema:
    """The file's schema, read from its footer alone, checked against the contract (the refusals
    :func:`read_file` makes before it reads the values; the values' checks are :func:`value_checks`' on
    an engine that reads them itself). An error of the file system is raised as it is: not a verdict."""
    if path.stat().st_size == 0:
        raise _not_parquet(path, None)
    found = _parquet(path, pq.read_schema)
    _check_schema(found, schema, path, optional)
    return found


def data_files(directory: Path) -> list[Path]:
    """The data files of a landing folder (a day's partition, a catalogue): every entry whose name does
    not start with ``_`` or ``.``. A folder among them is refused: its files would not be read (a nested
    partition, ``hour=23/``), and the day would be published without them."""
    entries = sorted(p for p in directory.iterdir() if not p.name.startswith(("_", ".")))
    folders = [p.name for p in entries if not p.is_file()]  # a folder; a broken link, a socket
    if folders:
        raise ContractViolation(
            f"{directory}: holds {', '.join(folders[:5])}, not a file: data files lie directly in the "
            "folder (nested partitions are not read), so none of it was loaded; write the files there, or "
            f"start the name with _ or . to have it ignored; see {CONTRACT}",
            check="partition_layout",
            observed=f"not files: {', '.join(folders)}",
            expected="data files directly in the folder",
            evidence=str(directory),
        )
    return entries


def not_landed(landing_dir: Path, days: list[date]) -> str | None:
    """Which of ``days`` have no complete partition (no ``_SUCCESS``), in one line naming the first
    one's marker and whether its folder is there at all (nothing exported yet, or an export still
    being written); ``None`` when every day is complete."""
    late = [d for d in days if not partition_complete(landing_dir, d)]
    if not late:
        return None
    shown = ", ".join(str(d) for d in late[:5]) + (" ..." if len(late) > 5 else "")
    first = partition_dir(landing_dir, late[0])
    state = (
        f"{first} exists but has no {SUCCESS_MARKER} marker (the export still being written?)"
        if first.is_dir()
        else f"{first} does not exist (nothing exported for {late[0]} yet)"
    )
    return f"{first / SUCCESS_MARKER}: {state}; {len(late)} day(s) not complete: {shown}"


def check_arrived(settings: Settings, days: list[date]) -> None:
    """Raise :class:`LandingLate` unless every day's partition is complete (has ``_SUCCESS``)."""
    missing = not_landed(settings.landing_dir, days)
    if missing is not None:
        raise LandingLate(f"the upstream export is not complete: {missing}")
