"""Land one day of the landing zone into a staging table of its own (write, audit, publish: the write).

The landing zone's format is the contract in ``docs/data-contract.md``. A partition
is complete when its ``_SUCCESS`` marker exists (written last by the producer, the
Spark/Hadoop convention). Landing checks the *shape* of every file strictly: a
missing, extra or renamed column, a column of another type (even one that could be
cast, such as integer ids), a file that is not Parquet, an empty file or invalid
UTF-8 refuses the whole day with a :class:`~recflow.core.errors.ContractViolation`
naming the file, the column, the type found and the type expected. The catalogues
(pins, users) must have unique, non-null ids.

Nothing here touches what dbt reads: the day's rows go to
``raw_staging.events__<yyyymmdd>`` (replaced on every run of that day, so landing is
idempotent for its interval) and the catalogues to ``raw_staging.pins`` /
``raw_staging.users``. :mod:`recflow.ingest.audit` audits the staged day and
publishes it to ``raw.events``.

One run of a day at a time: ``land`` claims each of its days in ``raw_staging.day_claims``
(one row per day: the run id and when it was taken) before it writes anything, and the
audit releases the claim once it has published or refused the day. A second run of a day
that is claimed is refused with :class:`~recflow.core.errors.DayClaimed` naming the run that
holds it, so that no run lands over another's staged day, and the audit refuses to
publish a day another run staged. The same run may land again (a retried or cleared
run); a claim expires :data:`CLAIM_EXPIRES_AFTER_HOURS` after it was taken (a run that
died between ``land`` and ``audit``), or is released by hand (:func:`release_statement`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recflow.core.config import Settings
from recflow.core.errors import ContractViolation, DayClaimed, LandingLate
from recflow.warehouse import STAGING_SCHEMA, Warehouse, connect

log = logging.getLogger(__name__)

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
(types both warehouse engines read alike)."""
EVENT_COLUMNS_DDL = ", ".join(f"{name} {sql_type}" for name, sql_type in EVENT_COLUMNS)

CONTRACT = "docs/data-contract.md"

CLAIMS_TABLE = f"{STAGING_SCHEMA}.day_claims"
"""The days that a run holds, from its ``land`` until its ``audit`` has published or refused them."""
CLAIMS_DDL = (
    f"create table if not exists {CLAIMS_TABLE} "
    "(ds date not null, run_id varchar not null, claimed_at timestamptz not null)"
)
CLAIM_EXPIRES_AFTER_HOURS = 6
"""A claim older than this is stale (its run died between ``land`` and ``audit``, or was cleared and not
rerun) and another run may take the day over. Well past ``land`` + ``audit`` with their retries (30 min
each, one retry) and the wait for the ``warehouse`` pool in between; a late audit of the run that lost
its claim still refuses to publish the other run's staging."""


@dataclass(frozen=True)
class StagedDay:
    ds: date
    table: str
    files: int
    rows: int
    pins: int
    users: int


def partition_dir(landing_dir: Path, ds: date) -> Path:
    return landing_dir / "events" / f"ds={ds.isoformat()}"


def partition_complete(landing_dir: Path, ds: date) -> bool:
    """True when the producer has finished the partition (its ``_SUCCESS`` marker exists)."""
    return (partition_dir(landing_dir, ds) / SUCCESS_MARKER).is_file()


def staged_table(ds: date) -> str:
    return f"{STAGING_SCHEMA}.events__{ds:%Y%m%d}"


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _same_type(found: pa.DataType, expected: pa.DataType) -> bool:
    """The same logical type: string encodings, timestamp units (UTC or naive) and list layouts may differ."""
    if pa.types.is_null(found):
        return True  # a column with no values at all carries no type to disagree with
    if _is_string(expected):
        return _is_string(found)
    if pa.types.is_timestamp(expected):
        return bool(pa.types.is_timestamp(found)) and found.tz in (None, "UTC", "+00:00", "Etc/UTC")
    if pa.types.is_list(expected):
        return bool(
            pa.types.is_list(found) or pa.types.is_large_list(found) or pa.types.is_list_view(found)
        ) and _same_type(found.value_type, expected.value_type)
    return bool(found.equals(expected))


