"""``recflow setup``, ``demo``, ``up``, ``down``, ``airflow`` and ``clear``: the embedded Airflow,
set up, run in the foreground, stopped, driven by its own CLI, the whole pipeline through it,
and days run again from a task."""

from __future__ import annotations

import argparse
import http.client
import signal
import sys
import time
import urllib.error
from datetime import date
from typing import Any

from recflow.cli.args import Subcommands, add_world_size, generated_days, iso_date, regex, share
from recflow.cli.passthrough import cmd_airflow
from recflow.core.config import Settings
from recflow.core.errors import ConfigError
from recflow.core.gate import FAMILIES
from recflow.core.names import WAREHOUSE_DAG
from recflow.core.urls import shown_url
from recflow.registry import registry_for
from recflow.stack.api import AirflowApiError, AirflowClient, NoAdminPassword, excerpt
from recflow.stack.backfill import backfill_conf, backfill_days
from recflow.stack.demo import (
    PipelineFailed,
    claim_demo_stores,
    demo_days,
    run_pipeline,
    say,
    setup,
    warehouse_checksums,
    warehouse_counts,
)
from recflow.stack.ports import port_in_use
from recflow.stack.rerun import check_days, clear_days, clear_run
from recflow.stack.runtime import API_HOST, PASSWORDS_FILE, admin_password, api_base_url
from recflow.stack.services import (
    jobs_left_running,
    record_foreground,
    start_services,
    stop_recorded,
)


def cmd_setup(settings: Settings, args: argparse.Namespace) -> int:
    setup(settings)
    print(f"ready: RECFLOW_HOME={settings.home}")
    return 0


def api_client(settings: Settings) -> AirflowClient:
    """Log in to this home's API server (``recflow clear``, ``recflow backfill``): each way that fails
    is a :class:`ConfigError` saying, on one line, what is wrong and what to do."""
    url, home = api_base_url(settings), settings.home
    try:
        return AirflowClient.login(settings)
    except NoAdminPassword:
        passwords = settings.airflow_home / PASSWORDS_FILE
        if port_in_use(API_HOST, settings.airflow_api_port):
            raise ConfigError(
                f"{url} answers, but the API server of RECFLOW_HOME={home} has not written its admin "
                f"password to {passwords}: it is still starting (run this again in a minute), or that is "
                "another home's Airflow (RECFLOW_AIRFLOW_API_PORT sets this home's port)"
            ) from None
        raise ConfigError(
            f"Airflow is not running for RECFLOW_HOME={home}: nothing listens at {url}, and its API server "
            f"has never started for this home (no admin password in {passwords}). Start it with "
            "`recflow up` (or `make up`) in another terminal, then run this again; check RECFLOW_HOME "
            "(a typo names a new, empty home)"
        ) from None
    except AirflowApiError as exc:
        if exc.status == 401:  # a server answered, and not to this home's password
            raise ConfigError(
                f"Airflow's API server at {url} refused the admin password of RECFLOW_HOME={home}: it is "
                "another home's Airflow (or this home's password was made anew since it started). Start "
                "this home's own with `recflow up` on a free port (RECFLOW_AIRFLOW_API_PORT), or point "
                "RECFLOW_HOME at the home that server runs"
            ) from exc
        if exc.status is None:
            raise _unreachable(url, str(exc)) from exc
        raise ConfigError(
            f"{url} does not answer as Airflow's API server (HTTP {exc.status} to POST /auth/token: "
            f"{excerpt(exc.detail) if exc.detail else exc}): another program holds the port. Point "
            "RECFLOW_AIRFLOW_API_PORT at this home's Airflow, or stop that program and run `recflow up`"
        ) from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            raise ConfigError(
                f"Airflow's API server is not running for RECFLOW_HOME={home}: nothing listens at {url}. "
                "Start it with `recflow up` (or `make up`) in another terminal, then run this again "
                "(RECFLOW_AIRFLOW_API_PORT sets its port)"
            ) from exc
        raise _unreachable(url, str(exc.reason)) from exc
    except (OSError, http.client.HTTPException) as exc:  # a timeout, a dropped connection, not HTTP
        raise _unreachable(url, excerpt(str(exc)) or type(exc).__name__) from exc


