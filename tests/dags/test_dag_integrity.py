"""DAG integrity and policy: every file imports, every DAG follows the house rules."""

from __future__ import annotations

import ast
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pendulum
import pytest

from recflow.airflow.dbt import BUILD_TASK
from recflow.airflow.defaults import OWNER, Tag
from recflow.core.config import Settings, subprocess_env
from recflow.core.errors import ConfigError
from tests.dags.conftest import DAG_FILES, file_id

HEAVY_MODULES = {
    "tensorflow",
    "great_expectations",
    "mlflow",
    "pandas",
    "duckdb",
    "keras",
    "boto3",
    "pyarrow",
    "dbt",
    "torch",
}
HEAVY_AT_PARSE = HEAVY_MODULES - {"boto3"}
"""boto3 is left out: Airflow itself imports it while it makes any asset whose URI scheme is not
``x-``-prefixed (the Amazon provider's S3 URI normaliser); our asset's URI predates that."""


def dags_of(dagbag: Any, path: Path) -> list[Any]:
    return [dag for dag in dagbag.dags.values() if Path(dag.fileloc) == path]


@pytest.mark.parametrize("path", DAG_FILES, ids=file_id)
def test_file_imports_without_errors(dagbag: Any, path: Path) -> None:
    assert str(path) not in dagbag.import_errors, dagbag.import_errors.get(str(path))
    assert dags_of(dagbag, path), f"{file_id(path)} defines no DAG"


@pytest.mark.parametrize("path", DAG_FILES, ids=file_id)
def test_dag_policy(dagbag: Any, path: Path) -> None:
    for dag in dags_of(dagbag, path):
        assert dag.doc_md and dag.doc_md.strip().startswith(f"# {dag.dag_id}"), (
            "doc_md must be the runbook page"
        )
        assert dag.tags and set(dag.tags) <= {t.value for t in Tag}, f"tags {dag.tags} outside {list(Tag)}"
        for task in dag.tasks:
            assert task.owner == OWNER, f"{task.task_id}: owner {task.owner!r}"
            assert task.retries >= 1, f"{task.task_id}: retries={task.retries}"


@pytest.mark.parametrize("path", DAG_FILES, ids=file_id)
def test_dag_file_is_thin(path: Path) -> None:
    """No heavy import, and nothing but imports and the DAG context at module level."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert not {n.split(".")[0] for n in names} & HEAVY_MODULES, (
                f"heavy import {names} in {path.name}"
            )
    for stmt in tree.body:
        assert isinstance(stmt, ast.Expr | ast.Import | ast.ImportFrom | ast.With), (
            f"{path.name}:{stmt.lineno}: only imports, the docstring and the DAG context belong at module level"
        )


@pytest.mark.parametrize("path", DAG_FILES, ids=file_id)
def test_parsing_a_dag_file_imports_no_heavy_module(airflow_environment: Any, path: Path) -> None:
    """Followed transitively: what the DAG file imports, and what that imports, in a fresh interpreter.

    The scheduler, the DAG processor and every task parse these files; a heavy import here
    is paid by each of them (DuckDB, pyarrow, GX, TensorFlow, MLflow: the tasks import them).
    """
    probe = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('dag_under_test', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY_AT_PARSE)!r}))))\n"
    )
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert found.returncode == 0, found.stderr[-2000:]
    assert json.loads(found.stdout.strip().splitlines()[-1]) == [], f"parsing {path.name} imports them"


def test_dags_folder_parses_in_under_two_seconds(dagbag: Any) -> None:
    assert not dagbag.import_errors
    assert dagbag.parse_seconds < 2.0, f"parsing dags/ took {dagbag.parse_seconds:.2f}s"


def test_each_dbt_model_is_its_own_task(dagbag: Any) -> None:
    dag = dagbag.dags["recsys_warehouse"]
    task_ids = {t.task_id for t in dag.tasks}
    for model in ("stg_events", "fct_engagements", "dim_users", "dim_pins", "training_interactions"):
        assert f"transform.{model}_model_build" in task_ids
    chain = ["wait_for_landing", "land", "audit", "transform.stg_events_model_build", "check_marts"]
    for upstream, downstream in itertools.pairwise(chain):
        assert upstream in dag.get_task(downstream).upstream_task_ids
    assert dag.get_task("check_marts").outlets


def test_dbt_runs_once_per_run_and_each_node_task_reports_it(dagbag: Any) -> None:
    """One ``dbt build`` (the only task of the group a worker runs when all goes well); every node's
    task starts with it, in the triggerer (which waits there for the build to end), and check_marts
    waits for the build and every node's task."""
    dag = dagbag.dags["recsys_warehouse"]
    build = dag.get_task(f"transform.{BUILD_TASK}")
    assert build.upstream_task_ids == {"audit"}
    assert "check_marts" in build.downstream_task_ids
    node_tasks = [t for t in dag.tasks if t.task_id.startswith("transform.") and t is not build]
    assert len(node_tasks) >= 10
    for task in node_tasks:
        assert task.upstream_task_ids == {"audit"}, task.task_id
        assert task.trigger_rule == "all_success", task.task_id
        assert task.start_from_trigger, task.task_id
        assert task.downstream_task_ids == {"check_marts"}, task.task_id
    # a node dbt skipped must not skip check_marts (and end the run green) before the failing node fails
    assert dag.get_task("check_marts").trigger_rule == "none_failed"
    # the manifest's tests over several models have tasks of their own
    assert "transform.assert_training_interactions_has_no_hidden_pair_test" in {t.task_id for t in node_tasks}


