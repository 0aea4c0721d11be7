"""``recflow benchmark movielens``: the real pipeline, through the scheduler, on MovieLens 100K.

The benchmark keeps its own landing zone, warehouse, artifacts, MLflow registry
and Airflow under ``$RECFLOW_HOME/benchmarks/movielens-100k``, whatever the
caller's settings point the pipeline at (``recflow.core.ownership.private_home``), and
registers its champion there as model ``movielens-100k``: it never writes a
store it did not make. One manual run of ``recsys_warehouse`` reloads the data's
whole span (params ``reload_from``/``reload_to``); its asset event triggers
``recsys_train_and_publish``, exactly as a daily run would. The data has a
few days without a single rating and a spiky volume, so the reload runs with
``check_volume=false``: the audit's row rules still apply to every rating.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recflow.core.artifacts import file_uri_path
from recflow.core.config import Settings
from recflow.core.names import TRAINING_DAG, WAREHOUSE_DAG
from recflow.core.ownership import claim, pipeline_stores, private_home
from recflow.producers.movielens import check_data_dir, load_movielens
from recflow.registry import registry_for
from recflow.stack.api import TERMINAL_RUN_STATES, AirflowClient, wait_for_dags
from recflow.stack.demo import Echo, PipelineFailed, run_seconds, say, setup, wait_for_train_run
from recflow.stack.services import running_airflow

MODEL_NAME = "movielens-100k"


def benchmark_settings(base: Settings) -> Settings:
    """The benchmark's own home: every store under ``$RECFLOW_HOME/benchmarks/movielens-100k``."""
    return replace(private_home(base, base.home / "benchmarks" / MODEL_NAME), model_name=MODEL_NAME)


def _wait_run(client: AirflowClient, dag_id: str, run_id: str, echo: Echo, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        run = client.run(dag_id, run_id)
        if run and run["state"] != state:
            state = run["state"]
            echo(f"  {dag_id} {run_id}: {state}")
        if run and run["state"] in TERMINAL_RUN_STATES:
            if run["state"] == "failed":
                raise PipelineFailed(
                    f"{dag_id} run {run_id} failed: its failed task's log ends with an ON-CALL line"
                )
            return run
        time.sleep(3)
    raise TimeoutError(f"{dag_id} run {run_id} did not finish within {timeout:.0f}s")


def run_movielens(
    base: Settings, data_dir: Path, echo: Echo = say, timeout: float = 1800.0
) -> dict[str, Any]:
    settings = benchmark_settings(base)
    check_data_dir(data_dir)  # before its stores are made: a mistyped --data-dir leaves none behind
    claim(pipeline_stores(settings), "recflow benchmark movielens")
    started = time.monotonic()
    loaded = load_movielens(data_dir, settings.landing_dir, command="recflow benchmark movielens")
    echo(
        f"landed {loaded.ratings} ratings of {loaded.users} users on {loaded.items} movies, "
        f"{loaded.partitions} daily partitions {loaded.first_day}..{loaded.last_day}"
    )
    setup(settings, echo=echo)
    with running_airflow(settings) as client:
        wait_for_dags(client, [WAREHOUSE_DAG, TRAINING_DAG])
        client.set_paused(TRAINING_DAG, False)
        since = datetime.now(UTC) - timedelta(seconds=1)
        run = client.trigger(
            WAREHOUSE_DAG,
            # MovieLens has days with no rating and days with hundreds: a one-off reload of spiky
            # history is judged by the row rules only, not by the recent days' volume
            conf={
                "reload_from": loaded.first_day.isoformat(),
                "reload_to": loaded.last_day.isoformat(),
                "check_volume": False,
            },
        )
        echo(f"triggered {WAREHOUSE_DAG} {run['dag_run_id']}: reload {loaded.first_day}..{loaded.last_day}")
        client.set_paused(WAREHOUSE_DAG, False)
        warehouse = _wait_run(client, WAREHOUSE_DAG, run["dag_run_id"], echo, timeout)
        train = wait_for_train_run(client, since, echo, timeout - (time.monotonic() - started))
        if train["state"] != "success":
            raise PipelineFailed(
                f"{TRAINING_DAG} run {train['dag_run_id']} failed: its failed task's log ends with an ON-CALL line"
            )
        training = client.xcom(TRAINING_DAG, train["dag_run_id"], "train")
        evaluation = client.xcom(TRAINING_DAG, train["dag_run_id"], "evaluate")
        gate = client.xcom(TRAINING_DAG, train["dag_run_id"], "gate")
        snapshot = client.xcom(TRAINING_DAG, train["dag_run_id"], "snapshot")
        client.set_paused(WAREHOUSE_DAG, True)
        client.set_paused(TRAINING_DAG, True)
        for leftover in client.runs(WAREHOUSE_DAG):
            if leftover["run_type"] == "scheduled" and leftover["state"] not in ("success", "failed"):
                client.delete_run(WAREHOUSE_DAG, leftover["dag_run_id"])
                echo(
                    f"deleted {leftover['dag_run_id']}: a scheduled day with no MovieLens data, waiting for it"
                )
    champion = registry_for(settings).get_by_alias(MODEL_NAME)
    result = {
        "model_name": MODEL_NAME,
        "champion_version": champion.version if champion else None,
        "metrics": evaluation["challenger"],
        "champion_metrics": champion.metrics if champion else None,
        # the metrics are the gate's (scored on the artifact that never saw the holdout); what the
        # champion serves is that model with every user's vector refreshed from train + holdout
        # under the benchmark's home, relative to it: the result is committed, and one machine's paths
        # mean nothing on another (an s3:// URI stays whole)
        "paths_relative_to": "the benchmark's home, $RECFLOW_HOME/benchmarks/movielens-100k",
        "champion_evaluated_model_uri": _home_relative(settings, champion.lineage.get("evaluated_model_uri"))
        if champion
        else None,
        "champion_serving_model_uri": _home_relative(settings, champion.lineage.get("serving_model_uri"))
        if champion
        else None,
        "champion_serving": {
            k.removeprefix("serving."): v for k, v in champion.run_tags.items() if k.startswith("serving.")
        }
        if champion
        else None,
        "gate": gate,
        "training_job": training["job_name"],
        "training_job_seconds": training["training_seconds"],
        "training_job_peak_memory_mb": training["peak_memory_mb"],
        "pipeline_seconds": round(time.monotonic() - started, 1),
        "warehouse_run_seconds": run_seconds(warehouse),
        "train_run_seconds": run_seconds(train),
        "snapshot_id": snapshot["snapshot_id"],
        "snapshot_rows": snapshot["rows"],
        "hyperparameters": training["hyperparameters"],
        "data": {"ratings": loaded.ratings, "users": loaded.users, "items": loaded.items},
        "finished_at": datetime.now(UTC).isoformat(),
    }
    out = settings.home / "result.json"
    out.write_text(json.dumps(result, indent=2))
    result["result_file"] = str(out.relative_to(settings.home))
    return result


def _home_relative(settings: Settings, uri: str | None) -> str | None:
    """A ``file://`` URI under the benchmark's home as a path relative to it; any other as it is."""
    if not uri or not uri.startswith("file://"):
        return uri
    path = file_uri_path(uri)
    return str(path.relative_to(settings.home)) if path.is_relative_to(settings.home) else uri
