"""Training "through the SageMaker API": the product's SageMaker backend against moto's server,
whose training jobs really run (``tests/services/sagemaker_server.py``), on a real snapshot in S3."""

from __future__ import annotations

import io
import re
import tarfile
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest

from recflow.core.artifacts import aws_client, join, store_for
from recflow.core.config import Settings
from recflow.core.errors import TrainingJobExists, TrainingJobFailed, TrainingJobNotFound
from recflow.snapshot import Snapshot, channel_prefix, take_snapshot
from recflow.training.jobs import (
    failure_kind,
    hyperparameters_of,
    launch_or_attach,
    run_training_job,
    snapshot_spec,
    train_on_snapshot,
)
from recflow.training.sagemaker import LOG_GROUP, SageMakerTrainingBackend
from recflow.training.spec import CHECKPOINT_LOCAL_PATH, MAX_RUNTIME_SECONDS, TrainingJobSpec, code_version
from tests.integration.conftest import warehouse  # noqa: F401 - a pytest fixture
from tests.services.aws import ROLE_ARN, TRAINING_IMAGE, aws, aws_server  # noqa: F401 - pytest fixtures

POLL = 0.5


@pytest.fixture
def production(aws: Settings, warehouse: Settings) -> Settings:  # noqa: F811
    """The production profile's AWS side (S3 artifacts, SageMaker), reading the session's small warehouse."""
    return Settings.from_env({**aws.to_env(), "RECFLOW_WAREHOUSE_PATH": str(warehouse.duckdb_path)})


def _spec(settings: Settings, snap: Snapshot, params: dict[str, Any]) -> TrainingJobSpec:
    """The request the train step sends for ``params`` (unchecked: a test may want a bad one)."""
    return snapshot_spec(settings, snap.to_xcom(), {k: str(v) for k, v in params.items()}, code_version())


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout:.0f}s for {what}"
        time.sleep(POLL)


def test_a_job_trains_on_the_snapshot_in_s3_and_a_retry_reattaches_to_it(production: Settings) -> None:
    settings = production
    store = store_for(settings)
    bucket = urlparse(settings.artifacts_uri).netloc
    snap = take_snapshot(settings)
    assert snap.train_uri.startswith(f"s3://{bucket}/recflow/snapshots/{snap.snapshot_id}/")
    assert store.exists(snap.train_uri) and store.exists(snap.holdout_uri), "the channels are S3 objects"

    params = {"epochs": 1}
    spec = _spec(settings, snap, hyperparameters_of(params))
    backend = SageMakerTrainingBackend(settings)
    # a first try of the train task launched the job and died; the job goes on without it
    backend.create_training_job(spec.request())
    created = backend.describe_training_job(spec.name)
    assert created["TrainingJobStatus"] == "InProgress" and "ModelArtifacts" not in created
    with pytest.raises(TrainingJobExists):
        backend.create_training_job(spec.request())

    lines: list[str] = []
    launched: list[str] = []
    result = train_on_snapshot(
        settings, snap.to_xcom(), params, poll_seconds=POLL, echo=lines.append, on_launch=launched.append
    )
    assert launched == [spec.name] and result["job_name"] == spec.name, "the retry follows the running job"

    described = backend.describe_training_job(spec.name)
    assert (described["TrainingJobStatus"], described["SecondaryStatus"]) == ("Completed", "Completed")
    assert described["RoleArn"] == ROLE_ARN
    assert described["AlgorithmSpecification"] == {
        "TrainingImage": TRAINING_IMAGE,
        "TrainingInputMode": "File",
    }
    assert (
        described["HyperParameters"] == result["hyperparameters"]
        and described["HyperParameters"]["epochs"] == "1"
    )
    sources = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in described["InputDataConfig"]}
    assert sources == {
        "train": {
            "S3DataType": "S3Prefix",
            "S3Uri": channel_prefix(snap.train_uri),
            "S3DataDistributionType": "FullyReplicated",
        },
        "holdout": {
            "S3DataType": "S3Prefix",
            "S3Uri": channel_prefix(snap.holdout_uri),
            "S3DataDistributionType": "FullyReplicated",
        },
    }
    checkpoint_uri = join(settings.artifacts_uri, "checkpoints", spec.name)
    assert described["CheckpointConfig"] == {"S3Uri": checkpoint_uri, "LocalPath": CHECKPOINT_LOCAL_PATH}
    assert described["StoppingCondition"] == {"MaxRuntimeInSeconds": MAX_RUNTIME_SECONDS}
    assert described["OutputDataConfig"] == {"S3OutputPath": join(settings.artifacts_uri, "models")}
    statuses = [t["Status"] for t in described["SecondaryStatusTransitions"]]
    assert statuses[0] == "Starting" and statuses[-1] == "Completed" and "Training" in statuses
    assert isinstance(described["TrainingTimeInSeconds"], int)
    assert described["TrainingEndTime"] >= described["TrainingStartTime"]

    model_uri = join(settings.artifacts_uri, "models", spec.name, "output", "model.tar.gz")
    assert result["model_uri"] == described["ModelArtifacts"]["S3ModelArtifacts"] == model_uri
    with tarfile.open(fileobj=io.BytesIO(store.get_bytes(model_uri))) as tar:
        names = tar.getnames()
    assert "saved_model.pb" in names and "metadata.json" in names
    assert store.list(checkpoint_uri), "the job's checkpoints are synced to CheckpointConfig.S3Uri"

    # the log came from CloudWatch Logs, one stream for the job's one instance
    assert any("epoch 1/1" in line for line in lines), lines
    assert f"[{spec.name}] status Completed / Completed" in lines
    logs = aws_client(settings, "logs")
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{spec.name}/")
    assert [re.sub(r"\d+$", "<ts>", s["logStreamName"]) for s in streams["logStreams"]] == [
        f"{spec.name}/algo-1-<ts>"
    ]

    again = train_on_snapshot(settings, snap.to_xcom(), params, poll_seconds=POLL, echo=lines.append)
    assert again["model_uri"] == model_uri, "a completed job is reused, not trained again"
    jobs = backend.client.list_training_jobs()["TrainingJobSummaries"]
    assert [j["TrainingJobName"] for j in jobs] == [spec.name]


