"""The streamed train channel, on a snapshot the real pipeline took (generate → land → dbt → snapshot).

What the warehouse computed (each pair's history, by a window function) is checked against what the
trainer computes when it holds the channel whole (a sort of every example in NumPy): two independent
implementations of the same rule.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recflow.core.config import subprocess_env
from recflow_ml.hyperparameters import Hyperparameters
from recflow_ml.stream import Batch, ExampleStream, open_stream, serving_histories, summarise
from recflow_ml.train import read_event_times, read_interactions, vocabulary
from tests.integration.conftest import snapshot_train_channel

# These tests import TensorFlow into the test process, as the rest of tests/unit/ml does: they live
# here, not in tests/integration, because a test that runs after TensorFlow was imported in-process
# and then runs an Airflow task in-process (test_training_job.py) loses pytest's captured stderr.

pytestmark = pytest.mark.integration  # TensorFlow, dbt

ROW_GROUP = 50
"""Rows per row group of the test's channel: several groups, so order and shuffling are exercised."""
HP = Hyperparameters(
    embedding_dim=8,
    hidden_dim=16,
    history_length=5,
    epochs=2,
    batch_size=16,
    dropout=0.0,  # with dropout and OOV draws off, training is a function of the batches alone
    oov_rate=0.0,
    seed=5,
    shuffle_buffer=120,
    checkpoint_steps=4,
    stream_min_interactions=1,
)


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The train channel of a snapshot of a small warehouse the pipeline's steps built, its
    interactions rewritten in small row groups."""
    channel = snapshot_train_channel(tmp_path_factory.mktemp("streamed"))
    table = pq.read_table(channel / "interactions.parquet")
    pq.write_table(table, channel / "interactions.parquet", row_group_size=ROW_GROUP)
    return channel


def _stream(channel: Path, hp: Hyperparameters = HP) -> tuple[ExampleStream, list[str], list[str]]:
    stream, summary = open_stream(channel / "interactions.parquet", hp)
    return stream, summary.user_vocab, summary.item_vocab


def _whole(channel: Path, hp: Hyperparameters = HP) -> tuple[object, object]:
    from recflow_ml.model import TrainingData, TwoTowerModel

    users, items, weights = read_interactions(channel)
    model = TwoTowerModel(vocabulary(users), vocabulary(items), hp)
    examples = model._sequences(TrainingData(users, items, weights, read_event_times(channel)))
    return model, examples


def test_the_warehouse_histories_are_those_the_whole_channel_path_builds(channel: Path) -> None:
    stream, user_vocab, item_vocab = _stream(channel)
    model, examples = _whole(channel)
    assert (user_vocab, item_vocab) == (model.user_vocab, model.item_vocab)  # type: ignore[attr-defined]
    assert stream.examples == len(examples) > 5 * ROW_GROUP  # type: ignore[arg-type]
    assert len(stream.groups) > 5

    read = [stream.read(g)[0] for g in stream.groups]  # file order: the rows read_interactions holds
    streamed = Batch(*(np.concatenate(parts) for parts in zip(*read, strict=True)))
    rows = np.arange(len(examples))  # type: ignore[arg-type]
    np.testing.assert_array_equal(streamed.users, examples.users)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(streamed.items, examples.items)  # type: ignore[attr-defined]
    np.testing.assert_allclose(streamed.weights, examples.weights, rtol=1e-6)  # type: ignore[attr-defined]
    with_history = (streamed.history[:, -1] >= 0).sum()
    assert with_history > len(rows) / 2, "most examples have an earlier pin"
    np.testing.assert_array_equal(streamed.history, examples.history(rows))  # type: ignore[attr-defined]

    serving, counts = serving_histories(stream)
    np.testing.assert_array_equal(serving, model.serving_history)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(counts, np.bincount(examples.items, minlength=len(item_vocab) + 1))  # type: ignore[attr-defined]


def _pairs(batches: Iterator[Batch]) -> list[tuple[int, int]]:
    return [(int(u), int(i)) for b in batches for u, i in zip(b.users, b.items, strict=True)]


def test_an_epoch_streams_every_example_once_in_an_order_drawn_from_seed_and_epoch(channel: Path) -> None:
    stream, _, _ = _stream(channel)
    table = pq.read_table(channel / "interactions.parquet", columns=["user_id", "pin_id"])
    assert stream.examples == table.num_rows

    batches = list(stream.batches(1))
    assert len(batches) == stream.steps
    assert all(len(b) == HP.batch_size for b in batches[:-1]), "every batch is full but the last"
    first = _pairs(iter(batches))
    whole = _pairs(iter([stream.read(g)[0] for g in stream.groups]))
    assert Counter(first) == Counter(whole), "each example once"
    assert first != whole, "shuffled"
    assert _pairs(stream.batches(1)) == first, "a function of (seed, epoch)"
    assert _pairs(stream.batches(2)) != first, "each epoch its own order"
    other = dataclasses.replace(HP, seed=HP.seed + 1)
    assert _pairs(_stream(channel, other)[0].batches(1)) != first, "the seed changes the order"


def test_a_history_cut_shorter_than_history_length_is_refused(channel: Path, tmp_path: Path) -> None:
    import pyarrow as pa

    table = pq.read_table(channel / "interactions.parquet")
    # the snapshot of a warehouse whose history_window var was 2: every list keeps its last 2 pins
    column = table.schema.get_field_index("history")
    short = pa.array(
        [h[-2:] for h in table.column("history").to_pylist()], table.schema.field("history").type
    )
    cut = tmp_path / "train"
    cut.mkdir()
    pq.write_table(table.set_column(column, "history", short), cut / "interactions.parquet")
    stream, _, _ = _stream(cut)
    with pytest.raises(
        ValueError, match=r"has [3-9]\d* earlier pins but its history holds 2: .*history_length=5"
    ):
        list(stream.batches(1))


class _Died(Exception):
    """The job's process ending between two steps."""


