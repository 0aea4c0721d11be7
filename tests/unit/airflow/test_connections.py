"""Tasks take the warehouse and AWS credentials from Airflow connections when those exist."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from recflow.airflow.connections import task_settings


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def test_the_warehouse_connection_is_read_only_for_the_postgres_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """dbt reads it only then (through task_settings, as every step): a DuckDB run never mixes in a server."""
    monkeypatch.setenv("AIRFLOW_CONN_RECFLOW_WAREHOUSE", "postgres://rec:p%40ss@db.internal:6543/wh")
    assert task_settings().warehouse_url is None


def test_without_connections_the_environment_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFLOW_WAREHOUSE_URL", "postgresql://postgres@127.0.0.1:5432/from_env")
    settings = task_settings()
    assert settings.warehouse_url == "postgresql://postgres@127.0.0.1:5432/from_env"
    assert boto3.DEFAULT_SESSION is None, "no AWS in use: no session is made"


def test_the_warehouse_connection_wins_and_aws_keys_come_from_aws_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECFLOW_WAREHOUSE_URL", "postgresql://postgres@127.0.0.1:5432/from_env")
    monkeypatch.setenv("AIRFLOW_CONN_RECFLOW_WAREHOUSE", "postgres://rec:p%40ss@db.internal:6543/wh")
    monkeypatch.setenv("RECFLOW_DBT_TARGET", "postgres")
    monkeypatch.setenv("RECFLOW_ARTIFACT_ROOT", "s3://bucket/recflow")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps({"conn_type": "aws", "login": "AKIAEXAMPLE", "password": "secret-key"}),
    )
    settings = task_settings()
    assert settings.warehouse_url == "postgresql://rec:p%40ss@db.internal:6543/wh"
    assert settings.dbt_env()["RECFLOW_WAREHOUSE_PASSWORD"] == "p@ss"
    credentials = boto3.DEFAULT_SESSION.get_credentials()
    assert (credentials.access_key, credentials.secret_key) == ("AKIAEXAMPLE", "secret-key")
    assert (
        boto3.client("s3", region_name=settings.aws_region)._request_signer._credentials.access_key
        == "AKIAEXAMPLE"
    )


def test_a_spark_connection_becomes_the_thrift_servers_hive_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """dbt's spark output reads a ``spark`` connection's parts; every other warehouse step opens
    the same Thrift server through its ``hive://`` URL (the ``default`` database when none is named)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_RECFLOW_WAREHOUSE",
        json.dumps({"conn_type": "spark", "host": "thrift.internal", "port": 10001, "login": "etl"}),
    )
    monkeypatch.setenv("RECFLOW_DBT_TARGET", "spark")
    settings = task_settings()
    assert settings.warehouse_url == "hive://etl@thrift.internal:10001/default"
    env = settings.dbt_env()
    assert (env["RECFLOW_WAREHOUSE_HOST"], env["RECFLOW_WAREHOUSE_PORT"]) == ("thrift.internal", "10001")


@pytest.mark.parametrize(
    ("target", "url"),
    [
        ("spark", "hive://recflow@127.0.0.1:10123/default"),
        ("postgres", "postgresql://rec:p%40ss@db.internal:6543/wh"),
    ],
)
def test_the_embedded_stack_gives_dbt_the_warehouse_of_its_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, target: str, url: str
) -> None:
    """`RECFLOW_WAREHOUSE_URL` and `RECFLOW_DBT_TARGET` alone (the README's Spark path) make the embedded
    Airflow's `recflow_warehouse` connection; read back through Airflow, it is the same warehouse."""
    from recflow.core.config import Settings
    from recflow.stack.runtime import airflow_env

    settings = Settings.from_env(
        {"RECFLOW_HOME": str(tmp_path), "RECFLOW_WAREHOUSE_URL": url, "RECFLOW_DBT_TARGET": target}
    )
    env = airflow_env(settings, {})
    monkeypatch.setenv("AIRFLOW_CONN_RECFLOW_WAREHOUSE", env["AIRFLOW_CONN_RECFLOW_WAREHOUSE"])
    monkeypatch.setenv("RECFLOW_DBT_TARGET", target)
    assert task_settings().warehouse_url == url
    given = airflow_env(settings, {"AIRFLOW_CONN_RECFLOW_WAREHOUSE": "postgresql://other@h/db"})
    assert given["AIRFLOW_CONN_RECFLOW_WAREHOUSE"] == "postgresql://other@h/db", (
        "the caller's connection wins"
    )
