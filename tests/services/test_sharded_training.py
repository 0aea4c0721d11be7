"""Two hosts, each streaming only its own share of the train channel (issue 17).

The channel is a snapshot the real pipeline took (generate → land → dbt → snapshot), its
interactions dealt at random into five Parquet files. Two ways to give it to two worker processes on
loopback: ``ShardedByS3Key``, each host's channel staged as the platform stages a sharded channel
(``recflow_ml.layout.host_share``: every file on exactly one host), the side tables in a replicated
``catalogue`` channel; and ``FullyReplicated``, every host holding every file, the row groups dealt
among them by the job.

What the hosts report is checked against the channel read back here: the row groups each host
trained on are disjoint and together the channel (files, row groups and rows), each host's share of a batch is in
proportion to its rows, and the chief's vocabularies and counts are the whole channel's. The training
itself is checked against one process fed the global batches the hosts' own batches make (each
host's stream rebuilt from its files): the same losses, and the same exported vectors, whose serving
histories and label counts are those one process streaming the whole channel finds. Float32
summation order is the only difference (the tolerances of ``test_multiworker_training``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from recflow_ml.contract import FULLY_REPLICATED, SHARDED_BY_S3_KEY
from recflow_ml.hyperparameters import Hyperparameters
from recflow_ml.layout import JobLayout, host_share
from recflow_ml.model import Sharding, TwoTowerModel
from recflow_ml.rows import PAD
from recflow_ml.stream import Batch, RowGroup, open_stream, serving_histories
from recflow_ml.train import read_item_topics, read_user_features
from tests.integration.conftest import snapshot_train_channel
from tests.services.test_multiworker_training import (
    LOSS_RTOL,
    VECTOR_ATOL,
    _entrypoint,
    _finish,
    _free_ports,
)

FILES = 5
"""Shard files of the channel: two hosts get three and two, so their shares differ."""
ROW_GROUP = 25
"""Rows per row group: small enough that every shard file holds several (the test asks for more than two
per file on average), whatever the generator draws for the snapshot."""
HP = Hyperparameters(
    embedding_dim=8,
    hidden_dim=16,
    history_length=5,
    epochs=2,
    batch_size=17,  # odd: the hosts' shares of a batch cannot be equal
    dropout=0.0,
    oov_rate=0.0,
    seed=7,
    shuffle_buffer=60,
    stream_min_interactions=1,  # a replicated channel is streamed (so shared) from this size on
)
SAMPLED = {"sampled_softmax_min_items": 10, "num_negatives": 16}


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The snapshot's train channel, its interactions dealt at random into ``FILES`` shard files (so
    most users' examples lie on both hosts: each host then holds some of a user's history)."""
    channel = snapshot_train_channel(tmp_path_factory.mktemp("sharded"))
    table = pq.read_table(channel / "interactions.parquet")
    table = table.take(np.random.default_rng(0).permutation(table.num_rows))
    (channel / "interactions.parquet").unlink()
    shards = channel / "interactions.parquet"
    shards.mkdir()
    bounds = np.linspace(0, table.num_rows, FILES + 1).astype(int)
    for k in range(FILES):
        part = table.slice(bounds[k], bounds[k + 1] - bounds[k])
        pq.write_table(part, shards / f"part-{k:05d}.parquet", row_group_size=ROW_GROUP)
    return channel


def _stage(
    channel: Path, base: Path, hosts: list[str], index: int, hp: Hyperparameters, distribution: str
) -> JobLayout:
    """Host ``index``'s ``/opt/ml``: sharded, its share of the files and the catalogue whole;
    replicated, the whole channel."""
    layout = JobLayout(base)
    entry = {"ContentType": "application/x-parquet", "S3DistributionType": distribution}
    if distribution == FULLY_REPLICATED:
        layout.write_config(hp.as_strings(), {"train": entry}, hosts=hosts, current_host=hosts[index])
        shutil.copytree(channel, layout.channel_dir("train"))
        return layout
    replicated = {"ContentType": "application/x-parquet", "S3DistributionType": FULLY_REPLICATED}
    layout.write_config(
        hp.as_strings(), {"train": entry, "catalogue": replicated}, hosts=hosts, current_host=hosts[index]
    )
    keys = [p.relative_to(channel).as_posix() for p in (channel / "interactions.parquet").glob("*.parquet")]
    for key in host_share(keys, len(hosts), index):
        target = layout.channel_dir("train") / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(channel / key, target)
    layout.channel_dir("catalogue").mkdir(parents=True)
    for side in ("pins.parquet", "users.parquet"):
        shutil.copy(channel / side, layout.channel_dir("catalogue") / side)
    return layout


def _start(layout: JobLayout) -> subprocess.Popen[bytes]:
    return _entrypoint(layout.base, SAGEMAKER_BASE_DIR=str(layout.base), TRAINING_JOB_NAME="sharded")


