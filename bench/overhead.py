"""What orchestration costs: the warehouse and training steps bare, and through the scheduler.

``make bench-overhead`` (``python -m bench.overhead``). One run, on the same generated
days (the demo's generator and volume), ending five days before today (so the scheduled run
that unpausing the DAG creates for yesterday finds no data and only waits):

* **a backfill**: the first ``--days`` (30) days through ``recflow backfill`` (one run of the
  range: each day landed and audited on its own, the marts built once), against the same steps
  bare over the range (``land`` and ``audit`` of every day, one ``dbt build``, ``check_marts``);
* **scheduled days**: the next ``--daily`` (5) days one run each (Airflow's backfill, one at a
  time, as days arrive), against the same steps bare per day; then the training run the last
  day's asset event triggers, against the training DAG's steps bare;
* **a day of 1M events** on a warehouse of its own, through the scheduler and bare: two such days
  run one after the other, and the second is measured. The first is the first run after Airflow
  starts: its triggerer builds its in-process execution API at the first request (~6 CPU-seconds
  on 2 cores) in the middle of that run's build. That is paid once per start, not per day, as the
  median of the scheduled days leaves out their first day. It is recorded (``day_1m_first``), not
  hidden.

Bare is the functions the tasks call, one after the other in this process; the imports a fresh
process pays (dbt, GX, duckdb, pyarrow) are timed once, up front, and added to each bare figure.
Scheduler and bare work in homes of their own under ``$RECFLOW_HOME/benchmarks/overhead`` (wiped
at the start), so neither reads what the other wrote (``bench.report.bench_home``). A run's time
is its start to end in the metadata DB. Ratios (scheduler ÷ bare):

* ``warehouse_day_ratio``: median scheduled day ÷ (imports + median bare day), and
  ``fixed_overhead_seconds``, their difference;
* ``backfill_30d_ratio``: the backfill's run ÷ (imports + the bare range);
* ``warehouse_day_1m_ratio``: the second 1M-event day's run ÷ (imports + its bare day), and
  ``first_day_1m_ratio``, the same for the first (the run right after Airflow starts);
* ``train_run_ratio``: the training run ÷ the bare training steps;
* ``day_growth``: the last scheduled day ÷ the first, whether a day costs a day.

Writes ``bench/results/overhead.json``, ``docs/img/overhead.png`` and the overhead
section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import shutil
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.report import bench_home, machine, write_section
from recflow.core.config import PROJECT_ROOT, Settings
from recflow.stack.runtime import airflow_tuning

log = logging.getLogger("bench.overhead")

RESULTS_PATH = PROJECT_ROOT / "bench" / "results" / "overhead.json"
PLOT_PATH = PROJECT_ROOT / "docs" / "img" / "overhead.png"
DOCS_PATH = PROJECT_ROOT / "docs" / "benchmarks.md"
COMMAND = "make bench-overhead"
GOALS = {
    "warehouse_day_ratio": 2.0,
    "warehouse_day_1m_ratio": 1.2,
    "fixed_overhead_seconds": 10.0,
    "backfill_30d_ratio": 1.5,
    "day_growth": 1.2,
}
DAILY_DAYS = 5
EVENTS_1M = 1_000_000
FIRST_BIG_DAY = dt.date(2026, 1, 1)
BIG_DAY = FIRST_BIG_DAY + dt.timedelta(days=1)
"""The measured 1M-event day, after ``FIRST_BIG_DAY`` (``bench.scale``'s generator at that volume,
two days), on a warehouse of their own."""
RUN_ID = "bench-overhead"


def _generate(settings: Settings, days: Sequence[dt.date]) -> int:
    from recflow.producers.generate import GeneratorConfig, generate

    return generate(settings.landing_dir, GeneratorConfig(start=days[0], days=len(days))).events


def _landed_rows(settings: Settings, day: dt.date) -> int:
    """The events of ``day`` in the landing zone, from the Parquet footers."""
    from bench.scale import _parquet_rows
    from recflow.ingest.contract import partition_dir

    return sum(_parquet_rows(f) for f in partition_dir(settings.landing_dir, day).glob("*.parquet"))


def _timed_imports() -> float:
    """What a fresh process pays before its first warehouse step (dbt, GX, duckdb, pyarrow)."""
    started = time.perf_counter()
    import dbt.adapters.duckdb
    import dbt.cli.main  # noqa: F401

    from recflow.ingest.land import stage_partitions  # noqa: F401
    from recflow.quality import check_training_marts  # noqa: F401
    from recflow.quality._gx import import_gx

    import_gx()
    return time.perf_counter() - started


def _dbt_build(settings: Settings) -> None:
    """The ``transform`` group's one ``dbt build`` (``recflow.transform.run_build``), bare."""
    from recflow.transform import run_build

    outcome = run_build(settings, on_result=lambda result: None)
    if outcome.failed:
        raise RuntimeError(f"bare dbt build failed: {outcome.statuses}")


