"""The train step as a deferrable operator: launch (or re-attach to) one training job, then wait
for it in the triggerer, so a job of an hour holds no worker slot.

``execute`` unpacks the context and calls ``recflow.training.jobs.start_on_snapshot``
(spec, launch or re-attach by the deterministic job name) and defers to
:class:`TrainingJobTrigger`, which polls ``DescribeTrainingJob`` and streams the job's
log into the task's log through the same ``JobFollower`` as the blocking path.
``execute_complete`` calls ``finish_training`` (result, or ``TrainingJobFailed`` with its
kind). Everything but the waiting lives in ``recflow.training.jobs``, testable without
Airflow. The Amazon provider's ``SageMakerTrainingOperator``/``SageMakerTrigger`` are not
used: they start a new, timestamped job on every retry, and only speak to SageMaker, while
this trigger follows either backend through the same ``TrainingBackend`` interface.

A person acting on the task (mark failed or success, clear) stops the job it follows:
``on_kill`` while the task runs on a worker, ``TrainingJobTrigger.on_kill`` while it is
deferred. Its checkpoints stay: the next attempt of the same job resumes from them. A
triggerer restart does not stop the job: the trigger is handed to another triggerer.

The default ``execution_timeout`` (which also bounds the deferral) is the job's
``MaxRuntimeInSeconds`` plus ``TIMEOUT_MARGIN`` for what is not training time: the
instance's start, the download of the channels, the 120 s SageMaker grants a stopped job,
the upload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent
from recflow.airflow.connections import task_settings
from recflow.airflow.params import chosen_model_name
from recflow.core.config import Settings
from recflow.core.errors import ParamsError, RecflowError
from recflow.training.spec import MAX_RUNTIME_SECONDS

if TYPE_CHECKING:
    from recflow.training.jobs import StartedJob

TIMEOUT_MARGIN = timedelta(minutes=20)
DEFAULT_EXECUTION_TIMEOUT = timedelta(seconds=MAX_RUNTIME_SECONDS) + TIMEOUT_MARGIN
POLL_SECONDS = 10.0
"""How often the trigger describes the job (and reads its new log lines)."""
UNREAD_TOLERANCE = timedelta(minutes=10)
"""How long the trigger keeps trying when the job's state cannot be read (the platform's API or the
network down): the job runs on without it, and one failed describe must not fail the task."""


class JobUnread(RuntimeError):
    """The trigger could not read its job's state for :data:`UNREAD_TOLERANCE`. The job is not stopped:
    the task's next try (or a clear) re-attaches to it. Not a ``RecflowError``: infrastructure, retried."""


