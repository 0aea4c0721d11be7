"""The training trigger when the platform cannot be read for a while: the job runs on, so must the wait."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from recflow.airflow import training
from recflow.core.errors import TrainingJobNotFound


class FlakyBackend:
    """Describes fail ``failures`` times with the network's error, then the job is ``Completed``."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionError("Could not connect to the endpoint URL")
        self.describes = 0

    def describe_training_job(self, name: str) -> dict[str, Any]:
        self.describes += 1
        if self.describes <= self.failures:
            raise self.error
        return {"TrainingJobName": name, "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed"}

    def read_log(self, name: str, cursor: str) -> tuple[list[str], str]:
        return [], cursor


def _events(trigger: training.TrainingJobTrigger) -> list[Any]:
    async def collect() -> list[Any]:
        return [event async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(collect(), timeout=30))


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(fake: FlakyBackend) -> FlakyBackend:
        monkeypatch.setattr(training, "task_settings", lambda: None)
        monkeypatch.setattr("recflow.training.jobs.backend_for", lambda settings: fake)
        return fake

    return install


def test_a_few_failed_reads_do_not_end_the_wait(backend: Any) -> None:
    """One failed describe ended the trigger: the task failed for good while its job ran to the end."""
    fake = backend(FlakyBackend(failures=3))
    trigger = training.TrainingJobTrigger("job-1", poll_seconds=0.01, unread_tolerance_seconds=30)
    events = _events(trigger)
    assert [e.payload for e in events] == [{"job_name": "job-1", "status": "Completed"}]
    assert fake.describes == 4


def test_reads_failing_past_the_tolerance_name_the_job_and_say_it_runs_on(backend: Any) -> None:
    backend(FlakyBackend(failures=10**6))
    trigger = training.TrainingJobTrigger("job-2", poll_seconds=0.01, unread_tolerance_seconds=0.05)
    with pytest.raises(
        training.JobUnread, match="training job job-2: its state could not be read"
    ) as gave_up:
        _events(trigger)
    assert "re-attaches to it" in str(gave_up.value)
    assert isinstance(gave_up.value.__cause__, ConnectionError)


def test_a_job_that_does_not_exist_is_not_asked_again(backend: Any) -> None:
    fake = backend(FlakyBackend(failures=10**6, error=TrainingJobNotFound("job-3")))
    with pytest.raises(TrainingJobNotFound):
        _events(training.TrainingJobTrigger("job-3", poll_seconds=0.01, unread_tolerance_seconds=30))
    assert fake.describes == 1


def test_the_tolerance_survives_serialization() -> None:
    path, kwargs = training.TrainingJobTrigger("job-4", 5.0, 120.0).serialize()
    assert path == "recflow.airflow.training.TrainingJobTrigger"
    assert kwargs == {"job_name": "job-4", "poll_seconds": 5.0, "unread_tolerance_seconds": 120.0}


def test_a_log_that_cannot_be_read_ends_nothing(backend: Any) -> None:
    """CloudWatch refusing the log (logs:DescribeLogStreams denied) looped with the status read and
    ended in 'its state could not be read', though the job had completed."""

    class NoLog(FlakyBackend):
        def read_log(self, name: str, cursor: str) -> tuple[list[str], str]:
            raise PermissionError("AccessDeniedException: logs:DescribeLogStreams")

    fake = backend(NoLog(failures=0))
    trigger = training.TrainingJobTrigger("job-5", poll_seconds=0.01, unread_tolerance_seconds=0.05)
    assert [e.payload for e in _events(trigger)] == [{"job_name": "job-5", "status": "Completed"}]
    assert fake.describes == 1
