"""End to end: a person marking a deferred ``train`` failed stops its training job.

A real Airflow (API server, scheduler, DAG processor, triggerer) on free ports runs
``recsys_train_and_publish`` on the tiny warehouse with a job long enough to be caught
running. Once ``train`` waits deferred in the triggerer and the job's entrypoint runs,
the test marks ``train`` failed through the REST API, as the UI's "Mark as failed" does.
It then checks, apart from anything the operator or the backend reports, that every
process of the job's process group is gone and that the job's own ``description.json``
reads ``Stopped``: only the trigger's ``on_kill``, called by the triggerer, can have
stopped it.

The window in which ``train`` runs on a worker before it defers (the operator's own
``on_kill``) lasts milliseconds: it is not caught here.

The same Airflow also shows that the embedded profile listens on 127.0.0.1 only, and that the
UI passwords it writes stay private: what listens is read from the kernel (``psutil``: the
sockets of every process ``start_services`` started and of their children), not from the
settings that ask for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from recflow.core.config import Settings
from recflow.core.names import TRAINING_DAG
from recflow.stack.api import AirflowClient, wait_for_dags
from recflow.stack.demo import setup
from recflow.stack.ports import free_port_block
from recflow.stack.runtime import airflow_env
from recflow.stack.services import LISTENING_PORTS, Services, start_services, wait_for_api
from recflow.training.local import RunnerPid
from tests.integration.conftest import home_with_warehouse_of, warehouse  # noqa: F401 - a pytest fixture

pytestmark = pytest.mark.e2e

T = TypeVar("T")
LONG = {"epochs": 200, "batch_size": 16, "dry_run": True}
"""Minutes of training on the tiny warehouse: the job is stopped long before it ends."""
STARTUP = 300.0
"""Seconds from the trigger until the job's entrypoint runs (snapshot, launch), on a loaded machine."""
STOP_WITHIN = 60.0
"""Seconds the job may take to end after ``train`` is marked failed (the triggerer's loop, SIGTERM)."""


@dataclass
class Airflow:
    settings: Settings
    client: AirflowClient
    services: Services


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float, why: Callable[[], str]) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None and found is not False:
            return found
        time.sleep(0.5)
    pytest.fail(f"no {what} within {timeout:.0f}s; {why()}")


