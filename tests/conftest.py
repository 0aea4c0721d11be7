"""Shared fixtures: every test gets its own RECFLOW_HOME under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from recflow.core.config import Settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"RECFLOW_HOME": str(tmp_path / "home")})
