"""The two-tower model's examples, its sampled softmax for large catalogues, and its export tables."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf

from recflow_ml.hyperparameters import Hyperparameters
from recflow_ml.model import TrainingData, TwoTowerModel
from recflow_ml.rows import PAD

pytestmark = pytest.mark.integration  # TensorFlow

ITEMS = [f"p{i:02d}" for i in range(100)]  # p00 is row 1, p01 row 2, ...
SMALL = Hyperparameters(
    embedding_dim=8, hidden_dim=16, history_length=3, epochs=1, batch_size=16, dropout=0.0
)

# (user, pin, time): "zz" is not in the user vocabulary, "nope" not in the item vocabulary
ROWS = [
    ("a", "p05", 30),
    ("b", "p01", 10),
    ("a", "p02", 10),
    ("a", "p07", 20),
    ("b", "p03", 10),
    ("a", "p04", 40),
    ("zz", "p09", 5),
    ("a", "p01", 20),
    ("b", "nope", 20),
]
_ = PAD
# each row's items strictly before it (ties in time ordered by item row), oldest first, -1 = none
EXPECTED_HISTORY = [
    [3, 2, 8],  # a at 30: p02 (10), p01 (20), p07 (20)
    [_, _, _],  # b's first (p01 before p03 at the same time)
    [_, _, _],  # a's first
    [_, 3, 2],
    [_, _, 2],
    [2, 8, 6],  # a at 40: its latest three
    [_, _, _],  # the unknown user (row 0) has a run of its own
    [_, _, 3],
    [_, 2, 4],
]
EXPECTED_SERVING = [
    [_, _, _],  # row 0 (unknown users) is never served a history
    [8, 6, 5],  # a: p07, p05, p04
    [2, 4, 0],  # b: p01, p03, then the unknown pin (row 0)
    [_, _, _],  # c: no interactions
]


def _data(rows: list[tuple[str, str, int]], arrow: bool = False) -> TrainingData:
    users, items = [u for u, _, _ in rows], [p for _, p, _ in rows]
    return TrainingData(
        pa.chunked_array([pa.array(users)]) if arrow else np.array(users),
        pa.chunked_array([pa.array(items)]) if arrow else np.array(items),
        np.ones(len(rows), np.float32),
        np.array([t for *_, t in rows]),
    )


@pytest.mark.parametrize("arrow", [False, True], ids=["numpy-ids", "arrow-ids"])
def test_each_example_has_its_users_earlier_items_as_history(arrow: bool) -> None:
    model = TwoTowerModel(["a", "b", "c"], ITEMS, SMALL)
    examples = model._sequences(_data(ROWS, arrow))
    np.testing.assert_array_equal(examples.users, [1, 2, 1, 1, 2, 1, 0, 1, 2])
    np.testing.assert_array_equal(examples.items, [6, 2, 3, 8, 4, 5, 10, 2, 0])
    np.testing.assert_array_equal(examples.history(np.arange(len(ROWS))), EXPECTED_HISTORY)
    np.testing.assert_array_equal(
        examples.history(np.array([5, 0])), [EXPECTED_HISTORY[5], EXPECTED_HISTORY[0]]
    )
    np.testing.assert_array_equal(model.serving_history, EXPECTED_SERVING)
    assert examples.history(np.arange(3)).dtype == np.int32


def test_without_timestamps_the_row_order_is_the_time_order() -> None:
    model = TwoTowerModel(["a"], ITEMS, SMALL)
    rows = ["p09", "p00", "p05", "p00"]
    examples = model._sequences(TrainingData(np.array(["a"] * 4), np.array(rows), np.ones(4, np.float32)))
    np.testing.assert_array_equal(
        examples.history(np.arange(4)), [[_, _, _], [_, _, 10], [_, 10, 1], [10, 1, 6]]
    )
    np.testing.assert_array_equal(model.serving_history[1], [1, 6, 1])


def test_ties_in_time_follow_the_holdout_splits_order_length_then_code_point() -> None:
    """'9' before '10' at the same time, as the warehouse's split and histories order them (by
    code point alone '10' would come first); the vocabulary's own order does not matter."""
    vocab = ["10", "9", "x", *ITEMS]  # rows 1, 2, 3, ...: by row, '10' would come before '9'
    model = TwoTowerModel(["u"], vocab, SMALL)
    rows = [("u", "10", 20), ("u", "x", 10), ("u", "9", 20)]
    examples = model._sequences(_data(rows))
    np.testing.assert_array_equal(examples.history(np.arange(3)), [[_, 3, 2], [_, _, _], [_, _, 3]])
    np.testing.assert_array_equal(model.serving_history[1], [3, 2, 1])  # x, 9, 10: '10' is the latest


def test_weights_are_normalised_to_mean_one() -> None:
    model = TwoTowerModel(["a", "b"], ITEMS, SMALL)
    data = TrainingData(np.array(["a", "b"]), np.array(["p00", "p01"]), np.array([1.0, 3.0], np.float32))
    np.testing.assert_array_equal(model._sequences(data).weights, [0.5, 1.5])


def _clusters(
    n_users: int, n_items: int, per_user: int, seed: int
) -> tuple[list[str], list[str], TrainingData]:
    """Users and items in 4 clusters: every user engages with items of its own cluster only."""
    rng = np.random.default_rng(seed)
    users = [f"u{i:04d}" for i in range(n_users)]
    items = [f"p{i:04d}" for i in range(n_items)]
    per_cluster = n_items // 4
    rows = [
        (u, items[(k % 4) * per_cluster + int(rng.integers(0, per_cluster))], t)
        for k, u in enumerate(users)
        for t in range(per_user)
    ]
    return users, items, _data(rows)