def _dies_at(stream: ExampleStream, epoch: int, batch: int) -> ExampleStream:
    original = stream.batches

    def batches(e: int) -> Iterator[Batch]:
        for k, b in enumerate(original(e), start=1):
            if (e, k) == (epoch, batch):
                raise _Died
            yield b

    stream.batches = batches  # type: ignore[method-assign,assignment]
    return stream


def test_a_streaming_job_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_one(
    channel: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from recflow_ml.model import EpochLog, TwoTowerModel

    def job(
        stream: ExampleStream, users: list[str], items: list[str], checkpoints: Path
    ) -> tuple[TwoTowerModel, list[EpochLog]]:
        model = TwoTowerModel(users, items, HP)
        serving, counts = serving_histories(stream)
        return model, model.fit_stream(stream, counts, serving, checkpoint_dir=checkpoints)

    straight, straight_log = job(*_stream(channel), tmp_path / "straight")
    steps = _stream(channel)[0].steps
    assert steps > 2 * HP.checkpoint_steps + 2

    # the first attempt dies in epoch 2, a few steps after its checkpoint at step 8
    stream, users, items = _stream(channel)
    with pytest.raises(_Died):
        job(_dies_at(stream, 2, 2 * HP.checkpoint_steps + 3), users, items, tmp_path / "attempts")
    with caplog.at_level(logging.INFO, logger="recflow_ml.model"):
        resumed, resumed_log = job(*_stream(channel), tmp_path / "attempts")
    assert (
        f"resumed from checkpoint at epoch 1 (of 2), step {2 * HP.checkpoint_steps} of epoch 2" in caplog.text
    )
    assert [e.epoch for e in resumed_log] == [1, 2]
    assert resumed_log[0].loss == straight_log[0].loss, "epoch 1 was restored, not rerun"
    assert resumed_log[1].loss == pytest.approx(straight_log[1].loss, rel=1e-5), (
        "the epoch's loss spans both attempts"
    )
    for name, variable in straight.named_variables().items():
        np.testing.assert_allclose(
            resumed.named_variables()[name].numpy(), variable.numpy(), rtol=1e-4, atol=1e-6, err_msg=name
        )
    np.testing.assert_array_equal(resumed.serving_history, straight.serving_history)


def test_the_entrypoint_streams_a_channel_of_stream_min_interactions_and_says_so(
    channel: Path, tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    from recflow_ml.layout import JobLayout

    file = pq.ParquetFile(channel / "interactions.parquet").metadata
    rows = file.num_rows
    metadata, logs = {}, {}
    for name, threshold in (("stream", rows), ("memory", rows + 1)):
        layout = JobLayout(tmp_path / name)
        hp = dataclasses.replace(HP, epochs=1, stream_min_interactions=threshold)
        layout.write_config(hp.as_strings(), {"train": {"ContentType": "application/x-parquet"}})
        shutil.copytree(channel, layout.channel_dir("train"))
        job = subprocess.run(
            [sys.executable, "-m", "recflow_ml.train", "train"],
            env=subprocess_env({"SAGEMAKER_BASE_DIR": str(layout.base)}),
            capture_output=True,
            text=True,
            check=False,
        )
        assert job.returncode == 0, job.stderr[-3000:]
        logs[name] = job.stderr
        metadata[name] = json.loads((layout.model_dir / "metadata.json").read_text())
    assert metadata["stream"]["input"] == "stream" and metadata["memory"]["input"] == "memory"
    assert f"streamed: {file.num_row_groups} row groups" in logs["stream"]
    assert "loaded whole (under stream_min_interactions)" in logs["memory"]
    for key in ("users", "pins", "interactions"):
        assert metadata["stream"][key] == metadata["memory"][key], key
    assert metadata["stream"]["interactions"] == rows
    (epoch,) = metadata["stream"]["history"]
    assert 0 < epoch["input_seconds"] < epoch["seconds"]


def test_a_weight_that_is_not_positive_or_a_null_id_is_refused_naming_its_row_group(
    channel: Path, tmp_path: Path
) -> None:
    import pyarrow as pa

    table = pq.read_table(channel / "interactions.parquet")
    weights = table.column("weight").to_pylist()
    weights[3 * ROW_GROUP + 7] = 0.0
    broken = tmp_path / "train"
    broken.mkdir()
    column = table.schema.get_field_index("weight")
    pq.write_table(
        table.set_column(column, "weight", pa.array(weights, pa.float64())),
        broken / "interactions.parquet",
        row_group_size=ROW_GROUP,
    )
    user, pin = table.column("user_id")[3 * ROW_GROUP + 7], table.column("pin_id")[3 * ROW_GROUP + 7]
    with pytest.raises(
        ValueError, match=r"\(row group 3\): column 'weight' must be a positive number; row 7 "
    ) as e:
        summarise(broken / "interactions.parquet")
    assert f"user_id={user.as_py()!r}, pin_id={pin.as_py()!r}) has 0.0 (1 such rows)" in str(e.value)

    pins = table.column("pin_id").to_pylist()
    pins[2 * ROW_GROUP + 1] = None
    column = table.schema.get_field_index("pin_id")
    pq.write_table(
        table.set_column(column, "pin_id", pa.array(pins, pa.string())),
        broken / "interactions.parquet",
        row_group_size=ROW_GROUP,
    )
    with pytest.raises(ValueError, match=r"\(row group 2\): column 'pin_id' has 1 null id\(s\)"):
        summarise(broken / "interactions.parquet")


def test_a_stream_that_keeps_its_mapped_row_groups_gives_the_same_batches(
    channel: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "train"
    shutil.copytree(channel, copy)
    cache = tmp_path / "cache"
    cache.mkdir()
    stream, _ = open_stream(copy / "interactions.parquet", HP, cache_dir=cache)
    plain, _, _ = _stream(channel)
    serving, counts = serving_histories(stream)
    assert len(list(cache.glob("*.npz"))) == len(stream.groups), "the pass kept every row group"
    (copy / "interactions.parquet").unlink()  # from now on, only the cache can give the rows
    for epoch in (1, 2):
        for kept, read in zip(stream.batches(epoch), plain.batches(epoch), strict=True):
            for a, b in zip(kept, read, strict=True):
                np.testing.assert_array_equal(a, b)
    expected = serving_histories(plain)
    np.testing.assert_array_equal(serving, expected[0])
    np.testing.assert_array_equal(counts, expected[1])


def test_the_summaries_of_a_channels_shards_merge_into_the_whole_channels(
    channel: Path, tmp_path: Path
) -> None:
    """What hosts of a sharded channel agree on before training (``recflow_ml.distributed``): each
    summarises its files, the summaries travel as bytes, and merged they are the whole channel's."""
    from recflow_ml.stream import ChannelSummary, merge_summaries

    table = pq.read_table(channel / "interactions.parquet")
    cut = table.num_rows // 3
    parts = []
    for k, piece in enumerate((table.slice(0, cut), table.slice(cut))):
        pq.write_table(piece, tmp_path / f"part-{k}.parquet", row_group_size=ROW_GROUP)
        parts.append(ChannelSummary.from_bytes(summarise(tmp_path / f"part-{k}.parquet").to_bytes()))
    whole = summarise(channel / "interactions.parquet")
    merged = merge_summaries(parts)
    assert parts[0].user_vocab != whole.user_vocab, "a shard alone does not hold every user"
    assert (merged.user_vocab, merged.item_vocab, merged.examples) == (
        whole.user_vocab,
        whole.item_vocab,
        whole.examples,
    )
    assert merged.weight_mean == pytest.approx(whole.weight_mean, rel=1e-12)
