"""What the landing sensor says while it waits: which marker, whether the day's folder is there, and
how long it goes on looking (on-call runs `recflow airflow dags test` on a day and sees only this)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from recflow.airflow import tasks


@pytest.mark.parametrize(
    ("made", "state"),
    [
        (False, "does not exist (nothing exported for 2030-01-02 yet)"),
        (True, "exists but has no _SUCCESS marker (the export still being written?)"),
    ],
    ids=["no-folder", "no-marker"],
)
def test_the_sensor_names_the_marker_and_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, made: bool, state: str
) -> None:
    day = tmp_path / "landing" / "events" / "ds=2030-01-02"
    if made:
        day.mkdir(parents=True)
        (day / "part-0.parquet").touch()
    monkeypatch.setattr(tasks, "task_settings", lambda: SimpleNamespace(landing_dir=tmp_path / "landing"))
    start = datetime(2030, 1, 2, tzinfo=UTC)
    with caplog.at_level(logging.INFO, logger=tasks.log.name):
        done = tasks.wait_for_landing.function(
            params={},
            logical_date=start,
            data_interval_start=start,
            data_interval_end=datetime(2030, 1, 3, tzinfo=UTC),
        )
    assert done is False
    assert caplog.records[-1].getMessage() == (
        f"waiting for {day}/_SUCCESS: {day} {state}; 1 day(s) not complete: 2030-01-02 "
        "(looking again every 2 minutes, failing after 6 hours)"
    )
    day.mkdir(parents=True, exist_ok=True)
    (day / "_SUCCESS").touch()  # the producer finished: the sensor lets the run go on
    assert tasks.wait_for_landing.function(
        params={},
        logical_date=start,
        data_interval_start=start,
        data_interval_end=datetime(2030, 1, 3, tzinfo=UTC),
    )
