"""What both backends share around a publication and a promotion.

Publishing is a sequence of idempotent steps keyed by the training job's name
(:data:`PUBLISH_STEPS`): a retry after a failure at any point finds what the
failed attempt left and finishes it, so one training job is one run and one
version, whatever the number of attempts. A run and a version carry
``recflow.complete`` (``false`` when created, ``true`` once everything they
need is written); ``champion`` is only ever moved to a complete version.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from recflow.core.errors import RegistryError
from recflow.registry.model import JOB_KEY, ModelVersionInfo, OnStep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Publication:
    """What one publication is keyed by and recorded with, as both backends derive it."""

    job: str
    lineage: dict[str, str]
    who: str
    reason: str


def publication(
    name: str, lineage: Mapping[str, str], training_job: str | None, who: str | None, reason: str
) -> Publication:
    """The training job (``training_job`` or ``lineage["training_job_name"]``), the lineage naming it,
    ``who`` (default ``"<airflow_dag_id>/<airflow_run_id>"``) and ``reason`` of a publication."""
    job = training_job or lineage.get(JOB_KEY)
    if not job:
        raise ValueError(f"publishing {name} needs the training job's name (training_job or lineage)")
    if lineage.get(JOB_KEY, job) != job:
        raise ValueError(f"lineage names training job {lineage[JOB_KEY]!r}, publishing {job!r}")
    return Publication(
        job=job,
        lineage={**lineage, JOB_KEY: job},
        who=who or f"{lineage.get('airflow_dag_id', 'unknown')}/{lineage.get('airflow_run_id', 'unknown')}",
        reason=reason or f"published training job {job}",
    )


def publish_step(name: str, job: str, on_step: OnStep | None) -> OnStep:
    """The ``step(done)`` a publication calls after each of :data:`PUBLISH_STEPS`."""

    def step(done: str) -> None:
        log.debug("publish %s (%s): %s done", name, job, done)
        if on_step is not None:
            on_step(done)

    return step


def log_published(
    name: str, info: ModelVersionInfo, job: str, moved: Mapping[str, Any] | None, reason: str
) -> None:
    if info.champion_not_moved:
        log.warning("%s version %d is training job %s; %s", name, info.version, job, info.champion_not_moved)
    elif moved is None:
        log.info(
            "%s version %d is training job %s; champion not moved (%s)", name, info.version, job, info.aliases
        )
    else:
        log.info(
            "%s version %d is training job %s; champion moved from version %s (%s)",
            name,
            info.version,
            job,
            moved["previous_version"],
            reason,
        )


def require_reason(name: str, version: int, reason: str) -> None:
    """A move of the champion by hand says why: ``ValueError`` for an empty reason."""
    if not reason.strip():
        raise ValueError(f"moving the champion of {name} to version {version} needs a reason")


def unknown_version(name: str, version: int, known: Iterable[int]) -> RegistryError:
    listed = ", ".join(str(v) for v in sorted(known)) or "none"
    return RegistryError(f"{name} has no version {version} (versions: {listed})")


def incomplete_version(name: str, version: int, job: str) -> RegistryError:
    return RegistryError(
        f"{name} version {version} is incomplete (its publication did not finish): "
        "it cannot be champion; retry the publication of its training job "
        f"{job} to complete it"
    )


def log_promoted(name: str, version: int, who: str, reason: str, moved: Mapping[str, Any] | None) -> None:
    if moved is not None:
        log.info(
            "%s champion moved from version %s to %s by %s: %s",
            name,
            moved["previous_version"],
            version,
            who,
            reason,
        )
