"""Side-by-side quality benchmark on MovieLens 100K: ``make bench-quality``.

Also ``python -m bench.quality`` from the repository root. One run trains and
scores every method under the same protocol:

* split: ``bench.movielens_split.leave_last_out`` (train / validation = each
  user's second-to-last rating / holdout = each user's latest rating);
* metrics: ``recflow.evaluation``, both families: the full ranking (full_hr@10, full_ndcg@10,
  full_recall@50 against every item the user has not rated in training) and the sampled one
  (hr@10 and ndcg@10 against 99 never-rated items, seed 42);
* tuning: each baseline's grid is scored on the validation split (trained on
  train), the best setting by validation full_ndcg@10 is retrained on
  train + validation and scored once on the holdout;
* SASRec (``rectools``, PyTorch CPU): the sequence-aware peer, tuned like the baselines
  (a small grid of epochs and maximum sequence length on validation; 64 factors), fitted by
  ``bench/sasrec.py`` in the benchmark venv ``.venv-bench`` (``requirements-bench.txt``,
  which ``make bench-quality`` installs);
* ours: the two-tower model trained through the real training-job entrypoint
  (``python -m recflow_ml.train train`` in a SageMaker directory layout) with
  its own default hyperparameters, on train + validation, scored on the holdout
  through the exported SavedModel.

Writes ``bench/results/quality-movielens-100k.json``, the plot
``docs/img/quality-movielens-100k.png`` and the section between the quality
markers of ``docs/benchmarks.md``. Exits 2 when the data directory is absent.

This module holds the entry point: the arguments, the checks before a run, and the
run itself. The parts it runs: ``bench.quality_prepare`` (the data, the split, the
evaluation sets), ``bench.quality_methods`` (the baselines, SASRec and ours) and
``bench.quality_report`` (the results JSON, the plot, the docs section).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.quality_methods import LABELS, METHODS, metrics_text, run_baseline, run_ours
from bench.quality_prepare import BENCH_PYTHON, DEFAULT_DATA_DIR, DataMissing, check_data, prepare
from bench.quality_report import DOCS_PATH, PLOT_PATH, RESULTS_PATH, results_report, write_report

log = logging.getLogger("bench.quality")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.quality", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"the ml-100k directory (default {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)} (default: all)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--plot", type=Path, default=PLOT_PATH)
    parser.add_argument("--docs", type=Path, default=DOCS_PATH)
    parser.add_argument("--no-write", action="store_true", help="log the results, write nothing")
    parser.add_argument(
        "--bench-python",
        type=Path,
        default=BENCH_PYTHON,
        help=f"the interpreter with rectools and torch, for SASRec (default {BENCH_PYTHON})",
    )
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = args.data_dir.resolve()
    try:
        check_data(data_dir)
    except DataMissing as exc:
        print(f"bench.quality: {exc}", file=sys.stderr)
        return 2
    if "sasrec" in args.methods and not args.bench_python.exists():
        print(
            f"bench.quality: SASRec runs in the benchmark venv, and {args.bench_python} does not exist: "
            "`make bench-quality` creates it from requirements-bench.txt (or pass --methods without sasrec)",
            file=sys.stderr,
        )
        return 2
    if {"als", "bpr"} & set(args.methods) and importlib.util.find_spec("implicit") is None:
        print(
            "bench.quality: the ALS and BPR baselines need the `implicit` package "
            "(pip install implicit==0.7.3; it is pinned in requirements-dev.txt)",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    date = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    ctx = prepare(data_dir)
    ctx.bench_python = args.bench_python
    results = [
        run_ours(ctx) if name == "ours" else run_baseline(name, ctx)
        for name in METHODS
        if name in args.methods
    ]
    total = time.perf_counter() - started
    report = results_report(results, args.methods, args.bench_python, date, total)
    for r in results:
        log.info(
            "%-18s %s train=%.1fs params=%s",
            LABELS[r.name],
            metrics_text(r.holdout),
            r.train_seconds,
            r.params,
        )
    log.info("total %.1fs", total)
    if args.no_write:
        return 0
    write_report(report, results, args.results, args.plot, args.docs)
    log.info("wrote %s, %s, %s", args.results, args.plot, args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
