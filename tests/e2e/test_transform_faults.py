"""End to end: the ``transform`` group's faults as the person on call meets them, through a real
scheduler, LocalExecutor and triggerer.

One ``dbt build`` per run (``transform.dbt_build``), one task per dbt node reporting it. Days of
synthetic events go through ``recsys_warehouse`` one backfill run each:

* a clean day: every node's task starts with the build, waits for it in the triggerer and
  succeeds there once the build has ended, with no worker log of its own;
* a test that fails (a past day of ``fct_engagements`` broken where the incremental build does
  not rewrite it): ``transform.fct_engagements_model_build`` fails, its ``ON-CALL:`` line names
  the model and the test; ``check_marts`` does not run;
* a model that fails (a column added to ``fct_engagements``'s table, which its
  ``on_schema_change: fail`` refuses): the same task fails, its line names the model and says
  ``out of sync``; the tests that read it are skipped, every other node succeeds;
* the build killed (SIGKILL of its task process) once: it goes up for retry while every node
  task still waits (deferred, no try of its own spent), and the retry's build ends the run green;
* the build killed on both tries: the node dbt was running fails, its line names that model;
  the nodes it never reached are skipped.

Each fault is undone before the next day. The task states are read from the API server, the
``ON-CALL:`` lines from the task logs Airflow wrote.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

from recflow.core.config import Settings
from recflow.core.names import TRAINING_DAG, WAREHOUSE_DAG
from recflow.producers.generate import GeneratorConfig, generate
from recflow.stack.api import AirflowClient, wait_for_dags
from recflow.stack.demo import close_backfill, setup, wait_for_warehouse_runs
from recflow.stack.services import running_airflow
from recflow.warehouse import connect

pytestmark = pytest.mark.e2e

T = TypeVar("T")
START = date(2026, 4, 1)
DAYS = [START + timedelta(days=i) for i in range(5)]
CFG = GeneratorConfig(start=START, days=5, users=200, pins=150, topics=6, seed=3)
TIMEOUT = 600.0
BUILD = "transform.dbt_build"
FCT = "transform.fct_engagements_model_build"


@dataclass
class World:
    settings: Settings
    client: AirflowClient


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("transform_faults")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_HOME", str(root / "home"))
        settings = Settings.from_env()
        generate(settings.landing_dir, CFG)
        setup(settings, echo=print)
        with running_airflow(settings) as client:
            wait_for_dags(client, [WAREHOUSE_DAG, TRAINING_DAG])
            client.set_paused(TRAINING_DAG, True)
            client.set_paused(WAREHOUSE_DAG, False)
            yield World(settings, client)
            client.set_paused(WAREHOUSE_DAG, True)


def _start(world: World, day: date) -> datetime:
    for earlier in world.client.backfills(WAREHOUSE_DAG):
        if earlier.get("completed_at") is None:
            close_backfill(world.client, earlier["id"])
    since = datetime.now(UTC) - timedelta(seconds=1)
    world.client.backfill(WAREHOUSE_DAG, day.isoformat(), day.isoformat(), reprocess="completed")
    return since


def _finish(world: World, day: date, since: datetime) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    run = wait_for_warehouse_runs(world.client, [day], since, print, TIMEOUT, fail_fast=False)[day]
    tis = {t["task_id"]: t for t in world.client.task_instances(WAREHOUSE_DAG, run["dag_run_id"])}
    return run, tis


def _run_day(world: World, day: date) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    return _finish(world, day, _start(world, day))


def _logs(world: World, run_id: str, task_id: str) -> Path:
    return (
        world.settings.airflow_home
        / "logs"
        / f"dag_id={WAREHOUSE_DAG}"
        / f"run_id={run_id}"
        / f"task_id={task_id}"
    )


def _on_call(world: World, run_id: str, task_id: str) -> str:
    """The ``ON-CALL:`` line the failure callback wrote in the task's log (its last try's)."""
    lines = [
        line
        for log in sorted(_logs(world, run_id, task_id).glob("attempt=*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if "ON-CALL:" in line
    ]
    assert lines, f"no ON-CALL line in {_logs(world, run_id, task_id)}"
    return lines[-1]


def _node_tasks(tis: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {t: ti["state"] for t, ti in tis.items() if t.startswith("transform.") and t != BUILD}


def test_a_clean_day_builds_once_and_its_node_tasks_end_in_the_triggerer(world: World) -> None:
    run, tis = _run_day(world, DAYS[0])
    assert run["state"] == "success"
    assert tis[BUILD]["state"] == "success" and tis[BUILD]["try_number"] == 1
    nodes = _node_tasks(tis)
    assert len(nodes) >= 10 and set(nodes.values()) == {"success"}
    build_ended = datetime.fromisoformat(tis[BUILD]["end_date"])
    for task_id in nodes:
        # waiting in the triggerer while dbt ran, judged only once it had ended
        assert datetime.fromisoformat(tis[task_id]["start_date"]) < build_ended, task_id
        assert datetime.fromisoformat(tis[task_id]["end_date"]) >= build_ended, task_id
        folder = _logs(world, run["dag_run_id"], task_id)
        assert list(folder.glob("attempt=1.log.trigger.*.log")), f"{task_id}: no trigger log"
        assert not (folder / "attempt=1.log").exists(), f"{task_id} ran on a worker"


@pytest.fixture(scope="module")
def failing_test(world: World) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Day 2 with day 1's ``fct_engagements.weight`` set to null (put back afterwards)."""
    with connect(world.settings) as con:
        con.execute(
            "create table analytics.weights_before as "
            "select event_id, weight from analytics.fct_engagements where ds = ?",
            [DAYS[0]],
        )
        con.execute("update analytics.fct_engagements set weight = null where ds = ?", [DAYS[0]])
    try:
        return _run_day(world, DAYS[1])
    finally:
        with connect(world.settings) as con:
            con.execute(
                "update analytics.fct_engagements f set weight = b.weight "
                "from analytics.weights_before b where f.event_id = b.event_id"
            )
            con.execute("drop table analytics.weights_before")