@contextmanager
def _timed(steps: dict[str, float], step: str) -> Iterator[None]:
    """Add the seconds the block takes to ``steps[step]``."""
    started = time.perf_counter()
    yield
    steps[step] = time.perf_counter() - started


def bare_day(settings: Settings, ds: dt.date) -> dict[str, float]:
    """One warehouse day, step by step, in this process: seconds per step."""
    from recflow.ingest.days import audit_days
    from recflow.ingest.land import stage_partitions
    from recflow.quality import check_training_marts

    steps: dict[str, float] = {}
    with _timed(steps, "land"):
        stage_partitions(settings, [ds])
    with _timed(steps, "audit"):
        audit_days(settings, [ds], run_id=RUN_ID)
    with _timed(steps, "dbt build"):
        _dbt_build(settings)
    with _timed(steps, "check_marts"):
        check_training_marts(settings)
    return steps


def bare_training(settings: Settings) -> dict[str, float]:
    """The training DAG's steps in this process: seconds per step."""
    from recflow.evaluation import decide, evaluate_challenger
    from recflow.publishing.publish import publish_evaluated
    from recflow.snapshot import take_snapshot
    from recflow.training.jobs import train_on_snapshot

    steps: dict[str, float] = {}
    with _timed(steps, "snapshot"):
        snapshot = take_snapshot(settings).to_xcom()
    with _timed(steps, "train"):
        training = train_on_snapshot(settings, snapshot, {})
    with _timed(steps, "evaluate"):
        evaluation = evaluate_challenger(settings, snapshot, training, settings.model_name)
    with _timed(steps, "gate"):
        decision = decide(evaluation["challenger"], evaluation["champion"], settings.gate).as_dict()
    with _timed(steps, "publish"):
        if decision["promote"]:
            publish_evaluated(
                settings,
                snapshot=snapshot,
                training=training,
                evaluation=evaluation,
                decision=decision,
                dag_id="bench.overhead",
                run_id=RUN_ID,
            )
    return steps


def bare_range(settings: Settings, days: Sequence[dt.date]) -> dict[str, float]:
    """What the backfill's one run does, bare: every day landed, then audited, one build, one check."""
    from recflow.ingest.days import audit_days
    from recflow.ingest.land import stage_partitions
    from recflow.quality import check_training_marts

    steps: dict[str, float] = {}
    with _timed(steps, "land"):
        stage_partitions(settings, list(days), run_id=RUN_ID)
    with _timed(steps, "audit"):
        audit_days(settings, days, run_id=RUN_ID)
    with _timed(steps, "dbt build"):
        _dbt_build(settings)
    with _timed(steps, "check_marts"):
        check_training_marts(settings)
    return steps


