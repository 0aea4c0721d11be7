"""`recflow clear` over many days clears every run that processed them, however many, and finds an old
range run by a day it reloaded or by its id; a run's task instances and a DAG's backfills are listed whole.

Airflow's API pages every list: ``[api] maximum_page_limit`` (100 by default) cuts a larger ``limit`` to
it without a word, and a list asked for with no limit gets ``fallback_page_limit`` (50). The API server
here is a stand-in on 127.0.0.1 that pages and filters the way Airflow 3.3's does (``limit``,
``offset``, ``order_by``, ``logical_date_gte``/``_lt``, ``run_after_gte``/``_lt``, ``conf_contains`` on the conf's
text); the runs it holds are the test's own, so what should be cleared is known without recflow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

import recflow.cli.stack
import recflow.stack.rerun
from recflow.cli import main
from recflow.stack.api import AirflowClient
from tests.loopback import JsonHandler, airflow_stand_in

DAG = "recsys_warehouse"
FIRST_DAY = date(2026, 1, 1)
DAYS = 250


def _at(day: date) -> str:
    return datetime.combine(day, datetime.min.time(), UTC).isoformat()


def _daily(i: int) -> dict[str, Any]:
    day = FIRST_DAY + timedelta(days=i)
    return {
        "dag_run_id": f"scheduled__{_at(day)}",
        "state": "success",
        "logical_date": _at(day),
        "data_interval_start": _at(day),
        "data_interval_end": _at(day + timedelta(days=1)),
        "run_after": _at(day + timedelta(days=1)),
        "conf": {},
    }


RELOAD = {  # the oldest run: a reload of December, triggered on the first day, so never among the recent
    "dag_run_id": "manual__reload-december",
    "state": "success",
    "logical_date": None,
    "data_interval_start": _at(date(2025, 12, 31)),
    "data_interval_end": _at(FIRST_DAY),
    "run_after": _at(FIRST_DAY),
    "conf": {"reload_from": "2025-12-01", "reload_to": "2025-12-31"},
}
RUNS = [RELOAD, *(_daily(i) for i in range(DAYS))]  # in id order
TASKS = ["land", "audit", *(f"check_{i}" for i in range(128))]
BACKFILLS = [{"id": i, "completed_at": None if i == 119 else _at(FIRST_DAY)} for i in range(120)]


def _selected(run: dict[str, Any], query: dict[str, str]) -> bool:
    for name, value in query.items():
        field, _, op = name.rpartition("_")
        if name == "conf_contains":
            if value not in json.dumps(run["conf"]):
                return False
        elif op in ("gte", "lt"):
            if run[field] is None:
                return False
            moment, bound = datetime.fromisoformat(run[field]), datetime.fromisoformat(value)
            if (op == "gte" and moment < bound) or (op == "lt" and moment >= bound):
                return False
    return True


class _Airflow(JsonHandler):
    cleared: ClassVar[list[str]] = []

    def _page(self, key: str, items: list[dict[str, Any]], query: dict[str, str]) -> None:
        limit = min(int(query.get("limit", 50)), 100)
        offset = int(query.get("offset", 0))
        self.send_json(200, {key: items[offset : offset + limit], "total_entries": len(items)})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == f"/api/v2/dags/{DAG}":
            self.send_json(200, {"dag_id": DAG, "is_paused": False})
        elif url.path == f"/api/v2/dags/{DAG}/tasks":
            self.send_json(200, {"tasks": [{"task_id": t} for t in TASKS]})
        elif url.path == f"/api/v2/dags/{DAG}/dagRuns":
            filters = {k: v for k, v in query.items() if k not in ("limit", "offset", "order_by")}
            runs = [r for r in RUNS if _selected(r, filters)]
            order = query.get("order_by", "id")
            if order.lstrip("-") != "id":
                runs.sort(key=lambda r: r[order.lstrip("-")] or "")
            self._page("dag_runs", runs[::-1] if order.startswith("-") else runs, query)
        elif url.path.startswith(f"/api/v2/dags/{DAG}/dagRuns/") and url.path.count("/") == 6:
            run_id = unquote(url.path.rsplit("/", 1)[1])
            found = [r for r in RUNS if r["dag_run_id"] == run_id]
            if found:
                self.send_json(200, found[0])
            else:
                self.send_json(
                    404, {"detail": f"The DagRun with dag_id: `{DAG}` and run_id: `{run_id}` was not found"}
                )
        elif url.path == "/api/v2/backfills" and query["dag_id"] == DAG:
            self._page("backfills", BACKFILLS, query)
        elif url.path.endswith("/taskInstances"):
            self._page("task_instances", [{"task_id": t, "state": "success"} for t in TASKS], query)
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["only_failed"]:  # every task instance here succeeded: none is failed
            self.send_json(200, {"task_instances": []})
            return
        self.cleared.append(body["dag_run_id"])
        self.send_json(200, {"task_instances": [{"task_id": t} for t in body["task_ids"]]})


@pytest.fixture
def airflow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[AirflowClient, type[_Airflow]]]:
    handler = type("Handler", (_Airflow,), {"cleared": []})
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    with airflow_stand_in(handler) as client:
        monkeypatch.setattr(recflow.cli.stack, "api_client", lambda settings: client)
        yield client, handler


def test_clearing_250_days_clears_each_of_their_250_runs(
    airflow: tuple[AirflowClient, type[_Airflow]],
) -> None:
    _, handler = airflow
    last = FIRST_DAY + timedelta(days=DAYS - 1)
    assert main(["clear", DAG, "-t", "^audit$", "-s", str(FIRST_DAY), "-e", str(last)]) == 0
    assert sorted(handler.cleared) == sorted(r["dag_run_id"] for r in RUNS[1:])


@pytest.mark.parametrize(
    "which",
    [["-s", "2025-12-15"], ["--run", RELOAD["dag_run_id"]]],
    ids=["by-a-day-it-reloaded", "by-its-id"],
)
def test_an_old_range_run_is_found(
    airflow: tuple[AirflowClient, type[_Airflow]], capsys: pytest.CaptureFixture[str], which: list[str]
) -> None:
    """The reload is older than the 100 runs the recent list holds: found by a day it reloaded, and
    by its id (`--run`, read from the API by id)."""
    _, handler = airflow
    assert main(["clear", DAG, "-t", "^audit$", *which]) == 0
    assert handler.cleared == [RELOAD["dag_run_id"]]
    assert "ds=2025-12-01..2025-12-31 (31 days)" in capsys.readouterr().out


def test_a_run_that_does_not_exist_is_refused_with_the_recent_ones(
    airflow: tuple[AirflowClient, type[_Airflow]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, handler = airflow
    assert main(["clear", DAG, "-t", "^audit$", "--run", "manual__no-such-run"]) != 0
    said = capsys.readouterr().err
    assert "has no run 'manual__no-such-run'" in said
    assert RUNS[-1]["dag_run_id"] in said  # the latest, read back from the stand-in's own list
    assert handler.cleared == []


def test_a_runs_task_instances_come_whole(airflow: tuple[AirflowClient, type[_Airflow]]) -> None:
    client, _ = airflow
    assert [ti["task_id"] for ti in client.task_instances(DAG, RUNS[1]["dag_run_id"])] == TASKS


def test_every_backfill_is_listed(airflow: tuple[AirflowClient, type[_Airflow]]) -> None:
    """The demo cancels an unfinished backfill an earlier run left, however many came before it."""
    client, _ = airflow
    assert [b["id"] for b in client.backfills(DAG) if b["completed_at"] is None] == [119]


def test_only_failed_on_a_run_with_no_failure_says_so(
    airflow: tuple[AirflowClient, type[_Airflow]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every task instance of the stand-in succeeded: nothing to clear, and the filter is named."""
    _, handler = airflow
    assert main(["clear", DAG, "-t", "^audit$", "--run", str(RELOAD["dag_run_id"]), "--only-failed"]) == 1
    err = capsys.readouterr().err
    assert "nothing was cleared for '^audit$' among failed task instances (--only-failed)" in err, err
    assert handler.cleared == []


def test_no_run_for_the_days_of_the_training_dag_points_to_its_runs_by_id(
    airflow: tuple[AirflowClient, type[_Airflow]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """For the DAG the warehouse's asset triggers, "trigger it with --logical-date D" made no sense. (The
    stand-in serves its one DAG under the training DAG's id as well: the runs, not the DAG, are at stake.)"""
    _, handler = airflow
    assert main(["clear", DAG, "-t", "^audit$", "-s", "2027-01-01"]) == 2
    assert f"dags trigger {DAG} --logical-date 2027-01-01T00:00:00+00:00" in capsys.readouterr().err
    monkeypatch.setattr(recflow.stack.rerun, "TRAINING_DAG", DAG)
    assert main(["clear", DAG, "-t", "^audit$", "-s", "2027-01-01"]) == 2
    said = capsys.readouterr().err
    assert f"{DAG} has no run for a day in 2027-01-01..2027-01-01" in said
    assert f"recflow clear {DAG} -t '^audit$' --run latest" in said and "--logical-date" not in said
    assert handler.cleared == []
