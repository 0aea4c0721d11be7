"""A Spark standalone cluster on this machine: a master, ``RECFLOW_SPARK_WORKERS`` workers and the Thrift server.

``recflow spark up`` (``make spark-up``) starts, from pyspark's own distribution
(``requirements-spark.txt``), what a data platform runs for dbt and the warehouse steps:

- the standalone **master** on ``127.0.0.1:<RECFLOW_SPARK_MASTER_PORT>``, its web UI on the next port;
- **workers** (two by default), each offering ``RECFLOW_SPARK_WORKER_CORES`` cores and
  ``RECFLOW_SPARK_WORKER_MEMORY`` to one executor, web UIs on the ports after the master's;
- the **Hive Thrift server** (HiveServer2's protocol, what Kyuubi, EMR and Dataproc serve) on
  ``127.0.0.1:<RECFLOW_SPARK_THRIFT_PORT>``, the driver of every query, submitting to the master:
  its executors run on the workers, so a query's shuffle crosses processes as on a real cluster.

Everything lives in one folder the command owns (``RECFLOW_SPARK_DIR``, default
``$RECFLOW_HOME/spark``, marked as recflow's by :mod:`recflow.core.ownership`): the warehouse
directory (``warehouse/``, Parquet tables), the Derby metastore, logs, scratch space and
``cluster.json`` (the process ids and ports). Every process binds to 127.0.0.1 only
(``SPARK_LOCAL_IP``; Spark's web UIs otherwise listen on every interface). ``up`` waits until
the workers are registered, the Thrift server answers and its executors hold every core;
``down`` stops exactly the processes ``up`` recorded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recflow.core.config import Settings
from recflow.core.errors import ConfigError, RecflowError
from recflow.core.ownership import Store, claim
from recflow.core.spark import CLUSTER_STATE
from recflow.stack.pids import is_recorded_process, started_at
from recflow.stack.ports import port_in_use
from recflow.stack.spark_logs import LOG4J2, bound_ui, log_tail
from recflow.stack.spark_processes import commands, environment

THRIFT_USER = "recflow"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


class SparkClusterError(RecflowError):
    """The local Spark cluster did not start (a process died, or did not answer in time)."""


@dataclass(frozen=True)
class ClusterState:
    """What ``up`` started: process ids by role, and where they listen."""

    directory: str
    master_port: int
    thrift_port: int
    pids: dict[str, int]
    uis: dict[str, str] = field(default_factory=dict)
    """Each process's web UI by role, where it bound (Spark moves a UI off a taken port)."""
    started: dict[str, str | None] = field(default_factory=dict)
    """When each process started (:func:`~recflow.stack.pids.started_at`): with its pid, it names that
    process, and not another that got the pid after a reboot or a ``kill -9`` of the cluster."""

    @property
    def workers(self) -> int:
        """How many workers ``up`` started (their roles are ``worker-1``, ``worker-2``, …)."""
        return sum(role.startswith("worker-") for role in self.pids)

    def running(self) -> dict[str, int]:
        """The recorded processes that still run, by role."""
        return {r: pid for r, pid in self.pids.items() if is_recorded_process(pid, self.started.get(r))}

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def master_ui(self) -> str:
        # the port asked for, for a cluster.json written before the bound UIs were recorded
        return self.uis.get("master", f"http://127.0.0.1:{self.master_port + 1}")

    @property
    def warehouse_url(self) -> str:
        return f"hive://{THRIFT_USER}@127.0.0.1:{self.thrift_port}/default"

    def env(self) -> dict[str, str]:
        """The two settings that point recflow's warehouse steps and dbt at this cluster."""
        return {"RECFLOW_WAREHOUSE_URL": self.warehouse_url, "RECFLOW_DBT_TARGET": "spark"}


def spark_home() -> Path:
    """pyspark's distribution (bin/, jars/), or a :class:`ConfigError` saying how to install it."""
    try:
        import pyspark  # noqa: PLC0415 (a 455 MB optional package: only the Spark commands need it)
    except ImportError:
        raise ConfigError(
            "pyspark is not installed: the Spark engine's packages are kept out of `make demo` and `make test`; "
            "install them with `make spark-venv` (pip install -r requirements-spark.txt -c constraints.txt)"
        ) from None
    return Path(pyspark.__file__).parent


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ConfigError(
            "no `java` on the PATH: Spark needs a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)"
        )
    return java


def _state_path(directory: Path) -> Path:
    return directory / CLUSTER_STATE


