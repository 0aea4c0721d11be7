"""Fixtures of the unit tests that more than one module uses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from recflow.cli import passthrough
from recflow.core.config import Settings


@pytest.fixture
def airflow_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The command lines ``recflow airflow …`` starts Airflow with (in place of the ``airflow`` process it
    would run), under a new home in ``tmp_path``; a notice is printed where the real one prints it."""
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    runs: list[list[str]] = []

    def run_airflow(
        settings: Settings, argv: list[str], check: bool = True, notice: str | None = None
    ) -> int:
        runs.append(argv)
        if notice:  # where the real one says it, once the home is found set up
            print(notice, file=sys.stderr)
        return 0

    monkeypatch.setattr(passthrough, "run_airflow", run_airflow)
    return runs
