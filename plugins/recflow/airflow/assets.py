"""Assets shared by producer and consumer DAGs: one object, the same on both sides."""

from __future__ import annotations

from airflow.sdk import Asset

TRAINING_MART = Asset(
    name="training_interactions",
    uri="warehouse://analytics/training_interactions",
    group="recsys",
    extra={"owner": "recsys", "produced_by": "recsys_warehouse"},
)
