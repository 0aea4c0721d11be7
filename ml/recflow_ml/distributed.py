"""Training on several hosts: ``tf.distribute.MultiWorkerMirroredStrategy`` over the job's hosts.

Every worker runs the whole entrypoint and holds the whole model. With a train channel held whole
(under ``stream_min_interactions``; a streamed one below), every worker walks the same global batches
(``epoch_order`` is a function of the seed and the epoch only). Each worker computes the
loss and gradients of its own contiguous shard of every global batch (``Workers.shard``),
normalised by the global batch's weight, so the sum over workers is the gradient of the
global batch; the strategy's collective all-reduce sums them, and every worker applies that
same update, so the variables stay equal without ever being sent. The strategy is used for
its collectives only: the model's variables are ordinary ``tf.Variable`` objects created
outside its scope, and the optimizers are the single-process ones.

Dense gradients are summed (ring all-reduce on CPU); the embedding tables' sparse gradients
(``tf.IndexedSlices``) are all-gathered (every worker's rows and values, concatenated), which
the optimizers sum per row exactly as they sum a single process's repeated rows: the lazy
AdamW of the sampled softmax then still touches the rows the global batch touched, and
nothing is densified.

With a streamed channel each worker streams only its own row groups instead (``recflow_ml.stream``:
the files a ``ShardedByS3Key`` channel gave it, or those dealt to it of a replicated one), in
batches of its share of the global batch, and each step first sums the workers' weights
and gathers their labels (``Workers.global_sum``, ``global_rows``), so the shards still make one global batch with
the same loss and in-batch candidates. What the workers learn from their files before training is
made global here too: the channel's summary (``gather_bytes``), the label counts (``sum``) and the
serving histories (``merge_serving``).

Only the chief (``hosts[0]``) writes the model, ``metadata.json``, ``output/data`` and the
checkpoints; another worker restores what the platform put in its checkpoint directory but
saves its own checkpoints into a scratch directory (TensorFlow's advice for non-chief workers),
so the shared checkpoint prefix has one writer.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from recflow_ml.contract import ContractError, Hosts

MERGE_ROWS = 1 << 20
"""Users per all-gather of serving histories (``Workers.merge_serving``): 80 MB per host at 20 pins."""


class Workers:
    """This worker's place among the job's workers, and the collectives they train with.

    Must be created before TensorFlow runs its first operation in this process: the strategy
    configures the runtime's collective ops and starts this worker's server."""

    def __init__(self, hosts: Hosts) -> None:
        config = hosts.tf_config()
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(config["cluster"]),
            task_type=config["task"]["type"],
            task_id=config["task"]["index"],
            rpc_layer="grpc",
        )
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        self.index = hosts.index
        self.count = hosts.count
        if self.strategy.num_replicas_in_sync != self.count:
            raise ContractError(
                f"{self.strategy.num_replicas_in_sync} replicas for {self.count} hosts: each host must "
                "train on one device (its CPU), as the batch is split one shard per host"
            )

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    def shard(self, size: int) -> tuple[int, int]:
        """[start, stop) of this worker's rows in a global batch of ``size`` rows: contiguous, in
        worker order, sizes differing by one at most (a worker may get none of a short last batch)."""
        return size * self.index // self.count, size * (self.index + 1) // self.count

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` as this worker's replica (where ``all_reduce`` may be called)."""
        return self.strategy.run(fn, args=args)

    @staticmethod
    def all_reduce(values: Sequence[tf.Tensor | tf.IndexedSlices]) -> list[tf.Tensor | tf.IndexedSlices]:
        """The sum over workers of each value (inside ``run``); an ``IndexedSlices`` is all-gathered.

        Each ``IndexedSlices`` travels with one extra zero row at index -1, dropped on arrival:
        TensorFlow 2.21's all-gather of slices that are empty on every worker (the side-feature
        table's gradient of a job without side features) crashes the process."""
        context = tf.distribute.get_replica_context()
        padded = [_pad(v) if isinstance(v, tf.IndexedSlices) else v for v in values]
        reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, padded)
        return [_unpad(r) if isinstance(r, tf.IndexedSlices) else r for r in reduced]

    def agree(self, value: int, what: str) -> None:
        """Fail unless every worker passes the same ``value`` (also a barrier: it waits for them all)."""
        values = self.gather(np.array(value, np.int64)).tolist()
        if len(set(values)) != 1:
            raise RuntimeError(
                f"the workers disagree on {what}: {values} (worker {self.index} of {self.count})"
            )

    def sum(self, array: np.ndarray) -> np.ndarray:
        """The element-wise sum over workers of ``array`` (the same shape and dtype on every worker)."""
        return np.asarray(self.gather(array).sum(axis=0, dtype=array.dtype))

    def gather(self, array: np.ndarray) -> np.ndarray:
        """Every worker's ``array`` (the same shape and dtype on each), stacked in worker order: [count, ...]."""
        return np.asarray(self.run(_stack, tf.constant(array)))

    def gather_bytes(self, payload: bytes) -> list[bytes]:
        """Every worker's ``payload``, in worker order (any length: padded to the longest to travel)."""
        sizes = self.gather(np.array([len(payload)], np.int64))[:, 0]
        width = -(-int(sizes.max()) // 8) or 1  # as int64 words: what the collectives carry
        words = np.zeros(width, np.int64)
        words.view(np.uint8)[: len(payload)] = np.frombuffer(payload, np.uint8)
        gathered = self.gather(words)
        return [gathered[k].view(np.uint8)[: int(n)].tobytes() for k, n in enumerate(sizes)]

    def merge_serving(self, serving: np.ndarray, latest: np.ndarray) -> np.ndarray:
        """Each user's serving history from the worker holding their last example: ``serving``
        [n_users, N] and ``latest`` [n_users] (that example's ``n_earlier``; -1 where this worker has
        none of the user's) are this worker's, the result every worker's merged (the tables travel
        in blocks of ``MERGE_ROWS`` users). A user whose last examples tie keeps the first worker's."""
        owner = np.argmax(self.gather(latest), axis=0)  # the first of the largest
        merged = np.empty_like(serving)
        for start in range(0, len(serving), MERGE_ROWS):  # in blocks: a collective's message stays small
            rows = np.arange(start, min(start + MERGE_ROWS, len(serving)))
            merged[rows] = self.gather(serving[rows])[owner[rows], np.arange(len(rows))]
        return merged

    @staticmethod
    def global_sum(value: tf.Tensor) -> tf.Tensor:
        """The sum over workers of a scalar (inside ``run``, in a ``tf.function``): a sharded
        channel's step sums the workers' batch weights into the global batch's."""
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)

    @staticmethod
    def global_rows(value: tf.Tensor) -> tf.Tensor:
        """Every worker's rows of ``value``, concatenated in worker order (inside ``run``, in a
        ``tf.function``): a sharded channel's step gathers the global batch's labels."""
        placed = tf.identity(value)  # made in the replica, so placed on its device (an input is not)
        return tf.distribute.get_replica_context().all_gather(placed, axis=0)


