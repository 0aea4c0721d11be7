"""The embedded training backend: a SageMaker-shaped job run as a local, detached subprocess.

Each job owns ``$RECFLOW_HOME/jobs/<TrainingJobName>/``: ``request.json``,
``description.json`` (the DescribeTrainingJob answer, rewritten atomically by
the runner), ``logs.txt``, and ``opt_ml/`` (the container's ``/opt/ml``). The
runner is started in its own session, so it outlives the Airflow task that
launched it: a retried task re-attaches to it instead of starting a second job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recflow.config import Settings, subprocess_env
from recflow.training.backend import TrainingJobExists, TrainingJobNotFound


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class LocalTrainingBackend:
    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.jobs_dir

    def job_dir(self, name: str) -> Path:
        return self.root / name

    def create_training_job(self, request: dict[str, Any]) -> None:
        name = request["TrainingJobName"]
        job_dir = self.job_dir(name)
        try:
            job_dir.mkdir(parents=True)
        except FileExistsError:
            raise TrainingJobExists(name) from None
        write_json(job_dir / "request.json", request)
        write_json(
            job_dir / "description.json",
            {
                "TrainingJobName": name,
                "TrainingJobStatus": "InProgress",
                "SecondaryStatus": "Starting",
                "CreationTime": now_iso(),
                "HyperParameters": request["HyperParameters"],
                "AlgorithmSpecification": request["AlgorithmSpecification"],
            },
        )
        with (job_dir / "logs.txt").open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "recflow.training.local_runner", str(job_dir)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=subprocess_env({"PYTHONUNBUFFERED": "1"}),
            )
        (job_dir / "runner.pid").write_text(str(process.pid))

    def describe_training_job(self, name: str) -> dict[str, Any]:
        job_dir = self.job_dir(name)
        path = job_dir / "description.json"
        if not path.exists():
            raise TrainingJobNotFound(name)
        description: dict[str, Any] = json.loads(path.read_text())
        if description["TrainingJobStatus"] == "InProgress":
            pid_file = job_dir / "runner.pid"
            if pid_file.exists() and not _alive(int(pid_file.read_text())):
                description = json.loads(path.read_text())
                if description["TrainingJobStatus"] == "InProgress":
                    description.update(
                        TrainingJobStatus="Failed",
                        SecondaryStatus="Failed",
                        FailureReason=(
                            f"InternalServerError: the local job runner (pid {pid_file.read_text()}) "
                            "exited without reporting a result; see the job log"
                        ),
                        TrainingEndTime=now_iso(),
                    )
                    write_json(path, description)
        return description

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
        pid_file = self.job_dir(name) / "runner.pid"
        if pid_file.exists() and _alive(pid := int(pid_file.read_text())):
            os.killpg(pid, 15)
