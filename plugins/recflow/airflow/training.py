"""The train step as an operator: it follows one training job, and stops that job when Airflow kills it.

``execute`` unpacks the context and calls ``recflow.training.jobs.train_on_snapshot``;
everything else (spec, launch or re-attach, classification of the outcome) lives
there, testable without Airflow. What the operator adds is ``on_kill``: when the
task is killed (its ``execution_timeout``, a person marking it failed or success,
a worker shutting down), the task runner calls ``on_kill`` and the job it follows
is stopped, so no training job runs on without a task to follow it. Its
checkpoints stay: the next attempt of the same job resumes from them.

The default ``execution_timeout`` is the job's ``MaxRuntimeInSeconds`` plus
``TIMEOUT_MARGIN`` for what is not training time: the instance's start, the
download of the channels, the 120 s SageMaker grants a stopped job, the upload.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from recflow.config import Settings
from recflow.errors import ParamsError
from recflow.training.spec import MAX_RUNTIME_SECONDS

TIMEOUT_MARGIN = timedelta(minutes=20)
DEFAULT_EXECUTION_TIMEOUT = timedelta(seconds=MAX_RUNTIME_SECONDS) + TIMEOUT_MARGIN


class TrainingJobOperator(BaseOperator):
    """Train on the snapshot (the ``snapshot`` task's XCom) with the run's params; XCom: the job's result.

    The result has the keys ``job_name``, ``model_uri``, ``training_seconds``, ``peak_memory_mb``,
    ``code_version`` and ``hyperparameters``. Params the job would refuse fail the task at once,
    without retries and without launching a job.
    """

    template_fields = ("snapshot",)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        snapshot: Any,
        execution_timeout: timedelta | None = DEFAULT_EXECUTION_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(execution_timeout=execution_timeout, **kwargs)
        self.snapshot = snapshot
        self.job_name: str | None = None
        self._settings: Settings | None = None

    def _launched(self, name: str) -> None:
        self.job_name = name

    def execute(self, context: Any) -> dict[str, Any]:
        from recflow.training.jobs import train_on_snapshot

        self._settings = Settings.from_env()
        try:
            return train_on_snapshot(
                self._settings, self.snapshot, context.get("params") or {}, on_launch=self._launched
            )
        except ParamsError as exc:
            raise AirflowFailException(str(exc)) from exc

    def on_kill(self) -> None:
        """Stop the job this task follows (none yet: nothing to stop)."""
        if self.job_name is None:
            return
        from recflow.training.jobs import backend_for

        self.log.warning("task killed: stopping training job %s", self.job_name)
        backend_for(self._settings or Settings.from_env()).stop_training_job(self.job_name)