def read_state(settings: Settings) -> ClusterState | None:
    """The cluster ``up`` recorded in the settings' folder, or ``None``."""
    try:
        return ClusterState(**json.loads(_state_path(settings.spark.directory(settings.home)).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        found = json.loads(response.read())
    return found if isinstance(found, dict) else {}


THRIFT_ANSWER_S = 20.0
"""How long a Thrift server has to answer ``select 1``: PyHive's client has no timeout of its own, and a
server that accepts the connection and never replies (stopped, or in a long GC) held ``status`` forever."""


def _thrift_answers(port: int) -> bool:
    """Whether the Thrift server on ``port`` answers a query within :data:`THRIFT_ANSWER_S` (asked from
    a thread of its own, left behind when it does not answer: it ends with the process)."""
    answered: list[bool] = []
    asking = threading.Thread(target=lambda: answered.append(_ask_thrift(port)), daemon=True)
    asking.start()
    asking.join(THRIFT_ANSWER_S)
    return bool(answered and answered[0])


def _ask_thrift(port: int) -> bool:
    try:
        from pyhive import hive  # noqa: PLC0415 (an optional package: only the Spark commands need it)
    except ImportError:  # without the Spark packages no Thrift server of ours can be asked
        return False

    quiet = logging.getLogger("thrift.transport.TSocket")  # logs an ERROR for each refused connection
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        connection = hive.connect(host="127.0.0.1", port=port, username=THRIFT_USER)
    except Exception:  # not listening yet, or the session is not ready
        return False
    finally:
        quiet.setLevel(level)
    try:
        cursor = connection.cursor()
        cursor.execute("select 1")
        return bool(cursor.fetchall() == [(1,)])
    except Exception:  # the session ended, or the query failed: not answering
        return False
    finally:
        connection.close()


def _wait(
    what: str,
    ready: Callable[[], bool],
    procs: dict[str, subprocess.Popen[bytes]],
    directory: Path,
    deadline: float,
    offsets: Mapping[str, int] | None = None,
) -> None:
    """Until ``ready()``; a process that exits meanwhile is raised with the end of its log since
    ``offsets[role]`` (its size before this start: the log is appended to, run after run)."""
    while True:
        for role, proc in procs.items():
            if proc.poll() is not None:
                log = directory / "logs" / f"{role}.log"
                raise SparkClusterError(
                    f"the Spark {role} exited with {proc.returncode} while waiting for {what}; the end of its log "
                    f"({log}):\n{log_tail(log, since=(offsets or {}).get(role, 0))}"
                )
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SparkClusterError(f"no {what} after {START_TIMEOUT_S:.0f} s; logs in {directory / 'logs'}")
        time.sleep(1.0)


def _master_view(state: ClusterState) -> dict[str, object]:
    return _json(f"{state.master_ui}/json/")


def alive_workers(state: ClusterState) -> list[dict[str, object]]:
    workers = _master_view(state).get("workers", [])
    return (
        [w for w in workers if isinstance(w, dict) and w.get("state") == "ALIVE"]
        if isinstance(workers, list)
        else []
    )


def problems(state: ClusterState) -> list[str]:
    """What of the recorded cluster is not serving, one entry each (empty: it all is): a recorded
    process that no longer runs, a worker the master does not count, a Thrift server that does not
    answer a query, a master that does not answer."""
    running = state.running()
    found = [
        f"the {role} (pid {pid}) is not running" for role, pid in state.pids.items() if role not in running
    ]
    try:
        workers = len(alive_workers(state))
    except (OSError, ValueError) as exc:  # nothing there; or another program's page, not the master's JSON
        found.append(f"the master's UI {state.master_ui} does not answer as the master ({exc})")
    else:
        if workers < state.workers:
            found.append(f"the master counts {workers} worker(s) alive of the {state.workers} started")
    if not _thrift_answers(state.thrift_port):
        found.append(
            f"the Thrift server on 127.0.0.1:{state.thrift_port} does not answer a query within {THRIFT_ANSWER_S:.0f} s"
        )
    return found


def _executors_hold_every_core(state: ClusterState, cores: int) -> bool:
    apps = _master_view(state).get("activeapps", [])
    return (
        any(isinstance(a, dict) and a.get("cores") == cores for a in apps)
        if isinstance(apps, list)
        else False
    )


def _record_ui(
    state: ClusterState,
    role: str,
    procs: dict[str, subprocess.Popen[bytes]],
    directory: Path,
    since: int,
    deadline: float,
) -> None:
    """Wait for ``role``'s web UI to bind and record where (``cluster.json`` too)."""
    log = directory / "logs" / f"{role}.log"
    _wait(
        f"web UI bound by the {role}",
        lambda: bound_ui(log, since) is not None,
        procs,
        directory,
        deadline,
        {role: since},
    )
    state.uis[role] = f"http://127.0.0.1:{bound_ui(log, since)}"  # where it binds, as every port here
    _state_path(directory).write_text(json.dumps(asdict(state), indent=2))


def _check_ports_free(settings: Settings) -> None:
    """The master's and the Thrift server's ports are the cluster's addresses: Spark would move a master off a
    taken port (its workers then knock on another program's), and the Thrift server would exit."""
    ports = (("MASTER", settings.spark.master_port), ("THRIFT", settings.spark.thrift_port))
    busy = [f"RECFLOW_SPARK_{name}_PORT={port}" for name, port in ports if port_in_use("127.0.0.1", port)]
    if busy:
        raise ConfigError(
            f"cannot start the Spark cluster: {' and '.join(busy)} already in use on 127.0.0.1 (another Spark, or "
            "a cluster started from another RECFLOW_SPARK_DIR?). `ss -ltnp 'sport = :<port>'` names the process: "
            "stop it, or set other ports (docs/configuration.md)"
        )


def start(settings: Settings, echo: Callable[[str], None] = print) -> ClusterState:
    """Start the cluster in the settings' folder and wait until it answers; the running one if it does."""
    directory = settings.spark.directory(settings.home)
    running = read_state(settings)
    if running is not None and running.pids and len(running.running()) == len(running.pids):
        echo(f"the Spark cluster in {directory} is already running{_unlike(running, settings)}")
        return running
    if running is not None:
        stop(settings, echo=echo)  # what is left of a cluster that died: stop the rest first
    home, _ = spark_home(), _java()
    _check_ports_free(settings)
    setting = "RECFLOW_SPARK_DIR" if settings.spark.cluster_dir else "RECFLOW_HOME"
    claim([Store("Spark cluster folder", setting, str(directory), directory)], "recflow spark up")
    for sub in ("logs", "run", "work", "scratch", "conf", "warehouse"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    (directory / "conf" / "log4j2.properties").write_text(LOG4J2)
    # the master's REST submission server listens on a fixed port (6066): a second cluster would collide
    (directory / "conf" / "spark-defaults.conf").write_text("spark.master.rest.enabled false\n")
    env = environment(directory, home)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    state = ClusterState(str(directory), settings.spark.master_port, settings.spark.thrift_port, {})
    offsets: dict[str, int] = {}
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        for role, command in commands(settings, directory, home).items():
            if role == "thrift":
                echo(
                    f"waiting for {settings.spark.workers} worker(s) to register with {state.master_url} ..."
                )
                _wait(
                    "registered workers",
                    lambda: len(alive_workers(state)) >= settings.spark.workers,
                    procs,
                    directory,
                    deadline,
                    offsets,
                )
            log_path = directory / "logs" / f"{role}.log"
            offsets[role] = log_path.stat().st_size if log_path.exists() else 0
            with log_path.open("ab") as log:
                procs[role] = subprocess.Popen(
                    command,
                    env=env,
                    cwd=directory,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            state.pids[role] = procs[role].pid
            state.started[role] = started_at(procs[role].pid)
            _state_path(directory).write_text(json.dumps(asdict(state), indent=2))
            echo(f"started the Spark {role} (pid {procs[role].pid})")
            if role == "master":  # the workers' registration is read from its UI's JSON
                _record_ui(state, role, procs, directory, offsets[role], deadline)
        echo(f"waiting for the Thrift server on 127.0.0.1:{state.thrift_port} ...")
        _wait(
            "answer from the Thrift server",
            lambda: _thrift_answers(state.thrift_port),
            procs,
            directory,
            deadline,
            offsets,
        )
        for role in procs:
            if role != "master":
                _record_ui(state, role, procs, directory, offsets[role], deadline)
        cores = settings.spark.workers * settings.spark.worker_cores
        _wait(
            f"executors holding all {cores} cores",
            lambda: _executors_hold_every_core(state, cores),
            procs,
            directory,
            deadline,
            offsets,
        )
    except BaseException:
        stop(settings, echo=echo)
        raise
    echo(
        f"Spark cluster up: {state.master_url} ({settings.spark.workers} workers), Thrift on {state.warehouse_url}"
    )
    return state


def _unlike(state: ClusterState, settings: Settings) -> str:
    """What of the settings the running cluster does not follow (it started with others), or ``""``."""
    asked = {
        "RECFLOW_SPARK_MASTER_PORT": (state.master_port, settings.spark.master_port),
        "RECFLOW_SPARK_THRIFT_PORT": (state.thrift_port, settings.spark.thrift_port),
        "RECFLOW_SPARK_WORKERS": (state.workers, settings.spark.workers),
    }
    unlike = [f"{name}={now} (it runs with {then})" for name, (then, now) in asked.items() if then != now]
    if not unlike:
        return ""
    return (
        f", with other settings than these: {', '.join(unlike)}; `recflow spark down` then `recflow spark up` "
        "starts it with them"
    )


def stop(settings: Settings, echo: Callable[[str], None] = print) -> bool:
    """Stop every process ``up`` recorded (SIGTERM to its group, then SIGKILL); whether any was running."""
    state = read_state(settings)
    if state is None:
        return False
    running = state.running()  # a pid that another process has since taken is left alone
    for pid in running.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while state.running().keys() & running.keys() and time.monotonic() < deadline:
        time.sleep(0.5)
    for role in state.running().keys() & running.keys():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running[role], signal.SIGKILL)
    _state_path(Path(state.directory)).unlink(missing_ok=True)
    if running:
        echo(f"stopped the Spark cluster in {state.directory}: {', '.join(running)}")
    return bool(running)
