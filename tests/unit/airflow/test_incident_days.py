"""The incident of a failed warehouse task names the days its run processed, not the interval Airflow
inferred for the run.

Contexts are shaped as Airflow 3.3 hands them to ``on_failure_callback`` (pendulum date-times, the
run's params); the incident is read back from the store, and its JSON through the CLI.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest

from recflow import cli
from recflow.airflow.alerts import on_task_failure
from recflow.core import errors
from recflow.core.config import Settings
from recflow.oncall.store import IncidentStore

NO_RELOAD = {"reload_from": None, "reload_to": None, "max_quarantine_share": None, "check_volume": True}


MANUAL_RUN = "manual__2026-12-02T10:00:00+00:00"
INFERRED = (pendulum.datetime(2026, 12, 1, tz="UTC"), pendulum.datetime(2026, 12, 2, tz="UTC"))
"""The interval Airflow infers for a manual run triggered on 2026-12-02, whatever its logical date."""
TRIGGERED = pendulum.datetime(2026, 12, 2, 10, tz="UTC")


def _context(
    params: dict[str, Any],
    error: BaseException,
    *,
    logical_date: Any = TRIGGERED,
    interval: tuple[Any, Any] = INFERRED,
    run_id: str = MANUAL_RUN,
) -> dict[str, Any]:
    return {
        "ti": SimpleNamespace(dag_id="recsys_warehouse", task_id="audit", run_id=run_id, try_number=1),
        "params": params,
        "logical_date": logical_date,
        "data_interval_start": interval[0],
        "data_interval_end": interval[1],
        "exception": error,
    }


def _refused(day: str) -> errors.PartitionRefused:
    return errors.PartitionRefused(
        f"partition ds={day} refused: 5.00% of rows quarantined",
        check="quarantine_share",
        columns=["user_id"],
        evidence=f"select * from quality.quarantine_events where ds = '{day}'",
    )


@pytest.fixture
def home(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Settings:
    monkeypatch.setenv("RECFLOW_HOME", str(settings.home))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.delenv("AIRFLOW_CONN_RECFLOW_ALERTS", raising=False)
    return settings


def _record(home: Settings, context: dict[str, Any], caplog: pytest.LogCaptureFixture) -> tuple[Any, str]:
    """Run the failure callback; the stored incident (read back) and the task log's ON-CALL line."""
    with caplog.at_level(logging.INFO, logger="recflow"):
        on_task_failure(context)
    [incident] = IncidentStore.of(home).find()
    [on_call] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ON-CALL: ")]
    return incident, on_call


def _shown(capsys: pytest.CaptureFixture[str], incident_id: int) -> dict[str, Any]:
    capsys.readouterr()
    assert cli.main(["incidents", "show", str(incident_id), "--json"]) == 0
    shown: dict[str, Any] = json.loads(capsys.readouterr().out)
    return shown


def test_a_manual_run_for_a_day_names_that_day(
    home: Settings, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runbooks' re-run of a day: logical date 2026-03-04, an interval Airflow infers from the trigger."""
    context = _context(
        NO_RELOAD, _refused("2026-03-04"), logical_date=pendulum.datetime(2026, 3, 4, tz="UTC")
    )
    incident, on_call = _record(home, context, caplog)
    assert (incident.interval_start, incident.interval_end) == (
        "2026-03-04T00:00:00+00:00",
        "2026-03-05T00:00:00+00:00",
    )
    assert on_call.startswith(
        f"ON-CALL: recsys_warehouse.audit failed for ds=2026-03-04 (try 1, run {MANUAL_RUN})"
    )
    assert "2026-12-01" not in on_call
    shown = _shown(capsys, incident.id)
    assert shown["days"] == "2026-03-04"
    assert shown["interval_start"] == "2026-03-04T00:00:00+00:00"
    assert "ds=2026-03-04" in shown["blast_radius"]["stale_asset"]
    assert "-s 2026-03-04 -e 2026-03-04" in shown["what_to_do"]
    assert "2026-12-01" not in json.dumps(shown)


def test_a_scheduled_run_names_its_interval_day(home: Settings, caplog: pytest.LogCaptureFixture) -> None:
    day = pendulum.datetime(2026, 3, 4, tz="UTC")
    context = _context(
        NO_RELOAD,
        _refused("2026-03-04"),
        logical_date=day,
        interval=(day, day.add(days=1)),
        run_id="scheduled__2026-03-04T00:00:00+00:00",
    )
    incident, on_call = _record(home, context, caplog)
    assert (incident.interval_start, incident.interval_end) == (
        "2026-03-04T00:00:00+00:00",
        "2026-03-05T00:00:00+00:00",
    )
    assert " failed for ds=2026-03-04 (try 1, " in on_call


def test_a_reload_names_its_range(
    home: Settings, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    params = {**NO_RELOAD, "reload_from": "2026-01-01", "reload_to": "2026-01-07"}
    context = _context(params, _refused("2026-01-05"))
    incident, on_call = _record(home, context, caplog)
    assert (incident.interval_start, incident.interval_end) == (
        "2026-01-01T00:00:00+00:00",
        "2026-01-08T00:00:00+00:00",
    )
    assert " failed for ds=2026-01-01..2026-01-07 (try 1, " in on_call
    shown = _shown(capsys, incident.id)
    assert shown["days"] == "2026-01-01..2026-01-07"
    assert "not updated for ds=2026-01-01..2026-01-07:" in shown["blast_radius"]["stale_asset"]


def test_refused_reload_params_name_no_day(home: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """The days are unknown: the incident names the run, and no interval it did not process."""
    params = {**NO_RELOAD, "reload_from": "2026-01-07", "reload_to": "2026-01-01"}
    error = errors.ParamsError("reload_to=2026-01-01 is before reload_from=2026-01-07")
    context = _context(params, error)
    incident, on_call = _record(home, context, caplog)
    assert (incident.interval_start, incident.interval_end) == (None, None)
    assert on_call.startswith("ON-CALL: recsys_warehouse.audit failed (try 1, run manual__")
    assert incident.runbook.endswith("#params-refused")
    assert f"not updated for run {MANUAL_RUN}:" in incident.blast_radius["stale_asset"]
