"""A benchmark run from a shell set up for the user's own pipeline leaves that pipeline's stores alone.

``bench.scale``'s warehouse measurement, for real (a generated day, then land, audit, dbt build,
check_marts and snapshot, each in its own process) at its smallest volume, with the caller's
landing zone, DuckDB file, artifact root and MLflow store pointing at folders of sentinel files,
and its server warehouse and registry at servers that are not there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scale
from recflow.core.config import Settings, declared_settings
from tests.unit.test_bench_report import caller_env
from tests.unit.test_store_ownership import checksums, producers_zone

pytestmark = pytest.mark.integration


def test_bench_scale_writes_only_into_its_own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in declared_settings():
        monkeypatch.delenv(setting.env.name, raising=False)
    env = caller_env(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    shared = tmp_path / "shared"
    producers_zone(shared / "landing")
    for store in (
        "warehouse/recflow.duckdb",
        "artifacts/snapshots/keep.txt",
        "mlflow/mlflow.db",
        "incidents.db",
    ):
        (shared / store).parent.mkdir(parents=True, exist_ok=True)
        (shared / store).write_bytes(f"the user's {store}".encode())
    before = checksums(shared)

    try:
        result = scale.warehouse_at(Settings.from_env(), 1_000)
    except RuntimeError as exc:  # a step failed: one that went to the caller's server warehouse, say
        result = {"failed": str(exc)}

    assert checksums(shared) == before
    assert "failed" not in result
    assert result["events"] > 0 and set(result["steps"]) == set(scale.STEPS)
