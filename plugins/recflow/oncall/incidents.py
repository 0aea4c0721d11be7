"""Incidents: one record per failed task, kept in a database that outlives the process.

The failure callback (``recflow.airflow.alerts``) unpacks Airflow's context into a
:class:`TaskFailure` and calls :func:`record_failure`, which classifies the error by its type
(with the classifier its caller passes: the callback's, ``recflow.airflow.classify``, also knows
Airflow's errors), says what the failure leaves stale and which model stays champion,
quotes the runbook's "What to do" and stores an :class:`Incident` in the store
``RECFLOW_INCIDENTS_URL`` names (:mod:`recflow.oncall.store`). The record itself is
:mod:`recflow.oncall.record`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from recflow.core.config import Settings
from recflow.core.errors import (
    DataVerdict,
    DayClaimed,
    DbtNodeFailed,
    PartitionRefused,
    RecflowError,
    TrainingJobFailed,
    WarehouseUnavailable,
)
from recflow.core.names import TRAINING_ASSET, TRAINING_DAG, TRANSFORM, WAREHOUSE_DAG
from recflow.core.urls import shown_url
from recflow.oncall import runbooks
from recflow.oncall.record import Incident, Kind, days_text
from recflow.oncall.store import IncidentStore

__all__ = [
    "ChampionLookup",
    "Classifier",
    "TaskFailure",
    "blast_radius",
    "build_incident",
    "champion_of",
    "classify",
    "covering_incident",
    "one_line",
    "paged_by",
    "record_failure",
]

log = logging.getLogger(__name__)

ROOT_CAUSE_CHARS = 300
REGISTRY_TIMEOUT_S = 20.0
NO_EXCEPTION = (
    "the task ended without an exception in its process: it was killed, marked failed by a person, "
    "or its worker was lost"
)


@dataclass(frozen=True)
class TaskFailure:
    """What the failure callback knows about a failed task, unpacked from Airflow's context."""

    dag_id: str
    task_id: str
    run_id: str
    try_number: int
    interval_start: datetime | None = None
    interval_end: datetime | None = None
    error: BaseException | str | None = None
    model_name: str | None = None
    days: tuple[date, ...] = ()
    """The landing partitions the run processes, in order (``recflow.core.days.days_to_process``);
    empty when unknown (its params are refused) or for a run of another DAG."""

    @property
    def day(self) -> date | None:
        """The one landing partition the run processes (``D`` in the runbook's commands), if exactly one."""
        return self.days[0] if len(self.days) == 1 else None


# -- classification ------------------------------------------------------------------------------


Classifier = Callable[[BaseException | str | None], Kind]
"""Gives an error its incident kind. The failure callback passes ``recflow.airflow.classify.classify``,
which knows Airflow's errors as well as recflow's."""


def classify(error: BaseException | str | None) -> Kind:
    """The incident's kind, by the error's type (an error raised ``from`` a RecflowError counts as it);
    an error recflow does not define is ``infrastructure`` here."""
    if error is None or isinstance(error, str):
        return "infrastructure"
    cause = runbooks.recflow_cause(error)
    if cause is None or runbooks.lost_the_server(cause):
        return "infrastructure"
    return _recflow_kind(cause)


def _recflow_kind(error: RecflowError) -> Kind:
    if isinstance(error, DataVerdict):
        return "data"
    if isinstance(error, TrainingJobFailed):
        return "training_job"
    if isinstance(error, DbtNodeFailed):
        return "transform"
    if isinstance(error, WarehouseUnavailable):  # a server down or misnamed: as the driver's error was
        return "infrastructure"
    return "pipeline"


def one_line(text: str, limit: int = ROOT_CAUSE_CHARS) -> str:
    """``text`` on one line (line breaks as ``; ``, runs of blanks as one), cut at ``limit`` characters."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    flat = "; ".join(line for line in lines if line)
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _full_message(error: BaseException) -> str:
    """The error's text and, below it, the text of each error it was raised from."""
    parts = [_describe(error)]
    seen = {id(error)}
    cause = error.__cause__
    while cause is not None and id(cause) not in seen:
        parts.append(f"raised from {_describe(cause)}")
        seen.add(id(cause))
        cause = cause.__cause__
    return "\n".join(parts)


# -- building an incident ------------------------------------------------------------------------


ChampionLookup = Callable[[str], str]
"""Given a model name, says which version stays champion (``"unknown: …"`` when it cannot tell)."""


