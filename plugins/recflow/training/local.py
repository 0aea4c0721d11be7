"""The embedded training backend: a SageMaker-shaped job run as a local, detached subprocess.

Each job owns ``$RECFLOW_HOME/jobs/<TrainingJobName>/``: ``request.json``,
``description.json`` (the DescribeTrainingJob answer), ``logs.txt``,
``runner.pid`` and ``opt_ml/`` (the container's ``/opt/ml``). The runner is
started in its own session, so it outlives the Airflow task that launched it: a
retried task re-attaches to it instead of starting a second job.

Faults it survives:

- a launch killed half-way: the job directory is built in a hidden sibling and
  renamed into place, so a job either exists whole or not at all; a directory
  without ``description.json`` (left by an older version) is replaced;
- a runner that died without a word (killed, out of memory, machine reboot):
  ``runner.pid`` holds the runner's pid *and* its start time, and a pid counts
  as the runner only while both match, so a recycled pid is never followed;
- a stop: ``stop_training_job`` marks the job ``Stopping`` and sends SIGTERM to
  the runner's process group; the runner saves the checkpoints and records
  ``Stopped`` (or, if it is gone, ``describe_training_job`` does).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recflow.core.config import Settings, subprocess_env
from recflow.core.errors import ConfigError, TrainingJobError, TrainingJobExists, TrainingJobNotFound
from recflow.training.spec import ML_PACKAGE, code_version
from recflow_ml.layout import JobLayout

log = logging.getLogger(__name__)

RUNNER_START_GRACE_SECONDS = 60.0
"""How long a job may be InProgress with no ``runner.pid`` (its launcher was killed before writing it
and the runner never started) before it counts as failed."""
DESCRIPTION = "description.json"
RUNNER_PID = "runner.pid"
OPT_ML = "opt_ml"
"""In a job's directory: the container's ``/opt/ml``, laid out by ``recflow_ml.layout``."""
CODE = "code"
"""In a job's directory: its own copy of ``recflow_ml``, taken when the job is created, which the
entrypoint imports first, as a SageMaker job runs the image its request named. An edit or a deploy
of ``ml/`` while a job runs cannot change what it runs: TensorFlow reads a function's source when it
traces it, and the export is traced at the end of the job, hours in at scale."""
_ACTIVE = frozenset({"InProgress", "Stopping"})


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write through a temporary file (one per process) and a rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (released by the kernel if the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def job_layout(job_dir: Path) -> JobLayout:
    """The ``/opt/ml`` of the job whose directory is ``job_dir``."""
    return JobLayout(job_dir / OPT_ML)


def update_description(job_dir: Path, **fields: Any) -> dict[str, Any]:
    """Read-modify-write ``description.json`` under the job's lock; the only writer after creation.

    While the job is ``Stopping``, an update that is not an outcome (no ``TrainingJobStatus``, or
    ``InProgress``) leaves both statuses alone: a stop is never overwritten by a progress report.
    """
    with _locked(job_dir / ".description.lock"):
        path = job_dir / DESCRIPTION
        description: dict[str, Any] = json.loads(path.read_text())
        if description["TrainingJobStatus"] == "Stopping" and fields.get("TrainingJobStatus") in (
            None,
            "InProgress",
        ):
            fields = {k: v for k, v in fields.items() if k not in ("TrainingJobStatus", "SecondaryStatus")}
        description.update(fields)
        write_json(path, description)
        return description


# --- the runner's identity: pid + start time -------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks after boot); ``None`` if there is no such process.

    A pid is recycled by the kernel after its process dies; (pid, start time) names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # fields 3.. (the command name may hold spaces)
    if fields[0] == "Z":  # a zombie has finished; only its exit status is left to collect
        return None
    return int(fields[22 - 3])


@dataclass(frozen=True)
class RunnerPid:
    pid: int
    start_time: int | None

    @classmethod
    def of(cls, pid: int) -> RunnerPid:
        return cls(pid, process_start_time(pid))

    @classmethod
    def read(cls, job_dir: Path) -> RunnerPid | None:
        try:
            text = (job_dir / RUNNER_PID).read_text()
        except FileNotFoundError:
            return None
        if text.strip().isdigit():  # written by an older version: a bare pid
            return cls(int(text), None)
        payload = json.loads(text)
        return cls(int(payload["pid"]), payload.get("start_time"))

    def write(self, job_dir: Path) -> None:
        write_json(job_dir / RUNNER_PID, {"pid": self.pid, "start_time": self.start_time})

    def state(self) -> str:
        """``alive``, ``dead`` or ``recycled`` (the pid now names another process)."""
        if not Path("/proc").is_dir():  # no procfs: only the pid can be checked
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return "dead"
            except PermissionError:
                return "alive"
            return "alive"
        current = process_start_time(self.pid)
        if current is None:
            return "dead"
        if self.start_time is not None and current != self.start_time:
            return "recycled"
        return "alive"


def _age_seconds(iso: str | None) -> float:
    if not iso:
        return float("inf")
    return (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()


def _copy_code(package: Path, staging: Path, request: dict[str, Any]) -> None:
    """Copy ``package`` into the job's ``CODE``; refuse (and remove ``staging``) a copy whose hash is
    not the ``code_version`` the request's tags name, as the job's name does: ``ml/`` changed between
    naming the job and copying it (a deploy), and the task's next try names the job after the code
    it will run."""
    copy = shutil.copytree(
        package, staging / CODE / package.name, ignore=shutil.ignore_patterns("__pycache__")
    )
    named = {tag["Key"]: tag["Value"] for tag in request.get("Tags", [])}.get("code_version")
    copied = code_version(copy)
    if named is not None and copied != named:
        shutil.rmtree(staging)
        raise TrainingJobError(
            f"training job {request['TrainingJobName']}: its request names code version {named}, but the "
            f"training code copied from {package} hashes to {copied}: it changed while the job was being "
            "created (a deploy?); the next try names a job after the code it runs",
            runbook="job-internal-error",
        )


class LocalTrainingBackend:
    name = "local"

    def __init__(self, settings: Settings, package: Path = ML_PACKAGE) -> None:
        self.settings = settings
        self.root = settings.jobs_dir
        self.package = package
        """The ``recflow_ml`` package a new job copies into its directory (``CODE``)."""

    def job_dir(self, name: str) -> Path:
        return self.root / name

    def layout(self, name: str) -> JobLayout:
        """The job's ``/opt/ml``, under its directory."""
        return job_layout(self.job_dir(name))

    def create_training_job(self, request: dict[str, Any]) -> None:
        name = request["TrainingJobName"]
        hosts = int(request.get("ResourceConfig", {}).get("InstanceCount", 1))
        if hosts != 1:
            raise ConfigError(
                f"training job {name}: InstanceCount={hosts} (RECFLOW_TRAINING_INSTANCE_COUNT), but the local "
                "backend runs one host; use RECFLOW_TRAINING_BACKEND=sagemaker for a multi-host job"
            )
        job_dir = self.job_dir(name)
        with _locked(self.root / ".locks" / name):
            if job_dir.exists():
                if (job_dir / DESCRIPTION).exists():
                    raise TrainingJobExists(name)
                log.warning(
                    "job directory %s has no %s: a launch was killed half-way (%s); replacing it",
                    job_dir,
                    DESCRIPTION,
                    sorted(p.name for p in job_dir.iterdir()),
                )
                shutil.rmtree(job_dir)
            for leftover in self.root.glob(f".{name}.creating-*"):
                log.warning("removing %s, left by a launch that was killed half-way", leftover)
                shutil.rmtree(leftover)
            staging = self.root / f".{name}.creating-{os.getpid()}"
            staging.mkdir(parents=True)
            write_json(staging / "request.json", request)
            write_json(
                staging / DESCRIPTION,
                {
                    "TrainingJobName": name,
                    "TrainingJobStatus": "InProgress",
                    "SecondaryStatus": "Starting",
                    "CreationTime": now_iso(),
                    "HyperParameters": request["HyperParameters"],
                    "AlgorithmSpecification": request["AlgorithmSpecification"],
                    "StoppingCondition": request["StoppingCondition"],
                    **(
                        {"CheckpointConfig": request["CheckpointConfig"]}
                        if "CheckpointConfig" in request
                        else {}
                    ),
                },
            )
            (staging / "logs.txt").touch()
            _copy_code(self.package, staging, request)
            staging.rename(job_dir)
        with (job_dir / "logs.txt").open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "recflow.training.local_runner", str(job_dir)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=subprocess_env({"PYTHONUNBUFFERED": "1"}),
            )
        RunnerPid.of(process.pid).write(job_dir)  # the runner writes it too, first thing

    def describe_training_job(self, name: str) -> dict[str, Any]:
        job_dir = self.job_dir(name)
        path = job_dir / DESCRIPTION
        if not path.exists():
            raise TrainingJobNotFound(name)
        description: dict[str, Any] = json.loads(path.read_text())
        if description["TrainingJobStatus"] not in _ACTIVE:
            return description
        runner = RunnerPid.read(job_dir)
        if runner is None:
            if _age_seconds(description.get("CreationTime")) < RUNNER_START_GRACE_SECONDS:
                return description
            gone = "never started (no runner.pid): its launch was killed"
        else:
            state = runner.state()
            if state == "alive":
                return description
            gone = (
                f"(pid {runner.pid}) is gone; pid {runner.pid} now belongs to another process"
                if state == "recycled"
                else f"(pid {runner.pid}) exited"
            )
        current = json.loads(path.read_text())  # the runner may have recorded an outcome meanwhile
        if current["TrainingJobStatus"] == "Stopping":
            return update_description(
                job_dir, TrainingJobStatus="Stopped", SecondaryStatus="Stopped", TrainingEndTime=now_iso()
            )
        if current["TrainingJobStatus"] == "InProgress":
            return update_description(
                job_dir,
                TrainingJobStatus="Failed",
                SecondaryStatus="Failed",
                FailureReason=(
                    f"InternalServerError: the local job runner {gone} without reporting a result "
                    "(killed, out of memory, or the machine restarted); see the job log"
                ),
                TrainingEndTime=now_iso(),
            )
        return dict(current)

    def running(self) -> list[tuple[str, int | None]]:
        """The jobs that have not ended, each described first (a runner that died is recorded as failed),
        with their runner's pid when it has one."""
        if not self.root.is_dir():
            return []
        found = []
        for job_dir in sorted(p for p in self.root.iterdir() if (p / DESCRIPTION).is_file()):
            if self.describe_training_job(job_dir.name)["TrainingJobStatus"] in _ACTIVE:
                runner = RunnerPid.read(job_dir)
                found.append((job_dir.name, runner.pid if runner else None))
        return found

    def read_log(self, name: str, cursor: str) -> tuple[list[str], str]:
        path = self.job_dir(name) / "logs.txt"
        offset = int(cursor or 0)
        if not path.exists():
            return [], cursor
        with path.open("rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        return complete.decode(errors="replace").splitlines(), str(offset + len(complete))

    def stop_training_job(self, name: str) -> None:
        """Mark the job ``Stopping`` and send SIGTERM to its runner's process group (runner + entrypoint).

        A job that already ended is left as it is (SageMaker refuses to stop it; here it is a no-op)."""
        description = self.describe_training_job(name)
        if description["TrainingJobStatus"] != "InProgress":
            log.info("training job %s is %s: nothing to stop", name, description["TrainingJobStatus"])
            return
        job_dir = self.job_dir(name)
        update_description(job_dir, TrainingJobStatus="Stopping", SecondaryStatus="Stopping")
        runner = RunnerPid.read(job_dir)
        if runner is not None and runner.state() == "alive":
            log.info("stopping training job %s: SIGTERM to process group %d", name, runner.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(runner.pid, signal.SIGTERM)
