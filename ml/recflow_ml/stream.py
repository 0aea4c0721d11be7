"""The train channel streamed: Parquet row groups read in batches, never the channel whole.

A streamed channel's ``interactions.parquet`` (one file, or a directory of Parquet shards) carries
each example's ``history`` (its user's earlier pins, oldest first) and ``n_earlier`` (how many earlier
pins the user had), computed in the warehouse (``training_interactions``), so no state per user
crosses the data. What the job holds whole is catalogue-sized: the vocabularies, the label counts
and each user's serving history.

**Order.** An epoch reads its host's row groups in an order drawn from (seed, epoch), and shuffles
them through a buffer of ``shuffle_buffer`` examples drawn from the same seed: whenever the buffer
holds that many, it is permuted and its full batches go out. The stream is therefore a function of
(seed, epoch) and the channel alone, so a job resumed ``k`` batches into an epoch skips exactly the
``k`` batches an uninterrupted job trained on.

**Hosts.** In a job of several hosts, each host streams only its own share of the channel's row
groups: with a ``ShardedByS3Key`` channel, every row group of the files the platform gave it; with a
``FullyReplicated`` one, the row groups dealt to it in turn. Each streams batches of its share of
the global batch, and what must be global is agreed across hosts before training
(``recflow_ml.distributed``): the vocabularies and the weights' mean (``merge_summaries``), the
label counts and the serving histories (``ServingPass``), each host's rows of a global batch
(``batch_shares``: in proportion to the rows it holds) and the steps of an epoch (the fewest full
local batches any host has). Each host orders its own row groups, from (seed, epoch, host).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recflow_ml.hyperparameters import Hyperparameters
from recflow_ml.rows import PAD, histories, positive_weights, string_ids, vocabulary_rows

log = logging.getLogger(__name__)

STREAM_COLUMNS = ("user_id", "pin_id", "weight", "history", "n_earlier")
VOCABULARY_MERGE_IDS = 4_000_000
"""Distinct ids gathered from row groups before they are merged into the vocabulary (bounds the pass)."""


class Batch(NamedTuple):
    """A batch of examples as model rows: users [B], items [B], weights [B], histories [B, N]."""

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    history: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def take(self, rows: np.ndarray | slice) -> Batch:
        return Batch(self.users[rows], self.items[rows], self.weights[rows], self.history[rows])


@dataclass(frozen=True)
class RowGroup:
    """One row group of one Parquet file of the channel: the unit a stream orders and shards."""

    path: Path
    index: int
    rows: int


def channel_files(path: Path) -> list[Path]:
    """The Parquet files of ``path`` (a file, or a directory of shards), in name order."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{path} holds no Parquet file")
    return files


def row_groups(path: Path) -> list[RowGroup]:
    """Every row group of the channel's files, in file order then row group order."""
    groups = []
    for file in channel_files(path):
        metadata = pq.ParquetFile(file).metadata
        groups += [RowGroup(file, i, metadata.row_group(i).num_rows) for i in range(metadata.num_row_groups)]
    return groups


def _read(group: RowGroup, columns: Sequence[str]) -> pa.Table:
    return pq.ParquetFile(group.path).read_row_group(group.index, columns=list(columns))


def _check_columns(path: Path) -> None:
    names = list(pq.ParquetDataset(path).schema.names)
    missing = [c for c in STREAM_COLUMNS if c not in names]
    if missing:
        raise ValueError(
            f"{path}: a streamed channel needs column(s) {missing} (found {names}); the histories come "
            "from the warehouse's training_interactions (snapshots taken before it carried them cannot "
            "be streamed: train them whole, or take a new snapshot)"
        )


@dataclass
class ChannelSummary:
    """What a pass over the channel learns, all of it catalogue-sized: the vocabularies (sorted by
    code point, as the in-memory path sorts them), the examples and the weights' mean."""

    user_vocab: list[str]
    item_vocab: list[str]
    examples: int
    weight_mean: float

    def to_bytes(self) -> bytes:
        """The summary as one Arrow IPC stream (what a host sends the others: ``from_bytes``)."""
        table = pa.table(
            {
                "user_vocab": pa.array([self.user_vocab], pa.list_(pa.string())),
                "item_vocab": pa.array([self.item_vocab], pa.list_(pa.string())),
                "examples": pa.array([self.examples], pa.int64()),
                "weight_mean": pa.array([self.weight_mean], pa.float64()),
            }
        )
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue()

    @classmethod
    def from_bytes(cls, payload: bytes) -> ChannelSummary:
        (row,) = pa.ipc.open_stream(payload).read_all().to_pylist()
        return cls(row["user_vocab"], row["item_vocab"], row["examples"], row["weight_mean"])


