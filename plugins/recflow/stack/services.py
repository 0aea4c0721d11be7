"""The embedded Airflow's processes: start them (API server, scheduler, DAG processor,
triggerer, log servers), check their ports, stop them, and ``airflow ARGS`` in the foreground.

Used by ``recflow up`` (foreground, for people who want to click), ``recflow
demo`` and the end-to-end tests (background, driven through the public REST
API with ``recflow.stack.api``: the same calls the UI makes). The processes run
``airflow`` from this venv with ``runtime.airflow_env``; their logs go to
``$RECFLOW_HOME/logs``.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from recflow.core.config import Settings, subprocess_env
from recflow.core.errors import ConfigError
from recflow.stack.api import AirflowApiError, AirflowClient
from recflow.stack.pids import is_recorded_process, is_running, note_of, other_noted_process, read_note
from recflow.stack.ports import port_in_use
from recflow.stack.runtime import API_HOST, airflow_env, embedded_metadata_db

log = logging.getLogger(__name__)

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
"""The triggerer runs the deferred waits (the training job's), which hold no worker slot."""


def airflow_executable() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def run_airflow(
    settings: Settings, args: list[str], *, check: bool = True, quiet: bool = False, notice: str | None = None
) -> int:
    """``airflow ARGS`` with the project's environment, in the foreground. Any command but ``airflow
    db …`` is refused on a home whose SQLite metadata database does not exist yet (ConfigError);
    ``notice`` goes to stderr once the command is not refused, before it starts."""
    current = subprocess_env({})
    if args[:1] != ["db"] and settings.profile != "production":  # before anything is written in the home
        conn = current.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or embedded_metadata_db(settings)
        _require_metadata_db(settings, conn)
    env = airflow_env(settings, current)
    if notice:
        print(notice, file=sys.stderr, flush=True)
    out = subprocess.DEVNULL if quiet else None
    ends_with_us = None
    if sys.platform == "linux":  # libc looked up here: the child between fork and exec only calls it
        ends_with_us = functools.partial(
            _ends_with_parent, ctypes.CDLL(None, use_errno=True).prctl, os.getpid()
        )
    with _stop_requests() as stop_asked:  # from before the child exists: a SIGTERM in between is kept
        process = subprocess.Popen(
            [airflow_executable(), *args],
            env=env,
            stdout=out,
            preexec_fn=ends_with_us,  # noqa: PLW1509 - the hook makes one system call and reads two pids
        )
        returncode = _wait_passing_on_stop(process, stop_asked)
    if check and returncode != 0:
        raise RuntimeError(f"`airflow {' '.join(args)}` exited with code {returncode}")
    return returncode


PR_SET_PDEATHSIG = 1
"""prctl(2): the signal the kernel sends a process when its parent ends."""


def _ends_with_parent(prctl: Callable[[int, int], int], parent: int) -> None:
    """In the ``airflow`` child, before it runs: SIGKILL when the thread that started it ends, which
    waits for it (:func:`run_airflow`): so when this process ends, by any means. A SIGKILL
    (``kill -9`` of the ``recflow`` pid an on-call sees) runs no handler of ours, and without this the
    child (a ``dags test`` that goes on landing and publishing) outlived it.

    SIGKILL, not SIGTERM: Airflow's ``dags test`` runs its tasks in its own process, and the task runner's
    SIGTERM handler only calls the running task's ``on_kill`` and stays installed, so a SIGTERM stops no
    ``dags test`` (seen: one went on through dbt and the marts, and one whose run a later ``dags test``
    had replaced hung holding the DuckDB warehouse for good). With the parent gone nobody is left to
    escalate as :func:`_wait_passing_on_stop` does. The run stays ``running`` in Airflow's database, as
    after any killed ``dags test`` (the warehouse runbook says what to do)."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the call: no signal would come
        os.kill(os.getpid(), signal.SIGKILL)


STOP_GRACE_SECONDS = 20.0
"""How long ``airflow`` may take to end after this process was asked to stop, before it is killed."""


@contextmanager
def _stop_requests() -> Iterator[list[float]]:
    """While it is open, a SIGTERM to this process is recorded (when it came) rather than ending it, for
    :func:`_wait_passing_on_stop` to act on. Opened before the ``airflow`` child is started: a SIGTERM
    that came between the start and the wait once ended this process alone. Only the main thread takes
    signals; elsewhere the list stays empty."""
    stop_asked: list[float] = []
    if threading.current_thread() is not threading.main_thread():
        yield stop_asked
        return

    def _record(signum: int, frame: object) -> None:
        stop_asked.append(time.monotonic())

    previous = signal.signal(signal.SIGTERM, _record)
    try:
        yield stop_asked
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_passing_on_stop(process: subprocess.Popen[bytes], stop_asked: list[float]) -> int:
    """Wait for ``process``; a SIGTERM to this process (``timeout``, a supervisor, ``kill``; recorded in
    ``stop_asked``) is passed on to it, and it is killed if it has not ended :data:`STOP_GRACE_SECONDS`
    later. Without this the ``airflow`` child (a ``dags test`` holding the DuckDB warehouse, say)
    outlived the command that started it. Ctrl-C (the terminal signals both): see
    :func:`_stop_after_interrupt`."""
    passed_on = False
    while True:
        if stop_asked and not passed_on:
            process.terminate()
            passed_on = True
        try:
            return _status(process.wait(timeout=0.5))
        except subprocess.TimeoutExpired:
            if stop_asked and time.monotonic() - stop_asked[0] > STOP_GRACE_SECONDS:
                process.kill()
        except KeyboardInterrupt:
            _stop_after_interrupt(process)
            raise


INTERRUPT_GRACE_SECONDS = 5.0
"""How long ``airflow`` may take to end after a Ctrl-C, before it is killed."""


def _stop_after_interrupt(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C: the terminal sent SIGINT to ``airflow`` too. A command of Airflow's ends on it; a ``dags
    test`` does not: the interrupt fails the task it was running, which goes to ``up_for_retry``, and
    the test waits for the retry, printing "No tasks to run" every second. So the child is sent SIGTERM
    (Airflow calls the running task's ``on_kill``), given :data:`INTERRUPT_GRACE_SECONDS` to end, then
    killed; a second Ctrl-C kills it at once. The caller's KeyboardInterrupt goes on."""
    print(
        f"recflow: interrupted; stopping airflow (pid {process.pid}): SIGTERM, and SIGKILL if it has not "
        f"ended {INTERRUPT_GRACE_SECONDS:.0f} s later",
        file=sys.stderr,
        flush=True,
    )
    try:
        process.terminate()
        process.wait(timeout=INTERRUPT_GRACE_SECONDS)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        process.kill()
        process.wait()


def _status(returncode: int) -> int:
    """A shell's exit status: 128 + N for a process ended by signal N (Popen says -N)."""
    return 128 - returncode if returncode < 0 else returncode


def _require_metadata_db(settings: Settings, conn: str) -> None:
    """Name ``recflow setup`` where Airflow alone would say ``airflow db migrate``: that migrates the
    database but leaves the dbt manifest and the warehouse pool the DAGs need unmade."""
    if not conn.startswith("sqlite:///"):
        return  # a server database: its own deployment migrates it (docs/deploy.md)
    database = Path(conn.removeprefix("sqlite:///"))
    if not database.exists():
        raise ConfigError(
            f"RECFLOW_HOME={settings.home} is not set up: its Airflow metadata database {database} does "
            "not exist. Run `recflow setup` (or `make setup`) once for this home: it migrates the "
            "database, compiles the dbt manifest and creates the warehouse pool"
        )


@dataclass
class Services:
    settings: Settings
    processes: dict[str, subprocess.Popen[bytes]]

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, p in self.processes.items()}

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM each component's whole process group (workers, log server), then SIGKILL stragglers."""
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
    ports = ((int(env[variable]), role) for variable, role in LISTENING_PORTS)
    busy = [(port, role) for port, role in ports if port_in_use(API_HOST, port)]
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
    """Note this ``recflow up`` process (its pid and start time), so that ``recflow down`` elsewhere
    can stop it; refuse when the note names another process that is still running (an earlier
    ``recflow up`` of this home: a second one would run a second scheduler on the same metadata
    database and warehouse, and ``recflow down`` would then find only the second). A note whose
    process has ended, or whose pid now names a process started later, is replaced."""
    path = settings.home / "run" / "up.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name("up.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two ups started at once: the second reads the first's note
        earlier = other_noted_process(path)
        if earlier is not None:
            raise ConfigError(
                f"recflow up is already running for RECFLOW_HOME={settings.home} (pid {earlier}, "
                f"recorded in {path}): one Airflow per home. `recflow down` stops it"
            )
        path.write_text(note_of(os.getpid()))
    return path


