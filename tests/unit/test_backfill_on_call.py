"""`recflow backfill` prints the ON-CALL line of a task that failed, whatever the task.

On the on-call walk a dbt node failed a backfill and the command printed only
`transform.int_user_pin_engagement_model_build: failed`; for `land` and `audit` the ON-CALL line came
along only because it names a day. The Airflow here is a stand-in serving a finished run: its task
instances and the failed task's log as the API returns them (the log's last event is the line the
failure callback wrote).
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from recflow.stack.backfill import backfill_days
from tests.loopback import JsonHandler, airflow_stand_in

NODE = "transform.int_user_pin_engagement_model_build"
ON_CALL = (
    f"ON-CALL: recsys_warehouse.{NODE} failed (try 1, run manual__r) | why: DbtNodeFailed: model "
    "int_user_pin_engagement: Binder Error: column wieght not found | what to do: fix the model | runbook: "
    "docs/runbooks/recsys_warehouse.md#dbt-failed | incident: 7 (recflow incidents show 7)"
)
INFRA = (
    "ON-CALL: recsys_warehouse.audit failed (try 2, run manual__r) | why: WarehouseUnavailable: cannot open "
    "the warehouse postgresql://w@db:5432/w | what to do: bring it back | runbook: "
    "docs/runbooks/recsys_warehouse.md#infrastructure | incident: 8 (recflow incidents show 8)"
)


class _FinishedRun(JsonHandler):
    tasks: ClassVar[list[dict[str, object]]] = []
    logs: ClassVar[dict[str, list[str]]] = {}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        base = "/api/v2/dags/recsys_warehouse"
        if path == base:
            self.send_json(200, {"dag_id": "recsys_warehouse", "is_paused": False})
        elif path == f"{base}/dagRuns/manual__r":
            self.send_json(200, {"dag_run_id": "manual__r", "state": "failed"})
        elif path == f"{base}/dagRuns/manual__r/taskInstances":
            self.send_json(200, {"task_instances": self.tasks, "total_entries": len(self.tasks)})
        elif path.startswith(f"{base}/dagRuns/manual__r/taskInstances/") and "/logs/" in path:
            task_id = path.split("/taskInstances/", 1)[1].split("/logs/", 1)[0]
            events = [{"event": "working"}, *({"event": line} for line in self.logs.get(task_id, []))]
            self.send_json(200, {"content": events})
        else:
            self.send_json(404, {"detail": path})

    def do_POST(self) -> None:
        self.send_json(200, {"dag_run_id": "manual__r"})


def _backfill(tasks: list[dict[str, object]], logs: dict[str, list[str]]) -> list[str]:
    _FinishedRun.tasks, _FinishedRun.logs = tasks, logs
    said: list[str] = []
    with airflow_stand_in(_FinishedRun) as client:
        result = backfill_days(client, date(2026, 1, 1), date(2026, 1, 2), echo=said.append, poll=0.01)
    assert result.state == "failed"
    return said


def test_a_failed_dbt_node_prints_its_on_call_line() -> None:
    said = _backfill(
        [
            {"task_id": "land", "state": "success", "try_number": 1},
            {"task_id": NODE, "state": "failed", "try_number": 1},
            {"task_id": "check_marts", "state": "upstream_failed", "try_number": 0},
        ],
        {"land": ["staged ds=2026-01-01: 10 rows"], NODE: [f"2026-12-06T10:00:00 [error] {ON_CALL}"]},
    )
    assert said[-2:] == [f"  {NODE}: failed", f"  {NODE}: {ON_CALL}"]


def test_an_audit_on_call_line_is_printed_once() -> None:
    """A day's refusal names its day, so it is already among the day lines; an infrastructure failure
    names none, and is printed after the task's state."""
    refused = INFRA.replace(
        "WarehouseUnavailable: cannot open the warehouse", "PartitionRefused: ds=2026-01-02"
    )
    said = _backfill([{"task_id": "audit", "state": "failed", "try_number": 2}], {"audit": [refused]})
    assert sum(refused in line for line in said) == 1
    said = _backfill([{"task_id": "audit", "state": "failed", "try_number": 2}], {"audit": [INFRA]})
    assert said[-2:] == ["  audit: failed", f"  audit: {INFRA}"]
