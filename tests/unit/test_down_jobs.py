"""``recflow down`` stops Airflow, not a local training job (a job is not Airflow's process, as a SageMaker
job is not): it says which jobs run on, and how to re-attach or stop them. It said only "Airflow
stopped" while a 20-epoch job trained unattended."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recflow import cli
from recflow.core.config import Settings
from recflow.training.local import DESCRIPTION, RunnerPid


def _job(jobs: Path, name: str, status: str, pid: int) -> Path:
    folder = jobs / name
    folder.mkdir(parents=True)
    (folder / DESCRIPTION).write_text(
        json.dumps(
            {
                "TrainingJobName": name,
                "TrainingJobStatus": status,
                "CreationTime": "2026-01-01T00:00:00+00:00",
            }
        )
    )
    RunnerPid.of(pid).write(folder)
    return folder


def test_down_names_the_jobs_that_run_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    jobs = Settings.from_env().jobs_dir
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    try:
        _job(jobs, "recsys-train-running", "InProgress", runner.pid)
        died = _job(jobs, "recsys-train-died", "InProgress", ended.pid)
        _job(jobs, "recsys-train-done", "Completed", ended.pid)
        assert cli.main(["down"]) == 0
    finally:
        runner.kill()
        runner.wait()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "nothing to stop: no `recflow up` is running"
    assert out[1:] == [
        f"training job recsys-train-running still runs (runner pid {runner.pid}): the next `recflow up` "
        "re-attaches its `train` task to it",
        "to stop one instead: kill -TERM -PID with its runner pid "
        "(docs/runbooks/recsys_train_and_publish.md#job-stopped)",
    ]
    # the job whose runner died is recorded as failed on the way, as describing it always does
    assert json.loads((died / DESCRIPTION).read_text())["TrainingJobStatus"] == "Failed"