SAMPLED = Hyperparameters(
    embedding_dim=16,
    hidden_dim=32,
    history_length=5,
    epochs=4,
    batch_size=64,
    learning_rate=0.01,
    dropout=0.1,  # the learning curve below is this model's, not the MovieLens defaults'
    sampled_softmax_min_items=100,
    num_negatives=64,
    seed=5,
)


def test_default_keeps_small_catalogues_on_the_full_softmax(tmp_path: Path) -> None:
    assert Hyperparameters().sampled_softmax_min_items == 100_000
    users, items, data = _clusters(40, 120, 5, seed=1)
    model = TwoTowerModel(users, items, dataclasses.replace(SMALL, sampled_softmax_min_items=121))
    assert not model.sampled
    assert TwoTowerModel(users, items, dataclasses.replace(SMALL, sampled_softmax_min_items=120)).sampled
    model.fit(data, checkpoint_dir=tmp_path)
    state = json.loads((tmp_path / "recflow-state.json").read_text())
    # what the full softmax never reads is not in its fingerprint: checkpoints of earlier jobs stay valid
    assert "num_negatives" not in state["fingerprint"]["hyperparameters"]
    assert "sampled_softmax_min_items" not in state["fingerprint"]["hyperparameters"]
    assert not list(tmp_path.glob("*lazy*")), "no sparse optimizer state on the full softmax"


def test_sampled_softmax_learns_a_clear_signal() -> None:
    users, items, data = _clusters(200, 400, 12, seed=2)
    model = TwoTowerModel(users, items, SAMPLED)
    assert model.sampled
    history = model.fit(data)
    assert history[-1].loss < 0.8 * history[0].loss, [h.loss for h in history]

    # held-out positives: an unseen item of the user's own cluster ranks far above random (0.5)
    user_table, item_table = model.serving_tables()
    scores = user_table[1:] @ item_table[1:].T  # [users, items]
    rng = np.random.default_rng(9)
    per_cluster = len(items) // 4
    seen = {(u, p) for u, p in zip(data.users.tolist(), data.items.tolist(), strict=True)}
    percentiles = []
    for k, user in enumerate(users):
        candidates = [
            j for j in range((k % 4) * per_cluster, (k % 4 + 1) * per_cluster) if (user, items[j]) not in seen
        ]
        held_out = int(rng.choice(candidates))
        percentiles.append(float(np.mean(scores[k] > scores[k, held_out])))
    assert np.mean(percentiles) < 0.2, np.mean(percentiles)


def test_sampled_logits_correct_for_sampling_and_mask_hits() -> None:
    model = TwoTowerModel(
        ["a"], ITEMS, dataclasses.replace(SMALL, num_negatives=3, sampled_softmax_min_items=1)
    )
    bias = np.zeros(101, np.float32)
    bias[[2, 3, 5, 9]] = [0.5, 1.0, -1.0, 2.0]
    model.item_bias.assign(bias)
    label_prob = np.zeros(101, np.float32)
    label_prob[[2, 3]] = [0.25, 0.75]
    labels = np.array([2, 3], np.int32)
    negatives = np.array([9, 2, 5], np.int32)  # 2 is row 0's label: an accidental hit there
    history = np.array([[_, _, 5], [_, _, _]], np.int32)  # row 0 has seen item 5
    logits = model.sampled_logits(
        tf.zeros([2, 8]),
        tf.constant(labels),
        tf.constant(history),
        tf.constant(negatives),
        tf.constant(label_prob),
        100,
    ).numpy()

    # expected copies among the 2 + 3 candidates: 2 * label_prob + 3 / 100
    def corrected(item: int) -> float:
        return float(bias[item] - np.log(2 * label_prob[item] + 0.03))

    masked = -1e9
    np.testing.assert_allclose(
        logits,
        [
            [corrected(2), corrected(3), corrected(9), masked, masked],
            [corrected(2), corrected(3), corrected(9), corrected(2), corrected(5)],
        ],
        rtol=1e-6,
    )


def test_a_sampled_run_resumed_after_epoch_1_ends_where_an_uninterrupted_run_ends(tmp_path: Path) -> None:
    users, items, data = _clusters(40, 120, 8, seed=4)
    hp = dataclasses.replace(SAMPLED, epochs=2, dropout=0.0, oov_rate=0.0, num_negatives=16)
    straight = TwoTowerModel(users, items, hp)
    straight_log = straight.fit(data, checkpoint_dir=tmp_path / "straight")
    # the process died after saving epoch 1: the directory holds what it held then
    interrupted = tmp_path / "interrupted"
    shutil.copytree(tmp_path / "straight", interrupted)
    steps = -(-len(data.users) // hp.batch_size)  # checkpoints are numbered by the steps done
    for path in interrupted.glob(f"ckpt-{2 * steps}.*"):
        path.unlink()
    (interrupted / "checkpoint").write_text(
        f'model_checkpoint_path: "ckpt-{steps}"\nall_model_checkpoint_paths: "ckpt-{steps}"\n'
    )
    resumed = TwoTowerModel(users, items, hp)
    resumed_log = resumed.fit(data, checkpoint_dir=interrupted)
    assert resumed_log[0].loss == straight_log[0].loss, "epoch 1 was restored, not rerun"
    assert resumed_log[1].loss == pytest.approx(straight_log[1].loss, rel=1e-5)
    for name, variable in straight.named_variables().items():
        np.testing.assert_allclose(
            resumed.named_variables()[name].numpy(), variable.numpy(), rtol=1e-4, atol=1e-6, err_msg=name
        )