def run_bare(
    settings: Settings, backfill: Sequence[dt.date], daily: Sequence[dt.date], big: Settings
) -> dict[str, Any]:
    from recflow.stack.demo import compile_dbt_manifest

    imports = _timed_imports()
    log.info("bare: imports %.1fs", imports)
    # as `recflow setup` does for the scheduler's homes: dbt's parse state is there before the first build
    for home in (settings, big):
        home.home.mkdir(parents=True, exist_ok=True)
        compile_dbt_manifest(home)
    range_steps = bare_range(settings, backfill)
    log.info(
        "bare range of %d days %.1fs (%s)", len(backfill), sum(range_steps.values()), _steps_text(range_steps)
    )
    per_day = []
    for i, ds in enumerate(daily, start=1):
        steps = bare_day(settings, ds)
        per_day.append({"ds": ds.isoformat(), "seconds": sum(steps.values()), "steps": steps})
        log.info("bare [%d/%d] ds=%s %.1fs (%s)", i, len(daily), ds, sum(steps.values()), _steps_text(steps))
    training = bare_training(settings)
    log.info("bare training %.1fs (%s)", sum(training.values()), _steps_text(training))
    first_steps = bare_day(big, FIRST_BIG_DAY)
    log.info("bare first 1M-event day %.1fs (%s)", sum(first_steps.values()), _steps_text(first_steps))
    big_steps = bare_day(big, BIG_DAY)
    log.info("bare 1M-event day %.1fs (%s)", sum(big_steps.values()), _steps_text(big_steps))
    return {
        "imports_seconds": imports,
        "range": {"days": len(backfill), "seconds": sum(range_steps.values()), "steps": range_steps},
        "days": per_day,
        "training": {"seconds": sum(training.values()), "steps": training},
        "day_1m_first": {"seconds": sum(first_steps.values()), "steps": first_steps},
        "day_1m": {"seconds": sum(big_steps.values()), "steps": big_steps},
    }


def _run_record(client: Any, run_id: str) -> dict[str, Any]:
    from recflow.core.names import WAREHOUSE_DAG
    from recflow.stack.demo import run_summary

    run = next(r for r in client.runs(WAREHOUSE_DAG) if r["dag_run_id"] == run_id)
    summary = run_summary(run, client)
    if summary.state != "success":
        raise RuntimeError(f"{WAREHOUSE_DAG} run {run_id} ended {summary.state}: see its logs")
    return {"seconds": summary.seconds, "tasks": summary.tasks}


def _warm(client: Any) -> float:
    """Unpause the warehouse DAG and wait until the scheduled run that creates (yesterday's: no data
    here) has run its sensor once: the first task after Airflow starts pays the executor's and the
    DAG's first start-up, once per ``recflow up``, not per day. Seconds waited."""
    from recflow.core.names import WAREHOUSE_DAG

    started = time.perf_counter()
    client.set_paused(WAREHOUSE_DAG, False)
    deadline = started + 300
    while time.perf_counter() < deadline:
        for run in client.runs(WAREHOUSE_DAG):
            if run.get("run_type") != "scheduled":
                continue
            sensor = next(
                (
                    t
                    for t in client.task_instances(WAREHOUSE_DAG, run["dag_run_id"])
                    if t["task_id"] == "wait_for_landing"
                ),
                None,
            )
            if sensor and sensor.get("state") in ("up_for_reschedule", "success", "failed"):
                return time.perf_counter() - started
        time.sleep(0.5)
    raise TimeoutError("the scheduled run's sensor did not run within 300 s of unpausing")


def scheduler_backfill(settings: Settings, days: Sequence[dt.date]) -> dict[str, Any]:
    """The range through ``recflow backfill``'s path: one run, timed by the metadata DB."""
    from recflow.core.names import TRAINING_DAG, WAREHOUSE_DAG
    from recflow.stack.api import wait_for_dags
    from recflow.stack.backfill import backfill_days
    from recflow.stack.services import running_airflow

    with running_airflow(settings) as client:
        wait_for_dags(client, [WAREHOUSE_DAG, TRAINING_DAG])
        client.set_paused(TRAINING_DAG, True)
        warm_up = _warm(client)
        result = backfill_days(client, days[0], days[-1], echo=log.info)
        record = {**_run_record(client, result.run_id), "warm_up_seconds": round(warm_up, 1)}
        client.set_paused(WAREHOUSE_DAG, True)
    return record


