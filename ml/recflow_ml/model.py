"""A two-tower retrieval model in plain Keras 3 / TensorFlow, and its serving export.

Each tower maps a raw string id to an L2-normalised vector: a ``StringLookup``
inside the model (index 0 is the out-of-vocabulary bucket), an embedding and a
dense projection. A user's score for a pin is the dot product of the two.

Training uses in-batch sampled softmax: the other positives of a batch are the
negatives, with the logQ correction (subtracting the log of each item's
sampling probability) so that popular pins are not over-penalised, and with
accidental hits (the same pin twice in a batch) masked out. A small share of
user ids is replaced by the OOV bucket during training, so unknown users get a
useful (popularity-like) embedding rather than an untrained one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from recflow_ml.hyperparameters import Hyperparameters

log = logging.getLogger(__name__)

TOP_K = 100


class Tower(keras.layers.Layer):  # type: ignore[misc]
    """String id → normalised embedding; unknown ids share the OOV row."""

    def __init__(self, vocabulary: Sequence[str], dim: int, name: str) -> None:
        super().__init__(name=name)
        self.lookup = keras.layers.StringLookup(
            vocabulary=list(vocabulary), num_oov_indices=1, mask_token=None, name=f"{name}_lookup"
        )
        self.embedding = keras.layers.Embedding(len(vocabulary) + 1, dim, name=f"{name}_embedding")
        self.projection = keras.layers.Dense(dim, name=f"{name}_projection")

    def indices(self, ids: tf.Tensor) -> tf.Tensor:
        return self.lookup(ids)

    def from_indices(self, indices: tf.Tensor) -> tf.Tensor:
        vectors = self.projection(self.embedding(indices))
        return tf.math.l2_normalize(vectors, axis=-1)

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        return self.from_indices(self.indices(ids))


@dataclass(frozen=True)
class TrainingData:
    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        if not len(self.users):
            raise ValueError("the train channel holds no interactions: nothing to learn from")


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    loss: float
    seconds: float


class TwoTowerModel:
    def __init__(self, user_vocab: Sequence[str], item_vocab: Sequence[str], hp: Hyperparameters) -> None:
        if len(item_vocab) < TOP_K:
            raise ValueError(
                f"the catalogue has {len(item_vocab)} pins with training interactions; "
                f"`recommend` returns the top {TOP_K}, so at least {TOP_K} are needed"
            )
        self.hp = hp
        self.item_vocab = list(item_vocab)
        self.user_tower = Tower(user_vocab, hp.embedding_dim, "user_tower")
        self.item_tower = Tower(item_vocab, hp.embedding_dim, "item_tower")
        self.optimizer = keras.optimizers.Adam(learning_rate=hp.learning_rate)

    def fit(self, data: TrainingData, log_q: np.ndarray) -> list[EpochLog]:
        """Train; ``log_q[i]`` is the log sampling probability of item index i (index 0 = OOV)."""
        hp = self.hp
        tf.random.set_seed(hp.seed)
        user_idx = self.user_tower.indices(tf.constant(data.users))
        item_idx = self.item_tower.indices(tf.constant(data.items))
        weights = tf.constant(data.weights / data.weights.mean(), tf.float32)
        log_q_t = tf.constant(log_q, tf.float32)
        dataset = (
            tf.data.Dataset.from_tensor_slices((user_idx, item_idx, weights))
            .shuffle(len(data.users), seed=hp.seed, reshuffle_each_iteration=True)
            .batch(hp.batch_size, drop_remainder=len(data.users) > hp.batch_size)
            .prefetch(2)
        )
        variables: list[tf.Variable] = []

        @tf.function(reduce_retracing=True)
        def step(u: tf.Tensor, i: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
            drop = tf.random.uniform(tf.shape(u)) < hp.oov_rate
            u = tf.where(drop, tf.zeros_like(u), u)
            with tf.GradientTape() as tape:
                user_vec = self.user_tower.from_indices(u)
                item_vec = self.item_tower.from_indices(i)
                logits = tf.matmul(user_vec, item_vec, transpose_b=True) / hp.temperature
                logits -= tf.gather(log_q_t, i)[tf.newaxis, :]
                same_item = tf.equal(i[:, tf.newaxis], i[tf.newaxis, :])
                accidental = tf.logical_and(same_item, tf.logical_not(tf.eye(tf.shape(i)[0], dtype=tf.bool)))
                logits = tf.where(accidental, tf.fill(tf.shape(logits), -1e9), logits)
                labels = tf.range(tf.shape(i)[0])
                losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
                loss = tf.reduce_sum(losses * w) / tf.reduce_sum(w)
            grads = tape.gradient(loss, variables)
            self.optimizer.apply_gradients(zip(grads, variables, strict=True))
            return loss

        history: list[EpochLog] = []
        for epoch in range(1, hp.epochs + 1):
            started = time.monotonic()
            total, batches = 0.0, 0
            for u, i, w in dataset:
                if not variables:
                    self.user_tower(tf.constant(["warmup"]))
                    self.item_tower(tf.constant(["warmup"]))
                    variables.extend(
                        self.user_tower.trainable_variables + self.item_tower.trainable_variables
                    )
                total += float(step(u, i, w))
                batches += 1
            entry = EpochLog(epoch, total / max(batches, 1), time.monotonic() - started)
            history.append(entry)
            log.info("epoch %d/%d loss=%.4f (%.1fs)", epoch, hp.epochs, entry.loss, entry.seconds)
        return history


class ServingModule(tf.Module):  # type: ignore[misc]
    """What gets exported: the ``score`` and ``recommend`` signatures over raw string ids."""

    def __init__(self, model: TwoTowerModel) -> None:
        super().__init__()
        self.user_tower = model.user_tower
        self.item_tower = model.item_tower
        self.item_ids = tf.Variable(tf.constant(model.item_vocab), trainable=False, name="item_ids")
        self.item_vectors = tf.Variable(
            model.item_tower(tf.constant(model.item_vocab)), trainable=False, name="item_vectors"
        )

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([None], tf.string, name="item_id"),
        ]
    )
    def score(self, user_id: tf.Tensor, item_id: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = tf.reduce_sum(self.user_tower(user_id) * self.item_tower(item_id), axis=-1)
        return {"score": tf.cast(scores, tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def recommend(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = tf.matmul(self.user_tower(user_id), self.item_vectors, transpose_b=True)
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
        },
    )
