"""Content-addressed snapshots of the training mart in the artifact store.

A snapshot is the ``train`` and ``holdout`` rows of
``analytics.training_interactions`` and the side features of pins and users
(from ``dim_pins`` / ``dim_users``), each sorted and written as Parquet under
``snapshots/<id>/``: the ``train`` channel holds ``interactions.parquet`` (with each pair's
``history``, in row groups of ``ROW_GROUP_ROWS``: the units a streaming job shuffles and shards),
``pins.parquet`` and ``users.parquet``, the ``holdout`` channel
``interactions.parquet``, and ``catalogue/pins.parquet`` lists every pin for
evaluation. The id is a SHA-256 of the rows
themselves (Arrow IPC bytes of the sorted tables), so the same data always
gives the same id, and a snapshot is written once and never overwritten: a
rerun on unchanged data finds it and reuses it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
from collections.abc import Callable
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


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def content_id(tables: dict[str, pa.Table]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tables):
        digest.update(name.encode())
        digest.update(_ipc_bytes(tables[name]))
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


def _written_by_the_engine(con: Warehouse, settings: Settings, folder: Path) -> dict[str, pa.Table] | None:
    """On an engine that writes files itself (Spark) and an artifact root on a filesystem it shares:
    each table written by the engine as one sorted Parquet file under ``folder`` (no row passes through
    this process), read back here as Arrow (memory maps; for the content id). ``None`` elsewhere."""
    if not con.reads_files or not settings.artifacts_uri.startswith("file://"):
        return None
    tables = {}
    for name, query in _queries(con.dialect.bytewise).items():
        out = folder / name
        con.write_parquet(out, query)
        (part,) = sorted(out.glob("part-*.parquet"))
        tables[name] = pq.read_table(part, memory_map=True)
        part.rename(folder / f"{name}.parquet")
    return tables


def read_mart(settings: Settings, folder: Path | None = None) -> tuple[dict[str, pa.Table], str]:
    """The snapshot's tables and the dbt invocation that built the marts (written by the engine under
    ``folder`` where it writes files itself, else fetched)."""
    with connect(settings, read_only=True) as con:
        written = None if folder is None else _written_by_the_engine(con, settings, folder)
        tables = written or {
            name: con.fetch_arrow(query) for name, query in _queries(con.dialect.bytewise).items()
        }
        invocation = _invocation(con)
    if tables["train"].num_rows == 0:
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
    snapshot_id = content_id(tables)
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
    rows = {name: table.num_rows for name, table in tables.items()}
    if store.exists(manifest_uri):
        manifest = json.loads(store.get_bytes(manifest_uri))
        log.info("snapshot %s already exists (%s): reusing it, nothing written", snapshot_id, base)
        return Snapshot.from_xcom(manifest)
    for name, table in tables.items():
        local = tmp / f"{name}.parquet"
        if not local.exists():  # the engine wrote none: write what was fetched
            pq.write_table(table, local, row_group_size=ROW_GROUP_ROWS)
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
