"""What orchestration costs: the warehouse and training steps bare, and through the scheduler.

``make bench-overhead`` (``python -m bench.overhead``). One run, on the same generated
days (the demo's generator and volume):

* **bare**: the functions the DAGs' tasks call, one after the other in this one
  process: per day ``stage_partitions`` + ``audit_days`` (``land``, ``audit``), one
  ``dbt build`` of the whole project through dbt's own runner (what the ``transform``
  group runs model by model), ``check_training_marts`` (``check_marts``); then, after
  the last day, ``take_snapshot``, the training job, ``evaluate_challenger``, ``decide``
  and ``publish_evaluated``. The imports a fresh process pays (dbt, GX, duckdb, pyarrow)
  are timed once, up front, and counted in the bare figures.
* **scheduler**: the same days backfilled through the real Airflow scheduler
  (LocalExecutor, one run at a time, as ``make demo`` does), then the training run
  that the last day's asset event triggers. Each run's time is its own start to end
  in the metadata DB; the backfill's is its first run's start to its last run's end.

The two work in their own homes under ``$RECFLOW_HOME/benchmarks/overhead`` (wiped at
the start), so neither reads what the other wrote; each has its own landing zone, DuckDB
warehouse, artifacts and MLflow store whatever the caller's settings point the pipeline at
(``bench.report.bench_home``). Ratios (scheduler ÷ bare):

* ``warehouse_day_ratio``: median warehouse run ÷ (imports + median bare day);
* ``backfill_30d_ratio``: the backfill's wall time ÷ (imports + all bare days);
* ``train_run_ratio``: the training run ÷ the bare training steps;
* ``day_growth``: the last day ÷ the first (scheduler), whether a day costs a day.

Writes ``bench/results/overhead.json``, ``docs/img/overhead.png`` and the overhead
section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
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

log = logging.getLogger("bench.overhead")

RESULTS_PATH = PROJECT_ROOT / "bench" / "results" / "overhead.json"
PLOT_PATH = PROJECT_ROOT / "docs" / "img" / "overhead.png"
DOCS_PATH = PROJECT_ROOT / "docs" / "benchmarks.md"
COMMAND = "make bench-overhead"
GOALS = {"warehouse_day_ratio": 1.5, "backfill_30d_ratio": 1.5, "day_growth": 1.2}
RUN_ID = "bench-overhead"


def _generate(settings: Settings, days: Sequence[dt.date]) -> int:
    from recflow.producers.generate import GeneratorConfig, generate

    return generate(settings.landing_dir, GeneratorConfig(start=days[0], days=len(days))).events


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


def run_bare(settings: Settings, days: Sequence[dt.date]) -> dict[str, Any]:
    imports = _timed_imports()
    log.info("bare: imports %.1fs", imports)
    per_day = []
    for i, ds in enumerate(days, start=1):
        steps = bare_day(settings, ds)
        per_day.append({"ds": ds.isoformat(), "seconds": sum(steps.values()), "steps": steps})
        log.info("bare [%d/%d] ds=%s %.1fs (%s)", i, len(days), ds, sum(steps.values()), _steps_text(steps))
    training = bare_training(settings)
    log.info("bare training %.1fs (%s)", sum(training.values()), _steps_text(training))
    return {
        "imports_seconds": imports,
        "days": per_day,
        "training": {"seconds": sum(training.values()), "steps": training},
    }


def run_scheduler(settings: Settings, days: Sequence[dt.date]) -> dict[str, Any]:
    from recflow.stack.demo import PipelineFailed, run_pipeline, setup

    setup(settings, echo=log.info)
    result = run_pipeline(settings, list(days), echo=log.info, timeout=6 * 3600.0, collect_tasks=True)
    if not result.ok:
        raise PipelineFailed(
            f"a run failed through the scheduler: {result.warehouse_runs + result.train_runs}"
        )
    runs = result.warehouse_runs
    first_start = min(dt.datetime.fromisoformat(str(r.start_date)) for r in runs)
    last_end = max(dt.datetime.fromisoformat(str(r.end_date)) for r in runs)
    train = result.train_runs[0]
    return {
        "days": [
            {"ds": d.isoformat(), "seconds": r.seconds, "tasks": r.tasks}
            for d, r in zip(days, runs, strict=True)
        ],
        "backfill_seconds": (last_end - first_start).total_seconds(),
        "training": {"seconds": train.seconds, "tasks": train.tasks},
    }


def _steps_text(steps: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}s" for k, v in steps.items())


def task_breakdown(runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Median seconds per task over ``runs`` (dbt model tasks summed as ``transform``), plus the
    median time a run spends outside its tasks (queueing, scheduling, start-up gaps)."""
    per_task: dict[str, list[float]] = defaultdict(list)
    outside = []
    for run in runs:
        sums: dict[str, float] = defaultdict(float)
        for ti in run["tasks"]:
            name = "transform (dbt, every model)" if ti["task_id"].startswith("transform.") else ti["task_id"]
            sums[name] += ti["seconds"] or 0.0
        for name, seconds in sums.items():
            per_task[name].append(seconds)
        outside.append(run["seconds"] - _busy_seconds(run["tasks"]))
    breakdown = {name: statistics.median(v) for name, v in per_task.items()}
    breakdown["outside any task"] = statistics.median(outside)
    return breakdown


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
    bare_days = [d["seconds"] for d in bare["days"]]
    sched_days = [d["seconds"] for d in scheduler["days"]]
    bare_day = bare["imports_seconds"] + statistics.median(bare_days)
    sched_day = statistics.median(sched_days)
    bare_backfill = bare["imports_seconds"] + sum(bare_days)
    return {
        "days": len(bare_days),
        "bare_day_seconds": round(bare_day, 2),
        "scheduler_day_seconds": round(sched_day, 2),
        "warehouse_day_ratio": round(sched_day / bare_day, 2),
        "bare_backfill_seconds": round(bare_backfill, 1),
        "scheduler_backfill_seconds": round(scheduler["backfill_seconds"], 1),
        "backfill_30d_ratio": round(scheduler["backfill_seconds"] / bare_backfill, 2),
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
    left.set_xlabel("day of the backfill")
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
        f"seconds (bare steps: {', '.join(f'{k} {v:.1f}' for k, v in steps.items())})", fontsize=7
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
            f"{s['days']}-day backfill",
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
        f"{s['days']} days; whole run {report['total_seconds']:.0f} s.",
        "",
        "Bare is the same functions the tasks call, one after the other in one process, with one "
        "`dbt build` of the whole project; its imports "
        f"({report['bare']['imports_seconds']:.1f} s) are counted once. Through the scheduler is a "
        "backfill of the same days (LocalExecutor, one run at a time, the one-slot warehouse pool), "
        "then the asset-triggered training run; times are the metadata DB's run start to end.",
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
        f"| last day ÷ first day (scheduler) | | | **{s['day_growth']}** | ≤ {GOALS['day_growth']} "
        f"({_verdict(s['day_growth'], GOALS['day_growth'])}) |",
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
    parser.add_argument("--days", type=int, default=30, help="days to backfill (default 30)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--plot", type=Path, default=PLOT_PATH)
    parser.add_argument("--docs", type=Path, default=DOCS_PATH)
    parser.add_argument("--no-write", action="store_true", help="log the results, write nothing")
    args = parser.parse_args(argv)
    if args.days < 2:
        parser.error("--days must be at least 2 (the growth compares the last day with the first)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from recflow.stack.demo import demo_days

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    base = Settings.from_env()
    started = time.perf_counter()
    date = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    days = demo_days(args.days)
    homes = {mode: bench_home(base, "overhead", mode) for mode in ("bare", "scheduler")}
    shutil.rmtree(base.home / "benchmarks" / "overhead", ignore_errors=True)
    events = _generate(homes["bare"], days)
    shutil.copytree(homes["bare"].landing_dir, homes["scheduler"].landing_dir)
    log.info("generated %d events over %s..%s, the same for both modes", events, days[0], days[-1])
    bare = run_bare(homes["bare"], days)
    scheduler = run_scheduler(homes["scheduler"], days)
    report: dict[str, Any] = {
        "benchmark": "overhead",
        "date": date,
        "command": COMMAND,
        "git_commit": base.git_commit,
        "machine": machine(),
        "events": events,
        "first_day": days[0].isoformat(),
        "last_day": days[-1].isoformat(),
        "goals": GOALS,
        "summary": summarise(bare, scheduler),
        "bare": bare,
        "scheduler": scheduler,
    }
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    # the ratios the issue names, at the top level
    for key in ("warehouse_day_ratio", "backfill_30d_ratio", "train_run_ratio", "day_growth"):
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
