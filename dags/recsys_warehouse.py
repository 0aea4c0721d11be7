"""recsys_warehouse: wiring only; its doc (and the on-call runbook) is docs/runbooks/recsys_warehouse.md."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable

from recflow.airflow import tasks
from recflow.airflow.dbt import dbt_task_group
from recflow.airflow.defaults import DEFAULT_ARGS, Tag
from recflow.airflow.params import WAREHOUSE_PARAMS
from recflow.core.names import WAREHOUSE_DAG
from recflow.oncall import runbooks

with DAG(
    dag_id=WAREHOUSE_DAG,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # runs only wait (sensor) or queue for the one-slot warehouse pool; a day waiting for late
    # data must not block a backfill or a reload
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    params=WAREHOUSE_PARAMS,
    tags=[Tag.RECSYS, Tag.WAREHOUSE, Tag.DBT, Tag.DATA_QUALITY],
    doc_md=runbooks.dag_doc(WAREHOUSE_DAG),
):
    transform = dbt_task_group()
    check_marts = tasks.check_marts()
    tasks.wait_for_landing() >> tasks.land() >> tasks.audit() >> transform >> check_marts
