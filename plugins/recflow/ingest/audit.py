"""Audit a staged day of engagement events, quarantine bad rows, and publish the rest atomically.

The audit of write-audit-publish. ``land`` staged the day in ``raw_staging.events__<day>``;
here every row is checked against the row rules of the data contract (:func:`row_rules`,
each written once, as SQL that DuckDB and PostgreSQL read alike), in the warehouse:

- rows that break one or more rules go to ``quality.quarantine_events``: one row per
  rejected event, with every rule it broke, its source file and row, the run id and the
  verdict of the audit that quarantined it;
- the day is then judged by Great Expectations (suite ``raw_events``): the share of
  quarantined rows must not exceed ``max_quarantine_share`` (default 1%, a setting and a
  per-run param), and the day's volume must lie within ``RECFLOW_VOLUME_MAX_RATIO``
  times the median of the recent published days (when there are at least three);
- if the day passes, its accepted rows replace the day in ``raw.events`` (all that dbt
  reads), its quarantined rows replace the day's quarantine, the catalogues replace
  ``raw.pins``/``raw.users``, and the counts are recorded in ``quality.partition_audit``
  — in one transaction; if it does not, nothing is published, the quarantined rows
  (verdict ``refused``, beside those of the day's publication) and the refusal are
  recorded, the staged day is kept for inspection, and
  :class:`~recflow.core.errors.PartitionRefused` says why.

Conservation: the recorded ``accepted`` and ``quarantined`` are counted from what was
written, and before the transaction commits :func:`_conserved` checks that the rows
written (``raw.events[ds]``, or the accepted staged rows of a refused day, and the
quarantine rows of this audit's verdict) are exactly the staged rows, each once; if not,
:class:`~recflow.core.errors.ConservationBroken` rolls everything back. The invariant it keeps:
``raw.events[ds]`` + the day's quarantine rows of verdict ``published`` = ``landed`` of
the day's latest ``published`` record in ``quality.partition_audit``, whatever refusals
came after.

One run of a day at a time: the audit refuses (:class:`~recflow.core.errors.DayClaimed`) a
day another run claimed when it landed it (:func:`recflow.ingest.land.claim_days`), and
releases its own claim once the day is published or refused.

Every step replaces the day's rows, so a rerun is idempotent for its interval.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from recflow.core.config import Settings
from recflow.core.errors import ConservationBroken, DayClaimed, PartitionRefused, RecflowError
from recflow.ingest.land import (
    CLAIMS_DDL,
    CLAIMS_TABLE,
    EVENT_COLUMNS,
    EVENT_COLUMNS_DDL,
    EVENT_TYPES,
    claims,
    release_claim,
    release_statement,
    staged_table,
)
from recflow.quality._gx import Asset, import_gx, report_of, rule, run_suite
from recflow.warehouse import QUALITY_SCHEMA, RAW_SCHEMA, STAGING_SCHEMA, Warehouse, connect

log = logging.getLogger(__name__)

SUITE = "raw_events"
EVENTS_TABLE = f"{RAW_SCHEMA}.events"
QUARANTINE_TABLE = f"{QUALITY_SCHEMA}.quarantine_events"
AUDIT_TABLE = f"{QUALITY_SCHEMA}.partition_audit"
MIN_VOLUME_HISTORY = 3
"""Published days needed before a day's volume is judged against the recent ones."""

QUARANTINE_DDL = f"""
create table if not exists {QUARANTINE_TABLE} (
    ds date not null,
    event_id varchar,
    user_id varchar,
    pin_id varchar,
    event_type varchar,
    event_ts timestamptz,
    surface varchar,
    value double precision,
    broken_rules varchar[] not null,
    source_file varchar not null,
    source_row bigint not null,
    run_id varchar not null,
    quarantined_at timestamptz not null,
    verdict varchar not null
)
"""
QUARANTINE_COLUMNS = (
    "ds, event_id, user_id, pin_id, event_type, event_ts, surface, value, broken_rules, source_file, "
    "source_row, run_id, quarantined_at, verdict"
)
"""``verdict`` is that of the audit that quarantined the row: ``published`` (the row is of the day's
publication: the day's other rows are in ``raw.events``) or ``refused`` (of the latest refusal of the
day since: evidence)."""

