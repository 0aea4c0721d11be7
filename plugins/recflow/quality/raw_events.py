"""The ``raw_events`` suite: the content of one landed partition of ``raw.events``.

``land`` has already checked the *shape* of the files (columns and types); this suite
checks what is in them, per ``docs/data-contract.md``: required values present,
``event_id`` unique within the partition and across partitions, ``event_type`` one of
the known types, ``event_ts`` inside the partition's interval, and a plausible row count.

Rows that fail a row-level expectation are kept in ``quality.rejected_events``, one row
per (event, failed expectation), replacing that table's rows for the day: a rerun is
idempotent, and a passing run clears the day.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recflow.config import Settings
from recflow.landing import EVENT_TYPES
from recflow.quality._gx import Asset, Outcome, import_gx, report_of, rule, run_suite
from recflow.quality.report import DataQualityError, QualityReport, missing_tables_report
from recflow.warehouse import QUALITY_SCHEMA, RAW_SCHEMA, connect, table_exists

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

SUITE = "raw_events"
EVENTS_TABLE = f"{RAW_SCHEMA}.events"
REJECTED_EVENTS_TABLE = f"{QUALITY_SCHEMA}.rejected_events"

CONTRACT_COLUMNS = (
    "event_id",
    "user_id",
    "pin_id",
    "event_type",
    "event_ts",
    "surface",
    "value",
    "ds",
    "_source_file",
    "_loaded_at",
)
"""The columns of ``raw.events``: the contract's columns plus what ``land`` adds."""

REQUIRED_COLUMNS = ("event_id", "user_id", "pin_id", "event_type", "event_ts")
KEY_COLUMNS = ("event_id", "_source_file")
"""What identifies an offending row in the message: the producer's id and the file it came from."""

REJECTED_EVENTS_DDL = f"""
create table if not exists {REJECTED_EVENTS_TABLE} (
    ds date not null,
    event_id varchar,
    user_id varchar,
    pin_id varchar,
    event_type varchar,
    event_ts timestamptz,
    surface varchar,
    value double,
    expectation varchar not null,
    column_name varchar,
    reason varchar not null,
    rejected_at timestamptz not null,
    source_file varchar
)
"""

_OTHER_PARTITION_COLUMN = "event_id_also_in_ds"


@dataclass(frozen=True)
class _RejectRule:
    """How to find, in SQL, the rows a row-level expectation flagged, and say why.

    ``where`` and ``reason`` are SQL expressions over the columns of ``_partition_rows``.
    """

    expectation: str
    column: str
    where: str
    reason: str


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _utc(value: dt.datetime) -> dt.datetime:
    """A plain ``datetime`` in UTC (naive values are read as UTC, as the data contract says)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    return dt.datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=dt.UTC,
    )


def _other_ds(ds: dt.date) -> str:
    """SQL: another ds in which the event_id of the partition's row ``e`` occurs (null if none)."""
    return (
        f"(select min(o.ds) from {EVENTS_TABLE} as o "
        f"where o.event_id = e.event_id and o.ds <> date '{ds.isoformat()}')"
    )


def _partition_rows(ds: dt.date) -> str:
    """The partition's rows, with how often their event_id occurs in it and another ds that has it."""
    return f"""
        select
            e.*,
            count(e.event_id) over (partition by e.event_id) as n_event_id_in_partition,
            {_other_ds(ds)} as {_OTHER_PARTITION_COLUMN}
        from {EVENTS_TABLE} as e
        where e.ds = date '{ds.isoformat()}'
    """