def champion_of(settings: Settings, name: str, timeout_s: float = REGISTRY_TIMEOUT_S) -> str:
    """Which version of ``name`` is champion in the registry, in words; never raises.

    A registry that is not there yet (the embedded SQLite file) is not created; one
    that does not answer within ``timeout_s`` is reported as unknown.
    """
    from recflow.registry import missing_registry  # noqa: PLC0415 (MLflow's modules: only on failure)

    if missing_registry(settings) is not None:
        return f"none: no model registry yet ({shown_url(settings.mlflow_uri)})"
    answer: list[str] = []

    def look_up() -> None:
        try:
            from recflow.registry import registry_for  # noqa: PLC0415 (MLflow or boto3: seconds, and only on failure)

            info = registry_for(settings).get_by_alias(name)
        except Exception as exc:  # the registry may be what is broken; the incident is recorded anyway
            answer.append(f"unknown: the registry could not be read ({one_line(_describe(exc), 200)})")
            return
        answer.append(
            f"none: {name} has no champion"
            if info is None
            else f"{name} version {info.version} stays champion"
        )

    worker = threading.Thread(target=look_up, name="recflow-champion-lookup", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return (
        answer[0]
        if answer
        else f"unknown: the registry did not answer within {timeout_s:g} s ({shown_url(settings.mlflow_uri)})"
    )


def _processed_interval(failure: TaskFailure) -> tuple[datetime | None, datetime | None]:
    """The incident's interval: for ``recsys_warehouse``, its days ``[first, last + 1)`` (none when
    unknown); for another DAG, the run's data interval."""
    if failure.dag_id != WAREHOUSE_DAG:
        return failure.interval_start, failure.interval_end
    if not failure.days:
        return None, None
    first, last = failure.days[0], failure.days[-1] + timedelta(days=1)
    return (
        datetime(first.year, first.month, first.day, tzinfo=UTC),
        datetime(last.year, last.month, last.day, tzinfo=UTC),
    )


def blast_radius(failure: TaskFailure, model_name: str, champion: str) -> dict[str, str]:
    """What the failure leaves stale, and which model keeps serving."""
    if failure.dag_id == WAREHOUSE_DAG:
        processed = (
            f"ds={days_text(failure.days[0], failure.days[-1])}" if failure.days else f"run {failure.run_id}"
        )
        stale = f"asset {TRAINING_ASSET} is not updated for {processed}: no training starts from it"
    elif failure.dag_id == TRAINING_DAG:
        stale = f"no new version of {model_name} is published by run {failure.run_id}"
    else:
        stale = f"unknown: {failure.dag_id} is not a recflow DAG"
    return {"stale_asset": stale, "champion": champion}


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _what_to_do(failure: TaskFailure, anchor: str, model_name: str) -> str:
    """The runbook's "What to do", with its placeholders filled in: ``D`` (the day), ``RUN_ID`` (the run),
    ``TASK`` (the task that failed, as a ``-t`` pattern) and ``N`` (the model)."""
    try:
        text = runbooks.section(failure.dag_id, anchor).what_to_do
    except (KeyError, OSError):
        return (
            f"read the task log and {runbooks.relative_path(failure.dag_id)}; "
            "clear the task once the cause is fixed"
        )
    cause = runbooks.recflow_cause(failure.error if isinstance(failure.error, BaseException) else None)
    # the day the error names (a run of several days refuses or waits on one of them), else the run's one day
    day = getattr(cause, "ds", None) or (failure.day.isoformat() if failure.day is not None else None)
    filled = {
        "D": str(day) if day else None,
        # the run to act on: the one that failed, or for a claimed day the run that holds it
        "RUN_ID": f"'{cause.holder if isinstance(cause, DayClaimed) else failure.run_id}'",
        "TASK": _task_pattern(failure.task_id),  # in `-t '^TASK$'`
        "S": f"{cause.share_needed:.2f}"
        if isinstance(cause, PartitionRefused) and cause.share_needed is not None
        else None,
        "N": model_name,
    }
    # one pass: a value filled in (a run id such as manual__N-TASK) is never read as a placeholder
    return re.sub(r"\b(D|RUN_ID|TASK|S|N)\b", lambda m: filled[m.group(1)] or m.group(1), text)


def _task_pattern(task_id: str) -> str:
    """The ``-t`` pattern that clears ``task_id``: a dbt node's task or the build is the whole
    ``transform`` group (its node tasks sit beside the build, and report its result)."""
    return rf"{TRANSFORM}\..*" if task_id.startswith(f"{TRANSFORM}.") else re.escape(task_id)


def build_incident(
    settings: Settings,
    failure: TaskFailure,
    *,
    champion: ChampionLookup | None = None,
    classifier: Classifier = classify,
    now: datetime | None = None,
) -> Incident:
    """The incident for ``failure`` (not stored). ``champion`` defaults to a look-up in the registry;
    ``classifier`` gives the error its kind (recflow's own :func:`classify` unless the caller knows more)."""
    error = failure.error
    model_name = failure.model_name or settings.model_name
    lookup = champion or (lambda name: champion_of(settings, name))
    kind = classifier(error)
    verdict: DataVerdict | None = None
    if isinstance(error, BaseException):
        cause: RecflowError | BaseException = runbooks.recflow_cause(error) or error
        verdict = cause if isinstance(cause, DataVerdict) else None
        error_type = type(cause).__name__
        root_cause = one_line(_describe(cause))
        message = _full_message(error)
        anchor = runbooks.anchor_for(failure.task_id, error)
    else:
        error_type = ""
        root_cause = one_line(error) if error else NO_EXCEPTION
        message = error or ""
        anchor = runbooks.anchor_for(failure.task_id, None)
    start, end = _processed_interval(failure)
    return Incident(
        at=(now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds"),
        dag_id=failure.dag_id,
        task_id=failure.task_id,
        run_id=failure.run_id,
        interval_start=_iso(start),
        interval_end=_iso(end),
        try_number=failure.try_number,
        kind=kind,
        error_type=error_type,
        root_cause=root_cause,
        check=verdict.check if verdict else "",
        columns=tuple(verdict.columns) if verdict else (),
        observed=verdict.observed if verdict else "",
        expected=verdict.expected if verdict else "",
        evidence=verdict.evidence if verdict else "",
        blast_radius=blast_radius(failure, model_name, lookup(model_name)),
        what_to_do=_what_to_do(failure, anchor, model_name),
        runbook=f"{runbooks.relative_path(failure.dag_id)}#{anchor}",
        message=message,
    )


def paged_by(failure: TaskFailure) -> str | None:
    """The task whose own incident pages for ``failure``, if another does (a dbt node's task whose nodes
    failed because its build lost the warehouse: the build fails for it and pages); ``None``: this
    failure pages itself."""
    error = failure.error if isinstance(failure.error, BaseException) else None
    cause = runbooks.recflow_cause(error)
    return cause.paged_by if isinstance(cause, DbtNodeFailed) else None


def covering_incident(settings: Settings, failure: TaskFailure, incident: Incident) -> Incident | None:
    """The stored incident that pages for ``incident`` (just stored for ``failure``), or ``None``: send it.

    Only when :func:`paged_by` names a task, and the store holds that task's incident for the same run,
    recorded since this task's own previous one there (a build that failed again after a clear, not the
    incident of an earlier failure). A build killed before its callback ran has no such incident, and
    a store that cannot be read proves none: the node's incident is sent then."""
    covering_task = paged_by(failure)
    if covering_task is None or incident.id is None:
        return None
    try:
        found = IncidentStore.of(settings).find(dag_id=failure.dag_id, run_id=failure.run_id)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("could not read the incident store for %s's incident: %s", covering_task, exc)
        return None
    ids = [(i.id or 0, i) for i in found]  # stored: every one has its id
    since = max((n for n, i in ids if i.task_id == failure.task_id and n < incident.id), default=0)
    covering = [i for n, i in ids if i.task_id == covering_task and n > since]
    return covering[-1] if covering else None


def record_failure(
    settings: Settings,
    failure: TaskFailure,
    *,
    champion: ChampionLookup | None = None,
    classifier: Classifier = classify,
) -> Incident:
    """Build the incident for ``failure`` and store it; the one call of the failure callback.

    Storing may fail (a full disk, a read-only home): the incident is then returned
    with ``id`` None and the reason logged, so that the on-call line is still written.
    """
    incident = build_incident(settings, failure, champion=champion, classifier=classifier)
    try:
        return IncidentStore.of(settings).add(incident)
    except (SQLAlchemyError, OSError) as exc:
        log.error("could not store the incident in %s: %s", IncidentStore.of(settings), exc)
        return incident
