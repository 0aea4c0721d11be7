"""Shared fixtures: every test gets its own RECFLOW_HOME under tmp_path.

``make test`` runs the suite in two pytest-xdist workers, a file to a worker (``--dist loadfile``:
a module's Airflow, started once by its fixture, serves all its tests). Each worker's embedded
Airflow gets its own ports, so two end-to-end modules can run side by side.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recflow.core.config import Settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

WORKER_PORT_BASE = 18080
"""Worker ``gwN``'s Airflow listens on ``WORKER_PORT_BASE + 10 * N`` and the three ports after it
(RECFLOW_AIRFLOW_API_PORT); a test that needs other ports sets the variable itself."""


def pytest_configure(config: pytest.Config) -> None:
    env = os.environ  # noqa: TID251 - the test process's own environment, which every Settings.from_env() reads
    worker = env.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and "RECFLOW_AIRFLOW_API_PORT" not in env:
        env["RECFLOW_AIRFLOW_API_PORT"] = str(WORKER_PORT_BASE + 10 * int(worker[2:]))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"RECFLOW_HOME": str(tmp_path / "home")})
