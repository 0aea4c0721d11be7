"""Distributed training (issue 7): the entrypoint as two workers on loopback matches one process.

The same job runs twice through ``python -m recflow_ml.train``: once as a single process, once
as two worker processes on 127.0.0.1 (each with its own ``SM_CURRENT_HOST``, model and
checkpoint directories, the same ``SM_HOSTS``), which train under ``MultiWorkerMirroredStrategy``.
Both see the same global batches; each worker computes the gradients of its half and the
all-reduce sums them, so the two runs compute the same updates and differ only in the order
floating-point sums are taken (the halves' partial sums added by the all-reduce, the sparse
rows gathered from two workers). Dropout and the OOV replacement are off here: each worker
draws its own masks, which would make the runs agree in distribution only, not to a tolerance.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from recflow.core.config import subprocess_env
from recflow.evaluation import METRIC_NAMES, build_eval_set, evaluate, savedmodel_scorer
from recflow_ml.contract import ContractError, TrainingEnv

N_USERS, N_ITEMS, PER_USER = 300, 200, 12
HYPERPARAMETERS = {
    "embedding_dim": "16",
    "hidden_dim": "32",
    "history_length": "5",
    "epochs": "4",
    "batch_size": "127",  # odd: every global batch splits unevenly (63 + 64 rows), the last one 62 + 63
    "learning_rate": "0.01",
    "dropout": "0",
    "oov_rate": "0",
    "seed": "3",
}
SAMPLED = {"sampled_softmax_min_items": "100", "num_negatives": "64"}
"""The 200-pin catalogue on the sampled softmax: the global batch's labels are every shard's
in-batch candidates, and the embedding tables' sparse gradients feed the lazy AdamW."""
JOB_SECONDS = 240

# Tolerances, all from float32 summation order: the two runs compute the same sums, grouped
# differently (each worker sums its half of a batch, the all-reduce adds the halves; the sparse
# rows of the embedding tables arrive gathered from two workers and are summed per row in another
# order). Observed on 2 CPU cores: losses agree to ~5e-8 relative, the exported vectors to
# ~2e-6, the metrics exactly.
LOSS_RTOL = 1e-5
"""Per-epoch mean loss (the job's ``metadata.json`` history): float32 rounding of ~1e-7 per
step, compounded over the run's 104 Adam steps."""
VECTOR_ATOL = 1e-4
"""The exported user and item tables (entries of order 0.1 to 1)."""
METRIC_ATOL = 2 / N_USERS
"""Both metric families over 300 holdout users: vectors that agree to ~1e-6 change a rank
only where two candidates' scores are that close; at most two users' outcomes may flip."""


def _channel(directory: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Users and pins in 4 clusters, each user 12 distinct pins of their cluster over time; the
    latest one is the user's holdout positive, the rest the train channel. (train, holdout) pairs."""
    rng = np.random.default_rng(11)
    items = [f"p{i:03d}" for i in range(N_ITEMS)]
    per_cluster = N_ITEMS // 4
    train, holdout, rows = [], [], []
    for k in range(N_USERS):
        user = f"u{k:03d}"
        cluster = items[(k % 4) * per_cluster : (k % 4 + 1) * per_cluster]
        pins = rng.choice(cluster, size=PER_USER, replace=False)
        for t, pin in enumerate(pins[:-1]):
            rows.append((user, str(pin), float(rng.integers(1, 4)), 1_700_000_000 + 3600 * t))
            train.append((user, str(pin)))
        holdout.append((user, str(pins[-1])))
    directory.mkdir(parents=True)
    table = pa.table(
        {
            "user_id": [r[0] for r in rows],
            "pin_id": [r[1] for r in rows],
            "weight": pa.array([r[2] for r in rows], pa.float32()),
            "event_ts": pa.array([r[3] for r in rows], pa.int64()).cast(pa.timestamp("s", tz="UTC")),
        }
    )
    pq.write_table(table, directory / "interactions.parquet")
    return train, holdout


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start(
    base: Path, channel: Path, hps: dict[str, str], resource: dict[str, object] | None, **env: str
) -> subprocess.Popen[bytes]:
    """The entrypoint with the container contract under ``base``, as the local runner lays it out."""
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {}}))
    if resource is not None:
        (config / "resourceconfig.json").write_text(json.dumps(resource))
    return _entrypoint(
        base,
        SAGEMAKER_BASE_DIR=str(base),
        SM_CHANNEL_TRAIN=str(channel),
        TRAINING_JOB_NAME="multiworker",
        **env,
    )