def stop_recorded(settings: Settings, timeout: float = 60.0) -> bool:
    """Ask the ``recflow up`` recorded in ``$RECFLOW_HOME/run`` to stop, and wait until it has; ``False``
    when none runs (a note of one that has ended is removed). :class:`ConfigError` when it cannot be
    signalled or has not ended within ``timeout`` (the note then stays)."""
    path = settings.home / "run" / "up.pid"
    recorded = read_note(path)
    if recorded is None:
        return False
    pid, started = recorded
    if not is_recorded_process(pid, started):
        path.unlink(missing_ok=True)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return False
    except PermissionError:
        raise ConfigError(
            f"pid {pid}, recorded in {path}, is another user's process: not this home's recflow up. "
            f"Remove {path} if no recflow up runs for RECFLOW_HOME={settings.home}"
        ) from None
    deadline = time.monotonic() + timeout
    while is_running(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if is_running(pid):
        raise ConfigError(
            f"recflow up (pid {pid}) has not ended within {timeout:.0f}s of being asked to; its note "
            f"{path} stays. Run recflow down again, or stop it with kill {pid}"
        )
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
        except (AirflowApiError, OSError, ConfigError) as exc:  # ConfigError: a password file half written
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


def jobs_left_running(settings: Settings) -> list[str]:
    """What ``recflow down`` says of the local training jobs that run on without Airflow (a job is not
    Airflow's process, as a SageMaker job is not): one line each, and how to re-attach or stop them."""
    if settings.training_backend != "local":
        return []
    from recflow.training.local import LocalTrainingBackend  # noqa: PLC0415 (only when Airflow was stopped)

    running = LocalTrainingBackend(settings).running()
    lines = [
        f"training job {name} still runs (runner pid {pid if pid is not None else 'not yet recorded'}): "
        "the next `recflow up` re-attaches its `train` task to it"
        for name, pid in running
    ]
    if lines:
        lines.append(
            "to stop one instead: kill -TERM -PID with its runner pid "
            "(docs/runbooks/recsys_train_and_publish.md#job-stopped)"
        )
    return lines
