"""The production training backend: Amazon SageMaker through boto3.

The request built by ``spec.TrainingJobSpec`` is sent as is; the log comes
from CloudWatch Logs (``/aws/sagemaker/TrainingJobs``, streams ``<job>/...``).
"""

from __future__ import annotations

from typing import Any

from recflow.artifacts import aws_client
from recflow.config import Settings
from recflow.errors import TrainingJobExists, TrainingJobNotFound

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class SageMakerTrainingBackend:
    name = "sagemaker"

    def __init__(self, settings: Settings, client: Any = None, logs_client: Any = None) -> None:
        self.client = client or aws_client(settings, "sagemaker")
        self.logs = logs_client or aws_client(settings, "logs")

    def create_training_job(self, request: dict[str, Any]) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.create_training_job(**request)
        except ClientError as exc:
            if _error_code(exc) in ("ResourceInUse", "ValidationException") and "unique" in str(exc).lower():
                raise TrainingJobExists(request["TrainingJobName"]) from exc
            raise

    def describe_training_job(self, name: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        try:
            description: dict[str, Any] = self.client.describe_training_job(TrainingJobName=name)
        except ClientError as exc:
            if _error_code(exc) in ("ValidationException", "ResourceNotFound"):
                raise TrainingJobNotFound(name) from exc
            raise
        return description

    def read_log(self, name: str, cursor: str) -> tuple[list[str], str]:
        from botocore.exceptions import ClientError

        try:
            streams = self.logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")
        except ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                return [], cursor
            raise
        if not streams.get("logStreams"):
            return [], cursor
        stream = streams["logStreams"][0]["logStreamName"]
        kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
        if cursor:
            kwargs["nextToken"] = cursor
        events = self.logs.get_log_events(**kwargs)
        return [e["message"] for e in events.get("events", [])], events.get("nextForwardToken", cursor)

    def stop_training_job(self, name: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.stop_training_job(TrainingJobName=name)
        except ClientError as exc:
            code = _error_code(exc)
            if code == "ResourceNotFound":
                raise TrainingJobNotFound(name) from exc
            # SageMaker refuses to stop a job that is no longer InProgress: that one needs no stop
            if (
                code == "ValidationException"
                and self.describe_training_job(name)["TrainingJobStatus"] != "InProgress"
            ):
                return
            raise
