"""The warehouse steps on DuckDB and on a two-worker Spark cluster, side by side (``make bench-scale ENGINES=...``).

``python -m bench.scale engines --engines duckdb spark --events 1000000 10000000``: at each volume,
one generated day goes through the same bare steps as the scale benchmark (``land``, ``audit``,
``dbt build``, ``check_marts``, ``snapshot``, each in its own process) on each engine. On Spark a
fresh cluster (``recflow.stack.spark_cluster``: a standalone master, two workers, the Thrift server,
all on 127.0.0.1) serves each volume, so that every JVM's peak resident memory (``VmHWM``: the
master, the workers, their executors, the Thrift server that drives every query) is that volume's;
while each step runs, the JVMs' summed resident memory is sampled every half second. The step's own
process is measured as in the scale benchmark (``ru_maxrss``).

The results go into ``bench/results/scale.json`` under ``engines`` (the rest of the file is kept)
and into the scale section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recflow.core.config import Settings
from recflow.stack.ports import free_port_block

log = logging.getLogger("bench.engines")

SAMPLE_SECONDS = 0.5


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (MB) of process ``pid``; empty when it has gone."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) // 1024
    except OSError:
        return {}
    return found


def _children(parents: set[int]) -> set[int]:
    """The processes whose parent is one of ``parents`` (the executors the workers launch)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) in parents:
            found.add(int(entry.name))
    return found


class JvmSampler:
    """The cluster's JVMs (roles → pids, executors found as the workers' children) and their memory."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def processes(self) -> dict[str, int]:
        workers = {pid for role, pid in self.pids.items() if role.startswith("worker")}
        executors = sorted(_children(workers))
        return {**self.pids, **{f"executor-{i}": pid for i, pid in enumerate(executors, start=1)}}

    def rss_mb(self) -> int:
        return sum(_status(pid).get("VmRSS", 0) for pid in self.processes().values())

    def peaks_mb(self) -> dict[str, int]:
        """Each JVM's peak resident memory since it started."""
        peaks = {role: _status(pid).get("VmHWM", 0) for role, pid in self.processes().items()}
        return {role: mb for role, mb in peaks.items() if mb}  # a child that has already gone has none

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._peak = max(self._peak, self.rss_mb())

    @contextmanager
    def sampling(self) -> Iterator[dict[str, int]]:
        """While the body runs, the JVMs' summed RSS is sampled; the peak lands in the yielded dict."""
        result: dict[str, int] = {}
        self._peak, self._stop = self.rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        try:
            yield result
        finally:
            self._stop.set()
            self._thread.join()
            result["jvm_peak_memory_mb"] = max(self._peak, self.rss_mb())


@contextmanager
def spark_settings(base: Settings, folder: Path) -> Iterator[tuple[Settings, JvmSampler]]:
    """A fresh two-worker cluster in ``folder`` on free ports, and settings whose warehouse it is."""
    from recflow.stack import spark_cluster

    ports = free_port_block(9)  # the master's block of 8 (its UIs' ports), then the Thrift server's
    spark = dataclasses.replace(base.spark, cluster_dir=folder, master_port=ports, thrift_port=ports + 8)
    cluster = dataclasses.replace(base, spark=spark)
    state = spark_cluster.start(cluster, echo=log.info)
    try:
        yield (
            dataclasses.replace(cluster, warehouse_url=state.warehouse_url, dbt_target="spark"),
            JvmSampler(state.pids),
        )
    finally:
        spark_cluster.stop(cluster, echo=log.info)


def warehouse_on(base: Settings, engine: str, events: int) -> dict[str, Any]:
    """One volume's steps on ``engine``: the scale benchmark's figures, and on Spark the JVMs' memory."""
    from bench import scale

    if engine == "duckdb":
        return scale.warehouse_at(base, events, label=f"duckdb-{events}")
    if engine != "spark":
        raise ValueError(f"unknown engine {engine!r}: duckdb or spark")
    folder = base.home / "benchmarks" / "scale" / f"spark-cluster-{events}"
    with spark_settings(base, folder) as (settings, jvms):
        result = scale.warehouse_at(base, events, label=f"spark-{events}", sampler=jvms, cluster=settings)
        result["jvm_peaks_mb"] = jvms.peaks_mb()
    result["cluster"] = {"workers": base.spark.workers, "worker_cores": base.spark.worker_cores,
                         "worker_memory": base.spark.worker_memory, "driver_memory": base.spark.driver_memory}  # fmt: skip
    return result


def compare(base: Settings, engines: Sequence[str], events: Sequence[int]) -> dict[str, Any]:
    """Every engine at every volume, and Spark's time over DuckDB's per volume and step."""
    runs = {engine: [warehouse_on(base, engine, n) for n in sorted(events)] for engine in engines}
    ratios = []
    if {"duckdb", "spark"} <= set(runs):
        for duck, spark in zip(runs["duckdb"], runs["spark"], strict=True):
            ratios.append(
                {
                    "events": duck["events"],
                    "spark_over_duckdb": spark["seconds"] / duck["seconds"],
                    "by_step": {
                        s: spark["steps"][s]["seconds"] / duck["steps"][s]["seconds"] for s in duck["steps"]
                    },
                }
            )
    return {"engines": list(engines), "runs": runs, "ratios": ratios, "cpu_count": os.cpu_count()}


def docs_lines(comparison: Mapping[str, Any], steps: Sequence[str]) -> list[str]:
    """The side-by-side table of the scale section."""
    lines = [
        "### The engines side by side: DuckDB and Spark (two workers)",
        "",
        "The same day through the same steps, each step in its own process; Spark is a standalone master, "
        "two workers (one core, one executor each) and the Thrift server, all on this machine, started afresh "
        "for each volume. Memory: the step's process, and the sum of the cluster's JVMs sampled while the "
        "step ran (its peak).",
        "",
        "| engine | events | " + " | ".join(steps) + " | all steps | step process peak | JVMs peak |",
        "|---|---:|" + "---:|" * len(steps) + "---:|---:|---:|",
    ]
    for engine, volumes in comparison["runs"].items():
        for v in volumes:
            jvm = max((s.get("jvm_peak_memory_mb", 0) for s in v["steps"].values()), default=0)
            lines.append(
                f"| {engine} | {v['events']:,} | "
                + " | ".join(f"{v['steps'][s]['seconds']:.1f} s" for s in steps)
                + f" | **{v['seconds']:.0f} s** | {max(x['peak_memory_mb'] for x in v['steps'].values()):,.0f} MB | "
                + (f"{jvm:,} MB |" if engine == "spark" else "— |")
            )
    if comparison["ratios"]:
        lines += ["", "Spark's time over DuckDB's: " + "; ".join(
            f"{r['events']:,} events {r['spark_over_duckdb']:.1f}× (" + ", ".join(
                f"{s} {x:.1f}×" for s, x in r["by_step"].items()) + ")" for r in comparison["ratios"]) + "."]  # fmt: skip
        spark_runs = comparison["runs"].get("spark", [])
        if spark_runs:
            peaks = spark_runs[-1].get("jvm_peaks_mb", {})
            lines += ["", f"Peak resident memory of each JVM at {spark_runs[-1]['events']:,} events: "
                      + ", ".join(f"{role} {mb:,} MB" for role, mb in peaks.items()) + "."]  # fmt: skip
    return [*lines, ""]