AUDIT_DDL = f"""
create table if not exists {AUDIT_TABLE} (
    ds date not null,
    run_id varchar not null,
    audited_at timestamptz not null,
    landed bigint not null,
    accepted bigint not null,
    quarantined bigint not null,
    verdict varchar not null,
    reason varchar not null,
    max_quarantine_share double precision not null,
    volume_min bigint,
    volume_max bigint
)
"""

_EVENT_COLUMNS = "event_id, user_id, pin_id, event_type, event_ts, surface, value"


@dataclass(frozen=True)
class RowRule:
    """A rule every event must keep; ``broken`` is SQL, true when the staged row ``s`` breaks it."""

    name: str
    column: str
    description: str
    broken: str


def _blank(column: str) -> str:
    return f"(s.{column} is null or trim(s.{column}) = '')"


def row_rules(start: dt.datetime, end: dt.datetime, now: dt.datetime) -> tuple[RowRule, ...]:
    """The contract's row rules for a day whose ``event_ts`` must lie in ``[start, end)``, audited at ``now``
    (in SQL that DuckDB and PostgreSQL read alike)."""
    types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    return (
        *(
            RowRule(f"{c}_missing", c, f"{c} is required and not empty", _blank(c))
            for c in ("event_id", "user_id", "pin_id")
        ),
        RowRule(
            "event_type_unknown",
            "event_type",
            f"event_type is one of {', '.join(EVENT_TYPES)} (case and spaces aside)",
            f"(s.event_type is null or lower(trim(s.event_type)) not in ({types}))",
        ),
        RowRule("event_ts_missing", "event_ts", "event_ts is required", "s.event_ts is null"),
        RowRule(
            "event_ts_outside_interval",
            "event_ts",
            f"event_ts is inside the day [{start.isoformat()}, {end.isoformat()})",
            f"(s.event_ts < timestamptz '{start.isoformat()}' or s.event_ts >= timestamptz '{end.isoformat()}')",
        ),
        RowRule(
            "event_ts_in_future",
            "event_ts",
            "event_ts is not later than the audit",
            f"s.event_ts > timestamptz '{now.isoformat()}'",
        ),
        RowRule(
            "value_not_finite",
            "value",
            "value, when given, is a finite number",
            "s.value in ('NaN'::double precision, 'Infinity'::double precision, "
            "'-Infinity'::double precision)",
        ),
        RowRule(
            "event_id_duplicate_in_day",
            "event_id",
            "event_id occurs once in the day (the first occurrence, by file and row, is kept)",
            f"(not {_blank('event_id')} and s._nth_of_event_id > 1)",
        ),
        RowRule(
            "event_id_seen_on_other_day",
            "event_id",
            "event_id does not occur in another published day",
            "o.event_id is not null",
        ),
    )


@dataclass(frozen=True)
class AuditResult:
    ds: dt.date
    landed: int
    accepted: int
    quarantined: int
    verdict: str
    """``published`` or ``refused``."""
    reason: str
    broken: dict[str, int] = field(default_factory=dict)
    """How many rows broke each rule."""

    def to_xcom(self) -> dict[str, object]:
        return {
            "ds": self.ds.isoformat(),
            "landed": self.landed,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "verdict": self.verdict,
        }


