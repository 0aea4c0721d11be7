"""What the person on call gets when a task fails: one incident, one log line, one notification (or
none, where another task's incident of the same run is the page for the same cause).

:func:`on_task_failure` (every task's ``on_failure_callback``, through
``recflow.airflow.defaults.DEFAULT_ARGS``) unpacks Airflow's context and calls
:func:`recflow.oncall.incidents.record_failure` with :func:`recflow.airflow.classify.classify`
(Airflow's errors have kinds too), which stores the incident
(``recflow incidents show ID``). The task log then ends with one
``ON-CALL: <what> | why: … | what to do: … | runbook: … | incident: …`` line, and a
notification goes through the Apprise provider's notifier to whatever the Airflow
connection ``Settings.alerts_conn_id`` (default ``recflow_alerts``) configures: Slack,
e-mail, a webhook… Without that connection nothing is sent. A dbt node's task whose nodes failed
because the build lost the warehouse is not sent either when the build's incident for the same
failure is in the store (its line ends ``| not sent: …``, naming that incident): one lost warehouse
pages once (:func:`recflow.oncall.incidents.covering_incident`). The callback never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from recflow.airflow.classify import classify
from recflow.core.config import Settings
from recflow.core.days import days_to_process
from recflow.oncall.incidents import TaskFailure, covering_incident, record_failure
from recflow.oncall.record import Incident

log = logging.getLogger(__name__)


def failure_from_context(context: Mapping[str, Any]) -> TaskFailure:
    """The failed task, its run, its interval, its model and its exception, from Airflow's context."""
    ti = context["ti"]
    params = context.get("params") or {}
    model_name = params.get("model_name")
    start, end = _moment(context.get("data_interval_start")), _moment(context.get("data_interval_end"))
    return TaskFailure(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        try_number=int(ti.try_number),
        interval_start=start,
        interval_end=end,
        error=context.get("exception"),
        model_name=str(model_name) if model_name else None,
        days=_days(params, _moment(context.get("logical_date")), start, end),
    )


def _days(
    params: Mapping[str, Any], logical_date: datetime | None, start: datetime | None, end: datetime | None
) -> tuple[date, ...]:
    """The landing partitions the run processes (the tasks' own rule); none when its params are refused
    or it has no interval."""
    try:
        return tuple(days_to_process(dict(params), logical_date, start, end))
    except ValueError:
        return ()


def _moment(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def notify(incident: Incident, conn_id: str) -> bool:
    """Send the incident through the Apprise notifier configured by connection ``conn_id``.

    Returns whether it was handed to Apprise; ``False`` (and nothing sent) when the
    connection does not exist.
    """
    # Apprise and the providers load when a task fails, not when the DAG files are parsed
    from apprise import NotifyType  # noqa: PLC0415 (as above)

    from airflow.providers.apprise.notifications.apprise import AppriseNotifier  # noqa: PLC0415 (as above)
    from airflow.providers.common.compat.sdk import BaseHook  # noqa: PLC0415 (as above)
    from airflow.sdk.exceptions import AirflowNotFoundException  # noqa: PLC0415 (as above)

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        log.info("no Airflow connection %r: incident %s not sent anywhere", conn_id, incident.id)
        return False
    notifier = AppriseNotifier(
        title=incident.title,
        body=incident.notification_body(),
        notify_type=NotifyType.FAILURE,
        apprise_conn_id=conn_id,
    )
    # notify(), not __call__: the body is error text, not a template to render
    notifier.notify({})  # type: ignore[no-untyped-call]
    log.info("incident %s handed to Apprise (connection %r)", incident.id, conn_id)
    return True


def on_task_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of every recsys task: record, log, notify; never raises."""
    try:
        settings = _recording_settings()
        failure = failure_from_context(context)
        incident = record_failure(settings, failure, classifier=classify)
        covered_by = covering_incident(settings, failure, incident)
    except Exception as error:  # a callback that raises hides the task's own failure
        log.exception(
            "ON-CALL: the failure callback could not build the incident (%s: %s); read the task log",
            type(error).__name__,
            error,
        )
        return
    if covered_by is not None:  # one lost warehouse pages once (the build's), not once per dbt node
        log.error("%s | not sent: %s", incident.on_call_line(), _sent_with(covered_by))
        return
    log.error(incident.on_call_line())
    try:
        notify(incident, settings.alerts_conn_id)
    except Exception:
        log.exception("incident %s: the notification through %r failed", incident.id, settings.alerts_conn_id)


def _sent_with(covering: Incident) -> str:
    return (
        f"{covering.task_id} failed for the same cause in this run: its incident {covering.reference} "
        "is the page for both"
    )


def _recording_settings() -> Settings:
    """The settings to record and send the incident with. When the environment holds values recflow
    refuses (most likely the very failure being reported: every task reads the same settings), the
    incident is still recorded and sent, with those variables at their defaults, so a mistyped
    setting pages on-call like any other failure instead of leaving a bare log line."""
    settings, refused = Settings.despite_refused()
    if refused is not None:
        log.warning(
            "the settings are refused (%s): the incident is recorded with the defaults of %s",
            str(refused).replace("\n", "; "),
            ", ".join(refused.invalid),
        )
    return settings
