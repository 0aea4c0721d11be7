"""Training jobs under faults, made to happen for real: signals to real processes, real job runs.

Each test drives the local backend (the runner and the entrypoint are real
subprocesses) and breaks it the way production breaks it: the kernel kills the
entrypoint, the machine dies mid-job, the job overruns its maximum runtime, a pid
is recycled, a launch is killed half-way, a person stops the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from recflow.core.artifacts import join, store_for
from recflow.core.config import Settings
from recflow.core.errors import TrainingJobFailed, TrainingJobNotFound
from recflow.snapshot import Snapshot, channel_prefix, take_snapshot
from recflow.training.jobs import job_failed, run_training_job
from recflow.training.local import LocalTrainingBackend, RunnerPid, process_start_time
from recflow.training.spec import TrainingJobSpec
from tests.integration.conftest import home_with_warehouse_of

pytestmark = pytest.mark.integration

T = TypeVar("T")
LONG = {"epochs": "200", "batch_size": "16"}  # the most epochs, the smallest batches
"""A job that would run for minutes: every test ends it long before."""
STARTUP = 180.0
"""Seconds a job may take to reach its first epoch (TensorFlow's import, on a loaded machine)."""


@pytest.fixture
def home(warehouse: Settings, tmp_path: Path) -> tuple[Settings, Snapshot]:
    settings = home_with_warehouse_of(warehouse, tmp_path)
    return settings, take_snapshot(settings)


@pytest.fixture
def pool(home: tuple[Settings, Snapshot]) -> Iterator[ThreadPoolExecutor]:
    """A thread to follow a job in; a test that fails early stops its jobs, so the thread ends."""
    backend = LocalTrainingBackend(home[0])
    with ThreadPoolExecutor(max_workers=1) as executor:
        try:
            yield executor
        finally:
            for job_dir in home[0].jobs_dir.glob("[!.]*"):
                with contextlib.suppress(TrainingJobNotFound):
                    backend.stop_training_job(job_dir.name)


def _spec(
    settings: Settings, snap: Snapshot, name: str, hps: dict[str, str], max_runtime: int = 3600
) -> TrainingJobSpec:
    return TrainingJobSpec(
        name=name,
        image="recflow-ml:local",
        role_arn="",
        hyperparameters=hps,
        channels={"train": channel_prefix(snap.train_uri), "holdout": channel_prefix(snap.holdout_uri)},
        output_uri=join(settings.artifacts_uri, "models"),
        max_runtime_seconds=max_runtime,
        checkpoint_root=join(settings.artifacts_uri, "checkpoints"),
    )


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float = STARTUP) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _log(backend: LocalTrainingBackend, name: str) -> str:
    path = backend.job_dir(name) / "logs.txt"
    return path.read_text(errors="replace") if path.exists() else ""


def _runner(backend: LocalTrainingBackend, name: str) -> RunnerPid | None:
    try:
        return RunnerPid.read(backend.job_dir(name))
    except (OSError, ValueError):
        return None