@pytest.mark.parametrize("distribution", [SHARDED_BY_S3_KEY, FULLY_REPLICATED])
@pytest.mark.parametrize("softmax", ["full", "sampled"])
def test_two_hosts_stream_disjoint_shares_whose_union_is_the_channel(
    channel: Path, tmp_path: Path, softmax: str, distribution: str
) -> None:
    hp = dataclasses.replace(HP, **SAMPLED) if softmax == "sampled" else HP
    hosts = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    layouts = [_stage(channel, tmp_path / f"host-{k}", hosts, k, hp, distribution) for k in range(2)]
    _finish({layout.base: _start(layout) for layout in layouts})

    metadata = json.loads((layouts[0].model_dir / "metadata.json").read_text())
    assert not layouts[1].model_dir.joinpath("metadata.json").exists(), "only the chief writes the model"
    assert metadata["input"] == "sharded stream" and metadata["workers"] == 2

    # the row groups each host trained on: disjoint, and together every row group of the channel
    files = sorted((channel / "interactions.parquet").glob("*.parquet"))
    channel_groups = {
        (p.relative_to(channel).as_posix(), g): pq.ParquetFile(p).metadata.row_group(g).num_rows
        for p in files
        for g in range(pq.ParquetFile(p).metadata.num_row_groups)
    }
    assert len(files) == FILES and len(channel_groups) > 2 * FILES
    shares = {
        host: {(f["file"], g): None for f in s["files"] for g in f["row_groups"]}
        for host, s in metadata["shards"].items()
    }
    assert sorted(shares) == sorted(hosts)
    assert all(shares.values()), "each host had row groups"
    assert not set(shares[hosts[0]]) & set(shares[hosts[1]]), "no row group on both hosts"
    assert set(shares[hosts[0]]) | set(shares[hosts[1]]) == set(channel_groups), "together, the channel"
    per_host = [sum(int(f["rows"]) for f in metadata["shards"][h]["files"]) for h in hosts]
    assert per_host == [sum(channel_groups[key] for key in shares[h]) for h in hosts], "rows as read back"
    host_files = [{f for f, _ in shares[h]} for h in hosts]
    if distribution == SHARDED_BY_S3_KEY:  # a host read all of its files, and only what it held
        assert not host_files[0] & host_files[1]
        for k in range(2):
            held = layouts[k].channel_dir("train") / "interactions.parquet"
            assert host_files[k] == {f"interactions.parquet/{p.name}" for p in held.glob("*.parquet")}
    else:  # every host held every file, and read some of each
        assert host_files[0] == host_files[1] == {key for key, _ in channel_groups}

    # the model is the whole channel's: its vocabularies, its size, the epoch every host agreed on
    whole = pq.read_table(channel / "interactions.parquet", columns=["user_id", "pin_id"])
    assert metadata["interactions"] == whole.num_rows == sum(channel_groups.values())
    assert metadata["users"] == len(pc.unique(whole.column("user_id")))
    assert metadata["pins"] == len(pc.unique(whole.column("pin_id")))
    sizes = [metadata["shards"][h]["batch_rows"] for h in hosts]
    assert sum(sizes) == hp.batch_size
    for n, size in zip(per_host, sizes, strict=True):  # a share of each batch in proportion to its rows
        assert abs(size - hp.batch_size * n / sum(per_host)) < 1
    steps = min(n // size for n, size in zip(per_host, sizes, strict=True))
    assert metadata["examples_per_epoch"] == steps * hp.batch_size
    for k, host in enumerate(hosts):
        log = (layouts[k].base / "job.log").read_text()
        groups, n_files = len(shares[host]), len(host_files[k])
        assert (
            f"host {host}: its share of the train channel is {groups} row group(s) of {n_files} file(s)"
            in log
        )

    # the same training in one process, on the global batches the hosts' own batches make: each
    # host's stream rebuilt from the row groups it reported, with the whole channel's vocabularies,
    # counts and histories
    stream, summary = open_stream(channel / "interactions.parquet", hp)
    serving, counts = serving_histories(stream)
    streams = [
        open_stream(
            channel / "interactions.parquet",
            hp,
            groups=[
                RowGroup(channel / f["file"], g, channel_groups[(f["file"], g)])
                for f in metadata["shards"][host]["files"]
                for g in f["row_groups"]
            ],
            summary=summary,
            batch_size=sizes[k],
            host=k,
        )[0]
        for k, host in enumerate(hosts)
    ]

    def global_batches(epoch: int) -> Iterator[Batch]:
        shares_of = [itertools.islice(s.batches(epoch), steps) for s in streams]
        for parts in zip(*shares_of, strict=True):
            yield Batch(*(np.concatenate(column) for column in zip(*parts, strict=True)))

    one = TwoTowerModel(
        summary.user_vocab,
        summary.item_vocab,
        hp,
        user_features=read_user_features(channel),
        item_topics=read_item_topics(channel),
    )
    assert one.sampled == (softmax == "sampled")
    logged = one._fit(global_batches, counts, None, "stream", None, None, Sharding(steps, 0, ""))
    np.testing.assert_allclose(
        [e["loss"] for e in metadata["history"]], [e.loss for e in logged], rtol=LOSS_RTOL
    )
    one.serving_history[:] = serving
    user_table, item_table = one.serving_tables()
    exported = tf.saved_model.load(str(layouts[0].model_dir))
    assert [u.decode() for u in exported.user_id_list.numpy()] == summary.user_vocab
    np.testing.assert_allclose(exported.user_vectors.numpy(), user_table, atol=VECTOR_ATOL)
    np.testing.assert_allclose(exported.item_vectors.numpy(), item_table, atol=VECTOR_ATOL)

    # and every user's served vector is the user tower on the history one process finds for them
    assert (serving[1:] != PAD).any(axis=1).mean() > 0.5, "most users have a history"
    items = np.array(["", *summary.item_vocab], dtype=object)
    history = np.where(serving[1:] == PAD, "", items[np.maximum(serving[1:], 0)])
    users = tf.constant(summary.user_vocab)
    tower = exported.user_tower(user_id=users, history=tf.constant(history.astype(str)))["vector"].numpy()
    np.testing.assert_allclose(exported.user_vectors.numpy()[1:], tower, rtol=1e-4, atol=1e-5)
