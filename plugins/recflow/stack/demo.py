"""Setup and the demo: set up the embedded profile, run the whole pipeline through the scheduler.

``setup`` migrates the Airflow metadata DB, compiles the dbt manifest
(``dbt parse``: the DAG file reads it, it never runs dbt) and creates the
``warehouse`` pool. ``run_pipeline`` generates data for the last ``days``
days, starts Airflow, backfills ``recsys_warehouse`` over those days (oldest
first, one at a time) and lets the last day's asset event trigger
``recsys_train_and_publish``; the training DAG stays paused until then, so it
trains once, on all days. Rerunning reprocesses the same intervals: the
warehouse ends up the same, the snapshot id is the same, and the training job
is not run again.

``claim_demo_stores`` runs first: the demo writes synthetic data only into the embedded
profile's own stores (``recflow.core.ownership``), never a producers' landing zone, a server
warehouse or registry, or a folder recflow did not create.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from recflow.core.config import Settings, subprocess_env
from recflow.core.names import EVALUATE, GATE, TRAIN, TRAINING_DAG, WAREHOUSE_DAG
from recflow.core.ownership import StoreNotOwned, adopt_home_stores, claim, pipeline_stores
from recflow.stack.api import TERMINAL_RUN_STATES, AirflowClient, wait_for_dags
from recflow.stack.services import run_airflow, running_airflow
from recflow.transform.build import dbt_args
from recflow.warehouse import WAREHOUSE_POOL, connect, content_checksum

Echo = Callable[[str], None]


def say(message: str) -> None:
    print(message, flush=True)


def compile_dbt_manifest(settings: Settings) -> None:
    """``dbt parse`` as this home's builds run dbt (same target, target folder and variables), so that
    its first build parses only what changed since (a full parse is ~3 s of a day's build); then the
    manifest, replaced whole, where the DAG file reads it (:attr:`Settings.dbt_manifest_path`)."""
    dbt = str(Path(sys.executable).with_name("dbt"))
    subprocess.run(
        [dbt, *dbt_args("parse", settings), "--quiet"], env=subprocess_env(settings.dbt_env()), check=True
    )
    settings.dbt_manifest_path.parent.mkdir(parents=True, exist_ok=True)
    partial = settings.dbt_manifest_path.with_name(f".manifest.{os.getpid()}.json")
    shutil.copyfile(settings.dbt_target_dir / "manifest.json", partial)
    os.replace(partial, settings.dbt_manifest_path)  # a DAG processor reading it sees one or the other


def setup(settings: Settings, echo: Echo = say) -> None:
    for folder in (settings.home, settings.landing_dir, settings.duckdb_path.parent, settings.jobs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    # an embedded home's own stores are recflow's: mark them (a home made before markers existed
    # too), never a store a setting points elsewhere
    adopt_home_stores(settings, "recflow setup")
    echo(f"setup: Airflow metadata database in {settings.airflow_home}")
    run_airflow(settings, ["db", "migrate"], quiet=True)
    echo("setup: compiling the dbt manifest (dbt parse)")
    compile_dbt_manifest(settings)
    run_airflow(
        settings,
        [
            "pools",
            "set",
            WAREHOUSE_POOL,
            str(settings.warehouse_pool_slots),
            "Tasks that write or read the warehouse (DuckDB allows one writer)",
        ],
        quiet=True,
    )


def claim_demo_stores(settings: Settings, command: str = "recflow demo") -> None:
    """Refuse, before anything is written, a demo anywhere but in the embedded profile's own stores:
    ``RECFLOW_PROFILE=production``, a server warehouse, registry or ``s3://`` root, or a local store
    recflow did not create (``recflow.core.ownership``). Creates and marks the stores otherwise."""
    if settings.profile != "embedded":
        raise StoreNotOwned(
            f"RECFLOW_PROFILE={settings.profile}: {command} writes synthetic data into every store of "
            "the pipeline and runs only in the embedded profile (unset RECFLOW_PROFILE, and point "
            "RECFLOW_HOME at a home of its own)"
        )
    claim(pipeline_stores(settings), command)


@dataclass
class RunSummary:
    dag_id: str
    run_id: str
    logical_date: str | None
    state: str
    seconds: float | None
    run_type: str
    start_date: str | None = None
    end_date: str | None = None
    tasks: list[dict[str, Any]] = field(default_factory=list)
    """Per task instance (``collect_tasks``): task_id, map_index, state, try_number, start_date,
    end_date, seconds."""


@dataclass
class PipelineResult:
    warehouse_runs: list[RunSummary] = field(default_factory=list)
    train_runs: list[RunSummary] = field(default_factory=list)
    gate: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        runs = self.warehouse_runs + self.train_runs
        return bool(self.train_runs) and all(r.state == "success" for r in runs)


def run_seconds(run: dict[str, Any]) -> float | None:
    if not run.get("start_date") or not run.get("end_date"):
        return None
    start = datetime.fromisoformat(run["start_date"])
    end = datetime.fromisoformat(run["end_date"])
    return (end - start).total_seconds()


def run_summary(run: dict[str, Any], client: AirflowClient | None = None) -> RunSummary:
    """The run as the summary shows it; with ``client``, its task instances' timings too."""
    tasks = []
    if client is not None:
        for ti in client.task_instances(run["dag_id"], run["dag_run_id"]):
            tasks.append(
                {
                    "task_id": ti["task_id"],
                    "map_index": ti.get("map_index", -1),
                    "state": ti.get("state"),
                    "try_number": ti.get("try_number"),
                    "start_date": ti.get("start_date"),
                    "end_date": ti.get("end_date"),
                    "seconds": run_seconds(ti),
                }
            )
    return RunSummary(
        dag_id=run["dag_id"],
        run_id=run["dag_run_id"],
        logical_date=run.get("logical_date"),
        state=run["state"],
        seconds=run_seconds(run),
        run_type=run.get("run_type", ""),
        start_date=run.get("start_date"),
        end_date=run.get("end_date"),
        tasks=tasks,
    )


def _day_of(run: dict[str, Any]) -> date | None:
    start = run.get("data_interval_start")
    return datetime.fromisoformat(start).date() if start else None


class PipelineFailed(RuntimeError):
    pass


def wait_for_warehouse_runs(
    client: AirflowClient,
    days: list[date],
    since: datetime,
    echo: Echo,
    timeout: float,
    *,
    fail_fast: bool = True,
) -> dict[date, dict[str, Any]]:
    """Wait until the runs of ``days`` created after ``since`` are finished.

    With ``fail_fast``, a failed run raises :class:`PipelineFailed` at once; otherwise the
    finished runs (succeeded or failed) are returned, by day.
    """
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        latest: dict[date, dict[str, Any]] = {}
        for run in client.runs(WAREHOUSE_DAG):
            day = _day_of(run)
            queued = _queued_at(run)
            if day in days and queued and queued >= since and day not in latest:
                latest[day] = run
        for day, run in sorted(latest.items()):
            if seen.get(run["dag_run_id"]) != run["state"]:
                seen[run["dag_run_id"]] = run["state"]
                took = run_seconds(run)
                echo(f"  {WAREHOUSE_DAG} ds={day}: {run['state']}" + (f" ({took:.0f}s)" if took else ""))
            if run["state"] == "failed" and fail_fast:
                raise PipelineFailed(
                    f"{WAREHOUSE_DAG} run {run['dag_run_id']} (ds={day}) failed: open it in the UI; "
                    "the failed task's log ends with an ON-CALL line"
                )
        if len(latest) == len(days) and all(r["state"] in TERMINAL_RUN_STATES for r in latest.values()):
            return latest
        time.sleep(3)
    raise TimeoutError(f"{WAREHOUSE_DAG} did not finish days {days[0]}..{days[-1]} within {timeout:.0f}s")


def _queued_at(run: dict[str, Any]) -> datetime | None:
    queued = run.get("queued_at") or run.get("run_after")
    return datetime.fromisoformat(queued) if queued else None


def wait_for_train_run(client: AirflowClient, since: datetime, echo: Echo, timeout: float) -> dict[str, Any]:
    """The first training run queued after ``since`` (the asset event's run), once it has finished."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        for run in client.runs(TRAINING_DAG):
            queued = _queued_at(run)
            if queued is None or queued < since:
                continue
            if seen.get(run["dag_run_id"]) != run["state"]:
                seen[run["dag_run_id"]] = run["state"]
                echo(f"  {TRAINING_DAG} {run['dag_run_id']} ({run.get('run_type')}): {run['state']}")
            if run["state"] in TERMINAL_RUN_STATES:
                return run
        time.sleep(3)
    raise TimeoutError(f"no {TRAINING_DAG} run triggered after the warehouse finished within {timeout:.0f}s")


def close_backfill(client: AirflowClient, backfill_id: int, timeout: float = 90.0) -> None:
    """Let the scheduler mark the finished backfill completed (it does so on its own cycle), else cancel it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get_backfill(backfill_id).get("completed_at"):
            return
        time.sleep(3)
    client.cancel_backfill(backfill_id)


def run_pipeline(
    settings: Settings,
    days: list[date],
    echo: Echo = say,
    timeout: float = 1800.0,
    *,
    collect_tasks: bool = False,
) -> PipelineResult:
    """Backfill ``days`` through the scheduler and wait for the asset-triggered training run.

    ``collect_tasks`` adds each run's task instances (timings) to its summary."""
    started = time.monotonic()
    result = PipelineResult()
    with running_airflow(settings) as client:
        echo(f"airflow: API server, scheduler and DAG processor up ({time.monotonic() - started:.0f}s)")
        wait_for_dags(client, [WAREHOUSE_DAG, TRAINING_DAG])
        client.set_paused(TRAINING_DAG, True)
        for stale in client.backfills(WAREHOUSE_DAG):
            if stale.get("completed_at") is None:
                client.cancel_backfill(stale["id"])
                echo(f"cancelled backfill {stale['id']} left unfinished by an earlier run")
        since = datetime.now(UTC) - timedelta(seconds=1)
        backfill = client.backfill(
            WAREHOUSE_DAG, days[0].isoformat(), days[-1].isoformat(), reprocess="completed"
        )
        echo(
            f"backfill {backfill['id']}: {WAREHOUSE_DAG} {days[0]}..{days[-1]} (oldest first, one at a time)"
        )
        client.set_paused(WAREHOUSE_DAG, False)
        budget = timeout - (time.monotonic() - started)
        wh = wait_for_warehouse_runs(client, days[:-1], since, echo, budget) if len(days) > 1 else {}
        echo(f"unpausing {TRAINING_DAG}: the last day's asset event will trigger it")
        client.set_paused(TRAINING_DAG, False)
        # the earlier days have ended (and been shown): only the last is waited for, and shown, now
        wh |= wait_for_warehouse_runs(client, days[-1:], since, echo, timeout - (time.monotonic() - started))
        last_end = max(datetime.fromisoformat(r["end_date"]) for r in wh.values())
        train = wait_for_train_run(
            client, last_end - timedelta(seconds=30), echo, timeout - (time.monotonic() - started)
        )
        tasks_of = client if collect_tasks else None
        result.warehouse_runs = [run_summary(wh[d], tasks_of) for d in days]
        result.train_runs = [run_summary(train, tasks_of)]
        for task_id, attr in ((TRAIN, "training"), (EVALUATE, "evaluation"), (GATE, "gate")):
            try:
                setattr(result, attr, client.xcom(TRAINING_DAG, train["dag_run_id"], task_id))
            except RuntimeError:
                setattr(result, attr, None)
        close_backfill(client, backfill["id"])
        client.set_paused(WAREHOUSE_DAG, True)
        client.set_paused(TRAINING_DAG, True)
    result.seconds = time.monotonic() - started
    return result


CHECKSUMMED_TABLES = (
    "raw.events",
    "raw.pins",
    "raw.users",
    "quality.quarantine_events",
    "analytics.fct_engagements",
    "analytics.dim_users",
    "analytics.dim_pins",
    "analytics.training_interactions",
)
"""What the warehouse DAG writes: a rerun of the same intervals must leave each with the same content."""


def warehouse_checksums(settings: Settings, tables: tuple[str, ...] = CHECKSUMMED_TABLES) -> dict[str, str]:
    """``{table: "<rows> rows, <checksum>"}`` of the content (run metadata aside) of ``tables``."""
    with connect(settings, read_only=True) as con:
        sums = {table: content_checksum(con, table) for table in tables}
    return {table: f"{rows} rows, {digest}" for table, (rows, digest) in sums.items()}


def warehouse_counts(settings: Settings) -> dict[str, int]:
    """Row counts of the warehouse tables the pipeline writes: equal before and after a rerun."""
    queries = {
        "raw.events": "select count(*) from raw.events",
        "analytics.fct_engagements": "select count(*) from analytics.fct_engagements",
        "analytics.dim_users": "select count(*) from analytics.dim_users",
        "analytics.dim_pins": "select count(*) from analytics.dim_pins",
        "analytics.training_interactions[train]": "select count(*) from analytics.training_interactions where split = 'train'",
        "analytics.training_interactions[holdout]": "select count(*) from analytics.training_interactions where split = 'holdout'",
    }
    with connect(settings, read_only=True) as con:
        return {name: int(con.execute(sql).fetchone()[0]) for name, sql in queries.items()}  # type: ignore[index]


def demo_days(days: int, today: date | None = None) -> list[date]:
    """The last ``days`` complete UTC days, oldest first (the scheduler's own notion of 'done')."""
    end = (today or datetime.now(UTC).date()) - timedelta(days=1)
    return [end - timedelta(days=days - 1 - i) for i in range(days)]
