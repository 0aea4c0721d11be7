"""``recflow``: the command line of the project.

recflow generate [--days N] [--end DATE] ...   synthetic data into the landing zone
recflow setup                                 Airflow DB, dbt manifest, pools
recflow demo [--days N]                       the whole pipeline through the scheduler, then a summary
recflow up                                    Airflow in the foreground on 127.0.0.1:8080
recflow down                                  stop it (from another terminal)
recflow airflow ARGS...                       the airflow CLI with the project's settings
recflow clear DAG -t REGEX (-s DAY [-e DAY] | --run ID|latest) [-d] [--dry-run]   run again from a task
recflow models list [--name NAME] [--json]
recflow models export --name NAME --alias champion --out DIR
recflow models promote --name NAME --version V --reason TEXT   move `champion` (a rollback), recorded
recflow models history --name NAME [--json]   every move of `champion`: who, when, why
recflow models show --name NAME [--version V | --alias champion] [--json]   the model card
recflow mlflow ui [--port 5000]               the MLflow UI on the registry's store (curves, pictures)
recflow incidents list [--dag DAG] [--since TIME] [--json]    failed tasks, one line each
recflow incidents show ID [--json]            one incident: why, blast radius, what to do
recflow gc [--dry-run] [--json] [--show-kept]  delete unreferenced snapshots, checkpoints, archives, job folders
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import signal
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from recflow.core.config import Settings
from recflow.core.errors import ConfigError


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.core.ownership import claim, landing_store
    from recflow.producers.generate import GeneratorConfig, generate

    claim([landing_store(settings)], "recflow generate")  # never a producers' landing zone
    end = args.end or datetime.now(UTC).date() - timedelta(days=1)
    cfg = GeneratorConfig(
        start=end - timedelta(days=args.days - 1),
        days=args.days,
        users=args.users,
        pins=args.pins,
        topics=args.topics,
        seed=args.seed,
    )
    summary = generate(settings.landing_dir, cfg)
    print(
        f"generated {summary.events} events in {summary.partitions} daily partitions "
        f"({summary.start}..{summary.end}), {summary.users} users, {summary.pins} pins "
        f"under {settings.landing_dir}"
    )
    return 0


def cmd_setup(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.stack.demo import setup

    setup(settings)
    print(f"ready: RECFLOW_HOME={settings.home}")
    return 0


def cmd_airflow(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.stack.services import run_airflow

    return run_airflow(settings, args.args, check=False)


def cmd_clear(settings: Settings, args: argparse.Namespace) -> int:
    import urllib.error

    from recflow.stack.api import AirflowApiError, AirflowClient
    from recflow.stack.rerun import clear_days, clear_run
    from recflow.stack.runtime import api_base_url

    try:
        client = AirflowClient.login(settings)
    except (AirflowApiError, urllib.error.URLError) as exc:
        raise ConfigError(
            f"cannot reach Airflow's API server at {api_base_url(settings)} ({exc}): is it running "
            "(`recflow up`)? RECFLOW_AIRFLOW_API_PORT sets its port"
        ) from exc
    how = {"downstream": args.downstream, "only_failed": args.only_failed, "dry_run": args.dry_run}
    if args.run is not None:
        if args.start_date or args.end_date:
            raise ConfigError("give the days (-s/-e) or --run, not both")
        cleared = [clear_run(client, args.dag_id, args.task_regex, args.run, **how)]
    elif args.start_date is None:
        raise ConfigError(
            "say which runs to clear: the days they processed (-s D [-e D]) or --run RUN_ID|latest"
        )
    else:
        first, last = args.start_date, args.end_date or args.start_date
        cleared = clear_days(client, args.dag_id, args.task_regex, first, last, **how)
    verb = "would clear" if args.dry_run else "cleared"
    for run in cleared:
        tasks = ", ".join(run.task_ids) or "nothing (no task instance matched in this run)"
        day = f" ds={run.day}" if run.day else ""
        print(f"{args.dag_id}{day} run {run.run_id} ({run.state_before}): {verb} {tasks}")
    if not any(run.task_ids for run in cleared):
        print(f"recflow: nothing was cleared for {args.task_regex!r}", file=sys.stderr)
        return 1
    return 0


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.stack.runtime import api_base_url
    from recflow.stack.services import record_foreground, start_services

    pid_file = record_foreground(settings)
    services = start_services(settings, foreground=True)
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
    from recflow.stack.services import stop_recorded

    stopped = stop_recorded(settings)
    print("Airflow stopped" if stopped else "nothing to stop: no `recflow up` is running")
    return 0


def _fmt_seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s"


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.producers.generate import GeneratorConfig, generate
    from recflow.registry import registry_for
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
    from recflow.stack.runtime import admin_password, api_base_url

    claim_demo_stores(settings)  # before anything is written
    started = time.monotonic()
    days = demo_days(args.days)
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
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(champion.metrics.items()))
        print(f"  model {champion.name} version {champion.version} {champion.aliases}: {metrics}")
        print("  (a random ranker scores hr@10 = 0.10)")
    print("\nwhere to look:")
    print(
        f"  Airflow UI:  `make up`, then {api_base_url(settings)}  user admin, password "
        f"{admin_password(settings) or '(see AIRFLOW_HOME/simple_auth_manager_passwords.json)'}"
    )
    print(f"  MLflow:      {settings.mlflow_uri} (artifacts in {settings.mlflow_artifact_root})")
    print(f"  warehouse:   {settings.duckdb_path}")
    print(f"  models:      .venv/bin/recflow models list --name {settings.model_name} --json")
    print(
        f"  export:      .venv/bin/recflow models export --name {settings.model_name} --alias champion --out DIR"
    )
    print(f"demo finished in {time.monotonic() - started:.0f}s")
    return 0 if result.ok and champion is not None else 1


def cmd_models_list(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.registry import registry_for

    versions = registry_for(settings).list_versions(args.name)
    if args.json:
        print(json.dumps([v.as_dict() for v in versions], indent=2))
        return 0
    if not versions:
        print("no registered model versions" + (f" named {args.name}" if args.name else ""))
    for v in versions:
        metrics = " ".join(f"{k}={val:.4f}" for k, val in sorted(v.metrics.items()))
        aliases = ",".join(v.aliases) or "-"
        print(
            f"{v.name} v{v.version} [{aliases}] {v.created_at} {metrics} job={v.lineage.get('training_job_name')}"
        )
    return 0


def cmd_models_export(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.registry import registry_for

    registry = registry_for(settings)
    info = registry.get_by_alias(args.name, args.alias)
    if info is None:
        print(f"model {args.name!r} has no version with alias {args.alias!r}", file=sys.stderr)
        return 1
    out = registry.download(info, Path(args.out))
    print(f"exported {info.name} version {info.version} ({args.alias}) SavedModel to {out}")
    return 0


def cmd_models_promote(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.core.errors import RegistryError
    from recflow.registry import registry_for

    try:
        moved = registry_for(settings).promote(args.name, args.version, args.reason, getpass.getuser())
    except (RegistryError, ValueError) as exc:
        print(f"not promoted: {exc}", file=sys.stderr)
        return 1
    if moved is None:
        print(f"{args.name} version {args.version} already is the champion: nothing moved")
        return 0
    previous = moved.get("previous_version")
    print(
        f"{args.name}: champion moved from version {previous if previous is not None else '(none)'} "
        f"to {moved['version']} by {moved['who']} at {moved['at']} (move {moved['seq']}): {moved['reason']}"
    )
    return 0


def _card_text(card: dict[str, Any]) -> list[str]:
    gate, training, lineage = card["gate"], card["training"], card["lineage"]
    thresholds = gate["thresholds"]
    losses = training["loss_per_epoch"]
    lines = [
        f"{card['name']} version {card['version']} [{','.join(card['aliases']) or '-'}] "
        f"created {card['created_at']}" + ("" if card["complete"] else "  (INCOMPLETE publication)"),
        "metrics (gate's evaluation, holdout never in the history):  "
        + "  ".join(f"{k}={v:.4f}" for k, v in sorted(card["metrics"].items())),
        f"gate: {gate['reason'] or '(not recorded)'}",
        f"  thresholds: hr@10 >= {thresholds['min_hr_at_10']}, ndcg@10 >= {thresholds['min_ndcg_at_10']}, "
        f"tolerance {thresholds['tolerance']}; champion then: version {gate['champion_version']} "
        + (
            " ".join(f"{k}={v:.4f}" for k, v in sorted(gate["champion_metrics"].items()) if k != "users")
            if gate["champion_metrics"]
            else "(none)"
        ),
        "hyperparameters: " + " ".join(f"{k}={v}" for k, v in sorted(card["hyperparameters"].items())),
        f"training: {training['seconds']} s, peak memory {training['peak_memory_mb']} MB; loss per epoch "
        + (" ".join(f"{x:.4f}" for x in losses) if losses else "(not recorded)"),
        "serving: " + (", ".join(f"{k}={v}" for k, v in sorted(card["serving"].items())) or "as trained"),
        "lineage:",
        *(f"  {k}: {v}" for k, v in sorted(lineage.items())),
        "pictures:",
        *(f"  {k}: {v}" for k, v in sorted(card["pictures"].items())),
    ]
    if not card["pictures"]:
        lines.append("  (none: published before pictures were recorded)")
    return lines


def cmd_models_show(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.core.errors import RegistryError
    from recflow.publishing.card import model_card

    try:
        card = model_card(settings, args.name, version=args.version, alias=args.alias)
    except RegistryError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(card, indent=2))
    else:
        print("\n".join(_card_text(card)))
    return 0


def cmd_mlflow_ui(settings: Settings, args: argparse.Namespace) -> int:
    import subprocess

    if settings.mlflow_uri.startswith("sqlite:///"):
        Path(settings.mlflow_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.mlflow_uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    print(f"MLflow UI on http://{args.host}:{args.port} (store {settings.mlflow_uri}); Ctrl-C stops it")
    try:
        return subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        return 0


def cmd_models_history(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.core.errors import RegistryError
    from recflow.registry import registry_for

    try:
        moves = registry_for(settings).champion_history(args.name)
    except RegistryError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(moves, indent=2))
        return 0
    if not moves:
        print(f"no move of champion recorded for {args.name}")
    for move in moves:
        previous = move.get("previous_version")
        print(
            f"{move['seq']:>4}  {move['at']}  v{previous if previous is not None else '-'} -> v{move['version']}"
            f"  {move['who']}  {move['reason']}"
        )
    return 0


def _since(text: str) -> datetime:
    from recflow.oncall.incidents import parse_since

    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_incidents_list(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.oncall.incidents import IncidentStore

    found = IncidentStore.of(settings).find(dag_id=args.dag, since=args.since, limit=args.limit)
    if args.json:
        print(json.dumps([incident.as_dict() for incident in found], indent=2))
        return 0
    if not found:
        print(f"no incidents in {IncidentStore.of(settings)}")
    for incident in found:
        anchor = incident.runbook.rpartition("#")[2]
        print(
            f"{incident.id:>5}  {incident.at}  {incident.dag_id}.{incident.task_id}  "
            f"{incident.kind}  {incident.root_cause}  [#{anchor}]"
        )
    return 0


def _field(label: str, value: str | None, width: int = 100) -> list[str]:
    import textwrap

    if not value:
        return []
    lines = textwrap.wrap(value, width=width - 16, break_long_words=False, break_on_hyphens=False) or [""]
    return [f"  {label:<14}{lines[0]}"] + [f"  {'':<14}{line}" for line in lines[1:]]


def cmd_incidents_show(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.oncall.incidents import IncidentStore

    incident = IncidentStore.of(settings).get(args.id)
    if incident is None:
        print(f"no incident {args.id} in {IncidentStore.of(settings)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(incident.as_dict(), indent=2))
        return 0
    interval = f"[{incident.interval_start}, {incident.interval_end})" if incident.interval_start else None
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
        *_field("what to do", incident.what_to_do),
        *_field("runbook", incident.runbook),
    ]
    if incident.message:
        lines += ["", "  message:", *(f"    {line}" for line in incident.message.splitlines())]
    print("\n".join(lines))
    return 0


def cmd_gc(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.stack.retention import collect, plan, report_lines

    decided = plan(settings)
    if not args.dry_run:
        collect(settings, decided, allow_empty_registry=args.allow_empty_registry)
    if args.json:
        shown = decided.items if args.show_kept else decided.deletable
        print(json.dumps([i.as_dict(decided.now) for i in shown], indent=2))
    else:
        print("\n".join(report_lines(decided, deleted=not args.dry_run, show_kept=args.show_kept)))
    return 0


def cmd_load_movielens(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.producers.movielens import load_movielens

    summary = load_movielens(Path(args.data_dir), settings.landing_dir)
    print(
        f"landed {summary.ratings} ratings ({summary.users} users, {summary.items} movies) as "
        f"{summary.partitions} daily partitions {summary.first_day}..{summary.last_day} under {settings.landing_dir}"
    )
    return 0


def cmd_benchmark_movielens(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.stack.benchmark import run_movielens
    from recflow.stack.demo import PipelineFailed

    try:
        result = run_movielens(settings, Path(args.data_dir))
    except (PipelineFailed, TimeoutError) as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if result["champion_version"] is not None else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recflow", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic Pinterest-like data set into the landing zone")
    gen.add_argument("--days", type=int, default=7)
    gen.add_argument("--end", type=_date, default=None, help="last day (default: yesterday, UTC)")
    gen.add_argument("--users", type=int, default=400)
    gen.add_argument("--pins", type=int, default=1200)
    gen.add_argument("--topics", type=int, default=16)
    gen.add_argument("--seed", type=int, default=7)
    gen.set_defaults(func=cmd_generate)

    sub.add_parser(
        "setup", help="migrate the Airflow DB, compile the dbt manifest, create pools"
    ).set_defaults(func=cmd_setup)
    demo = sub.add_parser("demo", help="run the whole pipeline through the Airflow scheduler")
    demo.add_argument("--days", type=int, default=4)
    demo.add_argument("--users", type=int, default=400)
    demo.add_argument("--pins", type=int, default=1200)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("up", help="run Airflow in the foreground").set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the Airflow started by `recflow up`").set_defaults(func=cmd_down)

    af = sub.add_parser("airflow", help="the airflow CLI with the project's environment", add_help=False)
    af.add_argument("args", nargs=argparse.REMAINDER)
    af.set_defaults(func=cmd_airflow)

    clear = sub.add_parser(
        "clear",
        help="run days again from a task: clear it (and downstream) in the runs that processed those days",
    )
    clear.add_argument("dag_id")
    clear.add_argument(
        "-t", "--task-regex", required=True, help="regular expression searched in task ids, e.g. '^land$'"
    )
    clear.add_argument("-s", "--start-date", type=_date, default=None, help="first day (ds) to run again")
    clear.add_argument("-e", "--end-date", type=_date, default=None, help="last day (default: the first)")
    clear.add_argument("--run", default=None, help="instead of days: one run's id, or `latest`")
    clear.add_argument("-d", "--downstream", action="store_true", help="also clear every task after them")
    clear.add_argument("--only-failed", action="store_true", help="only task instances that failed")
    clear.add_argument("--dry-run", action="store_true", help="list what would be cleared; clear nothing")
    clear.set_defaults(func=cmd_clear)

    load = sub.add_parser("load", help="load a public data set into the landing zone").add_subparsers(
        dest="dataset", required=True
    )
    ml = load.add_parser("movielens", help="MovieLens 100K (ratings as save events, genres as topics)")
    ml.add_argument("--data-dir", required=True, help="the ml-100k folder, e.g. ../shared/data/ml-100k")
    ml.set_defaults(func=cmd_load_movielens)
    bench = sub.add_parser("benchmark", help="run the pipeline on a public data set").add_subparsers(
        dest="dataset", required=True
    )
    bml = bench.add_parser(
        "movielens", help="MovieLens 100K through the scheduler, registered as movielens-100k"
    )
    bml.add_argument("--data-dir", required=True)
    bml.add_argument("--out", help="also write the JSON result here")
    bml.set_defaults(func=cmd_benchmark_movielens)

    models = sub.add_parser("models", help="the model registry").add_subparsers(
        dest="models_command", required=True
    )
    ls = models.add_parser("list", help="registered model versions")
    ls.add_argument("--name")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_models_list)
    ex = models.add_parser("export", help="write a version's SavedModel to a directory")
    ex.add_argument("--name", required=True)
    ex.add_argument("--alias", default="champion")
    ex.add_argument("--out", required=True)
    ex.set_defaults(func=cmd_models_export)
    pr = models.add_parser("promote", help="move the alias champion to a version (a rollback), recorded")
    pr.add_argument("--name", required=True)
    pr.add_argument("--version", type=int, required=True)
    pr.add_argument("--reason", required=True, help="why: kept in the champion history")
    pr.set_defaults(func=cmd_models_promote)
    hi = models.add_parser("history", help="every move of the alias champion: who, when, why")
    hi.add_argument("--name", required=True)
    hi.add_argument("--json", action="store_true")
    hi.set_defaults(func=cmd_models_history)
    sh = models.add_parser("show", help="the model card of a version: metrics, gate, lineage, pictures")
    sh.add_argument("--name", required=True)
    which = sh.add_mutually_exclusive_group()
    which.add_argument("--version", type=int)
    which.add_argument("--alias", default="champion")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_models_show)

    mlflow = sub.add_parser("mlflow", help="MLflow tools on the project's store").add_subparsers(
        dest="mlflow_command", required=True
    )
    ui = mlflow.add_parser("ui", help="the MLflow UI on the embedded registry (Ctrl-C stops it)")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_mlflow_ui)

    incidents = sub.add_parser(
        "incidents", help="failed tasks, as recorded by the failure callback"
    ).add_subparsers(dest="incidents_command", required=True)
    il = incidents.add_parser("list", help="incidents, oldest first, one line each")
    il.add_argument("--dag", help="only this DAG's")
    il.add_argument(
        "--since", type=_since, help="an ISO date or date-time (UTC), or a duration ago: 30m, 24h, 7d, 2w"
    )
    il.add_argument("--limit", type=int, help="only the most recent N")
    il.add_argument("--json", action="store_true")
    il.set_defaults(func=cmd_incidents_list)
    ish = incidents.add_parser("show", help="one incident in full")
    ish.add_argument("id", type=int)
    ish.add_argument("--json", action="store_true")
    ish.set_defaults(func=cmd_incidents_show)

    gc = sub.add_parser(
        "gc",
        help="delete the snapshots, checkpoints, model and serving archives, evaluations and job folders "
        "that no registered version references, beyond the most recent (RECFLOW_RETENTION_KEEP_LAST)",
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    gc.add_argument("--json", action="store_true", help="the items as JSON (kind, uri, bytes, age, why)")
    gc.add_argument("--show-kept", action="store_true", help="also list what is kept, and why")
    gc.add_argument(
        "--allow-empty-registry",
        action="store_true",
        help="delete even though the registry has no version (refused by default: a wrong tracking URI?)",
    )
    gc.set_defaults(func=cmd_gc)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        code: int = args.func(settings, args)
    except ConfigError as exc:
        print(f"recflow: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
