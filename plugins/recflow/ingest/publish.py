"""Publish an audited day in one transaction: the quarantine, the publication, the record, and the
conservation guard.

Conservation: the recorded ``accepted`` and ``quarantined`` are counted from what was
written, and before the transaction commits :func:`conserved` checks that the rows
written (``raw.events[ds]``, or the accepted staged rows of a refused day, and the
quarantine rows of this audit's verdict) are exactly the staged rows, each once; if not,
:class:`~recflow.core.errors.ConservationBroken` rolls everything back. The invariant it keeps:
``raw.events[ds]`` + the day's quarantine rows of verdict ``published`` = ``landed`` of
the day's latest ``published`` record in ``quality.partition_audit``, whatever refusals
came after.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from recflow.core.errors import ConservationBroken
from recflow.ingest.contract import EVENT_COLUMNS, staged_table
from recflow.ingest.rules import accepted_rows, audit_table
from recflow.ingest.tables import (
    AUDIT_COLUMNS,
    AUDIT_TABLE,
    EVENTS_TABLE,
    QUARANTINE_COLUMNS,
    QUARANTINE_TABLE,
)
from recflow.warehouse import RAW_SCHEMA, STAGING_SCHEMA, Warehouse

_EVENT_COLUMNS = "event_id, user_id, pin_id, event_type, event_ts, surface, value"


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


def quarantine(con: Warehouse, ds: dt.date, run_id: str, verdict: str) -> None:
    """The audited day's rows that break a rule, into the quarantine, replacing the rows of the day's
    previous audit of the same verdict: a publication replaces the last publication's, a refusal the last
    refusal's. A publication leaves the last refusal's rows: they are the evidence its incident's query
    reads, and the fixed export that is published no longer holds them."""
    con.delete_where(QUARANTINE_TABLE, {"ds": ds, "verdict": verdict})
    con.execute(
        f"""
        insert into {QUARANTINE_TABLE} ({QUARANTINE_COLUMNS})
        select ds, {_EVENT_COLUMNS}, _broken_rules, _source_file, _source_row, ?, now(), ?
        from {audit_table(ds)}
        """,
        [run_id, verdict],
    )


def record_audit(
    con: Warehouse,
    result: AuditResult,
    run_id: str,
    share: float,
    bounds: tuple[int, int | None],
) -> None:
    con.execute(
        f"insert into {AUDIT_TABLE} ({AUDIT_COLUMNS}) values (?, ?, now(), ?, ?, ?, ?, ?, ?, ?, ?)",
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


def publish_day(con: Warehouse, ds: dt.date) -> None:
    """The day's accepted rows replace the day in ``raw.events`` (on Spark: its partition, in one
    ``insert overwrite``), the staged catalogues replace ``raw.pins``/``raw.users``."""
    con.replace_day(EVENTS_TABLE, ds, [name for name, _ in EVENT_COLUMNS], accepted_rows(ds))
    for catalogue in ("pins", "users"):
        con.execute_all(
            con.dialect.overwrite_table(
                f"{RAW_SCHEMA}.{catalogue}", f"select * from {STAGING_SCHEMA}.{catalogue}"
            )
        )


def conserved(con: Warehouse, ds: dt.date, landed: int, verdict: str) -> tuple[int, int]:
    """(accepted, quarantined) as written by this audit; raise :class:`ConservationBroken` unless the rows
    written are exactly the ``landed`` staged rows, each once (matched by source file and row).

    Accepted: ``raw.events[ds]`` once published, the staged rows outside the quarantine when refused;
    quarantined: the day's quarantine rows of this audit's verdict."""
    published = verdict == "published"
    accepted = (
        f"select _source_file as f, _source_row as r from {EVENTS_TABLE} where ds = ?"
        if published
        else f"select _source_file as f, _source_row as r from ({accepted_rows(ds)}) as accepted"
    )
    quarantined = (
        f"select source_file as f, source_row as r from {QUARANTINE_TABLE} where ds = ? and verdict = ?"
    )
    written = (
        f"{EVENTS_TABLE} and {QUARANTINE_TABLE}" if published else f"the accepted side and {QUARANTINE_TABLE}"
    )
    return _conservation(
        con, ds, landed, (accepted, quarantined), [*([ds] if published else []), ds, verdict], written
    )


def conserved_before_writing(con: Warehouse, ds: dt.date, landed: int) -> tuple[int, int]:
    """The same check on what the audit is about to write (the staged rows outside and inside its
    audit table): where a publication cannot be rolled back (Spark), nothing is written unless it holds."""
    return _conservation(
        con,
        ds,
        landed,
        (
            f"select _source_file as f, _source_row as r from ({accepted_rows(ds)}) as accepted",
            f"select _source_file as f, _source_row as r from {audit_table(ds)}",
        ),
        [],
        f"the accepted and quarantined sides of {audit_table(ds)} (before writing)",
    )


def _conservation(
    con: Warehouse, ds: dt.date, landed: int, sides: tuple[str, str], params: list[object], written: str
) -> tuple[int, int]:
    """(accepted, quarantined) counted from the two ``sides`` (queries of ``f``, ``r``: source file and
    row), or :class:`ConservationBroken` unless together they are the staged rows, each once."""
    accepted, quarantined = sides
    row = con.execute(
        f"""
        with a as ({accepted}),
        q as ({quarantined}),
        written as (select f, r from a union all select f, r from q)
        select (select count(*) from a), (select count(*) from q),
               (select count(*) from (select distinct f, r from written) as d),
               (select count(*) from written w where not exists (
                   select 1 from {staged_table(ds)} s where s._source_file = w.f and s._source_row = w.r))
        """,
        params or None,
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
    undone = (
        "The transaction was rolled back: nothing was published or recorded and the day stays staged."
        if con.transactional
        else f"{con.dialect.name} has no transaction to roll back: what was written stays until the audit runs "
        "again, nothing was recorded, and the day stays staged."
    )
    raise ConservationBroken(
        f"ds={ds}: {landed} rows landed in {staged_table(ds)}, but this audit wrote {a} and {q} rows to "
        f"{written}: {', '.join(found) or 'the counts disagree'}. {undone} A fault of the pipeline, not "
        f"of the data: open an issue with this message, and clear the task once it is fixed.",
        ds=ds.isoformat(),
        landed=landed,
        accepted=a,
        quarantined=q,
    )