def scheduler_days(settings: Settings, days: Sequence[dt.date]) -> list[dict[str, Any]]:
    """Days one after the other as the scheduler runs them (Airflow's backfill of one day at a time,
    on one running Airflow), training paused."""
    from recflow.core.names import TRAINING_DAG, WAREHOUSE_DAG
    from recflow.stack.api import wait_for_dags
    from recflow.stack.demo import close_backfill, wait_for_warehouse_runs
    from recflow.stack.services import running_airflow

    with running_airflow(settings) as client:
        wait_for_dags(client, [WAREHOUSE_DAG, TRAINING_DAG])
        client.set_paused(TRAINING_DAG, True)
        warm_up = _warm(client)
        records = []
        for day in days:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            backfill = client.backfill(WAREHOUSE_DAG, day.isoformat(), day.isoformat(), reprocess="completed")
            run = wait_for_warehouse_runs(client, [day], since, log.info, 3600.0)[day]
            records.append({**_run_record(client, run["dag_run_id"]), "warm_up_seconds": round(warm_up, 1)})
            close_backfill(client, backfill["id"])
        client.set_paused(WAREHOUSE_DAG, True)
    return records


def run_scheduler(
    settings: Settings, backfill: Sequence[dt.date], daily: Sequence[dt.date], big: Settings
) -> dict[str, Any]:
    from recflow.stack.demo import PipelineFailed, run_pipeline, setup

    setup(settings, echo=log.info)
    range_run = scheduler_backfill(settings, backfill)
    log.info("scheduler range of %d days %.1fs", len(backfill), range_run["seconds"])
    result = run_pipeline(settings, list(daily), echo=log.info, timeout=6 * 3600.0, collect_tasks=True)
    if not result.ok:
        raise PipelineFailed(
            f"a run failed through the scheduler: {result.warehouse_runs + result.train_runs}"
        )
    train = result.train_runs[0]
    setup(big, echo=log.info)
    first_run, big_run = scheduler_days(big, [FIRST_BIG_DAY, BIG_DAY])
    log.info("scheduler first 1M-event day %.1fs", first_run["seconds"])
    log.info("scheduler 1M-event day %.1fs", big_run["seconds"])
    return {
        "range": range_run,
        "days": [
            {"ds": d.isoformat(), "seconds": r.seconds, "tasks": r.tasks}
            for d, r in zip(daily, result.warehouse_runs, strict=True)
        ],
        "training": {"seconds": train.seconds, "tasks": train.tasks},
        "day_1m_first": first_run,
        "day_1m": big_run,
    }


def _steps_text(steps: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}s" for k, v in steps.items())


NODE_TASKS = "transform node tasks, after the build (triggerer)"


