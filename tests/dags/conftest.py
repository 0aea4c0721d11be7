"""Load the DAG folder once, with the project's Airflow environment, in a throwaway AIRFLOW_HOME."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recflow.core.config import PROJECT_ROOT, Settings
from recflow.stack.runtime import airflow_env

DAG_FILES = sorted((PROJECT_ROOT / "dags").glob("*.py"))


@pytest.fixture(scope="module")
def airflow_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path_factory.mktemp("home"))})
    if not settings.dbt_manifest_path.exists():
        from recflow.stack.demo import compile_dbt_manifest

        compile_dbt_manifest(settings)
    env = airflow_env(settings, {})
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            if key.startswith(("AIRFLOW", "RECFLOW", "DBT")):
                mp.setenv(key, value)
        yield settings


@pytest.fixture(scope="module")
def dagbag(airflow_environment: Settings) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    bag.parse_seconds = time.perf_counter() - started  # type: ignore[attr-defined]
    return bag


def file_id(path: Path) -> str:
    return os.path.relpath(path, PROJECT_ROOT)
