"""The training-job contract, through the local backend: the same entrypoint SageMaker would run."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from recflow.artifacts import join
from recflow.config import Settings
from recflow.errors import TrainingJobFailed
from recflow.snapshot import Snapshot, channel_prefix, take_snapshot
from recflow.training.jobs import run_training_job
from recflow.training.local import LocalTrainingBackend
from recflow.training.spec import TrainingJobSpec
from tests.integration.conftest import home_with_warehouse_of

pytestmark = pytest.mark.integration


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
    opt_ml = backend.job_dir("job-ok") / "opt_ml"
    assert (opt_ml / "input" / "config" / "hyperparameters.json").exists()
    assert (opt_ml / "input" / "data" / "train" / "interactions.parquet").exists()

    again: list[str] = []
    second = run_training_job(backend, _spec(settings, snap, "job-ok"), poll_seconds=0.5, echo=again.append)
    assert second["ModelArtifacts"] == description["ModelArtifacts"]
    assert sorted(p.name for p in settings.jobs_dir.iterdir() if not p.name.startswith(".")) == ["job-ok"], (
        "a retry must not launch a second job"
    )


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
    assert (backend.job_dir("job-bad") / "opt_ml" / "output" / "failure").exists()
    assert info.value.status == "Failed"
    # a retry after a failure launches the next attempt, never re-runs the failed name
    with pytest.raises(TrainingJobFailed):
        run_training_job(
            backend, _spec(settings, snap, "job-bad", epochs="many"), poll_seconds=0.5, echo=print
        )
    assert (settings.jobs_dir / "job-bad-r2").is_dir()
