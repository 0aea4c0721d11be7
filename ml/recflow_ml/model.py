"""A sequence-aware two-tower retrieval model in TensorFlow, and its serving export.

Item tower: an item-id embedding plus the mean of the item's topic embeddings
(index 0 of the id table is the out-of-vocabulary row), and a per-item bias.

User tower: the user-id embedding, one embedding per categorical side feature
(age bucket, gender, occupation, country), and a pooled embedding of the
user's most recent ``history_length`` engaged items (the item tower's id
embeddings, shared; mean, or recency-weighted with ``history_decay`` < 1),
concatenated and passed through a ReLU layer to the shared dimension.

Training is next-item prediction: each train interaction is one example whose
history is that user's items strictly before it in time, and whose label is
the item, scored with a full softmax over the whole catalogue (optionally
masking the history items themselves, which can never be the next item).
A catalogue of ``sampled_softmax_min_items`` pins or more is scored instead
with a sampled softmax (mixed negative sampling with the logQ correction,
``sampled_logits``) and its embedding tables are updated row-sparsely
(``LazyAdamW``), so a step costs O(batch + negatives), not O(catalogue).
A small share of user ids is replaced by the OOV row, so unknown users get a
trained embedding. At export, every known user's tower is evaluated on their
latest ``history_length`` train items and side features, and every item's
vector on its id and topics; the SavedModel holds those tables plus two hash
tables from raw string ids to rows, so callers pass ids only.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import keras
import numpy as np
import pyarrow as pa
import tensorflow as tf

from recflow_ml.checkpoints import EpochCheckpoints
from recflow_ml.hyperparameters import Hyperparameters
from recflow_ml.rows import PAD, Ids, histories, order_ranks, vocabulary_rows
from recflow_ml.stream import Batch

if TYPE_CHECKING:
    from recflow_ml.distributed import Workers
    from recflow_ml.stream import ExampleStream

log = logging.getLogger(__name__)

TOP_K = 100
SERVING_BATCH = 65_536
"""Users per call of the user tower at export: bounds the [users, history_length, d] intermediate."""
PROGRESS_STEPS = 2000
"""An epoch longer than this many steps logs its progress every so many steps."""
SAMPLING_HYPERPARAMETERS = ("sampled_softmax_min_items", "num_negatives")
"""What only the sampled softmax reads: left out of a full-softmax job's checkpoint fingerprint."""
STREAMING_HYPERPARAMETERS = ("shuffle_buffer",)
"""What only the streamed input reads: left out of a job that loads its channel whole."""
UNFINGERPRINTED_HYPERPARAMETERS = ("checkpoint_steps", "stream_min_interactions")
"""What never changes the training itself (the fingerprint records which input path ran instead)."""


@dataclass(frozen=True)
class TrainingData:
    users: Ids
    items: Ids
    weights: np.ndarray
    timestamps: np.ndarray | None = None
    """Event times (any sortable numbers); ``None`` keeps the given row order as time order."""

    def __post_init__(self) -> None:
        if not len(self.users):
            raise ValueError("the train channel holds no interactions: nothing to learn from")
        if self.timestamps is not None and len(self.timestamps) != len(self.users):
            raise ValueError("timestamps must have one entry per interaction")


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    loss: float
    seconds: float
    input_seconds: float = 0.0
    """Of ``seconds``, the time spent waiting for the next batch (reading, mapping, shuffling)."""


@dataclass(frozen=True)
class _Resume:
    """Where a restored job stands: ``epochs`` done, then ``batches`` of the next one trained, whose
    losses summed to ``loss_total``."""

    epochs: int = 0
    batches: int = 0
    loss_total: float = 0.0


@dataclass(frozen=True)
class Sharding:
    """How this worker's own batches (a sharded channel, ``recflow_ml.stream``) make the global
    batches: an epoch is ``steps`` of them on every worker, this worker's rows start at ``offset``
    in each, and ``layout`` identifies what every worker holds (a digest of the files and rows
    dealt to each): a checkpoint is resumed only on the same layout."""

    steps: int
    offset: int
    layout: str


class _Steps(NamedTuple):
    """A softmax's training steps: ``local`` trains a whole batch, ``distributed`` this worker's
    shard of a global batch (``recflow_ml.distributed``), ``sharded`` this worker's own batch as its
    share of a global batch it gathers (a sharded channel); each returns the loss."""

    local: Callable[..., tf.Tensor]
    distributed: Callable[..., tf.Tensor]
    sharded: Callable[..., tf.Tensor]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the ``n`` examples in ``epoch``: a function of (seed, epoch) only, so a run
    resumed from a checkpoint sees the batches an uninterrupted run would have seen."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def negative_rng(seed: int, epoch: int) -> np.random.Generator:
    """The uniform negatives' generator in ``epoch`` (sampled softmax): a function of (seed, epoch),
    as ``epoch_order`` is, so a resumed run draws the negatives an uninterrupted run would have."""
    return np.random.default_rng([seed, epoch, 1])


@dataclass(frozen=True)
class Examples:
    """The train interactions as model rows, each example's history kept implicitly in O(n) memory
    (not O(n × history_length)): ``sorted_items`` holds the item rows ordered by (user, time, item),
    ``slot[r]`` is example r's position in that order and ``rank[r]`` its position within its user's
    run, so its history is the ``min(rank, N)`` items just before ``slot``."""

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    sorted_items: np.ndarray
    slot: np.ndarray
    rank: np.ndarray
    history_length: int

    def __len__(self) -> int:
        return len(self.users)

    def history(self, rows: np.ndarray) -> np.ndarray:
        """The histories of examples ``rows``: [len(rows), history_length] item rows, ``PAD``-filled."""
        return histories(self.sorted_items, self.slot[rows], self.rank[rows], self.history_length)


