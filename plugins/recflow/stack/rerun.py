"""Re-run days: clear tasks of the runs that processed them, through Airflow's REST API.

What the runbooks tell on-call to do once a cause is fixed (``recflow clear``). Airflow 3.3's
``airflow tasks clear -t REGEX`` does not do it: its help says regex, but it matches ``-t`` as
a substring of the task id (``SerializedDAG.partial_subset``), so ``-t '^land$'`` matches no
task, clears nothing, and exits 0. Here the regex is matched against the DAG's task ids with
:func:`re.search`, the runs are chosen by the days they processed, by the rule the tasks
themselves follow (:func:`recflow.core.days.days_to_process`): a run of day D (scheduled,
Airflow's backfill, or triggered by hand for D), and a run of a range that holds D (``recflow
backfill``, a reload with ``reload_from``/``reload_to``: clearing a task there re-runs it for
every day of the range). Of the runs that processed a day, the latest (by ``run_after``) is
cleared; the earlier ones are listed as left (``--run ID`` clears one of them). Each run is cleared with ``clearTaskInstances``, the request the UI's "Clear" sends. Nothing matched
is an error, never a silent success.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from recflow.core.days import days_to_process
from recflow.core.errors import ConfigError, ParamsError
from recflow.core.names import TRAINING_DAG
from recflow.stack.api import AirflowClient


@dataclass(frozen=True)
class Cleared:
    """One run's cleared task instances."""

    run_id: str
    days: list[date]
    state_before: str
    task_ids: list[str]
    superseded_by: str | None = None
    """A later run that processed this run's days in the range and was cleared instead; nothing of this
    run was cleared."""

    @property
    def days_label(self) -> str:
        """``ds=D``, ``ds=D1..D2 (n days)`` for a range, empty for a run of no day."""
        if not self.days:
            return ""
        if len(self.days) == 1:
            return f"ds={self.days[0]}"
        return f"ds={self.days[0]}..{self.days[-1]} ({len(self.days)} days)"


