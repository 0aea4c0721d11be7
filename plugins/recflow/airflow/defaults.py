"""Defaults every recsys DAG shares: owner, retries, tags, the failure callback.

The callback (``recflow.airflow.alerts.on_task_failure``) records one incident per failed
task, ends the task log with an ``ON-CALL:`` line and notifies through the Airflow
connection ``recflow_alerts`` when it exists.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any

from recflow.airflow.alerts import on_task_failure


class Tag(StrEnum):
    """The allowed DAG tags; ``tests/dags`` refuses any other."""

    RECSYS = "recsys"
    WAREHOUSE = "warehouse"
    DBT = "dbt"
    DATA_QUALITY = "data-quality"
    TRAINING = "training"
    REGISTRY = "registry"


OWNER = "recsys"

DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 1,
    "retry_delay": timedelta(seconds=30),
    "on_failure_callback": on_task_failure,
}
