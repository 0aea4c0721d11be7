"""The training-job contract, through the local backend: the same entrypoint SageMaker would run."""

from __future__ import annotations

import asyncio
import hashlib
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from recflow.core.artifacts import join
from recflow.core.config import Settings
from recflow.core.errors import TrainingJobError, TrainingJobFailed
from recflow.snapshot import Snapshot, channel_prefix, take_snapshot
from recflow.training.jobs import run_training_job
from recflow.training.local import LocalTrainingBackend
from recflow.training.spec import TrainingJobSpec
from recflow_ml.layout import HYPERPARAMETERS_FILE
from tests.integration.conftest import home_with_warehouse_of

pytestmark = pytest.mark.integration

STARTUP = 180.0
"""Seconds a short job may take, TensorFlow's import included, on a loaded machine."""


def _spec(settings: Settings, snap: Snapshot, name: str, **hps: str) -> TrainingJobSpec:
    return TrainingJobSpec(
        name=name,
        image="recflow-ml:local",
        role_arn="",
        hyperparameters={"epochs": "2", **hps},
        channels={"train": channel_prefix(snap.train_uri), "holdout": channel_prefix(snap.holdout_uri)},
        output_uri=join(settings.artifacts_uri, "models"),
    )


def test_success_writes_model_tar_gz_and_a_retry_reuses_the_job(warehouse: Settings, tmp_path: Path) -> None:
    settings = home_with_warehouse_of(warehouse, tmp_path)
    snap = take_snapshot(settings)
    backend = LocalTrainingBackend(settings)
    lines: list[str] = []
    description = run_training_job(
        backend, _spec(settings, snap, "job-ok"), poll_seconds=0.5, echo=lines.append
    )
    assert description["TrainingJobStatus"] == "Completed"
    model_uri = description["ModelArtifacts"]["S3ModelArtifacts"]
    assert model_uri == join(settings.artifacts_uri, "models", "job-ok", "output", "model.tar.gz")
    with tarfile.open(model_uri.removeprefix("file://")) as tar:
        names = tar.getnames()
    assert "saved_model.pb" in names and "metadata.json" in names
    assert any("epoch 2/2" in line for line in lines), "the job's log must be streamed"
    layout = backend.layout("job-ok")
    assert (layout.config_dir / HYPERPARAMETERS_FILE).exists()
    assert (layout.channel_dir("train") / "interactions.parquet").exists()

    again: list[str] = []
    second = run_training_job(backend, _spec(settings, snap, "job-ok"), poll_seconds=0.5, echo=again.append)
    assert second["ModelArtifacts"] == description["ModelArtifacts"]
    assert sorted(p.name for p in settings.jobs_dir.iterdir() if not p.name.startswith(".")) == ["job-ok"], (
        "a retry must not launch a second job"
    )


def test_a_job_runs_the_code_it_was_created_with_not_an_edit_made_while_it_runs(
    warehouse: Settings, tmp_path: Path
) -> None:
    settings = home_with_warehouse_of(warehouse, tmp_path)
    snap = take_snapshot(settings)
    package = tmp_path / "src" / "recflow_ml"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(
        "import os, pathlib\n"
        "model = pathlib.Path(os.environ['SM_MODEL_DIR'])\n"
        "model.mkdir(parents=True, exist_ok=True)\n"
        "(model / 'ran.txt').write_text(__file__)\n"
    )
    backend = LocalTrainingBackend(settings, package=package)
    spec = _spec(settings, snap, "job-code")
    backend.create_training_job(spec.request())
    (package / "train.py").write_text("raise SystemExit('edited after the job was created')\n")

    description = run_training_job(backend, spec, poll_seconds=0.5, echo=print)  # re-attaches

    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    with tarfile.open(description["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("file://")) as tar:
        member = tar.extractfile("ran.txt")
        assert member is not None
        ran = Path(member.read().decode())
    assert ran.parent.parent == backend.job_dir("job-code") / "code", f"the job ran {ran}"
    assert ran.read_text().startswith("import os"), "the job's copy is the code as it was at creation"


def test_a_job_whose_code_changed_since_it_was_named_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path / "home")})
    package = tmp_path / "src" / "recflow_ml"
    package.mkdir(parents=True)
    (package / "train.py").write_text("print('as named')\n")
    named = hashlib.sha256(b"train.py" + b"print('as named')\n").hexdigest()[:12]
    backend = LocalTrainingBackend(settings, package=package)
    spec = TrainingJobSpec(
        name="job-named",
        image="recflow-ml:local",
        role_arn="",
        hyperparameters={},
        channels={"train": "file:///nowhere/train"},
        output_uri="file:///nowhere/models",
    )
    (package / "train.py").write_text("print('deployed since')\n")
    with pytest.raises(TrainingJobError, match=f"names code version {named}, but the training code copied"):
        backend.create_training_job(replace(spec, tags={"code_version": named}).request())
    assert not backend.root.exists() or not any(backend.root.glob("*job-named*")), "nothing is left behind"

    (package / "train.py").write_text("print('as named')\n")  # the code the job was named for
    backend.create_training_job(replace(spec, name="job-as-named", tags={"code_version": named}).request())
    assert (
        backend.job_dir("job-as-named") / "code" / "recflow_ml" / "train.py"
    ).read_text() == "print('as named')\n"
    backend.stop_training_job("job-as-named")


