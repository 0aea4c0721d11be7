"""Launch a training job, or re-attach to it, stream its log and wait for the outcome.

The job name is a function of the DAG, the snapshot, the code and the
hyperparameters (``spec.job_name``), so a retried Airflow task finds the job
its previous try started: it takes the result of a ``Completed`` one, follows
an ``InProgress`` one, and only after a ``Failed`` or ``Stopped`` one launches
the next attempt (``<name>-r2``, ...). The Amazon provider's operator starts a
new, timestamped job on every retry instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from recflow.config import Settings
from recflow.training.backend import TERMINAL_STATES, TrainingBackend, TrainingJobNotFound
from recflow.training.spec import TrainingJobSpec, attempt_name

log = logging.getLogger(__name__)

MAX_LAUNCHES = 5


class TrainingJobFailed(RuntimeError):
    def __init__(self, name: str, status: str, reason: str) -> None:
        super().__init__(f"training job {name} {status}: {reason}")
        self.name = name
        self.status = status
        self.reason = reason


def backend_for(settings: Settings) -> TrainingBackend:
    if settings.training_backend == "sagemaker":
        from recflow.training.sagemaker import SageMakerTrainingBackend

        return SageMakerTrainingBackend(settings)
    from recflow.training.local import LocalTrainingBackend

    return LocalTrainingBackend(settings)


def _describe(backend: TrainingBackend, name: str) -> dict[str, Any] | None:
    try:
        return backend.describe_training_job(name)
    except TrainingJobNotFound:
        return None


def launch_or_attach(backend: TrainingBackend, spec: TrainingJobSpec) -> tuple[str, dict[str, Any] | None]:
    """The job to follow: an existing usable one (with its description), or a newly launched one."""
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
        log.info(
            "training job %s ended %s (%s); trying the next attempt",
            name,
            status,
            description.get("FailureReason", "no reason given"),
        )
    raise TrainingJobFailed(spec.name, "Failed", f"{MAX_LAUNCHES} attempts failed; see their logs")


def run_training_job(
    backend: TrainingBackend,
    spec: TrainingJobSpec,
    *,
    poll_seconds: float = 2.0,
    echo: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Run ``spec`` to completion and return its final description; raise ``TrainingJobFailed`` otherwise."""
    name, description = launch_or_attach(backend, spec)
    cursor = ""
    secondary = None
    while description is None or description["TrainingJobStatus"] not in TERMINAL_STATES:
        description = backend.describe_training_job(name)
        if description.get("SecondaryStatus") != secondary:
            secondary = description.get("SecondaryStatus")
            echo(f"[{name}] status {description['TrainingJobStatus']} / {secondary}")
        lines, cursor = backend.read_log(name, cursor)
        for line in lines:
            echo(f"[{name}] {line}")
        if description["TrainingJobStatus"] not in TERMINAL_STATES:
            time.sleep(poll_seconds)
    lines, cursor = backend.read_log(name, cursor)
    for line in lines:
        echo(f"[{name}] {line}")
    if description["TrainingJobStatus"] != "Completed":
        raise TrainingJobFailed(
            name, description["TrainingJobStatus"], description.get("FailureReason", "no FailureReason given")
        )
    return description
