"""Fresh serving: what is published represents each user by everything up to the snapshot.

The training job never sees a snapshot's holdout (each user's latest interaction), so that
the gate's evaluation on it is honest. Served as it is, that model would be one interaction
stale for every user on the day it is published. Before publication its user table is
therefore recomputed from each user's latest ``history_length`` interactions of train
*and* holdout, through the SavedModel's own ``user_tower`` signature: the trained weights,
the item table and the signatures are unchanged, only the user-side vectors move. The cost
is one forward pass of the user tower per user (seconds), against a whole retraining.

The evaluated artifact (the job's ``model.tar.gz``) and the refreshed one are different
files; the registry's lineage names both (:func:`recflow.publishing.publish.publish_training_job`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recflow.core.errors import RegistryError
from recflow_ml.rows import pin_order

log = logging.getLogger(__name__)

SERVING_FILE = "serving.json"
"""Written beside the refreshed SavedModel: which histories its user table was computed from."""
SIGNATURES = ("score", "recommend", "user_tower")
BATCH = 4096


@dataclass(frozen=True)
class RefreshReport:
    users: int
    """Users of the model's vocabulary whose vectors were recomputed."""
    changed: int
    """Of those, users whose vector moved (their latest items differ from what the table had)."""
    interactions: int
    history_length: int
    seconds: float
    sources: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def read_interactions(paths: Sequence[Path]) -> pa.Table:
    """user_id, pin_id, event_ts of the given interaction files, concatenated."""
    tables = [pq.read_table(p, columns=["user_id", "pin_id", "event_ts"]) for p in paths]
    return pa.concat_tables([t.cast(tables[0].schema) for t in tables]) if tables else pa.table({})


def latest_histories(interactions: pa.Table, length: int) -> dict[str, list[str]]:
    """Each user's latest ``length`` pins, oldest first: ordered by ``event_ts`` (nulls first),
    ties in ``pin_order``, exactly as the training job orders a user's interactions."""
    users = [str(u) for u in interactions.column("user_id").to_pylist()]
    pins = [str(p) for p in interactions.column("pin_id").to_pylist()]
    column = interactions.column("event_ts")
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
    stamps = np.asarray(column.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    by_user: dict[str, list[tuple[int, str]]] = {}
    for user, pin, ts in zip(users, pins, stamps.tolist(), strict=True):
        by_user.setdefault(user, []).append((ts, pin))
    return {
        user: [pin for _, pin in sorted(events, key=lambda e: (e[0], *pin_order(e[1])))[-length:]]
        for user, events in by_user.items()
    }


def _padded(history: list[str], length: int) -> list[str]:
    return [""] * (length - len(history)) + history


def has_user_tower(model_dir: Path) -> bool:
    """Whether the SavedModel can recompute its user vectors (exported with ``user_tower``)."""
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow takes seconds to import; only the scoring path needs it)

    return "user_tower" in tf.saved_model.load(str(model_dir)).signatures


def refresh_user_vectors(
    model_dir: Path, interaction_files: Sequence[Path], out: Path, sources: Sequence[str] = ()
) -> RefreshReport:
    """Write to ``out`` the SavedModel of ``model_dir`` with every known user's vector recomputed
    from their latest interactions in ``interaction_files`` (train and holdout).

    ``sources`` names those files in the report (their URIs). Files beside the SavedModel
    (``metadata.json``) are copied; :data:`SERVING_FILE` records the refresh.
    """
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow takes seconds to import; only the scoring path needs it)

    started = time.monotonic()
    loaded = tf.saved_model.load(str(model_dir))
    missing = [s for s in SIGNATURES if s not in loaded.signatures]
    if missing:
        raise RegistryError(
            f"{model_dir} has no {missing} signature(s): it was exported before fresh serving; "
            "retrain it with the current training code to publish it"
        )
    length = int(loaded.history_length.numpy())
    vocab = [u.decode() for u in loaded.user_id_list.numpy()]
    interactions = read_interactions(interaction_files)
    fresh = latest_histories(interactions, length)
    tower = loaded.signatures["user_tower"]
    table = loaded.user_vectors.numpy()
    before = table.copy()
    for start in range(0, len(vocab), BATCH):
        users = vocab[start : start + BATCH]
        histories = [_padded(fresh.get(u, []), length) for u in users]
        vectors = tower(user_id=tf.constant(users), history=tf.constant(histories))["vector"].numpy()
        table[start + 1 : start + 1 + len(users)] = vectors  # row 0 is the OOV user
    loaded.user_vectors.assign(table)
    changed = int(np.sum(np.any(np.abs(table - before) > 1e-6, axis=1)))
    if out.exists():
        shutil.rmtree(out)
    tf.saved_model.save(loaded, str(out), signatures={s: loaded.signatures[s] for s in SIGNATURES})
    for extra in model_dir.iterdir():
        if extra.is_file() and not (out / extra.name).exists():
            shutil.copy2(extra, out / extra.name)
    report = RefreshReport(
        users=len(vocab),
        changed=changed,
        interactions=interactions.num_rows,
        history_length=length,
        seconds=round(time.monotonic() - started, 2),
        sources=tuple(sources) or tuple(str(p) for p in interaction_files),
    )
    (out / SERVING_FILE).write_text(json.dumps(report.as_dict(), indent=2))
    log.info(
        "refreshed the user vectors of %d users (%d changed) from %d interactions in %.1fs",
        report.users,
        report.changed,
        report.interactions,
        report.seconds,
    )
    return report
