"""What the operating system refuses a command is said in one line: a read-only home, and a reader
that stops reading (``recflow sql … | head``), ended in Python's tracebacks."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from recflow import cli


def test_a_home_that_cannot_be_written_is_named_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("RECFLOW_HOME", str(home))

    def refused(self: Path, *args: object, **kwargs: object) -> None:  # chattr +i, a read-only mount
        raise PermissionError(errno.EPERM, "Operation not permitted", str(self))

    monkeypatch.setattr(Path, "mkdir", refused)
    assert cli.main(["generate", "--days", "1", "--end", "2026-01-01"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"recflow: Operation not permitted: {home}"), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_error_of_another_kind_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))

    def full(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "mkdir", full)
    with pytest.raises(OSError, match="No space left"):
        cli.main(["generate", "--days", "1", "--end", "2026-01-01"])


def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path: Path) -> None:
    import duckdb

    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    recflow = [sys.executable, "-c", "import sys; from recflow.cli import main; sys.exit(main())"]
    reading = subprocess.Popen(
        [*recflow, "sql", "select range as n from range(200000)", "--limit", "200000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            "PATH": "/usr/bin:/bin",
            "RECFLOW_HOME": str(tmp_path),
            "RECFLOW_WAREHOUSE_PATH": str(warehouse),
            "PYTHONPATH": ":".join(sys.path),
        },
    )
    assert reading.stdout is not None and reading.stderr is not None
    first = reading.stdout.readline()
    reading.stdout.close()  # as `head -1` does
    err = reading.stderr.read().decode()
    assert reading.wait(timeout=120) == 1
    assert first.strip() == b"n" or first.strip().startswith(b"n"), first
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_a_broken_pipe_or_a_refusal_that_is_not_about_a_file_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only stdout's reader going away is quiet, and only a path refused is said as one: a socket's broken
    pipe, or a process one may not signal (no file name), is not this command's output or a folder."""
    from recflow.cli import sql

    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path))
    for error in (
        BrokenPipeError(errno.EPIPE, "Broken pipe"),
        PermissionError(errno.EPERM, "Operation not permitted"),
    ):

        def fails(settings: object, args: object, error: OSError = error) -> int:
            raise error

        monkeypatch.setattr(sql, "cmd_sql", fails)
        with pytest.raises(type(error)):
            cli.main(["sql", "select 1"])