def _utc(value: dt.datetime) -> dt.datetime:
    """A plain UTC ``datetime`` (naive values are read as UTC, as the data contract says)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def audit_table(ds: dt.date) -> str:
    return f"{STAGING_SCHEMA}.audit__{ds:%Y%m%d}"


def _held_by_other_days(ds: dt.date) -> str:
    """SQL: the event ids of the staged day ``ds`` that another published day holds. A semi join
    (DuckDB plans the ``exists`` as one), built on the day's ids and probed with history's, so
    memory holds a day whatever the history."""
    return (
        f"select e.event_id from {EVENTS_TABLE} e where e.ds <> date '{ds.isoformat()}' "
        f"and exists (select 1 from {staged_table(ds)} d where d.event_id = e.event_id)"
    )


_STAGED_COLUMNS = tuple(name for name, _ in EVENT_COLUMNS)


def _build_audit_table(con: Warehouse, ds: dt.date, rules: Sequence[RowRule]) -> None:
    """``raw_staging.audit__<day>``: the staged rows that break a rule, each with the rules it breaks.

    Only those rows are written: the day's other rows are the staged rows not in it (matched
    by source file and row), so the audit costs a scan of the day, not a copy of it. The
    in-day duplicate rule ranks only the event ids that occur more than once."""
    staged = staged_table(ds)
    flags = [f"case when {r.broken} then '{r.name}' end" for r in rules]
    dialect = con.dialect
    query = f"""
        with repeated as (
            select _source_file, _source_row, row_number() over (
                partition by event_id order by {dialect.bytewise("_source_file")}, _source_row
            ) as _nth_of_event_id
            from {staged}
            where event_id in (select event_id from {staged} group by event_id having count(*) > 1)
        ),
        s as (
            select st.*, coalesce(r._nth_of_event_id, 1) as _nth_of_event_id
            from {staged} st left join repeated r using (_source_file, _source_row)
        ),
        o as (select distinct event_id from ({_held_by_other_days(ds)}) as held),
        judged as (
            select {", ".join(f"s.{c}" for c in _STAGED_COLUMNS)},
                   {dialect.non_null_array(flags)} as _broken_rules
            from s
            left join o on o.event_id = s.event_id
        )
        select * from judged where cardinality(_broken_rules) > 0
    """
    con.execute_all(dialect.replace_table_as(audit_table(ds), query))


def _accepted_rows(ds: dt.date) -> str:
    """The staged rows of ``ds`` that break no rule (SQL: an anti join)."""
    return (
        f"select * from {staged_table(ds)} st where not exists (select 1 from {audit_table(ds)} a "
        "where a._source_file = st._source_file and a._source_row = st._source_row)"
    )


def _counts(con: Warehouse, ds: dt.date) -> tuple[int, int, dict[str, int]]:
    """(landed, quarantined, rows per broken rule) of the audited day."""
    landed = con.execute(f"select count(*) from {staged_table(ds)}").fetchone()
    quarantined = con.execute(f"select count(*) from {audit_table(ds)}").fetchone()
    assert landed is not None and quarantined is not None
    broken = dict(
        con.execute(
            f"select r, count(*) from (select unnest(_broken_rules) as r from {audit_table(ds)}) as broken "
            f"group by r order by count(*) desc, {con.dialect.bytewise('r')}"
        ).fetchall()
    )
    return int(landed[0]), int(quarantined[0]), {str(k): int(v) for k, v in broken.items()}


def _seen_on_other_days(con: Warehouse, ds: dt.date) -> int:
    """Staged rows of ``ds`` whose event_id is in another published day (the only rule that
    depends on anything but the day itself)."""
    row = con.execute(
        f"select count(*) from {staged_table(ds)} where event_id in ({_held_by_other_days(ds)})"
    ).fetchone()
    assert row is not None
    return int(row[0])


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


def _ensure_tables(con: Warehouse) -> None:
    for schema in (RAW_SCHEMA, QUALITY_SCHEMA, STAGING_SCHEMA):
        con.execute(f"create schema if not exists {schema}")
    con.execute(f"create table if not exists {EVENTS_TABLE} ({EVENT_COLUMNS_DDL})")
    con.execute(QUARANTINE_DDL)
    con.execute(AUDIT_DDL)
    con.execute(CLAIMS_DDL)
    if "verdict" not in con.columns(QUARANTINE_TABLE):
        _add_verdict(con)
    for table in (EVENTS_TABLE, QUARANTINE_TABLE):  # a day is replaced and counted in each
        con.execute_all(con.dialect.day_index(table, "ds"))


def _add_verdict(con: Warehouse) -> None:
    """A quarantine written before rows had a verdict: each day's rows were those of its latest audit,
    so each row takes the verdict of its run's latest audit of the day."""
    with con.transaction():
        con.execute(f"alter table {QUARANTINE_TABLE} add column verdict varchar")
        con.execute(
            f"""
            update {QUARANTINE_TABLE} as q set verdict = coalesce((
                select a.verdict from {AUDIT_TABLE} a where a.ds = q.ds and a.run_id = q.run_id
                order by a.audited_at desc limit 1
            ), 'refused')
            """
        )


