"""The dbt project as the ``transform`` task group: one ``dbt build`` per run, one task per node still shown.

``transform.dbt_build`` runs the whole project once (:func:`recflow.transform.run_build`, dbt's
runner in the task's process) and writes each node task's record to XCom as dbt reports its nodes
(:class:`recflow.transform.records.NodeRecords`). Each model, seed and multi-model test has its
task, as before (``<model>_model_build``, ``<seed>_seed_build``, ``<test>_test``;
:func:`recflow.transform.node_tasks`): it ends in its nodes' state, its log listing each node's line.

Those node tasks start in the triggerer (``start_from_trigger``) at the same time as the build, and
wait there for it to end (one poll of its state per run, :func:`build_ended`): the triggerer picks
them up while dbt runs, so once the build ends they end within about a second. A node that passed,
or that dbt skipped, ends in the triggerer without a worker process at all; only a node that failed
or was never finished goes on to a worker, to raise the error whose incident and ``ON-CALL:`` line
name it. They read the build's results only once it has succeeded or failed, never while it waits
for a retry, and never burn retries of their own meanwhile (astronomer-cosmos #3001, the reason
Cosmos's watcher consumers were not adopted, beside their two task start-ups each); their error is
not retried: their verdict is the build's. The price: a node's task turns green when the build
ends, not when the node does; the build's own log shows each node as it ends.

Nothing here imports dbt or Cosmos while the DAG is drawn: the graph is the compiled manifest
(``dbt parse``, at ``recflow setup``) read as JSON.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, TaskGroup, timezone
from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSkipException
from airflow.triggers.base import (
    BaseTrigger,
    StartTriggerArgs,
    TaskSkippedEvent,
    TaskSuccessEvent,
    TriggerEvent,
)
from recflow.airflow.connections import task_settings
from recflow.core.config import Settings
from recflow.core.errors import DbtNodeFailed
from recflow.core.names import TRANSFORM
from recflow.transform import NodeResult, node_tasks, verdict
from recflow.transform.build import FAILED, TaskVerdict
from recflow.transform.records import NodeRecords
from recflow.warehouse import WAREHOUSE_POOL

log = logging.getLogger(__name__)

BUILD_TASK = "dbt_build"
"""The group's one dbt invocation (``transform.dbt_build``)."""
RECORD_KEY = "dbt_task:"
"""The XCom key prefix of a node task's record, pushed by the build as each of its nodes starts and
ends: ``dbt_task:<task id in the group>`` = ``{"started": [unique_id, ...], "results": {unique_id:
NodeResult}}``. One key per task, so each task reads its nodes in one request."""


def record_key(task_id: str) -> str:
    return f"{RECORD_KEY}{task_id}"


def _record_parts(value: Any) -> tuple[dict[str, NodeResult | None], frozenset[str]]:
    """A pushed record as (results by node, nodes started); an absent record is empty."""
    if not isinstance(value, Mapping):
        return {}, frozenset()
    results = {uid: _as_result(r) for uid, r in (value.get("results") or {}).items()}
    return results, frozenset(value.get("started") or ())


class DbtBuildOperator(BaseOperator):
    """``dbt build`` of the whole project, each node's result pushed to XCom as dbt reports it.

    It fails only when dbt could not run the build, or nodes could not reach the warehouse (retried:
    another try may); a node that failed for its SQL or its data is its own task's verdict, and this
    task's log says which."""

    ui_color = "#ffe5d1"

    def __init__(self, *, node_task_ids: Mapping[str, str], heads: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_task_ids = dict(node_task_ids)
        self.heads = frozenset(heads)
        """Each task's own node (the first of its nodes)."""

    def execute(self, context: Any) -> dict[str, Any]:
        from recflow.transform import run_build  # noqa: PLC0415 (the build's modules load when it runs, not at DAG parse)

        ti = context["ti"]
        records = NodeRecords(
            self.node_task_ids,
            self.heads,
            push=lambda task_id, record: ti.xcom_push(key=record_key(task_id), value=record),
        )
        failed: list[str] = []

        def _result(result: NodeResult) -> None:
            records.result(result)
            if result.status in FAILED:
                failed.append(records.task_of(result.unique_id))

        try:
            outcome = run_build(task_settings(), on_result=_result, on_start=records.started)
        finally:
            records.close()
        log.info("dbt build ended in %.1fs: %s", outcome.seconds, outcome.statuses)
        if failed:
            log.warning(
                "%d node(s) failed; their tasks fail with dbt's error: %s",
                len(failed),
                ", ".join(f"{TRANSFORM}.{t}" for t in dict.fromkeys(failed)),
            )
        return {"statuses": outcome.statuses, "seconds": outcome.seconds}


BUILD_TIMEOUT = timedelta(minutes=30)
NODE_WAIT_TIMEOUT = 8 * BUILD_TIMEOUT
"""How long a node task waits for its run's build, deferred: the build's two tries (a retry) behind
as many runs as may wait for the one-slot warehouse pool (``max_active_runs`` 4), each at its
timeout. A node task still waiting then fails and pages: the build is stuck outside its timeout."""
BUILD_ENDED = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})
"""The build's states after which it writes no more records for this run (``up_for_retry`` is not one)."""
BUILD_RAN = frozenset({"success", "failed"})
POLL_SECONDS = {"running": 0.25, "queued": 0.25}
"""How often the triggerer asks for the build's state: 4 times a second once it is queued or
running (the node tasks end that soon after it), once a second while it waits (for the warehouse
pool, for a retry)."""
POLL_WAITING_SECONDS = 1.0