def _unreachable(url: str, why: str) -> ConfigError:
    return ConfigError(
        f"cannot reach Airflow's API server at {url} ({why}): is it running (`recflow up`)? "
        "RECFLOW_AIRFLOW_API_PORT sets its port"
    )


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    extra: dict[str, Any] = {}
    if args.max_quarantine_share is not None:
        extra["max_quarantine_share"] = args.max_quarantine_share
    if args.no_volume_check:
        extra["check_volume"] = False
    backfill_conf(args.first, args.last, extra)  # a reversed range is refused before Airflow is asked
    result = backfill_days(api_client(settings), args.first, args.last, extra=extra)
    if result.state == "success":
        print(f"{WAREHOUSE_DAG} run {result.run_id}: success in {result.seconds:.0f}s")
        return 0
    print(
        f"{WAREHOUSE_DAG} run {result.run_id}: {result.state} after {result.seconds:.0f}s; failed: "
        f"{', '.join(result.failed_tasks) or 'none'}"
        + (
            f" ({result.not_run} tasks after {'it' if len(result.failed_tasks) == 1 else 'them'} did not run)"
            if result.not_run and result.failed_tasks
            else ""
        )
        + f"; `recflow incidents list --dag {WAREHOUSE_DAG}` says why",
        file=sys.stderr,
    )
    return 1


def _days_to_clear(args: argparse.Namespace) -> tuple[date, date] | None:
    """The days ``recflow clear`` was given (None: ``--run``), refused before Airflow is asked when
    they are missing, reversed, or given with ``--run``."""
    if args.run is not None:
        if args.start_date or args.end_date:
            raise ConfigError("give the days (-s/-e) or --run, not both")
        return None
    if args.start_date is None:
        raise ConfigError(
            "say which runs to clear: the days they processed (-s D [-e D]) or --run RUN_ID|latest"
        )
    first, last = args.start_date, args.end_date or args.start_date
    check_days(first, last)
    return first, last


def cmd_clear(settings: Settings, args: argparse.Namespace) -> int:
    days = _days_to_clear(args)
    client = api_client(settings)
    how = {"downstream": args.downstream, "only_failed": args.only_failed, "dry_run": args.dry_run}
    if days is None:
        cleared = [clear_run(client, args.dag_id, args.task_regex, args.run, **how)]
    else:
        cleared = clear_days(client, args.dag_id, args.task_regex, *days, **how)
    verb = "would clear" if args.dry_run else "cleared"
    for run in cleared:
        tasks = ", ".join(run.task_ids) or "nothing (no task instance matched in this run)"
        day = f" {run.days_label}" if run.days else ""
        if run.superseded_by is not None:
            print(
                f"{args.dag_id}{day} run {run.run_id} ({run.state_before}): left as it is: a later run "
                f"processed its days in this range again ({run.superseded_by}, {verb}); to clear this one "
                f"too: --run {run.run_id}"
            )
            continue
        print(f"{args.dag_id}{day} run {run.run_id} ({run.state_before}): {verb} {tasks}")
        if len(run.days) > 1 and run.task_ids:
            print(f"  one run for {run.days_label}: its cleared tasks run again for every day of it")
    if not any(run.task_ids for run in cleared):
        only = (
            " among failed task instances (--only-failed): none of them had failed or been left upstream_failed"
            if args.only_failed
            else ""
        )
        print(f"recflow: nothing was cleared for {args.task_regex!r}{only}", file=sys.stderr)
        return 1
    if not args.dry_run and (client.dag(args.dag_id) or {}).get("is_paused"):
        print(
            f"recflow: {args.dag_id} is paused, so the cleared tasks wait and run once it is unpaused "
            f"(UI, or `recflow airflow dags unpause {args.dag_id}`)",
            file=sys.stderr,
        )
    return 0


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    pid_file = record_foreground(settings)
    try:
        services = start_services(settings, foreground=True)
    except BaseException:  # ports taken, a start that failed: no recflow up runs, so no note of one
        pid_file.unlink(missing_ok=True)
        raise
    print(
        f"Airflow on {api_base_url(settings)} (user admin, password in "
        f"{settings.airflow_home / 'simple_auth_manager_passwords.json'}); Ctrl-C stops it",
        flush=True,
    )
    stopping = False

    def _stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stopping and all(services.alive().values()):
        time.sleep(1)
    dead = [name for name, ok in services.alive().items() if not ok]
    services.stop()
    pid_file.unlink(missing_ok=True)
    if dead and not stopping:
        print(f"airflow {', '.join(dead)} exited; stopped the others", file=sys.stderr)
        return 1
    print("Airflow stopped")
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    stopped = stop_recorded(settings)
    print("Airflow stopped" if stopped else "nothing to stop: no `recflow up` is running")
    for line in jobs_left_running(settings):
        print(line)
    return 0


