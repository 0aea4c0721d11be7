"""Run the embedded Airflow (API server, scheduler, DAG processor) and talk to its REST API.

Used by ``recflow up`` (foreground, for people who want to click), ``recflow
demo`` and the end-to-end tests (background, driven through the public REST
API: the same calls the UI makes). The processes run ``airflow`` from this
venv with ``runtime.airflow_env``; their logs go to ``$RECFLOW_HOME/logs``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from recflow.core.config import Settings, subprocess_env
from recflow.core.errors import ConfigError
from recflow.stack.runtime import ADMIN_USER, API_HOST, admin_password, airflow_env, api_base_url

log = logging.getLogger(__name__)

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
"""The triggerer runs the deferred waits (the training job's), which hold no worker slot."""
TERMINAL_RUN_STATES = frozenset({"success", "failed"})


def airflow_executable() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def run_airflow(settings: Settings, args: list[str], *, check: bool = True, quiet: bool = False) -> int:
    """``airflow ARGS`` with the project's environment, in the foreground."""
    env = airflow_env(settings, subprocess_env({}))
    out = subprocess.DEVNULL if quiet else None
    result = subprocess.run([airflow_executable(), *args], env=env, check=False, stdout=out)
    if check and result.returncode != 0:
        raise RuntimeError(f"`airflow {' '.join(args)}` exited with code {result.returncode}")
    return result.returncode


API_ATTEMPTS = 5
"""SQLite (the embedded metadata DB) allows one writer: a request that meets the scheduler's
write lock gets 503 ("Database is locked", e.g. creating a backfill) or a 500 "Database error";
those are retried with a growing pause, and only where a retry cannot do a thing twice."""


def _locked(method: str, status: int, detail: str) -> bool:
    if status == 503:  # Airflow's own answer when the write could not start: nothing happened
        return True
    return status == 500 and "Database error" in detail and method in {"GET", "PATCH", "PUT", "DELETE"}


class AirflowApiError(RuntimeError):
    pass


@dataclass
class AirflowClient:
    """A small client of Airflow 3's public REST API (``/api/v2``) with a JWT from ``/auth/token``."""

    base_url: str
    token: str = ""
    retry_pause: float = 2.0
    """Seconds before the second try of a request that met the DB's write lock; grows by try."""

    @classmethod
    def login(cls, settings: Settings, base_url: str | None = None) -> AirflowClient:
        password = admin_password(settings)
        if password is None:
            raise AirflowApiError("the API server has not written the admin password yet")
        client = cls(base_url or api_base_url(settings))
        body = client._request(
            "POST", "/auth/token", {"username": ADMIN_USER, "password": password}, auth=False
        )
        client.token = body["access_token"]
        return client

    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.token}")
        for attempt in range(1, API_ATTEMPTS + 1):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    payload = response.read()
                return json.loads(payload) if payload else None
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:500]
                if attempt < API_ATTEMPTS and _locked(method, exc.code, detail):
                    log.warning(
                        "%s %s: HTTP %s (metadata DB busy), try %d of %d",
                        method,
                        path,
                        exc.code,
                        attempt,
                        API_ATTEMPTS,
                    )
                    time.sleep(self.retry_pause * attempt)
                    continue
                raise AirflowApiError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        raise AssertionError("unreachable")

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._request("GET", f"/api/v2/dags/{dag_id}")
        except AirflowApiError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        return result

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def backfill(
        self,
        dag_id: str,
        from_date: str,
        to_date: str,
        *,
        reprocess: str = "none",
        max_active_runs: int = 1,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST",
            "/api/v2/backfills",
            {
                "dag_id": dag_id,
                "from_date": from_date,
                "to_date": to_date,
                "max_active_runs": max_active_runs,
                "reprocess_behavior": reprocess,
            },
        )
        return result

    def backfills(self, dag_id: str) -> list[dict[str, Any]]:
        body = self._request("GET", f"/api/v2/backfills?dag_id={dag_id}")
        backfills: list[dict[str, Any]] = body["backfills"]
        return backfills

    def get_backfill(self, backfill_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/v2/backfills/{backfill_id}")
        return result

    def cancel_backfill(self, backfill_id: int) -> None:
        self._request("PUT", f"/api/v2/backfills/{backfill_id}/cancel")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}
        )
        return result

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        from urllib.parse import quote

        body = self._request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
            "/xcomEntries/return_value?deserialize=true",
        )
        return body.get("value")

    def delete_run(self, dag_id: str, run_id: str) -> None:
        """Delete a run; an unfinished one is marked failed first (Airflow refuses to delete it running)."""
        from urllib.parse import quote

        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
        self._request("PATCH", path, {"state": "failed"})
        self._request("DELETE", path)

    def clear_run(self, dag_id: str, run_id: str) -> None:
        """Clear every task of a run (what "Clear" on a run does in the UI): the run goes again."""
        from urllib.parse import quote

        self._request(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/clear",
            {"dry_run": False, "only_failed": False},
        )

    def asset_events(self, source_dag_id: str, source_run_id: str) -> list[dict[str, Any]]:
        """The asset events a run emitted."""
        from urllib.parse import quote

        body = self._request(
            "GET",
            f"/api/v2/assets/events?source_dag_id={source_dag_id}&source_run_id={quote(source_run_id, safe='')}",
        )
        events: list[dict[str, Any]] = body["asset_events"]
        return events

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        body = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=-run_after")
        runs: list[dict[str, Any]] = body["dag_runs"]
        return runs

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        from urllib.parse import quote

        body = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")
        instances: list[dict[str, Any]] = body["task_instances"]
        return instances

    def task_ids(self, dag_id: str) -> list[str]:
        """Every task id of the DAG's latest version."""
        body = self._request("GET", f"/api/v2/dags/{dag_id}/tasks")
        return [str(t["task_id"]) for t in body["tasks"]]

    def runs_of_logical_dates(self, dag_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """The DAG's runs whose logical date lies in ``[start, end)``, oldest first."""
        from urllib.parse import urlencode

        query = urlencode(
            {
                "logical_date_gte": start.isoformat(),
                "logical_date_lt": end.isoformat(),
                "order_by": "logical_date",
                "limit": 1000,
            }
        )
        body = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?{query}")
        runs: list[dict[str, Any]] = body["dag_runs"]
        return runs

    def clear_task_instances(
        self,
        dag_id: str,
        run_id: str,
        task_ids: list[str],
        *,
        downstream: bool,
        only_failed: bool,
        dry_run: bool,
    ) -> list[dict[str, Any]]:
        """Clear the given tasks of one run, as "Clear" on a task instance in the UI does (the run goes
        again from them); returns the task instances cleared (or that would be, with ``dry_run``)."""
        body = self._request(
            "POST",
            f"/api/v2/dags/{dag_id}/clearTaskInstances",
            {
                "dry_run": dry_run,
                "dag_run_id": run_id,
                "task_ids": task_ids,
                "include_downstream": downstream,
                "include_upstream": False,
                "only_failed": only_failed,
                "reset_dag_runs": True,
            },
        )
        instances: list[dict[str, Any]] = body["task_instances"]
        return instances

    def mark_task(self, dag_id: str, run_id: str, task_id: str, state: str) -> list[dict[str, Any]]:
        """Set one task instance's state (``failed``, ``success`` or ``skipped``) as "Mark as" in the UI
        does: that task only (Airflow's ``include_*`` default to false). Returns the instances changed."""
        from urllib.parse import quote

        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
        instances: list[dict[str, Any]] = self._request("PATCH", path, {"new_state": state})["task_instances"]
        return instances


@dataclass
class Services:
    settings: Settings
    processes: dict[str, subprocess.Popen[bytes]]

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, p in self.processes.items()}

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM each component's whole process group (workers, log server), then SIGKILL stragglers."""
        import os

        groups = {p.pid for p in self.processes.values()}
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