@pytest.mark.parametrize("dag_id", ["recsys_warehouse", "recsys_train_and_publish"])
def test_every_task_has_an_execution_timeout(dagbag: Any, dag_id: str) -> None:
    """A task whose process hangs (a dead job, a lock) fails and pages instead of running forever."""
    dag = dagbag.dags[dag_id]
    missing = [t.task_id for t in dag.tasks if t.execution_timeout is None and not _is_sensor(t)]
    assert not missing, f"{dag_id}: no execution_timeout on {missing}"
    for sensor in (t for t in dag.tasks if _is_sensor(t)):
        assert sensor.timeout and sensor.timeout > 0


def _is_sensor(task: Any) -> bool:
    from airflow.sdk.bases.sensor import BaseSensorOperator

    return isinstance(task, BaseSensorOperator)


def test_warehouse_run_for_day_d_covers_d_to_d_plus_one(dagbag: Any) -> None:
    """A run for day D covers [D, D+1): Airflow 3's default cron trigger would give an empty interval."""
    from airflow.serialization.encoders import coerce_to_core_timetable

    timetable = coerce_to_core_timetable(dagbag.dags["recsys_warehouse"].timetable)
    day = pendulum.datetime(2026, 1, 3, tz="UTC")
    interval = timetable.infer_manual_data_interval(run_after=day.add(days=1))
    assert (interval.start, interval.end) == (day, day.add(days=1))
    from recflow.core.days import days_to_process

    manual = timetable.infer_manual_data_interval(run_after=day)
    assert days_to_process({}, day, manual.start, manual.end) == [day.date()], (
        "`dags test ... D` must land ds=D"
    )
    info = timetable.next_dagrun_info(last_automated_data_interval=interval, restriction=_restriction())
    assert (info.data_interval.start, info.data_interval.end) == (day.add(days=1), day.add(days=2))


def _restriction() -> Any:
    from airflow.timetables.base import TimeRestriction

    return TimeRestriction(earliest=pendulum.datetime(2026, 1, 1, tz="UTC"), latest=None, catchup=True)


def test_training_is_scheduled_on_the_mart_asset(dagbag: Any) -> None:
    from recflow.airflow.assets import TRAINING_MART

    warehouse = dagbag.dags["recsys_warehouse"]
    train = dagbag.dags["recsys_train_and_publish"]
    assert TRAINING_MART in warehouse.get_task("check_marts").outlets
    assert train.timetable.asset_condition == TRAINING_MART


def test_bad_params_are_refused(dagbag: Any) -> None:
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    dag = dagbag.dags["recsys_train_and_publish"]
    params = ParamsDict(dict(dag.params.items()))
    params.validate()
    with pytest.raises(
        ParamValidationError, match="Invalid input for param epochs: 0 is less than the minimum"
    ):
        params["epochs"] = 0
    with pytest.raises(ParamValidationError, match="model_name"):
        params["model_name"] = "bad name!"


@pytest.mark.parametrize(
    ("broken", "refusal"),
    [
        ({"RECFLOW_GATE_RANKING": "Full"}, "RECFLOW_GATE_RANKING='Full' is not one of full, sampled"),
        ({"RECFLOW_PROFILE": "production"}, "RECFLOW_PROFILE=production needs these variables set"),
    ],
    ids=["refused", "required-unset"],
)
@pytest.mark.parametrize("path", DAG_FILES, ids=file_id)
def test_no_setting_makes_a_dag_vanish(
    airflow_environment: Any, path: Path, broken: dict[str, str], refusal: str
) -> None:
    """RECFLOW_GATE_RANKING=Full, or the production profile with its required variables unset, on the
    workers: the warehouse DAG read its settings when parsed and failed to import, so its schedule
    stopped and nothing paged. No DAG file reads them when parsed; the tasks, which read them when they
    run, fail naming the variables."""
    probe = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('dag_under_test', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
    )
    env = subprocess_env(broken)
    parsed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, env=env
    )
    assert parsed.returncode == 0, parsed.stderr[-2000:]
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        Settings.from_env(env)
