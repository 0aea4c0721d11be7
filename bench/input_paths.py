"""Both input paths of the training job on the MovieLens pipeline's own snapshot, scored as the gate scores.

``python -m bench.input_paths``, after ``make bench-pipeline`` (whose home under
``$RECFLOW_HOME/benchmarks/movielens-100k`` holds the snapshot). The training job's entrypoint
(``python -m recflow_ml.train``) trains twice on the snapshot's train channel with the
hyperparameters the pipeline used (``bench/results/pipeline-movielens-100k.json``): once loaded
whole (``stream_min_interactions`` above the channel, as the pipeline runs it), once streamed
(``stream_min_interactions=1``). Each model is scored by the evaluation the gate runs
(``recflow.evaluation``) on the snapshot's holdout. Only the order of the examples differs between
the two (``docs/model.md``). Writes ``bench/results/input-paths-movielens-100k.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.report import machine
from recflow.core.artifacts import LocalArtifactStore, file_uri_path
from recflow.core.config import PROJECT_ROOT, Settings, subprocess_env
from recflow.evaluation import EVAL_SEED, evaluate, load_eval_set, savedmodel_scorer
from recflow.snapshot import Snapshot
from recflow.stack.benchmark import benchmark_settings
from recflow_ml.layout import JobLayout

log = logging.getLogger("bench.input_paths")

PIPELINE_RESULT = PROJECT_ROOT / "bench" / "results" / "pipeline-movielens-100k.json"
RESULTS_PATH = PROJECT_ROOT / "bench" / "results" / "input-paths-movielens-100k.json"
COMMAND = "make bench-pipeline && python -m bench.input_paths"


def pipeline_snapshot(settings: Settings) -> Path:
    """The snapshot folder of the MovieLens benchmark's home (``make bench-pipeline`` wrote it)."""
    root = file_uri_path(benchmark_settings(settings).artifacts_uri) / "snapshots"
    manifests = sorted(root.glob("*/manifest.json"), key=lambda p: json.loads(p.read_text())["created_at"])
    if not manifests:
        raise FileNotFoundError(f"no snapshot under {root}: run `make bench-pipeline` first")
    return manifests[-1].parent


def train_and_score(snapshot_dir: Path, hyperparameters: dict[str, str], work: Path) -> dict[str, Any]:
    """The job trained on the snapshot's train channel, its metrics on the holdout and its input path."""
    layout = JobLayout(work)
    layout.write_config(hyperparameters, {"train": {}})
    env = subprocess_env({"SAGEMAKER_BASE_DIR": str(work), "SM_CHANNEL_TRAIN": str(snapshot_dir / "train")})
    job = subprocess.run(
        [sys.executable, "-m", "recflow_ml.train", "train"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if job.returncode != 0:
        raise RuntimeError(f"training job exited {job.returncode}: {job.stderr[-2000:]}")
    snapshot = Snapshot.from_xcom(json.loads((snapshot_dir / "manifest.json").read_text()))
    data = load_eval_set(LocalArtifactStore(), snapshot, work, seed=EVAL_SEED)
    metrics = evaluate(savedmodel_scorer(layout.model_dir), data)
    metadata = json.loads((layout.model_dir / "metadata.json").read_text())
    return {
        "input": metadata["input"],
        "train_seconds": metadata["train_seconds"],
        **{k: v for k, v in metrics.items() if "@" in k},
    }


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m bench.input_paths", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = p.parse_args(argv)
    settings = Settings.from_env()
    snapshot_dir = pipeline_snapshot(settings)
    hyperparameters = json.loads(PIPELINE_RESULT.read_text())["hyperparameters"]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path, threshold in (
            ("memory", hyperparameters.get("stream_min_interactions", "5000000")),
            ("stream", "1"),
        ):
            log.info("training on snapshot %s, %s", snapshot_dir.name, path)
            runs[path] = train_and_score(
                snapshot_dir, {**hyperparameters, "stream_min_interactions": threshold}, Path(tmp) / path
            )
            assert runs[path]["input"] == path, runs[path]
    report = {
        "command": COMMAND,
        "git_commit": settings.git_commit,
        "machine": machine(),
        "snapshot_id": snapshot_dir.name,
        "hyperparameters": hyperparameters,
        "runs": runs,
        "stream_minus_memory": {k: runs["stream"][k] - runs["memory"][k] for k in runs["memory"] if "@" in k},
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["runs"] | {"stream_minus_memory": report["stream_minus_memory"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
