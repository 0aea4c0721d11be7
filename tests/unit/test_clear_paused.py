"""`recflow clear` on a paused DAG says that the cleared tasks wait for its unpause (README, runbooks).

The API server is a stand-in on 127.0.0.1 that answers by path, as Airflow 3.3's does; whether the
DAG is paused is its answer, and what was cleared is what it says it cleared.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import recflow.cli.stack
from recflow.cli import main
from tests.loopback import JsonHandler, airflow_stand_in

DAG = "recsys_warehouse"
RUN = {
    "dag_run_id": "manual__2026-01-03T00:00:00+00:00",
    "state": "failed",
    "logical_date": "2026-01-03T00:00:00+00:00",
    "data_interval_start": "2026-01-02T00:00:00+00:00",
    "data_interval_end": "2026-01-03T00:00:00+00:00",
    "conf": {},
}


class _Airflow(JsonHandler):
    paused: ClassVar[bool] = True
    clears: ClassVar[list[dict[str, Any]]] = []

    def _send(self, body: dict[str, Any]) -> None:
        self.send_json(200, body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == f"/api/v2/dags/{DAG}":
            self._send({"dag_id": DAG, "is_paused": self.paused})
        elif path == f"/api/v2/dags/{DAG}/tasks":
            self._send({"tasks": [{"task_id": "land"}, {"task_id": "audit"}, {"task_id": "check_marts"}]})
        elif path == f"/api/v2/dags/{DAG}/dagRuns":
            self._send({"dag_runs": [RUN], "total_entries": 1})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.clears.append(body)
        self._send({"task_instances": [{"task_id": t} for t in body["task_ids"]]})


@pytest.fixture
def airflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[type[_Airflow]]:
    handler = type("Handler", (_Airflow,), {"paused": True, "clears": []})
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    with airflow_stand_in(handler) as client:
        monkeypatch.setattr(recflow.cli.stack, "api_client", lambda settings: client)
        yield handler


CLEAR = ["clear", DAG, "-t", "^audit$", "-s", "2026-01-03"]


def test_clearing_on_a_paused_dag_says_the_tasks_wait_for_its_unpause(
    airflow: type[_Airflow], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(CLEAR) == 0
    out, err = capsys.readouterr()
    assert [c["task_ids"] for c in airflow.clears] == [["audit"]]
    assert f"{DAG} ds=2026-01-03 run {RUN['dag_run_id']} (failed): cleared audit" in out
    assert f"{DAG} is paused" in err and f"recflow airflow dags unpause {DAG}" in err, err


def test_an_unpaused_dag_or_a_dry_run_gets_no_such_warning(
    airflow: type[_Airflow], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*CLEAR, "--dry-run"]) == 0
    assert airflow.clears[-1]["dry_run"] is True
    assert "paused" not in capsys.readouterr().err
    airflow.paused = False
    assert main(CLEAR) == 0
    assert airflow.clears[-1]["dry_run"] is False
    assert "paused" not in capsys.readouterr().err