def _reject_rules(ds: dt.date, start: dt.datetime, end: dt.datetime) -> dict[str, _RejectRule]:
    types = ", ".join(_sql_string(t) for t in EVENT_TYPES)
    rules = {
        f"not_null_{column}": _RejectRule(
            "expect_column_values_to_not_be_null",
            column,
            f"{column} is null",
            _sql_string(f"{column} is null; the data contract requires it"),
        )
        for column in REQUIRED_COLUMNS
    }
    rules["unique_event_id"] = _RejectRule(
        "expect_column_values_to_be_unique",
        "event_id",
        "n_event_id_in_partition > 1",
        "'event_id ' || event_id || ' occurs ' || n_event_id_in_partition || ' times in ds="
        f"{ds.isoformat()}'",
    )
    rules["event_id_not_in_other_partition"] = _RejectRule(
        "expect_column_values_to_be_null",
        _OTHER_PARTITION_COLUMN,
        f"{_OTHER_PARTITION_COLUMN} is not null",
        f"'event_id ' || event_id || ' also occurs in ds=' || cast({_OTHER_PARTITION_COLUMN} as varchar)",
    )
    rules["event_type_known"] = _RejectRule(
        "expect_column_values_to_be_in_set",
        "event_type",
        f"event_type not in ({types})",
        f"'event_type ' || event_type || ' is not one of {', '.join(EVENT_TYPES)}'",
    )
    interval = f"[{start.isoformat()}, {end.isoformat()})"
    rules["event_ts_in_interval"] = _RejectRule(
        "expect_column_values_to_be_between",
        "event_ts",
        f"not (event_ts >= timestamptz '{start.isoformat()}' and event_ts < timestamptz '{end.isoformat()}')",
        _sql_string(f"event_ts is outside the partition's interval {interval}"),
    )
    return rules


def _assets(settings: Settings, ds: dt.date, start: dt.datetime, end: dt.datetime) -> list[Asset]:
    from great_expectations.expectations.core.expect_column_values_to_be_between import (
        ExpectColumnValuesToBeBetween,
    )
    from great_expectations.expectations.core.expect_column_values_to_be_in_set import (
        ExpectColumnValuesToBeInSet,
    )
    from great_expectations.expectations.core.expect_column_values_to_be_null import (
        ExpectColumnValuesToBeNull,
    )
    from great_expectations.expectations.core.expect_column_values_to_be_unique import (
        ExpectColumnValuesToBeUnique,
    )
    from great_expectations.expectations.core.expect_column_values_to_not_be_null import (
        ExpectColumnValuesToNotBeNull,
    )
    from great_expectations.expectations.core.expect_table_columns_to_match_set import (
        ExpectTableColumnsToMatchSet,
    )
    from great_expectations.expectations.core.expect_table_row_count_to_be_between import (
        ExpectTableRowCountToBeBetween,
    )

    day = ds.isoformat()
    partition = Asset(
        name="raw_events_partition",
        query=f"select * from {EVENTS_TABLE} where ds = date '{day}'",
        index_columns=KEY_COLUMNS,
        expectations=[
            ExpectTableColumnsToMatchSet(
                column_set=list(CONTRACT_COLUMNS),
                exact_match=True,
                **rule("columns", "raw.events has the data contract's columns"),
            ),
            ExpectTableRowCountToBeBetween(
                min_value=settings.raw_min_rows,
                max_value=settings.raw_max_rows,
                **rule(
                    "row_count",
                    "RECFLOW_RAW_MIN_ROWS <= rows of the partition <= RECFLOW_RAW_MAX_ROWS",
                ),
            ),
            *(
                ExpectColumnValuesToNotBeNull(
                    column=column, **rule(f"not_null_{column}", f"{column} is required")
                )
                for column in REQUIRED_COLUMNS
            ),
            ExpectColumnValuesToBeUnique(
                column="event_id", **rule("unique_event_id", "event_id is unique within the partition")
            ),
            ExpectColumnValuesToBeInSet(
                column="event_type",
                value_set=list(EVENT_TYPES),
                **rule("event_type_known", "event_type is one of the contract's event types"),
            ),
            ExpectColumnValuesToBeBetween(
                column="event_ts",
                min_value=start,
                max_value=end,
                strict_max=True,
                **rule("event_ts_in_interval", f"event_ts is inside the interval of ds={day}"),
            ),
        ],
    )
    other_partitions = Asset(
        name="raw_events_event_ids_in_other_partitions",
        query=f"""
            select e.event_id, e._source_file, {_other_ds(ds)} as {_OTHER_PARTITION_COLUMN}
            from {EVENTS_TABLE} as e
            where e.ds = date '{day}'
        """,
        index_columns=KEY_COLUMNS,
        expectations=[
            ExpectColumnValuesToBeNull(
                column=_OTHER_PARTITION_COLUMN,
                **rule(
                    "event_id_not_in_other_partition",
                    "event_id is unique across partitions: no other ds has it",
                ),
            ),
        ],
    )
    return [partition, other_partitions]