def _quarantine(con: Warehouse, ds: dt.date, run_id: str, verdict: str) -> None:
    """The audited day's rows that break a rule, into the quarantine: a publication replaces the day's
    quarantine, a refusal replaces only the rows of the day's previous refusal."""
    if verdict == "published":
        con.execute(f"delete from {QUARANTINE_TABLE} where ds = ?", [ds])
    else:
        con.execute(f"delete from {QUARANTINE_TABLE} where ds = ? and verdict = ?", [ds, verdict])
    con.execute(
        f"""
        insert into {QUARANTINE_TABLE} ({QUARANTINE_COLUMNS})
        select ds, {_EVENT_COLUMNS}, _broken_rules, _source_file, _source_row, ?, now(), ?
        from {audit_table(ds)}
        """,
        [run_id, verdict],
    )


def _record(
    con: Warehouse,
    result: AuditResult,
    run_id: str,
    share: float,
    bounds: tuple[int, int | None],
) -> None:
    con.execute(
        f"insert into {AUDIT_TABLE} values (?, ?, now(), ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            result.ds,
            run_id,
            result.landed,
            result.accepted,
            result.quarantined,
            result.verdict,
            result.reason,
            share,
            bounds[0],
            bounds[1],
        ],
    )


def _publish(con: Warehouse, ds: dt.date) -> None:
    con.execute(f"delete from {EVENTS_TABLE} where ds = ?", [ds])
    con.execute(
        f"""
        insert into {EVENTS_TABLE}
        select {_EVENT_COLUMNS}, ds, _source_file, _source_row, _loaded_at
        from ({_accepted_rows(ds)}) as accepted
        """
    )
    for catalogue in ("pins", "users"):
        con.execute_all(
            con.dialect.overwrite_table(
                f"{RAW_SCHEMA}.{catalogue}", f"select * from {STAGING_SCHEMA}.{catalogue}"
            )
        )


def _conserved(con: Warehouse, ds: dt.date, landed: int, verdict: str) -> tuple[int, int]:
    """(accepted, quarantined) as written by this audit; raise :class:`ConservationBroken` unless the rows
    written are exactly the ``landed`` staged rows, each once (matched by source file and row).

    Accepted: ``raw.events[ds]`` once published, the staged rows outside the quarantine when refused;
    quarantined: the day's quarantine rows of this audit's verdict."""
    published = verdict == "published"
    accepted = (
        f"select _source_file as f, _source_row as r from {EVENTS_TABLE} where ds = ?"
        if published
        else f"select _source_file as f, _source_row as r from ({_accepted_rows(ds)}) as accepted"
    )
    row = con.execute(
        f"""
        with a as ({accepted}),
        q as (select source_file as f, source_row as r from {QUARANTINE_TABLE} where ds = ? and verdict = ?),
        written as (select f, r from a union all select f, r from q)
        select (select count(*) from a), (select count(*) from q),
               (select count(*) from (select distinct f, r from written) as d),
               (select count(*) from written w where not exists (
                   select 1 from {staged_table(ds)} s where s._source_file = w.f and s._source_row = w.r))
        """,
        [*([ds] if published else []), ds, verdict],
    ).fetchone()
    assert row is not None
    a, q, distinct, strays = (int(v) for v in row)
    if a + q == distinct == landed and strays == 0:
        return a, q
    found = [
        f"{n} {what}"
        for n, what in (
            (landed - distinct + strays, "landed row(s) in neither"),
            (a + q - distinct, "row(s) written twice"),
            (strays, "row(s) that are not of the staged day"),
        )
        if n > 0
    ]
    raise ConservationBroken(
        f"ds={ds}: {landed} rows landed in {staged_table(ds)}, but this audit wrote {a} to "
        f"{EVENTS_TABLE if published else 'the accepted side'} and {q} to {QUARANTINE_TABLE} "
        f"(verdict {verdict}): {', '.join(found) or 'the counts disagree'}. The transaction was rolled "
        f"back: nothing was published or recorded and the day stays staged. A fault of the pipeline, not "
        f"of the data: open an issue with this message, and clear the task once it is fixed.",
        ds=ds.isoformat(),
        landed=landed,
        accepted=a,
        quarantined=q,
    )


