"""Per-epoch checkpoints: a run resumed after epoch k ends where an uninterrupted run ends."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from recflow_ml.hyperparameters import Hyperparameters
from recflow_ml.model import TrainingData, TwoTowerModel, epoch_order

pytestmark = pytest.mark.integration  # TensorFlow

# no dropout, no OOV replacement: with them off, training is a function of the data order alone
HP = Hyperparameters(
    embedding_dim=8,
    hidden_dim=16,
    history_length=5,
    epochs=3,
    batch_size=64,
    dropout=0.0,
    oov_rate=0.0,
    seed=3,
)


def _data() -> TrainingData:
    rng = np.random.default_rng(0)
    n = 700
    users = np.array([f"u{i}" for i in rng.integers(0, 40, n)])
    items = np.array([f"p{i}" for i in rng.integers(0, 120, n)])
    return TrainingData(users, items, np.ones(n, np.float32), np.arange(n))


def _model(hp: Hyperparameters = HP) -> TwoTowerModel:
    data = _data()
    return TwoTowerModel(sorted(set(data.users.tolist())), sorted(set(data.items.tolist())), hp)


def _weights(model: TwoTowerModel) -> dict[str, np.ndarray]:
    return {name: v.numpy() for name, v in model.named_variables().items()}


def test_epoch_order_is_a_function_of_seed_and_epoch() -> None:
    first = epoch_order(1000, 7, 1)
    assert sorted(first.tolist()) == list(range(1000))
    np.testing.assert_array_equal(first, epoch_order(1000, 7, 1))
    assert not np.array_equal(first, epoch_order(1000, 7, 2)), "each epoch has its own order"
    assert not np.array_equal(first, epoch_order(1000, 8, 1)), "the seed changes the order"


def test_a_run_resumed_after_epoch_2_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    straight = _model()
    straight_log = straight.fit(_data(), checkpoint_dir=tmp_path / "straight")
    assert [e.epoch for e in straight_log] == [1, 2, 3]
    steps = -(-700 // HP.batch_size)  # checkpoints are numbered by the steps done
    assert sorted(p.name for p in (tmp_path / "straight").glob("ckpt-*.index")) == [
        f"ckpt-{2 * steps}.index",
        f"ckpt-{3 * steps}.index",
    ], "the manager keeps the last two"

    # the process died after saving epoch 2: the directory holds what it held then
    interrupted = tmp_path / "interrupted"
    shutil.copytree(tmp_path / "straight", interrupted)
    for path in interrupted.glob(f"ckpt-{3 * steps}.*"):
        path.unlink()
    (interrupted / "checkpoint").write_text(
        f'model_checkpoint_path: "ckpt-{2 * steps}"\nall_model_checkpoint_paths: "ckpt-{2 * steps}"\n'
    )

    resumed = _model()
    with caplog.at_level(logging.INFO, logger="recflow_ml.model"):
        resumed_log = resumed.fit(_data(), checkpoint_dir=interrupted)
    assert "resumed from checkpoint at epoch 2 (of 3)" in caplog.text
    assert [e.epoch for e in resumed_log] == [1, 2, 3], "the history of the restored epochs is kept"
    assert resumed_log[1].loss == straight_log[1].loss
    assert resumed_log[2].loss == pytest.approx(straight_log[2].loss, rel=1e-5)
    expected, got = _weights(straight), _weights(resumed)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_a_checkpoint_of_another_job_is_not_restored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _model(dataclasses.replace(HP, epochs=1)).fit(_data(), checkpoint_dir=tmp_path)
    other = _model(dataclasses.replace(HP, epochs=2, learning_rate=0.01))
    with caplog.at_level(logging.WARNING, logger="recflow_ml.checkpoints"):
        history = other.fit(_data(), checkpoint_dir=tmp_path)
    assert "belongs to another job" in caplog.text
    assert [e.epoch for e in history] == [1, 2], "trained from scratch"