def _conform(table: pa.Table, schema: pa.Schema, source: Path, optional: frozenset[str]) -> pa.Table:
    """The contract's columns in the contract's types, or a refusal naming file, column and types."""
    expected = set(schema.names)
    extra = [name for name in table.column_names if name not in expected]
    missing = [f.name for f in schema if f.name not in table.column_names and f.name not in optional]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"required column(s) {', '.join(repr(c) for c in missing)} missing")
        if extra:
            parts.append(f"column(s) {', '.join(repr(c) for c in extra)} not in the contract")
        raise ContractViolation(
            f"{source}: {'; '.join(parts)} (found columns: {', '.join(table.column_names)}; "
            f"expected: {', '.join(schema.names)}); see {CONTRACT}",
            check="columns",
            columns=missing + extra,
            observed=", ".join(table.column_names),
            expected=", ".join(schema.names),
            evidence=str(source),
        )
    columns = []
    for fld in schema:
        if fld.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, fld.type))
            continue
        column = table.column(fld.name)
        if not _same_type(column.type, fld.type):
            raise ContractViolation(
                f"{source}: column {fld.name!r} has type {column.type}, expected {fld.type}; values are "
                f"never cast into the contract's type (see {CONTRACT})",
                check="column_type",
                columns=[fld.name],
                observed=str(column.type),
                expected=str(fld.type),
                evidence=str(source),
            )
        if _is_string(column.type):
            _check_utf8(column, fld.name, source)
            _check_no_nul(column, fld.name, source)
        if pa.types.is_timestamp(column.type) and column.type.tz is None:
            column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))  # naive = UTC, per the contract
        columns.append(column.cast(fld.type))
    return pa.Table.from_arrays(columns, schema=schema)


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
    import pyarrow.compute as pc

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


def _read_file(path: Path, schema: pa.Schema, optional: frozenset[str]) -> pa.Table:
    if path.stat().st_size == 0:
        raise ContractViolation(
            f"{path}: the file is empty (0 bytes), not a Parquet file; see {CONTRACT}",
            check="parquet",
            observed="0 bytes",
            expected="a Parquet file",
            evidence=str(path),
        )
    try:
        raw = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ContractViolation(
            f"{path}: not a readable Parquet file ({exc}); see {CONTRACT}",
            check="parquet",
            observed=str(exc),
            expected="a Parquet file",
            evidence=str(path),
        ) from None
    return _conform(raw, schema, path, optional)


def _read_catalogue(directory: Path, schema: pa.Schema) -> pa.Table:
    files = sorted(directory.glob("*.parquet"))
    if not files:
        raise ContractViolation(
            f"{directory}: no Parquet snapshot of the catalogue; see {CONTRACT}",
            check="catalogue_present",
            expected="one or more Parquet files",
            evidence=str(directory),
        )
    table = pa.concat_tables([_read_file(path, schema, frozenset()) for path in files])
    key = schema.names[0]
    ids = table.column(key)
    empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(ids), ""), True)
    nulls = np.flatnonzero(empty.to_numpy(zero_copy_only=False)).tolist()
    counts = pc.value_counts(ids.drop_null())
    duplicates = sorted(counts.field("values").filter(pc.greater(counts.field("counts"), 1)).to_pylist())
    if nulls or duplicates:
        found = []
        if nulls:
            found.append(f"{len(nulls)} null or empty {key}(s) (rows {nulls[:5]})")
        if duplicates:
            found.append(f"{len(duplicates)} duplicated {key}(s) (e.g. {duplicates[:5]})")
        raise ContractViolation(
            f"{directory}: the catalogue's key {key!r} must be unique and not null: {'; '.join(found)}; "
            f"see {CONTRACT}",
            check="catalogue_key",
            columns=[key],
            observed="; ".join(found),
            expected=f"unique, non-null {key}",
            evidence=", ".join(str(f) for f in files),
        )
    return table


