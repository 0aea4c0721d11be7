"""recsys_train_and_publish: wiring only; its doc (and the on-call runbook) is docs/runbooks/recsys_train_and_publish.md."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from recflow.airflow import tasks
from recflow.airflow.assets import TRAINING_MART
from recflow.airflow.defaults import DEFAULT_ARGS, Tag
from recflow.airflow.params import TRAIN_PARAMS
from recflow.airflow.training import TrainingJobOperator
from recflow.core.names import TRAIN, TRAINING_DAG
from recflow.oncall import runbooks

with DAG(
    dag_id=TRAINING_DAG,
    schedule=TRAINING_MART,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=TRAIN_PARAMS,
    tags=[Tag.RECSYS, Tag.TRAINING, Tag.REGISTRY],
    doc_md=runbooks.dag_doc(TRAINING_DAG),
):
    frozen = tasks.snapshot()
    # retries re-attach to the same job (or resume the next attempt from its checkpoints)
    trained = TrainingJobOperator(task_id=TRAIN, snapshot=frozen, retries=2).output
    evaluated = tasks.evaluate(frozen, trained)
    decision = tasks.gate(evaluated)
    tasks.publish(frozen, trained, evaluated, decision)
