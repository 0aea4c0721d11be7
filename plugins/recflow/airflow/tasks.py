"""Task callables of the recsys DAGs.

Each one reads ``Settings``, calls one plain-Python step of ``recflow`` and
returns a small, JSON-able result (counts, ids, URIs, metrics) for XCom. Heavy
modules (pyarrow, GX, TensorFlow, MLflow) are imported inside the task bodies,
never at module level: this module is imported while DAG files are parsed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowSkipException
from recflow.airflow.assets import TRAINING_MART
from recflow.airflow.connections import task_settings
from recflow.airflow.params import chosen_model_name
from recflow.core.days import LANDING_POKE, LANDING_TIMEOUT, days_to_process, landing_wait
from recflow.core.errors import NoUpstreamResult
from recflow.core.names import EVALUATE, GATE, SNAPSHOT, TRAIN
from recflow.warehouse import WAREHOUSE_POOL

log = logging.getLogger(__name__)


@task.sensor(
    poke_interval=LANDING_POKE.total_seconds(), timeout=LANDING_TIMEOUT.total_seconds(), mode="reschedule"
)
def wait_for_landing(
    params: dict[str, Any] | None = None,
    logical_date: datetime | None = None,
    data_interval_start: datetime | None = None,
    data_interval_end: datetime | None = None,
) -> bool:
    """Wait (without holding a worker) until the days' partitions are complete (``_SUCCESS``); fail after ``LANDING_TIMEOUT``."""
    from recflow.ingest.contract import not_landed  # noqa: PLC0415 (the step's modules (pyarrow, duckdb, GX, TensorFlow) load when the task runs, not at DAG parse)

    days = days_to_process(params, logical_date, data_interval_start, data_interval_end)
    missing = not_landed(task_settings().landing_dir, days)
    if missing is not None:
        log.info("waiting for %s (looking again every %s, failing after %s)", missing, *landing_wait())
    return missing is None


