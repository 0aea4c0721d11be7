"""A warehouse server that goes away in the middle of ``dbt build`` is not the models' verdict.

On the Spark walk the Thrift server was killed 8 s into the build: dbt went on, every node after
it failed with dbt-spark's ``Database Error … failed to connect: TTransportException``, the build task
ended green, and each node's task paged as a model to fix in a pull request, without a retry. The
build now fails as the infrastructure failure it is (``WarehouseUnavailable``, retried: its retry
rebuilds every node), and a node task that still reports such a result (the build's retries spent)
pages to the infrastructure section.

dbt's runner is replaced by one that reports the nodes as dbt reported them on that walk (the
messages are dbt-spark's, copied from its log); a real server killed mid-build is what the walk did.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dbt.cli.main
import pytest

from recflow.core import errors
from recflow.core.config import Settings
from recflow.oncall.incidents import TaskFailure, build_incident, classify
from recflow.transform import NodeResult, run_build

LOST = "Database Error\n  failed to connect: TTransportException: TSocket read 0 bytes"
"""What dbt-spark 1.11 said for a model whose Thrift server had been killed."""
SQL_ERROR = (
    "Runtime Error in model fct_engagements\n  [UNRESOLVED_COLUMN] A column `wieght` cannot be resolved"
)


def _event(name: str, unique_id: str, status: str = "", message: str = "") -> Any:
    result = SimpleNamespace(
        status=status, message=message, execution_time=0.1, num_failures=None, adapter_response={}
    )
    node = SimpleNamespace(unique_id=unique_id, node_relation=None)
    return SimpleNamespace(
        info=SimpleNamespace(name=name), data=SimpleNamespace(node_info=node, run_result=result)
    )


def _runner(reports: list[tuple[str, str, str]]) -> type:
    class Runner:
        def __init__(self, callbacks: list[Any]) -> None:
            self.callbacks = callbacks

        def invoke(self, args: list[str]) -> Any:
            for unique_id, status, message in reports:
                for callback in self.callbacks:
                    callback(_event("NodeStart", unique_id))
                    callback(_event("NodeFinished", unique_id, status, message))
            return SimpleNamespace(exception=None, success=False)

    return Runner


@pytest.fixture
def server_warehouse(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "RECFLOW_HOME": str(tmp_path / "home"),
            "RECFLOW_WAREHOUSE_URL": "hive://recflow@127.0.0.1:10000/default",
        }
    )


def _build(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, reports: list[tuple[str, str, str]]
) -> list[NodeResult]:
    monkeypatch.setattr(dbt.cli.main, "dbtRunner", _runner(reports))
    handed: list[NodeResult] = []
    run_build(settings, on_result=handed.append)
    return handed


def test_nodes_that_lost_the_warehouse_fail_the_build_for_a_retry(
    server_warehouse: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = [
        ("model.recflow.stg_events", "success", ""),
        ("model.recflow.fct_engagements", "error", LOST),
        ("model.recflow.training_interactions", "error", LOST),
    ]
    handed: list[NodeResult] = []
    monkeypatch.setattr(dbt.cli.main, "dbtRunner", _runner(reports))
    with pytest.raises(errors.WarehouseUnavailable) as raised:
        run_build(server_warehouse, on_result=handed.append)
    assert [r.unique_id for r in handed] == [uid for uid, _, _ in reports], "every node is still recorded"
    message = str(raised.value)
    assert "2 node(s) could not reach it" in message
    assert (
        "model.recflow.fct_engagements: failed to connect: TTransportException: TSocket read 0 bytes"
        in message
    ), "the line that says why, not dbt's 'Database Error'"


QUOTING = (
    'Runtime Error in model fct_engagements\n  Binder Error: Referenced column "wieght" not found\n'
    "  LINE 3: where note <> 'Connection refused' and wieght > 0"
)
"""A model's own error whose quoted SQL holds a string that reads like a lost server."""
STAGE = (
    "Runtime Error in model fct_engagements\n  Job aborted due to stage failure: Task 3 in stage 7.0 failed: "
    "FetchFailed: io.netty.channel.AbstractChannel$AnnotatedConnectException: Connection refused: /10.0.0.5:7337"
)
"""Spark's executors failing a shuffle between them: the Thrift server answered."""


@pytest.mark.parametrize("message", [SQL_ERROR, QUOTING, STAGE], ids=["sql", "quoted-sql", "stage-failure"])
def test_a_model_whose_sql_or_job_fails_stays_the_models_verdict(
    server_warehouse: Settings, monkeypatch: pytest.MonkeyPatch, message: str
) -> None:
    handed = _build(server_warehouse, monkeypatch, [("model.recflow.fct_engagements", "error", message)])
    assert [r.status for r in handed] == ["error"]


def test_a_node_task_that_reports_a_lost_warehouse_pages_infrastructure(settings: Settings) -> None:
    """The build's retries spent on a server still down: its node tasks report dbt's error, and the
    incident sends on-call to the server, not to the model."""
    for message, anchor, kind in (
        (LOST, "#infrastructure", "infrastructure"),
        (SQL_ERROR, "#dbt-failed", "transform"),
    ):
        error = errors.DbtNodeFailed(
            f"model fct_engagements: model.recflow.fct_engagements error in the run's dbt build: {message}",
            node="fct_engagements",
            failed=["model.recflow.fct_engagements"],
        )
        failure = TaskFailure(
            "recsys_warehouse", "transform.fct_engagements_model_build", "r", 1, error=error
        )
        incident = build_incident(settings, failure)
        assert incident.runbook.endswith(anchor), message
        assert classify(error) == kind