def _alive(process: psutil.Process) -> bool:
    """Still running (a zombie has ended: nothing is left of it but its exit status)."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _group(pgid: int) -> list[psutil.Process]:
    """The processes of process group ``pgid`` (the job's runner started it: runner + entrypoint)."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and _alive(process):
                members.append(process)
    return members


def _jobs(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.jobs_dir.glob("[!.]*") if p.is_dir())


def _kill_jobs(settings: Settings) -> None:
    """Whatever happened, no job outlives the test: SIGKILL each live runner's process group."""
    if not settings.jobs_dir.is_dir():
        return
    for job_dir in _jobs(settings):
        runner = RunnerPid.read(job_dir)
        if runner is not None and runner.state() == "alive":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(runner.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def airflow(warehouse: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:  # noqa: F811
    fresh = home_with_warehouse_of(warehouse, tmp_path_factory.mktemp("on_kill"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_HOME", str(fresh.home))
        mp.setenv("RECFLOW_WAREHOUSE_PATH", str(fresh.duckdb_path))
        mp.setenv("RECFLOW_AIRFLOW_API_PORT", str(free_port_block()))
        settings = Settings.from_env()
        setup(settings, echo=print)
        services = start_services(settings)
        try:
            client = wait_for_api(settings, services)
            wait_for_dags(client, [TRAINING_DAG])
            yield Airflow(settings, client, services)
        finally:
            services.stop()
            _kill_jobs(settings)


def _train(client: AirflowClient, run_id: str) -> dict[str, Any]:
    return next(t for t in client.task_instances(TRAINING_DAG, run_id) if t["task_id"] == "train")


def _trigger_logs(settings: Settings, run_id: str) -> list[Path]:
    """What the triggerer wrote for ``train``'s trigger (its copy of the job's log): it runs the wait."""
    folder = settings.airflow_home / "logs" / f"dag_id={TRAINING_DAG}" / f"run_id={run_id}" / "task_id=train"
    return [p for p in folder.glob("attempt=1.log.trigger.*.log") if p.stat().st_size > 0]


def _triggerer_log(settings: Settings, lines: int = 30) -> str:
    path = settings.home / "logs" / "triggerer.log"
    text = path.read_text(errors="replace") if path.exists() else "(no triggerer log)"
    return "\n".join(text.splitlines()[-lines:])


def _description(job_dir: Path) -> dict[str, Any]:
    description: dict[str, Any] = json.loads((job_dir / "description.json").read_text())
    return description


def test_marking_a_deferred_train_failed_stops_its_job(airflow: Airflow) -> None:
    settings, client = airflow.settings, airflow.client
    client.set_paused(TRAINING_DAG, False)
    try:
        run_id = client.trigger(TRAINING_DAG, LONG)["dag_run_id"]

        def why() -> str:
            return f"train is {_train(client, run_id)}, jobs {[p.name for p in _jobs(settings)]}"

        def waiting_in_the_triggerer() -> tuple[Path, list[psutil.Process]] | None:
            train = _train(client, run_id)
            if train["state"] in ("success", "failed", "upstream_failed"):
                pytest.fail(
                    f"train ended {train['state']} before it could be marked; see {settings.home}/logs"
                )
            triggerer = (train.get("trigger") or {}).get("triggerer_id")
            if train["state"] != "deferred" or triggerer is None or not _trigger_logs(settings, run_id):
                return None  # a trigger no triggerer runs yet is removed with no on_kill: not this case
            if not _jobs(settings):
                return None
            job_dir = _jobs(settings)[0]
            runner = RunnerPid.read(job_dir)
            members = _group(runner.pid) if runner is not None else []
            return (job_dir, members) if len(members) >= 2 else None  # the runner and its entrypoint

        job_dir, processes = _wait_for(
            "train waiting deferred in the triggerer, its job training",
            waiting_in_the_triggerer,
            STARTUP,
            why,
        )
        assert [p.name for p in _jobs(settings)] == [job_dir.name]
        assert _description(job_dir)["TrainingJobStatus"] == "InProgress"

        before_mark = datetime.now(UTC)
        marked = client.mark_task(TRAINING_DAG, run_id, "train", "failed")
        assert [(t["task_id"], t["state"]) for t in marked] == [("train", "failed")]

        def stopped() -> bool:
            return not any(_alive(p) for p in processes) and (
                _description(job_dir)["TrainingJobStatus"] == "Stopped"
            )

        _wait_for(
            "stop of the job",
            stopped,
            STOP_WITHIN,
            lambda: (
                f"alive: {[p.pid for p in processes if _alive(p)]}, job {_description(job_dir)}; "
                f"triggerer log:\n{_triggerer_log(settings)}"
            ),
        )
        description = _description(job_dir)
        assert description["SecondaryStatus"] == "Stopped", description
        ended = datetime.fromisoformat(description["TrainingEndTime"])
        assert before_mark <= ended <= datetime.now(UTC), "the job ended after the mark, not before it"
        assert "job stopped" in (job_dir / "logs.txt").read_text(), "the runner was told to stop"
        assert _train(client, run_id)["state"] == "failed", "the task stays as the person marked it"
    finally:
        client.set_paused(TRAINING_DAG, True)


LISTEN_TIMEOUT = 120.0
"""Seconds for every port in ``LISTENING_PORTS`` to be listened on, once the API answers."""


def _listeners(services: Services) -> dict[int, set[str]]:
    """Port → the addresses it is listened on, over every process of the services' trees."""
    found: dict[int, set[str]] = {}
    for process in services.processes.values():
        try:
            tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for member in tree:
            try:
                sockets = member.net_connections(kind="inet")
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            for sock in sockets:
                if sock.status == psutil.CONN_LISTEN:
                    found.setdefault(sock.laddr.port, set()).add(sock.laddr.ip)
    return found


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def test_every_embedded_server_listens_on_loopback_only(airflow: Airflow) -> None:
    env = airflow_env(airflow.settings, {})
    ports = {int(env[variable]) for variable, _ in LISTENING_PORTS}
    log_servers = [int(env[f"AIRFLOW__LOGGING__{kind}_LOG_SERVER_PORT"]) for kind in ("WORKER", "TRIGGER")]
    deadline = time.monotonic() + LISTEN_TIMEOUT
    listeners = _listeners(airflow.services)
    while not ports <= listeners.keys() and time.monotonic() < deadline:
        time.sleep(1)
        listeners = _listeners(airflow.services)
    answers = {port: _status(f"http://127.0.0.1:{port}/log/any.log") for port in log_servers}
    assert answers == dict.fromkeys(log_servers, 403), "Airflow's log server asks the API server's token"
    assert ports <= listeners.keys(), f"not listened on: {sorted(ports - listeners.keys())}"
    wider = {port: sorted(ips) for port, ips in listeners.items() if ips != {"127.0.0.1"}}
    assert not wider, f"listening beyond 127.0.0.1 (port: addresses): {wider}"
    passwords = airflow.settings.airflow_home / "simple_auth_manager_passwords.json"
    assert "admin" in passwords.read_text(), "the API server writes the admin password here"
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
