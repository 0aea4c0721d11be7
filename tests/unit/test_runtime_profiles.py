"""The production profile's Airflow runs on CeleryExecutor and a shared database, never on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from recflow.core.config import Settings
from recflow.core.errors import ConfigError
from recflow.stack.runtime import airflow_env
from tests.unit.test_config import PRODUCTION


def test_embedded_airflow_is_sqlite_and_local_executor(tmp_path: Path) -> None:
    env = airflow_env(Settings.from_env({"RECFLOW_HOME": str(tmp_path)}), {})
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")


def test_production_airflow_needs_a_database_and_a_broker(tmp_path: Path) -> None:
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path), **PRODUCTION})
    with pytest.raises(ConfigError, match="AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, AIRFLOW__CELERY__BROKER_URL"):
        airflow_env(settings, {})
    env = airflow_env(
        settings,
        {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow@db/airflow",
            "AIRFLOW__CELERY__BROKER_URL": "redis://redis:6379/0",
        },
    )
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://airflow@db/airflow"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert env["RECFLOW_PROFILE"] == "production"