def merge_summaries(parts: Sequence[ChannelSummary]) -> ChannelSummary:
    """The summary of the channel whose shards ``parts`` summarise (one per host): the union of the
    vocabularies, sorted as ``summarise`` sorts them, and the weights' mean over every example."""
    examples = sum(p.examples for p in parts)
    if not examples:
        raise ValueError("the train channel holds no interactions: nothing to learn from")

    def vocab(vocabs: list[list[str]]) -> list[str]:
        return _sorted(_merge([pa.array(v, pa.string()) for v in vocabs]))

    return ChannelSummary(
        vocab([p.user_vocab for p in parts]),
        vocab([p.item_vocab for p in parts]),
        examples,
        sum(p.weight_mean * p.examples for p in parts) / examples,
    )


def _merge(parts: list[pa.Array]) -> pa.Array:
    return pc.unique(pa.chunked_array(parts, pa.string()).combine_chunks())


def _sorted(distinct: pa.Array) -> list[str]:
    """Distinct ids sorted by code point (as ``sorted`` orders Python strings)."""
    return [str(v) for v in pc.take(distinct, pc.sort_indices(distinct)).to_pylist()]


def summarise(
    path: Path, *, groups: Sequence[RowGroup] | None = None, allow_empty: bool = False
) -> ChannelSummary:
    """One pass over ``user_id``, ``pin_id`` and ``weight`` of every row group of ``path`` (or of
    ``groups``, a host's share of them): the vocabularies, the count and the weights' mean. Refuses a
    weight that is not a positive number, naming its row, and (unless ``allow_empty``: a host's
    share, merged with the others') a channel without examples."""
    _check_columns(path)
    users: list[pa.Array] = []
    items: list[pa.Array] = []
    pending = 0
    examples, weight_sum = 0, 0.0
    for group in row_groups(path) if groups is None else groups:
        table = _read(group, ("user_id", "pin_id", "weight"))
        where = f"{group.path} (row group {group.index})"
        u, i = string_ids(table, "user_id", where), string_ids(table, "pin_id", where)
        weights = positive_weights(table.column("weight"), u, i, where)
        users.append(pc.unique(u))
        items.append(pc.unique(i))
        pending += len(users[-1]) + len(items[-1])
        if pending > VOCABULARY_MERGE_IDS:
            users, items, pending = [_merge(users)], [_merge(items)], 0
        examples += table.num_rows
        weight_sum += float(weights.sum(dtype=np.float64))
    if not examples and not allow_empty:
        raise ValueError("the train channel holds no interactions: nothing to learn from")
    return ChannelSummary(
        _sorted(_merge(users)), _sorted(_merge(items)), examples, weight_sum / max(examples, 1)
    )


