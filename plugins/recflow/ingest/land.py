"""Land one day of the landing zone into a staging table of its own (write, audit, publish: the write).

Every file is checked against the landing contract (:mod:`recflow.ingest.contract`) before
anything is staged. Nothing here touches what dbt reads: the day's rows go to
``raw_staging.events__<yyyymmdd>`` (replaced on every run of that day, so landing is
idempotent for its interval) and the catalogues to ``raw_staging.pins`` /
``raw_staging.users``. :mod:`recflow.ingest.audit` audits the staged day and
publishes it to ``raw.events``.

One run of a day at a time: ``land`` first claims its days (:mod:`recflow.ingest.claims`), and
releases them again when a file is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from recflow.core.config import Settings
from recflow.ingest.catalogues import read_catalogue
from recflow.ingest.claims import claim_days, release_claim
from recflow.ingest.contract import (
    EVENT_COLUMNS,
    EVENTS_SCHEMA,
    OPTIONAL_EVENT_COLUMNS,
    PINS_SCHEMA,
    USERS_SCHEMA,
    check_arrived,
    check_footer,
    data_files,
    partition_dir,
    read_file,
    staged_table,
)
from recflow.ingest.engine_reads import engine_columns, nanosecond_counts, value_checks
from recflow.warehouse import STAGING_SCHEMA, Warehouse, connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedDay:
    ds: date
    table: str
    files: int
    rows: int
    pins: int
    users: int


def _stage_catalogues(con: Warehouse, settings: Settings, pins: pa.Table, users: pa.Table) -> None:
    """``raw_staging.pins``/``users``: the checked catalogues (read from the landing zone by an engine that
    reads files, else loaded from Arrow)."""
    if not con.reads_files:
        con.replace_table_with_arrow(f"{STAGING_SCHEMA}.pins", pins)
        con.replace_table_with_arrow(f"{STAGING_SCHEMA}.users", users)
        return
    for name, table in (("pins", pins), ("users", users)):
        folder = settings.landing_dir / name
        columns = ", ".join(f.name for f in table.schema)
        con.execute_all(
            con.dialect.replace_table_as(
                f"{STAGING_SCHEMA}.{name}", f"select {columns} from parquet.`file://{folder.resolve()}`"
            )
        )


def _load_day_files(con: Warehouse, building: str, files: list[Path], constants: dict[str, object]) -> int:
    """Every file of a day into ``building``, one file in memory at a time, or read by the engine itself
    (only the footers are read here); the rows loaded."""
    if con.reads_files:
        footers = [check_footer(path, EVENTS_SCHEMA, OPTIONAL_EVENT_COLUMNS) for path in files]  # all, first
        for path, found in zip(files, footers, strict=True):
            selects = {
                **engine_columns(found, EVENTS_SCHEMA, con.dialect, nanosecond_counts(path)),
                "_source_row": "_metadata.row_index",
            }
            con.insert_parquet(building, path, selects, {**constants, "_source_file": str(path)})
        value_checks(con, building, [f.name for f in EVENTS_SCHEMA if pa.types.is_string(f.type)])
        row = con.execute(f"select count(*) from {building}").fetchone()
        return int(row[0]) if row else 0
    rows = 0
    for path in files:  # one file in memory at a time
        events = read_file(path, EVENTS_SCHEMA, OPTIONAL_EVENT_COLUMNS)
        events = events.append_column("_source_row", pa.array(np.arange(events.num_rows)))
        con.append_arrow(building, events, {**constants, "_source_file": str(path)})
        rows += events.num_rows
        del events
    return rows


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
    pins = read_catalogue(settings.landing_dir / "pins", PINS_SCHEMA)
    users = read_catalogue(settings.landing_dir / "users", USERS_SCHEMA)
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
        files = data_files(partition_dir(settings.landing_dir, ds))
        table = staged_table(ds)
        building = f"{table}__landing"
        loaded_at = datetime.now(UTC)  # one load time for the day's rows
        # each file is its own insert into a table no one reads: one transaction for the whole
        # day would hold every row in DuckDB's transaction-local memory (12 GB at 100M events)
        con.execute(f"drop table if exists {building}")
        con.execute(con.dialect.create_table(building, EVENT_COLUMNS))
        try:
            rows = _load_day_files(con, building, files, {"ds": ds, "_loaded_at": loaded_at})
        except BaseException:
            con.execute(f"drop table if exists {building}")  # a refused file: nothing of the day
            raise
        with con.transaction():
            con.execute(f"drop table if exists {table}")
            con.execute(con.dialect.rename_table(building, table.split(".", 1)[1]))
        results.append(
            StagedDay(
                ds=ds, table=table, files=len(files), rows=rows, pins=pins.num_rows, users=users.num_rows
            )
        )
        log.info("staged ds=%s: %d rows from %d file(s) into %s", ds, rows, len(files), table)
    with con.transaction():
        _stage_catalogues(con, settings, pins, users)
    return results
