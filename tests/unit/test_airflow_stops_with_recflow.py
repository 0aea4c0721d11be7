"""`recflow airflow …` stopped with SIGTERM (`timeout`, a supervisor, `kill`) stops its `airflow`
child too, and kills one that ignores the signal after a grace period; killed itself (`kill -9`), its
child is killed by the kernel; interrupted (Ctrl-C), it stops a child that goes on. Before, the child
(a `dags test` holding the warehouse) outlived it.

The child is a stand-in for Airflow's CLI: a shell script that writes its pid and sleeps, in some cases
ignoring SIGTERM or SIGINT as Airflow's `dags test` does. The wrapper runs in its own process, as the
command does; the test signals it and reads back, from the operating system, whether the child's pid
still runs.
"""

from __future__ import annotations

import os
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
    fake, pid_file = _stand_in(tmp_path, "trap '' TERM\n" if ignores_term else "")
    env = subprocess_env({"RECFLOW_HOME": str(tmp_path / "home")})
    wrapper = subprocess.Popen([sys.executable, "-c", WRAPPER, str(fake)], env=env)
    child = _child_pid(pid_file)
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=30) == 128 + (signal.SIGKILL if ignores_term else signal.SIGTERM)
    assert not is_running(child), f"airflow stand-in {child} outlived recflow"


@pytest.mark.parametrize("ignores_term", [False, True], ids=["honours-sigterm", "ignores-sigterm"])
def test_a_killed_wrapper_stops_its_airflow(tmp_path: Path, ignores_term: bool) -> None:
    """`kill -9` of `recflow airflow dags test` (the pid an on-call sees) can run no handler: the kernel
    kills the child when its parent dies. Before, the `dags test` went on auditing and building; then,
    with the kernel sending SIGTERM, it still did: Airflow's task runner catches SIGTERM (it calls the
    running task's on_kill and goes on), as the second stand-in ignores it."""
    fake, pid_file = _stand_in(tmp_path, "trap '' TERM\n" if ignores_term else "")
    env = subprocess_env({"RECFLOW_HOME": str(tmp_path / "home")})
    wrapper = subprocess.Popen([sys.executable, "-c", WRAPPER, str(fake)], env=env)
    child = _child_pid(pid_file)
    wrapper.kill()
    wrapper.wait(timeout=30)
    _assert_ends(child, "a killed recflow")


@pytest.mark.parametrize("on_term", ["ends", "ignored"])
def test_ctrl_c_stops_an_airflow_that_goes_on_after_it(tmp_path: Path, on_term: str) -> None:
    """Ctrl-C reaches `recflow airflow dags test` and its child alike. The child goes on (a `dags test`
    whose interrupted task waits for its retry; the stand-in ignores SIGINT): recflow says it stops it
    and sends it SIGTERM (a running task's on_kill: `train` stops its job), kills it if that does not
    end it, and dies of SIGINT itself with no traceback (so a shell's loop of commands stops too)."""
    termed = tmp_path / "got-sigterm"
    ending = "; exit 0" if on_term == "ends" else ""
    fake, pid_file = _stand_in(tmp_path, f"trap '' INT\ntrap 'touch {termed}{ending}' TERM\n")
    env = subprocess_env({"RECFLOW_HOME": str(tmp_path / "home")})
    command = textwrap.dedent(
        """
        import sys
        from recflow import cli
        from recflow.stack import services
        stand_in = sys.argv[1]
        services.airflow_executable = lambda: stand_in
        services.INTERRUPT_GRACE_SECONDS = float(sys.argv[2])
        sys.argv = ["recflow", "airflow", "db", "check"]  # the command itself, as its console script runs it
        sys.exit(cli.main())
        """
    )
    grace = 10.0 if on_term == "ends" else 1.0
    wrapper = subprocess.Popen(
        [sys.executable, "-c", command, str(fake), str(grace)],
        env=env,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=_takes_sigint,  # noqa: PLW1509 - one signal call between fork and exec
    )
    child = _child_pid(pid_file)
    os.killpg(wrapper.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    interrupted = time.monotonic()
    _, said = wrapper.communicate(timeout=30)
    if on_term == "ends":
        assert time.monotonic() - interrupted < grace - 2, "a child that ends on SIGTERM is not held"
    assert wrapper.returncode == -signal.SIGINT, said.decode()
    assert (
        f"recflow: interrupted; stopping airflow (pid {child}): SIGTERM, and SIGKILL if it has not ended {grace:.0f} s later"
        in said.decode()
    )
    assert "Traceback" not in said.decode()
    _assert_ends(child, "an interrupted recflow")
    assert termed.exists(), "the child was sent SIGTERM first"


def _takes_sigint() -> None:
    """As a command started in a terminal: SIGINT at its default, whatever this test runs under (a
    background job's, or pytest-xdist's worker's, SIGINT is ignored, and Python keeps it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stand_in(tmp_path: Path, traps: str) -> tuple[Path, Path]:
    """A stand-in for Airflow's CLI that writes its pid and runs until killed, ignoring what ``traps``
    says."""
    pid_file = tmp_path / "airflow.pid"
    fake = tmp_path / "airflow"
    fake.write_text(f"#!/bin/sh\n{traps}echo $$ > {pid_file}\nwhile true; do sleep 0.1; done\n")
    fake.chmod(0o755)
    return fake, pid_file


def _assert_ends(child: int, after: str) -> None:
    deadline = time.monotonic() + 10
    while is_running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_running(child), f"airflow stand-in {child} outlived {after}"
