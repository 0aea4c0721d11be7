from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from recflow.core.days import days_to_process
from recflow.core.errors import ParamsError
from recflow.oncall import runbooks

D = datetime(2026, 1, 3, tzinfo=UTC)
D1 = datetime(2026, 1, 4, tzinfo=UTC)


def test_a_scheduled_run_processes_its_interval_start_day() -> None:
    assert days_to_process({}, D, D, D1) == [date(2026, 1, 3)]


def test_a_manual_run_for_day_d_processes_d() -> None:
    """`airflow dags test recsys_warehouse D`: logical date D, inferred interval [D-1, D)."""
    before = datetime(2026, 1, 2, tzinfo=UTC)
    assert days_to_process({}, D, before, D) == [date(2026, 1, 3)]


def test_without_a_logical_date_the_interval_decides() -> None:
    assert days_to_process({}, None, D, D1) == [date(2026, 1, 3)]
    with pytest.raises(ValueError, match="must use CronDataIntervalTimetable"):
        days_to_process({}, None, D, D)


def test_a_reload_covers_the_whole_range() -> None:
    days = days_to_process({"reload_from": "2025-12-30", "reload_to": "2026-01-02"}, D, D, D1)
    assert days == [date(2025, 12, 30), date(2025, 12, 31), date(2026, 1, 1), date(2026, 1, 2)]
    with pytest.raises(ValueError, match="give both days or neither"):
        days_to_process({"reload_from": "2025-12-30"}, D, D, D1)
    with pytest.raises(ValueError, match="reload_to=2025-01-01 is before reload_from=2025-12-30"):
        days_to_process({"reload_from": "2025-12-30", "reload_to": "2025-01-01"}, D, D, D1)


def test_a_run_that_names_no_day_is_refused_as_its_params_are() -> None:
    """The UI's trigger form with its date cleared: Airflow 3 gives the run no logical date and no data
    interval. It was a ValueError blaming the timetable, retried, with the landing-late advice."""
    with pytest.raises(ParamsError, match="names no day") as refused:
        days_to_process({}, None, None, None)
    assert not refused.value.retryable
    assert runbooks.anchor_for("wait_for_landing", refused.value) == "params-refused"
    reload = {"reload_from": "2026-01-01", "reload_to": "2026-01-02"}
    assert days_to_process(reload, None, None, None) == [date(2026, 1, 1), date(2026, 1, 2)]
