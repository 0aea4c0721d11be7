"""Whether a process recorded by its pid still runs: the local servers ``recflow up`` and ``recflow
spark up`` start are found again, and stopped, by the pids they noted."""

from __future__ import annotations

import os
from pathlib import Path


def is_running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(pid)
    return fields is None or fields[0] != "Z"  # a zombie (our own child, not yet reaped) is not running


def started_at(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``'s 22nd field), or
    ``None`` where ``/proc`` cannot say. With the pid it names one process: a note that outlived its
    process (a reboot, a ``kill -9``) is not taken for the process that got the same number later."""
    fields = _stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def _stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` from its 3rd field (the state) on, past the command name in parentheses
    (which may hold spaces); ``None`` where it cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def is_recorded_process(pid: int, started: str | None) -> bool:
    """Whether the process a note recorded (its pid, and when it started if the note says) still runs."""
    if not is_running(pid):
        return False
    now = started_at(pid)
    return started is None or now is None or now == started


def read_note(path: Path) -> tuple[int, str | None] | None:
    """The pid a note holds and when that process started (``None`` for a note that does not say)."""
    try:
        words = path.read_text().split()
        return int(words[0]), words[1] if len(words) > 1 else None
    except (OSError, ValueError, IndexError):
        return None


def note_of(pid: int) -> str:
    """The note recording process ``pid``: its pid and when it started, as :func:`read_note` reads it."""
    return f"{pid} {started_at(pid) or ''}".strip()


def other_noted_process(path: Path) -> int | None:
    """The pid the note at ``path`` records, if that process still runs and is not this one."""
    note = read_note(path)
    if note is not None and note[0] != os.getpid() and is_recorded_process(*note):
        return note[0]
    return None
