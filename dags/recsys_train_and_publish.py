"""
# recsys_train_and_publish

Runs when `recsys_warehouse` updates the asset `training_interactions` (and by hand,
with validated params). Freezes the training mart, trains the two-tower model as a
SageMaker-style training job, evaluates it against the current champion on the same
holdout, and publishes it to the model registry (alias `champion`) only if it passes
the gate.

| task | what it does | when it fails |
|---|---|---|
| `snapshot` | content-addressed Parquet snapshot of the mart in the artifact store | the mart is missing or empty: check `recsys_warehouse` |
| `train` | launches, or re-attaches to, training job `recsys-train-<snapshot>-<code>-<hps>`; streams its log | the job's `FailureReason` is the error; the job log is in the task log |
| `evaluate` | `hr@10`, `ndcg@10` (vs 99 seeded negatives) and `recall@50`, challenger and champion | model or registry unreadable |
| `gate` | floors + "not worse than champion beyond tolerance" | never fails: it decides |
| `publish` | new registry version with metrics and lineage, `champion` moves to it | *skipped* (run stays green) when the gate says "not promoted: ..." or `dry_run` |

**On call:** a skipped `publish` is not an incident: its log says why the champion
stayed. Clearing `train` never starts a second job for the same snapshot and code: it
takes the completed job's result or follows the running one. Trigger by hand with
params (JSON schema-validated, e.g. `{"epochs": 5, "dry_run": true}`). Full runbook:
`docs/runbooks.md`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from recflow.airflow import tasks
from recflow.airflow.assets import TRAINING_MART
from recflow.airflow.defaults import DEFAULT_ARGS, Tag
from recflow.airflow.params import TRAIN_PARAMS

with DAG(
    dag_id="recsys_train_and_publish",
    schedule=TRAINING_MART,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=TRAIN_PARAMS,
    tags=[Tag.RECSYS, Tag.TRAINING, Tag.REGISTRY],
    doc_md=__doc__,
):
    frozen = tasks.snapshot()
    trained = tasks.train(frozen)
    evaluated = tasks.evaluate(frozen, trained)
    decision = tasks.gate(evaluated)
    tasks.publish(frozen, trained, evaluated, decision)