def test_a_job_that_refuses_its_hyperparameters_fails_with_an_algorithm_error(production: Settings) -> None:
    settings = production
    snap = take_snapshot(settings)
    spec = _spec(settings, snap, {"epochs": "many"})
    backend = SageMakerTrainingBackend(settings)
    lines: list[str] = []
    with pytest.raises(TrainingJobFailed, match="hyperparameter epochs='many' is not a valid int") as info:
        run_training_job(backend, spec, poll_seconds=POLL, echo=lines.append)
    described = backend.describe_training_job(spec.name)
    assert (described["TrainingJobStatus"], described["SecondaryStatus"]) == ("Failed", "Failed")
    assert described["FailureReason"].startswith(
        "AlgorithmError: ContractError: hyperparameter epochs='many'"
    )
    assert failure_kind(described) == info.value.kind == "algorithm"
    assert "ModelArtifacts" not in described
    assert any("job failed: AlgorithmError" in line for line in lines), "the failure is in the job's log"
    # a retried task launches the next attempt instead of following the failed job
    name, existing = launch_or_attach(backend, spec)
    assert (name, existing) == (f"{spec.name}-r2", None)


def test_a_channel_without_data_fails_the_job_with_a_client_error(aws: Settings) -> None:  # noqa: F811
    spec = TrainingJobSpec(
        name="recsys-train-no-data",
        image=TRAINING_IMAGE,
        role_arn=ROLE_ARN,
        hyperparameters={"epochs": "1"},
        channels={
            "train": join(aws.artifacts_uri, "snapshots/missing/train"),
            "holdout": join(aws.artifacts_uri, "snapshots/missing/holdout"),
        },
        output_uri=join(aws.artifacts_uri, "models"),
    )
    backend = SageMakerTrainingBackend(aws)
    with pytest.raises(TrainingJobFailed) as info:
        run_training_job(backend, spec, poll_seconds=POLL, echo=print)
    described = backend.describe_training_job(spec.name)
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("ClientError: could not download the input data")
    assert failure_kind(described) == info.value.kind == "client"


def test_stop_training_job_stops_a_running_job(production: Settings) -> None:
    settings = production
    snap = take_snapshot(settings)
    spec = _spec(settings, snap, hyperparameters_of({"epochs": 200}))
    backend = SageMakerTrainingBackend(settings)
    backend.create_training_job(spec.request())
    _wait_for(
        "the job to start training",
        lambda: backend.describe_training_job(spec.name)["SecondaryStatus"] == "Training",
    )
    backend.stop_training_job(spec.name)
    assert backend.describe_training_job(spec.name)["TrainingJobStatus"] in ("Stopping", "Stopped")

    lines: list[str] = []
    with pytest.raises(TrainingJobFailed) as info:
        run_training_job(backend, spec, poll_seconds=POLL, echo=lines.append)  # a retry re-attaches
    assert (info.value.status, info.value.kind) == ("Stopped", "stopped")
    described = backend.describe_training_job(spec.name)
    assert described["SecondaryStatus"] == "Stopped" and "ModelArtifacts" not in described
    assert "Stopping" in [t["Status"] for t in described["SecondaryStatusTransitions"]]
    assert any("job stopped" in line for line in lines), lines
    backend.stop_training_job(spec.name)  # SageMaker refuses to stop a stopped job; no stop is needed
    with pytest.raises(TrainingJobNotFound):
        backend.stop_training_job("recsys-train-never-launched")


def test_read_log_reads_every_stream_of_the_job_to_its_end(aws: Settings) -> None:  # noqa: F811
    """Two instances (two streams), one of them longer than a GetLogEvents page (10,000 events)."""
    name = "recsys-train-two-hosts"
    logs = aws_client(aws, "logs")
    logs.create_log_group(logGroupName=LOG_GROUP)
    first, second = f"{name}/algo-1-1700000000", f"{name}/algo-2-1700000000"
    for stream in (first, second, f"{name}-r2/algo-1-1700000000"):  # the last: another job's
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    now = int(time.time() * 1000)

    def put(stream: str, messages: list[str]) -> None:
        events = [{"timestamp": now + i, "message": m} for i, m in enumerate(messages)]
        for start in range(0, len(events), 5000):
            logs.put_log_events(
                logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events[start : start + 5000]
            )

    put(first, [f"algo-1 line {i}" for i in range(10_001)])
    put(second, ["algo-2 line 0", "algo-2 line 1"])
    put(f"{name}-r2/algo-1-1700000000", ["not this job's"])

    backend = SageMakerTrainingBackend(aws)
    lines, cursor = backend.read_log(name, "")
    assert lines == [f"algo-1 line {i}" for i in range(10_001)] + ["algo-2 line 0", "algo-2 line 1"]
    assert backend.read_log(name, cursor) == ([], cursor)
    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName=second,
        logEvents=[{"timestamp": now + 5, "message": "algo-2 line 2"}],
    )
    assert backend.read_log(name, cursor)[0] == ["algo-2 line 2"]
    assert backend.read_log("recsys-train-no-such-job", "") == ([], "")
