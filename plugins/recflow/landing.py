"""Land one day of the landing zone into the warehouse's ``raw`` schema.

The landing zone's format is the contract in ``docs/data-contract.md``. Landing
checks the *shape* of the files (columns and types) and refuses a partition
whose files break it, naming file, column and type; the *content* is checked
afterwards by the ``check_raw`` quality suite. Landing is idempotent for its
day: the rows of ``ds`` are replaced in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recflow.config import Settings
from recflow.warehouse import RAW_SCHEMA, connect

log = logging.getLogger(__name__)

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

RAW_EVENTS_DDL = f"""
create table if not exists {RAW_SCHEMA}.events (
    event_id varchar,
    user_id varchar,
    pin_id varchar,
    event_type varchar,
    event_ts timestamptz,
    surface varchar,
    value double,
    ds date not null,
    _source_file varchar not null,
    _loaded_at timestamptz not null
)
"""


class LandingError(ValueError):
    """The landing zone breaks the data contract; the message says where and how."""


@dataclass(frozen=True)
class LandingResult:
    ds: date
    files: int
    rows: int
    pins: int
    users: int


def partition_dir(landing_dir: Path, ds: date) -> Path:
    return landing_dir / "events" / f"ds={ds.isoformat()}"


def _conform(table: pa.Table, schema: pa.Schema, source: Path, optional: frozenset[str]) -> pa.Table:
    """Select and cast the contract's columns, or say exactly which one is wrong."""
    columns = []
    for fld in schema:
        if fld.name not in table.column_names:
            if fld.name in optional:
                columns.append(pa.nulls(table.num_rows, fld.type))
                continue
            raise LandingError(
                f"{source}: required column {fld.name!r} is missing "
                f"(found columns: {', '.join(table.column_names)}); see docs/data-contract.md"
            )
        col = table.column(fld.name)
        if pa.types.is_timestamp(fld.type) and pa.types.is_timestamp(col.type) and col.type.tz is None:
            col = col.cast(pa.timestamp("us")).cast(fld.type)
        try:
            columns.append(col.cast(fld.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise LandingError(
                f"{source}: column {fld.name!r} has type {col.type}, "
                f"expected {fld.type} ({exc}); see docs/data-contract.md"
            ) from None
    return pa.Table.from_arrays(columns, schema=schema)


def _read_file(path: Path, schema: pa.Schema, optional: frozenset[str]) -> pa.Table:
    try:
        raw = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LandingError(f"{path}: not a readable Parquet file ({exc})") from None
    return _conform(raw, schema, path, optional)


def _read_catalogue(directory: Path, schema: pa.Schema) -> pa.Table:
    tables = [_read_file(path, schema, frozenset()) for path in sorted(directory.glob("*.parquet"))]
    if not tables:
        raise LandingError(f"{directory}: no Parquet snapshot of the catalogue; see docs/data-contract.md")
    return pa.concat_tables(tables)


def _read_events(directory: Path) -> tuple[pa.Table, int]:
    files = sorted(directory.glob("*.parquet"))
    if not files:
        raise LandingError(f"{directory}: no Parquet files in the partition (is the upstream export late?)")
    parts = []
    for path in files:
        table = _read_file(path, EVENTS_SCHEMA, OPTIONAL_EVENT_COLUMNS)
        parts.append(table.append_column("_source_file", pa.array([str(path)] * table.num_rows, pa.string())))
    return pa.concat_tables(parts), len(files)


def land_partition(settings: Settings, ds: date) -> LandingResult:
    """Replace ``raw.events`` rows of ``ds`` with the landing partition, and refresh the catalogues."""
    return land_partitions(settings, [ds])[0]


def land_partitions(settings: Settings, days: list[date]) -> list[LandingResult]:
    """Land several days in one transaction (a historical reload); each day is replaced, never appended."""
    missing = [d for d in days if not partition_dir(settings.landing_dir, d).is_dir()]
    if missing:
        shown = ", ".join(str(d) for d in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise LandingError(
            f"landing partition {partition_dir(settings.landing_dir, missing[0])} does not exist: "
            f"the upstream export has not arrived for {len(missing)} day(s): {shown}"
        )
    pins = _read_catalogue(settings.landing_dir / "pins", PINS_SCHEMA)
    users = _read_catalogue(settings.landing_dir / "users", USERS_SCHEMA)
    results = []
    with connect(settings) as con:
        con.execute(f"create schema if not exists {RAW_SCHEMA}")
        con.execute(RAW_EVENTS_DDL)
        con.execute("begin transaction")
        for ds in days:
            events, n_files = _read_events(partition_dir(settings.landing_dir, ds))
            con.register("landed_events", events)
            con.execute(f"delete from {RAW_SCHEMA}.events where ds = ?", [ds])
            con.execute(
                f"""
                insert into {RAW_SCHEMA}.events
                select event_id, user_id, pin_id, event_type, event_ts, surface, value,
                       ?::date as ds, _source_file, now() as _loaded_at
                from landed_events
                """,
                [ds],
            )
            con.unregister("landed_events")
            results.append(
                LandingResult(
                    ds=ds, files=n_files, rows=events.num_rows, pins=pins.num_rows, users=users.num_rows
                )
            )
            log.info(
                "landed ds=%s: %d rows from %d file(s) into %s.events",
                ds,
                events.num_rows,
                n_files,
                RAW_SCHEMA,
            )
        con.register("landed_pins", pins)
        con.register("landed_users", users)
        con.execute(f"create or replace table {RAW_SCHEMA}.pins as select * from landed_pins")
        con.execute(f"create or replace table {RAW_SCHEMA}.users as select * from landed_users")
        con.execute("commit")
    log.info("catalogues refreshed: %d pins, %d users", pins.num_rows, users.num_rows)
    return results
