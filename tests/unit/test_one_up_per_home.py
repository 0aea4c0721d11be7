"""One `recflow up` per home: a second is refused while the first runs, so `recflow down` stops the one
that runs. Before, the second overwrote `run/up.pid` (even when it then failed on a busy port), and
`recflow down` answered "nothing to stop" while the first kept its scheduler going.

The first `recflow up` is stood for by a `sleep` whose pid is written where `recflow up` writes its own;
Airflow itself is never started (`start_services` is replaced by a stand-in that records the call).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import recflow.cli.stack
from recflow import cli


class _Started(Exception):
    """What the stand-in for start_services raises: `recflow up` got past its checks."""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))

    def started(*args: object, **kwargs: object) -> None:
        raise _Started

    monkeypatch.setattr(recflow.cli.stack, "start_services", started)
    return tmp_path / "home"


@pytest.fixture
def first_up(home: Path) -> Iterator[subprocess.Popen[bytes]]:
    sleeper = subprocess.Popen(["sleep", "60"])
    (home / "run").mkdir(parents=True)
    (home / "run" / "up.pid").write_text(str(sleeper.pid))
    yield sleeper
    sleeper.kill()
    sleeper.wait()


def test_a_second_up_is_refused_and_down_stops_the_first(
    home: Path, first_up: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["up"]) == 2
    err = capsys.readouterr().err
    assert f"recflow up is already running for RECFLOW_HOME={home} (pid {first_up.pid}" in err, err
    assert "`recflow down` stops it" in err
    assert (home / "run" / "up.pid").read_text() == str(first_up.pid), "the note still names the first"

    assert cli.main(["down"]) == 0
    assert capsys.readouterr().out.strip() == "Airflow stopped"
    assert first_up.wait(timeout=10) == -signal.SIGTERM, "the first one was asked to stop"
    assert not (home / "run" / "up.pid").exists()


def test_a_note_of_an_up_that_has_ended_does_not_stop_a_new_one(home: Path) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    (home / "run").mkdir(parents=True)
    (home / "run" / "up.pid").write_text(str(ended.pid))
    with pytest.raises(_Started):
        cli.main(["up"])
    assert (home / "run" / "up.pid").read_text() != str(ended.pid)
