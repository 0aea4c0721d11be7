"""A production-shaped Airflow on this machine: PostgreSQL metadata, CeleryExecutor on Redis, two workers.

The API server, scheduler, DAG processor and triggerer are started by ``recflow.stack.demo.run_pipeline``
(``recflow.stack.services``) with the caller's environment; this module adds what a deployment's Helm
chart would run beside them: Celery workers. Each worker gets its own working directory, its own
temporary directory, its own ``RECFLOW_HOME`` and ``AIRFLOW_HOME`` (logs included), so a task that
read a local file written by a task on the other worker would fail. Nothing but the metadata
database, the broker, the warehouse, S3 and SageMaker is shared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from recflow.core.config import Settings, subprocess_env
from recflow.stack.runtime import airflow_env
from recflow.stack.services import airflow_executable
from tests import loopback

SHARED_SECRETS = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY")
"""Every component must sign and read the same tokens and connections as the API server."""


def free_port(avoid: range = range(0)) -> int:
    while True:
        port = loopback.free_port()
        if port not in avoid:
            return port


@dataclasses.dataclass
class Worker:
    name: str
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def log_file(self) -> Path:
        return self.root / "worker.log"

    def task_logs(self) -> list[Path]:
        """The task logs this worker wrote (one per try): which tasks ran here."""
        return sorted((self.home / "airflow" / "logs").rglob("attempt=*.log"))

    def ran(self) -> set[tuple[str, str]]:
        """``(dag_id, task_id)`` of every task this worker ran."""
        found = set()
        for path in self.task_logs():
            parts = {p.split("=", 1)[0]: p.split("=", 1)[1] for p in path.parts if "=" in p}
            if "dag_id" in parts and "task_id" in parts:
                found.add((parts["dag_id"], parts["task_id"]))
        return found


def _secrets(settings: Settings) -> dict[str, str]:
    env = airflow_env(settings, subprocess_env({}))
    return {name: env[name] for name in SHARED_SECRETS}


@contextlib.contextmanager
def celery_workers(
    settings: Settings, root: Path, count: int = 2, concurrency: int = 1
) -> Iterator[list[Worker]]:
    """``count`` Celery workers, each in its own directories under ``root``; stopped on exit."""
    secrets = _secrets(settings)
    reserved = range(settings.airflow_api_port, settings.airflow_api_port + 4)
    workers: list[Worker] = []
    try:
        for index in range(1, count + 1):
            name = f"worker{index}"
            base = root / name
            for folder in ("cwd", "tmp", "home"):
                (base / folder).mkdir(parents=True, exist_ok=True)
            own = dataclasses.replace(settings, home=base / "home")
            current = {
                **subprocess_env({}),
                **secrets,
                "TMPDIR": str(base / "tmp"),
                # two workers on one machine: each serves its own logs on its own port
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port(avoid=reserved)),
            }
            env = airflow_env(own, current)
            env.update({"TMPDIR": str(base / "tmp"), **secrets})
            with (base / "worker.log").open("ab") as log:
                process = subprocess.Popen(
                    [
                        airflow_executable(),
                        "celery",
                        "worker",
                        "--concurrency",
                        str(concurrency),
                        "--celery-hostname",
                        f"{name}@%h",
                    ],
                    cwd=base / "cwd",
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            workers.append(Worker(name, base, process))
        yield workers
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        for worker in workers:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.process.pid, signal.SIGKILL)
                worker.process.wait(10)


def describe(workers: list[Worker]) -> str:
    """Which worker ran what, for a failure message."""
    return json.dumps({w.name: sorted(f"{d}.{t}" for d, t in w.ran()) for w in workers}, indent=1)
