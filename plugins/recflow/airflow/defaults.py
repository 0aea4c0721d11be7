"""Defaults every recsys DAG shares: owner, retries, tags, the failure callback, the params check.

The callback (``recflow.airflow.alerts.on_task_failure``) records one incident per failed
task, ends the task log with an ``ON-CALL:`` line and notifies through the Airflow
connection ``recflow_alerts`` when it exists (once for a lost warehouse: the build's incident
is the page for the dbt nodes it failed).

Retries are for failures another try may cure (a lock, the network, a lost worker).
:data:`RETRY_POLICY` (Airflow's ``retry_policy``, decided in the worker with the exception
in hand) fails a task at once when its error, or the ``RecflowError`` it was raised from,
is not ``retryable``: a data verdict, refused params, an unusable setting. The exception
stays what it was, so the incident classifies and explains it as precisely as any other.
Before any task does anything, ``refuse_bad_params`` (``pre_execute``) checks the run's conf
against the Dag's params, whatever created the run.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
from recflow.airflow.alerts import on_task_failure
from recflow.airflow.params import refuse_bad_params
from recflow.oncall.runbooks import recflow_cause

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context


class Tag(StrEnum):
    """The allowed DAG tags; ``tests/dags`` refuses any other."""

    RECSYS = "recsys"
    WAREHOUSE = "warehouse"
    DBT = "dbt"
    DATA_QUALITY = "data-quality"
    TRAINING = "training"
    REGISTRY = "registry"


class VerdictsFailNow(RetryPolicy):
    """Fail without retry when the error (or the RecflowError it was raised from) is not ``retryable``;
    anything else takes the task's retries."""

    def evaluate(
        self, exception: BaseException, try_number: int, max_tries: int, context: Context | None = None
    ) -> RetryDecision:
        cause = recflow_cause(exception)
        if cause is not None and not cause.retryable:
            return RetryDecision.fail(f"{type(cause).__name__} is a verdict: another try would repeat it")
        return RetryDecision.default()

    def serialize(self) -> dict[str, Any]:
        return {"__type": type(self).__name__}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> VerdictsFailNow:
        return cls()


RETRY_POLICY = VerdictsFailNow()

OWNER = "recsys"

DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 1,
    "retry_delay": timedelta(seconds=30),
    "retry_policy": RETRY_POLICY,
    "pre_execute": refuse_bad_params,
    "on_failure_callback": on_task_failure,
}
