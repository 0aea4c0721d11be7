"""DuckDB files for tests: a home's warehouse path, and another process holding a file as a writer.

A DuckDB lock is per process: a test that needs the file held (on-call's ``recflow sql`` while a task
opens it, or a task while a command reads it) starts a process that opens it for writing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from recflow.core.config import Settings

HOLD = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.read()"
"""A process that opens the file for writing (DuckDB's lock) until its stdin closes."""


def home_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The DuckDB path of a new ``RECFLOW_HOME`` under ``tmp_path``, set for the test, its folder made."""
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    path = Settings.from_env().duckdb_path
    path.parent.mkdir(parents=True)
    return path


@contextmanager
def holding(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds ``path`` open for writing until the block ends or its stdin is closed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        assert process.stdout.readline().strip() == "held"
        yield process
    finally:
        if not process.stdin.closed:
            process.stdin.close()
        process.wait(timeout=60)
