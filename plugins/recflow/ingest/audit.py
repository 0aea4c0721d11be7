"""Audit a staged day of engagement events, quarantine bad rows, and publish the rest atomically.

The audit of write-audit-publish. ``land`` staged the day in ``raw_staging.events__<day>``;
here every row is checked against the row rules of the data contract
(:func:`~recflow.ingest.rules.row_rules`, each written once, as SQL that DuckDB and PostgreSQL
read alike), in the warehouse:

- rows that break one or more rules go to ``quality.quarantine_events``: one row per
  rejected event, with every rule it broke, its source file and row, the run id and the
  verdict of the audit that quarantined it;
- the day is then judged by Great Expectations (suite ``raw_events``): the share of
  quarantined rows must not exceed ``max_quarantine_share`` (default 1%, a setting and a
  per-run param), and the day's volume must lie within ``RECFLOW_VOLUME_MAX_RATIO``
  times the median of the recent published days (when there are at least three), and neither
  staged catalogue may hold fewer rows than the published one divided by that ratio;
- if the day passes, its accepted rows replace the day in ``raw.events`` (all that dbt
  reads), its quarantined rows replace the day's quarantine, the catalogues replace
  ``raw.pins``/``raw.users``, and the counts are recorded in ``quality.partition_audit``
  — in one transaction; if it does not, nothing is published, the quarantined rows
  (verdict ``refused``, beside those of the day's publication) and the refusal are
  recorded, the staged day is kept for inspection, and
  :class:`~recflow.core.errors.PartitionRefused` says why.

Conservation: before either transaction commits, :func:`recflow.ingest.publish.conserved` checks
that the rows written are exactly the staged rows, each once (see :mod:`recflow.ingest.publish`).

One run of a day at a time: the audit refuses (:class:`~recflow.core.errors.DayClaimed`) a
day another run claimed when it landed it (:func:`recflow.ingest.claims.claim_days`), and
releases its own claim once the day is published or refused.

Every step replaces the day's rows, so a rerun is idempotent for its interval.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import statistics
import time
from collections.abc import Sequence
from decimal import Decimal

from recflow.core.config import Settings
from recflow.core.errors import NotStaged, PartitionRefused, RecflowError
from recflow.ingest.claims import hold_claim, release_claim
from recflow.ingest.contract import staged_table
from recflow.ingest.publish import (
    AuditResult,
    conserved,
    conserved_before_writing,
    publish_day,
    quarantine,
    record_audit,
)
from recflow.ingest.rules import (
    RowRule,
    audit_counts,
    audit_table,
    build_audit_table,
    row_rules,
    seen_on_other_days,
)
from recflow.ingest.tables import AUDIT_TABLE, EVENTS_TABLE, QUARANTINE_TABLE, ensure_tables
from recflow.quality._gx import Asset, import_gx, report_of, rule, run_suite
from recflow.warehouse import RAW_SCHEMA, STAGING_SCHEMA, Dialect, Warehouse, connect

log = logging.getLogger(__name__)

SUITE = "raw_events"
MIN_VOLUME_HISTORY = 3
"""Published days needed before a day's volume is judged against the recent ones."""


def _utc(value: dt.datetime) -> dt.datetime:
    """A plain UTC ``datetime`` (naive values are read as UTC, as the data contract says)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _volume_bounds(con: Warehouse, settings: Settings, ds: dt.date) -> tuple[int, int | None, str]:
    """(min rows, max rows or None, how they were derived) for the day."""
    history = [
        int(r[0])
        for r in con.execute(
            f"""
            select landed from (
                select ds, landed, verdict,
                       row_number() over (partition by ds order by audited_at desc) as latest
                from {AUDIT_TABLE} where ds < ?
            ) as audits
            where latest = 1 and verdict = 'published'
            order by ds desc limit ?
            """,
            [ds, settings.volume_history_days],
        ).fetchall()
    ]
    if len(history) < MIN_VOLUME_HISTORY:
        return 1, None, f"at least 1 row (only {len(history)} earlier published day(s) to compare with)"
    median = statistics.median(history)
    ratio = settings.volume_max_ratio
    low, high = max(1, int(median / ratio)), int(median * ratio)
    return (
        low,
        high,
        f"{ratio:g}x around the median {median:,.0f} of the last {len(history)} published days",
    )


def _published_by(con: Warehouse, ds: dt.date, run_id: str) -> AuditResult | None:
    """The day's publication by ``run_id`` when it is the day's latest audit: what a try of the audit
    recorded before its worker or the scheduler died (the day is published, the staged table dropped)."""
    row = con.execute(
        f"select run_id, landed, accepted, quarantined, verdict, reason from {AUDIT_TABLE} where ds = ? "
        "order by audited_at desc limit 1",
        [ds],
    ).fetchone()
    if row is None or row[0] != run_id or row[4] != "published":
        return None
    return AuditResult(ds, int(row[1]), int(row[2]), int(row[3]), "published", str(row[5]))


def _shrunk_catalogues(con: Warehouse, settings: Settings) -> list[str]:
    """The staged catalogues (``raw_staging.pins``/``users``, a full snapshot each) smaller than the
    published ones by more than ``RECFLOW_VOLUME_MAX_RATIO``, said one by one: an export that stopped
    part-way would replace ``raw.pins``/``raw.users`` and leave the model's users without features."""
    shrunk = []
    for name in ("pins", "users"):
        if not con.table_exists(RAW_SCHEMA, name):
            continue  # nothing published yet to compare with
        staged, published = (
            int(row[0]) if (row := con.execute(f"select count(*) from {schema}.{name}").fetchone()) else 0
            for schema in (STAGING_SCHEMA, RAW_SCHEMA)
        )
        if staged < published / settings.volume_max_ratio:
            shrunk.append(
                f"the {name} catalogue holds {staged:,} rows, under 1/{settings.volume_max_ratio:g} of the "
                f"{published:,} published (RECFLOW_VOLUME_MAX_RATIO)"
            )
    return shrunk


