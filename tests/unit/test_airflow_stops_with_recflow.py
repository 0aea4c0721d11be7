"""`recflow airflow …` stopped with SIGTERM (`timeout`, a supervisor, `kill`) stops its `airflow`
child too, and kills one that ignores the signal after a grace period; before, the child (a `dags test`
holding the warehouse) outlived it.

The child is a stand-in for Airflow's CLI: a shell script that writes its pid and sleeps, in one case
ignoring SIGTERM. The wrapper runs in its own process, as the command does; the test signals it and
reads back, from the operating system, whether the child's pid still runs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from recflow.core.config import subprocess_env
from recflow.stack.pids import is_running

WRAPPER = textwrap.dedent(
    """
    import sys
    from recflow.core.config import Settings
    from recflow.stack import services
    services.airflow_executable = lambda: sys.argv[1]
    services.STOP_GRACE_SECONDS = 2.0
    sys.exit(services.run_airflow(Settings.from_env(), ["db", "check"], check=False))
    """
)


def _child_pid(pid_file: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if pid_file.exists() and pid_file.read_text().strip():
            return int(pid_file.read_text())
        time.sleep(0.05)
    pytest.fail("the stand-in airflow never started")


@pytest.mark.parametrize("ignores_term", [False, True], ids=["honours-sigterm", "ignores-sigterm"])
def test_a_stopped_wrapper_stops_its_airflow(tmp_path: Path, ignores_term: bool) -> None:
    pid_file = tmp_path / "airflow.pid"
    fake = tmp_path / "airflow"
    trap = "trap '' TERM\n" if ignores_term else ""
    fake.write_text(f"#!/bin/sh\n{trap}echo $$ > {pid_file}\nwhile true; do sleep 0.1; done\n")
    fake.chmod(0o755)
    env = subprocess_env({"RECFLOW_HOME": str(tmp_path / "home")})
    wrapper = subprocess.Popen([sys.executable, "-c", WRAPPER, str(fake)], env=env)
    child = _child_pid(pid_file)
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=30) == 128 + (signal.SIGKILL if ignores_term else signal.SIGTERM)
    assert not is_running(child), f"airflow stand-in {child} outlived recflow"


def test_a_killed_wrapper_stops_its_airflow(tmp_path: Path) -> None:
    """`kill -9` of `recflow airflow dags test` (the pid an on-call sees) can run no handler: the kernel
    signals the child when its parent dies. Before, the `dags test` went on auditing and building."""
    pid_file = tmp_path / "airflow.pid"
    fake = tmp_path / "airflow"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nwhile true; do sleep 0.1; done\n")
    fake.chmod(0o755)
    env = subprocess_env({"RECFLOW_HOME": str(tmp_path / "home")})
    wrapper = subprocess.Popen([sys.executable, "-c", WRAPPER, str(fake)], env=env)
    child = _child_pid(pid_file)
    wrapper.kill()
    wrapper.wait(timeout=30)
    deadline = time.monotonic() + 10
    while is_running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_running(child), f"airflow stand-in {child} outlived a killed recflow"
