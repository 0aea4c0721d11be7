"""bench/overhead.py's arithmetic: what counts as time inside tasks, the ratios, the docs section."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from bench import overhead
from bench.report import write_section


def _ti(task_id: str, start: str, end: str) -> dict[str, Any]:
    """A task instance as the API gives it, between minutes:seconds ``start`` and ``end``."""
    s, e = (f"2026-01-01T00:{t}+00:00" for t in (start, end))
    seconds = (dt.datetime.fromisoformat(e) - dt.datetime.fromisoformat(s)).total_seconds()
    return {"task_id": task_id, "start_date": s, "end_date": e, "seconds": seconds}


def test_busy_seconds_counts_overlapping_tasks_once_and_skips_gaps() -> None:
    tasks = [_ti("a", "00:00", "00:10"), _ti("b", "00:05", "00:12"), _ti("c", "00:20", "00:25")]
    assert overhead._busy_seconds(tasks) == 17.0  # [0, 12] and [20, 25]
    assert overhead._busy_seconds([{"task_id": "queued", "start_date": None, "end_date": None}]) == 0.0


def _scheduler_day(seconds: float) -> dict[str, Any]:
    return {
        "seconds": seconds,
        "tasks": [
            _ti("land", "00:00", "00:02"),
            _ti("transform.dbt_build", "00:02", "00:08"),
            # waiting in the triggerer beside the build, ending after it
            _ti("transform.stg_events_model_build", "00:03", "00:09"),
            _ti("transform.fct_engagements_model_build", "00:03", "00:10"),
        ],
    }


def _report() -> dict[str, Any]:
    bare = {
        "imports_seconds": 5.0,
        "range": {"days": 30, "seconds": 12.0},
        "days": [{"seconds": s, "steps": {"land": 1.0, "dbt build": s - 1.0}} for s in (4.0, 3.0, 5.0)],
        "training": {"seconds": 20.0},
        "day_1m_first": {"seconds": 36.0},
        "day_1m": {"seconds": 35.0},
    }
    scheduler = {
        "range": {"seconds": 25.5},
        "days": [_scheduler_day(s) for s in (24.0, 18.0, 30.0)],
        "training": {"seconds": 30.0},
        "day_1m_first": {"seconds": 61.5},
        "day_1m": {"seconds": 48.0},
    }
    return {"bare": bare, "scheduler": scheduler, "summary": overhead.summarise(bare, scheduler)}


def test_ratios_are_scheduler_over_bare_with_imports_counted_once() -> None:
    s = _report()["summary"]
    assert s["bare_day_seconds"] == 9.0  # imports 5 + median day 4
    assert s["warehouse_day_ratio"] == round(24.0 / 9.0, 2)
    assert s["fixed_overhead_seconds"] == 24.0 - 9.0
    assert s["bare_backfill_seconds"] == 17.0  # imports 5 + the bare range 12
    assert s["backfill_30d_ratio"] == 1.5
    assert s["warehouse_day_1m_ratio"] == 1.2  # 48 / (5 + 35)
    assert s["first_day_1m_ratio"] == 1.5  # 61.5 / (5 + 36): the first run after Airflow starts, beside it
    assert s["day_1m_ratio_to_warm_bare"] == round(48.0 / 35.0, 2)  # the imports left out
    assert s["warm_bare_day_seconds"] == 4.0  # the median bare day, no imports
    assert s["day_overhead_over_warm_bare_seconds"] == 24.0 - 4.0
    assert s["train_run_ratio"] == 1.5
    assert s["day_growth"] == 1.25
    breakdown = s["scheduler_task_median_seconds"]
    assert breakdown[overhead.NODE_TASKS] == 2.0  # the wall time they cover after the build: 00:08-00:10
    assert breakdown["transform.dbt_build"] == 6.0
    assert breakdown["outside any task"] == 24.0 - 10.0


def test_docs_section_states_each_goal_and_its_distance(tmp_path: Path) -> None:
    report = {
        **_report(),
        "date": "2026-01-02T00:00:00+00:00",
        "git_commit": "0123456789abcdef",
        "events": 19_427,
        "events_1m_day": 998_209,
        "total_seconds": 300.0,
        "machine": {"nproc": 2, "cpu": "test cpu", "ram_gib": 8.0},
    }
    section = overhead.docs_section(report)
    assert "| warehouse day | 24.0 s | 9.0 s | **2.67** | ≤ 2.0 (**not met**, 1.33x the goal) |" in section
    assert "| warehouse day of 1M events | 48.0 s | 40.0 s | **1.2** | ≤ 1.2 (met) |" in section
    assert "(fixed overhead) | | | **15.0 s** | ≤ 10.0 s (**not met**, 1.50x the goal) |" in section
    assert (
        "| last day ÷ first day (scheduler) | | | **1.25** | ≤ 1.2 (**not met**, 1.04x the goal) |" in section
    )
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- quality:start -->\nq\n<!-- quality:end -->\n")
    write_section(docs, section, "overhead")
    write_section(docs, section, "overhead")
    text = docs.read_text()
    assert text.count("<!-- overhead:start -->") == 1
    assert "<!-- quality:start -->\nq\n<!-- quality:end -->" in text


def test_a_single_scheduled_day_is_refused() -> None:
    with pytest.raises(SystemExit):
        overhead.parse_args(["--daily", "1"])
