"""Content-addressed snapshots of the training mart in the artifact store.

A snapshot is the ``train`` and ``holdout`` rows of ``analytics.training_interactions`` and the
side features of pins and users (from ``dim_pins`` / ``dim_users``), each sorted and streamed from
the engine into Parquet (never held whole in this process) under ``snapshots/<id>/``: the ``train``
channel holds ``interactions.parquet`` (with each pair's ``history``, in row groups of
``ROW_GROUP_ROWS``: the units a streaming job shuffles), ``pins.parquet`` and ``users.parquet``, the
``holdout`` channel ``interactions.parquet``, and ``catalogue/pins.parquet`` lists every pin for
evaluation. The id is a SHA-256 of the rows themselves (Arrow IPC bytes of the sorted tables, in
fixed chunks), so the same data always gives the same id, and a snapshot is written once and never
overwritten: a rerun on unchanged data finds it and reuses it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recflow.core.artifacts import file_uri_path, join, store_for
from recflow.core.config import Settings
from recflow.warehouse import ANALYTICS_SCHEMA, Warehouse, connect

log = logging.getLogger(__name__)

INTERACTION_COLUMNS = ("user_id", "pin_id", "weight", "n_positive_events", "event_ts")
HISTORY_COLUMNS = ("history", "n_earlier")
"""What the train channel adds: each example's earlier pins, from the mart (the trainer streams them)."""
PIN_COLUMNS = ("pin_id",)
ROW_GROUP_ROWS = 65_536
"""Rows per Parquet row group of the tables this process writes: a streaming training job reads,
shuffles and shards a channel by row group, so a group bounds what it holds of the file at once."""


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    uri: str
    train_uri: str
    holdout_uri: str
    pins_uri: str
    rows: dict[str, int]
    dbt_invocation_id: str
    created_at: str

    def to_xcom(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, payload: dict[str, object]) -> Snapshot:
        return cls(**payload)  # type: ignore[arg-type]


