"""recflow.transform: which task reports which dbt nodes, and a task's verdict on their results.

The grouping is checked against what dbt itself records in the compiled manifest: the node a
generic test is ``attached_node`` to (dbt's own attachment, not the ``depends_on`` the grouping
reads), and the full list of nodes of each type.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from recflow.core.config import Settings, subprocess_env
from recflow.transform import NodeResult, node_tasks, verdict
from recflow.transform.records import NodeRecords


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project compiled by ``dbt parse`` into a folder of this test's own."""
    home = tmp_path_factory.mktemp("manifest")
    settings = Settings.from_env({"RECFLOW_HOME": str(home)})
    project = str(settings.dbt_project_dir)
    target = home / "target"
    subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "parse", "--project-dir", project, "--profiles-dir", project,
         "--target-path", str(target), "--quiet"],
        env=subprocess_env(settings.dbt_env()),
        check=True,
    )  # fmt: skip
    return target / "manifest.json"


def _nodes(manifest: Path) -> dict[str, Any]:
    nodes: dict[str, Any] = json.loads(manifest.read_text())["nodes"]
    return nodes


def test_every_model_seed_and_test_is_reported_by_exactly_one_task(manifest: Path) -> None:
    nodes = _nodes(manifest)
    expected = {uid for uid, n in nodes.items() if n["resource_type"] in ("model", "seed", "test")}
    reported = [uid for task in node_tasks(manifest) for uid in task.nodes]
    assert sorted(reported) == sorted(expected)
    assert not any(n["resource_type"] == "unit_test" for uid in reported for n in [nodes[uid]])


def test_a_test_on_one_model_is_its_models_task_and_a_test_on_several_has_its_own(manifest: Path) -> None:
    nodes = _nodes(manifest)
    task_of = {uid: task for task in node_tasks(manifest) for uid in task.nodes}
    for uid, node in nodes.items():
        if node["resource_type"] != "test":
            continue
        attached = node.get("attached_node")
        if node["name"].startswith("relationships_") or node["name"].endswith("has_no_hidden_pair"):
            assert task_of[uid].task_id == f"{node['name']}_test", uid
            assert task_of[uid].nodes == (uid,)
        elif attached:
            assert task_of[uid].nodes[0] == attached, uid
    built = {t.task_id for t in node_tasks(manifest) if t.kind != "test"}
    assert {
        "stg_events_model_build",
        "training_interactions_model_build",
        "event_type_weights_seed_build",
    } <= built
    holdout = next(uid for uid in nodes if "holdout_is_latest" in uid)
    assert task_of[holdout].task_id == "training_interactions_model_build"


def test_no_manifest_says_what_compiles_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="recflow setup"):
        node_tasks(tmp_path / "manifest.json")


MODEL, TEST = "model.recflow.m", "test.recflow.not_null_m_x"


def _r(uid: str, status: str, message: str = "") -> NodeResult:
    return NodeResult(unique_id=uid, status=status, message=message, seconds=0.1)


@pytest.mark.parametrize(
    ("results", "started", "state"),
    [
        ({MODEL: _r(MODEL, "success"), TEST: _r(TEST, "pass")}, set(), "success"),
        ({MODEL: _r(MODEL, "success"), TEST: _r(TEST, "warn")}, set(), "success"),
        ({MODEL: _r(MODEL, "error", "Binder Error")}, set(), "failed"),
        ({MODEL: _r(MODEL, "success"), TEST: _r(TEST, "fail", "Got 3 results")}, set(), "failed"),
        ({MODEL: _r(MODEL, "skipped"), TEST: _r(TEST, "skipped")}, set(), "skipped"),
        ({}, {MODEL}, "failed"),
        ({MODEL: _r(MODEL, "success")}, {TEST}, "failed"),
        ({}, set(), "skipped"),
        ({MODEL: _r(MODEL, "success")}, set(), "skipped"),
    ],
    ids=["passed", "warned", "model-error", "test-failed", "dbt-skipped", "killed-in-model",
         "killed-in-test", "never-reached", "test-never-reached"],
)  # fmt: skip
def test_a_tasks_state_is_its_nodes_results(
    results: dict[str, NodeResult], started: set[str], state: str
) -> None:
    found = verdict((MODEL, TEST), results, frozenset(started))
    assert found.state == state
    assert len(found.lines) == 2
    assert all(line.startswith((MODEL, TEST)) for line in found.lines)