def _entrypoint_pid(runner_pid: int) -> int | None:
    """The runner's child running ``recflow_ml.train``, found in /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == runner_pid and b"recflow_ml.train" in cmdline:
            return int(stat.parent.name)
    return None


def _training(backend: LocalTrainingBackend, name: str) -> bool:
    """The job has trained an epoch and checkpointed it."""
    return (backend.layout(name).checkpoint_dir / "checkpoint").exists()


def _checkpoints(settings: Settings, uri: str) -> list[str]:
    return [u.rsplit("/", 1)[1] for u in store_for(settings, uri).list(uri)]


def test_sigkill_of_the_entrypoint_is_reported_as_killed_with_its_peak_memory(
    home: tuple[Settings, Snapshot], pool: ThreadPoolExecutor
) -> None:
    settings, snap = home
    backend = LocalTrainingBackend(settings)
    spec = _spec(settings, snap, "job-oom", LONG)
    outcome: Future[dict[str, Any]] = pool.submit(
        run_training_job, backend, spec, poll_seconds=0.2, echo=print
    )
    _wait_for("the first checkpoint", lambda: _training(backend, spec.name))
    runner = _runner(backend, spec.name)
    assert runner is not None
    entrypoint = _wait_for("the entrypoint's pid", lambda: _entrypoint_pid(runner.pid), timeout=10)
    os.kill(entrypoint, signal.SIGKILL)  # what the kernel's out-of-memory killer sends

    with pytest.raises(TrainingJobFailed) as info:
        outcome.result(timeout=60)
    failed = info.value
    assert (failed.kind, failed.status, failed.runbook) == ("killed", "Failed", "job-killed")
    assert "killed by signal SIGKILL (9)" in failed.reason
    peak = re.search(r"at peak memory (\d+) MB", failed.reason)
    assert peak and int(peak.group(1)) > 100, failed.reason
    assert "out-of-memory killer" in failed.reason
    description = backend.describe_training_job(spec.name)
    assert description["LocalExitSignal"] == "SIGKILL"
    assert "MaxRuntimeExceeded" not in json.dumps(description), "a SIGKILL is not a timeout"
    assert any(n.endswith(".index") for n in _checkpoints(settings, spec.checkpoint_uri)), (
        "the checkpoints are uploaded after the kill, for the next attempt"
    )


def test_a_retry_resumes_from_the_checkpoints_a_dead_attempt_uploaded(
    home: tuple[Settings, Snapshot], pool: ThreadPoolExecutor
) -> None:
    settings, snap = home
    backend = LocalTrainingBackend(settings)
    epochs = 12
    spec = _spec(settings, snap, "job-resume", {"epochs": str(epochs), "batch_size": "16"})
    first: Future[dict[str, Any]] = pool.submit(run_training_job, backend, spec, poll_seconds=0.2, echo=print)
    _wait_for("the first checkpoint", lambda: _training(backend, spec.name))
    runner = _runner(backend, spec.name)
    assert runner is not None
    entrypoint = _wait_for("the entrypoint's pid", lambda: _entrypoint_pid(runner.pid), timeout=10)
    os.kill(entrypoint, signal.SIGSTOP)  # hold training where it is until the runner's next sync
    _wait_for(  # TensorFlow's ``checkpoint`` file goes up last in a pass, naming what went up before it
        "a checkpoint uploaded while the job runs",
        lambda: "checkpoint" in _checkpoints(settings, spec.checkpoint_uri),
        timeout=30,
    )
    os.killpg(runner.pid, signal.SIGKILL)  # the machine died: runner and entrypoint at once

    with pytest.raises(TrainingJobFailed) as info:
        first.result(timeout=60)
    assert info.value.kind == "internal", info.value
    assert "without reporting a result" in info.value.reason

    lines: list[str] = []
    description = run_training_job(backend, spec, poll_seconds=0.2, echo=lines.append)
    assert description["TrainingJobName"] == "job-resume-r2"
    assert description["TrainingJobStatus"] == "Completed"
    retry = json.loads((backend.job_dir("job-resume-r2") / "request.json").read_text())
    assert retry["CheckpointConfig"]["S3Uri"] == spec.checkpoint_uri, "attempts share their checkpoints"
    log = "\n".join(lines)
    resumed = re.search(r"resumed from checkpoint at epoch (\d+)", log)
    assert resumed, log[-3000:]
    assert 1 <= int(resumed.group(1)) < epochs
    assert f"epoch {int(resumed.group(1))}/{epochs} " not in log, "a restored epoch is not trained again"
    metadata = json.loads((backend.layout("job-resume-r2").model_dir / "metadata.json").read_text())
    assert [h["epoch"] for h in metadata["history"]] == list(range(1, epochs + 1))


def test_max_runtime_stops_the_job_as_sagemaker_does(
    home: tuple[Settings, Snapshot], pool: ThreadPoolExecutor
) -> None:
    settings, snap = home
    backend = LocalTrainingBackend(settings)
    spec = _spec(settings, snap, "job-slow", LONG, max_runtime=3)
    with pytest.raises(TrainingJobFailed) as info:
        run_training_job(backend, spec, poll_seconds=0.2, echo=print)
    assert (info.value.kind, info.value.status) == ("max_runtime", "Stopped")
    description = backend.describe_training_job(spec.name)
    assert description["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert description["FailureReason"].startswith("MaxRuntimeExceeded: ")
    assert "MaxRuntimeInSeconds reached: SIGTERM to the entrypoint" in _log(backend, spec.name)


def test_a_recycled_runner_pid_is_not_followed(home: tuple[Settings, Snapshot]) -> None:
    settings, snap = home
    backend = LocalTrainingBackend(settings)
    spec = _spec(settings, snap, "job-orphan", LONG)
    backend.create_training_job(spec.request())
    runner = _wait_for("runner.pid", lambda: _runner(backend, spec.name), timeout=10)
    os.killpg(runner.pid, signal.SIGKILL)
    _wait_for("the runner's death", lambda: process_start_time(runner.pid) is None, timeout=10)
    # the kernel hands the runner's pid to an unrelated process: it is alive, but it is not the runner
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        started = process_start_time(stranger.pid)
        assert started is not None
        RunnerPid(stranger.pid, started - 1).write(backend.job_dir(spec.name))

        description = backend.describe_training_job(spec.name)
        assert description["TrainingJobStatus"] == "Failed"
        assert f"pid {stranger.pid} now belongs to another process" in description["FailureReason"]
        assert job_failed(description).kind == "internal"
        backend.stop_training_job(spec.name)
        assert stranger.poll() is None, "the unrelated process is never signalled"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_stopping_job_whose_runner_died_ends_stopped(home: tuple[Settings, Snapshot]) -> None:
    settings, snap = home
    backend = LocalTrainingBackend(settings)
    spec = _spec(settings, snap, "job-stop-dead", LONG)
    backend.create_training_job(spec.request())
    runner = _wait_for("runner.pid", lambda: _runner(backend, spec.name), timeout=10)
    backend.stop_training_job(spec.name)
    os.killpg(runner.pid, signal.SIGKILL)  # dies before it can record the stop
    _wait_for("the runner's death", lambda: process_start_time(runner.pid) is None, timeout=10)
    assert json.loads((backend.job_dir(spec.name) / "description.json").read_text())["TrainingJobStatus"] == (
        "Stopping"
    )

    description = backend.describe_training_job(spec.name)
    assert (description["TrainingJobStatus"], description["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert job_failed(description).kind == "stopped"


_KILLED_WHILE_CREATING = """
import json, os, signal, sys
from recflow.core.config import Settings
from recflow.training import local

