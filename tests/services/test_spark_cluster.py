"""The local Spark cluster (``recflow spark up``) is a real one: two workers, queries spread over both.

A shuffle crosses executors in two worker processes, so nothing the warehouse steps or dbt do on
Spark can rely on one process's memory; every port the cluster's processes listen on is on
127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from recflow.core.spark import CLUSTER_STATE
from recflow.stack.ports import free_port_block
from recflow.stack.spark_cluster import alive_workers
from tests.services.spark import running_cluster, spark_cursor


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _tasks_by_executor(ui: str) -> dict[str, int]:
    """Completed tasks of each executor of the Thrift server's application (its Spark UI's REST API)."""
    (app,) = _get(f"{ui}/api/v1/applications")
    executors = _get(f"{ui}/api/v1/applications/{app['id']}/executors")
    return {e["id"]: int(e["completedTasks"]) for e in executors if e["id"] != "driver"}


def test_two_workers_and_a_shuffle_runs_on_both(spark_cluster: Any) -> None:
    workers = alive_workers(spark_cluster.state)
    assert len(workers) == 2, workers
    ui = spark_cluster.state.uis["thrift"]
    before = _tasks_by_executor(ui)
    assert len(before) == 2, f"the Thrift server should hold one executor per worker: {before}"

    cursor = spark_cursor(spark_cluster.warehouse_url)
    cursor.execute(
        "select k, count(*), sum(id) from (select id, id % 1000 as k from range(0, 2000000, 1, 8)) as t "
        "group by k order by k"
    )
    rows = cursor.fetchall()
    cursor.close()
    expected = {k: (2000, sum(range(k, 2000000, 1000))) for k in range(1000)}
    assert {int(k): (int(n), int(s)) for k, n, s in rows} == expected

    after = _tasks_by_executor(ui)
    ran = {executor: after[executor] - before.get(executor, 0) for executor in after}
    assert all(n > 0 for n in ran.values()) and len(ran) == 2, f"tasks per executor: {ran}"


def test_every_process_of_the_cluster_listens_on_loopback_only(spark_cluster: Any) -> None:
    pids = set(spark_cluster.state.pids.values())
    children = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True)
    for line in children.stdout.splitlines():  # the executors are the workers' children
        pid, ppid = (int(v) for v in line.split())
        if ppid in pids:
            pids.add(pid)
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    ours = [line.split()[3] for line in listening.splitlines() if any(f"pid={p}," in line for p in pids)]
    assert len(ours) >= 6, listening  # master (RPC, UI), 2 workers (RPC, UI), Thrift, executors
    assert all(address.rsplit(":", 1)[0] in {"127.0.0.1", "[::ffff:127.0.0.1]"} for address in ours), ours


def test_web_uis_on_taken_ports_are_found_where_spark_moved_them(tmp_path: Path) -> None:
    """Spark binds a web UI whose port is taken to a later free one and says so only in its log: ``up``
    records where each bound, and every call to a UI goes there (reading the port asked for had reached
    another program's server, which answered with HTML)."""
    master_port = free_port_block(8)
    asked = {"master": master_port + 1, "worker-1": master_port + 2, "thrift": master_port + 3}  # one worker
    with contextlib.ExitStack() as held:
        for port in (asked["master"], asked["thrift"]):  # another program's servers
            server = held.enter_context(socket.socket())
            server.bind(("127.0.0.1", port))
            server.listen()
        with running_cluster(tmp_path, master_port=master_port, RECFLOW_SPARK_WORKERS="1") as cluster:
            uis = cluster.state.uis
            assert sorted(uis) == sorted(asked), uis
            assert urlsplit(uis["master"]).port != asked["master"], uis
            assert urlsplit(uis["thrift"]).port != asked["thrift"], uis
            assert [w["state"] for w in _get(f"{uis['master']}/json/")["workers"]] == ["ALIVE"]
            assert [a["name"] for a in _get(f"{uis['thrift']}/api/v1/applications")] == ["recflow-thrift"]
            recorded = json.loads((cluster.directory / CLUSTER_STATE).read_text())
            assert recorded["uis"] == uis, "recflow spark status reads them from cluster.json"