@task(pool=WAREHOUSE_POOL, execution_timeout=timedelta(minutes=30))
def land(
    params: dict[str, Any] | None = None,
    logical_date: datetime | None = None,
    data_interval_start: datetime | None = None,
    data_interval_end: datetime | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Claim the run's days, check their landing files against the contract and write each day to a staging
    table of its own; a day another run holds (until its audit ends) fails this task with ``DayClaimed``."""
    from recflow.ingest.land import stage_partitions  # noqa: PLC0415 (the step's modules (pyarrow, duckdb, GX, TensorFlow) load when the task runs, not at DAG parse)

    days = days_to_process(params, logical_date, data_interval_start, data_interval_end)
    staged = stage_partitions(task_settings(), days, run_id=run_id or "manual")
    return {
        "days": len(staged),
        "first": str(days[0]),
        "last": str(days[-1]),
        "rows": sum(s.rows for s in staged),
    }


@task(pool=WAREHOUSE_POOL, execution_timeout=timedelta(minutes=30))
def audit(
    params: dict[str, Any] | None = None,
    logical_date: datetime | None = None,
    data_interval_start: datetime | None = None,
    data_interval_end: datetime | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Quarantine rows that break a row rule; publish the day to ``raw.events`` or refuse it."""
    from recflow.ingest.days import audit_days  # noqa: PLC0415 (the step's modules (pyarrow, duckdb, GX, TensorFlow) load when the task runs, not at DAG parse)

    params = params or {}
    days = days_to_process(params, logical_date, data_interval_start, data_interval_end)
    results = audit_days(
        task_settings(),
        days,
        run_id=run_id or "manual",
        max_quarantine_share=params.get("max_quarantine_share"),
        check_volume=bool(params.get("check_volume", True)),
    )
    return {
        "days": len(results),
        "landed": sum(r.landed for r in results),
        "accepted": sum(r.accepted for r in results),
        "quarantined": sum(r.quarantined for r in results),
    }


# none_failed, not all_success: dbt skips the nodes after a failing one, and all_success would skip
# this task (and so end the run green) as soon as the first of them is skipped, before the failing
# node's task has failed. It waits for every node's task; any failure leaves it upstream_failed.
@task(
    pool=WAREHOUSE_POOL,
    outlets=[TRAINING_MART],
    execution_timeout=timedelta(minutes=30),
    trigger_rule="none_failed",
)
def check_marts() -> dict[str, Any]:
    """Great Expectations on the training mart; on success the mart's asset event triggers training."""
    from recflow.quality import check_training_marts  # noqa: PLC0415 (the step's modules (pyarrow, duckdb, GX, TensorFlow) load when the task runs, not at DAG parse)

    report = check_training_marts(task_settings())
    return {"suite": report.suite, "rows": report.rows, "expectations": report.evaluated}


@task(pool=WAREHOUSE_POOL, execution_timeout=timedelta(minutes=30))
def snapshot() -> dict[str, Any]:
    """Freeze the training mart into a content-addressed snapshot in the artifact store."""
    from recflow.snapshot import take_snapshot  # noqa: PLC0415 (the step's modules (pyarrow, duckdb, GX, TensorFlow) load when the task runs, not at DAG parse)

    return take_snapshot(task_settings()).to_xcom()


def _require_results(upstream: dict[str, Any]) -> None:
    """Refuse to start when an upstream task (by id) left no result: marked success in the UI, it never
    ran, and this task would fail on ``None`` with a bare TypeError, retried."""
    missing = [task_id for task_id, result in upstream.items() if not isinstance(result, dict)]
    if missing:
        names = ", ".join(f"`{task_id}`" for task_id in missing)
        raise NoUpstreamResult(
            f"{names} passed no result to this task: marked success without running (the UI's Mark "
            f"success)? Clear {names} and its downstream tasks to run {'it' if len(missing) == 1 else 'them'}"
        )


@task(execution_timeout=timedelta(minutes=30))
def evaluate(
    snapshot: dict[str, Any], training: dict[str, Any], params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Score challenger and champion on the same holdout and the same sampled negatives."""
    from recflow.evaluation import evaluate_challenger  # noqa: PLC0415 (the step's modules (pyarrow, duckdb, GX, TensorFlow) load when the task runs, not at DAG parse)

    _require_results({SNAPSHOT: snapshot, TRAIN: training})
    settings = task_settings()
    return evaluate_challenger(settings, snapshot, training, chosen_model_name(settings, params))


@task(execution_timeout=timedelta(minutes=5))
def gate(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Decide promotion: absolute floors, then not worse than the champion beyond the tolerance."""
    from recflow.evaluation import decide  # noqa: PLC0415 (the step's modules (pyarrow, duckdb, GX, TensorFlow) load when the task runs, not at DAG parse)

    _require_results({EVALUATE: evaluation})
    decision = decide(
        evaluation["challenger"],
        evaluation["champion"],
        task_settings().gate,
        same_as_champion=evaluation["champion_job"] == evaluation["challenger_job"],
    )
    log.info(decision.reason)
    return decision.as_dict()


@task(execution_timeout=timedelta(minutes=30))
def publish(
    snapshot: dict[str, Any],
    training: dict[str, Any],
    evaluation: dict[str, Any],
    decision: dict[str, Any],
    params: dict[str, Any] | None = None,
    dag_run: Any = None,
) -> dict[str, Any]:
    """Register the challenger, serving fresh histories, and move ``champion`` to it, unless the gate
    said no or this is a dry run."""
    from recflow.publishing.publish import publish_evaluated  # noqa: PLC0415 (the step's modules (pyarrow, duckdb, GX, TensorFlow) load when the task runs, not at DAG parse)

    _require_results({SNAPSHOT: snapshot, TRAIN: training, EVALUATE: evaluation, GATE: decision})
    if not decision["promote"]:
        raise AirflowSkipException(f"{decision['reason']}; the champion stays")
    if (params or {}).get("dry_run"):
        raise AirflowSkipException(f"dry run: would have published ({decision['reason']})")
    result = publish_evaluated(
        task_settings(),
        snapshot=snapshot,
        training=training,
        evaluation=evaluation,
        decision=decision,
        dag_id=getattr(dag_run, "dag_id", "unknown"),
        run_id=getattr(dag_run, "run_id", "unknown"),
    )
    log.info(
        "published %s version %d, aliases %s (%s)",
        result["name"],
        result["version"],
        result["aliases"],
        result.get("not_promoted") or decision["reason"],  # the gate passed it; a person's move stands
    )
    return result
