"""The leave-last-out split of MovieLens 100K, as ``../shared/data/README.md`` defines it.

Each user's latest rating is the holdout positive (ties in timestamp broken by
the larger item id), the one before it the validation positive (carved from the
training rows only, for choosing hyperparameters), the rest train. This is the
same rule the ``training_interactions`` dbt model applies in the pipeline, so
the benchmark and the registered model are scored on the same holdout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from recflow.producers.movielens import read_ratings


@dataclass(frozen=True)
class Split:
    train: pa.Table
    validation: pa.Table
    holdout: pa.Table


def _latest_per_user(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(the latest row of each user with >= 2 rows, everything else)."""
    rows = table.to_pylist()
    by_user: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_user.setdefault(str(row["user_id"]), []).append(row)
    latest, rest = [], []
    for user_rows in by_user.values():
        ordered = sorted(user_rows, key=lambda r: (r["ts"], int(str(r["item_id"]))), reverse=True)
        if len(ordered) >= 2:
            latest.append(ordered[0])
            rest.extend(ordered[1:])
        else:
            rest.extend(ordered)
    return pa.Table.from_pylist(latest, schema=table.schema), pa.Table.from_pylist(rest, schema=table.schema)


def leave_last_out(data_dir: Path) -> Split:
    ratings = read_ratings(data_dir)
    holdout, remaining = _latest_per_user(ratings)
    validation, train = _latest_per_user(remaining)
    return Split(train=train, validation=validation, holdout=holdout)