def matching_tasks(task_ids: list[str], pattern: str) -> list[str]:
    """The task ids that ``pattern`` (a regular expression, searched) matches; refuse a pattern that
    matches none, naming the DAG's tasks."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--task-regex {pattern!r} is not a regular expression: {exc}") from exc
    matched = [t for t in task_ids if regex.search(t)]
    if not matched:
        raise ConfigError(
            f"--task-regex {pattern!r} matches no task; the tasks are: {', '.join(sorted(task_ids))}"
        )
    return matched


def clear_days(
    client: AirflowClient,
    dag_id: str,
    pattern: str,
    first: date,
    last: date,
    *,
    downstream: bool,
    only_failed: bool = False,
    dry_run: bool = False,
) -> list[Cleared]:
    """Clear the tasks ``pattern`` matches (and, with ``downstream``, what follows them) in every run of
    ``dag_id`` that processed a day in ``[first, last]``; the scheduler then runs them again."""
    check_days(first, last)
    tasks = _tasks(client, dag_id, pattern)
    start = datetime.combine(first, time(), tzinfo=UTC)
    end = datetime.combine(last, time(), UTC) + timedelta(days=1)
    matching = [
        # a run of day D: its logical date is D
        *client.runs_where(dag_id, logical_date_gte=start.isoformat(), logical_date_lt=end.isoformat()),
        # a range run (recflow backfill, a reload): no logical date, the range in its conf
        *client.runs_where(dag_id, conf_contains="reload_from"),
        # a run triggered with no logical date: the day of its interval, which ends before it ran
        *client.runs_where(
            dag_id, run_after_gte=start.isoformat(), run_after_lt=(end + timedelta(days=1)).isoformat()
        ),
    ]
    candidates = {r["dag_run_id"]: r for r in matching}
    processed = [(_days(r), r) for r in candidates.values()]
    runs = [(days, r) for days, r in processed if any(first <= d <= last for d in days)]
    runs.sort(key=lambda found: (found[0][0], _after(found[1])))
    if not runs:
        if dag_id == TRAINING_DAG:  # the warehouse's asset triggers it: its runs process no day of their own
            raise ConfigError(
                f"{dag_id} has no run for a day in {first}..{last}: nothing to clear. Its runs follow the "
                f"warehouse's publications rather than days: clear one by its id, `recflow clear {dag_id} -t "
                f"'{pattern}' --run latest` (or --run RUN_ID, as the UI lists them)"
            )
        raise ConfigError(
            f"no run of {dag_id} processed a day in {first}..{last}: nothing to clear. To run such a day "
            f"for the first time: recflow airflow dags trigger {dag_id} --logical-date {first}T00:00:00+00:00"
        )
    # each day again once, in the latest run that processed it: an earlier run of the day (a backfill
    # that refused it, before a run triggered to accept it) would run again with its own conf, refuse the
    # day again and page, and the two runs would land the day at once
    latest: dict[date, dict[str, Any]] = {}
    for days, run in runs:
        for day in (d for d in days if first <= d <= last):
            if day not in latest or _after(run) >= _after(latest[day]):
                latest[day] = run
    chosen = {run["dag_run_id"] for run in latest.values()}
    return [
        _clear(client, dag_id, run, days, tasks, downstream, only_failed, dry_run)
        if run["dag_run_id"] in chosen
        else _left(run, days, next(latest[d] for d in days if d in latest)["dag_run_id"])
        for days, run in runs
    ]


def _after(run: dict[str, Any]) -> tuple[str, str]:
    """The order runs were made in: ``run_after`` (when a run was scheduled or triggered), then the id."""
    moment = _moment(run.get("run_after"))
    return (moment.isoformat() if moment else "", str(run["dag_run_id"]))


def _left(run: dict[str, Any], days: list[date], by: str) -> Cleared:
    return Cleared(run["dag_run_id"], days, str(run.get("state")), [], superseded_by=by)


def check_days(first: date, last: date) -> None:
    """Refuse a reversed range of days (the command checks it before it asks Airflow anything)."""
    if last < first:
        raise ConfigError(f"--end-date {last} is before --start-date {first}")


def clear_run(
    client: AirflowClient,
    dag_id: str,
    pattern: str,
    run_id: str,
    *,
    downstream: bool,
    only_failed: bool = False,
    dry_run: bool = False,
) -> Cleared:
    """Clear the tasks ``pattern`` matches in one run (``latest``: the DAG's most recent run)."""
    tasks = _tasks(client, dag_id, pattern)
    run = next(iter(client.runs(dag_id)), None) if run_id == "latest" else client.run(dag_id, run_id)
    if run is None:
        recent = ", ".join(r["dag_run_id"] for r in client.runs(dag_id)[:5]) or "none"
        raise ConfigError(f"{dag_id} has no run {run_id!r}; its most recent runs: {recent}")
    return _clear(client, dag_id, run, _days(run), tasks, downstream, only_failed, dry_run)


def _tasks(client: AirflowClient, dag_id: str, pattern: str) -> list[str]:
    if client.dag(dag_id) is None:
        raise ConfigError(f"there is no DAG {dag_id!r} in this Airflow")
    return matching_tasks(client.task_ids(dag_id), pattern)


def _clear(
    client: AirflowClient,
    dag_id: str,
    run: dict[str, Any],
    days: list[date],
    tasks: list[str],
    downstream: bool,
    only_failed: bool,
    dry_run: bool,
) -> Cleared:
    instances = client.clear_task_instances(
        dag_id, run["dag_run_id"], tasks, downstream=downstream, only_failed=only_failed, dry_run=dry_run
    )
    return Cleared(
        run_id=run["dag_run_id"],
        days=days,
        state_before=str(run.get("state")),
        task_ids=sorted(str(ti["task_id"]) for ti in instances),
    )


def _days(run: dict[str, Any]) -> list[date]:
    """The days a run processed, by its conf, logical date and data interval (none for a run that names
    no day, such as one triggered by an asset event)."""
    try:
        return days_to_process(
            dict(run.get("conf") or {}),
            _moment(run.get("logical_date")),
            _moment(run.get("data_interval_start")),
            _moment(run.get("data_interval_end")),
        )
    except (ParamsError, ValueError):
        return []


def _moment(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)).astimezone(UTC) if value else None