def _glorot(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    limit = math.sqrt(6.0 / (rows + cols))
    return rng.uniform(-limit, limit, size=(rows, cols)).astype(np.float32)


class LazyAdamW(tf.Module):  # type: ignore[misc]
    """AdamW with Keras' update rule and defaults, applied to the rows a step's gradient touches only
    (a "lazy" Adam): the moments, weight decay and update of a row that is not in the batch are left
    as they are, so a step over embedding tables of a million rows costs O(rows touched), where Keras'
    AdamW rewrites every row of the table and both its moments.

    ``iteration`` (the step being taken, from 0) drives the learning-rate ``schedule`` and Adam's bias
    correction, so the tables follow the same schedule as the dense variables' optimizer."""

    def __init__(
        self,
        tables: Sequence[tf.Variable],
        schedule: keras.optimizers.schedules.LearningRateSchedule,
        weight_decay: float,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ) -> None:
        super().__init__(name="lazy_adamw")
        self.tables = list(tables)
        names = [t.name.split(":")[0] for t in self.tables]
        self.m = [
            tf.Variable(tf.zeros_like(t), trainable=False, name=f"{n}_m")
            for n, t in zip(names, self.tables, strict=True)
        ]
        self.v = [
            tf.Variable(tf.zeros_like(t), trainable=False, name=f"{n}_v")
            for n, t in zip(names, self.tables, strict=True)
        ]
        self._schedule = schedule
        self._weight_decay = weight_decay
        self._betas = (beta_1, beta_2)
        self._epsilon = epsilon

    def apply(self, grads: Sequence[tf.Tensor | tf.IndexedSlices | None], iteration: tf.Tensor) -> None:
        beta_1, beta_2 = self._betas
        lr = tf.cast(self._schedule(iteration), tf.float32)
        t = tf.cast(iteration, tf.float32) + 1.0
        alpha = lr * tf.sqrt(1.0 - tf.pow(beta_2, t)) / (1.0 - tf.pow(beta_1, t))
        for table, m, v, grad in zip(self.tables, self.m, self.v, grads, strict=True):
            if grad is None:
                continue
            if isinstance(grad, tf.IndexedSlices):
                rows, position = tf.unique(grad.indices)
                values = tf.math.unsorted_segment_sum(grad.values, position, tf.shape(rows)[0])
            else:
                rows, values = tf.range(tf.shape(table)[0]), grad
            m_rows = tf.gather(m, rows)
            m_rows += (values - m_rows) * (1.0 - beta_1)
            v_rows = tf.gather(v, rows)
            v_rows += (tf.square(values) - v_rows) * (1.0 - beta_2)
            old = tf.gather(table, rows)
            new = old - old * (self._weight_decay * lr) - m_rows * alpha / (tf.sqrt(v_rows) + self._epsilon)
            m.scatter_update(tf.IndexedSlices(m_rows, rows))
            v.scatter_update(tf.IndexedSlices(v_rows, rows))
            table.scatter_update(tf.IndexedSlices(new, rows))


class TwoTowerModel:
    def __init__(
        self,
        user_vocab: Sequence[str],
        item_vocab: Sequence[str],
        hp: Hyperparameters,
        user_features: Mapping[str, Sequence[str | None]] | None = None,
        item_topics: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """``user_features[user]``: that user's categorical side features, one string per column
        (``None`` = missing); ``item_topics[item]``: the item's topics. Both optional."""
        if len(item_vocab) < TOP_K:
            raise ValueError(
                f"the catalogue has {len(item_vocab)} pins with training interactions; "
                f"`recommend` returns the top {TOP_K}, so at least {TOP_K} are needed"
            )
        self.hp = hp
        self.user_vocab = list(user_vocab)
        self.item_vocab = list(item_vocab)
        self.user_index = {u: i + 1 for i, u in enumerate(self.user_vocab)}
        self.item_index = {p: i + 1 for i, p in enumerate(self.item_vocab)}
        self.user_vocab_arrow = pa.array(self.user_vocab, pa.string())
        self.item_vocab_arrow = pa.array(self.item_vocab, pa.string())
        n_users, n_items = len(self.user_vocab) + 1, len(self.item_vocab) + 1

        # side features → integer codes (0 = missing/unknown) per column, offset into one table
        columns = max((len(v) for v in (user_features or {}).values()), default=0)
        codes = np.zeros((n_users, columns), np.int32)
        offset = 1
        for c in range(columns):
            values = sorted(
                {str(f[c]) for f in (user_features or {}).values() if len(f) > c and f[c] is not None}
            )
            lookup = {v: offset + k for k, v in enumerate(values)}
            for user, feats in (user_features or {}).items():
                row = self.user_index.get(user)
                if row is not None and len(feats) > c and feats[c] is not None:
                    codes[row, c] = lookup[str(feats[c])]
            offset += len(values)
        self.user_feature_codes = codes
        topics = sorted({t for ts in (item_topics or {}).values() for t in ts})
        topic_index = {t: k for k, t in enumerate(topics)}
        multi_hot = np.zeros((n_items, max(len(topics), 1)), np.float32)
        for item, ts in (item_topics or {}).items():
            row = self.item_index.get(item)
            if row is not None:
                for t in ts:
                    multi_hot[row, topic_index[t]] = 1.0
        self.item_topic_weights = multi_hot / np.maximum(multi_hot.sum(axis=1, keepdims=True), 1.0)
        self.serving_history = np.full((n_users, hp.history_length), PAD, np.int32)

        rng = np.random.default_rng(hp.seed)
        d, h = hp.embedding_dim, hp.hidden_dim
        width = d * (2 + columns)
        scale = 0.05
        self.user_emb = tf.Variable(rng.normal(0, scale, (n_users, d)).astype(np.float32), name="user_emb")
        self.item_emb = tf.Variable(rng.normal(0, scale, (n_items, d)).astype(np.float32), name="item_emb")
        self.item_bias = tf.Variable(np.zeros(n_items, np.float32), name="item_bias")
        self.topic_emb = tf.Variable(
            rng.normal(0, scale, (multi_hot.shape[1], d)).astype(np.float32), name="topic_emb"
        )
        self.feature_emb = tf.Variable(
            rng.normal(0, scale, (offset, d)).astype(np.float32), name="feature_emb"
        )
        self.w1 = tf.Variable(_glorot(rng, width, h), name="w1")
        self.b1 = tf.Variable(np.zeros(h, np.float32), name="b1")
        self.w2 = tf.Variable(_glorot(rng, h, d), name="w2")
        self.b2 = tf.Variable(np.zeros(d, np.float32), name="b2")
        self.variables = [
            self.user_emb,
            self.item_emb,
            self.item_bias,
            self.topic_emb,
            self.feature_emb,
            self.w1,
            self.b1,
            self.w2,
            self.b2,
        ]
        self._codes_t = tf.constant(codes)
        self._topics_t = tf.constant(self.item_topic_weights)
        decay = np.power(hp.history_decay, np.arange(hp.history_length, dtype=np.float64))
        self._decay_t = tf.constant(decay[::-1].copy().astype(np.float32))  # oldest slot first

    # --- the towers -------------------------------------------------------------------------
    def item_vectors(self) -> tf.Tensor:
        """Every item's vector, row 0 = OOV: [n_items + 1, d]."""
        return self.item_emb + tf.matmul(self._topics_t, self.topic_emb)

    def user_vectors(self, users: tf.Tensor, history: tf.Tensor, training: bool = False) -> tf.Tensor:
        """``users``: [B] row indices; ``history``: [B, N] item rows, ``PAD`` for empty, oldest first."""
        valid = tf.cast(history != PAD, tf.float32) * self._decay_t[tf.newaxis, :]
        hist_vecs = self.candidate_vectors(tf.maximum(history, 0))  # as the item tower sees them
        pooled = tf.reduce_sum(hist_vecs * valid[:, :, tf.newaxis], axis=1) / tf.maximum(
            tf.reduce_sum(valid, axis=1, keepdims=True), 1e-6
        )
        feats = tf.gather(self.feature_emb, tf.gather(self._codes_t, users))  # [B, F, d]
        batch = tf.shape(users)[0]
        x = tf.concat([tf.gather(self.user_emb, users), pooled, tf.reshape(feats, [batch, -1])], axis=1)
        if training and self.hp.dropout > 0:
            x = tf.nn.dropout(x, rate=self.hp.dropout)
        hidden = tf.nn.relu(tf.matmul(x, self.w1) + self.b1)
        if training and self.hp.dropout > 0:
            hidden = tf.nn.dropout(hidden, rate=self.hp.dropout)
        return tf.matmul(hidden, self.w2) + self.b2

    # --- training ---------------------------------------------------------------------------
    @property
    def sampled(self) -> bool:
        """Whether training scores a sampled softmax (a catalogue of ``sampled_softmax_min_items``
        pins or more) rather than the full softmax over every pin."""
        return len(self.item_vocab) >= self.hp.sampled_softmax_min_items

    def _sequences(self, data: TrainingData) -> Examples:
        """The examples, each one's history strictly before it (``Examples.history``); also fills
        ``serving_history`` with each user's latest N items."""
        n_hist = self.hp.history_length
        users = vocabulary_rows(data.users, self.user_vocab_arrow)
        items = vocabulary_rows(data.items, self.item_vocab_arrow)
        stamps = np.arange(len(users)) if data.timestamps is None else np.asarray(data.timestamps)
        tie = order_ranks(["", *self.item_vocab])  # row 0 (unknown) first
        order = np.lexsort((tie[items], stamps, users))  # by user, then time, then pin_order
        sorted_users, sorted_items = users[order], items[order]
        del stamps
        n = len(order)
        first = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])  # each run's start
        run_length = np.diff(np.r_[first, n])
        rank_sorted = np.arange(n) - np.repeat(first, run_length)
        slot = np.empty(n, np.int64)
        slot[order] = np.arange(n)
        del order
        rank = rank_sorted[slot]
        # each user's serving history is the history an example after their last one would have
        last = first + run_length - 1
        known = sorted_users[last] != 0
        self.serving_history[sorted_users[last[known]]] = histories(
            sorted_items, last[known] + 1, rank_sorted[last[known]] + 1, n_hist
        )
        weights = np.asarray(data.weights, np.float32)
        return Examples(users, items, weights / weights.mean(), sorted_items, slot, rank, n_hist)

    def fit(
        self,
        data: TrainingData,
        log_q: np.ndarray | None = None,
        checkpoint_dir: Path | None = None,
        workers: Workers | None = None,
    ) -> list[EpochLog]:
        """Train. ``log_q`` [n_items + 1]: each item row's log probability of being an example's label
        (the in-batch sampling distribution of the sampled softmax, ``sampled_logits``); by default
        the label frequencies of ``data``. The full softmax (small catalogues) needs no correction
        and does not read it.

        With ``checkpoint_dir``, every epoch ends with a checkpoint there (the variables, the
        optimizer, the epoch counter), and with ``checkpoint_steps`` also every so many steps within
        an epoch; a checkpoint of the same job found there at the start is restored and training
        continues where it stopped, on the same batches (``epoch_order``, skipping those of the
        epoch already trained) and, when sampled, the same negatives (``negative_rng``).

        With ``workers`` (a job of several hosts, ``recflow_ml.distributed``), this worker trains on
        its shard of every global batch and the gradients are summed across workers before each
        update; the dropout and OOV draws are this worker's own (seeded by seed + worker index)."""
        examples = self._sequences(data)
        counts = np.bincount(examples.items, minlength=len(self.item_vocab) + 1)
        return self._fit(
            lambda epoch: self._memory_batches(examples, epoch),
            counts,
            log_q,
            "memory",
            checkpoint_dir,
            workers,
        )

    def fit_stream(
        self,
        stream: ExampleStream,
        label_counts: np.ndarray,
        serving_history: np.ndarray,
        checkpoint_dir: Path | None = None,
        workers: Workers | None = None,
        sharding: Sharding | None = None,
    ) -> list[EpochLog]:
        """Train on a streamed channel (``recflow_ml.stream``): each epoch's batches are
        ``stream.batches(epoch)``, never the channel whole. ``label_counts`` [n_items + 1] are the
        label frequencies (the sampled softmax's logQ), ``serving_history`` [n_users + 1, N] each
        user's latest pins (``stream.serving_histories``). Checkpoints and workers as in ``fit``.

        ``sharding``: ``stream`` is this worker's own shard of the channel (``ShardedByS3Key``), in
        batches of its share of each global batch (``Sharding``); the counts and histories passed
        are already the whole channel's."""
        self.serving_history[:] = serving_history
        if sharding is None:
            return self._fit(stream.batches, label_counts, None, "stream", checkpoint_dir, workers)
        if workers is None:
            raise ValueError("a sharded stream trains with workers: its shard is one of several")

        def batches(epoch: int) -> Iterator[Batch]:
            return itertools.islice(stream.batches(epoch), sharding.steps)

        return self._fit(batches, label_counts, None, "sharded stream", checkpoint_dir, workers, sharding)

    def _memory_batches(self, examples: Examples, epoch: int) -> Iterator[Batch]:
        """The batches of an epoch of examples held whole, in ``epoch_order``."""
        order = epoch_order(len(examples), self.hp.seed, epoch)
        for start in range(0, len(order), self.hp.batch_size):
            rows = order[start : start + self.hp.batch_size]
            yield Batch(
                examples.users[rows], examples.items[rows], examples.weights[rows], examples.history(rows)
            )

    def _fit(
        self,
        batches: Callable[[int], Iterator[Batch]],
        label_counts: np.ndarray,
        log_q: np.ndarray | None,
        input_path: str,
        checkpoint_dir: Path | None,
        workers: Workers | None,
        sharding: Sharding | None = None,
    ) -> list[EpochLog]:
        """``sharding``: each worker's batches are its own share of each global batch (``fit_stream``);
        else every worker walks the same global batches."""
        hp = self.hp
        tf.random.set_seed(hp.seed if workers is None else hp.seed + workers.index)
        n_examples = int(label_counts.sum())
        steps_per_epoch = sharding.steps if sharding else max(1, math.ceil(n_examples / hp.batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(
            hp.learning_rate, decay_steps=steps_per_epoch * hp.epochs, alpha=0.05
        )
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=hp.weight_decay)
        steps = self._full_softmax_steps(optimizer, workers)
        trackables: dict[str, object] = {"optimizer": optimizer}
        dense = list(self.variables)
        if self.sampled:
            if log_q is None:
                log_q = np.log(np.maximum(label_counts, 1) / n_examples)
            steps, dense = self._sampled_softmax_steps(log_q, schedule, optimizer, workers, trackables)
        history_log: list[EpochLog] = []
        checkpoints = None
        resume = _Resume()
        if checkpoint_dir is not None:
            checkpoints, resume, history_log = self._restore_checkpoints(
                checkpoint_dir, n_examples, input_path, optimizer, dense, trackables, workers, sharding
            )
        for epoch in range(resume.epochs + 1, hp.epochs + 1):
            save = None
            if checkpoints is not None and hp.checkpoint_steps:
                epochs_done = epoch - 1

                def save(done: int, loss_total: float, epochs_done: int = epochs_done) -> None:
                    assert checkpoints is not None
                    history = [dataclasses.asdict(h) for h in history_log]
                    number = epochs_done * steps_per_epoch + done
                    checkpoints.save(epochs_done, history, number, batches=done, loss_total=loss_total)

            entry = self._train_epoch(
                epoch, batches(epoch), steps, steps_per_epoch, workers, resume, save, sharding
            )
            resume = _Resume(epoch)
            history_log.append(entry)
            log.info(
                "epoch %d/%d loss=%.4f (%.1fs, %.0f%% waiting for input)",
                epoch,
                hp.epochs,
                entry.loss,
                entry.seconds,
                100 * entry.input_seconds / max(entry.seconds, 1e-9),
            )
            if checkpoints is not None:
                history = [dataclasses.asdict(h) for h in history_log]
                checkpoints.save(epoch, history, epoch * steps_per_epoch)
        return history_log

    def _full_softmax_steps(self, optimizer: keras.optimizers.Optimizer, workers: Workers | None) -> _Steps:
        """The full softmax's training steps (small catalogues): every item row is a candidate, and one
        AdamW updates every variable. ``local`` trains a batch, ``distributed`` this worker's shard
        of a global batch (gradients summed across the workers before the update)."""
        hp = self.hp
        n_items = len(self.item_vocab) + 1
        n_hist = hp.history_length

        def gradients(
            u: tf.Tensor, i: tf.Tensor, w: tf.Tensor, hist: tf.Tensor, w_total: tf.Tensor | None = None
        ) -> tuple[tf.Tensor, list[tf.Tensor | tf.IndexedSlices]]:
            """(loss, gradients) of a batch; ``w_total``: the weight of the global batch this one is a
            shard of (default: this batch's), so the shards' losses and gradients sum to the global ones."""
            drop = tf.random.uniform(tf.shape(u)) < hp.oov_rate
            u = tf.where(drop, tf.zeros_like(u), u)
            batch = tf.shape(u)[0]
            with tf.GradientTape() as tape:
                user_vec = self.user_vectors(u, hist, training=True)
                logits = tf.matmul(user_vec, self.item_vectors(), transpose_b=True) / hp.temperature
                logits += self.item_bias[tf.newaxis, :]
                if hp.mask_history:
                    rows = tf.repeat(tf.range(batch), n_hist)
                    flat = tf.reshape(hist, [-1])
                    keep = flat != PAD
                    idx = tf.stack([tf.boolean_mask(rows, keep), tf.boolean_mask(flat, keep)], axis=1)
                    mask = tf.scatter_nd(idx, tf.ones(tf.shape(idx)[0]), [batch, n_items])
                    logits -= 1e9 * tf.minimum(mask, 1.0)
                losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=i, logits=logits)
                loss = tf.reduce_sum(losses * w) / (tf.reduce_sum(w) if w_total is None else w_total)
            return loss, tape.gradient(loss, self.variables)

        @tf.function(reduce_retracing=True)
        def step(u: tf.Tensor, i: tf.Tensor, w: tf.Tensor, hist: tf.Tensor) -> tf.Tensor:
            loss, grads = gradients(u, i, w, hist)
            optimizer.apply_gradients(zip(grads, self.variables, strict=True))
            return loss

        @tf.function(reduce_retracing=True)
        def distributed_step(
            u: tf.Tensor, i: tf.Tensor, w: tf.Tensor, hist: tf.Tensor, w_total: tf.Tensor
        ) -> tf.Tensor:
            assert workers is not None

            def replica(*args: tf.Tensor) -> list[tf.Tensor | tf.IndexedSlices]:
                loss, grads = gradients(*args)
                return workers.all_reduce([loss, *grads])

            loss, *grads = workers.run(replica, u, i, w, hist, w_total)
            optimizer.apply_gradients(zip(grads, self.variables, strict=True))
            return loss

        @tf.function(reduce_retracing=True)
        def sharded_step(u: tf.Tensor, i: tf.Tensor, w: tf.Tensor, hist: tf.Tensor) -> tf.Tensor:
            assert workers is not None

            def replica(
                u: tf.Tensor, i: tf.Tensor, w: tf.Tensor, hist: tf.Tensor
            ) -> list[tf.Tensor | tf.IndexedSlices]:
                loss, grads = gradients(u, i, w, hist, workers.global_sum(tf.reduce_sum(w)))
                return workers.all_reduce([loss, *grads])

            loss, *grads = workers.run(replica, u, i, w, hist)
            optimizer.apply_gradients(zip(grads, self.variables, strict=True))
            return loss

        return _Steps(step, distributed_step, sharded_step)

    def _sampled_softmax_steps(
        self,
        log_q: np.ndarray,
        schedule: keras.optimizers.schedules.LearningRateSchedule,
        optimizer: keras.optimizers.Optimizer,
        workers: Workers | None,
        trackables: dict[str, object],
    ) -> tuple[_Steps, list[tf.Variable]]:
        """The sampled softmax's training steps (large catalogues, ``sampled_logits``) and the dense
        variables ``optimizer`` updates: the embedding tables get a ``LazyAdamW`` of their own (added
        to ``trackables``, so checkpoints hold it), which updates only the rows a step touched."""
        hp = self.hp
        label_prob = tf.constant(np.exp(np.asarray(log_q, np.float64)).astype(np.float32))
        tables = [self.user_emb, self.item_emb, self.item_bias]
        dense = [v for v in self.variables if all(v is not t for t in tables)]
        lazy = LazyAdamW(tables, schedule, weight_decay=hp.weight_decay)
        trackables["lazy_optimizer"] = lazy
        n_uniform = len(self.item_vocab)

        def sampled_gradients(
            u: tf.Tensor,
            i: tf.Tensor,
            w: tf.Tensor,
            hist: tf.Tensor,
            negatives: tf.Tensor,
            w_total: tf.Tensor | None = None,
            in_batch: tf.Tensor | None = None,
            offset: tf.Tensor | None = None,
        ) -> tuple[tf.Tensor, list[tf.Tensor | tf.IndexedSlices]]:
            """(loss, gradients of ``dense + tables``); a shard of a global batch passes the global
            batch's weight, its labels (``in_batch``, the in-batch candidates) and its first row."""
            drop = tf.random.uniform(tf.shape(u)) < hp.oov_rate
            u = tf.where(drop, tf.zeros_like(u), u)
            with tf.GradientTape() as tape:
                user_vec = self.user_vectors(u, hist, training=True)
                logits = self.sampled_logits(
                    user_vec, i, hist, negatives, label_prob, n_uniform, in_batch, offset
                )
                labels = tf.range(tf.shape(u)[0])  # row b's positive is candidate b
                if offset is not None:  # ... of the global batch, whose row ``offset`` is our first
                    labels += offset
                losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
                loss = tf.reduce_sum(losses * w) / (tf.reduce_sum(w) if w_total is None else w_total)
            return loss, tape.gradient(loss, dense + tables)

        def sampled_apply(grads: Sequence[tf.Tensor | tf.IndexedSlices]) -> None:
            iteration = tf.identity(optimizer.iterations)  # the step before this one's update
            optimizer.apply_gradients(zip(grads[: len(dense)], dense, strict=True))
            lazy.apply(grads[len(dense) :], iteration)

        @tf.function(reduce_retracing=True)
        def sampled_step(
            u: tf.Tensor, i: tf.Tensor, w: tf.Tensor, hist: tf.Tensor, negatives: tf.Tensor
        ) -> tf.Tensor:
            loss, grads = sampled_gradients(u, i, w, hist, negatives)
            sampled_apply(grads)
            return loss

        @tf.function(reduce_retracing=True)
        def distributed_sampled_step(
            u: tf.Tensor,
            i: tf.Tensor,
            w: tf.Tensor,
            hist: tf.Tensor,
            negatives: tf.Tensor,
            w_total: tf.Tensor,
            in_batch: tf.Tensor,
            offset: tf.Tensor,
        ) -> tf.Tensor:
            assert workers is not None

            def replica(*args: tf.Tensor) -> list[tf.Tensor | tf.IndexedSlices]:
                loss, grads = sampled_gradients(*args)
                return workers.all_reduce([loss, *grads])

            loss, *grads = workers.run(replica, u, i, w, hist, negatives, w_total, in_batch, offset)
            sampled_apply(grads)
            return loss

        @tf.function(reduce_retracing=True)
        def sharded_sampled_step(
            u: tf.Tensor, i: tf.Tensor, w: tf.Tensor, hist: tf.Tensor, negatives: tf.Tensor, offset: tf.Tensor
        ) -> tf.Tensor:
            assert workers is not None

            def replica(*args: tf.Tensor) -> list[tf.Tensor | tf.IndexedSlices]:
                u, i, w, hist, negatives, offset = args
                w_total = workers.global_sum(tf.reduce_sum(w))
                in_batch = workers.global_rows(i)  # every worker's labels: the in-batch candidates
                loss, grads = sampled_gradients(u, i, w, hist, negatives, w_total, in_batch, offset)
                return workers.all_reduce([loss, *grads])

            loss, *grads = workers.run(replica, u, i, w, hist, negatives, offset)
            sampled_apply(grads)
            return loss

        return _Steps(sampled_step, distributed_sampled_step, sharded_sampled_step), dense

    def _restore_checkpoints(
        self,
        checkpoint_dir: Path,
        n_examples: int,
        input_path: str,
        optimizer: keras.optimizers.Optimizer,
        dense: list[tf.Variable],
        trackables: dict[str, object],
        workers: Workers | None,
        sharding: Sharding | None = None,
    ) -> tuple[EpochCheckpoints, _Resume, list[EpochLog]]:
        """The job's checkpoints in ``checkpoint_dir``, restored: (them, where training stopped, the
        log of the epochs done).

        A checkpoint is this job's when its fingerprint (the hyperparameters that change training,
        the input path, the vocabularies' and the examples' sizes) matches; with ``workers``, all
        agree first."""
        hp = self.hp
        # the slots must exist before a restore fills them
        optimizer.build(dense)
        ignored = set(UNFINGERPRINTED_HYPERPARAMETERS)
        if not self.sampled:  # what the full softmax never reads does not tell jobs apart
            ignored |= set(SAMPLING_HYPERPARAMETERS)
        if input_path == "memory":
            ignored |= set(STREAMING_HYPERPARAMETERS)
        fingerprint: dict[str, object] = {
            "hyperparameters": {k: v for k, v in hp.as_strings().items() if k not in ignored},
            "input": input_path,
            "users": len(self.user_vocab),
            "items": len(self.item_vocab),
            "interactions": n_examples,
        }
        if sharding is not None and workers is not None:  # each host's batches are its files'
            fingerprint["sharding"] = {
                "hosts": workers.count,
                "steps": sharding.steps,
                "layout": sharding.layout,
            }
        checkpoints = EpochCheckpoints(checkpoint_dir, fingerprint, **trackables, **self.named_variables())
        done, logged = checkpoints.restore()
        resume = _Resume(done, checkpoints.batches, checkpoints.loss_total)
        if workers is not None:
            workers.agree(done, "the epochs their checkpoints hold")
            workers.agree(resume.batches, "the steps of the next epoch their checkpoints hold")
        history_log = [
            EpochLog(int(e["epoch"]), float(e["loss"]), float(e["seconds"]), float(e.get("input_seconds", 0)))
            for e in logged
        ]
        history_log = [h for h in history_log if h.epoch <= done]
        if resume.batches:
            log.info(
                "resumed from checkpoint at epoch %d (of %d), step %d of epoch %d",
                done,
                hp.epochs,
                resume.batches,
                done + 1,
            )
        elif done:
            log.info("resumed from checkpoint at epoch %d (of %d)", done, hp.epochs)
        return checkpoints, resume, history_log

    def _train_epoch(
        self,
        epoch: int,
        batches: Iterator[Batch],
        steps: _Steps,
        steps_per_epoch: int,
        workers: Workers | None,
        resume: _Resume,
        save: Callable[[int, float], None] | None,
        sharding: Sharding | None = None,
    ) -> EpochLog:
        """One pass over ``batches``, a step per batch (and, when sampled, the epoch's ``negative_rng``
        draws); its mean batch loss, duration and time waiting for input. Resumed within this epoch
        (``resume.batches``), the batches and draws a checkpoint holds are passed over, not trained;
        with ``save``, every ``checkpoint_steps`` steps are checkpointed. ``sharding``: each batch is
        this worker's own share of the global batch, not the global batch."""
        hp = self.hp
        sampled = self.sampled
        n_items = len(self.item_vocab) + 1
        skip = resume.batches if resume.epochs == epoch - 1 else 0
        started = time.monotonic()
        waited = 0.0
        total, done, seen = (resume.loss_total, skip, 0) if skip else (0.0, 0, 0)
        negatives = negative_rng(hp.seed, epoch)
        position = 0
        while True:
            asked = time.monotonic()
            batch = next(batches, None)
            waited += time.monotonic() - asked
            if batch is None:
                break
            drawn = negatives.integers(1, n_items, size=hp.num_negatives, dtype=np.int32) if sampled else None
            position += 1
            if position <= skip:
                continue
            if workers is None:
                args = tuple(batch) if drawn is None else (*batch, drawn)
                total += float(steps.local(*args))
            elif sharding is not None:  # the global batch is every worker's batch, in worker order
                if drawn is not None:
                    offset = tf.constant(sharding.offset, tf.int32)
                    total += float(steps.sharded(*batch, drawn, offset))
                else:
                    total += float(steps.sharded(*batch))
            else:
                lo, hi = workers.shard(len(batch))
                shard = tuple(batch.take(slice(lo, hi)))
                w_total = tf.constant(batch.weights.sum(dtype=np.float32))
                if drawn is not None:
                    total += float(
                        steps.distributed(*shard, drawn, w_total, batch.items, tf.constant(lo, tf.int32))
                    )
                else:
                    total += float(steps.distributed(*shard, w_total))
            done += 1
            # the job's rate: a host's batch stands for the global batch it is a share of
            seen += hp.batch_size if sharding is not None else len(batch)
            if done % PROGRESS_STEPS == 0:
                log.info(
                    "epoch %d: step %d/%d loss=%.4f (%.0f examples/s, %.0f%% waiting for input)",
                    epoch,
                    done,
                    steps_per_epoch,
                    total / done,
                    seen / (time.monotonic() - started),
                    100 * waited / (time.monotonic() - started),
                )
            if save is not None and done % hp.checkpoint_steps == 0 and done < steps_per_epoch:
                save(done, total)
        return EpochLog(epoch, total / max(done, 1), time.monotonic() - started, waited)

    def candidate_vectors(self, candidates: tf.Tensor) -> tf.Tensor:
        """The item vectors of rows ``candidates`` only (what ``item_vectors`` holds at those rows), in
        the shape of ``candidates`` plus the embedding's: a batch's candidates [C], its histories [B, N]."""
        topics = tf.matmul(tf.gather(self._topics_t, candidates), self.topic_emb)
        return tf.gather(self.item_emb, candidates) + topics

    def sampled_logits(
        self,
        user_vec: tf.Tensor,
        labels: tf.Tensor,
        history: tf.Tensor,
        negatives: tf.Tensor,
        label_prob: tf.Tensor,
        n_uniform: int,
        in_batch: tf.Tensor | None = None,
        offset: tf.Tensor | None = None,
    ) -> tf.Tensor:
        """Logits [B, B + K] of a mixed-negative-sampling softmax (Yang et al., WWW 2020) with the
        logQ correction (Yi et al., RecSys 2019); the positive of row b is candidate b.

        Candidates: the batch's B labels (in-batch negatives, drawn from the label distribution
        ``label_prob``) then K = ``num_negatives`` items drawn uniformly with replacement from the
        ``n_uniform`` catalogue rows, shared by the batch. Item j's expected number of copies among
        the candidates is ``B·label_prob[j] + K/n_uniform``, whichever part a copy came from, so
        every candidate's logit (the positive's included) is ``user·item/temperature + bias[j]``
        minus the log of that count: the softmax's sum over the candidates then estimates the sum
        over the whole catalogue without the bias towards popular items. Masked (-1e9): a candidate
        equal to the row's label other than its own positive (accidental hits), and with
        ``mask_history`` any candidate in the row's history other than its own positive.

        A worker's shard of a global batch (``recflow_ml.distributed``) passes the global batch's
        labels as ``in_batch``, the candidates every shard shares, and ``offset``, the global row of
        its first row: its row b's positive is then candidate ``offset + b``."""
        hp = self.hp
        in_batch = labels if in_batch is None else in_batch
        candidates = tf.concat([in_batch, negatives], axis=0)
        batch = tf.shape(in_batch)[0]
        expected = tf.cast(batch, tf.float32) * tf.gather(label_prob, candidates) + (
            hp.num_negatives / n_uniform
        )
        logits = tf.matmul(user_vec, self.candidate_vectors(candidates), transpose_b=True) / hp.temperature
        logits += (tf.gather(self.item_bias, candidates) - tf.math.log(expected))[tf.newaxis, :]
        rows = tf.range(batch) if offset is None else tf.range(tf.shape(labels)[0]) + offset
        own = tf.range(tf.shape(candidates)[0])[tf.newaxis, :] == rows[:, tf.newaxis]
        masked = candidates[tf.newaxis, :] == labels[:, tf.newaxis]
        if hp.mask_history:  # one [B, B + K] comparison per history slot, never [B, N, B + K]
            for k in range(hp.history_length):
                masked |= history[:, k : k + 1] == candidates[tf.newaxis, :]
        return tf.where(masked & ~own, tf.constant(-1e9, tf.float32), logits)

    def named_variables(self) -> dict[str, tf.Variable]:
        """The trainable variables by name (the keys of a checkpoint)."""
        return {v.name.split(":")[0]: v for v in self.variables}

    # --- what serving needs ---------------------------------------------------------------------
    def serving_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(user table [n_users + 1, d + 1], item table [n_items + 1, d + 1]): score = row · row."""
        n_users, d = len(self.user_vocab) + 1, self.hp.embedding_dim
        user_table = np.ones((n_users, d + 1), np.float32)
        for start in range(0, n_users, SERVING_BATCH):  # the tower's intermediates stay bounded
            rows = np.arange(start, min(start + SERVING_BATCH, n_users), dtype=np.int32)
            user_vec = self.user_vectors(tf.constant(rows), tf.constant(self.serving_history[rows])).numpy()
            user_table[rows, :d] = user_vec / self.hp.temperature
        item_table = np.concatenate([self.item_vectors().numpy(), self.item_bias.numpy()[:, None]], axis=1)
        return user_table, item_table.astype(np.float32)


def _id_table(ids: Sequence[str]) -> tf.lookup.StaticHashTable:
    init = tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(ids), tf.string), tf.range(1, len(ids) + 1, dtype=tf.int64)
    )
    return tf.lookup.StaticHashTable(init, default_value=0)


class ServingModule(tf.Module):  # type: ignore[misc]
    """What gets exported: the ``score`` and ``recommend`` signatures over raw string ids, and the
    ``user_tower`` signature that recomputes user vectors from a history (what a refresh of the
    served histories calls, with the trained weights unchanged)."""

    def __init__(self, model: TwoTowerModel) -> None:
        super().__init__()
        user_table, item_table = model.serving_tables()
        self.user_ids = _id_table(model.user_vocab)
        self.item_rows = _id_table(model.item_vocab)
        self.user_vectors = tf.Variable(user_table, trainable=False, name="user_vectors")
        self.item_vectors = tf.Variable(item_table, trainable=False, name="item_vectors")
        self.item_ids = tf.Variable(tf.constant(model.item_vocab), trainable=False, name="item_ids")
        self.user_id_list = tf.Variable(tf.constant(model.user_vocab), trainable=False, name="user_id_list")
        self.history_length = tf.Variable(model.hp.history_length, trainable=False, name="history_length")
        self.tower_weights = list(model.variables)  # tracked, so `user_tower` can be saved
        self._model = model

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([None, None], tf.string, name="history"),
        ]
    )
    def user_tower(self, user_id: tf.Tensor, history: tf.Tensor) -> dict[str, tf.Tensor]:
        """Rows of the user table for ``user_id`` given ``history`` ([B, history_length] item ids,
        oldest first, ``""`` for an empty slot): what ``score`` multiplies with the item table."""
        rows = tf.cast(self.user_ids.lookup(user_id), tf.int32)
        items = tf.cast(self.item_rows.lookup(history), tf.int32)
        items = tf.where(history == "", tf.constant(PAD, tf.int32), items)
        vectors = self._model.user_vectors(rows, items) / self._model.hp.temperature
        ones = tf.ones([tf.shape(vectors)[0], 1], tf.float32)
        return {"vector": tf.concat([vectors, ones], axis=1)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([None], tf.string, name="item_id"),
        ]
    )
    def score(self, user_id: tf.Tensor, item_id: tf.Tensor) -> dict[str, tf.Tensor]:
        users = tf.gather(self.user_vectors, self.user_ids.lookup(user_id))
        items = tf.gather(self.item_vectors, self.item_rows.lookup(item_id))
        return {"score": tf.cast(tf.reduce_sum(users * items, axis=-1), tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def recommend(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        users = tf.gather(self.user_vectors, self.user_ids.lookup(user_id))
        scores = tf.matmul(users, self.item_vectors[1:], transpose_b=True)
        top = tf.math.top_k(scores, k=TOP_K)
        return {"item_id": tf.gather(self.item_ids, top.indices), "score": tf.cast(top.values, tf.float32)}


def export(model: TwoTowerModel, directory: Path) -> None:
    module = ServingModule(model)
    tf.saved_model.save(
        module,
        str(directory),
        signatures={
            "score": module.score.get_concrete_function(),
            "recommend": module.recommend.get_concrete_function(),
            "user_tower": module.user_tower.get_concrete_function(),
        },
    )