def test_a_failing_test_fails_its_models_task_and_the_on_call_line_names_both(
    world: World, failing_test: tuple[dict[str, Any], dict[str, dict[str, Any]]]
) -> None:
    run, tis = failing_test
    assert run["state"] == "failed"
    assert tis[BUILD]["state"] == "success", "a node's failure is not the build's"
    assert tis[FCT]["state"] == "failed"
    line = _on_call(world, run["dag_run_id"], FCT)
    assert "fct_engagements" in line and "not_null_fct_engagements_weight" in line and "fail" in line
    assert "#dbt-failed" in line or "dbt-failed" in line
    assert tis["check_marts"]["state"] == "upstream_failed"
    others = {t: s for t, s in _node_tasks(tis).items() if t != FCT}
    assert set(others.values()) <= {"success", "skipped"}
    assert others["transform.stg_events_model_build"] == "success"


@pytest.fixture(scope="module")
def failing_model(
    world: World, failing_test: tuple[dict[str, Any], dict[str, dict[str, Any]]]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Day 3 with a column added under ``fct_engagements`` (dropped afterwards)."""
    with connect(world.settings) as con:
        con.execute("alter table analytics.fct_engagements add column tampered integer")
    try:
        return _run_day(world, DAYS[2])
    finally:
        with connect(world.settings) as con:
            con.execute("alter table analytics.fct_engagements drop column tampered")


def test_a_failing_model_fails_its_task_alone_and_the_on_call_line_names_it(
    world: World, failing_model: tuple[dict[str, Any], dict[str, dict[str, Any]]]
) -> None:
    run, tis = failing_model
    assert run["state"] == "failed"
    assert tis[FCT]["state"] == "failed"
    line = _on_call(world, run["dag_run_id"], FCT)
    assert "model fct_engagements" in line and "out of sync" in line
    nodes = _node_tasks(tis)
    skipped = {t for t, s in nodes.items() if s == "skipped"}
    assert skipped and all("fct_engagements" in t for t in skipped), skipped
    assert {s for t, s in nodes.items() if t != FCT and t not in skipped} == {"success"}


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float = 300.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.05)
    pytest.fail(f"no {what} within {timeout:.0f}s")


def _run_of(world: World, day: date, since: datetime) -> dict[str, Any] | None:
    for run in world.client.runs(WAREHOUSE_DAG):
        queued = run.get("queued_at")
        ours = isinstance(queued, str) and datetime.fromisoformat(queued) >= since
        if ours and (run.get("logical_date") or "").startswith(day.isoformat()):
            return run
    return None


def _kill_build_mid_node(world: World, run_id: str, try_number: int) -> None:
    """SIGKILL the build's task process of try ``try_number`` once dbt has started a node."""
    path = f"/api/v2/dags/{WAREHOUSE_DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/{BUILD}"

    def running_with_a_node_started() -> int | None:
        ti = world.client._request("GET", path)
        if ti["state"] != "running" or ti["try_number"] != try_number or not ti.get("pid"):
            return None
        entries = world.client._request("GET", f"{path}/xcomEntries?limit=200")["xcom_entries"]
        # this try's: the earlier try's entries are still listed until the new one clears them
        ours = [
            e
            for e in entries
            if e["key"].startswith("dbt_task:")
            and datetime.fromisoformat(e["timestamp"]) >= datetime.fromisoformat(ti["start_date"])
        ]
        return int(ti["pid"]) if ours else None

    pid = _wait_for(f"{BUILD} try {try_number} running a node", running_with_a_node_started)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_a_build_killed_once_is_retried_while_its_node_tasks_wait(world: World) -> None:
    since = _start(world, DAYS[3])
    run = _wait_for("the run", lambda: _run_of(world, DAYS[3], since))
    _kill_build_mid_node(world, run["dag_run_id"], 1)

    def up_for_retry() -> dict[str, dict[str, Any]] | None:
        tis = {t["task_id"]: t for t in world.client.task_instances(WAREHOUSE_DAG, run["dag_run_id"])}
        return tis if tis[BUILD]["state"] == "up_for_retry" else None

    waiting = _wait_for(f"{BUILD} up for retry", up_for_retry, 120)
    assert set(_node_tasks(waiting).values()) <= {"deferred", "scheduled"}, (
        "a node task ended while the build waits"
    )
    finished, tis = _finish(world, DAYS[3], since)
    assert finished["state"] == "success"
    assert tis[BUILD]["try_number"] == 2
    assert set(_node_tasks(tis).values()) == {"success"}
    assert {tis[t]["try_number"] for t in _node_tasks(tis)} == {1}, "a node task spent a try on the wait"


def test_a_build_killed_on_every_try_fails_the_node_it_was_running_by_name(world: World) -> None:
    since = _start(world, DAYS[4])
    run = _wait_for("the run", lambda: _run_of(world, DAYS[4], since))
    _kill_build_mid_node(world, run["dag_run_id"], 1)
    _kill_build_mid_node(world, run["dag_run_id"], 2)
    finished, tis = _finish(world, DAYS[4], since)
    assert finished["state"] == "failed"
    assert tis[BUILD]["state"] == "failed"
    nodes = _node_tasks(tis)
    failed = [t for t, s in nodes.items() if s == "failed"]
    assert failed, nodes
    for task_id in failed:
        line = _on_call(world, run["dag_run_id"], task_id)
        name = task_id.removeprefix("transform.").rsplit("_", 2)[0]
        assert name in line and "ended while dbt was running" in line, line
    assert set(nodes.values()) <= {"failed", "skipped", "success"}
    assert "skipped" in nodes.values(), "the nodes it never reached are skipped"
