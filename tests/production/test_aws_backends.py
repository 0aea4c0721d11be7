"""The production backends (S3 artifact store, SageMaker training) against moto's server over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recflow.core.artifacts import S3ArtifactStore, join, store_for
from recflow.core.config import Settings, subprocess_env
from recflow.core.errors import TrainingJobNotFound
from recflow.training.jobs import launch_or_attach
from recflow.training.sagemaker import SageMakerTrainingBackend
from recflow.training.spec import TrainingJobSpec
from tests.loopback import moto_server

pytestmark = pytest.mark.production

BUCKET = "recflow-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env(
        {
            "RECFLOW_HOME": str(tmp_path),
            "RECFLOW_ARTIFACT_ROOT": f"s3://{BUCKET}/recflow",
            "RECFLOW_TRAINING_BACKEND": "sagemaker",
            "RECFLOW_AWS_ENDPOINT_URL": moto_url,
            "RECFLOW_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/recflow-training",
        }
    )
    store = store_for(settings)
    assert isinstance(store, S3ArtifactStore)
    store.client.create_bucket(Bucket=BUCKET)
    return settings


def test_s3_artifact_store_round_trip(aws: Settings, tmp_path: Path) -> None:
    store = store_for(aws)
    local = tmp_path / "a.parquet"
    local.write_bytes(b"PAR1")
    uri = store.put_file(local, join(aws.artifacts_uri, "snapshots", "s1", "train", "a.parquet"))
    assert uri == f"s3://{BUCKET}/recflow/snapshots/s1/train/a.parquet"
    assert store.exists(uri) and not store.exists(uri + ".missing")
    assert store.get_bytes(uri) == b"PAR1"
    assert store.list(join(aws.artifacts_uri, "snapshots", "s1")) == [uri]


def test_sagemaker_backend_creates_and_describes_the_same_job(aws: Settings) -> None:
    backend = SageMakerTrainingBackend(aws)
    with pytest.raises(TrainingJobNotFound):
        backend.describe_training_job("recsys-train-nope")
    spec = TrainingJobSpec(
        name="recsys-train-abc123-def456-0a1b2c",
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/recflow-ml:0a1b2c",
        role_arn=aws.sagemaker_role_arn,
        hyperparameters={"epochs": "3"},
        channels={
            "train": join(aws.artifacts_uri, "snapshots/s1/train"),
            "holdout": join(aws.artifacts_uri, "snapshots/s1/holdout"),
        },
        output_uri=join(aws.artifacts_uri, "models"),
    )
    name, existing = launch_or_attach(backend, spec)
    assert (name, existing) == (spec.name, None)
    described = backend.describe_training_job(spec.name)
    assert described["TrainingJobName"] == spec.name
    assert described["HyperParameters"] == {"epochs": "3"}
    assert described["AlgorithmSpecification"]["TrainingImage"] == spec.image
    # a retried task finds the job by its deterministic name instead of launching another
    again, found = launch_or_attach(backend, spec)
    assert again == spec.name and found is not None
    names = [j["TrainingJobName"] for j in backend.client.list_training_jobs()["TrainingJobSummaries"]]
    assert names.count(spec.name) == 1


def test_subprocess_env_carries_settings(aws: Settings) -> None:
    env = subprocess_env(aws.to_env())
    assert env["RECFLOW_TRAINING_BACKEND"] == "sagemaker"
    assert Settings.from_env(env).artifacts_uri == aws.artifacts_uri