class TrainingJobTrigger(BaseTrigger):
    """Waits in the triggerer until training job ``job_name`` ends; its event names the job and status.

    The backend comes from the triggerer's own ``Settings`` (the same environment as the
    workers'), so no setting or secret is stored with the trigger."""

    def __init__(
        self,
        job_name: str,
        poll_seconds: float = POLL_SECONDS,
        unread_tolerance_seconds: float = UNREAD_TOLERANCE.total_seconds(),
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.job_name = job_name
        self.poll_seconds = poll_seconds
        self.unread_tolerance_seconds = unread_tolerance_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_name": self.job_name,
                "poll_seconds": self.poll_seconds,
                "unread_tolerance_seconds": self.unread_tolerance_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from recflow.training.jobs import JobFollower, backend_for, finished  # noqa: PLC0415 (the job machinery (boto3, recflow_ml) stays out of DAG parsing)

        follower = JobFollower(backend_for(task_settings()), self.job_name, self.log.info)
        unread_since: float | None = None
        while True:
            try:
                description = await asyncio.to_thread(follower.describe)
            except RecflowError:  # recflow's own verdict (the job does not exist): no use asking again
                raise
            except Exception as error:  # the platform's API or the network: the job runs on regardless
                unread_since = unread_since or time.monotonic()
                unread_for = time.monotonic() - unread_since
                if unread_for >= self.unread_tolerance_seconds:
                    raise JobUnread(
                        f"training job {self.job_name}: its state could not be read for {unread_for:.0f} s "
                        f"({type(error).__name__}: {error}); the job is not stopped and may still be running: "
                        "the task's next try, or clearing `train`, re-attaches to it"
                    ) from error
                self.log.warning(
                    "training job %s: could not read its state (%s: %s); trying again in %.0f s, for up to "
                    "%.0f s in all",
                    self.job_name,
                    type(error).__name__,
                    error,
                    self.poll_seconds,
                    self.unread_tolerance_seconds,
                )
                await asyncio.sleep(self.poll_seconds)
                continue
            unread_since = None
            await self._read_log(follower)
            if finished(description):
                await self._read_log(follower)  # its last lines
                yield TriggerEvent(  # type: ignore[no-untyped-call]
                    {"job_name": self.job_name, "status": description["TrainingJobStatus"]}
                )
                return
            await asyncio.sleep(self.poll_seconds)

    async def _read_log(self, follower: Any) -> None:
        """The job's new log lines into the task's log: for reading along, so a log that cannot be read
        (CloudWatch refusing or throttling) is a warning and ends nothing."""
        try:
            await asyncio.to_thread(follower.drain_log)
        except Exception as error:
            self.log.warning(
                "training job %s: could not read its log (%s: %s)", self.job_name, type(error).__name__, error
            )

    async def on_kill(self) -> None:
        """A person marked the deferred task failed or success, or cleared it: stop the job."""
        from recflow.training.jobs import backend_for  # noqa: PLC0415 (the job machinery (boto3, recflow_ml) stays out of DAG parsing)

        self.log.warning("task killed while deferred: stopping training job %s", self.job_name)
        backend = backend_for(task_settings())
        await asyncio.to_thread(backend.stop_training_job, self.job_name)


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
        poll_seconds: float = POLL_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(execution_timeout=execution_timeout, **kwargs)
        self.snapshot = snapshot
        self.poll_seconds = poll_seconds
        self.job_name: str | None = None
        self._settings: Settings | None = None

    def execute(self, context: Any) -> dict[str, Any]:
        from recflow.training.jobs import finished, start_on_snapshot  # noqa: PLC0415 (the job machinery (boto3, recflow_ml) stays out of DAG parsing)

        self._settings = task_settings()
        params = context.get("params") or {}
        chosen_model_name(self._settings, params)  # a name the registry refuses, before anything trains
        try:
            started = start_on_snapshot(self._settings, self.snapshot, params)
        except ParamsError as exc:
            raise AirflowFailException(str(exc)) from exc
        self.job_name = started.name
        if started.description is not None and finished(started.description):
            return self._finish(started)
        self.log.info("training job %s runs; waiting for it in the triggerer", started.name)
        self.defer(
            trigger=TrainingJobTrigger(started.name, self.poll_seconds),
            method_name="execute_complete",
            kwargs={"started": _started_to_xcom(started)},
        )
        raise AssertionError("defer() raises TaskDeferred")  # pragma: no cover

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, started: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        from recflow.training.jobs import StartedJob, start_on_snapshot  # noqa: PLC0415 (the job machinery (boto3, recflow_ml) stays out of DAG parsing)

        self._settings = task_settings()
        if started is not None:
            job = StartedJob(**started)
        else:
            # ``airflow dags test`` resumes with the trigger's event alone (it drops defer()'s kwargs):
            # re-attach by the job's deterministic name, as a retry would
            job = start_on_snapshot(self._settings, self.snapshot, context.get("params") or {})
        self.job_name = job.name
        self.log.info("training job %s ended %s", job.name, (event or {}).get("status"))
        return self._finish(job)

    def _finish(self, started: StartedJob) -> dict[str, Any]:
        from recflow.training.jobs import finish_training  # noqa: PLC0415 (the job machinery (boto3, recflow_ml) stays out of DAG parsing)

        assert self._settings is not None
        return finish_training(self._settings, started)

    def on_kill(self) -> None:
        """Stop the job this task follows (none yet: nothing to stop)."""
        if self.job_name is None:
            return
        from recflow.training.jobs import backend_for  # noqa: PLC0415 (the job machinery (boto3, recflow_ml) stays out of DAG parsing)

        self.log.warning("task killed: stopping training job %s", self.job_name)
        backend_for(self._settings or task_settings()).stop_training_job(self.job_name)


def _started_to_xcom(started: StartedJob) -> dict[str, Any]:
    """What ``execute_complete`` needs of the started job; the description is read again there."""
    return {
        "name": started.name,
        "description": None,
        "code_version": started.code_version,
        "hyperparameters": started.hyperparameters,
    }
