"""Day claims: one run of a day at a time, from its ``land`` until its ``audit`` ends.

``land`` claims each of its days in ``raw_staging.day_claims`` (one row per day: the run id and
when it was taken) before it writes anything, and the audit releases the claim once it has
published or refused the day. A second run of a day that is claimed is refused with
:class:`~recflow.core.errors.DayClaimed` naming the run that holds it, so that no run lands over
another's staged day, and the audit refuses to publish a day another run staged
(:func:`hold_claim`). The same run may land again (a retried or cleared run); a claim expires
:data:`CLAIM_EXPIRES_AFTER_HOURS` after it was taken (a run that died between ``land`` and
``audit``), or is released by hand (:func:`release_by_hand`, ``recflow claims release``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from recflow.core.errors import ConfigError, DayClaimed
from recflow.ingest.contract import staged_table
from recflow.warehouse import STAGING_SCHEMA, Warehouse

log = logging.getLogger(__name__)

CLAIMS_TABLE = f"{STAGING_SCHEMA}.day_claims"
"""The days that a run holds, from its ``land`` until its ``audit`` has published or refused them."""
CLAIMS_TYPES = (
    ("ds", "date not null"),
    ("run_id", "varchar not null"),
    ("claimed_at", "timestamptz not null"),
)


def claims_ddl(con: Warehouse) -> str:
    """The claims table, partitioned by day where the engine partitions (a claim is released by day)."""
    return con.dialect.create_table(CLAIMS_TABLE, CLAIMS_TYPES, partitioned_by=("ds",))


CLAIM_EXPIRES_AFTER_HOURS = 6
"""A claim older than this is stale (its run died between ``land`` and ``audit``, or was cleared and not
rerun) and another run may take the day over. Well past ``land`` + ``audit`` with their retries (30 min
each, one retry) and the wait for the ``warehouse`` pool in between; a late audit of the run that lost
its claim still refuses to publish the other run's staging."""


@dataclass(frozen=True)
class Claim:
    """A run's hold on a day, as recorded in :data:`CLAIMS_TABLE`."""

    ds: date
    run_id: str
    claimed_at: str
    expired: bool


def release_command(ds: date, run_id: str) -> str:
    """The command that releases ``run_id``'s claim on ``ds`` by hand (that run is no longer running):
    ``recflow claims release``, the same on every engine."""
    return f"recflow claims release --ds {ds.isoformat()} --run '{run_id}'"


def claims(con: Warehouse) -> dict[date, Claim]:
    """The days held now (the table is small: only the days between a run's land and its audit)."""
    rows = con.execute(
        f"select ds, run_id, cast(claimed_at as {con.dialect.string_type()}), "
        f"claimed_at < now() - interval '{CLAIM_EXPIRES_AFTER_HOURS} hours' from {CLAIMS_TABLE}"
    ).fetchall()
    return {r[0]: Claim(r[0], str(r[1]), str(r[2]), bool(r[3])) for r in rows}


def claim_days(con: Warehouse, days: list[date], run_id: str | None) -> None:
    """Take ``run_id``'s claim on ``days`` (renewing its own) in one transaction, or raise
    :class:`DayClaimed` naming the run that holds one of them; a stale claim is taken over.

    ``run_id=None`` (a bare ``land`` outside a DAG run, a test) takes no claim, but is refused a
    day that another run holds all the same."""
    con.execute(claims_ddl(con))
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
                f"(failed for good, or cleared and not rerun), release the day: `{release_command(first.ds, first.run_id)}` "
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
            con.delete_where(CLAIMS_TABLE, {"ds": ds})
            if run_id is not None:
                con.execute(
                    f"insert into {CLAIMS_TABLE} (ds, run_id, claimed_at) values (?, ?, now())", [ds, run_id]
                )


def claims_held(con: Warehouse) -> dict[date, Claim]:
    """The days held now, none where no run has landed yet (no claims table)."""
    schema, table = CLAIMS_TABLE.split(".")
    return claims(con) if con.table_exists(schema, table) else {}


def held_by(con: Warehouse, ds: date, run_id: str) -> Claim:
    """The claim on ``ds``, which ``run_id`` holds; :class:`ConfigError` when the day is not claimed or
    another run holds it."""
    held = claims_held(con).get(ds)
    if held is None:
        raise ConfigError(f"ds={ds} is not claimed by any run: nothing to release")
    if held.run_id != run_id:
        raise ConfigError(
            f"ds={ds} is claimed by run {held.run_id!r} since {held.claimed_at}, not by {run_id!r}: nothing "
            "released. If that run is no longer running either, release it by its own id"
        )
    return held


def release_by_hand(con: Warehouse, ds: date, run_id: str) -> Claim:
    """Release the claim on ``ds`` that ``run_id`` holds (``recflow claims release``, once that run is no
    longer running); the claim released. :class:`ConfigError` when the day is not claimed or another run
    holds it: the person named the run they saw hold it, so a claim that changed hands stays."""
    held = held_by(con, ds, run_id)
    con.delete_where(CLAIMS_TABLE, {"ds": ds})
    log.warning("ds=%s: the claim of run %r, taken at %s, released by hand", ds, run_id, held.claimed_at)
    return held


def release_claim(con: Warehouse, ds: date, run_id: str) -> None:
    """Release ``run_id``'s claim on ``ds`` (its audit published or refused the day); another run's
    claim on it stays."""
    claim = claims(con).get(ds)
    if claim is not None and claim.run_id == run_id:
        con.delete_where(CLAIMS_TABLE, {"ds": ds})


def hold_claim(con: Warehouse, ds: date, run_id: str) -> None:
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
        f"running, release the day first: `{release_command(ds, claim.run_id)}`).",
        ds=ds.isoformat(),
        holder=claim.run_id,
    )
