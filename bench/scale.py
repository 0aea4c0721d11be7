"""What the warehouse steps and the training job cost as the data grows.

``make bench-scale`` (``python -m bench.scale``).

**Warehouse.** At each volume (1M, 10M and 100M events by default), ``recflow generate``
writes one day of that many events (users grow with the volume, pins are a hundredth of
the events); then the warehouse DAG's steps run bare, each in its own process as an
Airflow task would (so each pays its own imports): ``land`` (``stage_partitions``),
``audit`` (``audit_days``), ``dbt build`` (the whole project), ``check_marts``
(``check_training_marts``) and ``snapshot`` (``take_snapshot``). For each step: wall
time and the process's peak resident memory (``ru_maxrss`` of the child). DuckDB's
memory limit is the setting ``RECFLOW_DUCKDB_MEMORY_LIMIT``. ``slope`` is the least-squares
slope of log(seconds) against log(events) over the volumes (1.0 = linear).

**Training.** For each of ``--train-interactions`` (10M and 100M by default), over
``--train-pins`` pins and ``--train-users`` users: the marts the snapshot reads are drawn from the
generator's world (so users have interests and pins have popularity), dbt builds
``training_interactions`` on them (each example's history from the warehouse) and the snapshot
step writes the train channel, each in its own process; then the training job's own entrypoint
(``python -m recflow_ml.train``, the SageMaker container contract) trains one epoch on it, streamed
at these volumes (``stream_min_interactions``): examples per second and the share of the epoch spent
waiting for input from the epoch's own timing, peak memory of the job. Then ``recommend`` on the
exported SavedModel, one user per call, over random known users: p50 and p99 latency.

Writes ``bench/results/scale.json``, ``docs/img/scale.png`` and the scale section of
``docs/benchmarks.md``. Work happens under ``$RECFLOW_HOME/benchmarks/scale`` (wiped per
volume; every store is there, whatever the caller's settings say: ``bench.report.bench_home``),
so it needs disk: about 60 bytes per event at 100M (warehouse and landing).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report import bench_home, machine, run_child, write_section
from recflow.core.artifacts import file_uri_path
from recflow.core.config import PROJECT_ROOT, Settings, subprocess_env
from recflow_ml.layout import JobLayout

log = logging.getLogger("bench.scale")

RESULTS_PATH = PROJECT_ROOT / "bench" / "results" / "scale.json"
PLOT_PATH = PROJECT_ROOT / "docs" / "img" / "scale.png"
DOCS_PATH = PROJECT_ROOT / "docs" / "benchmarks.md"
COMMAND = "make bench-scale"
DAY = dt.date(2026, 1, 1)
STEPS = ("land", "audit", "dbt build", "check_marts", "snapshot")
EVENTS_PER_USER_DAY = 16.4
"""What the generator's defaults emit per user and day (measured: 9,825,560 events for 600k users)."""
GOALS = {
    "slope": 1.1,
    "seconds_100m": 1800.0,
    "peak_memory_mb": 8192.0,
    "train_peak_ratio": 1.25,
    "input_wait_share": 0.10,
}
"""The warehouse's cost and memory goals, and the training job's: its peak memory at the largest volume
within ``train_peak_ratio`` of the smallest's, and under ``input_wait_share`` of each epoch waiting
for input (``input_wait_share`` is a strict bound: < 0.10)."""
RECOMMEND_CALLS = 300
TRAIN_HYPERPARAMETERS = {"epochs": "1", "batch_size": "2048", "embedding_dim": "64", "dropout": "0.1"}
"""One epoch is enough to measure throughput; a larger batch than MovieLens' 256 is what a
large catalogue trains with (a step's fixed cost is spread over more examples). The width and
dropout are those every committed training run of this benchmark used, so the runs compare."""
TRAIN_ZIPF = 0.8
"""Pin popularity of the training channel: 10M draws then touch ~96% of 1M pins (1.1 would leave half)."""
TRAIN_OVERDRAW = 1.05
"""Draws per wanted interaction: repeated (user, pin) pairs are dropped, as the mart aggregates them."""