def _event_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(("_", ".")))


def check_arrived(settings: Settings, days: list[date]) -> None:
    """Raise :class:`LandingLate` unless every day's partition is complete (has ``_SUCCESS``)."""
    late = [d for d in days if not partition_complete(settings.landing_dir, d)]
    if late:
        shown = ", ".join(str(d) for d in late[:5]) + (" ..." if len(late) > 5 else "")
        first = partition_dir(settings.landing_dir, late[0])
        state = "has no _SUCCESS marker (still being written?)" if first.is_dir() else "does not exist"
        raise LandingLate(
            f"landing partition {first} {state}: the upstream export is not complete for "
            f"{len(late)} day(s): {shown}"
        )


@dataclass(frozen=True)
class Claim:
    """A run's hold on a day, as recorded in :data:`CLAIMS_TABLE`."""

    ds: date
    run_id: str
    claimed_at: str
    expired: bool


def release_statement(ds: date) -> str:
    """The SQL that releases the claim on ``ds`` by hand (a run that holds it is no longer running)."""
    return f"delete from {CLAIMS_TABLE} where ds = '{ds.isoformat()}'"


def claims(con: Warehouse) -> dict[date, Claim]:
    """The days held now (the table is small: only the days between a run's land and its audit)."""
    rows = con.execute(
        f"select ds, run_id, cast(claimed_at as varchar), "
        f"claimed_at < now() - interval '{CLAIM_EXPIRES_AFTER_HOURS} hours' from {CLAIMS_TABLE}"
    ).fetchall()
    return {r[0]: Claim(r[0], str(r[1]), str(r[2]), bool(r[3])) for r in rows}


def claim_days(con: Warehouse, days: list[date], run_id: str | None) -> None:
    """Take ``run_id``'s claim on ``days`` (renewing its own) in one transaction, or raise
    :class:`DayClaimed` naming the run that holds one of them; a stale claim is taken over.

    ``run_id=None`` (a bare ``land`` outside a DAG run, a test) takes no claim, but is refused a
    day that another run holds all the same."""
    con.execute(CLAIMS_DDL)
    with con.transaction():
        con.execute_all(con.dialect.serialize_writers(CLAIMS_TABLE))
        wanted = set(days)
        others = [c for c in claims(con).values() if c.ds in wanted and c.run_id != run_id]
        live = sorted((c for c in others if not c.expired), key=lambda c: c.ds)
        if live:
            first = live[0]
            shown = ", ".join(f"ds={c.ds} by run {c.run_id!r} since {c.claimed_at}" for c in live[:5])
            raise DayClaimed(
                f"{len(live)} day(s) held by another run that landed them and has not finished their audit: "
                f"{shown}{' ...' if len(live) > 5 else ''}. One run of a day at a time: this run "
                f"({run_id or 'a bare land'}) would land over that run's staged day, so nothing was landed. "
                f"Let run {first.run_id!r} finish its audit, then clear this task. If it is no longer running "
                f"(failed for good, or cleared and not rerun), release the day: `{release_statement(first.ds)}` "
                f"(a claim also expires {CLAIM_EXPIRES_AFTER_HOURS} h after it was taken).",
                ds=first.ds.isoformat(),
                holder=first.run_id,
            )
        for stale in others:
            log.warning(
                "ds=%s: the claim of run %r, taken at %s, has expired; run %s takes the day over",
                stale.ds,
                stale.run_id,
                stale.claimed_at,
                run_id or "(a bare land)",
            )
        for ds in days:  # what is left of the days' claims is this run's own, or stale
            con.execute(f"delete from {CLAIMS_TABLE} where ds = ?", [ds])
            if run_id is not None:
                con.execute(f"insert into {CLAIMS_TABLE} values (?, ?, now())", [ds, run_id])


