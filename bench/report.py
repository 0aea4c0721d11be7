"""What every benchmark writes alongside its figures: the machine it ran on, and its section of
``docs/benchmarks.md`` (between its own markers, so each command rewrites only its section); and
how a benchmark measures a child process."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recflow.core.config import Settings
from recflow.core.ownership import private_home

DOCS_INTRO = """# Benchmarks

How recflow's model compares with standard baselines, and what it costs to train.
Every number here is produced by a command in this repository; the section below is
rewritten by that command (between its markers), so edit the text outside the markers only.

"""


@dataclass(frozen=True)
class ChildRun:
    code: int
    seconds: float
    peak_memory_mb: float
    """The child's own peak resident memory."""


def run_child(args: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> ChildRun:
    """Run ``args`` as a child process and wait for it: its exit code, wall seconds and peak resident
    memory, from ``wait4``: ``RUSAGE_CHILDREN`` would give the largest of every child waited for."""
    started = time.perf_counter()
    proc = subprocess.Popen(list(args), env=dict(env) if env is not None else None, cwd=cwd)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # an interrupted benchmark leaves no job running
        proc.kill()
        proc.wait()
        raise
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(proc.returncode, seconds, usage.ru_maxrss / 1024)


def bench_home(base: Settings, *parts: str) -> Settings:
    """Settings whose every store (landing zone, DuckDB warehouse, artifacts, MLflow, Airflow) lies
    under ``$RECFLOW_HOME/benchmarks/<parts>``, apart from the user's own pipeline: the caller's
    ``RECFLOW_LANDING_DIR``, ``RECFLOW_WAREHOUSE_URL``, ``RECFLOW_ARTIFACT_ROOT``, registry are ignored
    (``recflow.core.ownership.private_home``), in this process and in the children it starts."""
    return private_home(base, base.home.joinpath("benchmarks", *parts))


def machine() -> dict[str, Any]:
    """CPU model, usable cores, RAM and Python of this machine."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gib": ram_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_section(path: Path, section: str, name: str) -> None:
    """Put ``section`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` of ``path``
    (appended, markers included, when they are not there yet)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if not section.startswith(start) or not section.rstrip("\n").endswith(end):
        raise ValueError(f"a {name} section must begin with {start} and end with {end}")
    text = path.read_text() if path.exists() else DOCS_INTRO
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + section.rstrip("\n") + after
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
