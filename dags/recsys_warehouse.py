"""
# recsys_warehouse

Daily: land one day of engagement events, check them, transform them with dbt,
check the training mart. One run = one data interval `[D, D+1)` (UTC) and
processes landing partition `ds=D`. Its last task updates the asset
`training_interactions`, which schedules **recsys_train_and_publish**.

| task | what it does | when it fails |
|---|---|---|
| `wait_for_landing` | waits (reschedule mode, every 2 min) for `landing/events/ds=D/` | after 6 h without the partition: the upstream export is late |
| `land` | replaces `raw.events` rows of `ds=D` with `landing/events/ds=D/*.parquet`; refreshes `raw.pins`, `raw.users` | the partition is missing or breaks `docs/data-contract.md` (file, column and type are named) |
| `check_raw` | Great Expectations suite `raw_events` on `ds=D` | a named expectation failed; offending rows are kept in `quality.rejected_events`; **dbt did not run** |
| `transform.*` | one task per dbt node (`dbt build`: the model and its tests) | the failing model or test is the task's name; its SQL is in the log |
| `check_marts` | GX suite `training_marts` on `analytics.training_interactions` | a split/lineage invariant broke; users/pins are named; **training did not start** |

**On call:** the failing task's log ends with an `ON-CALL:` line (what, why, what to
do). Every task is idempotent for its interval: after fixing the cause, *clear* the
failed task (and downstream). To reprocess days:
`recflow airflow backfill create --dag-id recsys_warehouse --from-date D1 --to-date D2 --reprocess-behavior completed`.
A one-off historical load runs in one manual run with params
`{"reload_from": "1997-09-20", "reload_to": "1998-04-22"}` (every day in the range is
landed and checked; what `recflow benchmark movielens` does). Full runbook: `docs/runbooks.md`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable

from recflow.airflow import tasks
from recflow.airflow.dbt import dbt_task_group
from recflow.airflow.defaults import DEFAULT_ARGS, Tag
from recflow.airflow.params import WAREHOUSE_PARAMS
from recflow.config import Settings

with DAG(
    dag_id="recsys_warehouse",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # runs only wait (sensor) or queue for the one-slot warehouse pool; a day waiting for late
    # data must not block a backfill or a reload
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    params=WAREHOUSE_PARAMS,
    tags=[Tag.RECSYS, Tag.WAREHOUSE, Tag.DBT, Tag.DATA_QUALITY],
    doc_md=__doc__,
):
    (
        tasks.wait_for_landing()
        >> tasks.land()
        >> tasks.audit()
        >> dbt_task_group(Settings.from_env())
        >> tasks.check_marts()
    )