def _child(args: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, float]:
    """Run ``args`` as a child process: its wall seconds and peak resident memory (MB)."""
    run = run_child(args, env)
    if run.code != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {run.code}")
    return {"seconds": run.seconds, "peak_memory_mb": run.peak_memory_mb}


# --- one step, in its own process ----------------------------------------------------------
def run_step(settings: Settings, step: str) -> None:
    """What the warehouse DAG's task for ``step`` calls (``python -m bench.scale step <step>``)."""
    if step == "land":
        from recflow.ingest.land import stage_partitions

        stage_partitions(settings, [DAY])
    elif step == "audit":
        from recflow.ingest.days import audit_days

        audit_days(settings, [DAY], run_id="bench-scale")
    elif step == "dbt build":
        from bench.overhead import _dbt_build

        _dbt_build(settings)
    elif step == "check_marts":
        from recflow.quality import check_training_marts

        check_training_marts(settings)
    elif step == "snapshot":
        from recflow.snapshot import take_snapshot

        snapshot = take_snapshot(settings)
        log.info("snapshot %s", snapshot.to_xcom())
    else:
        raise ValueError(f"unknown step {step!r}; known: {', '.join(STEPS)}")


def _generator_config(events: int) -> Any:
    from recflow.producers.generate import GeneratorConfig

    users = max(400, round(events / EVENTS_PER_USER_DAY))
    return GeneratorConfig(start=DAY, days=1, users=users, pins=max(1200, events // 100))


def warehouse_at(
    base: Settings,
    events: int,
    *,
    label: str | None = None,
    sampler: Any = None,
    cluster: Settings | None = None,
) -> dict[str, Any]:
    """Generate one day of about ``events`` events, then run every step in its own process. ``cluster``: the
    settings of the engines benchmark's own Spark cluster, whose warehouse the steps then use (never the
    caller's: ``bench_home``); ``sampler``: a :class:`bench.engines.JvmSampler` measuring its JVMs."""
    settings = bench_home(base, "scale", label or f"warehouse-{events}")
    if cluster is not None:
        settings = dataclasses.replace(
            settings, warehouse_url=cluster.warehouse_url, dbt_target="spark", spark=cluster.spark
        )
    shutil.rmtree(settings.home, ignore_errors=True)
    settings.home.mkdir(parents=True)
    env = subprocess_env({**settings.child_env(), **settings.dbt_env()})
    cfg = _generator_config(events)
    generate = _child(
        [sys.executable, "-m", "bench.scale", "generate", "--users", str(cfg.users), "--pins", str(cfg.pins)],
        env,
    )
    landed = _landed_events(settings)
    log.info("%d events: generated %d in %.0fs", events, landed, generate["seconds"])
    steps: dict[str, dict[str, float]] = {}
    for step in STEPS:
        if sampler is None:
            steps[step] = _child([sys.executable, "-m", "bench.scale", "step", step], env)
        else:
            with sampler.sampling() as jvms:
                steps[step] = _child([sys.executable, "-m", "bench.scale", "step", step], env)
            steps[step].update(jvms)
        log.info(
            "%d events: %s %.1fs, peak %.0f MB",
            landed,
            step,
            steps[step]["seconds"],
            steps[step]["peak_memory_mb"],
        )
    disk = sum(p.stat().st_size for p in settings.home.rglob("*") if p.is_file())
    result = {
        "target_events": events,
        "events": landed,
        "users": cfg.users,
        "pins": cfg.pins,
        "generate": generate,
        "steps": steps,
        "seconds": sum(s["seconds"] for s in steps.values()),
        "peak_memory_mb": max(s["peak_memory_mb"] for s in steps.values()),
        "disk_gb": disk / 1e9,
    }
    shutil.rmtree(settings.home, ignore_errors=True)
    return result


def _landed_events(settings: Settings) -> int:
    from recflow.ingest.contract import partition_dir

    return sum(_parquet_rows(p) for p in partition_dir(settings.landing_dir, DAY).glob("*.parquet"))


# --- training at scale --------------------------------------------------------------------
def write_engagements(settings: Settings, interactions: int, users: int, pins: int) -> None:
    """The marts the training snapshot reads, in ``settings``' DuckDB warehouse, drawn from the
    generator's world: ``int_user_pin_engagement`` (users pick pins of their interests, by
    popularity; a (user, pin) pair occurs once, as the mart aggregates it), ``dim_pins`` and
    ``dim_users``. Popularity is flatter than the generator's default (Zipf exponent ``TRAIN_ZIPF``)
    so that nearly every pin has interactions and the model's catalogue is the whole one. The
    ``training_interactions`` model then runs on them (``_build_training_interactions``): each
    example's history comes from the warehouse, as in the pipeline."""
    import numpy as np
    import pyarrow as pa

    from recflow.producers.generate import (
        USERS_PER_CHUNK,
        GeneratorConfig,
        _catalogues,
        _ids,
        _impressions,
        _world,
    )
    from recflow.warehouse import connect

    cfg = GeneratorConfig(
        start=DAY,
        users=users,
        pins=pins,
        impressions_per_user_day=interactions / users * TRAIN_OVERDRAW,
        zipf_exponent=TRAIN_ZIPF,
    )
    world = _world(cfg)
    pin_table, user_table = _catalogues(cfg, world)
    base = np.datetime64(dt.datetime(2026, 1, 1), "s")
    with connect(settings) as con:
        con.execute("create schema if not exists analytics")
        con.replace_table_with_arrow("analytics.dim_pins", pin_table.select(["pin_id", "topics"]))
        con.replace_table_with_arrow(
            "analytics.dim_users", user_table.select(["user_id", "country", "age", "gender", "occupation"])
        )
        del pin_table, user_table
        for lo in range(0, users, USERS_PER_CHUNK):
            rng = np.random.default_rng([cfg.seed, 3, lo])
            user, pin = _impressions(cfg, world, rng, np.arange(lo, min(lo + USERS_PER_CHUNK, users)))
            pair = np.unique(user.astype(np.int64) * pins + pin)  # a block holds its users' every pair
            user, pin = pair // pins, pair % pins
            stamps = base + rng.integers(0, 30 * 86_400, len(user)).astype("timedelta64[s]")
            table = pa.table(
                {
                    "user_id": _ids("u", user),
                    "pin_id": _ids("p", pin),
                    "weight": pa.array(rng.choice([1.0, 2.0, 3.0], len(user), p=[0.7, 0.2, 0.1])),
                    "n_positive_events": pa.array(np.ones(len(user), np.int64)),
                    "last_positive_ts": pa.array(
                        stamps.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")
                    ),
                }
            )
            if lo == 0:
                con.replace_table_with_arrow("analytics.int_user_pin_engagement", table)
            else:
                con.append_arrow("analytics.int_user_pin_engagement", table)


def _build_training_interactions(settings: Settings) -> None:
    """``dbt run`` of the ``training_interactions`` model alone on the marts ``write_engagements`` wrote
    (its tests read tables this benchmark does not build; the pipeline runs them). The process's
    environment holds ``settings.dbt_env()``: the parent passes it."""
    from dbt.cli.main import dbtRunner

    from recflow.transform.build import dbt_args

    result = dbtRunner().invoke([*dbt_args("run", settings), "--select", "training_interactions"])
    if not result.success:
        raise RuntimeError(f"dbt run of training_interactions failed: {result.exception or result.result}")


def training_at(
    base: Settings, interactions: int, users: int, pins: int, input_alone: bool = True
) -> dict[str, Any]:
    """One epoch of the training job on about ``interactions`` train pairs: the marts are drawn
    (``write_engagements``), ``training_interactions`` is built by dbt and snapshotted as the
    pipeline does, each in its own process; then the job trains on the snapshot's train channel.
    ``input_alone`` also times the streamed input without a training step (``input_throughput``:
    a second mapping pass, a fifth of the job's time at 100M, so it can be left out)."""
    settings = bench_home(base, "scale", f"training-{interactions}")
    shutil.rmtree(settings.home, ignore_errors=True)
    settings.home.mkdir(parents=True)
    env = subprocess_env({**settings.child_env(), **settings.dbt_env()})
    draw = [str(interactions), str(users), str(pins)]
    prepare = {
        "marts": _child([sys.executable, "-m", "bench.scale", "engagements", *draw], env),
        "training_interactions": _child([sys.executable, "-m", "bench.scale", "training-interactions"], env),
        "snapshot": _child([sys.executable, "-m", "bench.scale", "step", "snapshot"], env),
    }
    (manifest,) = (file_uri_path(settings.artifacts_uri) / "snapshots").glob("*/manifest.json")
    channel = manifest.parent / "train"
    written = _parquet_rows(channel / "interactions.parquet")
    root = settings.home / "job"
    layout = JobLayout(root)
    layout.write_config(TRAIN_HYPERPARAMETERS, {"train": {}})
    # the job runs its own copy of the code, as an image would: TensorFlow reads a function's source
    # when it traces it (at export, an hour in at 100M), and an edit of ml/ meanwhile broke a run
    code = shutil.copytree(PROJECT_ROOT / "ml", root / "code", ignore=shutil.ignore_patterns("__pycache__"))
    job_env = subprocess_env(
        {
            "SAGEMAKER_BASE_DIR": str(root),
            "SM_CHANNELS": json.dumps(["train"]),
            "SM_CHANNEL_TRAIN": str(channel),
            "TRAINING_JOB_NAME": "bench-scale",
            "PYTHONPATH": str(code),
        }
    )
    for step, measured in prepare.items():
        log.info(
            "%d interactions: %s %.0fs, peak %.0f MB",
            interactions,
            step,
            measured["seconds"],
            measured["peak_memory_mb"],
        )
    log.info("training on %d interactions, %d users, %d pins", written, users, pins)
    job = _child([sys.executable, "-m", "recflow_ml.train", "train"], job_env)
    metadata = json.loads((root / "model" / "metadata.json").read_text())
    epoch = metadata["history"][0]
    latency = _child_json([sys.executable, "-m", "bench.scale", "recommend", str(root / "model")])
    hyperparameters = json.dumps(metadata["hyperparameters"])
    alone = (
        _child_json([sys.executable, "-m", "bench.scale", "input-throughput", str(channel), hyperparameters])
        if input_alone
        else {}
    )
    result = {
        "target_interactions": interactions,
        "interactions": written,
        "users": metadata["users"],
        "pins": metadata["pins"],
        "input": metadata["input"],
        "hyperparameters": metadata["hyperparameters"],
        "prepare": prepare,
        "epoch_seconds": epoch["seconds"],
        "input_wait_share": epoch["input_seconds"] / epoch["seconds"],
        "train_examples_per_second": written / epoch["seconds"],
        **alone,
        "job_seconds": job["seconds"],
        "peak_memory_mb": job["peak_memory_mb"],
        **latency,
    }
    shutil.rmtree(settings.home, ignore_errors=True)
    return result


def input_throughput(channel: Path, hyperparameters: Mapping[str, str]) -> dict[str, float]:
    """The streamed input alone, as the job streams ``channel`` with ``hyperparameters`` (no training
    step): the pass that maps every row group to model rows and keeps them (once per job), then one
    epoch of batches read back from them: how fast the input could feed a faster step (a GPU's)."""
    import tempfile

    from recflow_ml.hyperparameters import Hyperparameters
    from recflow_ml.stream import open_stream, serving_histories

    hp = Hyperparameters.from_strings(hyperparameters)
    with tempfile.TemporaryDirectory(prefix="bench-input-") as cache:
        stream, _ = open_stream(channel / "interactions.parquet", hp, cache_dir=Path(cache))
        started = time.perf_counter()
        serving_histories(stream)
        mapping = time.perf_counter() - started
        started = time.perf_counter()
        examples = sum(len(batch) for batch in stream.batches(1))
        seconds = time.perf_counter() - started
    return {
        "input_examples_per_second": examples / seconds,
        "input_epoch_seconds": seconds,
        "input_mapping_pass_seconds": mapping,
    }


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _child_json(args: Sequence[str]) -> dict[str, Any]:
    out = subprocess.run(list(args), check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def recommend_latency(model_dir: Path, calls: int = RECOMMEND_CALLS) -> dict[str, float]:
    """``recommend`` for one user per call over random known users: p50/p99 in ms (after a warm-up)."""
    import numpy as np
    import tensorflow as tf

    started = time.perf_counter()
    model = tf.saved_model.load(str(model_dir))
    load_seconds = time.perf_counter() - started
    users = model.user_id_list.numpy()
    rng = np.random.default_rng(0)
    fn = model.signatures["recommend"]
    fn(user_id=tf.constant([users[0]]))  # warm-up: the first call traces
    times = []
    for u in rng.choice(users, calls):
        t0 = time.perf_counter()
        out = fn(user_id=tf.constant([u]))
        out["item_id"].numpy()
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "recommend_p50_ms": float(np.percentile(times, 50)),
        "recommend_p99_ms": float(np.percentile(times, 99)),
        "recommend_calls": calls,
        "model_load_seconds": load_seconds,
    }


# --- report -------------------------------------------------------------------------------
def loglog_slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def training_runs(
    training: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None,
) -> list[Mapping[str, Any]]:
    """The training runs of a report, smallest first (a report before several volumes held one run)."""
    if training is None:
        return []
    runs = [training] if isinstance(training, Mapping) else list(training)
    return sorted(runs, key=lambda t: t["interactions"])


def summarise(
    volumes: Sequence[Mapping[str, Any]], training: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None
) -> dict[str, Any]:
    points = [(float(v["events"]), float(v["seconds"])) for v in volumes]
    largest = max(volumes, key=lambda v: v["events"])
    summary: dict[str, Any] = {
        "slope": loglog_slope(points) if len(points) > 1 else None,
        "slope_by_step": {
            step: loglog_slope([(float(v["events"]), float(v["steps"][step]["seconds"])) for v in volumes])
            for step in STEPS
        }
        if len(points) > 1
        else None,
        "slope_last_decade": loglog_slope(
            [
                (float(v["events"]), float(v["seconds"]))
                for v in sorted(volumes, key=lambda v: v["events"])[-2:]
            ]
        )
        if len(points) > 1
        else None,
        "largest_events": largest["events"],
        "seconds_largest": largest["seconds"],
        "seconds_100m": next((v["seconds"] for v in volumes if v["target_events"] == 100_000_000), None),
        "peak_memory_mb": max(v["peak_memory_mb"] for v in volumes),
    }
    runs = training_runs(training)
    if runs:
        smallest, largest_run = runs[0], runs[-1]
        summary["train_examples_per_second"] = {
            t["interactions"]: t["train_examples_per_second"] for t in runs
        }
        summary["train_peak_memory_mb"] = {t["interactions"]: t["peak_memory_mb"] for t in runs}
        summary["train_peak_ratio"] = (
            largest_run["peak_memory_mb"] / smallest["peak_memory_mb"] if len(runs) > 1 else None
        )
        waits = [t["input_wait_share"] for t in runs if "input_wait_share" in t]
        summary["input_wait_share"] = max(waits) if waits else None
        summary["recommend_p50_ms"] = largest_run["recommend_p50_ms"]
        summary["recommend_p99_ms"] = largest_run["recommend_p99_ms"]
        summary["peak_memory_mb"] = max(summary["peak_memory_mb"], *(t["peak_memory_mb"] for t in runs))
    return summary


def plot(volumes: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = [v["events"] for v in volumes]
    fig, (ax, mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    for step in STEPS:
        ax.plot(events, [v["steps"][step]["seconds"] for v in volumes], marker="o", label=step)
    ax.plot(
        events, [v["seconds"] for v in volumes], marker="s", color="black", linewidth=2, label="all steps"
    )
    lo, hi = min(events), max(events)
    first = volumes[0]["seconds"]
    ax.plot([lo, hi], [first, first * hi / lo], linestyle=":", color="grey", label="linear from the first")
    ax.set(xscale="log", yscale="log", xlabel="events in the day", ylabel="seconds", title="Time per step")
    ax.legend(fontsize=8)
    for step in STEPS:
        mem.plot(events, [v["steps"][step]["peak_memory_mb"] for v in volumes], marker="o", label=step)
    mem.axhline(GOALS["peak_memory_mb"], linestyle="--", color="red", label="goal (8 GB)")
    mem.set(xscale="log", xlabel="events in the day", ylabel="peak resident memory (MB)", title="Peak memory")
    mem.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _per_second(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} / s"


def _verdict(value: float | None, goal: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value <= goal else "**not met**"


def docs_section(report: Mapping[str, Any]) -> str:
    s, m = report["summary"], report["machine"]
    lines = [
        "<!-- scale:start -->",
        "## Scale: warehouse steps at 1M to 100M events, training over a million pins",
        "",
        f"`{COMMAND}` at {report['git_commit'][:10]} on {m['nproc']} cores ({m['cpu']}, {m['ram_gib']} GiB RAM), "
        f"{report['finished_at']}; DuckDB memory limit {report['duckdb_memory_limit']}. Each step runs in its "
        "own process, as an Airflow task would, so each pays its own imports. Raw figures: "
        "`bench/results/scale.json`.",
        "",
        "| events | users | pins | " + " | ".join(STEPS) + " | all steps | peak memory |",
        "|---:|---:|---:|" + "---:|" * len(STEPS) + "---:|---:|",
    ]
    for v in report["volumes"]:
        cells = [f"{v['steps'][step]['seconds']:.1f} s" for step in STEPS]
        lines.append(
            f"| {v['events']:,} | {v['users']:,} | {v['pins']:,} | "
            + " | ".join(cells)
            + f" | **{v['seconds']:.0f} s** | {max(x['peak_memory_mb'] for x in v['steps'].values()):,.0f} MB |"
        )
    lines += ["", "| goal | measured | verdict |", "|---|---:|---|"]
    slope = s.get("slope")
    lines.append(
        f"| cost linear in events: log-log slope ≤ {GOALS['slope']} | "
        f"{'—' if slope is None else f'{slope:.2f}'} | {_verdict(slope, GOALS['slope'])} |"
    )
    secs = s.get("seconds_100m")
    lines.append(
        f"| 100M events end to end ≤ {GOALS['seconds_100m'] / 60:.0f} min | "
        f"{'—' if secs is None else f'{secs / 60:.1f} min'} | {_verdict(secs, GOALS['seconds_100m'])} |"
    )
    lines.append(
        f"| peak memory ≤ 8 GB (every step, and the training job) | {s['peak_memory_mb']:,.0f} MB | "
        f"{_verdict(s['peak_memory_mb'], GOALS['peak_memory_mb'])} |"
    )
    if s.get("slope_by_step"):
        lines += [
            "",
            "Slope per step: "
            + ", ".join(f"{step} {value:.2f}" for step, value in s["slope_by_step"].items())
            + f"; all steps between the two largest volumes alone: {s['slope_last_decade']:.2f} (the fit "
            "over every volume is flattered by each step's fixed start-up, which weighs most at 1M).",
        ]
    lines += ["", "![time and memory against events](img/scale.png)", ""]
    runs = training_runs(report.get("training"))
    if runs:
        hp = runs[-1]["hyperparameters"]
        when = "; ".join(
            f"{t['interactions']:,} at {t.get('git_commit', report['git_commit'])[:10]}, "
            f"{t.get('finished_at', report['finished_at'])}"
            for t in runs
        )
        lines += [
            f"**Training at scale** ({when}). "
            "One epoch of the training job (`python -m recflow_ml.train`) on the train "
            + (
                "channel of a snapshot: the marts are drawn from the generator's world, `training_interactions` "
                "is built by dbt (each example's history from the warehouse) and snapshotted as the pipeline "
                "does. "
                if all("prepare" in t for t in runs)
                else "channel drawn from the generator's world and written directly (a run from before the "
                "histories came from the warehouse). "
            )
            + "Hyperparameters: "
            + ", ".join(f"`{k}={v}`" for k, v in hp.items())
            + ".",
            "",
            "| interactions | users | pins | input | examples / s | waiting for input | input alone "
            "| epoch | whole job | peak memory | `recommend` p50 | `recommend` p99 |",
            "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in runs:
            wait = t.get("input_wait_share")
            lines.append(
                f"| {t['interactions']:,} | {t['users']:,} | {t['pins']:,} | {t.get('input', 'memory')} | "
                f"{t['train_examples_per_second']:,.0f} | {'—' if wait is None else f'{wait:.1%}'} | "
                f"{_per_second(t.get('input_examples_per_second'))} | {t['epoch_seconds']:.0f} s | {t['job_seconds']:.0f} s | {t['peak_memory_mb']:,.0f} MB | "
                f"{t['recommend_p50_ms']:.1f} ms | {t['recommend_p99_ms']:.1f} ms |"
            )
        ratio, wait = s.get("train_peak_ratio"), s.get("input_wait_share")
        lines += [
            "",
            "| training goal | measured | verdict |",
            "|---|---:|---|",
            f"| peak memory of the largest run within {GOALS['train_peak_ratio']}x the smallest's | "
            f"{'—' if ratio is None else f'{ratio:.2f}x'} | {_verdict(ratio, GOALS['train_peak_ratio'])} |",
            f"| waiting for input < {GOALS['input_wait_share']:.0%} of the epoch | "
            f"{'—' if wait is None else f'{wait:.1%}'} | "
            f"{'not measured' if wait is None else ('met' if wait < GOALS['input_wait_share'] else '**not met**')} |",
            "",
            f"`recommend` is timed over {runs[-1]['recommend_calls']} calls of one user each on the exported "
            "SavedModel (exact top-100 over every pin), after one warm-up call.",
            "",
        ]
    if report.get("engines"):
        from bench.engines import docs_lines

        lines += docs_lines(report["engines"], STEPS)
    lines.append("<!-- scale:end -->")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    step = sub.add_parser("step", help="run one warehouse step in this process (used by the benchmark)")
    step.add_argument("name", choices=STEPS)
    gen = sub.add_parser("generate", help="generate one day into RECFLOW_HOME's landing zone")
    gen.add_argument("--users", type=int, required=True)
    gen.add_argument("--pins", type=int, required=True)
    sub.add_parser("render", help="rewrite the summary, plot and docs section from --out's figures")
    sub.add_parser("training", help="only the training runs (--train-interactions), into --out's `training`")
    eng = sub.add_parser(
        "engines", help="the warehouse steps on each engine side by side, into --out's `engines`"
    )
    eng.add_argument("--engines", nargs="+", choices=("duckdb", "spark"), default=["duckdb", "spark"])
    eng.add_argument("--engine-events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    eng_marts = sub.add_parser("engagements", help="draw the training marts into RECFLOW_HOME's warehouse")
    eng_marts.add_argument("interactions", type=int)
    eng_marts.add_argument("users", type=int)
    eng_marts.add_argument("pins", type=int)
    sub.add_parser("training-interactions", help="run the training_interactions model on them")
    feed = sub.add_parser(
        "input-throughput", help="time one epoch of a channel's streamed input; prints JSON"
    )
    feed.add_argument("channel", type=Path)
    feed.add_argument("hyperparameters", type=json.loads, help="the job's, as a JSON object of strings")
    rec = sub.add_parser("recommend", help="time `recommend` on a SavedModel; prints JSON")
    rec.add_argument("model_dir", type=Path)
    p.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    p.add_argument("--train-interactions", type=int, nargs="+", default=[10_000_000, 100_000_000])
    p.add_argument("--train-users", type=int, default=1_000_000)
    p.add_argument("--train-pins", type=int, default=1_000_000)
    p.add_argument("--skip-training", action="store_true")
    p.add_argument(
        "--skip-input-alone",
        action="store_true",
        help="do not time the streamed input without a training step (it repeats the job's mapping pass)",
    )
    p.add_argument("--out", type=Path, default=RESULTS_PATH)
    p.add_argument("--docs", type=Path, default=DOCS_PATH)
    p.add_argument("--plot", type=Path, default=PLOT_PATH)
    return p.parse_args(argv)


def _child_command(args: argparse.Namespace, settings: Settings) -> bool:
    """Run one of the benchmark's own child commands (a step in its own process); False for none."""
    if args.command == "step":
        run_step(settings, args.name)
    elif args.command == "generate":
        from recflow.producers.generate import GeneratorConfig, generate

        generate(settings.landing_dir, GeneratorConfig(start=DAY, days=1, users=args.users, pins=args.pins))
    elif args.command == "engagements":
        write_engagements(settings, args.interactions, args.users, args.pins)
    elif args.command == "training-interactions":
        _build_training_interactions(settings)
    elif args.command == "input-throughput":
        print(json.dumps(input_throughput(args.channel, args.hyperparameters)))
    elif args.command == "recommend":
        print(json.dumps(recommend_latency(args.model_dir)))
    else:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    settings = Settings.from_env()
    if _child_command(args, settings):
        return 0
    if args.command == "engines":
        from bench.engines import compare

        report = json.loads(args.out.read_text())
        report["engines"] = compare(settings, args.engines, args.engine_events)
        report["engines"]["git_commit"] = settings.git_commit
        report["engines"]["finished_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        _write(report, args)
        return 0
    if args.command == "training":
        report = json.loads(args.out.read_text())
        runs = {t.get("target_interactions"): t for t in training_runs(report.get("training"))}
        for n in sorted(args.train_interactions):  # a run of the same volume is replaced, others kept
            runs[n] = training_at(
                settings, n, args.train_users, args.train_pins, not args.skip_input_alone
            ) | {
                "git_commit": settings.git_commit,
                "finished_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            }
        report["training"] = training_runs(list(runs.values()))
        report["summary"] = summarise(report["volumes"], report["training"])
        _write(report, args)
        return 0
    if args.command == "render":
        report = json.loads(args.out.read_text())
        report["summary"] = summarise(report["volumes"], report["training"])
        _write(report, args)
        return 0
    volumes = [warehouse_at(settings, n) for n in sorted(args.events)]
    training = (
        None
        if args.skip_training
        else [
            training_at(settings, n, args.train_users, args.train_pins, not args.skip_input_alone)
            for n in sorted(args.train_interactions)
        ]
    )
    report = {
        "command": COMMAND,
        "git_commit": settings.git_commit,
        "finished_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "duckdb_memory_limit": settings.duckdb_memory_limit,
        "goals": GOALS,
        "volumes": volumes,
        "training": training,
        "summary": summarise(volumes, training),
    }
    _write(report, args)
    return 0


def _write(report: Mapping[str, Any], args: argparse.Namespace) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report["volumes"], args.plot)
    write_section(args.docs, docs_section(report), "scale")
    log.info("summary: %s", json.dumps(report["summary"]))


if __name__ == "__main__":
    sys.exit(main())
