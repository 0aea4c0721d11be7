"""The row rules of the data contract, and the SQL that applies them to a staged day.

Every rule is written once (:func:`row_rules`), as SQL that DuckDB and PostgreSQL read alike.
:func:`build_audit_table` writes the staged rows that break one or more rules to
``raw_staging.audit__<day>``; the day's other rows are the accepted ones (:func:`accepted_rows`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from recflow.ingest.contract import EVENT_COLUMNS, EVENT_TYPES, ID_PADDING, staged_table
from recflow.ingest.tables import EVENTS_TABLE
from recflow.warehouse import STAGING_SCHEMA, Dialect, Warehouse


@dataclass(frozen=True)
class RowRule:
    """A rule every event must keep; ``broken`` is SQL, true when the staged row ``s`` breaks it."""

    name: str
    column: str
    description: str
    broken: str


def _blank(column: str) -> str:
    return f"(s.{column} is null or trim(s.{column}) = '')"


_IDS = ("event_id", "user_id", "pin_id")
_PADDING = ", ".join(f"chr({ord(c)})" for c in ID_PADDING)


def _padded(column: str) -> str:
    """An id that starts or ends with a character of ``ID_PADDING``: its first and last characters compared
    by code (each engine's ``trim`` takes away other characters: DuckDB's the no-break space too)."""
    return f"(not {_blank(column)} and (left(s.{column}, 1) in ({_PADDING}) or right(s.{column}, 1) in ({_PADDING})))"


def row_rules(
    start: dt.datetime, end: dt.datetime, now: dt.datetime, dialect: Dialect | None = None
) -> tuple[RowRule, ...]:
    """The contract's row rules for a day whose ``event_ts`` must lie in ``[start, end)``, audited at ``now``
    (in SQL every engine reads alike, but for the literals ``dialect`` spells: DuckDB's by default)."""
    types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    sql = dialect or Dialect()
    ts = sql.timestamp_literal
    return (
        *(RowRule(f"{c}_missing", c, f"{c} is required and not empty", _blank(c)) for c in _IDS),
        *(
            RowRule(
                f"{c}_padded",
                c,
                f"{c} has no space, tab, line break or no-break space before or after it",
                _padded(c),
            )
            for c in _IDS
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
            f"(s.event_ts < {ts(start.isoformat())} or s.event_ts >= {ts(end.isoformat())})",
        ),
        RowRule(
            "event_ts_in_future",
            "event_ts",
            "event_ts is not later than the audit",
            f"s.event_ts > {ts(now.isoformat())}",
        ),
        RowRule(
            "value_not_finite",
            "value",
            "value, when given, is a finite number",
            f"s.value in ({', '.join(sql.double_literal(v) for v in ('NaN', 'Infinity', '-Infinity'))})",
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


def build_audit_table(con: Warehouse, ds: dt.date, rules: Sequence[RowRule]) -> None:
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


def accepted_rows(ds: dt.date) -> str:
    """The staged rows of ``ds`` that break no rule (SQL: an anti join)."""
    return (
        f"select * from {staged_table(ds)} st where not exists (select 1 from {audit_table(ds)} a "
        "where a._source_file = st._source_file and a._source_row = st._source_row)"
    )


def audit_counts(con: Warehouse, ds: dt.date) -> tuple[int, int, dict[str, int]]:
    """(landed, quarantined, rows per broken rule) of the audited day."""
    landed = con.execute(f"select count(*) from {staged_table(ds)}").fetchone()
    quarantined = con.execute(f"select count(*) from {audit_table(ds)}").fetchone()
    assert landed is not None and quarantined is not None
    broken = dict(
        con.execute(
            f"select r, count(*) from (select {con.dialect.unnest('_broken_rules')} as r from {audit_table(ds)}) "
            "as broken "
            f"group by r order by count(*) desc, {con.dialect.bytewise('r')}"
        ).fetchall()
    )
    return int(landed[0]), int(quarantined[0]), {str(k): int(v) for k, v in broken.items()}


def seen_on_other_days(con: Warehouse, ds: dt.date) -> int:
    """Staged rows of ``ds`` whose event_id is in another published day (the only rule that
    depends on anything but the day itself)."""
    row = con.execute(
        f"select count(*) from {staged_table(ds)} where event_id in ({_held_by_other_days(ds)})"
    ).fetchone()
    assert row is not None
    return int(row[0])