def test_the_failing_nodes_message_is_in_its_line() -> None:
    found = verdict((MODEL, TEST), {MODEL: _r(MODEL, "success"), TEST: _r(TEST, "fail", "Got 3 results")})
    assert [r.unique_id for r in found.failed] == [TEST]
    assert found.lines[1].endswith("fail in 0.10s: Got 3 results")
    assert NodeResult.from_dict(found.failed[0].as_dict()) == found.failed[0]


class _Store:
    """What a build's records reach: every write, in order, each as the store got it (a copy)."""

    def __init__(self, seconds: float = 0.0, fail: bool = False) -> None:
        self.seconds = seconds
        self.fail = fail
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def push(self, task_id: str, record: dict[str, Any]) -> None:
        time.sleep(self.seconds)
        if self.fail:
            raise ConnectionError("the API server went away")
        with self.lock:
            self.writes.append((task_id, json.loads(json.dumps(record))))

    def last(self) -> dict[str, dict[str, Any]]:
        return {task_id: record for task_id, record in self.writes}


def _build_of(records: NodeRecords, events: list[tuple[str, str]]) -> None:
    """Replay a build: ("start", uid) or ("end", uid) as dbt would report them."""
    for kind, uid in events:
        if kind == "start":
            records.started(uid)
        else:
            records.result(_r(uid, "success"))


TASKS = {"model.p.a": "a_model_build", "test.p.t_a": "a_model_build", "model.p.b": "b_model_build"}
HEADS = frozenset({"model.p.a", "model.p.b"})
BUILD = [
    ("start", "model.p.a"), ("end", "model.p.a"), ("start", "test.p.t_a"), ("end", "test.p.t_a"),
    ("start", "model.p.b"), ("end", "model.p.b"),
]  # fmt: skip


def test_after_close_the_store_holds_every_result_reported_with_fewer_writes_than_events() -> None:
    store = _Store(seconds=0.02)
    records = NodeRecords(TASKS, HEADS, store.push)
    _build_of(records, BUILD)
    records.close()
    last = store.last()
    assert set(last) == {"a_model_build", "b_model_build"}
    assert sorted(last["a_model_build"]["results"]) == ["model.p.a", "test.p.t_a"]
    assert last["a_model_build"]["started"] == ["model.p.a"]
    assert list(last["b_model_build"]["results"]) == ["model.p.b"]
    assert all(r["status"] == "success" for rec in last.values() for r in rec["results"].values())
    # one write per start (2) and at most one per result (3), fewer when results queue up
    assert len(store.writes) <= 5
    # a task's writes never go back: each holds every result of the one before it
    for task_id in last:
        seen: set[str] = set()
        for t, record in store.writes:
            if t == task_id:
                assert seen <= set(record["results"]), task_id
                seen = set(record["results"])


def test_a_tasks_own_node_starting_is_in_the_store_before_dbt_runs_it() -> None:
    """A build killed right after dbt started a node still names that node (its task fails as in flight)."""
    store = _Store(seconds=0.05)
    records = NodeRecords(TASKS, HEADS, store.push)
    records.started("model.p.a")
    assert store.last()["a_model_build"]["started"] == ["model.p.a"], "written before started() returned"
    records.started("test.p.t_a")  # a test on the model: no write of its own
    assert len(store.writes) == 1
    records.close()


def test_a_store_that_fails_fails_the_build_at_close() -> None:
    store = _Store(fail=True)
    records = NodeRecords(TASKS, HEADS, store.push)
    records.result(_r("model.p.b", "success"))
    with pytest.raises(ConnectionError, match="went away"):
        records.close()


def test_results_of_many_tasks_reported_together_are_written_in_one_batch() -> None:
    """The writer waits LINGER_SECONDS once per batch, not once per task: ten tasks' results
    reported together are all in the store well before ten lingers (2 s) have passed."""
    from recflow.transform.records import LINGER_SECONDS

    tasks = {f"model.p.m{i}": f"m{i}_model_build" for i in range(10)}
    store = _Store()
    records = NodeRecords(tasks, frozenset(tasks), store.push)
    for uid in tasks:
        records.result(_r(uid, "success"))
    deadline = time.monotonic() + 4 * LINGER_SECONDS
    while len(store.last()) < len(tasks) and time.monotonic() < deadline:
        time.sleep(0.01)
    written = set(store.last())
    records.close()
    assert written == set(tasks.values()), f"after {4 * LINGER_SECONDS:.1f}s only {sorted(written)}"