def _password(settings: Settings) -> str | None:
    """The admin password for the demo's last lines (None where its file is unreadable: a demo that
    ran does not end in an error for it)."""
    try:
        return admin_password(settings)
    except ConfigError:
        return None


def _fmt_seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s"


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.producers.generate import GeneratorConfig, generate  # noqa: PLC0415 (pyarrow, numpy: not at start-up)

    days = demo_days(args.days)
    claim_demo_stores(settings)  # before anything is written
    started = time.monotonic()
    summary = generate(
        settings.landing_dir,
        GeneratorConfig(start=days[0], days=len(days), users=args.users, pins=args.pins, seed=args.seed),
        command="recflow demo",
    )
    say(f"data: {summary.events} synthetic events over {days[0]}..{days[-1]} in {settings.landing_dir}")
    setup(settings, echo=say)
    before = warehouse_checksums(settings) if settings.duckdb_path.exists() else None
    try:
        result = run_pipeline(settings, days)
    except (PipelineFailed, TimeoutError) as exc:
        print(
            f"\nDEMO FAILED: {exc}\nlogs: {settings.home / 'logs'}; incidents: `recflow incidents list`",
            file=sys.stderr,
        )
        return 1
    champion = registry_for(settings).get_by_alias(settings.model_name)
    after = warehouse_counts(settings)
    print("\n=== recflow demo summary ===")
    for run in result.warehouse_runs + result.train_runs:
        print(
            f"  {run.dag_id:<26} {run.logical_date or run.run_id:<34} {run.state:<8} {_fmt_seconds(run.seconds)}"
        )
    if result.training:
        print(
            f"  training job: {result.training['job_name']} "
            f"({_fmt_seconds(result.training.get('training_seconds'))}, "
            f"peak {result.training.get('peak_memory_mb')} MB)"
        )
    if result.gate:
        print(f"  gate: {result.gate['reason']}")
    print("  warehouse rows: " + ", ".join(f"{k}={v}" for k, v in after.items()))
    if before is not None:
        changed = [
            table for table, digest in warehouse_checksums(settings).items() if before.get(table) != digest
        ]
        print(
            "  rerun of the same intervals changed the warehouse (content checksums): "
            + ("no" if not changed else f"yes ({', '.join(changed)})")
        )
    if champion:
        print(f"  model {champion.name} version {champion.version} {champion.aliases}:")
        for family, (heading, names) in FAMILIES.items():  # as the model card heads them
            shown = ", ".join(f"{k}={champion.metrics[k]:.4f}" for k in names if k in champion.metrics)
            aside = "  (a random ranking scores hr@10 = 0.10 here)" if family == "sampled" and shown else ""
            print(f"    {heading}: {shown or '(not recorded)'}{aside}")
    print("\nwhere to look:")
    print(
        f"  Airflow UI:  `make up`, then {api_base_url(settings)}  user admin, password "
        f"{_password(settings) or f'(see {settings.airflow_home / PASSWORDS_FILE})'}"
    )
    print(f"  MLflow:      {shown_url(settings.mlflow_uri)} (artifacts in {settings.mlflow_artifact_root})")
    if settings.warehouse_url:  # a server (PostgreSQL, a Spark Thrift server): its URL without a password
        print(f"  warehouse:   {shown_url(settings.warehouse_url)} (dbt target {settings.dbt_target})")
    else:
        print(f"  warehouse:   {settings.duckdb_path}")
    print(f"  models:      .venv/bin/recflow models list --name {settings.model_name} --json")
    print(
        f"  export:      .venv/bin/recflow models export --name {settings.model_name} --alias champion --out DIR"
    )
    print(f"demo finished in {time.monotonic() - started:.0f}s")
    return 0 if result.ok and champion is not None else 1


