"""``recflow incidents list|show``: the failed tasks the failure callback recorded, one line
each or one in full."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from datetime import UTC, datetime

from recflow.cli.args import SQL_INTEGER_MAX, Subcommands, count_up_to, dag_id, int_between, missing_day
from recflow.cli.reach import Kind, reading
from recflow.core.config import ConfigError, Settings
from recflow.oncall.store import IncidentStore, parse_since

incident_id = int_between(1, SQL_INTEGER_MAX, "an incident id")
incident_count = count_up_to(SQL_INTEGER_MAX, "incidents")
"""``--limit``: a count from 1 to the largest integer the store's database holds (its ``LIMIT``)."""


def _since(text: str) -> datetime:
    try:
        moment = parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(missing_day(text) or str(exc)) from None
    try:  # the store compares moments in UTC: 0001-01-01T00:00+14:00 is before the year 1 there
        moment.astimezone(UTC)
    except OverflowError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is outside the years 1 to 9999 once written in UTC, as incidents are recorded"
        ) from None
    return moment


def _require_home(settings: Settings) -> None:
    """Refuse a home that does not exist when the incidents are kept in it (no RECFLOW_INCIDENTS_URL):
    its store would answer "no incidents" as a healthy one does."""
    if settings.incidents_url is None and not settings.home.is_dir():
        raise ConfigError(
            f"RECFLOW_HOME={settings.home} does not exist: nothing has run there, so it has no incidents. "
            "Check the setting (a typo makes a new, empty home)"
        )


def _store(settings: Settings, kind: Kind) -> tuple[str, str]:
    variable = "RECFLOW_INCIDENTS_URL" if settings.incidents_url else "RECFLOW_HOME"
    return f"the incident store {IncidentStore.of(settings)}", variable


_reading_the_store = reading(_store, registry=False)


@_reading_the_store
def cmd_incidents_list(settings: Settings, args: argparse.Namespace) -> int:
    _require_home(settings)
    store = IncidentStore.of(settings)
    found = store.find(dag_id=args.dag, since=args.since, limit=args.limit)
    if args.json:
        print(json.dumps([incident.as_dict() for incident in found], indent=2))
        return 0
    if not found:
        filters = ([f"--dag {args.dag}"] if args.dag else []) + (
            [f"--since {args.since.isoformat(timespec='seconds')}"] if args.since else []
        )
        recorded = store.count() if filters else 0
        print(
            f"no incidents match {' '.join(filters)} ({recorded} recorded in {store})"
            if filters
            else f"no incidents recorded in {store}"
        )
    for incident in found:
        anchor = incident.runbook.rpartition("#")[2]
        print(
            f"{incident.id:>5}  {incident.at}  {incident.dag_id}.{incident.task_id}  "
            f"{incident.kind}  {incident.root_cause}  [#{anchor}]"
        )
    return 0


def _field(label: str, value: str | None, width: int = 100) -> list[str]:
    if not value:
        return []
    lines = textwrap.wrap(value, width=width - 16, break_long_words=False, break_on_hyphens=False) or [""]
    return [f"  {label:<14}{lines[0]}"] + [f"  {'':<14}{line}" for line in lines[1:]]


@_reading_the_store
def cmd_incidents_show(settings: Settings, args: argparse.Namespace) -> int:
    _require_home(settings)
    store = IncidentStore.of(settings)
    incident = store.get(args.id)
    if incident is None:
        print(f"no incident {args.id} in {store}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(incident.as_dict(), indent=2))
        return 0
    interval = (
        f"[{incident.interval_start}, {incident.interval_end})"
        if incident.interval_start and incident.interval_end != incident.interval_start
        else None  # a run with no span of data (a manual or asset-triggered training run): no interval line
    )
    lines = [
        f"incident {incident.id}: {incident.dag_id}.{incident.task_id} failed (try {incident.try_number})",
        *_field("at", incident.at),
        *_field("run", incident.run_id),
        *_field("interval", interval),
        *_field("kind", f"{incident.kind}" + (f" ({incident.error_type})" if incident.error_type else "")),
        *_field("root cause", incident.root_cause),
        *_field("check", incident.check),
        *_field("columns", ", ".join(incident.columns)),
        *_field("observed", incident.observed),
        *_field("expected", incident.expected),
        *_field("evidence", incident.evidence),
        *_field("stale", incident.blast_radius.get("stale_asset")),
        *_field("champion", incident.blast_radius.get("champion")),
        *_field("what to do", incident.advice),
        *_field("runbook", incident.runbook),
    ]
    if incident.message:
        lines += ["", "  message:", *(f"    {line}" for line in incident.message.splitlines())]
    print("\n".join(lines))
    return 0


def add_commands(sub: Subcommands) -> None:
    incidents = sub.add_parser(
        "incidents", help="failed tasks, as recorded by the failure callback"
    ).add_subparsers(dest="incidents_command", required=True)
    il = incidents.add_parser("list", help="incidents, oldest first, one line each")
    il.add_argument("--dag", type=dag_id, help="only this DAG's")
    il.add_argument(
        "--since", type=_since, help="an ISO date or date-time (UTC), or a duration ago: 30m, 24h, 7d, 2w"
    )
    il.add_argument("--limit", type=incident_count, help="only the most recent N")
    il.add_argument("--json", action="store_true")
    il.set_defaults(func=cmd_incidents_list)
    ish = incidents.add_parser("show", help="one incident in full")
    ish.add_argument("id", type=incident_id)
    ish.add_argument("--json", action="store_true")
    ish.set_defaults(func=cmd_incidents_show)