def release_claim(con: Warehouse, ds: date, run_id: str) -> None:
    """Release ``run_id``'s claim on ``ds`` (its audit published or refused the day)."""
    con.execute(f"delete from {CLAIMS_TABLE} where ds = ? and run_id = ?", [ds, run_id])


def _stage_catalogues(con: Warehouse, pins: pa.Table, users: pa.Table) -> None:
    con.replace_table_with_arrow(f"{STAGING_SCHEMA}.pins", pins)
    con.replace_table_with_arrow(f"{STAGING_SCHEMA}.users", users)


def stage_partitions(settings: Settings, days: list[date], *, run_id: str | None = None) -> list[StagedDay]:
    """Read each day's partition and the catalogues, refuse contract breaks, write them to staging.

    First the days are claimed for ``run_id`` (:func:`claim_days`: refused with
    :class:`DayClaimed` when another run holds one; ``None`` takes no claim). A day's files are
    read, checked and inserted one at a time (memory holds one file) into a table of its own,
    which replaces the day's staged table in one transaction once every file has passed: a
    refused file leaves the staged day as it was, and releases the run's claims. Each staged
    table is replaced whole, so a rerun is idempotent.
    """
    check_arrived(settings, days)
    pins = _read_catalogue(settings.landing_dir / "pins", PINS_SCHEMA)
    users = _read_catalogue(settings.landing_dir / "users", USERS_SCHEMA)
    with connect(settings) as con:
        con.execute(f"create schema if not exists {STAGING_SCHEMA}")
        claim_days(con, days, run_id)
        try:
            results = _stage(con, settings, days, pins, users)
        except BaseException:
            if run_id is not None:  # nothing of this run is left to audit: another run may land the days
                try:
                    with con.transaction():
                        for ds in days:
                            release_claim(con, ds, run_id)
                except Exception:  # the first error is the one to report; the claims expire
                    log.exception("run %s: could not release its claims on %d day(s)", run_id, len(days))
            raise
    log.info("catalogues staged: %d pins, %d users", pins.num_rows, users.num_rows)
    return results


def _stage(
    con: Warehouse, settings: Settings, days: list[date], pins: pa.Table, users: pa.Table
) -> list[StagedDay]:
    """Write each day of ``days`` to its staging table, then the catalogues."""
    results = []
    for ds in days:
        files = _event_files(partition_dir(settings.landing_dir, ds))
        table = staged_table(ds)
        building = f"{table}__landing"
        rows, loaded_at = 0, datetime.now(UTC)  # one load time for the day's rows
        # each file is its own insert into a table no one reads: one transaction for the whole
        # day would hold every row in DuckDB's transaction-local memory (12 GB at 100M events)
        con.execute(f"drop table if exists {building}")
        con.execute(f"create table {building} ({EVENT_COLUMNS_DDL})")
        try:
            for path in files:  # one file in memory at a time
                events = _read_file(path, EVENTS_SCHEMA, OPTIONAL_EVENT_COLUMNS)
                events = events.append_column("_source_row", pa.array(np.arange(events.num_rows)))
                con.append_arrow(
                    building, events, {"ds": ds, "_source_file": str(path), "_loaded_at": loaded_at}
                )
                rows += events.num_rows
                del events
        except BaseException:
            con.execute(f"drop table if exists {building}")  # a refused file: nothing of the day
            raise
        with con.transaction():
            con.execute(f"drop table if exists {table}")
            con.execute(f"alter table {building} rename to {table.split('.', 1)[1]}")
        results.append(
            StagedDay(
                ds=ds, table=table, files=len(files), rows=rows, pins=pins.num_rows, users=users.num_rows
            )
        )
        log.info("staged ds=%s: %d rows from %d file(s) into %s", ds, rows, len(files), table)
    with con.transaction():
        _stage_catalogues(con, pins, users)
    return results