def test_failing_entrypoint_reports_failed_with_its_reason(warehouse: Settings, tmp_path: Path) -> None:
    settings = home_with_warehouse_of(warehouse, tmp_path)
    snap = take_snapshot(settings)
    backend = LocalTrainingBackend(settings)
    with pytest.raises(TrainingJobFailed, match="hyperparameter epochs='many' is not a valid int") as info:
        run_training_job(
            backend, _spec(settings, snap, "job-bad", epochs="many"), poll_seconds=0.5, echo=print
        )
    description = backend.describe_training_job("job-bad")
    assert description["TrainingJobStatus"] == "Failed"
    assert description["FailureReason"].startswith(
        "AlgorithmError: ContractError: hyperparameter epochs='many'"
    )
    assert backend.layout("job-bad").failure_file.exists()
    assert info.value.status == "Failed"
    # a retry after a failure launches the next attempt, never re-runs the failed name
    with pytest.raises(TrainingJobFailed):
        run_training_job(
            backend, _spec(settings, snap, "job-bad", epochs="many"), poll_seconds=0.5, echo=print
        )
    assert (settings.jobs_dir / "job-bad-r2").is_dir()


def test_the_train_task_defers_its_wait_and_a_retry_takes_the_finished_job(
    warehouse: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Launch on a worker, wait in the triggerer (the job's log in the task's), finish on a worker."""
    from airflow.sdk.exceptions import TaskDeferred

    from recflow.airflow.training import TrainingJobOperator

    settings = home_with_warehouse_of(warehouse, tmp_path)
    snap = take_snapshot(settings)
    monkeypatch.setenv("RECFLOW_HOME", str(settings.home))
    monkeypatch.setenv("RECFLOW_WAREHOUSE_PATH", str(settings.duckdb_path))
    params = {"epochs": 2}
    with pytest.raises(TaskDeferred) as deferred:
        TrainingJobOperator(task_id="train", snapshot=snap.to_xcom(), poll_seconds=0.5).execute(
            {"params": params}
        )
    trigger = deferred.value.trigger
    assert trigger.serialize() == (
        "recflow.airflow.training.TrainingJobTrigger",
        {"job_name": trigger.job_name, "poll_seconds": 0.5, "unread_tolerance_seconds": 600.0},
    )

    async def first_event() -> Any:
        async for event in trigger.run():
            return event

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=STARTUP))
    assert event.payload == {"job_name": trigger.job_name, "status": "Completed"}
    logged = capsys.readouterr()
    assert "epoch 2/2" in logged.out + logged.err, "the trigger streams the job's log into the task's log"

    resumed = TrainingJobOperator(task_id="train", snapshot=snap.to_xcom())
    assert deferred.value.kwargs is not None
    result = resumed.execute_complete({}, event.payload, **deferred.value.kwargs)
    assert result["job_name"] == trigger.job_name
    assert result["model_uri"] == join(
        settings.artifacts_uri, "models", trigger.job_name, "output", "model.tar.gz"
    )
    assert result["hyperparameters"]["epochs"] == "2"

    # a retry of the whole task after the job finished takes its result without deferring again
    assert TrainingJobOperator(task_id="train", snapshot=snap.to_xcom()).execute({"params": params}) == result