def task_breakdown(runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Median seconds per task over ``runs``, plus the median time a run spends outside its tasks
    (queueing, scheduling, start-up gaps). The dbt node tasks wait in the triggerer beside the
    build, so theirs is the wall time they cover together after the build ended."""
    per_task: dict[str, list[float]] = defaultdict(list)
    outside = []
    for run in runs:
        groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for ti in run["tasks"]:
            task_id = ti["task_id"]
            node = task_id.startswith("transform.") and not task_id.endswith(".dbt_build")
            groups[NODE_TASKS if node else task_id].append(ti)
        build_end = next(
            (
                t["end_date"]
                for t in run["tasks"]
                if t["task_id"].endswith(".dbt_build") and t.get("end_date")
            ),
            None,
        )
        for name, tis in groups.items():
            if name == NODE_TASKS and build_end is not None:
                after = [{**t, "start_date": _later(t.get("start_date"), build_end)} for t in tis]
                per_task[name].append(_busy_seconds(after))
            else:
                per_task[name].append(_busy_seconds(tis))
        outside.append(run["seconds"] - _busy_seconds(run["tasks"]))
    breakdown = {name: statistics.median(v) for name, v in per_task.items()}
    breakdown["outside any task"] = statistics.median(outside)
    return breakdown


def _later(a: str | None, b: str) -> str:
    if a is None:
        return b
    return max(a, b, key=dt.datetime.fromisoformat)


def _busy_seconds(tasks: Sequence[Mapping[str, Any]]) -> float:
    """Wall time covered by at least one task instance (tasks may overlap)."""
    spans = sorted(
        (dt.datetime.fromisoformat(t["start_date"]), dt.datetime.fromisoformat(t["end_date"]))
        for t in tasks
        if t.get("start_date") and t.get("end_date")
    )
    busy, reached = 0.0, None
    for start, end in spans:
        uncounted_from = start if reached is None else max(start, reached)
        if end > uncounted_from:
            busy += (end - uncounted_from).total_seconds()
        reached = end if reached is None else max(reached, end)
    return busy


def summarise(bare: Mapping[str, Any], scheduler: Mapping[str, Any]) -> dict[str, Any]:
    imports = bare["imports_seconds"]
    bare_days = [d["seconds"] for d in bare["days"]]
    sched_days = [d["seconds"] for d in scheduler["days"]]
    warm_bare_day = statistics.median(bare_days)
    bare_day = imports + warm_bare_day
    sched_day = statistics.median(sched_days)
    bare_backfill = imports + bare["range"]["seconds"]
    bare_1m = imports + bare["day_1m"]["seconds"]
    bare_1m_first = imports + bare["day_1m_first"]["seconds"]
    return {
        "backfill_days": bare["range"]["days"],
        "days": len(bare_days),
        "bare_day_seconds": round(bare_day, 2),
        "scheduler_day_seconds": round(sched_day, 2),
        "warehouse_day_ratio": round(sched_day / bare_day, 2),
        "fixed_overhead_seconds": round(sched_day - bare_day, 2),
        "bare_backfill_seconds": round(bare_backfill, 1),
        "scheduler_backfill_seconds": round(scheduler["range"]["seconds"], 1),
        "backfill_30d_ratio": round(scheduler["range"]["seconds"] / bare_backfill, 2),
        "bare_day_1m_seconds": round(bare_1m, 1),
        "scheduler_day_1m_seconds": round(scheduler["day_1m"]["seconds"], 1),
        "warehouse_day_1m_ratio": round(scheduler["day_1m"]["seconds"] / bare_1m, 2),
        "bare_first_day_1m_seconds": round(bare_1m_first, 1),
        "scheduler_first_day_1m_seconds": round(scheduler["day_1m_first"]["seconds"], 1),
        "first_day_1m_ratio": round(scheduler["day_1m_first"]["seconds"] / bare_1m_first, 2),
        # the same days against bare without its imports: a warm process, which the scheduler's
        # forked tasks now nearly are (their imports and dbt's warm-up are paid at its start)
        "warm_bare_day_seconds": round(warm_bare_day, 2),
        "day_ratio_to_warm_bare": round(sched_day / warm_bare_day, 2),
        "day_overhead_over_warm_bare_seconds": round(sched_day - warm_bare_day, 2),
        "warm_bare_day_1m_seconds": round(bare["day_1m"]["seconds"], 1),
        "day_1m_ratio_to_warm_bare": round(scheduler["day_1m"]["seconds"] / bare["day_1m"]["seconds"], 2),
        "bare_training_seconds": round(bare["training"]["seconds"], 1),
        "scheduler_training_seconds": round(scheduler["training"]["seconds"], 1),
        "train_run_ratio": round(scheduler["training"]["seconds"] / bare["training"]["seconds"], 2),
        "day_growth": round(sched_days[-1] / sched_days[0], 2),
        "bare_day_growth": round(bare_days[-1] / bare_days[0], 2),
        "scheduler_task_median_seconds": {
            k: round(v, 2) for k, v in task_breakdown(scheduler["days"]).items()
        },
        "bare_step_median_seconds": {
            step: round(statistics.median(d["steps"][step] for d in bare["days"]), 2)
            for step in bare["days"][0]["steps"]
        },
    }


def plot(report: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["summary"]
    bare = [d["seconds"] for d in report["bare"]["days"]]
    sched = [d["seconds"] for d in report["scheduler"]["days"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    x = range(1, len(bare) + 1)
    left.plot(x, sched, marker="o", label="through the scheduler (run start to end)")
    left.plot(x, bare, marker="s", label="bare steps, one process (imports apart)")
    left.set_xlabel("scheduled day (one run each, after the backfill)")
    left.xaxis.get_major_locator().set_params(integer=True)
    left.set_ylabel("seconds")
    left.set_ylim(bottom=0)
    left.set_title("One warehouse day")
    left.legend(loc="upper left", fontsize=8)
    breakdown = s["scheduler_task_median_seconds"]
    names = sorted(breakdown, key=breakdown.__getitem__)
    right.barh(names, [breakdown[n] for n in names], color="tab:blue")
    steps = s["bare_step_median_seconds"]
    right.set_title(
        f"Where a scheduled day goes (median s)\nday {s['warehouse_day_ratio']}x bare, "
        f"backfill {s['backfill_30d_ratio']}x, training {s['train_run_ratio']}x",
        fontsize=9,
    )
    right.set_xlabel(
        f"seconds\n(bare steps: {', '.join(f'{k} {v:.1f}' for k, v in steps.items())})", fontsize=7
    )
    right.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _verdict(value: float, goal: float) -> str:
    return "met" if value <= goal else f"**not met**, {value / goal:.2f}x the goal"


def docs_section(report: Mapping[str, Any]) -> str:
    s, m = report["summary"], report["machine"]
    breakdown = s["scheduler_task_median_seconds"]
    rows = [
        ("warehouse day", s["scheduler_day_seconds"], s["bare_day_seconds"], "warehouse_day_ratio"),
        (
            "warehouse day of 1M events",
            s["scheduler_day_1m_seconds"],
            s["bare_day_1m_seconds"],
            "warehouse_day_1m_ratio",
        ),
        (
            "the first day of 1M events after Airflow starts",
            s["scheduler_first_day_1m_seconds"],
            s["bare_first_day_1m_seconds"],
            "first_day_1m_ratio",
        ),
        (
            f"{s['backfill_days']}-day backfill (`recflow backfill`, one run)",
            s["scheduler_backfill_seconds"],
            s["bare_backfill_seconds"],
            "backfill_30d_ratio",
        ),
        ("training run", s["scheduler_training_seconds"], s["bare_training_seconds"], "train_run_ratio"),
    ]
    lines = [
        "<!-- overhead:start -->",
        "## What orchestration costs",
        "",
        f"Command: `{COMMAND}` (`bench/overhead.py`; results in "
        "[`bench/results/overhead.json`](../bench/results/overhead.json)). "
        f"Run on {report['date']} on {m['nproc']} CPU cores ({m['cpu']}), {m['ram_gib']} GiB RAM, "
        f"at commit `{report['git_commit'][:10]}`; {report['events']:,} generated events over "
        f"{s['backfill_days'] + s['days']} days, and {report['events_1m_day']:,} on each of two days; whole run "
        f"{report['total_seconds']:.0f} s.",
        "",
        "Bare is the same functions the tasks call, one after the other in one process, with one "
        "`dbt build` of the whole project; the imports a fresh process pays "
        f"({report['bare']['imports_seconds']:.1f} s) are added to each bare figure. Through the "
        f"scheduler: the first {s['backfill_days']} days as one `recflow backfill` run, then "
        f"{s['days']} days one run each (Airflow's backfill, one at a time), then the asset-triggered "
        "training run, and two 1M-event days on a warehouse of their own, the second measured: the first "
        "is the first run after Airflow starts, whose triggerer builds its execution API in the "
        "middle of the build (once per start, as the scheduled days' median leaves out their "
        "first day) (LocalExecutor, the one-slot "
        "warehouse pool, the settings of `recflow.stack.runtime.EMBEDDED_TUNING`); times are the "
        "metadata DB's run start to end.",
        "",
        "| | through the scheduler | bare | ratio | goal |",
        "|---|---:|---:|---:|---|",
    ]
    for label, sched, bare, key in rows:
        goal = GOALS.get(key)
        lines.append(
            f"| {label} | {sched:.1f} s | {bare:.1f} s | **{s[key]}** | "
            + (f"≤ {goal} ({_verdict(s[key], goal)})" if goal else "—")
            + " |"
        )
    lines += [
        f"| scheduled day minus bare day (fixed overhead) | | | **{s['fixed_overhead_seconds']} s** | "
        f"≤ {GOALS['fixed_overhead_seconds']} s ({_verdict(s['fixed_overhead_seconds'], GOALS['fixed_overhead_seconds'])}) |",
        f"| last day ÷ first day (scheduler) | | | **{s['day_growth']}** | ≤ {GOALS['day_growth']} "
        f"({_verdict(s['day_growth'], GOALS['day_growth'])}) |",
        f"| warehouse day, against bare *without* its imports (a warm process) | "
        f"{s['scheduler_day_seconds']:.1f} s | {s['warm_bare_day_seconds']:.1f} s | "
        f"{s['day_ratio_to_warm_bare']} (+{s['day_overhead_over_warm_bare_seconds']} s) | — |",
        f"| day of 1M events, against bare without its imports | {s['scheduler_day_1m_seconds']:.1f} s | "
        f"{s['warm_bare_day_1m_seconds']:.1f} s | {s['day_1m_ratio_to_warm_bare']} | — |",
        "",
        "![Per-day seconds, bare and through the scheduler, and where a scheduled day goes]"
        "(img/overhead.png)",
        "",
        "Median seconds of a scheduled day, by task: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(breakdown.items(), key=lambda kv: -kv[1]))
        + ". Bare, by step: "
        + ", ".join(f"{k} {v:.1f}" for k, v in s["bare_step_median_seconds"].items())
        + ".",
        "<!-- overhead:end -->",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="days of the backfill (default 30)")
    parser.add_argument(
        "--daily", type=int, default=DAILY_DAYS, help=f"days run one by one after it (default {DAILY_DAYS})"
    )
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--plot", type=Path, default=PLOT_PATH)
    parser.add_argument("--docs", type=Path, default=DOCS_PATH)
    parser.add_argument("--no-write", action="store_true", help="log the results, write nothing")
    args = parser.parse_args(argv)
    if args.days < 1 or args.daily < 2:
        parser.error(
            "--days must be at least 1, --daily at least 2 (the growth compares the last day with the first)"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from bench.scale import _generator_config
    from recflow.producers.generate import generate

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    base = Settings.from_env()
    started = time.perf_counter()
    date = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=5)
    n = args.days + args.daily
    days = [end - dt.timedelta(days=n - 1 - i) for i in range(n)]
    backfill, daily = days[: args.days], days[args.days :]
    modes = ("bare", "scheduler", "bare-1m", "scheduler-1m")
    homes = {mode: bench_home(base, "overhead", mode) for mode in modes}
    shutil.rmtree(base.home / "benchmarks" / "overhead", ignore_errors=True)
    events = _generate(homes["bare"], days)
    shutil.copytree(homes["bare"].landing_dir, homes["scheduler"].landing_dir)
    big_days = dataclasses.replace(_generator_config(EVENTS_1M), start=FIRST_BIG_DAY, days=2)
    generate(homes["bare-1m"].landing_dir, big_days)
    events_1m = _landed_rows(homes["bare-1m"], BIG_DAY)
    shutil.copytree(homes["bare-1m"].landing_dir, homes["scheduler-1m"].landing_dir)
    log.info(
        "generated %d events over %s..%s and %d on %s, the same for both modes",
        events,
        days[0],
        days[-1],
        events_1m,
        BIG_DAY,
    )
    bare = run_bare(homes["bare"], backfill, daily, homes["bare-1m"])
    scheduler = run_scheduler(homes["scheduler"], backfill, daily, homes["scheduler-1m"])
    report: dict[str, Any] = {
        "benchmark": "overhead",
        "date": date,
        "command": COMMAND,
        "git_commit": base.git_commit,
        "machine": machine(),
        "events": events,
        "events_1m_day": events_1m,
        "first_day": days[0].isoformat(),
        "last_day": days[-1].isoformat(),
        "embedded_airflow": airflow_tuning(),
        "goals": GOALS,
        "summary": summarise(bare, scheduler),
        "bare": bare,
        "scheduler": scheduler,
    }
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    # the figures the issue names, at the top level
    for key in (
        "warehouse_day_ratio",
        "fixed_overhead_seconds",
        "backfill_30d_ratio",
        "warehouse_day_1m_ratio",
        "train_run_ratio",
        "day_growth",
    ):
        report[key] = report["summary"][key]
    log.info("summary: %s", json.dumps(report["summary"], indent=2))
    if args.no_write:
        return 0
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.plot)
    write_section(args.docs, docs_section(report), "overhead")
    log.info("wrote %s, %s, %s", args.results, args.plot, args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
