"""``recflow backfill --from D1 --to D2``: a range of days through the scheduler in one run.

Airflow's own backfill makes one run per day: each day pays the scheduler's hops and a dbt
build of its own (``make bench-overhead`` measured 1,431 s for 30 days whose work takes 105 s).
This triggers one run of ``recsys_warehouse`` with the params ``reload_from``/``reload_to``:
``land`` stages every day of the range into a staging table of its own, ``audit`` judges and
publishes each day on its own (a refused day is refused alone: the others are published, and
the task fails naming it), then the marts are built once for the whole range and checked.

Progress is shown per day, from the ``land`` and ``audit`` logs as the scheduler runs them, then
each task as it ends. The command waits for the run and exits 0 when it succeeded, 1 when it
failed (the failed tasks and where their incidents are are printed).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from recflow.core.errors import ConfigError
from recflow.core.names import WAIT_FOR_LANDING, WAREHOUSE_DAG
from recflow.oncall.record import ON_CALL
from recflow.stack.api import TERMINAL_RUN_STATES, AirflowApiError, AirflowClient

Echo = Callable[[str], None]
PER_DAY_TASKS = ("land", "audit")
"""The tasks that log one line per day (``staged ds=…``, ``[i/n] ds=… audited``)."""
DAY = re.compile(r"\bds=\d{4}-\d{2}-\d{2}\b")


@dataclass
class BackfillResult:
    run_id: str
    state: str
    seconds: float
    tasks: dict[str, str] = field(default_factory=dict)
    days_logged: int = 0
    waited: bool = False
    """Whether the run waited for its landing partitions (the sensor rescheduled itself)."""

    @property
    def failed_tasks(self) -> list[str]:
        """The tasks that failed themselves (where the incidents are)."""
        return sorted(t for t, s in self.tasks.items() if s == "failed")

    @property
    def not_run(self) -> int:
        """How many tasks did not run because one before them failed (``upstream_failed``)."""
        return sum(1 for s in self.tasks.values() if s == "upstream_failed")


def backfill_conf(first: date, last: date, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run's conf: the range (``ConfigError`` when reversed) and any audit param given."""
    if last < first:
        raise ConfigError(f"--to {last} is before --from {first}")
    return {"reload_from": first.isoformat(), "reload_to": last.isoformat(), **(extra or {})}


def _run(client: AirflowClient, run_id: str) -> dict[str, Any]:
    return client.run(WAREHOUSE_DAG, run_id) or {"state": "queued"}


def backfill_days(
    client: AirflowClient,
    first: date,
    last: date,
    *,
    extra: Mapping[str, Any] | None = None,
    echo: Echo = print,
    poll: float = 2.0,
    timeout: float = 6 * 3600.0,
) -> BackfillResult:
    """Trigger the one run for ``first..last`` and follow it to its end (see the module's doc)."""
    conf = backfill_conf(first, last, extra)
    dag = client.dag(WAREHOUSE_DAG)
    if dag is None:
        raise ConfigError(
            f"Airflow has no DAG {WAREHOUSE_DAG} yet: is the DAG processor running (`recflow up`)?"
        )
    if dag.get("is_paused"):
        raise ConfigError(
            f"{WAREHOUSE_DAG} is paused, so its run would wait: unpause it (UI, or "
            f"`recflow airflow dags unpause {WAREHOUSE_DAG}`) and run this again"
        )
    started = time.monotonic()
    try:
        run_id = str(client.trigger(WAREHOUSE_DAG, conf)["dag_run_id"])
    except AirflowApiError as exc:
        if exc.status not in (400, 422):
            raise
        # the DAG's params refused the conf before a run was made (docs/runbooks: "Params refused")
        raise ConfigError(
            f"Airflow refused the run, none was made: {exc.reason}. The conf sent: {json.dumps(conf)}"
        ) from exc
    n_days = (last - first).days + 1
    echo(
        f"{WAREHOUSE_DAG} run {run_id}: {first}..{last} ({n_days} day{'s' if n_days != 1 else ''}) in one run; each day landed and audited on its own, the marts built once"
    )
    result = BackfillResult(run_id=run_id, state="queued", seconds=0.0)
    lines_seen: dict[tuple[str, int], int] = {}
    while True:
        run = _run(client, run_id)
        for ti in client.task_instances(WAREHOUSE_DAG, run_id):
            task_id, state = ti["task_id"], ti.get("state") or "none"
            key = (task_id, int(ti.get("try_number") or 1))
            # a try's log is read while it runs, and once more when it has ended: not on every poll after
            read_log = state == "running" or (
                state in ("success", "failed", "up_for_retry") and result.tasks.get(task_id) != state
            )
            newly_failed = state == "failed" and result.tasks.get(task_id) != state
            per_day = task_id in PER_DAY_TASKS and read_log
            # one request for the log, whether for its day lines or a failure's ON-CALL line
            log = client.task_log(WAREHOUSE_DAG, run_id, task_id, key[1]) if per_day or newly_failed else []
            if per_day:
                day_lines = [line for line in log if DAY.search(line)]
                for line in day_lines[lines_seen.get(key, 0) :]:
                    echo(f"  {task_id}: {line}")
                    result.days_logged += 1
                lines_seen[key] = len(day_lines)
            if task_id == WAIT_FOR_LANDING and state == "up_for_reschedule" and not result.waited:
                result.waited = True  # said once: the sensor looks again every few minutes for hours
                echo(_waiting(client, run_id, key[1], first, last))
            ended = state in ("success", "failed", "upstream_failed", "up_for_retry")
            # a passing dbt node is one line among ~15: shown only when it is not a success; a task that
            # did not run after a failure is counted in the last line, not listed one by one before the
            # failure it follows (the API lists a run's tasks by id, not in the order they ended)
            quiet = state == "upstream_failed" or (
                task_id.startswith("transform.") and not task_id.endswith(".dbt_build") and state == "success"
            )
            if result.tasks.get(task_id) != state and ended and not quiet:
                echo(f"  {task_id}: {state}")
                on_call = _on_call_line(log) if newly_failed else None  # what broke, why, what to do
                if on_call and not (per_day and DAY.search(on_call)):  # else echoed as a day's line
                    echo(f"  {task_id}: {on_call}")
            result.tasks[task_id] = state
        if run["state"] in TERMINAL_RUN_STATES:
            break
        if time.monotonic() - started > timeout:
            raise TimeoutError(
                f"{WAREHOUSE_DAG} run {run_id} did not finish within {timeout:.0f}s; it goes on in Airflow"
            )
        time.sleep(poll)
    result.state = run["state"]
    result.seconds = time.monotonic() - started
    return result


def _on_call_line(log: list[str]) -> str | None:
    """The ``ON-CALL:`` line a failed try's log ends with (recflow.airflow.alerts), from its start."""
    said = [line for line in log if ON_CALL in line]
    return said[-1][said[-1].index(ON_CALL) :] if said else None


def _waiting(client: AirflowClient, run_id: str, try_number: int, first: date, last: date) -> str:
    """What the run waits for: the sensor's own line (the first partition without ``_SUCCESS``)."""
    said = [
        line
        for line in client.task_log(WAREHOUSE_DAG, run_id, WAIT_FOR_LANDING, try_number)
        if "waiting for" in line
    ]
    what = (
        said[-1].split("waiting for", 1)[1].strip() if said else f"the landing partitions of {first}..{last}"
    )
    return (
        f"  {WAIT_FOR_LANDING}: waiting for {what}. Not every day has landed yet (docs/runbooks/"
        "recsys_warehouse.md, Landing late); stopping this command leaves the run in Airflow"
    )
