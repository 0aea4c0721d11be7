"""The production training backend: Amazon SageMaker through boto3.

The request built by ``spec.TrainingJobSpec`` is sent as is; the log comes
from CloudWatch Logs (``/aws/sagemaker/TrainingJobs``, streams ``<job>/...``).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from recflow.core.artifacts import aws_client, aws_error_code
from recflow.core.config import Settings
from recflow.core.errors import TrainingJobExists, TrainingJobFailed, TrainingJobNotFound

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
REFUSED_REQUEST = frozenset({"ValidationException", "AccessDeniedException"})
"""CreateTrainingJob's answers that refuse the request itself: the same request gets the same answer.
Not ``ResourceLimitExceeded``: SageMaker also says it of instances other jobs are using, which frees up."""
MAX_LOG_PAGES = 100
"""Pages of one stream read in one call at most; the rest comes with the next call."""


class SageMakerTrainingBackend:
    name = "sagemaker"

    def __init__(self, settings: Settings, client: Any = None, logs_client: Any = None) -> None:
        self.client = client or aws_client(settings, "sagemaker")
        self.logs = logs_client or aws_client(settings, "logs")

    def create_training_job(self, request: dict[str, Any]) -> None:
        """Send the request; a name already taken is :class:`TrainingJobExists` (the job is attached to),
        a request SageMaker refuses (a field it does not accept, a role it may not use, a quota) is a
        ``TrainingJobFailed`` of kind ``client``: the same request is refused again, so it is not
        retried. Anything else (throttling, the network) keeps the task's retries."""
        try:
            self.client.create_training_job(**request)
        except ClientError as exc:
            code = aws_error_code(exc)
            if code in ("ResourceInUse", "ValidationException") and "unique" in str(exc).lower():
                raise TrainingJobExists(request["TrainingJobName"]) from exc
            if code in REFUSED_REQUEST:
                message = exc.response.get("Error", {}).get("Message", "") or str(exc)
                raise TrainingJobFailed(
                    request["TrainingJobName"], "refused", f"{code}: {message}", kind="client"
                ) from exc
            raise

    def describe_training_job(self, name: str) -> dict[str, Any]:

        try:
            description: dict[str, Any] = self.client.describe_training_job(TrainingJobName=name)
        except ClientError as exc:
            if aws_error_code(exc) in ("ValidationException", "ResourceNotFound"):
                raise TrainingJobNotFound(name) from exc
            raise
        return description

    def read_log(self, name: str, cursor: str) -> tuple[list[str], str]:
        """New lines of every log stream of the job, stream by stream in name order.

        SageMaker writes one stream per instance and per restart (``<job>/algo-1-<ts>``,
        ``<job>/algo-2-<ts>``...); ``cursor`` is a JSON map from stream to its ``nextForwardToken``,
        and each stream is read to its end, page after page (a page holds at most 10,000 events)."""

        try:
            streams = [
                stream["logStreamName"]
                for page in self.logs.get_paginator("describe_log_streams").paginate(
                    logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/"
                )
                for stream in page.get("logStreams", [])
            ]
        except ClientError as exc:
            if aws_error_code(exc) == "ResourceNotFoundException":
                return [], cursor
            raise
        tokens: dict[str, str] = json.loads(cursor) if cursor else {}
        lines: list[str] = []
        for stream in sorted(streams):
            token = tokens.get(stream)
            for _ in range(MAX_LOG_PAGES):
                kwargs: dict[str, Any] = {
                    "logGroupName": LOG_GROUP,
                    "logStreamName": stream,
                    "startFromHead": True,
                }
                if token:
                    kwargs["nextToken"] = token
                page = self.logs.get_log_events(**kwargs)
                lines.extend(event["message"] for event in page.get("events", []))
                previous, token = token, page.get("nextForwardToken", token)
                if token == previous:  # CloudWatch hands back the token it was given at the end of a stream
                    break
            if token:
                tokens[stream] = token
        return lines, json.dumps(tokens, sort_keys=True) if tokens else cursor

    def stop_training_job(self, name: str) -> None:

        try:
            self.client.stop_training_job(TrainingJobName=name)
        except ClientError as exc:
            code = aws_error_code(exc)
            if code == "ResourceNotFound":
                raise TrainingJobNotFound(name) from exc
            # SageMaker refuses to stop a job that is no longer InProgress: that one needs no stop
            if (
                code == "ValidationException"
                and self.describe_training_job(name)["TrainingJobStatus"] != "InProgress"
            ):
                return
            raise
