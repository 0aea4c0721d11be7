"""Through the CLI the runbooks use (``recflow airflow dags test``), on a fresh home:

- a key that is no param (``{"eppochs": 3}``) fails the train DAG's first task on its first try,
  naming the key, and nothing is trained;
- a data verdict (a landing partition that breaks the contract) fails ``land`` on its first try,
  not after a retry, and its incident names the day the manual run processed (``ds=D``), not the
  interval Airflow inferred for the run.

Tries and states are read from Airflow's metadata database, the incidents from their store.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from recflow.cli import main
from recflow.core.config import Settings
from recflow.core.names import TRAINING_DAG, WAREHOUSE_DAG
from recflow.ingest.contract import SUCCESS_MARKER, partition_dir
from recflow.stack.demo import setup

pytestmark = pytest.mark.e2e

DAY = date(2026, 3, 4)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("verdicts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_HOME", str(root / "home"))
        mp.delenv("AIRFLOW_CONN_RECFLOW_ALERTS", raising=False)
        settings = Settings.from_env()
        setup(settings, echo=lambda _: None)
        yield settings


def _dags_test(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capfd.readouterr()
    code = main(["airflow", "dags", "test", *args])
    out = capfd.readouterr()
    return code, out.out + out.err


def _task_instances(settings: Settings, dag_id: str) -> dict[str, tuple[str, int]]:
    """task id -> (state, try number) of the DAG's one run, from Airflow's metadata database."""
    with sqlite3.connect(f"file:{settings.home / 'airflow' / 'airflow.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "select task_id, state, try_number from task_instance where dag_id = ?", [dag_id]
        ).fetchall()
    return {task: (state, tries) for task, state, tries in rows}


def _incidents(capsys: pytest.CaptureFixture[str], dag_id: str) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["incidents", "list", "--json", "--dag", dag_id]) == 0
    found: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return found


def test_a_key_that_is_no_param_fails_the_run_at_once_and_trains_nothing(
    home: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    code, log = _dags_test(capfd, TRAINING_DAG, "--conf", '{"eppochs": 3}')
    assert code != 0, log[-3000:]
    states = _task_instances(home, TRAINING_DAG)
    assert states["snapshot"] == ("failed", 1), states
    assert {state for task, (state, _) in states.items() if task != "snapshot"} == {"upstream_failed"}
    [incident] = _incidents(capfd, TRAINING_DAG)
    assert (incident["task_id"], incident["try_number"], incident["error_type"]) == (
        "snapshot",
        1,
        "ParamsError",
    )
    assert "eppochs" in incident["root_cause"] and "epochs" in incident["message"]
    assert incident["runbook"].endswith("#params-refused")
    on_call = [line for line in log.splitlines() if "ON-CALL: " in line]
    assert len(on_call) == 1 and "(try 1, " in on_call[0] and "eppochs" in on_call[0], on_call
    assert not home.jobs_dir.exists() or not any(home.jobs_dir.iterdir()), "a training job was launched"


def test_a_data_verdict_fails_at_once_and_names_the_day_processed(
    home: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """The runbooks' re-run of day D: ``dags test recsys_warehouse D``; D's partition has its
    ``_SUCCESS`` but the pins catalogue is missing, which the contract refuses."""
    day_dir = partition_dir(home.landing_dir, DAY)
    day_dir.mkdir(parents=True, exist_ok=True)
    (day_dir / SUCCESS_MARKER).touch()
    code, log = _dags_test(capfd, WAREHOUSE_DAG, DAY.isoformat())
    assert code != 0, log[-3000:]
    states = _task_instances(home, WAREHOUSE_DAG)
    assert states["wait_for_landing"][0] == "success", states
    assert states["land"] == ("failed", 1), states
    [incident] = _incidents(capfd, WAREHOUSE_DAG)
    assert (incident["task_id"], incident["kind"], incident["error_type"]) == (
        "land",
        "data",
        "ContractViolation",
    )
    assert incident["try_number"] == 1
    assert (incident["interval_start"], incident["interval_end"]) == (
        "2026-03-04T00:00:00+00:00",
        "2026-03-05T00:00:00+00:00",
    )
    assert incident["days"] == "2026-03-04"
    assert "ds=2026-03-04" in incident["blast_radius"]["stale_asset"]
    on_call = [line for line in log.splitlines() if "ON-CALL: " in line]
    assert len(on_call) == 1 and "land failed for ds=2026-03-04 (try 1, " in on_call[0], on_call
