"""A benchmark's home holds every store it writes, whatever the caller's settings point at."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.report import bench_home
from recflow.core.config import Settings
from recflow.stack.benchmark import benchmark_settings


def caller_env(tmp_path: Path) -> dict[str, str]:
    """A shell set up for the user's own pipeline: its landing zone, warehouses, artifacts, registry."""
    shared = tmp_path / "shared"
    return {
        "RECFLOW_HOME": str(tmp_path / "home"),
        "RECFLOW_LANDING_DIR": str(shared / "landing"),
        "RECFLOW_WAREHOUSE_PATH": str(shared / "warehouse" / "recflow.duckdb"),
        "RECFLOW_WAREHOUSE_URL": "postgresql://recflow:secret@127.0.0.1:9/warehouse",
        "RECFLOW_DBT_TARGET": "postgres",
        "RECFLOW_ARTIFACT_ROOT": (shared / "artifacts").as_uri(),
        "RECFLOW_MLFLOW_TRACKING_URI": f"sqlite:///{shared / 'mlflow' / 'mlflow.db'}",
        "RECFLOW_REGISTRY_BACKEND": "sagemaker",
        "RECFLOW_INCIDENTS_URL": f"sqlite:///{shared / 'incidents.db'}",
    }


def stores_of(settings: Settings) -> dict[str, Path]:
    return {
        "landing": settings.landing_dir,
        "warehouse": settings.duckdb_path,
        "artifacts": Path(settings.artifacts_uri.removeprefix("file://")),
        "mlflow": Path(settings.mlflow_uri.removeprefix("sqlite:///")),
        "mlflow artifacts": Path(settings.mlflow_artifact_root.removeprefix("file://")),
        "airflow": settings.airflow_home,
    }


@pytest.mark.parametrize("make", [lambda s: bench_home(s, "overhead", "bare"), benchmark_settings])
def test_every_store_of_a_benchmark_lies_in_its_own_home(
    tmp_path: Path, make: Callable[[Settings], Settings]
) -> None:
    env = caller_env(tmp_path)
    own = make(Settings.from_env(env))
    assert own.home.is_relative_to(tmp_path / "home" / "benchmarks")
    outside = {k: p for k, p in stores_of(own).items() if not p.is_relative_to(own.home)}
    assert outside == {}
    assert (own.warehouse_url, own.incidents_url, own.registry_backend, own.dbt_target) == (
        None,
        None,
        "mlflow",
        "duckdb",
    )
    # a child process (Airflow, a step of bench.scale) inherits the caller's shell and gets the
    # benchmark's settings on top: it must rebuild exactly the benchmark's
    assert Settings.from_env({**env, **own.child_env()}) == own