class ExampleStream:
    """The examples of a channel's row groups as model rows, batch by batch (module docstring)."""

    def __init__(
        self,
        groups: Sequence[RowGroup],
        user_vocab: pa.Array,
        item_vocab: pa.Array,
        *,
        history_length: int,
        batch_size: int,
        shuffle_buffer: int,
        seed: int,
        weight_mean: float = 1.0,
        cache_dir: Path | None = None,
        host: int | None = None,
    ) -> None:
        """``cache_dir``: where each row group, once mapped to model rows, is kept (``read``);
        ``host``: this host's index, when it streams its own shard of a channel (its order is its own)."""
        self.groups = list(groups)
        self.cache_dir = cache_dir
        self._keys = {(g.path, g.index): k for k, g in enumerate(self.groups)}
        self.user_vocab = user_vocab
        self.item_vocab = item_vocab
        self.history_length = history_length
        self.batch_size = batch_size
        self.shuffle_buffer = max(shuffle_buffer, batch_size)
        self.seed = seed
        self.host = host
        self.weight_mean = weight_mean
        self.examples = sum(g.rows for g in self.groups)

    @property
    def steps(self) -> int:
        """Batches per epoch (the last one may be short)."""
        return max(1, math.ceil(self.examples / self.batch_size))

    def read(self, group: RowGroup) -> tuple[Batch, np.ndarray]:
        """The examples of ``group`` in file order, and each one's ``n_earlier``.

        Mapping ids to rows costs the most here: Arrow builds a hash table of the whole vocabulary at
        every lookup. With ``cache_dir``, a group read once is kept there as its rows (about
        ``16 + 4 × history_length`` bytes per example, uncompressed NumPy) and read back from there."""
        cached = (
            None
            if self.cache_dir is None
            else self.cache_dir / f"{self._keys[(group.path, group.index)]}.npz"
        )
        if cached is not None and cached.exists():
            with np.load(cached) as kept:
                return Batch(kept["users"], kept["items"], kept["weights"], kept["history"]), kept["earlier"]
        batch, earlier = self._map(group)
        if cached is not None:
            partial = cached.with_suffix(".partial.npz")
            np.savez(partial, **batch._asdict(), earlier=earlier)
            partial.replace(cached)
        return batch, earlier

    def _map(self, group: RowGroup) -> tuple[Batch, np.ndarray]:
        table = _read(group, STREAM_COLUMNS)
        users = vocabulary_rows(table.column("user_id"), self.user_vocab)
        items = vocabulary_rows(table.column("pin_id"), self.item_vocab)
        weights = np.asarray(table.column("weight").to_numpy(zero_copy_only=False), np.float64)
        earlier = np.asarray(table.column("n_earlier").to_numpy(zero_copy_only=False), np.int64)
        lists = table.column("history").combine_chunks()
        if lists.null_count:
            lists = pc.fill_null(lists, pa.scalar([], lists.type))
        offsets = np.asarray(lists.offsets, np.int64)
        lengths = np.diff(offsets)
        wanted = np.minimum(earlier, self.history_length)
        short = np.flatnonzero(lengths < wanted)
        if len(short):
            r = int(short[0])
            raise ValueError(
                f"{group.path} (row group {group.index}): row {r} (user_id="
                f"{table.column('user_id')[r].as_py()!r}) has {int(earlier[r])} earlier pins but its "
                f"history holds {int(lengths[r])}: the snapshot's history window is shorter than "
                f"history_length={self.history_length} (raise the dbt var history_window, or lower "
                "history_length)"
            )
        pins = vocabulary_rows(lists.values, self.item_vocab)
        history = histories(pins, offsets[1:], lengths, self.history_length)
        batch = Batch(users, items, (weights / self.weight_mean).astype(np.float32), history)
        return batch, earlier

    def batches(self, epoch: int) -> Iterator[Batch]:
        """The epoch's batches: row groups in an order drawn from (seed, epoch), examples shuffled
        through the buffer with the same generator; every batch full but the last."""
        rng = np.random.default_rng(
            [self.seed, epoch, 2] if self.host is None else [self.seed, epoch, 2, self.host]
        )
        order = rng.permutation(len(self.groups))
        buffer: list[Batch] = []
        held = 0
        for k in order:
            batch, _ = self.read(self.groups[k])
            buffer.append(batch)
            held += len(batch)
            if held >= self.shuffle_buffer:
                rest = yield from self._drain(buffer, rng, keep_remainder=True)
                buffer, held = [rest], len(rest)
        if held:
            yield from self._drain(buffer, rng, keep_remainder=False)

    def _drain(
        self, buffer: list[Batch], rng: np.random.Generator, *, keep_remainder: bool
    ) -> Generator[Batch, None, Batch]:
        """The buffer's examples permuted, as full batches (and, unless ``keep_remainder``, the short
        last one); returns what is kept for the next buffer."""
        pool = Batch(*(np.concatenate(parts) for parts in zip(*buffer, strict=True)))
        pool = pool.take(rng.permutation(len(pool)))
        full = len(pool) - len(pool) % self.batch_size if keep_remainder else len(pool)
        for start in range(0, full, self.batch_size):
            yield pool.take(slice(start, min(start + self.batch_size, full)))
        return pool.take(slice(full, len(pool)))