def add_commands(sub: Subcommands) -> None:
    sub.add_parser(
        "setup", help="migrate the Airflow DB, compile the dbt manifest, create pools"
    ).set_defaults(func=cmd_setup)
    demo = sub.add_parser("demo", help="run the whole pipeline through the Airflow scheduler")
    demo.add_argument(
        "--days", type=generated_days, default=4, help="the last N complete UTC days, 1 to 3660 (default 4)"
    )
    add_world_size(demo)
    demo.set_defaults(func=cmd_demo)
    sub.add_parser(
        "up",
        help="run Airflow in the foreground: its UI and API on http://127.0.0.1:RECFLOW_AIRFLOW_API_PORT "
        "(default 8080; docs/configuration.md)",
        description="Airflow (API server and UI, scheduler, DAG processor, triggerer) in the foreground, one "
        "per RECFLOW_HOME, on http://127.0.0.1:RECFLOW_AIRFLOW_API_PORT (default 8080); Ctrl-C or "
        "`recflow down` stops it.",
    ).set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the Airflow started by `recflow up`").set_defaults(func=cmd_down)

    af = sub.add_parser("airflow", help="the airflow CLI with the project's environment", add_help=False)
    af.add_argument("args", nargs=argparse.REMAINDER)
    af.set_defaults(func=cmd_airflow)

    backfill = sub.add_parser(
        "backfill",
        help="land, audit and transform a range of days in one run of recsys_warehouse (the marts built once)",
    )
    backfill.add_argument("--from", dest="first", type=iso_date, required=True, help="first day (ds)")
    backfill.add_argument("--to", dest="last", type=iso_date, required=True, help="last day (ds), inclusive")
    backfill.add_argument(
        "--max-quarantine-share", type=share, default=None, help="the audit's param for this run (0..1)"
    )
    backfill.add_argument(
        "--no-volume-check", action="store_true", help="skip the audit's volume check (a spiky history)"
    )
    backfill.set_defaults(func=cmd_backfill)

    clear = sub.add_parser(
        "clear",
        help="run days again from a task: clear it (and downstream) in the runs that processed those days",
    )
    clear.add_argument("dag_id")
    clear.add_argument(
        "-t",
        "--task-regex",
        type=regex,
        required=True,
        help="regular expression searched in task ids, e.g. '^land$'",
    )
    clear.add_argument("-s", "--start-date", type=iso_date, default=None, help="first day (ds) to run again")
    clear.add_argument("-e", "--end-date", type=iso_date, default=None, help="last day (default: the first)")
    clear.add_argument("--run", default=None, help="instead of days: one run's id, or `latest`")
    clear.add_argument("-d", "--downstream", action="store_true", help="also clear every task after them")
    clear.add_argument("--only-failed", action="store_true", help="only task instances that failed")
    clear.add_argument("--dry-run", action="store_true", help="list what would be cleared; clear nothing")
    clear.set_defaults(func=cmd_clear)