def _chunks(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """``batches`` regrouped into batches of exactly ``rows`` rows (the last one shorter), each in fresh
    buffers: the same rows give the same bytes, however the engine or the file batched them."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield _fresh(table.slice(0, rows))
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield _fresh(pa.Table.from_batches(pending))


def _fresh(table: pa.Table) -> pa.RecordBatch:
    """``table`` as one record batch in buffers of its own (a slice's IPC bytes depend on its parent)."""
    (batch,) = table.take(pa.array(range(table.num_rows), pa.int64())).combine_chunks().to_batches()
    return batch


def content_id(files: dict[str, Path]) -> str:
    """The snapshot's id: a SHA-256 over each table's name, schema (without the writer's metadata) and
    rows, in chunks of ``ROW_GROUP_ROWS`` rows as Arrow IPC, read back from its Parquet file batch by
    batch, so no table is ever held whole."""
    digest = hashlib.sha256()
    for name in sorted(files):
        parquet = pq.ParquetFile(files[name])
        digest.update(name.encode())
        digest.update(parquet.schema_arrow.remove_metadata().serialize().to_pybytes())
        for chunk in _chunks(parquet.iter_batches(batch_size=ROW_GROUP_ROWS), ROW_GROUP_ROWS):
            digest.update(chunk.serialize().to_pybytes())
    return digest.hexdigest()[:20]


def _queries(by_id: Callable[[str], str]) -> dict[str, str]:
    """Each table of a snapshot as a sorted query over the marts (``by_id``: the engine's code-point order,
    so that every engine writes the same rows in the same order)."""
    columns = {"train": INTERACTION_COLUMNS + HISTORY_COLUMNS, "holdout": INTERACTION_COLUMNS}
    return {
        **{
            split: f"select {', '.join(cols)} from {ANALYTICS_SCHEMA}.training_interactions "
            f"where split = '{split}' order by {by_id('user_id')}, {by_id('pin_id')}"
            for split, cols in columns.items()
        },
        "pins": f"select pin_id from {ANALYTICS_SCHEMA}.dim_pins order by {by_id('pin_id')}",
        "pin_features": f"select pin_id, topics from {ANALYTICS_SCHEMA}.dim_pins order by {by_id('pin_id')}",
        "user_features": f"select user_id, country, age, gender, occupation from {ANALYTICS_SCHEMA}.dim_users "
        f"order by {by_id('user_id')}",
    }


def _invocation(con: Warehouse) -> str:
    row = con.execute(
        f"select max(dbt_invocation_id) from {ANALYTICS_SCHEMA}.training_interactions"
    ).fetchone()
    return str(row[0]) if row and row[0] else "unknown"


def _write_table(con: Warehouse, settings: Settings, folder: Path, name: str, query: str) -> tuple[Path, int]:
    """Table ``name`` as ``folder/<name>.parquet`` and its row count, never whole in this process.

    On an engine that writes files itself (Spark) and an artifact root on a filesystem it shares, the
    engine writes one sorted file and no row passes through here. Elsewhere the engine's batches are
    written as they arrive, in row groups of ``ROW_GROUP_ROWS``."""
    path = folder / f"{name}.parquet"
    if con.reads_files and settings.artifacts_uri.startswith("file://"):
        out = folder / name
        con.write_parquet(out, query)
        (part,) = sorted(out.glob("part-*.parquet"))
        part.rename(path)
        return path, pq.ParquetFile(path).metadata.num_rows
    batches = con.fetch_batches(query)
    first = next(batches)
    rows = 0
    with pq.ParquetWriter(path, first.schema) as writer:
        for chunk in _chunks(itertools.chain([first], batches), ROW_GROUP_ROWS):
            writer.write_batch(chunk, row_group_size=ROW_GROUP_ROWS)
            rows += chunk.num_rows
    return path, rows


def read_mart(settings: Settings, folder: Path) -> tuple[dict[str, tuple[Path, int]], str]:
    """The snapshot's tables written under ``folder`` (each: its file and row count), and the dbt
    invocation that built the marts."""
    with connect(settings, read_only=True) as con:
        tables = {
            name: _write_table(con, settings, folder, name, query)
            for name, query in _queries(con.dialect.bytewise).items()
        }
        invocation = _invocation(con)
    if tables["train"][1] == 0:
        raise ValueError(
            f"{ANALYTICS_SCHEMA}.training_interactions has no train rows: nothing to train on "
            "(did the recsys_warehouse DAG run for any day with engagements?)"
        )
    return tables, invocation


def take_snapshot(settings: Settings) -> Snapshot:
    with tempfile.TemporaryDirectory(dir=_scratch(settings)) as tmp:
        return _take(settings, Path(tmp))


def _scratch(settings: Settings) -> Path | None:
    """Where the engine writes the tables before they are published: beside the artifact root when it is
    a local folder (a rename, not a copy, on the same filesystem), else the system's temporary folder."""
    if not settings.artifacts_uri.startswith("file://"):
        return None
    root = file_uri_path(settings.artifacts_uri)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _take(settings: Settings, tmp: Path) -> Snapshot:
    tables, invocation_id = read_mart(settings, tmp)
    snapshot_id = content_id({name: path for name, (path, _) in tables.items()})
    base = join(settings.artifacts_uri, "snapshots", snapshot_id)
    uris = {
        "train": join(base, "train", "interactions.parquet"),
        "holdout": join(base, "holdout", "interactions.parquet"),
        "pins": join(base, "catalogue", "pins.parquet"),
        "pin_features": join(base, "train", "pins.parquet"),
        "user_features": join(base, "train", "users.parquet"),
    }
    manifest_uri = join(base, "manifest.json")
    store = store_for(settings, base)
    rows = {name: count for name, (_, count) in tables.items()}
    if store.exists(manifest_uri):
        manifest = json.loads(store.get_bytes(manifest_uri))
        log.info("snapshot %s already exists (%s): reusing it, nothing written", snapshot_id, base)
        return Snapshot.from_xcom(manifest)
    for name, (local, _) in tables.items():
        store.put_file(local, uris[name])
    snapshot = Snapshot(
        snapshot_id=snapshot_id,
        uri=base,
        train_uri=uris["train"],
        holdout_uri=uris["holdout"],
        pins_uri=uris["pins"],
        rows=rows,
        dbt_invocation_id=invocation_id,
        created_at=datetime.now(UTC).isoformat(),
    )
    store.put_bytes(json.dumps(snapshot.to_xcom(), indent=2).encode(), manifest_uri)
    log.info("snapshot %s written to %s: %s", snapshot_id, base, rows)
    return snapshot


def channel_prefix(file_uri: str) -> str:
    """The ``S3Prefix`` of a channel: the folder holding the file."""
    return file_uri.rsplit("/", 1)[0]
