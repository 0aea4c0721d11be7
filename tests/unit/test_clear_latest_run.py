"""`recflow clear -s D` clears day D once, in the latest run that processed it.

The runbook's accept path: a backfill refused D (too many quarantined rows), on-call triggered D again
with ``max_quarantine_share`` and it published; later the day is cleared from ``land`` (the export was
re-sent). Clearing every run of D re-ran the backfill with its own conf too: it refused the day again,
paged a second incident, and the two runs landed D at once (one was refused ``DayClaimed``). The API
server is a stand-in on 127.0.0.1 holding the test's runs; what was cleared is what it was asked.
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
BACKFILL = {  # a week as one run, refused on 2026-01-03
    "dag_run_id": "manual__2026-01-08T09:00:00+00:00",
    "state": "failed",
    "logical_date": None,
    "data_interval_start": "2026-01-07T00:00:00+00:00",
    "data_interval_end": "2026-01-08T00:00:00+00:00",
    "run_after": "2026-01-08T09:00:00+00:00",
    "conf": {"reload_from": "2026-01-01", "reload_to": "2026-01-07"},
}
ACCEPTED = {  # 2026-01-03 again, an hour later, accepted with a param
    "dag_run_id": "manual__2026-01-08T10:00:00+00:00",
    "state": "success",
    "logical_date": "2026-01-03T00:00:00+00:00",
    "data_interval_start": "2026-01-02T00:00:00+00:00",
    "data_interval_end": "2026-01-03T00:00:00+00:00",
    "run_after": "2026-01-08T10:00:00+00:00",
    "conf": {"max_quarantine_share": 0.05},
}


class _Airflow(JsonHandler):
    clears: ClassVar[list[dict[str, Any]]] = []

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == f"/api/v2/dags/{DAG}":
            self.send_json(200, {"dag_id": DAG, "is_paused": False})
        elif path == f"/api/v2/dags/{DAG}/tasks":
            self.send_json(200, {"tasks": [{"task_id": "land"}, {"task_id": "audit"}]})
        elif path == f"/api/v2/dags/{DAG}/dagRuns":  # every filter answered with both: recflow sorts them out
            self.send_json(200, {"dag_runs": [BACKFILL, ACCEPTED], "total_entries": 2})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.clears.append(body)
        self.send_json(200, {"task_instances": [{"task_id": t} for t in body["task_ids"]]})


@pytest.fixture
def airflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[type[_Airflow]]:
    handler = type("Handler", (_Airflow,), {"clears": []})
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    with airflow_stand_in(handler) as client:
        monkeypatch.setattr(recflow.cli.stack, "api_client", lambda settings: client)
        yield handler


def test_a_day_is_cleared_in_its_latest_run_and_the_earlier_one_is_named(
    airflow: type[_Airflow], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["clear", DAG, "-t", "^land$", "-s", "2026-01-03", "-d"]) == 0
    assert [c["dag_run_id"] for c in airflow.clears] == [ACCEPTED["dag_run_id"]]
    out = capsys.readouterr().out
    assert f"ds=2026-01-03 run {ACCEPTED['dag_run_id']} (success): cleared land" in out
    assert (
        f"ds=2026-01-01..2026-01-07 (7 days) run {BACKFILL['dag_run_id']} (failed): left as it is: a later "
        f"run processed its days in this range again ({ACCEPTED['dag_run_id']}, cleared); to clear this "
        f"one too: --run {BACKFILL['dag_run_id']}"
    ) in out


def test_a_day_only_the_range_run_processed_clears_the_range_run(
    airflow: type[_Airflow], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["clear", DAG, "-t", "^land$", "-s", "2026-01-04", "-d"]) == 0
    assert [c["dag_run_id"] for c in airflow.clears] == [BACKFILL["dag_run_id"]]
    assert "left as it is" not in capsys.readouterr().out
    # both days: each run is the latest for one of them
    assert main(["clear", DAG, "-t", "^land$", "-s", "2026-01-03", "-e", "2026-01-04", "-d"]) == 0
    assert sorted(c["dag_run_id"] for c in airflow.clears[1:]) == [
        BACKFILL["dag_run_id"],
        ACCEPTED["dag_run_id"],
    ]


def test_a_dry_run_says_what_would_be_cleared_and_clears_nothing(
    airflow: type[_Airflow], capsys: pytest.CaptureFixture[str]
) -> None:
    """It said the later run was "cleared" while nothing was."""
    assert main(["clear", DAG, "-t", "^land$", "-s", "2026-01-03", "-d", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"({ACCEPTED['dag_run_id']}, would clear); to clear this one too" in out
    assert "cleared" not in out.replace("would clear", "")