LISTENING_PORTS = (
    ("AIRFLOW__API__PORT", "API server and UI"),
    ("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", "task log server"),
    ("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", "triggerer log server"),
    ("AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT", "scheduler health check"),
)
"""The ports the embedded Airflow listens on (on ``API_HOST``), by the variable that sets each."""


def check_ports_free(env: dict[str, str]) -> None:
    """Refuse to start when a port the embedded Airflow needs is taken (an earlier ``recflow up``,
    a run that was killed, another program): the API server would exit with only its log saying why."""
    busy: list[tuple[int, str]] = []
    for variable, role in LISTENING_PORTS:
        port = int(env[variable])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # as uvicorn binds: a port left in TIME_WAIT by a stopped server is free, a listening one is not
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((API_HOST, port))
            except OSError:
                busy.append((port, role))
    if busy:
        raise ConfigError(
            f"cannot start Airflow: port {', '.join(f'{port} ({role})' for port, role in busy)} on "
            f"{API_HOST} is already in use. Stop what listens there (`recflow down` for an earlier "
            f"`recflow up`; `ss -ltnp 'sport = :{busy[0][0]}'` names the process), or give this Airflow "
            "other ports: RECFLOW_AIRFLOW_API_PORT=<port> takes it and the next three "
            "(docs/configuration.md)"
        )


