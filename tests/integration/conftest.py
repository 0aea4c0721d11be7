"""A small warehouse built by the real pipeline steps: generate → land → dbt build."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from recflow.core.config import Settings, subprocess_env
from recflow.ingest.days import stage_and_audit
from recflow.producers.generate import GeneratorConfig, generate

TINY = GeneratorConfig(start=date(2026, 1, 1), days=3, users=60, pins=200, topics=6, seed=11)


def build_marts(settings: Settings, *, full_refresh: bool = False) -> None:
    """``dbt build`` in a subprocess, as a worker runs it (dbt-duckdb keeps its connection open in-process);
    ``full_refresh`` rebuilds the incremental models from all history."""
    project = str(settings.dbt_project_dir)
    dbt = str(Path(sys.executable).with_name("dbt"))
    result = subprocess.run(
        [
            dbt,
            "build",
            "--project-dir",
            project,
            "--profiles-dir",
            project,
            "--quiet",
            "--target-path",
            str(settings.home / "dbt-target"),
            "--log-path",
            str(settings.home / "dbt-logs"),
            *(["--full-refresh"] if full_refresh else []),
        ],
        env=subprocess_env(settings.dbt_env()),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def tiny_warehouse(home: Path) -> Settings:
    """A home whose warehouse holds ``TINY``'s days, landed, audited and built by dbt."""
    settings = Settings.from_env({"RECFLOW_HOME": str(home)})
    generate(settings.landing_dir, TINY)
    stage_and_audit(settings, [TINY.start + timedelta(days=i) for i in range(TINY.days)], run_id="fixture")
    build_marts(settings)
    return settings


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return tiny_warehouse(tmp_path_factory.mktemp("warehouse"))


def snapshot_train_channel(tmp: Path) -> Path:
    """``tmp/train``: a copy of the train channel of a snapshot of a ``tiny_warehouse`` (the
    pipeline's own steps: generate, land, audit, dbt, snapshot), for tests that rewrite it."""
    import shutil

    from recflow.snapshot import take_snapshot

    snapshot = take_snapshot(home_with_warehouse_of(tiny_warehouse(tmp / "warehouse"), tmp))
    channel = tmp / "train"
    shutil.copytree(Path(snapshot.train_uri.removeprefix("file://")).parent, channel)
    return channel


def home_with_warehouse_of(source: Settings, tmp_path: Path) -> Settings:
    """A fresh RECFLOW_HOME reading the session's warehouse (artifacts, jobs and registry are private)."""
    return Settings.from_env(
        {"RECFLOW_HOME": str(tmp_path / "home"), "RECFLOW_WAREHOUSE_PATH": str(source.duckdb_path)}
    )