def _count_rows(con: duckdb.DuckDBPyConnection, ds: dt.date) -> int:
    row = con.execute(f"select count(*) from {EVENTS_TABLE} where ds = ?", [ds]).fetchone()
    return int(row[0]) if row else 0


def _keep_rejected_rows(
    settings: Settings,
    ds: dt.date,
    outcomes: Sequence[Outcome],
    rules: dict[str, _RejectRule],
) -> int:
    """Replace ``quality.rejected_events`` rows of ``ds`` with the rows the failed row-level rules flag."""
    with connect(settings) as con:
        con.execute(f"create schema if not exists {QUALITY_SCHEMA}")
        con.execute(REJECTED_EVENTS_DDL)
        con.execute("begin transaction")
        con.execute(f"delete from {REJECTED_EVENTS_TABLE} where ds = ?", [ds])
        for outcome in outcomes:
            reject = rules.get(outcome.rule)
            if reject is None or not outcome.evaluated:
                continue
            inserted = con.execute(
                f"""
                insert into {REJECTED_EVENTS_TABLE}
                select ds, event_id, user_id, pin_id, event_type, event_ts, surface, value,
                       ? as expectation, ? as column_name, {reject.reason} as reason,
                       now() as rejected_at, _source_file as source_file
                from ({_partition_rows(ds)})
                where {reject.where}
                """,
                [reject.expectation, reject.column],
            ).fetchone()
            kept = int(inserted[0]) if inserted else 0
            if kept != outcome.failure.unexpected_count:
                log.warning(
                    "%s: GX flagged %s rows for %s on %s, the rejected-rows query found %d",
                    SUITE,
                    outcome.failure.unexpected_count,
                    reject.expectation,
                    reject.column,
                    kept,
                )
        row = con.execute(f"select count(*) from {REJECTED_EVENTS_TABLE} where ds = ?", [ds]).fetchone()
        con.execute("commit")
    return int(row[0]) if row else 0


def check_raw_events(
    settings: Settings,
    ds: dt.date,
    interval_start: dt.datetime,
    interval_end: dt.datetime,
) -> QualityReport:
    """Validate the rows of ``raw.events`` with ``ds``; raise :class:`DataQualityError` on any breach.

    ``interval_start``/``interval_end`` bound ``event_ts`` (half-open; naive values are UTC).
    Row-level failures are kept in ``quality.rejected_events`` (replacing that day's rows);
    a passing run clears the day from it.
    """
    started = time.monotonic()
    start, end = _utc(interval_start), _utc(interval_end)
    target = f"{EVENTS_TABLE} ds={ds.isoformat()}"
    with connect(settings) as con:
        exists = table_exists(con, RAW_SCHEMA, "events")
        rows = _count_rows(con, ds) if exists else 0
    if not exists:
        raise DataQualityError.from_report(
            missing_tables_report(SUITE, target, [EVENTS_TABLE], str(settings.duckdb_path)),
            what_to_do=f"run the land task for ds={ds.isoformat()} first, then clear this task.",
        )

    import_seconds = import_gx()
    assets = _assets(settings, ds, start, end)
    log.info(
        "suite %s: checking %d rows of %s, %d expectations, event_ts in [%s, %s)",
        SUITE,
        rows,
        target,
        sum(len(a.expectations) for a in assets),
        start.isoformat(),
        end.isoformat(),
    )
    run = run_suite(settings, SUITE, assets)
    rejected = _keep_rejected_rows(settings, ds, run.outcomes, _reject_rules(ds, start, end))
    report = report_of(
        run,
        suite=SUITE,
        target=target,
        rows=rows,
        started=started,
        import_seconds=import_seconds,
        rejected_rows=rejected,
    )
    if report.success:
        return report
    day = ds.isoformat()
    error = DataQualityError.from_report(
        report,
        rejected_table=REJECTED_EVENTS_TABLE,
        rejected_hint=(
            f"select * from {REJECTED_EVENTS_TABLE} where ds = '{day}'"
            if rejected
            else "the failures are not about single rows"
        ),
        what_to_do=(
            f"fix the upstream export for ds={day} (see docs/data-contract.md; adjust RECFLOW_RAW_MIN_ROWS/"
            f"RECFLOW_RAW_MAX_ROWS only if the volume is genuinely expected), then clear land and this task "
            f"for ds={day}; the partition was not transformed."
        ),
    )
    log.error("%s", report.summary())
    raise error