_BUILD_WATCHES: dict[tuple[str, str, str], asyncio.Future[str]] = {}
"""One poll per (DAG, run, build task) in the triggerer, however many node tasks wait on it."""


async def build_ended(dag_id: str, run_id: str, task_id: str) -> str:
    """The build's state once it has ended (:data:`BUILD_ENDED`), asking the API server through the
    triggerer; every node task of the run shares one poll."""
    key = (dag_id, run_id, task_id)
    watch = _BUILD_WATCHES.get(key)
    if watch is None:
        watch = asyncio.ensure_future(_poll_build(dag_id, run_id, task_id))
        _BUILD_WATCHES[key] = watch
        # gone once it has an answer: a run cleared later gets a fresh poll
        watch.add_done_callback(lambda _: _BUILD_WATCHES.pop(key, None))
    return await asyncio.shield(watch)


async def _poll_build(dag_id: str, run_id: str, task_id: str) -> str:
    from asgiref.sync import sync_to_async  # noqa: PLC0415 (the triggerer's own dependency, only where a trigger runs)

    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance  # noqa: PLC0415 (the Task SDK's client, only where a trigger runs)

    while True:
        states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
            dag_id=dag_id, task_ids=[task_id], run_ids=[run_id]
        )
        state = _state_of(states, run_id, task_id)
        if state in BUILD_ENDED:
            return state
        await asyncio.sleep(POLL_SECONDS.get(state, POLL_WAITING_SECONDS))


def _state_of(states: Mapping[str, Any], run_id: str, task_id: str) -> str:
    """A task's state in ``get_task_states``'s answer (``{run_id: {task_id: state}}``); ``none`` if unset."""
    return str((states.get(run_id) or {}).get(task_id) or "none")


