"""Launch a training job, or re-attach to it, stream its log and wait for the outcome.

The job name is a function of the DAG, the snapshot, the code and the
hyperparameters (``spec.job_name``), so a retried Airflow task finds the job
its previous try started: it takes the result of a ``Completed`` one, follows
an ``InProgress`` one, and only after a ``Failed`` or ``Stopped`` one launches
the next attempt (``<name>-r2``, ...), which resumes from the checkpoints the
earlier attempts left (``CheckpointConfig`` is shared by every attempt). The
Amazon provider's operator starts a new, timestamped job on every retry instead.

An outcome other than ``Completed`` raises ``recflow.core.errors.TrainingJobFailed``
with a ``kind`` read from the description (``failure_kind``), the same way for
both backends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from recflow.core.artifacts import join
from recflow.core.config import Settings
from recflow.core.errors import ParamsError, TrainingFailureKind, TrainingJobFailed, TrainingJobNotFound
from recflow.snapshot import Snapshot, channel_prefix
from recflow.training.backend import TERMINAL_STATES, TrainingBackend
from recflow.training.local import LocalTrainingBackend
from recflow.training.spec import TrainingJobSpec, attempt_name, code_version, job_name
from recflow_ml.contract import ContractError
from recflow_ml.hyperparameters import Hyperparameters

log = logging.getLogger(__name__)

MAX_LAUNCHES = 5
JOB_PREFIX = "recsys-train"

_KILLED_MARKERS = ("killed by signal", "exit code 137", "exitcode 137", "out of memory", "outofmemory")


def backend_for(settings: Settings) -> TrainingBackend:
    if settings.training_backend == "sagemaker":
        from recflow.training.sagemaker import (  # noqa: PLC0415 (botocore only for the SageMaker backend)
            SageMakerTrainingBackend,
        )

        return SageMakerTrainingBackend(settings)
    return LocalTrainingBackend(settings)


def failure_kind(description: Mapping[str, Any]) -> TrainingFailureKind:
    """How a ``Failed`` or ``Stopped`` job ended, from DescribeTrainingJob's fields.

    ``SecondaryStatus`` first (SageMaker ends a job past ``MaxRuntimeInSeconds`` as
    ``Stopped``/``MaxRuntimeExceeded``), then ``FailureReason``'s prefix: ``ClientError``
    (bad input or request), ``AlgorithmError`` (the training code: ``killed`` when a signal
    or the out-of-memory killer ended it, else ``algorithm``), anything else ``internal``."""
    secondary = str(description.get("SecondaryStatus") or "")
    reason = str(description.get("FailureReason") or "")
    if secondary in ("MaxRuntimeExceeded", "MaxWaitTimeExceeded") or reason.startswith("MaxRuntimeExceeded"):
        return "max_runtime"
    if description.get("TrainingJobStatus") == "Stopped":
        return "stopped"
    if reason.startswith("ClientError"):
        return "client"
    if reason.startswith("AlgorithmError"):
        lowered = reason.lower()
        if description.get("LocalExitSignal") or any(m in lowered for m in _KILLED_MARKERS):
            return "killed"
        return "algorithm"
    return "internal"


def job_failed(description: Mapping[str, Any]) -> TrainingJobFailed:
    """The error for a job that ended ``Failed`` or ``Stopped``."""
    status = str(description["TrainingJobStatus"])
    kind = failure_kind(description)
    reason = str(description.get("FailureReason") or "")
    if not reason:
        reason = (
            "stopped on request (StopTrainingJob; a local job: a SIGTERM to its runner)"
            if kind == "stopped"
            else "no FailureReason given"
        )
    return TrainingJobFailed(str(description["TrainingJobName"]), status, reason, kind)


def _describe(backend: TrainingBackend, name: str) -> dict[str, Any] | None:
    try:
        return backend.describe_training_job(name)
    except TrainingJobNotFound:
        return None


def launch_or_attach(backend: TrainingBackend, spec: TrainingJobSpec) -> tuple[str, dict[str, Any] | None]:
    """The job to follow: an existing usable one (with its description), or a newly launched one."""
    last: dict[str, Any] | None = None
    for attempt in range(1, MAX_LAUNCHES + 1):
        name = attempt_name(spec.name, attempt)
        description = _describe(backend, name)
        if description is None:
            log.info("launching training job %s on the %s backend", name, backend.name)
            backend.create_training_job(replace(spec, name=name).request())
            return name, None
        status = description["TrainingJobStatus"]
        if status == "Completed":
            log.info("training job %s already completed: taking its result, not training again", name)
            return name, description
        if status in ("InProgress", "Stopping"):
            log.info("re-attaching to training job %s (%s)", name, status)
            return name, description
        last = description
        log.info(
            "training job %s ended %s (%s); trying the next attempt",
            name,
            status,
            description.get("FailureReason", "no reason given"),
        )
    assert last is not None
    failed = job_failed(last)
    raise TrainingJobFailed(
        spec.name,
        "Failed",
        f"{MAX_LAUNCHES} attempts failed; the last, {failed.name}: {failed.reason}",
        failed.kind,
    )


@dataclass
class JobFollower:
    """Follows one job: each ``poll`` describes it, echoes a status change and the new log lines.

    The blocking loop of ``run_training_job`` and the Airflow trigger that waits without a
    worker slot both poll through it, so both report a job the same way."""

    backend: TrainingBackend
    name: str
    echo: Callable[[str], None] = log.info
    cursor: str = ""
    secondary: str | None = None

    def poll(self) -> dict[str, Any]:
        description = self.describe()
        self.drain_log()
        return description

    def describe(self) -> dict[str, Any]:
        """The job's description, echoing a change of its status."""
        description = self.backend.describe_training_job(self.name)
        if description.get("SecondaryStatus") != self.secondary:
            self.secondary = description.get("SecondaryStatus")
            self.echo(f"[{self.name}] status {description['TrainingJobStatus']} / {self.secondary}")
        return description

    def drain_log(self) -> None:
        lines, self.cursor = self.backend.read_log(self.name, self.cursor)
        for line in lines:
            self.echo(f"[{self.name}] {line}")


