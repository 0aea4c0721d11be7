"""Check that the exported champion reproduces its registered metrics on the benchmark's holdout.

    .venv/bin/python -m bench.verify_export --name movielens-100k --data-dir ../shared/data/ml-100k

Exports the champion through the same code as ``recflow models export``, scores its
``score`` signature with raw string ids on the leave-last-out holdout (the split of
``bench/movielens_split.py``, the same the dbt model makes), with the pipeline's seeded
negatives, and compares with the metrics stored in the registry.

The champion serves fresh histories (the holdout is in each user's history), so, as the
gate does for a champion, its user vectors are first recomputed from the train rows
(``recflow.evaluation.evaluate_champion``): with the holdout out of the history the
export must give back exactly the metrics the gate scored.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench.movielens_split import leave_last_out
from recflow.core.config import Settings
from recflow.evaluation import EVAL_SEED, METRIC_NAMES, build_eval_set, evaluate_champion
from recflow.producers.movielens import read_items
from recflow.registry import MlflowRegistry
from recflow.stack.benchmark import benchmark_settings


def _pairs(table: object) -> list[tuple[str, str]]:
    return list(zip(table.column("user_id").to_pylist(), table.column("item_id").to_pylist(), strict=True))  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", default="movielens-100k")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--data-dir", default="../shared/data/ml-100k")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        print(f"verify_export: {data_dir} does not exist (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    registry = MlflowRegistry(benchmark_settings(Settings.from_env()))  # the benchmark's own registry
    info = registry.get_by_alias(args.name, args.alias)
    if info is None:
        print(
            f"verify_export: no {args.name}@{args.alias} in the registry: run `make bench-pipeline` first",
            file=sys.stderr,
        )
        return 2
    split = leave_last_out(data_dir)
    catalogue = read_items(data_dir).column("pin_id").to_pylist()
    data = build_eval_set(
        _pairs(split.holdout), _pairs(split.train) + _pairs(split.validation), catalogue, seed=EVAL_SEED
    )
    with tempfile.TemporaryDirectory() as tmp:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        model_dir = registry.download(info, Path(tmp) / "export")
        train = pa.concat_tables([split.train, split.validation])
        history = Path(tmp) / "train.parquet"
        pq.write_table(
            pa.table(
                {
                    "user_id": train.column("user_id"),
                    "pin_id": train.column("item_id"),
                    "event_ts": pc.cast(
                        pc.multiply(train.column("ts"), 1_000_000), pa.timestamp("us", tz="UTC")
                    ),
                }
            ),
            history,
        )
        metrics = evaluate_champion(model_dir, [history], data, Path(tmp))
    # a version registered before the full ranking existed has the sampled metrics only
    registered = {k: info.metrics[k] for k in METRIC_NAMES if k in info.metrics}
    recomputed = {k: metrics[k] for k in registered}
    report = {
        "model": f"{info.name} v{info.version}",
        "registered": registered,
        "recomputed_from_export": recomputed,
        "reproduced": all(abs(registered[k] - recomputed[k]) <= args.tolerance for k in registered),
    }
    print(json.dumps(report, indent=2))
    return 0 if report["reproduced"] else 1


if __name__ == "__main__":
    sys.exit(main())