def _describe_broken(broken: dict[str, int], rules: Sequence[RowRule]) -> str:
    column = {r.name: r.column for r in rules}
    return ", ".join(f"{name} ({column.get(name, '?')}): {n}" for name, n in broken.items())


def audit_day(
    settings: Settings,
    ds: dt.date,
    interval_start: dt.datetime,
    interval_end: dt.datetime,
    *,
    run_id: str,
    max_quarantine_share: float | None = None,
    check_volume: bool = True,
) -> AuditResult:
    """Audit the staged day ``ds``, quarantine its bad rows, and publish it or refuse it.

    Raises :class:`PartitionRefused` when the day is refused (after recording the
    quarantined rows and the refusal), :class:`DayClaimed` when another run landed the day
    since this one did, :class:`ConservationBroken` when the rows written are not the rows
    landed (nothing is then published or recorded).
    """
    started = time.monotonic()
    share = settings.max_quarantine_share if max_quarantine_share is None else max_quarantine_share
    day = ds.isoformat()
    with connect(settings) as con:
        rules = row_rules(_utc(interval_start), _utc(interval_end), dt.datetime.now(dt.UTC), con.dialect)
        ensure_tables(con)
        if not con.table_exists(STAGING_SCHEMA, staged_table(ds).split(".")[1]):
            published = _published_by(con, ds, run_id)
            if published is not None:  # an earlier try published it, then died before it could report
                log.warning(
                    "ds=%s was published by this run (%s) already: an earlier try that ended before it could "
                    "report, or `audit` cleared alone; nothing to audit. To audit the day's landing again, clear "
                    "`land` and its downstream tasks",
                    day,
                    run_id,
                )
                return published
            raise NotStaged(
                f"ds={day} is not staged ({staged_table(ds)} does not exist: publishing the day drops it, so "
                "`audit` cannot be cleared alone): clear `land` and its downstream tasks for this run",
                ds=day,
            )
        with con.transaction():
            hold_claim(con, ds, run_id)
        build_audit_table(con, ds, rules)
        landed, quarantined, broken = audit_counts(con, ds)
        low, high, volume_rule = _volume_bounds(con, settings, ds)
        shrunk = _shrunk_catalogues(con, settings) if check_volume else []
        dialect = con.dialect
    if not check_volume:
        low, high, volume_rule = 0, None, "not checked (check_volume=false)"
    log.info(
        "ds=%s: %d rows landed, %d break a row rule (%s); volume rule: %s",
        day,
        landed,
        quarantined,
        _describe_broken(broken, rules) or "none",
        volume_rule,
    )

    failures = _judge(settings, ds, landed, (low, high), share, dialect)
    span = f"{low:,} .. {'inf' if high is None else f'{high:,}'}"
    evidence = f"select * from {QUARANTINE_TABLE} where ds = '{day}'"
    refused_rows = f"{evidence} and verdict = 'refused'"
    if failures or shrunk:
        reasons, check, columns = [], "", []
        if "row_count" in failures:
            check = "volume"
            reasons.append(f"{landed:,} rows landed, outside {span} ({volume_rule})")
        if shrunk:
            check = "volume"
            reasons.extend(shrunk)
        if "quarantine_share" in failures:
            check = check or "quarantine_share"
            columns = list(dict.fromkeys(r.column for r in rules if r.name in broken))
            reasons.append(
                f"{quarantined:,} of {landed:,} rows ({_pct(quarantined, landed)}) break a row rule, above "
                f"max_quarantine_share={share:.2%}: {_describe_broken(broken, rules)}"
            )
        reason = "; ".join(reasons)
        with connect(settings) as con, con.transaction():
            hold_claim(con, ds, run_id)
            quarantine(con, ds, run_id, "refused")
            counted = conserved(con, ds, landed, "refused")
            record_audit(
                con, AuditResult(ds, landed, *counted, "refused", reason, broken), run_id, share, (low, high)
            )
            release_claim(con, ds, run_id)
        raise PartitionRefused(
            f"ds={day} refused: {reason}. Nothing was published: raw.events and the marts keep what they "
            f"had for ds={day}. The quarantined rows: `{refused_rows}` (kept after a later publication); the "
            f"whole day is in {staged_table(ds)} until it is published or landed again.",
            check=check,
            columns=columns,
            observed=reason,
            expected=f"at most {share:.2%} quarantined; {span} rows"
            + (
                f"; each catalogue at least 1/{settings.volume_max_ratio:g} of the published one"
                if shrunk
                else ""
            ),
            evidence=f"{refused_rows}; the whole day: select * from {staged_table(ds)} (until the day is published)",
            ds=day,
            # the least share in hundredths that accepts the day's rows (what the runbook's command takes)
            share_needed=min(1.0, math.ceil(100 * quarantined / landed) / 100)
            if "quarantine_share" in failures
            else None,
        )

    with connect(settings) as con, con.transaction():
        # rechecked inside the transaction, other publishers held off: another day published since
        # the check cannot slip a cross-day duplicate through (every other rule depends on the day alone)
        con.execute_all(con.dialect.serialize_writers(EVENTS_TABLE))
        seen = seen_on_other_days(con, ds)
        if seen != broken.get("event_id_seen_on_other_day", 0):
            raise RecflowError(
                f"ds={day}: the warehouse changed while the day was audited ("
                f"{broken.get('event_id_seen_on_other_day', 0)} then {seen} rows whose event_id another "
                "published day holds); nothing was published: retry the task",
                runbook="infrastructure",
            )
        hold_claim(con, ds, run_id)
        if not con.transactional:  # nothing below can be rolled back: write only what conserves the day
            conserved_before_writing(con, ds, landed)
        publish_day(con, ds)
        quarantine(con, ds, run_id, "published")
        accepted, kept = conserved(con, ds, landed, "published")
        result = AuditResult(ds, landed, accepted, kept, "published", "accepted", broken)
        record_audit(con, result, run_id, share, (low, high))
        release_claim(con, ds, run_id)
        con.execute(f"drop table {staged_table(ds)}")
        con.execute(f"drop table {audit_table(ds)}")
    log.info(
        "ds=%s published in %.1f s: landed %d = accepted %d + quarantined %d%s",
        day,
        time.monotonic() - started,
        landed,
        accepted,
        kept,
        f" (`{evidence} and verdict = 'published'`)" if kept else "",
    )
    return result


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f}%" if whole else "n/a"


