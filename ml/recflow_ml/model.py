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
A small share of user ids is replaced by the OOV row, so unknown users get a
trained embedding. At export, every known user's tower is evaluated on their
latest ``history_length`` train items and side features, and every item's
vector on its id and topics; the SavedModel holds those tables plus two hash
tables from raw string ids to rows, so callers pass ids only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from recflow_ml.hyperparameters import Hyperparameters

log = logging.getLogger(__name__)

TOP_K = 100
PAD = -1
"""History slot with no item (a user with fewer than ``history_length`` earlier items)."""


@dataclass(frozen=True)
class TrainingData:
    users: np.ndarray
    items: np.ndarray
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


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the ``n`` examples in ``epoch``: a function of (seed, epoch) only, so a run
    resumed from a checkpoint sees the batches an uninterrupted run would have seen."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _glorot(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    limit = math.sqrt(6.0 / (rows + cols))
    return rng.uniform(-limit, limit, size=(rows, cols)).astype(np.float32)


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
        hist_vecs = tf.gather(self.item_emb, tf.maximum(history, 0))
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
    def _sequences(self, data: TrainingData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(user rows, item rows, weights, history [n, N]) with each row's history strictly before it;
        also fills ``serving_history`` with each user's latest N items."""
        n_hist = self.hp.history_length
        users = np.array([self.user_index.get(str(u), 0) for u in data.users], np.int32)
        items = np.array([self.item_index.get(str(p), 0) for p in data.items], np.int32)
        stamps = np.arange(len(users)) if data.timestamps is None else np.asarray(data.timestamps)
        order = np.lexsort((items, stamps, users))  # by user, then time, then item
        history = np.full((len(users), n_hist), PAD, np.int32)
        start = 0
        while start < len(order):
            end = start
            user = users[order[start]]
            while end < len(order) and users[order[end]] == user:
                end += 1
            seq = items[order[start:end]]
            padded = np.concatenate([np.full(n_hist, PAD, np.int32), seq])
            for k in range(end - start):
                history[order[start + k]] = padded[k : k + n_hist]
            if user:
                self.serving_history[user] = padded[-n_hist:]
            start = end
        weights = np.asarray(data.weights, np.float32)
        return users, items, weights / weights.mean(), history

    def fit(
        self, data: TrainingData, log_q: np.ndarray | None = None, checkpoint_dir: Path | None = None
    ) -> list[EpochLog]:
        """Train. ``log_q`` (the items' log sampling probabilities) is accepted for compatibility and
        unused: the full softmax over the catalogue needs no sampling correction.

        With ``checkpoint_dir``, every epoch ends with a checkpoint there (the variables, the
        optimizer, the epoch counter); a checkpoint of the same job found there at the start is
        restored and training continues at the next epoch, on the same batches (``epoch_order``)."""
        del log_q
        hp = self.hp
        tf.random.set_seed(hp.seed)
        users, items, weights, history = self._sequences(data)
        steps_per_epoch = max(1, math.ceil(len(users) / hp.batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(
            hp.learning_rate, decay_steps=steps_per_epoch * hp.epochs, alpha=0.05
        )
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=hp.weight_decay)
        n_items = len(self.item_vocab) + 1
        n_hist = hp.history_length

        @tf.function(reduce_retracing=True)
        def step(u: tf.Tensor, i: tf.Tensor, w: tf.Tensor, hist: tf.Tensor) -> tf.Tensor:
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
                loss = tf.reduce_sum(losses * w) / tf.reduce_sum(w)
            grads = tape.gradient(loss, self.variables)
            optimizer.apply_gradients(zip(grads, self.variables, strict=True))
            return loss

        history_log: list[EpochLog] = []
        checkpoints = None
        done = 0
        if checkpoint_dir is not None:
            from recflow_ml.checkpoints import EpochCheckpoints

            optimizer.build(self.variables)  # the slots must exist before a restore fills them
            fingerprint = {
                "hyperparameters": hp.as_strings(),
                "users": len(self.user_vocab),
                "items": len(self.item_vocab),
                "interactions": len(users),
            }
            checkpoints = EpochCheckpoints(
                checkpoint_dir, fingerprint, optimizer=optimizer, **self.named_variables()
            )
            done, logged = checkpoints.restore()
            history_log = [EpochLog(int(e["epoch"]), float(e["loss"]), float(e["seconds"])) for e in logged]
            history_log = [h for h in history_log if h.epoch <= done]
            if done:
                log.info("resumed from checkpoint at epoch %d (of %d)", done, hp.epochs)
        for epoch in range(done + 1, hp.epochs + 1):
            started = time.monotonic()
            total, batches = 0.0, 0
            order = epoch_order(len(users), hp.seed, epoch)
            for start in range(0, len(order), hp.batch_size):
                rows = order[start : start + hp.batch_size]
                total += float(step(users[rows], items[rows], weights[rows], history[rows]))
                batches += 1
            entry = EpochLog(epoch, total / max(batches, 1), time.monotonic() - started)
            history_log.append(entry)
            log.info("epoch %d/%d loss=%.4f (%.1fs)", epoch, hp.epochs, entry.loss, entry.seconds)
            if checkpoints is not None:
                checkpoints.save(epoch, [dataclasses.asdict(h) for h in history_log])
        return history_log

    def named_variables(self) -> dict[str, tf.Variable]:
        """The trainable variables by name (the keys of a checkpoint)."""
        return {v.name.split(":")[0]: v for v in self.variables}

    # --- what serving needs ---------------------------------------------------------------------
    def serving_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(user table [n_users + 1, d + 1], item table [n_items + 1, d + 1]): score = row · row."""
        rows = np.arange(len(self.user_vocab) + 1, dtype=np.int32)
        user_vec = self.user_vectors(tf.constant(rows), tf.constant(self.serving_history)).numpy()
        item_vec = self.item_vectors().numpy()
        user_table = np.concatenate([user_vec / self.hp.temperature, np.ones((len(rows), 1))], axis=1)
        item_table = np.concatenate([item_vec, self.item_bias.numpy()[:, None]], axis=1)
        return user_table.astype(np.float32), item_table.astype(np.float32)


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