def finished(description: Mapping[str, Any]) -> bool:
    return str(description["TrainingJobStatus"]) in TERMINAL_STATES


def outcome(description: dict[str, Any]) -> dict[str, Any]:
    """A terminal description if the job completed; ``TrainingJobFailed`` otherwise."""
    if description["TrainingJobStatus"] != "Completed":
        raise job_failed(description)
    return description


def run_training_job(
    backend: TrainingBackend,
    spec: TrainingJobSpec,
    *,
    poll_seconds: float = 2.0,
    echo: Callable[[str], None] = log.info,
    on_launch: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``spec`` to completion and return its final description; raise ``TrainingJobFailed`` otherwise.

    This blocks its caller for the whole job (the Airflow task defers instead: ``start_on_snapshot``
    then ``recflow.airflow.training.TrainingJobTrigger``). ``on_launch(name)`` is called as soon as
    the job to follow is known (launched or re-attached), so a caller can stop it
    (``backend.stop_training_job(name)``) if it is itself told to stop."""
    name, description = launch_or_attach(backend, spec)
    if on_launch is not None:
        on_launch(name)
    return outcome(_wait(JobFollower(backend, name, echo), description, poll_seconds))


def _wait(follower: JobFollower, description: dict[str, Any] | None, poll_seconds: float) -> dict[str, Any]:
    """Poll until the job ends (blocking); its terminal description, whatever the outcome."""
    while description is None or not finished(description):
        description = follower.poll()
        if not finished(description):
            time.sleep(poll_seconds)
    follower.drain_log()
    return description


# --- the train step, without Airflow ------------------------------------------------------------


def hyperparameters_of(params: Mapping[str, Any]) -> dict[str, str]:
    """The run's hyperparameters as SageMaker strings, checked as the job will parse them.

    Every field of ``recflow_ml.hyperparameters.Hyperparameters`` comes from ``params`` or its
    default; other params (``dry_run``, ``model_name``) are not hyperparameters. A value the job
    would refuse (``epochs=5.0``) raises ``ParamsError`` naming the param, before any job starts."""
    defaults = Hyperparameters()
    hps = {f.name: str(params.get(f.name, getattr(defaults, f.name))) for f in fields(Hyperparameters)}
    for name, text in hps.items():
        try:
            Hyperparameters.from_strings({name: text})
        except ContractError as exc:
            raise ParamsError(f"param {name}: {exc}; no training job was started") from exc
    try:
        Hyperparameters.from_strings(hps)
    except ContractError as exc:
        raise ParamsError(f"params {hps}: {exc}; no training job was started") from exc
    return hps


def snapshot_spec(
    settings: Settings, snapshot: Mapping[str, Any], hyperparameters: Mapping[str, str], code: str
) -> TrainingJobSpec:
    """The ``CreateTrainingJob`` request for training on ``snapshot`` (its XCom dict)."""
    snap = Snapshot.from_xcom(dict(snapshot))
    return TrainingJobSpec(
        name=job_name(JOB_PREFIX, snap.snapshot_id, code, hyperparameters),
        image=settings.training_image,
        role_arn=settings.sagemaker_role_arn,
        hyperparameters=dict(hyperparameters),
        channels={"train": channel_prefix(snap.train_uri), "holdout": channel_prefix(snap.holdout_uri)},
        output_uri=join(settings.artifacts_uri, "models"),
        instance_type=settings.training_instance_type,
        instance_count=settings.training_instance_count,
        tags={"snapshot_id": snap.snapshot_id, "code_version": code},
        checkpoint_root=join(settings.artifacts_uri, "checkpoints"),
    )


@dataclass(frozen=True)
class StartedJob:
    """The job a train step follows, and what its XCom result will carry besides the job's own fields."""

    name: str
    description: dict[str, Any] | None
    code_version: str
    hyperparameters: dict[str, str]

    def result(self, description: Mapping[str, Any]) -> dict[str, Any]:
        """The train step's XCom for the job's ``Completed`` description."""
        return {
            "job_name": description["TrainingJobName"],
            "model_uri": description["ModelArtifacts"]["S3ModelArtifacts"],
            "training_seconds": description.get("TrainingTimeInSeconds"),
            "peak_memory_mb": description.get("LocalPeakMemoryMB"),
            "code_version": self.code_version,
            "hyperparameters": self.hyperparameters,
        }


def start_on_snapshot(
    settings: Settings,
    snapshot: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    backend: TrainingBackend | None = None,
) -> StartedJob:
    """The first half of the train step: validate the hyperparameters, launch the job or re-attach to it.

    Raises ``ParamsError`` (nothing launched) or ``TrainingJobFailed`` (every attempt failed)."""
    hps = hyperparameters_of(params)
    code = code_version()
    spec = snapshot_spec(settings, snapshot, hps, code)
    name, description = launch_or_attach(backend or backend_for(settings), spec)
    return StartedJob(name, description, code, hps)


def finish_training(
    settings: Settings, started: StartedJob, *, backend: TrainingBackend | None = None
) -> dict[str, Any]:
    """The second half: the XCom of a job that has ended, or ``TrainingJobFailed`` with its kind."""
    description = (backend or backend_for(settings)).describe_training_job(started.name)
    if not finished(description):
        raise TrainingJobFailed(
            started.name,
            str(description["TrainingJobStatus"]),
            "the wait for this job ended while it was still running",
            "internal",
        )
    return started.result(outcome(description))


def train_on_snapshot(
    settings: Settings,
    snapshot: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    on_launch: Callable[[str], None] | None = None,
    backend: TrainingBackend | None = None,
    poll_seconds: float = 2.0,
    echo: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """The whole train step in one blocking call (benchmarks and tests; the DAG defers the wait).

    Raises ``ParamsError`` (nothing launched) or ``TrainingJobFailed``."""
    backend = backend or backend_for(settings)
    started = start_on_snapshot(settings, snapshot, params, backend=backend)
    if on_launch is not None:
        on_launch(started.name)
    description = _wait(JobFollower(backend, started.name, echo), started.description, poll_seconds)
    return started.result(outcome(description))