LOG_SERVERS = (
    ("worker-log-server", "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"),
    ("trigger-log-server", "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"),
)
"""Airflow 3.3's scheduler and triggerer serve task logs on every interface (``serve_logs`` binds
host ``""``, and no setting moves it). The embedded profile starts both with ``--skip-serve-logs``
and runs Airflow's own log-server app under uvicorn on ``API_HOST`` instead, on the same ports."""


def _commands(settings: Settings, env: dict[str, str]) -> dict[str, list[str]]:
    """The command line of each process ``start_services`` starts, by name."""
    commands = {component: [airflow_executable(), component] for component in COMPONENTS}
    if settings.profile != "embedded":  # an API server on another machine fetches from these
        return commands
    commands["scheduler"].append("--skip-serve-logs")
    commands["triggerer"].append("--skip-serve-logs")
    for name, variable in LOG_SERVERS:
        commands[name] = [
            sys.executable,
            "-m",
            "uvicorn",
            "airflow.utils.serve_logs.log_server:get_app",
            "--factory",
            "--host",
            API_HOST,
            "--port",
            env[variable],
            "--no-access-log",
        ]
    return commands


def start_services(settings: Settings, *, foreground: bool = False) -> Services:
    """Start each component in its own session; ``foreground`` sends their output to this terminal."""
    env = airflow_env(settings, subprocess_env({}))
    check_ports_free(env)
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for component, command in _commands(settings, env).items():
        with (logs / f"{component}.log").open("ab") as log_file:
            processes[component] = subprocess.Popen(
                command,
                env=env,
                stdout=None if foreground else log_file,
                stderr=None if foreground else subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
    return Services(settings, processes)


def record_foreground(settings: Settings) -> Path:
    """Note this ``recflow up`` process, so that ``recflow down`` elsewhere can stop it."""
    import os

    path = settings.home / "run" / "up.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(os.getpid()))
    return path


def stop_recorded(settings: Settings, timeout: float = 60.0) -> bool:
    """Ask the ``recflow up`` recorded in ``$RECFLOW_HOME/run`` to stop, and wait until it has."""
    import os

    path = settings.home / "run" / "up.pid"
    if not path.exists():
        return False
    pid = int(path.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink()
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    path.unlink(missing_ok=True)
    return True


def wait_for_api(settings: Settings, services: Services, timeout: float = 180.0) -> AirflowClient:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        dead = [name for name, ok in services.alive().items() if not ok]
        if dead:
            raise RuntimeError(
                f"airflow {', '.join(dead)} exited during start-up; see {settings.home / 'logs'}"
            )
        try:
            return AirflowClient.login(settings)
        except (AirflowApiError, OSError) as exc:
            last_error = exc
            time.sleep(2)
    raise TimeoutError(f"the Airflow API did not answer within {timeout:.0f}s: {last_error}")


@contextmanager
def running_airflow(settings: Settings) -> Iterator[AirflowClient]:
    services = start_services(settings)
    try:
        yield wait_for_api(settings, services)
    finally:
        services.stop()


def wait_for_dags(client: AirflowClient, dag_ids: list[str], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(client.dag(d) is not None for d in dag_ids):
            return
        time.sleep(2)
    raise TimeoutError(f"DAGs {dag_ids} were not parsed within {timeout:.0f}s: check the dag-processor log")
