"""A verdict fails its task at once; any other failure keeps the task's retries.

Each case hands an exception to Airflow's own failure handler
(``task_runner._handle_current_task_failed``, the one every failed try goes through) for a real task
of a real DAG, as the API server would describe a try that has retries left (``should_retry``), and
reads the state Airflow decides: ``failed`` (paged now) or ``up_for_retry``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from recflow.core import errors


def _refused() -> errors.PartitionRefused:
    return errors.PartitionRefused(
        "partition ds=2026-02-04 refused: 5.00% of rows quarantined",
        check="quarantine_share",
        columns=["user_id"],
    )


def _wrapped_verdict() -> BaseException:
    try:
        raise RuntimeError("land could not stage the day") from errors.ContractViolation(
            "required column 'user_id' is missing", check="columns", columns=["user_id"]
        )
    except RuntimeError as wrapped:
        return wrapped


def _duckdb_lock() -> BaseException:
    import duckdb

    return duckdb.IOException('IO Error: Could not set lock on file "recflow.duckdb": Conflicting lock')


VERDICTS: dict[str, tuple[str, str, Any]] = {
    "partition-refused": ("recsys_warehouse", "audit", _refused),
    "contract-violation": (
        "recsys_warehouse",
        "land",
        lambda: errors.ContractViolation("column 'event_ts' has type string", check="types"),
    ),
    "marts-invariants": (
        "recsys_warehouse",
        "check_marts",
        lambda: errors.DataQualityError("2 expectations failed", report=None, check="training_marts"),
    ),
    "raised-from-a-verdict": ("recsys_warehouse", "land", _wrapped_verdict),
    "params": ("recsys_warehouse", "land", lambda: errors.ParamsError("reload_to=2026-01-01 is before …")),
    "setting": ("recsys_train_and_publish", "snapshot", lambda: errors.ConfigError("RECFLOW_X='a'")),
    "job-algorithm": (
        "recsys_train_and_publish",
        "train",
        lambda: errors.TrainingJobFailed("j", "Failed", "AlgorithmError: nan loss", "algorithm"),
    ),
    "job-killed": (
        "recsys_train_and_publish",
        "train",
        lambda: errors.TrainingJobFailed("j", "Failed", "killed by SIGKILL", "killed"),
    ),
    "job-input": (
        "recsys_train_and_publish",
        "train",
        lambda: errors.TrainingJobFailed("j", "Failed", "ValidationException: image", "client"),
    ),
    "job-stopped": (
        "recsys_train_and_publish",
        "train",
        lambda: errors.TrainingJobFailed("j", "Stopped", "stopped by a person", "stopped"),
    ),
}

RETRIED: dict[str, tuple[str, str, Any]] = {
    "os-error": ("recsys_warehouse", "land", lambda: OSError("No space left on device")),
    "warehouse-locked": ("recsys_warehouse", "audit", _duckdb_lock),
    "landing-late": ("recsys_warehouse", "land", lambda: errors.LandingLate("no _SUCCESS yet")),
    "registry": ("recsys_train_and_publish", "publish", lambda: errors.RegistryError("MLflow down")),
    "job-internal": (
        "recsys_train_and_publish",
        "train",
        lambda: errors.TrainingJobFailed("j", "Failed", "InternalServerError", "internal"),
    ),
    "job-max-runtime": (
        "recsys_train_and_publish",
        "train",
        lambda: errors.TrainingJobFailed("j", "Stopped", "MaxRuntimeExceeded", "max_runtime"),
    ),
}


def _state_after(dagbag: Any, dag_id: str, task_id: str, error: BaseException) -> str:
    """The state Airflow's task runner gives try 1 of ``task_id`` failing with ``error``, retries left."""
    import structlog
    from airflow.sdk.api.datamodels._generated import TIRunContext
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance, _handle_current_task_failed

    task = dagbag.dags[dag_id].get_task(task_id)
    assert task.retries >= 1, f"{dag_id}.{task_id} has no retries to skip"
    ti = RuntimeTaskInstance.model_construct(
        task=task,
        dag_id=dag_id,
        task_id=task_id,
        run_id="manual__2026-02-04",
        try_number=1,
        map_index=-1,
        rendered_map_index=None,
        start_date=datetime.now(UTC),
    )
    ti._failure_metrics_emitted = False
    ti._ti_context_from_server = TIRunContext.model_construct(
        dag_run=SimpleNamespace(team_name=None), max_tries=task.retries, should_retry=True
    )
    _, state = _handle_current_task_failed(ti, error, structlog.get_logger(), None)
    return str(state.value)


@pytest.mark.parametrize(("dag_id", "task_id", "make"), VERDICTS.values(), ids=VERDICTS.keys())
def test_a_verdict_fails_at_once(dagbag: Any, dag_id: str, task_id: str, make: Any) -> None:
    assert _state_after(dagbag, dag_id, task_id, make()) == "failed"


@pytest.mark.parametrize(("dag_id", "task_id", "make"), RETRIED.values(), ids=RETRIED.keys())
def test_any_other_failure_keeps_its_retries(dagbag: Any, dag_id: str, task_id: str, make: Any) -> None:
    assert _state_after(dagbag, dag_id, task_id, make()) == "up_for_retry"


def test_every_task_fails_at_once_on_a_verdict(dagbag: Any) -> None:
    """dbt nodes and sensors too: the rule comes with the DAGs' default args, not with each callable."""
    tasks = [(dag.dag_id, task.task_id) for dag in dagbag.dags.values() for task in dag.tasks]
    assert len(tasks) > 10
    decided = {(d, t): _state_after(dagbag, d, t, _refused()) for d, t in tasks}
    assert {state for state in decided.values()} == {"failed"}, decided
