"""Two hosts, each streaming only its own files of a ``ShardedByS3Key`` train channel (issue 17).

The channel is a snapshot the real pipeline took (generate → land → dbt → snapshot), its
interactions rewritten as five Parquet files. Each host's channel is staged as the platform stages a
sharded channel (``recflow_ml.layout.host_share``: every file on exactly one host), the side tables
in a replicated ``catalogue`` channel, and the entrypoint runs as two worker processes on loopback.

What the hosts report is checked against the channel read back here: the files each host trained
on are disjoint and together the channel (names and rows); the chief's vocabularies and counts are
the whole channel's; and every user's served vector is the user tower applied to the history a
single process streaming the whole channel computes (``serving_histories``), so the hosts' merged
histories are the whole channel's, not one shard's.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from recflow_ml.contract import SHARDED_BY_S3_KEY
from recflow_ml.hyperparameters import Hyperparameters
from recflow_ml.layout import JobLayout, host_share
from recflow_ml.rows import PAD
from recflow_ml.stream import open_stream, serving_histories
from tests.integration.conftest import snapshot_train_channel
from tests.services.test_multiworker_training import _entrypoint, _finish, _free_ports

FILES = 5
"""Shard files of the channel: two hosts get three and two, so their shares differ."""
ROW_GROUP = 40
HP = Hyperparameters(
    embedding_dim=8,
    hidden_dim=16,
    history_length=5,
    epochs=2,
    batch_size=17,  # odd: the hosts' shares of a batch are 8 and 9 rows
    dropout=0.0,
    oov_rate=0.0,
    seed=7,
    shuffle_buffer=60,
)
SAMPLED = {"sampled_softmax_min_items": 10, "num_negatives": 16}


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The snapshot's train channel, its interactions written as ``FILES`` shard files."""
    channel = snapshot_train_channel(tmp_path_factory.mktemp("sharded"))
    table = pq.read_table(channel / "interactions.parquet")
    (channel / "interactions.parquet").unlink()
    shards = channel / "interactions.parquet"
    shards.mkdir()
    bounds = np.linspace(0, table.num_rows, FILES + 1).astype(int)
    for k in range(FILES):
        part = table.slice(bounds[k], bounds[k + 1] - bounds[k])
        pq.write_table(part, shards / f"part-{k:05d}.parquet", row_group_size=ROW_GROUP)
    return channel


def _stage(channel: Path, base: Path, hosts: list[str], index: int, hp: Hyperparameters) -> JobLayout:
    """Host ``index``'s ``/opt/ml``: its share of the sharded train channel, the catalogue whole."""
    layout = JobLayout(base)
    layout.write_config(
        hp.as_strings(),
        {
            "train": {"ContentType": "application/x-parquet", "S3DistributionType": SHARDED_BY_S3_KEY},
            "catalogue": {"ContentType": "application/x-parquet", "S3DistributionType": "FullyReplicated"},
        },
        hosts=hosts,
        current_host=hosts[index],
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


@pytest.mark.parametrize("softmax", ["full", "sampled"])
def test_two_hosts_stream_disjoint_shards_whose_union_is_the_channel(
    channel: Path, tmp_path: Path, softmax: str
) -> None:
    hp = dataclasses.replace(HP, **SAMPLED) if softmax == "sampled" else HP
    hosts = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    layouts = [_stage(channel, tmp_path / f"host-{k}", hosts, k, hp) for k in range(2)]
    _finish({layout.base: _start(layout) for layout in layouts})

    metadata = json.loads((layouts[0].model_dir / "metadata.json").read_text())
    assert not layouts[1].model_dir.joinpath("metadata.json").exists(), "only the chief writes the model"
    assert metadata["input"] == "sharded stream" and metadata["workers"] == 2

    # the files each host trained on: disjoint, and together every file of the channel, with its rows
    files = {
        p.relative_to(channel).as_posix(): pq.ParquetFile(p).metadata.num_rows
        for p in (channel / "interactions.parquet").glob("*.parquet")
    }
    shares = {host: {f["file"]: f["rows"] for f in share} for host, share in metadata["shards"].items()}
    assert sorted(shares) == sorted(hosts)
    assert all(shares.values()), "each host had files"
    assert not set(shares[hosts[0]]) & set(shares[hosts[1]]), "no file on both hosts"
    assert {**shares[hosts[0]], **shares[hosts[1]]} == files, "together, the channel"
    for k, host in enumerate(hosts):  # what each host read is what its channel held
        held = layouts[k].channel_dir("train") / "interactions.parquet"
        assert sorted(shares[host]) == sorted(
            f"interactions.parquet/{p.name}" for p in held.glob("*.parquet")
        )

    # the model is the whole channel's: its vocabularies, its size, the epoch every host agreed on
    whole = pq.read_table(channel / "interactions.parquet", columns=["user_id", "pin_id"])
    assert metadata["interactions"] == whole.num_rows == sum(files.values())
    assert metadata["users"] == len(pc.unique(whole.column("user_id")))
    assert metadata["pins"] == len(pc.unique(whole.column("pin_id")))
    per_host = [sum(shares[h].values()) for h in hosts]
    sizes = [hp.batch_size // 2, hp.batch_size - hp.batch_size // 2]
    steps = min(n // size for n, size in zip(per_host, sizes, strict=True))
    assert metadata["examples_per_epoch"] == steps * hp.batch_size
    losses = [e["loss"] for e in metadata["history"]]
    assert len(losses) == hp.epochs and all(np.isfinite(losses)) and losses[-1] < losses[0]
    for k, host in enumerate(hosts):
        log = (layouts[k].base / "job.log").read_text()
        assert f"host {host}: {len(shares[host])} file(s) of the sharded train channel" in log
        left_out = metadata["interactions"] - metadata["examples_per_epoch"]  # 3 files to 2: uneven shares
        assert f"an epoch leaves out {left_out} of the {metadata['interactions']} interactions" in log

    # every user's served vector: the user tower on the history one process streaming it all finds
    stream, summary = open_stream(channel / "interactions.parquet", hp)
    serving, _ = serving_histories(stream)
    items = np.array(["", *summary.item_vocab], dtype=object)
    history = np.where(serving[1:] == PAD, "", items[np.maximum(serving[1:], 0)])
    model = tf.saved_model.load(str(layouts[0].model_dir))
    assert [u.decode() for u in model.user_id_list.numpy()] == summary.user_vocab
    users = tf.constant(summary.user_vocab)
    expected = model.user_tower(user_id=users, history=tf.constant(history.astype(str)))["vector"].numpy()
    served = model.user_vectors.numpy()[1:]  # row k + 1 is user_id_list[k]
    assert (serving[1:] != PAD).any(axis=1).mean() > 0.5, "most users have a history"
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)