def _hold_claim(con: Warehouse, ds: dt.date, run_id: str) -> None:
    """Raise :class:`DayClaimed` when another run claimed ``ds`` (then the staged day is that run's);
    inside a transaction, no other run claims it until the transaction ends."""
    con.execute_all(con.dialect.serialize_writers(CLAIMS_TABLE))
    claim = claims(con).get(ds)
    if claim is None or claim.run_id == run_id:
        return  # ours, or landed without a claim (a bare land)
    raise DayClaimed(
        f"ds={ds} was landed by run {claim.run_id!r} (its claim taken {claim.claimed_at}) after this run "
        f"({run_id!r}) landed it: {staged_table(ds)} holds that run's rows, and this run will not publish "
        f"them as its own; nothing was published. Run {claim.run_id!r}'s audit publishes them. To publish "
        f"this run's data instead, clear this run's `land` once that run has finished (if it is no longer "
        f"running, release the day first: `{release_statement(ds)}`).",
        ds=ds.isoformat(),
        holder=claim.run_id,
    )


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
    rules = row_rules(_utc(interval_start), _utc(interval_end), dt.datetime.now(dt.UTC))
    with connect(settings) as con:
        _ensure_tables(con)
        if not con.table_exists(STAGING_SCHEMA, staged_table(ds).split(".")[1]):
            raise RecflowError(
                f"ds={day} is not staged ({staged_table(ds)} does not exist): clear `land` for this run too, "
                "then this task",
                runbook="partition-refused",
            )
        with con.transaction():
            _hold_claim(con, ds, run_id)
        _build_audit_table(con, ds, rules)
        landed, quarantined, broken = _counts(con, ds)
        low, high, volume_rule = _volume_bounds(con, settings, ds)
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

    failures = _judge(settings, ds, landed, (low, high), share)
    span = f"{low:,} .. {'inf' if high is None else f'{high:,}'}"
    evidence = f"select * from {QUARANTINE_TABLE} where ds = '{day}'"
    refused_rows = f"{evidence} and verdict = 'refused'"
    if failures:
        reasons, check, columns = [], "", []
        if "row_count" in failures:
            check = "volume"
            reasons.append(f"{landed:,} rows landed, outside {span} ({volume_rule})")
        if "quarantine_share" in failures:
            check = check or "quarantine_share"
            columns = list(dict.fromkeys(r.column for r in rules if r.name in broken))
            reasons.append(
                f"{quarantined:,} of {landed:,} rows ({_pct(quarantined, landed)}) break a row rule, above "
                f"max_quarantine_share={share:.2%}: {_describe_broken(broken, rules)}"
            )
        reason = "; ".join(reasons)
        with connect(settings) as con, con.transaction():
            _hold_claim(con, ds, run_id)
            _quarantine(con, ds, run_id, "refused")
            counted = _conserved(con, ds, landed, "refused")
            _record(
                con, AuditResult(ds, landed, *counted, "refused", reason, broken), run_id, share, (low, high)
            )
            release_claim(con, ds, run_id)
        raise PartitionRefused(
            f"ds={day} refused: {reason}. Nothing was published: raw.events and the marts keep what they "
            f"had for ds={day}. The quarantined rows: `{refused_rows}`; the whole day stays in "
            f"{staged_table(ds)}.",
            check=check,
            columns=columns,
            observed=reason,
            expected=f"at most {share:.2%} quarantined; {span} rows",
            evidence=f"{refused_rows}; select * from {staged_table(ds)}",
        )

    with connect(settings) as con, con.transaction():
        # rechecked inside the transaction, other publishers held off: another day published since
        # the check cannot slip a cross-day duplicate through (every other rule depends on the day alone)
        con.execute_all(con.dialect.serialize_writers(EVENTS_TABLE))
        seen = _seen_on_other_days(con, ds)
        if seen != broken.get("event_id_seen_on_other_day", 0):
            raise RecflowError(
                f"ds={day}: the warehouse changed while the day was audited ("
                f"{broken.get('event_id_seen_on_other_day', 0)} then {seen} rows whose event_id another "
                "published day holds); nothing was published: retry the task",
                runbook="infrastructure",
            )
        _hold_claim(con, ds, run_id)
        _publish(con, ds)
        _quarantine(con, ds, run_id, "published")
        accepted, kept = _conserved(con, ds, landed, "published")
        result = AuditResult(ds, landed, accepted, kept, "published", "accepted", broken)
        _record(con, result, run_id, share, (low, high))
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
        f" (`{evidence}`)" if kept else "",
    )
    return result


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f}%" if whole else "n/a"


