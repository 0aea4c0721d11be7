"""Ids as model rows, and histories as fixed-width windows of rows: what both input paths of the
trainer (the channel held whole, ``recflow_ml.model``, and streamed, ``recflow_ml.stream``) share.
No TensorFlow here."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PAD = -1
"""History slot with no item (a user with fewer than ``history_length`` earlier items)."""

Ids: TypeAlias = np.ndarray | pa.Array | pa.ChunkedArray
"""Raw ids: a NumPy array (strings, or anything ``str`` turns into the vocabulary's ids) or an Arrow
array, which is mapped to rows without ever becoming Python objects."""


def pin_order(pin: str) -> tuple[int, str]:
    """The sort key of ids that tie on time: length, then code point, so digit-only ids (MovieLens)
    follow numeric order (``"9"`` before ``"10"``). The warehouse's ``pin_order`` macro is the same
    rule: the holdout is a user's last pair in it, and training histories follow it."""
    return len(pin), pin


def order_ranks(ids: list[str]) -> np.ndarray:
    """Each id's place among ``ids`` in :func:`pin_order` (int64, one per id): what orders the
    examples that tie on time, whatever order the vocabulary itself is in."""
    ranks = np.empty(len(ids), np.int64)
    ranks[sorted(range(len(ids)), key=lambda k: pin_order(ids[k]))] = np.arange(len(ids))
    return ranks


def vocabulary_rows(ids: Ids, vocab: pa.Array) -> np.ndarray:
    """Each id's 1-based row in ``vocab`` (0: not in it) as int32, through Arrow's hash lookup."""
    if not isinstance(ids, pa.Array | pa.ChunkedArray):
        ids = pa.array(np.asarray(ids).astype(str))
    if not pa.types.is_string(ids.type):
        ids = pc.cast(ids, pa.string())
    index = pc.index_in(ids, value_set=vocab).fill_null(-1)
    return (np.asarray(index) + 1).astype(np.int32)


def histories(sorted_items: np.ndarray, slot: np.ndarray, rank: np.ndarray, n_hist: int) -> np.ndarray:
    """[len(slot), n_hist] histories, oldest first: ``sorted_items[slot - n_hist : slot]``, with the
    slots before the first of the user's ``rank`` earlier items set to ``PAD``."""
    back = np.arange(n_hist, 0, -1)  # how many positions before ``slot`` each history slot lies
    valid = back[np.newaxis, :] <= rank[:, np.newaxis]
    where = np.maximum(slot[:, np.newaxis] - back[np.newaxis, :], 0)
    return np.where(valid, sorted_items[where], PAD).astype(np.int32)


def positive_weights(column: pa.Array | pa.ChunkedArray, users: Ids, items: Ids, where: str) -> np.ndarray:
    """The ``weight`` column as float32, every value a positive number; else ``ValueError`` naming
    ``where`` (the file, or its row group), the first offending row, its ids and the count."""
    weights = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(weights) | (weights <= 0))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{where}: column 'weight' must be a positive number; row {i} "
            f"(user_id={users[i].as_py()!r}, pin_id={items[i].as_py()!r}) has {float(weights[i])!r} "
            f"({len(bad)} such rows)"
        )
    return weights.astype(np.float32)


def string_ids(table: pa.Table, name: str, where: str) -> pa.ChunkedArray:
    """Column ``name`` of ``table`` as string ids; ``ValueError`` naming ``where`` (the file, or its
    row group) if any is null: an example without its user or pin cannot be trained on."""
    column = table.column(name)
    if column.null_count:
        raise ValueError(f"{where}: column {name!r} has {column.null_count} null id(s)")
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
