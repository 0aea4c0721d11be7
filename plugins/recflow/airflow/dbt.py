"""The dbt project as the ``transform`` task group: one ``dbt build`` per run, one task per node still shown.

``transform.dbt_build`` runs the whole project once (:func:`recflow.transform.run_build`, dbt's
runner in the task's process) and pushes each node's result to XCom the moment dbt reports it.
Then each model, seed and multi-model test has its task, as before (``<model>_model_build``,
``<seed>_seed_build``, ``<test>_test``; :func:`recflow.transform.node_tasks`): it reads its nodes'
results and ends in that node's state, its log listing each node's line.

Those per-node tasks start in the triggerer (``start_from_trigger``): a node that passed, or that
dbt skipped, ends there without a worker process at all, so a day's ~15 nodes cost no task
start-ups; only a node that failed or was never built goes on to a worker, to raise the error
whose incident and ``ON-CALL:`` line name it. They run once the build has succeeded or failed
(``one_done``; skipped when it never ran), so none burns retries while the build is up for retry (astronomer-cosmos
#3001, the reason Cosmos's watcher consumers were not adopted, beside their two task start-ups
each), and their error is not retried: their verdict is the build's. The price: a node's task turns green
when the build ends, not when the node does; the build's own log shows each node as it ends.

Nothing here imports dbt or Cosmos while the DAG is drawn: the graph is the compiled manifest
(``dbt parse``, at ``recflow setup``) read as JSON.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, TaskGroup
from airflow.sdk.exceptions import AirflowSkipException
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

    It fails only when dbt could not run the build (retried: another try may); a node that failed
    is its own task's verdict, and this task's log says which."""

    ui_color = "#ffe5d1"

    def __init__(self, *, node_task_ids: Mapping[str, str], heads: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_task_ids = dict(node_task_ids)
        self.heads = frozenset(heads)
        """Each task's own node (the first of its nodes)."""

    def execute(self, context: Any) -> dict[str, Any]:
        from recflow.transform import run_build  # noqa: PLC0415 (the build's modules load when it runs, not at DAG parse)

        ti = context["ti"]
        failed: list[str] = []
        records: dict[str, dict[str, Any]] = {}

        def _record(unique_id: str) -> tuple[str, dict[str, Any]]:
            task_id = self.node_task_ids.get(unique_id, unique_id)
            return task_id, records.setdefault(task_id, {"started": [], "results": {}})

        def _started(unique_id: str) -> None:
            # only a task's own node (its model, seed or test): a build killed under it then names
            # it; a push per test too would cost the build ~1 s of round trips
            if unique_id in self.heads:
                task_id, record = _record(unique_id)
                record["started"].append(unique_id)
                ti.xcom_push(key=record_key(task_id), value=record)

        def _push(result: NodeResult) -> None:
            task_id, record = _record(result.unique_id)
            record["results"][result.unique_id] = result.as_dict()
            ti.xcom_push(key=record_key(task_id), value=record)
            if result.status in FAILED:
                failed.append(task_id)

        outcome = run_build(task_settings(), on_result=_push, on_start=_started)
        log.info("dbt build ended in %.1fs: %s", outcome.seconds, outcome.statuses)
        if failed:
            log.warning(
                "%d node(s) failed; their tasks fail with dbt's error: %s",
                len(failed),
                ", ".join(f"{TRANSFORM}.{t}" for t in dict.fromkeys(failed)),
            )
        return {"statuses": outcome.statuses, "seconds": outcome.seconds}


class DbtNodeTrigger(BaseTrigger):
    """Reads the build's results for one task's nodes and ends the task: success or skipped right here,
    in the triggerer; failed or not built back on a worker (``execute_complete``), to raise the error."""

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
            timeout=timedelta(minutes=10),
        )

    def execute(self, context: Any) -> None:
        """On a worker (``airflow dags test``, or back from the trigger): the same verdict, from XCom."""
        ti = context["ti"]
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
            )
        return DbtNodeFailed(
            f"{self.node_kind} {self.node_name}: the run's dbt build ({build}) ended while dbt was running "
            f"{', '.join(found.in_flight)} (killed, lost its worker, or timed out): it was never finished; "
            f"{build}'s log says how it ended",
            node=self.node_name,
            failed=list(found.in_flight),
        )


def dbt_task_group(settings: Settings, group_id: str = TRANSFORM) -> TaskGroup:
    """The ``transform`` group of the compiled project: the build, then a task per node."""
    tasks = node_tasks(settings.dbt_manifest_path)
    with TaskGroup(group_id=group_id) as group:
        build = DbtBuildOperator(
            task_id=BUILD_TASK,
            node_task_ids={uid: t.task_id for t in tasks for uid in t.nodes},
            heads=[t.nodes[0] for t in tasks],
            pool=WAREHOUSE_POOL,
            # a day's build is seconds; a hung one must fail and page
            execution_timeout=timedelta(minutes=30),
        )
        for t in tasks:
            build >> DbtNodeOperator(
                task_id=t.task_id,
                nodes=t.nodes,
                node_name=t.name,
                node_kind=t.kind,
                build_task_id=f"{group_id}.{BUILD_TASK}",
                node_task_id=t.task_id,
                # once the build has succeeded or failed (not while it waits for a retry); skipped when it
                # never ran (the audit refused the day). Its error is a verdict (DbtNodeFailed, not
                # retryable): only a lost worker is tried again.
                trigger_rule="one_done",
                execution_timeout=timedelta(minutes=5),
            )
    return group