def _least_clean_share(share: float) -> float:
    """GX's ``mostly`` for "at most ``share`` of the rows break a rule": 1 - ``share`` in decimal, as the
    share was written (``0.7``), then rounded once. In binary ``1.0 - 0.7`` is 0.30000000000000004,
    above GX's 3 / 10 for 7 bad rows of 10, which refused a day at exactly its threshold (the share
    an incident fills into the runbook's accept command among them)."""
    return max(0.0, float(1 - Decimal(repr(share))))


def _judge(
    settings: Settings,
    ds: dt.date,
    landed: int,
    bounds: tuple[int, int | None],
    share: float,
    dialect: Dialect,
) -> set[str]:
    """Great Expectations on the audited day: its volume, and the share of rows that break a rule."""
    from great_expectations.expectations.core.expect_column_values_to_be_null import (  # noqa: PLC0415 (Great Expectations takes seconds to import; only the judge of a day needs it)
        ExpectColumnValuesToBeNull,
    )
    from great_expectations.expectations.core.expect_table_row_count_to_be_between import (  # noqa: PLC0415 (Great Expectations takes seconds to import; only the judge of a day needs it)
        ExpectTableRowCountToBeBetween,
    )

    started = time.monotonic()
    import_seconds = import_gx()
    asset = Asset(
        name="raw_events_audited_day",
        query=f"""
            select s.event_id, s._source_file, s._source_row,
                   {dialect.array_to_string("a._broken_rules", ",")} as broken_rules
            from {staged_table(ds)} s
            left join {audit_table(ds)} a using (_source_file, _source_row)
        """,
        index_columns=("event_id", "_source_file", "_source_row"),
        expectations=[
            ExpectTableRowCountToBeBetween(
                min_value=bounds[0],
                max_value=bounds[1],
                **rule("row_count", "the day's volume is within the recent days' range"),
            ),
            ExpectColumnValuesToBeNull(
                column="broken_rules",
                mostly=_least_clean_share(share),
                **rule("quarantine_share", f"at most {share:.2%} of the day's rows break a row rule"),
            ),
        ],
    )
    run = run_suite(settings, SUITE, [asset])
    report = report_of(
        run,
        suite=SUITE,
        target=f"{audit_table(ds)} (ds={ds.isoformat()})",
        rows=landed,
        started=started,
        import_seconds=import_seconds,
    )
    if not report.success:
        log.error("%s", report.summary())
    return {outcome.rule for outcome in run.outcomes}
