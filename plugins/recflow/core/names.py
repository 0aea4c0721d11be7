"""The names several parts agree on: the two DAG ids, the asset between them, the task ids named
outside their DAG (the runbooks' defaults, the demo's read-back).

It imports nothing: the DAG files, the failure callback and the on-call code all read it. The
tasks of ``recflow.airflow.tasks`` take their ids from their function names, which match these.
"""

from __future__ import annotations

from typing import Final

WAREHOUSE_DAG: Final = "recsys_warehouse"
TRAINING_DAG: Final = "recsys_train_and_publish"
TRAINING_ASSET: Final = "training_interactions"
"""The asset ``recsys_warehouse`` updates and ``recsys_train_and_publish`` is scheduled on."""

WAIT_FOR_LANDING: Final = "wait_for_landing"
TRANSFORM: Final = "transform"
"""The task group of the dbt models (``transform.<dbt node>``)."""
SNAPSHOT: Final = "snapshot"
TRAIN: Final = "train"
EVALUATE: Final = "evaluate"
GATE: Final = "gate"
PUBLISH: Final = "publish"