write = local.write_json
def write_then_die(path, payload):
    if path.name == "description.json":  # between the directory and its description
        os.kill(os.getpid(), signal.SIGKILL)
    write(path, payload)
local.write_json = write_then_die
settings = Settings.from_env({"RECFLOW_HOME": sys.argv[1]})
local.LocalTrainingBackend(settings).create_training_job(json.loads(sys.argv[2]))
"""


def test_a_launch_killed_half_way_does_not_block_the_retry(
    home: tuple[Settings, Snapshot], caplog: pytest.LogCaptureFixture
) -> None:
    settings, snap = home
    backend = LocalTrainingBackend(settings)
    spec = _spec(settings, snap, "job-half", {"epochs": "1"})
    launcher = subprocess.run(
        [sys.executable, "-c", _KILLED_WHILE_CREATING, str(settings.home), json.dumps(spec.request())],
        check=False,
        capture_output=True,
        text=True,
    )
    assert launcher.returncode == -signal.SIGKILL, launcher.stderr
    assert not backend.job_dir(spec.name).exists(), "a half-built job is never visible"
    assert list(settings.jobs_dir.glob(".job-half.creating-*")), "what the killed launch left"

    description = run_training_job(backend, spec, poll_seconds=0.2, echo=print)
    assert (description["TrainingJobName"], description["TrainingJobStatus"]) == ("job-half", "Completed")
    assert not list(settings.jobs_dir.glob(".job-half.creating-*"))

    # an older version made the directory first and could be killed before its description.json
    legacy = _spec(settings, snap, "job-legacy", LONG)
    backend.job_dir(legacy.name).mkdir()
    (backend.job_dir(legacy.name) / "request.json").write_text(json.dumps(legacy.request()))
    with caplog.at_level("WARNING", logger="recflow.training.local"):
        backend.create_training_job(legacy.request())
    assert "a launch was killed half-way" in caplog.text
    assert backend.describe_training_job(legacy.name)["TrainingJobStatus"] == "InProgress"
    backend.stop_training_job(legacy.name)
    _wait_for(
        "the stop",
        lambda: backend.describe_training_job(legacy.name)["TrainingJobStatus"] == "Stopped",
        timeout=60,
    )


async def _first_event(trigger: Any) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("the trigger ended without an event")


def test_the_train_task_waits_deferred_and_a_kill_while_deferred_stops_the_job(
    home: tuple[Settings, Snapshot], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task launches and defers (no worker held); a person marking it failed stops the job."""
    from airflow.sdk.exceptions import TaskDeferred

    from recflow.airflow.training import TrainingJobOperator, TrainingJobTrigger

    settings, snap = home
    monkeypatch.setenv("RECFLOW_HOME", str(settings.home))
    monkeypatch.setenv("RECFLOW_WAREHOUSE_PATH", str(settings.duckdb_path))
    assert Settings.from_env().jobs_dir == settings.jobs_dir
    backend = LocalTrainingBackend(settings)
    operator = TrainingJobOperator(task_id="train", snapshot=snap.to_xcom(), poll_seconds=0.5)
    params = {"epochs": 200, "batch_size": 16, "dry_run": False, "model_name": None}
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"params": params})
    trigger = deferred.value.trigger
    name = operator.job_name
    assert isinstance(trigger, TrainingJobTrigger) and trigger.job_name == name
    assert deferred.value.method_name == "execute_complete"
    _wait_for("the first checkpoint", lambda: _training(backend, name))

    asyncio.run(trigger.on_kill())  # what the triggerer calls when a person acts on the deferred task

    event = asyncio.run(asyncio.wait_for(_first_event(trigger), timeout=60))
    assert event.payload == {"job_name": name, "status": "Stopped"}
    assert deferred.value.kwargs is not None
    with pytest.raises(TrainingJobFailed) as info:
        TrainingJobOperator(task_id="train", snapshot=snap.to_xcom()).execute_complete(
            {}, event.payload, **deferred.value.kwargs
        )
    assert (info.value.kind, info.value.status, info.value.name) == ("stopped", "Stopped", name)
    description = backend.describe_training_job(name)
    assert "job stopped" in _log(backend, name)
    assert any(
        n.endswith(".index") for n in _checkpoints(settings, description["CheckpointConfig"]["S3Uri"])
    ), "a stopped job leaves its checkpoints for the next attempt"