def _entrypoint(base: Path, **env: str) -> subprocess.Popen[bytes]:
    """``python -m recflow_ml.train train`` with ``env`` over what the local runner passes (less any
    contract variable of ours), logging into ``base/job.log``."""
    inherited = subprocess_env({}).items()
    environ = {k: v for k, v in inherited if not k.startswith(("SM_", "TF_CONFIG", "RECFLOW_WORKER_PORT"))}
    environ.update(PYTHONUNBUFFERED="1", **env)
    log = (base / "job.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "recflow_ml.train", "train"],
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _finish(processes: dict[Path, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + JOB_SECONDS
    try:
        for base, process in processes.items():
            code = process.wait(timeout=max(deadline - time.monotonic(), 1))
            assert code == 0, f"{base.name} exited {code}:\n{(base / 'job.log').read_text()[-6000:]}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def _vectors(model_dir: Path) -> dict[str, np.ndarray]:
    loaded = tf.saved_model.load(str(model_dir))
    return {name: getattr(loaded, name).numpy() for name in ("user_vectors", "item_vectors")}


def test_the_contract_names_this_hosts_worker_in_tf_config(tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]})
    )
    hosts = TrainingEnv.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}).hosts
    assert (hosts.distributed, hosts.index, hosts.is_chief) == (True, 1, False)
    assert hosts.tf_config() == {
        "cluster": {"worker": ["algo-1:2222", "algo-2:2222"]},
        "task": {"type": "worker", "index": 1},
    }
    # the toolkit's variables win over the file; a host entry may carry its own port
    hosts = TrainingEnv.from_env(
        {
            "SAGEMAKER_BASE_DIR": str(tmp_path),
            "SM_HOSTS": '["10.0.0.1", "10.0.0.2:5000"]',
            "SM_CURRENT_HOST": "10.0.0.1",
            "RECFLOW_WORKER_PORT": "4000",
        }
    ).hosts
    assert hosts.tf_config() == {
        "cluster": {"worker": ["10.0.0.1:4000", "10.0.0.2:5000"]},
        "task": {"type": "worker", "index": 0},
    }
    assert hosts.is_chief
    # one host, or none named: the single-process path
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    assert not TrainingEnv.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}).hosts.distributed
    assert not TrainingEnv.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path / "none")}).hosts.distributed
    with pytest.raises(ContractError, match=r"current host 'algo-3' is not one of the hosts"):
        TrainingEnv.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path), "SM_CURRENT_HOST": "algo-3"})
    with pytest.raises(ContractError, match=r"RECFLOW_WORKER_PORT='x' is not a port number"):
        TrainingEnv.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path), "RECFLOW_WORKER_PORT": "x"})


@pytest.mark.parametrize("softmax", ["full", "sampled"])
def test_two_workers_on_loopback_train_the_model_one_process_trains(tmp_path: Path, softmax: str) -> None:
    hps = {**HYPERPARAMETERS, **(SAMPLED if softmax == "sampled" else {})}
    channel = tmp_path / "train"
    train, holdout = _channel(channel)
    single = tmp_path / "single"
    started = time.monotonic()
    _finish({single: _start(single, channel, hps, {"current_host": "algo-1", "hosts": ["algo-1"]})})
    single_seconds = time.monotonic() - started

    hosts = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    chief, worker = tmp_path / "worker-0", tmp_path / "worker-1"
    started = time.monotonic()
    _finish(
        {
            # the chief reads the toolkit's variables, the other worker resourceconfig.json only
            chief: _start(chief, channel, hps, None, SM_HOSTS=json.dumps(hosts), SM_CURRENT_HOST=hosts[0]),
            worker: _start(worker, channel, hps, {"current_host": hosts[1], "hosts": hosts}),
        }
    )
    distributed_seconds = time.monotonic() - started

    # only the chief writes: the model, its metadata, output/data and the checkpoints
    assert (chief / "model" / "saved_model.pb").exists()
    assert not (worker / "model").exists() or not any((worker / "model").iterdir())
    assert not (worker / "output" / "data").exists()
    assert any((chief / "checkpoints").glob("ckpt-*"))
    assert not (worker / "checkpoints").exists() or not any((worker / "checkpoints").iterdir())
    assert "TF_CONFIG" in (worker / "job.log").read_text()

    # the variables stayed in sync: both workers ended with the same weights, byte for byte
    digests = [
        line.rsplit(" ", 1)[1]
        for base in (chief, worker)
        for line in (base / "job.log").read_text().splitlines()
        if "trained weights sha256" in line
    ]
    assert len(digests) == 2 and digests[0] == digests[1], digests

    one = json.loads((single / "model" / "metadata.json").read_text())
    two = json.loads((chief / "model" / "metadata.json").read_text())
    assert two["workers"] == 2 and "workers" not in one
    losses = np.array([[h["loss"] for h in run["history"]] for run in (one, two)])
    np.testing.assert_allclose(losses[1], losses[0], rtol=LOSS_RTOL)

    vectors = {name: _vectors(base / "model") for name, base in (("single", single), ("chief", chief))}
    vector_diff = {
        name: float(np.max(np.abs(vectors["chief"][name] - vectors["single"][name])))
        for name in ("user_vectors", "item_vectors")
    }
    assert max(vector_diff.values()) <= VECTOR_ATOL, vector_diff

    data = build_eval_set(holdout, train, sorted({p for _, p in train}))
    metrics = {
        name: evaluate(savedmodel_scorer(base / "model"), data)
        for name, base in (("single", single), ("chief", chief))
    }
    assert metrics["single"]["hr@10"] > 0.3, metrics  # it learned the clusters (random: 0.10)
    metric_diff = {k: abs(metrics["chief"][k] - metrics["single"][k]) for k in METRIC_NAMES}
    print(
        f"{softmax} softmax: single {single_seconds:.1f}s, two workers {distributed_seconds:.1f}s; losses {losses.tolist()}; "
        f"max |Δvector| {vector_diff}; metrics {metrics}; |Δmetric| {metric_diff}"
    )
    assert max(metric_diff.values()) <= METRIC_ATOL, (metric_diff, metrics)
