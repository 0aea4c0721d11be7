"""What ``recflow spark up`` recorded (``cluster.json``) names processes by pid *and* start time, so a
pid that another program took since (after a reboot, or a ``kill -9`` of the cluster) is neither
stopped by ``recflow spark down`` nor taken for the cluster by ``up``; ``status`` names each part of
a recorded cluster that is not serving. No Spark is needed: the processes are ``sleep``s."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recflow import cli
from recflow.core.config import Settings
from recflow.core.spark import CLUSTER_STATE
from recflow.stack import spark_cluster
from recflow.stack.pids import is_running, started_at
from tests.loopback import free_port


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    return Settings.from_env()


@pytest.fixture
def other_program() -> Iterator[subprocess.Popen[bytes]]:
    """A process of another program, in a session of its own (as each cluster process is)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def _record(settings: Settings, pids: dict[str, int], started: dict[str, str | None] | None = None) -> Path:
    directory = settings.spark.directory(settings.home)
    directory.mkdir(parents=True)
    record = {
        "directory": str(directory),
        "master_port": free_port(),
        "thrift_port": free_port(),
        "pids": pids,
    }
    if started is not None:
        record["started"] = started
    (directory / CLUSTER_STATE).write_text(json.dumps(record))
    return directory / CLUSTER_STATE


def test_down_leaves_a_process_that_took_a_recorded_pid(
    settings: Settings, other_program: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    started = started_at(other_program.pid)
    assert started is not None
    _record(
        settings, {"master": other_program.pid}, {"master": str(int(started) - 100)}
    )  # an earlier process
    assert spark_cluster.read_state(settings) is not None, "the record is read"
    assert cli.main(["spark", "down"]) == 0
    assert is_running(other_program.pid), "another program's process was stopped"
    assert "no Spark cluster is running" in capsys.readouterr().out


def test_up_does_not_take_a_process_that_took_a_recorded_pid_for_the_cluster(
    settings: Settings, other_program: subprocess.Popen[bytes]
) -> None:
    started = started_at(other_program.pid)
    assert started is not None
    _record(settings, {"master": other_program.pid}, {"master": str(int(started) - 100)})
    state = spark_cluster.read_state(settings)
    assert state is not None and state.running() == {}, "up would have said 'already running'"


def test_down_stops_the_process_it_recorded(
    settings: Settings, other_program: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    record = _record(settings, {"master": other_program.pid}, {"master": started_at(other_program.pid)})
    assert cli.main(["spark", "down"]) == 0
    assert other_program.wait(timeout=30) != 0, "stopped by a signal"
    assert capsys.readouterr().out.startswith("stopped the Spark cluster in ")
    assert not record.exists()


def test_status_names_each_part_that_is_not_serving(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    record = json.loads(
        _record(settings, {"master": ended.pid, "worker-1": ended.pid, "thrift": ended.pid}).read_text()
    )
    with socket.socket() as silent:  # accepts the Thrift client's connection and never answers
        silent.bind(("127.0.0.1", record["thrift_port"]))
        silent.listen()
        monkeypatch.setattr(spark_cluster, "THRIFT_ANSWER_S", 2.0)
        started = time.monotonic()
        assert cli.main(["spark", "status"]) == 1
        assert time.monotonic() - started < 30, "a server that never answers held status forever"
    said = capsys.readouterr().out
    assert said.startswith(f"the Spark cluster in {settings.spark.directory(settings.home)} is not whole: ")
    for part in (
        f"the master (pid {ended.pid}) is not running",
        f"the thrift (pid {ended.pid}) is not running",
        f"the master's UI http://127.0.0.1:{record['master_port'] + 1} does not answer as the master (",
        f"the Thrift server on 127.0.0.1:{record['thrift_port']} does not answer a query within 2 s",
        "`recflow spark down` then `recflow spark up`",
    ):
        assert part in said, said


def test_a_cluster_that_does_not_start_is_said_without_a_traceback(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``start`` stops what it started and raises what failed with its log's last lines (a taken port,
    too little memory); that was ~60 lines of traceback around them."""
    said = "the Spark thrift exited with 1; the last lines of thrift.log:\n  BindException: Address already in use"

    def fails(settings: Settings) -> None:
        raise spark_cluster.SparkClusterError(said)

    monkeypatch.setattr("recflow.cli.spark.start", fails)
    assert cli.main(["spark", "up"]) == 1
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", f"recflow: {said}\n")


def test_up_on_a_running_cluster_names_the_settings_it_does_not_follow(
    settings: Settings, other_program: subprocess.Popen[bytes]
) -> None:
    """Changed RECFLOW_SPARK_* settings were silently not applied: ``up`` said 'already running'."""
    _record(settings, {"master": other_program.pid}, {"master": started_at(other_program.pid)})
    recorded = spark_cluster.read_state(settings)
    assert recorded is not None
    said: list[str] = []
    assert spark_cluster.start(settings, echo=said.append) == recorded
    assert said == [
        f"the Spark cluster in {recorded.directory} is already running, with other settings than these: "
        f"RECFLOW_SPARK_MASTER_PORT={settings.spark.master_port} (it runs with {recorded.master_port}), "
        f"RECFLOW_SPARK_THRIFT_PORT={settings.spark.thrift_port} (it runs with {recorded.thrift_port}), "
        f"RECFLOW_SPARK_WORKERS={settings.spark.workers} (it runs with 0); `recflow spark down` then "
        "`recflow spark up` starts it with them"
    ]
