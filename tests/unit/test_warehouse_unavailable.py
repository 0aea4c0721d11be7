"""A server warehouse that cannot be opened says where its address came from. The driver's words
(``connection to server at "h", port 5432 failed``) name neither the Airflow connection that gives a task
its warehouse nor the setting that gives every other process one, so on-call did not know what to check."""

from __future__ import annotations

import socket

import pytest

from recflow.core.config import Settings
from recflow.core.errors import WarehouseUnavailable
from recflow.oncall.incidents import classify
from recflow.oncall.runbooks import anchor_for
from recflow.warehouse import connect


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _settings(tmp_path: object, url: str, **more: str) -> Settings:
    return Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_WAREHOUSE_URL": url, **more})


def test_a_postgresql_warehouse_down_names_its_address_the_connection_and_the_setting(
    tmp_path: object,
) -> None:
    import psycopg2

    port = _closed_port()
    settings = _settings(
        tmp_path, f"postgresql://etl:s3cret@127.0.0.1:{port}/lake", RECFLOW_WAREHOUSE_CONN_ID="lake_pg"
    )
    with pytest.raises(WarehouseUnavailable) as raised, connect(settings):
        pass
    said = str(raised.value)
    assert said.startswith(f"cannot open the warehouse postgresql://etl:***@127.0.0.1:{port}/lake: "), said
    assert "Connection refused" in said and "s3cret" not in said
    assert "the Airflow connection lake_pg" in said and "RECFLOW_WAREHOUSE_URL" in said
    assert isinstance(raised.value.__cause__, psycopg2.OperationalError)
    # infrastructure, and another try may find the server back: the snapshot's own section is about data
    assert raised.value.retryable
    assert anchor_for("snapshot", raised.value) == "infrastructure"
    assert anchor_for("transform.dbt_build", raised.value) == "infrastructure"
    assert classify(raised.value) == "infrastructure"


def test_a_database_that_does_not_exist_is_the_address_to_correct(tmp_path: object) -> None:
    """PostgreSQL runs on this machine (and CI's): it answers, refusing the database."""
    settings = _settings(tmp_path, "postgresql://postgres@127.0.0.1:5432/recflow_no_such_database")
    try:
        with connect(settings):
            pass
    except WarehouseUnavailable as exc:
        said = str(exc)
    else:
        pytest.fail("a database that does not exist was opened")
    if "does not exist" not in said:
        pytest.skip(f"no PostgreSQL answering on 127.0.0.1:5432 here: {said}")
    assert 'database "recflow_no_such_database" does not exist' in said


def test_a_spark_thrift_server_down_is_the_same_error(tmp_path: object) -> None:
    pytest.importorskip("pyhive", reason="the Spark engine's driver (make spark-venv)")
    port = _closed_port()
    settings = _settings(tmp_path, f"hive://recflow@127.0.0.1:{port}/default")
    with (
        pytest.raises(WarehouseUnavailable, match=rf"cannot open the warehouse hive://.*127\.0\.0\.1:{port}"),
        connect(settings),
    ):
        pass
