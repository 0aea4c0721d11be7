"""CreateTrainingJob refusing the request: a verdict on the request, not the platform failing."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from recflow.core.config import Settings
from recflow.core.errors import TrainingJobExists, TrainingJobFailed
from recflow.oncall import runbooks
from recflow.oncall.incidents import classify
from recflow.training.sagemaker import SageMakerTrainingBackend

REQUEST: dict[str, Any] = {
    "TrainingJobName": "recsys-train-abc-def-012",
    "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
    "RoleArn": "arn:aws:iam::123456789012:role/recflow-training",
    "OutputDataConfig": {"S3OutputPath": "s3://b/models"},
    "ResourceConfig": {"InstanceType": "ml.m5.xlarg", "InstanceCount": 1, "VolumeSizeInGB": 30},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
}


def _backend_answering(code: str, message: str, tmp_path: Any) -> SageMakerTrainingBackend:
    client = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    stub.add_client_error("create_training_job", service_error_code=code, service_message=message)
    stub.activate()
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path)})
    return SageMakerTrainingBackend(settings, client=client, logs_client=object())


def test_a_refused_request_fails_at_once_and_names_the_field(tmp_path: Any) -> None:
    said = (
        "1 validation error detected: Value 'ml.m5.xlarg' at 'resourceConfig.instanceType' failed to "
        "satisfy constraint: Member must satisfy enum value set"
    )
    backend = _backend_answering("ValidationException", said, tmp_path)
    with pytest.raises(TrainingJobFailed) as refused:
        backend.create_training_job(REQUEST)
    error = refused.value
    assert (error.kind, error.retryable) == ("client", False)
    assert "ml.m5.xlarg" in str(error) and "resourceConfig.instanceType" in str(error)
    assert classify(error) == "training_job"
    assert runbooks.anchor_for("train", error) == "job-input-error"


def test_a_taken_name_attaches_and_throttling_keeps_its_retries(tmp_path: Any) -> None:
    taken = _backend_answering(
        "ResourceInUse", "Training job names must be unique within an AWS account", tmp_path
    )
    with pytest.raises(TrainingJobExists):
        taken.create_training_job(REQUEST)
    throttled = _backend_answering("ThrottlingException", "Rate exceeded", tmp_path)
    with pytest.raises(ClientError):
        throttled.create_training_job(REQUEST)
    busy = "The account-level service limit 'ml.m5.xlarge for training job usage' is 2 Instances, with current utilization of 2 Instances"
    with pytest.raises(ClientError):  # instances other jobs use free up: retried
        _backend_answering("ResourceLimitExceeded", busy, tmp_path).create_training_job(REQUEST)
