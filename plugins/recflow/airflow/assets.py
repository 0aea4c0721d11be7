"""Assets shared by producer and consumer DAGs: one object, the same on both sides."""

from __future__ import annotations

from airflow.sdk import Asset
from recflow.core.names import TRAINING_ASSET, WAREHOUSE_DAG

TRAINING_MART = Asset(
    name=TRAINING_ASSET,
    uri=f"warehouse://analytics/{TRAINING_ASSET}",
    group="recsys",
    extra={"owner": "recsys", "produced_by": WAREHOUSE_DAG},
)