# The collectives, traced once per process (a tf.function defined per call would retrace every call).
# An all-gather, not an all-reduce: an all-reduce run eagerly through ``strategy.run`` fails in
# TensorFlow 2.21 ("destinations can not be empty"); the training steps' collectives run inside
# their own tf.function.
@tf.function(reduce_retracing=True)
def _stack(x: tf.Tensor) -> tf.Tensor:
    return tf.distribute.get_replica_context().all_gather(x[tf.newaxis], axis=0)


def _pad(slices: tf.IndexedSlices) -> tf.IndexedSlices:
    zero = tf.zeros(tf.concat([[1], tf.shape(slices.values)[1:]], axis=0), slices.values.dtype)
    return tf.IndexedSlices(
        tf.concat([slices.values, zero], axis=0),
        tf.concat([slices.indices, tf.constant([-1], slices.indices.dtype)], axis=0),
        slices.dense_shape,
    )


def _unpad(slices: tf.IndexedSlices) -> tf.IndexedSlices:
    real = slices.indices >= 0
    return tf.IndexedSlices(
        tf.boolean_mask(slices.values, real), tf.boolean_mask(slices.indices, real), slices.dense_shape
    )


def weights_digest(variables: Sequence[tf.Variable]) -> str:
    """SHA-256 of the variables' bytes: equal on every worker whose variables are in sync."""
    digest = hashlib.sha256()
    for variable in variables:
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()


@contextmanager
def checkpoint_directory(checkpoint_dir: Path, workers: Workers | None) -> Iterator[Path]:
    """Where this worker saves its checkpoints: the job's directory on the chief (or a single
    process); elsewhere a scratch copy of it, so a worker restores what the chief saved there
    (the platform syncs it to every host) without ever writing into it."""
    if workers is None or workers.is_chief:
        yield checkpoint_dir
        return
    with tempfile.TemporaryDirectory(prefix=f"recflow-worker-{workers.index}-") as scratch:
        if checkpoint_dir.is_dir():
            shutil.copytree(checkpoint_dir, scratch, dirs_exist_ok=True)
        yield Path(scratch)
