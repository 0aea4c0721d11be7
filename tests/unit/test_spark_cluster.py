"""``recflow spark up`` writes only into a folder it made, and ``status`` says when nothing runs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from recflow.cli import main
from recflow.core.config import Settings
from recflow.core.errors import ConfigError
from recflow.core.ownership import StoreNotOwned
from recflow.stack import spark_cluster, spark_logs


def test_up_refuses_a_folder_another_program_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = tmp_path / "their-spark"
    theirs.mkdir()
    (theirs / "metastore_db").mkdir()
    monkeypatch.setattr(spark_cluster, "spark_home", lambda: tmp_path / "unused")
    monkeypatch.setattr(spark_cluster, "_java", lambda: "java")
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path / "home"), "RECFLOW_SPARK_DIR": str(theirs)})
    with pytest.raises(StoreNotOwned, match=f"RECFLOW_SPARK_DIR={theirs}"):
        spark_cluster.start(settings, echo=lambda _: None)
    assert sorted(p.name for p in theirs.iterdir()) == ["metastore_db"], "nothing was written there"


def test_status_and_down_when_nothing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path))
    assert main(["spark", "status"]) == 1
    assert main(["spark", "down"]) == 0
    out = capsys.readouterr().out
    assert "no Spark cluster recorded" in out and "no Spark cluster is running" in out


def test_a_web_ui_port_is_read_from_this_run_of_the_log_only(tmp_path: Path) -> None:
    """Spark's logs are appended across runs: the port is the one this run bound (after ``since``), not an
    earlier run's, and not another service's (the driver's RPC port is logged the same way)."""
    log = tmp_path / "thrift.log"
    log.write_text(
        "26/12/05 16:58:10 INFO Utils: Successfully started service 'SparkUI' on port 40001.\n"
        "26/12/05 16:58:53 ERROR HiveThriftServer2: RECEIVED SIGNAL TERM\n"
    )
    since = log.stat().st_size
    with log.open("a") as run:
        run.write("26/12/05 17:10:10 INFO Utils: Successfully started service 'sparkDriver' on port 40100.\n")
        run.write(
            "26/12/05 17:10:11 WARN Utils: Service 'SparkUI' could not bind on port 40001. Attempting port 40002.\n"
        )
    assert spark_logs.bound_ui(log, since) is None, "this run's UI has not bound yet"
    with log.open("a") as run:
        run.write("26/12/05 17:10:11 INFO Utils: Successfully started service 'SparkUI' on port 40002.\n")
    assert spark_logs.bound_ui(log, since) == 40002
    assert spark_logs.bound_ui(tmp_path / "missing.log", 0) is None


def test_a_failed_start_quotes_this_run_of_the_log_only(tmp_path: Path) -> None:
    """The end of the log a failed ``up`` quotes was the whole appended log's: an earlier run's last
    lines (its SIGTERM) stood for this run's reason (Spark walk)."""
    log = tmp_path / "thrift.log"
    log.write_text("26/12/05 16:58:53 ERROR HiveThriftServer2: RECEIVED SIGNAL TERM\n")
    since = log.stat().st_size
    with log.open("a") as run:
        run.write("Error occurred during initialization of VM\nToo small maximum heap\n")
    assert (
        spark_logs.log_tail(log, since=since)
        == "Error occurred during initialization of VM\nToo small maximum heap"
    )
    assert spark_logs.log_tail(log, lines=1) == "Too small maximum heap"
    assert spark_logs.log_tail(tmp_path / "missing.log") == "(no log)"


def test_up_refuses_a_taken_master_port_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spark would move its master to the next port and the workers would knock on another program's."""
    monkeypatch.setattr(spark_cluster, "spark_home", lambda: tmp_path / "unused")
    monkeypatch.setattr(spark_cluster, "_java", lambda: "java")
    with socket.socket() as theirs:
        theirs.bind(("127.0.0.1", 0))
        theirs.listen()
        port = theirs.getsockname()[1]
        settings = Settings.from_env(
            {"RECFLOW_HOME": str(tmp_path / "home"), "RECFLOW_SPARK_MASTER_PORT": str(port)}
        )
        with pytest.raises(ConfigError, match=f"RECFLOW_SPARK_MASTER_PORT={port} already in use"):
            spark_cluster.start(settings, echo=lambda _: None)
    assert not (tmp_path / "home").exists(), "nothing was started or written"
