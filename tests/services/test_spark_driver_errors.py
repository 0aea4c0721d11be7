"""What the Spark engine's driver (PyHive over Thrift, installed by ``make spark-venv``) raises, as the
tasks report it; no cluster is needed: the errors are the driver's own types."""

from __future__ import annotations

import pytest
from thrift.transport.TTransport import TTransportException

from recflow.core.errors import WarehouseUnavailable
from recflow.oncall.runbooks import anchor_for
from recflow.warehouse.spark_errors import spark_errors


def test_a_connection_lost_mid_statement_is_the_warehouse_unavailable() -> None:
    """The first try of `audit` after the Thrift server was killed ended with Thrift's bare
    `TTransportException: TSocket read 0 bytes`: no statement, no server, nothing to do."""
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
