"""``recflow claims [list|release]``: the days a warehouse run holds, and releasing one by hand.

``land`` claims its days until its audit ends (``recflow.ingest.claims``); a run that died between
them leaves its days held for ``CLAIM_EXPIRES_AFTER_HOURS``, and any other run of those days is refused
``DayClaimed``, whose message gives the ``release`` command to run once the holder is no longer running.
"""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack

from recflow.cli.args import Subcommands, iso_date
from recflow.core.config import Settings
from recflow.core.errors import ConfigError
from recflow.core.names import WAREHOUSE_DAG

LIVE_STATES = ("queued", "running")
"""A run in these states may still be between its ``land`` and its ``audit``: its claim is not released."""


def cmd_claims_list(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.ingest.claims import CLAIM_EXPIRES_AFTER_HOURS, claims_held  # noqa: PLC0415 (drivers)
    from recflow.warehouse.query import open_warehouse  # noqa: PLC0415

    with ExitStack() as stack:
        held = claims_held(open_warehouse(settings, stack))
    rows = [held[ds] for ds in sorted(held)]
    if args.json:
        print(json.dumps([{**vars(c), "ds": c.ds.isoformat()} for c in rows], indent=2))
        return 0
    if not rows:
        print("no day is claimed: no run is between its land and its audit")
    for c in rows:
        stale = f" (expired: older than {CLAIM_EXPIRES_AFTER_HOURS} h, the next run takes it over)"
        print(f"ds={c.ds} claimed by run {c.run_id} since {c.claimed_at}{stale if c.expired else ''}")
    return 0


def cmd_claims_release(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.ingest.claims import held_by, release_by_hand  # noqa: PLC0415 (drivers)
    from recflow.warehouse.query import open_warehouse  # noqa: PLC0415

    with ExitStack() as stack:  # the claim first: a day not held, or held by another run, says so
        held_by(open_warehouse(settings, stack), args.ds, args.run)
    state = _run_state(settings, args.run)
    if state in LIVE_STATES:
        raise ConfigError(
            f"run {args.run} of {WAREHOUSE_DAG} is {state}: its audit releases ds={args.ds} when it ends. "
            "Release a claim only for a run that is no longer running (failed, or cleared and not rerun). "
            "Only if that run is a `dags test` you know was killed (Airflow shows such a run running for "
            "good, and its task holds the warehouse pool's slot): mark its run failed in the UI, then release "
            "(docs/runbooks/recsys_warehouse.md#day-claimed)"
        )
    if state is UNCHECKED and not args.not_running:
        raise ConfigError(
            f"cannot ask Airflow whether run {args.run} is still running: its API server does not answer "
            "(`recflow up` starts it). Nothing released. If you know that run has ended (a `dags test` "
            "that died, say), add --not-running"
        )
    with ExitStack() as stack:
        released = release_by_hand(open_warehouse(settings, stack, read_only=False), args.ds, args.run)
    checked = {
        UNCHECKED: "its state not checked: --not-running",
        None: f"Airflow has no run {args.run} of {WAREHOUSE_DAG}",
    }.get(state, f"its state in Airflow: {state}")
    print(
        f"released ds={released.ds}, claimed by run {released.run_id} since {released.claimed_at} ({checked})"
    )
    return 0


UNCHECKED = "unchecked"
"""What :func:`_run_state` says when Airflow's API server does not answer."""


def _run_state(settings: Settings, run_id: str) -> str | None:
    """The run's state in Airflow; ``None`` when Airflow has no such run, :data:`UNCHECKED` when its API
    server does not answer (a ``dags test`` runs with none)."""
    from recflow.cli.stack import api_client  # noqa: PLC0415 (the API client: only for release)
    from recflow.stack.api import AirflowApiError  # noqa: PLC0415

    try:
        run = api_client(settings).run(WAREHOUSE_DAG, run_id)
    except (ConfigError, AirflowApiError, OSError):  # OSError: urllib's URLError, a reset connection
        return UNCHECKED
    return None if run is None else str(run.get("state"))


def add_commands(sub: Subcommands) -> None:
    claims = sub.add_parser("claims", help="the days a warehouse run holds between its land and its audit")
    claims.set_defaults(func=cmd_claims_list, json=False)
    actions = claims.add_subparsers(dest="claims_command")
    listing = actions.add_parser("list", help="every claimed day: its run and since when (the default)")
    listing.add_argument("--json", action="store_true", help="the claims as JSON objects")
    listing.set_defaults(func=cmd_claims_list)
    release = actions.add_parser(
        "release", help="free a day whose run is no longer running (the DayClaimed error gives this command)"
    )
    release.add_argument("--ds", type=iso_date, required=True, help="the day (YYYY-MM-DD)")
    release.add_argument(
        "--run", required=True, help="the run that holds it, as listed: a claim another run holds stays"
    )
    release.add_argument(
        "--not-running",
        action="store_true",
        help="release without asking Airflow whether the run still runs (its API server is not up)",
    )
    release.set_defaults(func=cmd_claims_release)
