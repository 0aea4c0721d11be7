"""What the person on call sees when a task fails: what broke, why, and what to do.

The callback writes one line to the task log and appends a JSON record to
``$RECFLOW_HOME/alerts.jsonl`` (the embedded profile's pager); a production
deployment forwards the same record to its paging tool.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from recflow.config import Settings

log = logging.getLogger(__name__)

RUNBOOK = "docs/runbooks.md"

DATA_ERRORS = frozenset(
    {
        "DataQualityError",
        "LandingError",
        "TrainingJobFailed",
        "CosmosDbtRunError",
        "AirflowSensorTimeout",
        "ValueError",
    }
)
"""Errors that are the pipeline's verdict on data or a job; anything else is an infrastructure fault."""

WHAT_TO_DO = {
    "wait_for_landing": "the upstream export for the day did not arrive within 6 hours: ask the producer; "
    "clear the task once the partition is there",
    "land": "the landing partition is missing or breaks docs/data-contract.md: fix the upstream export, then clear the task",
    "check_raw": "the partition was refused by the raw-events suite (offending rows kept in quality.rejected_events): "
    "fix the upstream export for that day, then clear check_raw; nothing downstream ran",
    "check_marts": "the training mart breaks its invariants: look at the named users/pins and the dbt models "
    "that built them; training did not start",
    "snapshot": "the training mart could not be read or is empty: check that recsys_warehouse succeeded",
    "train": "the training job failed; the reason above is the job's FailureReason and the job log is in this "
    "task's log. Clearing the task re-attaches to or relaunches the job (it never runs two at once)",
    "evaluate": "evaluation failed: check that the model artifact and the champion in the registry are readable",
    "publish": "registering failed: check the registry (MLflow store); the champion alias was not moved",
}


def failure_record(
    dag_id: str, task_id: str, run_id: str, try_number: int, error: BaseException | None
) -> dict[str, Any]:
    step = task_id.rsplit(".", 1)[-1]
    kind = type(error).__name__ if error else ""
    if error is not None and kind not in DATA_ERRORS:
        advice = (
            f"an unexpected {kind}, not a data-quality verdict: read the traceback in the task log; "
            "if it is transient (a lock, a timeout), clear the task"
        )
    elif task_id.startswith("transform."):
        advice = (
            f"dbt node {re.sub(r'_(model|seed)_build$|_test$', '', step)} failed its build or its tests: the task log shows the "
            "failing model or test and its SQL; fix the model or the data, then clear the task"
        )
    else:
        advice = WHAT_TO_DO.get(step, "see the task log")
    return {
        "at": datetime.now(UTC).isoformat(),
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": run_id,
        "try_number": try_number,
        "what": f"{dag_id}.{task_id} failed (try {try_number})",
        "why": f"{type(error).__name__}: {error}" if error else "unknown (no exception recorded)",
        "what_to_do": advice,
        "runbook": f"{RUNBOOK}#{dag_id}",
    }


def on_task_failure(context: Any) -> None:
    ti = context["ti"]
    record = failure_record(ti.dag_id, ti.task_id, ti.run_id, ti.try_number, context.get("exception"))
    log.error(
        "ON-CALL: %s | why: %s | what to do: %s | runbook: %s",
        record["what"],
        record["why"],
        record["what_to_do"],
        record["runbook"],
    )
    path = Settings.from_env().home / "alerts.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