def open_stream(
    path: Path,
    hp: Hyperparameters,
    cache_dir: Path | None = None,
    *,
    groups: Sequence[RowGroup] | None = None,
    summary: ChannelSummary | None = None,
    batch_size: int | None = None,
    host: int | None = None,
) -> tuple[ExampleStream, ChannelSummary]:
    """The channel at ``path`` summarised (one pass: ``summarise``) and streamed with the job's
    ``hp``: every row group, its vocabularies and weight mean; ``cache_dir`` as ``ExampleStream``'s.

    A host streaming its own share of a channel passes its row groups (``groups``; default: every
    row group of ``path``), the whole channel's ``summary`` (the hosts' merged:
    ``merge_summaries``), ``batch_size`` (its share of the global batch) and ``host``."""
    if summary is None:
        summary = summarise(path, groups=groups)
    stream = ExampleStream(
        row_groups(path) if groups is None else groups,
        pa.array(summary.user_vocab, pa.string()),
        pa.array(summary.item_vocab, pa.string()),
        history_length=hp.history_length,
        batch_size=hp.batch_size if batch_size is None else batch_size,
        shuffle_buffer=hp.shuffle_buffer,
        seed=hp.seed,
        weight_mean=summary.weight_mean,
        cache_dir=cache_dir,
        host=host,
    )
    return stream, summary


def batch_shares(rows_by_host: Mapping[str, int], batch_size: int) -> list[int]:
    """Each host's rows of a global batch of ``batch_size``, in the hosts' order, in proportion to
    the rows it holds (largest remainders; at least one each), so hosts holding different amounts
    run through them in about as many steps.

    Refuses (``ValueError``, naming the hosts) a host holding no rows, or a batch smaller than the
    number of hosts: every host gathers every host's rows, so all refuse alike."""
    rows = list(rows_by_host.values())
    total = sum(rows)
    empty = [host for host, n in rows_by_host.items() if n <= 0]
    if empty:
        raise ValueError(
            f"the train channel gave host(s) {empty} no interactions (rows per host {dict(rows_by_host)}): "
            "write the channel as at least as many files (sharded) or row groups (replicated) as the job "
            "has hosts, or use fewer hosts"
        )
    if batch_size < len(rows):
        raise ValueError(
            f"hyperparameter batch_size={batch_size} is smaller than the job's {len(rows)} hosts "
            f"({list(rows_by_host)}), each of which needs a row of every batch: raise it or use fewer hosts"
        )
    exact = [batch_size * n / total for n in rows]
    sizes = [max(1, math.floor(e)) for e in exact]
    while sum(sizes) < batch_size:  # the largest remainders get the rows left
        k = max(range(len(sizes)), key=lambda h: exact[h] - sizes[h])
        sizes[k] += 1
    while sum(sizes) > batch_size:  # a host raised to one row: the most over-served gives one back
        k = max((h for h in range(len(sizes)) if sizes[h] > 1), key=lambda h: sizes[h] - exact[h])
        sizes[k] -= 1
    return sizes


@dataclass
class ServingPass:
    """What a pass over the stream's row groups gathers: each user row's serving history [n_users + 1,
    N], the ``n_earlier`` of the example it came from (``latest``, -1: the user has none here) and
    the pins' label counts [n_items + 1]."""

    serving: np.ndarray
    latest: np.ndarray
    counts: np.ndarray


def serving_histories(stream: ExampleStream) -> tuple[np.ndarray, np.ndarray]:
    """(each user row's latest ``history_length`` pins, the pins' label counts) over the stream's row
    groups and vocabularies: one more pass, which
    also fills the stream's cache of mapped row groups, if it keeps one.

    A user's serving history is what an example after their last one would carry: their last
    example's history and pin (the example with the largest ``n_earlier``)."""
    found = serving_pass(stream)
    return found.serving, found.counts


def serving_pass(stream: ExampleStream) -> ServingPass:
    """``serving_histories``' pass, with each user's ``latest`` kept: hosts that stream shards of one
    channel merge their passes by it (each user's history comes from the host with their last example)."""
    n_users = len(stream.user_vocab) + 1
    serving = np.full((n_users, stream.history_length), PAD, np.int32)
    latest = np.full(n_users, -1, np.int64)
    counts = np.zeros(len(stream.item_vocab) + 1, np.int64)
    for group in stream.groups:
        batch, earlier = stream.read(group)
        counts += np.bincount(batch.items, minlength=len(counts))
        order = np.lexsort((earlier, batch.users))  # by user, then rank: each user's last is its run's end
        users = batch.users[order]
        last = order[np.r_[users[1:] != users[:-1], True]]
        newer = earlier[last] > latest[batch.users[last]]
        last = last[newer & (batch.users[last] != 0)]
        latest[batch.users[last]] = earlier[last]
        serving[batch.users[last]] = np.concatenate(
            [batch.history[last, 1:], batch.items[last, np.newaxis]], axis=1
        )
    return ServingPass(serving, latest, counts)