class DbtNodeTrigger(BaseTrigger):
    """Waits for the run's build to end, reads its results for one task's nodes and ends the task:
    success or skipped right here, in the triggerer; failed or not built back on a worker
    (``execute_complete``), to raise the error."""

    def __init__(self, nodes: Sequence[str], build_task_id: str, record_key: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.nodes = tuple(nodes)
        self.build_task_id = build_task_id
        self.record_key = record_key

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{__name__}.DbtNodeTrigger",
            {"nodes": list(self.nodes), "build_task_id": self.build_task_id, "record_key": self.record_key},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async  # noqa: PLC0415 (the triggerer's own dependency, only where a trigger runs)

        from airflow.sdk.execution_time.xcom import XCom  # noqa: PLC0415 (the triggerer's XCom client, only where a trigger runs)

        ti = self.task_instance
        if ti is None:
            raise RuntimeError("DbtNodeTrigger runs for a task instance only")

        build_state = await build_ended(ti.dag_id, ti.run_id, self.build_task_id)
        if build_state not in BUILD_RAN:
            self.log.info("%s", _never_ran(self.build_task_id, build_state))
            yield TaskSkippedEvent()
            return
        value = await sync_to_async(XCom.get_one)(
            key=self.record_key, dag_id=ti.dag_id, task_id=self.build_task_id, run_id=ti.run_id, map_index=-1
        )
        results, started = _record_parts(value)
        found = verdict(self.nodes, results, started)
        for line in found.lines:
            self.log.info("%s", line)
        if found.state == "success":
            yield TaskSuccessEvent()
        elif found.state == "skipped":
            self.log.info("%s", _skip_reason(found))
            yield TaskSkippedEvent()
        else:
            yield TriggerEvent({"state": found.state})  # type: ignore[no-untyped-call]


def _never_ran(build_task_id: str, state: str) -> str:
    return f"not judged: the run's dbt build ({build_task_id}) ended {state} without building"


def _skip_reason(found: TaskVerdict) -> str:
    if found.not_reached:
        return (
            f"not judged: the run's dbt build ended before it reached {len(found.not_reached)} of its node(s); "
            f"{TRANSFORM}.{BUILD_TASK} and the task of the node it was running say why"
        )
    return "dbt skipped it: a node it depends on failed (that node's task says which)"


def _as_result(value: Any) -> NodeResult | None:
    return NodeResult.from_dict(value) if isinstance(value, Mapping) else None


class DbtNodeOperator(BaseOperator):
    """One model, seed or multi-model test of the run's build: its state is its nodes' results."""

    ui_color = "#fff3e8"

    def __init__(
        self,
        *,
        nodes: Sequence[str],
        node_name: str,
        node_kind: str,
        build_task_id: str,
        node_task_id: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.node_task_id = node_task_id
        self.nodes = tuple(nodes)
        self.node_name = node_name
        self.node_kind = node_kind
        self.build_task_id = build_task_id
        self.start_from_trigger = True
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls=f"{__name__}.DbtNodeTrigger",
            trigger_kwargs={
                "nodes": list(self.nodes),
                "build_task_id": build_task_id,
                "record_key": record_key(node_task_id),
            },
            next_method="execute_complete",
            # bounded by the task's execution_timeout (NODE_WAIT_TIMEOUT)
            timeout=None,
        )

    def execute(self, context: Any) -> None:
        """On a worker (``airflow dags test``, or back from the trigger): the same verdict, from XCom."""
        ti = context["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, task_ids=[self.build_task_id], run_ids=[ti.run_id])
        build_state = _state_of(states, ti.run_id, self.build_task_id)
        if build_state not in BUILD_ENDED:
            # ``airflow dags test`` runs every ready task in one process, this one maybe before the build
            log.info("the run's dbt build (%s) is %s: looking again in 1 s", self.build_task_id, build_state)
            raise AirflowRescheduleException(timezone.utcnow() + timedelta(seconds=1))  # type: ignore[no-untyped-call]
        if build_state not in BUILD_RAN:
            raise AirflowSkipException(_never_ran(self.build_task_id, build_state))
        results, started = _record_parts(
            ti.xcom_pull(task_ids=self.build_task_id, key=record_key(self.node_task_id))
        )
        found = verdict(self.nodes, results, started)
        for line in found.lines:
            log.info("%s", line)
        if found.state == "skipped":
            raise AirflowSkipException(_skip_reason(found))
        if found.state != "success":
            raise self._error(found)

    def execute_complete(self, context: Any, event: Any = None) -> None:
        self.execute(context)

    def _error(self, found: TaskVerdict) -> DbtNodeFailed:
        build = self.build_task_id
        if found.failed:
            first = found.failed[0]
            what = "its test " if first.unique_id != self.nodes[0] else ""
            return DbtNodeFailed(
                f"{self.node_kind} {self.node_name}: {what}{first.unique_id} {first.status} in the run's dbt build "
                f"({build}): {first.message}",
                node=self.node_name,
                failed=[r.unique_id for r in found.failed],
                # the build failed for the lost warehouse (run_build) and its incident pages for it
                paged_by=build
                if not found.in_flight and all(r.lost_the_warehouse for r in found.failed)
                else None,
            )
        return DbtNodeFailed(
            f"{self.node_kind} {self.node_name}: the run's dbt build ({build}) ended while dbt was running "
            f"{', '.join(found.in_flight)} (killed, lost its worker, or timed out): it was never finished; "
            f"{build}'s log says how it ended",
            node=self.node_name,
            failed=list(found.in_flight),
        )


def dbt_task_group(group_id: str = TRANSFORM) -> TaskGroup:
    """The ``transform`` group of the compiled project: the build, and beside it a task per node.

    Drawn from the checkout's own compiled manifest, which no environment variable moves: the DAG file
    reads no settings when it is parsed, so a refused or missing one fails each task when it runs
    (and pages) instead of making the DAG vanish from Airflow.

    The node tasks start with the build (not after it), in the triggerer, and wait there for it to
    end: the triggerer's pick-up (a loop of 1 s, ~3 s cold) is paid while dbt runs, not after.
    So each is a root and a leaf of the group, like the build: whatever runs after the group waits
    for all of them, and clearing the build does not clear them (``-t '^transform\\.'`` does)."""
    tasks = node_tasks(Settings.from_env({}).dbt_manifest_path)  # an empty environment: the checkout's
    with TaskGroup(group_id=group_id) as group:
        DbtBuildOperator(
            task_id=BUILD_TASK,
            node_task_ids={uid: t.task_id for t in tasks for uid in t.nodes},
            heads=[t.nodes[0] for t in tasks],
            pool=WAREHOUSE_POOL,
            # a day's build is seconds; a hung one must fail and page
            execution_timeout=BUILD_TIMEOUT,
        )
        for t in tasks:
            DbtNodeOperator(
                task_id=t.task_id,
                nodes=t.nodes,
                node_name=t.name,
                node_kind=t.kind,
                build_task_id=f"{group_id}.{BUILD_TASK}",
                node_task_id=t.task_id,
                # its verdict is read once the build has succeeded or failed (not while it waits for a
                # retry); its error is a verdict (DbtNodeFailed, not retryable): only a lost worker
                # is tried again
                execution_timeout=NODE_WAIT_TIMEOUT,
            )
    return group
