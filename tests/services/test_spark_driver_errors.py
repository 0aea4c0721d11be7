"""What the Spark engine's driver (PyHive over Thrift, installed by ``make spark-venv``) raises, as the
tasks report it; no cluster is needed: the errors are the driver's own types. The driver is imported
in the tests: ``make test`` collects this folder without it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from recflow.core.config import subprocess_env
from recflow.core.errors import WarehouseUnavailable
from recflow.oncall.runbooks import anchor_for
from recflow.warehouse.spark_errors import spark_errors  # its driver is imported where it runs


def test_a_connection_lost_mid_statement_is_the_warehouse_unavailable() -> None:
    """The first try of `audit` after the Thrift server was killed ended with Thrift's bare
    `TTransportException: TSocket read 0 bytes`: no statement, no server, nothing to do."""
    from thrift.transport.TTransport import TTransportException  # make spark-venv: not in make test's venv

    with (
        pytest.raises(WarehouseUnavailable) as raised,
        spark_errors(
            "insert overwrite table raw.events partition (ds) select * from raw_staging.audit__20261204"
        ),
    ):
        raise TTransportException(TTransportException.END_OF_FILE, "TSocket read 0 bytes")
    message = str(raised.value)
    assert (
        "lost the Spark Thrift server while it ran a statement (TTransportException: TSocket read 0 bytes)"
        in message
    )
    assert "insert overwrite table raw.events" in message
    assert anchor_for("audit", raised.value) == "infrastructure"


def test_a_spark_warehouse_down_is_one_line_on_the_terminal(tmp_path: Path) -> None:
    """`recflow sql` with the Thrift server down printed Thrift's own traceback and ERROR line before
    recflow's one line that says the same with the address."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = subprocess_env(
        {
            "RECFLOW_HOME": str(tmp_path / "home"),
            "RECFLOW_WAREHOUSE_URL": f"hive://recflow@127.0.0.1:{port}/default",
            "RECFLOW_DBT_TARGET": "spark",
        }
    )
    done = subprocess.run(
        [str(Path(sys.executable).with_name("recflow")), "sql", "select 1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"recflow: cannot open the Spark warehouse hive://recflow@127.0.0.1:{port}/default "
        f"(RECFLOW_WAREHOUSE_URL): Could not connect to any of [('127.0.0.1', {port})]"
    ]