def _judge(
    settings: Settings, ds: dt.date, landed: int, bounds: tuple[int, int | None], share: float
) -> set[str]:
    """Great Expectations on the audited day: its volume, and the share of rows that break a rule."""
    from great_expectations.expectations.core.expect_column_values_to_be_null import (
        ExpectColumnValuesToBeNull,
    )
    from great_expectations.expectations.core.expect_table_row_count_to_be_between import (
        ExpectTableRowCountToBeBetween,
    )

    started = time.monotonic()
    import_seconds = import_gx()
    asset = Asset(
        name="raw_events_audited_day",
        query=f"""
            select s.event_id, s._source_file, s._source_row,
                   array_to_string(a._broken_rules, ',') as broken_rules
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
                mostly=max(0.0, 1.0 - share),
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


def audit_days(
    settings: Settings,
    days: Sequence[dt.date],
    *,
    run_id: str,
    max_quarantine_share: float | None = None,
    check_volume: bool = True,
) -> list[AuditResult]:
    """Audit and publish several days (a reload): every day is judged; refused days are raised together."""
    results: list[AuditResult] = []
    refused: list[PartitionRefused] = []
    for i, ds in enumerate(days, start=1):
        start = dt.datetime(ds.year, ds.month, ds.day, tzinfo=dt.UTC)
        try:
            results.append(
                audit_day(
                    settings,
                    ds,
                    start,
                    start + dt.timedelta(days=1),
                    run_id=run_id,
                    max_quarantine_share=max_quarantine_share,
                    check_volume=check_volume,
                )
            )
        except PartitionRefused as exc:
            refused.append(exc)
        log.info("[%d/%d] ds=%s audited", i, len(days), ds)
    if len(refused) == 1:
        raise refused[0]
    if refused:
        first = refused[0]
        raise PartitionRefused(
            f"{len(refused)} of {len(days)} days refused (the others were published):\n"
            + "\n".join(str(e) for e in refused),
            check=first.check,
            columns=sorted({c for e in refused for c in e.columns}),
            observed="; ".join(e.observed for e in refused),
            expected=first.expected,
            evidence="; ".join(e.evidence for e in refused),
        )
    return results


def stage_and_audit(
    settings: Settings,
    days: Sequence[dt.date],
    *,
    run_id: str,
    max_quarantine_share: float | None = None,
    check_volume: bool = True,
) -> list[AuditResult]:
    """``land`` then ``audit`` for ``days``, in one call: the warehouse DAG's first two steps, bare."""
    from recflow.ingest.land import stage_partitions

    stage_partitions(settings, list(days), run_id=run_id)
    return audit_days(
        settings,
        days,
        run_id=run_id,
        max_quarantine_share=max_quarantine_share,
        check_volume=check_volume,
    )
