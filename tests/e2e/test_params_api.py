"""End to end: a running Airflow (API server, scheduler, DAG processor) refuses bad params at trigger time.

One Airflow for every case, on free ports (another Airflow may hold 8080). The
DAGs stay paused, so the one accepted run never starts; it is deleted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from recflow.core.config import PROJECT_ROOT, Settings
from recflow.core.names import TRAINING_DAG, WAREHOUSE_DAG
from recflow.stack.api import AirflowApiError, AirflowClient, wait_for_dags
from recflow.stack.demo import setup
from recflow.stack.ports import free_port_block
from recflow.stack.services import start_services, wait_for_api

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowClient]:
    root = tmp_path_factory.mktemp("params_api")
    port = free_port_block()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_HOME", str(root / "home"))
        mp.setenv("RECFLOW_AIRFLOW_API_PORT", str(port))
        settings = Settings.from_env()
        setup(settings, echo=lambda _: None)
        services = start_services(settings)
        try:
            client = wait_for_api(settings, services)
            wait_for_dags(client, [TRAINING_DAG, WAREHOUSE_DAG])
            client.set_paused(TRAINING_DAG, True)
            client.set_paused(WAREHOUSE_DAG, True)
            yield client
        finally:
            services.stop()


def _refusal(client: AirflowClient, dag_id: str, conf: dict[str, Any]) -> tuple[int, str]:
    """Trigger ``dag_id`` with ``conf`` through the REST API, expecting a refusal: (HTTP status, message)."""
    try:
        run = client.trigger(dag_id, conf)
    except AirflowApiError as exc:
        found = re.search(r"HTTP (\d{3}): (.*)", str(exc), re.DOTALL)
        assert found, exc
        return int(found.group(1)), found.group(2)
    client.delete_run(dag_id, run["dag_run_id"])
    pytest.fail(f"{dag_id} accepted conf {conf} (run {run['dag_run_id']}, deleted)")


@pytest.mark.parametrize(
    ("dag_id", "conf", "name"),
    [
        (TRAINING_DAG, {"epochs": 5.0}, "epochs"),
        (TRAINING_DAG, {"epochs": "5"}, "epochs"),
        (TRAINING_DAG, {"epochs": 0}, "epochs"),
        (TRAINING_DAG, {"epochs": 5, "learning_rate": 0}, "learning_rate"),
        (TRAINING_DAG, {"dry_run": "yes"}, "dry_run"),
        (WAREHOUSE_DAG, {"max_quarantine_share": 1.5}, "max_quarantine_share"),
        (WAREHOUSE_DAG, {"check_volume": "false"}, "check_volume"),
    ],
    ids=["float-5.0", "string-5", "below-minimum", "exclusive-minimum", "not-boolean", "share", "volume"],
)
def test_a_bad_value_is_refused_with_the_params_name(
    api: AirflowClient, dag_id: str, conf: dict[str, Any], name: str
) -> None:
    status, message = _refusal(api, dag_id, conf)
    assert status == 400, message
    assert f"Invalid input for param {name}: " in message, message


@pytest.mark.parametrize("dag_id", [TRAINING_DAG, WAREHOUSE_DAG])
def test_a_key_that_is_no_param_is_refused(api: AirflowClient, dag_id: str) -> None:
    status, message = _refusal(api, dag_id, {"no_such_param": 1})
    assert status == 400, message
    assert "no_such_param is not a param" in message, (
        f"{message}: is recflow.airflow.params.StrictConfMiddleware registered by a plugin "
        f"in the plugins folder ({PROJECT_ROOT / 'plugins'})?"
    )


def test_good_params_are_accepted_and_become_the_runs_conf(api: AirflowClient) -> None:
    run = api.trigger(TRAINING_DAG, {"epochs": 5, "dry_run": True})
    try:
        assert run["conf"] == {"epochs": 5, "dry_run": True}
        assert run["state"] == "queued"  # the DAG is paused: the run never starts
        assert [r["dag_run_id"] for r in api.runs(TRAINING_DAG)] == [run["dag_run_id"]]
    finally:
        api.delete_run(TRAINING_DAG, run["dag_run_id"])
    assert api.runs(TRAINING_DAG) == []
