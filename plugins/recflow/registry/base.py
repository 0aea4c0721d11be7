"""What both backends share around a publication and a promotion.

Publishing is a sequence of idempotent steps keyed by the training job's name
(:data:`PUBLISH_STEPS`): a retry after a failure at any point finds what the
failed attempt left and finishes it, so one training job is one run and one
version, whatever the number of attempts. A run and a version carry
``recflow.complete`` (``false`` when created, ``true`` once everything they
need is written); ``champion`` is only ever moved to a complete version.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recflow.core.config import Settings
from recflow.registry.champion import (
    champion_lock,
    incomplete_version,
    log_promoted,
    next_champion_move,
    require_reason,
)
from recflow.registry.model import (
    AT_START,
    JOB_KEY,
    ExpectedChampion,
    ModelVersionInfo,
    OnStep,
)

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
            "(none)" if moved["previous_version"] is None else moved["previous_version"],
            reason,
        )


@dataclass(frozen=True)
class ChampionState:
    """A model's champion as a move reads it under the lock: its recorded moves, the champion, and
    ``records``, what the backend read them from (handed back to :meth:`BaseRegistry._move`)."""

    history: list[dict[str, Any]]
    current: int | None
    records: Any = None


class BaseRegistry(ABC):
    """The algorithms of the :class:`~recflow.registry.model.Registry` contract, written once: a
    publication (:data:`PUBLISH_STEPS` in order), a promotion, and a move of ``champion`` under the
    model's lock; each backend supplies the primitives (find or create a record, approve, record)."""

    settings: Settings

    def publish(
        self,
        name: str,
        model_dir: Path,
        metrics: Mapping[str, float],
        params: Mapping[str, str],
        lineage: Mapping[str, str],
        *,
        training_job: str | None = None,
        reason: str = "",
        who: str | None = None,
        on_step: OnStep | None = None,
        curves: Mapping[str, Sequence[float]] | None = None,
        run_tags: Mapping[str, str] | None = None,
        pictures_dir: Path | None = None,
        expected_champion: ExpectedChampion = AT_START,
    ) -> ModelVersionInfo:
        """Publish a training job's SavedModel as the one version of ``name`` for that job; move ``champion`` to it.

        Idempotent, keyed by ``training_job`` (default ``lineage["training_job_name"]``):
        the steps of :data:`PUBLISH_STEPS` each find what an earlier attempt wrote before
        writing, and ``on_step(step)`` is called after each (also when it had nothing to do).
        The first publication of a job fixes its record; a later one adds what is missing and
        changes nothing (metrics, params and lineage already there are kept).

        ``champion`` moves once per publication, ``who`` being its key (default
        ``"<airflow_dag_id>/<airflow_run_id>"`` from ``lineage``): a retry of the same
        publication does not move it again, so it never undoes a rollback made in between.
        The move is recorded with ``who`` and ``reason`` (see :meth:`champion_history`).

        ``champion`` moves only if it still is ``expected_champion`` (``None``: there was none;
        default: the champion when this call began), checked under the model's lock
        (:func:`champion_lock`) with the move: when someone moved it in between, the version is
        registered, the alias stays, and the returned ``champion_not_moved`` says who moved it.

        ``curves`` (name → one value per epoch) are logged as step-indexed metrics
        ``train/<name>``, step = epoch; ``run_tags`` on the run; the files of ``pictures_dir``
        under the run's ``pictures/``. Like metrics, they are written once.
        """
        self._check_name(name)
        pub = publication(name, lineage, training_job, who, reason)
        job = pub.job
        if expected_champion is AT_START:
            expected_champion = self._champion_now(name)

        step = publish_step(name, job, on_step)
        run = self._ensure_run(name, job)
        step("run")
        run = self._ensure_logged(name, job, run, metrics, params, pub.lineage, curves or {}, run_tags or {})
        step("logged")
        run_complete = self._run_complete(run)
        if not run_complete:
            self._log_artifacts(name, job, run, model_dir, pictures_dir)
        step("artifacts")
        if not run_complete:
            self._complete_run(name, job, run)
        step("run_complete")
        self._ensure_registered_model(name)
        step("registered_model")
        handle = self._ensure_version(name, job, run, pub.lineage)
        step("version")
        self._ensure_version_complete(name, handle, pub.lineage)
        step("version_complete")
        moved, not_moved = self._move_champion(
            name,
            self._version_of(handle),
            who=pub.who,
            reason=pub.reason,
            by_hand=False,
            on_step=step,
            handle=handle,
            expected=expected_champion,
        )
        info = dataclasses.replace(self._published(name, handle), champion_not_moved=not_moved)
        log_published(name, info, job, moved, pub.reason)
        return info

    def promote(self, name: str, version: int, reason: str, who: str) -> dict[str, Any] | None:
        """Move ``champion`` of ``name`` to ``version`` (a rollback or a promotion) and record who, when and why.

        Returns the recorded move, shaped as in :meth:`champion_history`, or ``None`` when
        ``version`` already is the champion (nothing moves, nothing is recorded). Raises
        :class:`RegistryError` for an unknown model or version, or a version whose
        publication did not finish (``complete`` false), and ``ValueError`` for an empty reason.
        """
        require_reason(name, version, reason)
        self.require_model(name)
        complete, job = self._completeness(name, version)
        if not complete:
            raise incomplete_version(name, version, job)
        moved, _ = self._move_champion(name, int(version), who=who, reason=reason, by_hand=True)
        log_promoted(name, version, who, reason, moved)
        return moved

    def champion_history(self, name: str) -> list[dict[str, Any]]:
        """Every move of ``champion`` on ``name``, oldest first; raises :class:`RegistryError` for an unknown model.

        Each move is ``{"seq": int, "version": int, "previous_version": int | None,
        "who": str, "at": str, "reason": str}``: ``seq`` counts the moves from 1,
        ``previous_version`` is the champion before the move (``None``: there was none),
        ``who`` is the Airflow ``<dag_id>/<run_id>`` for a publication and the person for
        :meth:`promote`, ``at`` is an ISO-8601 UTC time, ``reason`` the gate's decision or
        the person's words. A model published before moves were recorded has an empty history.
        Read-only: a move interrupted after its alias moved is listed, and recorded by the next write.
        """
        self.require_model(name)
        return self._champion_state(name).history

    def download(self, info: ModelVersionInfo, out: Path) -> Path:
        """The version's SavedModel, written into ``out`` (which must not exist or be empty)."""
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(
                f"{out} is a file, not a folder: give a folder to write the SavedModel into"
            )
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(
                f"{out} is not empty: refusing to overwrite it (give a new or empty folder)"
            )
        return self._download(info, out)

    def _move_champion(
        self,
        name: str,
        version: int,
        *,
        who: str,
        reason: str,
        by_hand: bool,
        on_step: OnStep | None = None,
        handle: Any = None,
        expected: ExpectedChampion = AT_START,
    ) -> tuple[dict[str, Any] | None, str]:
        """Move ``champion`` of ``name`` to ``version`` under the model's lock: the move recorded
        (``None``: none), and why none was made when that is news (see :func:`next_champion_move`).

        Settle an interrupted move, read the history and the champion, write the move ahead, move
        the alias (or approval), record the move (never over another), remove the intent."""
        step = on_step or (lambda _done: None)
        with champion_lock(self.settings, name, who) as held:
            self._settle_pending(name)
            state = self._champion_state(name, handle)
            entry, not_moved = next_champion_move(
                state.history,
                state.current,
                version,
                name=name,
                who=who,
                reason=reason,
                by_hand=by_hand,
                step=step,
                expected=expected,
            )
            if entry is None:
                return None, not_moved
            self._intend(name, entry)
            step("champion_intent")
            held.check()
            self._move(name, entry, state)
            step("champion")
            self._record_move(name, entry)
            step("champion_recorded")
            self._clear_pending(name)
            return entry, ""

    def _settle_pending(self, name: str) -> None:
        """Finish a champion move interrupted after its intent was written, or discard it if the alias
        (or approval) never moved.

        Under the model's lock (:func:`champion_lock`): the move it finds was not made by a live writer."""
        entry = self._pending(name)
        if entry is None:
            return
        if self._finish_pending(name, entry):
            log.warning("%s: recorded an interrupted champion move %s", name, entry)
        else:
            log.warning("%s: discarded an interrupted champion move that did not happen %s", name, entry)
        self._clear_pending(name)

    def _check_name(self, name: str) -> None:  # noqa: B027 (a hook: only SageMaker restricts names)
        """Raise ``ValueError`` when the backend cannot hold a model named ``name``."""

    # -- the primitives of a publication ---------------------------------------------------------

    @abstractmethod
    def require_model(self, name: str) -> None: ...

    @abstractmethod
    def _champion_now(self, name: str) -> int | None:
        """The champion's version (``None``: none, or no such model)."""

    @abstractmethod
    def _ensure_run(self, name: str, job: str) -> Any:
        """Step ``run``: what an earlier publication of ``job`` wrote (created if the backend must)."""

    @abstractmethod
    def _ensure_logged(
        self,
        name: str,
        job: str,
        run: Any,
        metrics: Mapping[str, float],
        params: Mapping[str, str],
        lineage: Mapping[str, str],
        curves: Mapping[str, Sequence[float]],
        run_tags: Mapping[str, str],
    ) -> Any:
        """Step ``logged``: what ``run`` lacks written (kept where it has it; other params refuse); the run."""

    @abstractmethod
    def _run_complete(self, run: Any) -> bool: ...

    @abstractmethod
    def _log_artifacts(
        self, name: str, job: str, run: Any, model_dir: Path, pictures_dir: Path | None
    ) -> None:
        """Step ``artifacts`` of a run not complete yet: the SavedModel and the pictures."""

    @abstractmethod
    def _complete_run(self, name: str, job: str, run: Any) -> None:
        """Step ``run_complete``: the run marked complete."""

    @abstractmethod
    def _ensure_registered_model(self, name: str) -> None: ...

    @abstractmethod
    def _ensure_version(self, name: str, job: str, run: Any, lineage: Mapping[str, str]) -> Any:
        """Step ``version``: the one version of the job's run, found or created (the backend's handle)."""

    @abstractmethod
    def _ensure_version_complete(self, name: str, handle: Any, lineage: Mapping[str, str]) -> None: ...

    @abstractmethod
    def _version_of(self, handle: Any) -> int: ...

    @abstractmethod
    def _published(self, name: str, handle: Any) -> ModelVersionInfo:
        """The version ``handle`` as published, read back."""

    @abstractmethod
    def _completeness(self, name: str, version: int) -> tuple[bool, str]:
        """Whether ``version``'s publication finished, and its training job; :func:`unknown_version` when none."""

    @abstractmethod
    def _download(self, info: ModelVersionInfo, out: Path) -> Path: ...

    # -- the primitives of a move of the champion ------------------------------------------------

    @abstractmethod
    def _champion_state(self, name: str, handle: Any = None) -> ChampionState:
        """The recorded moves and the champion (``handle``: a version just created, counted even when
        a listing does not show it yet)."""

    @abstractmethod
    def _intend(self, name: str, entry: Mapping[str, Any]) -> None:
        """Write the move ahead (the pending move)."""

    @abstractmethod
    def _move(self, name: str, entry: Mapping[str, Any], state: ChampionState) -> None:
        """Move the alias (or approval) to the move's version."""

    @abstractmethod
    def _record_move(self, name: str, entry: Mapping[str, Any]) -> None:
        """Add the move to the history; a different move under its number refuses."""

    @abstractmethod
    def _pending(self, name: str) -> dict[str, Any] | None:
        """The move written ahead and not cleared, if any."""

    @abstractmethod
    def _finish_pending(self, name: str, entry: Mapping[str, Any]) -> bool:
        """Complete the interrupted ``entry`` if its alias (or approval) moved; whether it had."""

    @abstractmethod
    def _clear_pending(self, name: str) -> None: ...
