"""What a training backend answers to: SageMaker's create/describe/stop, plus log reading.

Its errors are ``recflow.core.errors.TrainingJobNotFound`` (describe, stop) and
``TrainingJobExists`` (create).
"""

from __future__ import annotations

from typing import Any, Protocol

TERMINAL_STATES = frozenset({"Completed", "Failed", "Stopped"})


class TrainingBackend(Protocol):
    name: str

    def create_training_job(self, request: dict[str, Any]) -> None: ...

    def describe_training_job(self, name: str) -> dict[str, Any]: ...

    def read_log(self, name: str, cursor: str) -> tuple[list[str], str]:
        """New log lines of the job since ``cursor`` (``""`` at first), and the cursor to pass next time."""
        ...

    def stop_training_job(self, name: str) -> None:
        """Ask an ``InProgress`` job to stop: it goes ``Stopping``, then ``Stopped``; idempotent."""
        ...
