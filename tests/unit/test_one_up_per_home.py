"""One `recflow up` per home: a second is refused while the first runs, so `recflow down` stops the one
that runs. Before, the second overwrote `run/up.pid` (even when it then failed on a busy port), and
`recflow down` answered "nothing to stop" while the first kept its scheduler going.

The first `recflow up` is stood for by a `sleep` whose pid is written where `recflow up` writes its own;
Airflow itself is never started (`start_services` is replaced by a stand-in that records the call).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import recflow.cli.stack
from recflow import cli


class _Started(Exception):
    """What the stand-in for start_services raises: `recflow up` got past its checks. ``note``: what
    run/up.pid held then."""

    note = ""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))

    def started(*args: object, **kwargs: object) -> None:
        failed = _Started()
        failed.note = (tmp_path / "home" / "run" / "up.pid").read_text()
        raise failed

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
    with pytest.raises(_Started) as started:
        cli.main(["up"])
    assert started.value.note.split()[0] == str(os.getpid()), "this up's own note while it starts"
    assert not (home / "run" / "up.pid").exists(), "a start that failed leaves no note behind"


def test_a_note_whose_pid_now_names_a_later_process_is_stale(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A note that outlived its process (a reboot, kill -9) and whose number a later process got: its
    start time differs from the note's, so neither up is refused nor down signals that process."""
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (home / "run").mkdir(parents=True)
        (home / "run" / "up.pid").write_text(f"{stranger.pid} 1")  # started one tick after boot: not it
        assert cli.main(["down"]) == 0
        assert "nothing to stop" in capsys.readouterr().out
        assert stranger.poll() is None, "down left the process that got the number alone"
        with pytest.raises(_Started):
            cli.main(["up"])
    finally:
        stranger.kill()
        stranger.wait()


def test_two_ups_started_at_once_check_and_note_one_at_a_time(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each up read the note, found none running, then wrote its own: two started in the same instant
    both passed the check. While another up holds the note's lock (here the test, which writes a note
    naming a running process before it lets go, as the first up would), a second waits for the lock
    and then reads that note."""
    (home / "run").mkdir(parents=True)
    outcome: list[object] = []
    asked = threading.Event()
    real_flock = fcntl.flock

    def flock(fd: Any, operation: int) -> None:
        asked.set()  # the second up has come to the lock (before it reads the note)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)  # the module services.py calls it through

    def second_up() -> None:
        try:
            outcome.append(cli.main(["up"]))
        except _Started as started:
            outcome.append(started)

    first = subprocess.Popen(["sleep", "60"])
    try:
        with (home / "run" / "up.lock").open("a") as lock:
            real_flock(lock, fcntl.LOCK_EX)
            racer = threading.Thread(target=second_up)
            racer.start()
            assert asked.wait(10), "the second up never asked for the lock"
            time.sleep(0.2)
            assert not outcome, "the second up went past the check while the first held the lock"
            (home / "run" / "up.pid").write_text(str(first.pid))
        racer.join(timeout=10)
        assert outcome == [2], outcome
        assert (
            f"recflow up is already running for RECFLOW_HOME={home} (pid {first.pid}"
            in capsys.readouterr().err
        )
        assert (home / "run" / "up.pid").read_text() == str(first.pid)
    finally:
        first.kill()
        first.wait()
