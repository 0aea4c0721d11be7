"""The embedded Airflow listens on 127.0.0.1 only, and the UI passwords it writes stay private.

What listens is read from the kernel (``psutil``: ``/proc/net/tcp{,6}`` matched to the sockets of
every process ``start_services`` started and of their children), not from the settings that ask
for it.
"""

from __future__ import annotations

import stat
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from recflow.config import Settings
from recflow.runtime import airflow_env
from recflow.services import LISTENING_PORTS, Services, run_airflow, start_services, wait_for_api
from tests.loopback import free_port

pytestmark = pytest.mark.e2e

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


def test_every_embedded_server_listens_on_loopback_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RECFLOW_AIRFLOW_API_PORT", str(free_port()))
    settings = Settings.from_env()
    env = airflow_env(settings, {})
    ports = {int(env[variable]) for variable, _ in LISTENING_PORTS}
    log_servers = [int(env[f"AIRFLOW__LOGGING__{kind}_LOG_SERVER_PORT"]) for kind in ("WORKER", "TRIGGER")]
    run_airflow(settings, ["db", "migrate"], quiet=True)
    services = start_services(settings)
    try:
        wait_for_api(settings, services)
        deadline = time.monotonic() + LISTEN_TIMEOUT
        listeners = _listeners(services)
        while not ports <= listeners.keys() and time.monotonic() < deadline:
            time.sleep(1)
            listeners = _listeners(services)
        answers = {port: _status(f"http://127.0.0.1:{port}/log/any.log") for port in log_servers}
    finally:
        services.stop()
    assert answers == dict.fromkeys(log_servers, 403), "Airflow's log server asks the API server's token"
    assert ports <= listeners.keys(), f"not listened on: {sorted(ports - listeners.keys())}"
    wider = {port: sorted(ips) for port, ips in listeners.items() if ips != {"127.0.0.1"}}
    assert not wider, f"listening beyond 127.0.0.1 (port: addresses): {wider}"
    passwords = settings.airflow_home / "simple_auth_manager_passwords.json"
    assert "admin" in passwords.read_text(), "the API server writes the admin password here"
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
