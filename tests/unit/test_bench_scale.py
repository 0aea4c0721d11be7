"""``bench.scale``'s arithmetic and its report (the benchmark itself is ``make bench-scale``)."""

from __future__ import annotations

import pytest

from bench.scale import GOALS, STEPS, docs_section, loglog_slope, summarise


def _run(interactions: int, epoch: float, memory: float, wait: float) -> dict[str, object]:
    return {
        "interactions": interactions,
        "users": 1_000_000,
        "pins": 1_000_000,
        "input": "stream",
        "hyperparameters": {"epochs": "1"},
        "epoch_seconds": epoch,
        "input_wait_share": wait,
        "train_examples_per_second": interactions / epoch,
        "job_seconds": epoch + 100.0,
        "peak_memory_mb": memory,
        "recommend_p50_ms": 12.0,
        "recommend_p99_ms": 30.0,
        "recommend_calls": 300,
    }


def test_a_report_of_one_training_run_still_renders() -> None:
    """``bench/results/scale.json`` before several volumes held one run, as a mapping."""
    summary = summarise([_volume(1_000_000, 40.0, 900.0)], _run(10_000_000, 500.0, 5000.0, 0.04))
    assert summary["train_peak_ratio"] is None and summary["train_peak_memory_mb"] == {10_000_000: 5000.0}


def _volume(events: int, seconds: float, memory: float) -> dict[str, object]:
    share = seconds / len(STEPS)
    return {
        "target_events": events,
        "events": events,
        "users": events // 16,
        "pins": events // 100,
        "steps": {s: {"seconds": share, "peak_memory_mb": memory} for s in STEPS},
        "seconds": seconds,
        "peak_memory_mb": memory,
    }


@pytest.mark.parametrize("power", [0.5, 1.0, 1.3])
def test_slope_of_a_power_law_is_its_exponent(power: float) -> None:
    points = [(n, 7.0 * n**power) for n in (1e6, 1e7, 1e8)]
    assert loglog_slope(points) == pytest.approx(power)


def test_summary_and_section_state_each_goal_with_its_verdict() -> None:
    volumes = [_volume(1_000_000, 40.0, 900.0), _volume(100_000_000, 8000.0, 9000.0)]
    training = [_run(100_000_000, 5000.0, 6600.0, 0.12), _run(10_000_000, 500.0, 5000.0, 0.04)]
    training[1]["input_examples_per_second"] = 250_000.0
    summary = summarise(volumes, training)
    assert summary["slope"] == pytest.approx(loglog_slope([(1e6, 40.0), (1e8, 8000.0)]))
    assert summary["seconds_100m"] == 8000.0
    assert summary["peak_memory_mb"] == 9000.0
    assert summary["train_examples_per_second"] == {10_000_000: 20_000.0, 100_000_000: 20_000.0}
    assert summary["train_peak_ratio"] == pytest.approx(1.32)  # 6,600 / 5,000 MB
    assert summary["input_wait_share"] == 0.12, "the worst run"
    assert summary["recommend_p99_ms"] == 30.0
    report = {
        "summary": summary,
        "machine": {"nproc": 2, "cpu": "test cpu", "ram_gib": 23.5},
        "git_commit": "abc1234def5678",
        "finished_at": "2026-11-28 01:00 UTC",
        "duckdb_memory_limit": "4GB",
        "volumes": volumes,
        "training": training,
    }
    text = docs_section(report)
    assert text.startswith("<!-- scale:start -->") and text.rstrip().endswith("<!-- scale:end -->")
    slope_row = next(line for line in text.splitlines() if line.startswith("| cost linear"))
    assert f"{summary['slope']:.2f}" in slope_row and "**not met**" in slope_row
    assert "| 100M events end to end ≤ 30 min | 133.3 min | **not met** |" in text
    assert "| peak memory ≤ 8 GB (every step, and the training job) | 9,000 MB | **not met** |" in text
    assert (
        "| 10,000,000 | 1,000,000 | 1,000,000 | stream | 20,000 | 4.0% | 250,000 / s | 500 s | 600 s | 5,000 MB | 12.0 ms | 30.0 ms |"
        in text
    )
    assert (
        "| 100,000,000 | 1,000,000 | 1,000,000 | stream | 20,000 | 12.0% | — | 5000 s | 5100 s | 6,600 MB |"
        in text
    )
    assert "| peak memory of the largest run within 1.25x the smallest's | 1.32x | **not met** |" in text
    assert "| waiting for input < 10% of the epoch | 12.0% | **not met** |" in text
    assert "(10,000,000 at abc1234def, 2026-11-28 01:00 UTC; 100,000,000 at abc1234def" in text
    assert GOALS["seconds_100m"] == 1800.0
