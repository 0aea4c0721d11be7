"""Which task reports which dbt nodes: one task per model or seed (with the tests on it alone), one
per test over several models.

The same grouping Cosmos's ``TestBehavior.BUILD`` with detached multi-parent tests drew, and the
same task ids (``<model>_model_build``, ``<seed>_seed_build``, ``<test>_test``), so the runbooks,
``recflow clear`` patterns and incident history keep their names. It is read from the compiled
``manifest.json`` as plain JSON: drawing the DAG imports neither dbt nor Cosmos.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

BUILT_TYPES = {"model": "model_build", "seed": "seed_build", "snapshot": "snapshot_build"}
"""The resource types a task builds, and the suffix of its task id."""


@dataclass(frozen=True)
class NodeTask:
    """One task of the ``transform`` group: the dbt nodes it reports (``unique_id``s) and what it is."""

    task_id: str
    """Its id inside the group (``stg_events_model_build``)."""
    name: str
    """The model, seed or test it is named after."""
    kind: str
    """``model``, ``seed``, ``snapshot`` or ``test`` (a test over several models)."""
    nodes: tuple[str, ...]
    """The node it builds first, then the tests on it alone; a multi-model test's task has one node."""


def node_tasks(manifest_path: Path) -> list[NodeTask]:
    """The tasks of the compiled project at ``manifest_path``, in the manifest's order; unit tests are
    left to ``make test`` (the run's build excludes them)."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{manifest_path}: no compiled dbt manifest; `recflow setup` (or `make setup`) compiles it"
        ) from exc
    nodes = manifest["nodes"]
    built = {uid: n for uid, n in nodes.items() if n["resource_type"] in BUILT_TYPES}
    tests_on: dict[str, list[str]] = {uid: [] for uid in built}
    detached: list[tuple[str, str]] = []
    for uid, node in nodes.items():
        if node["resource_type"] != "test":
            continue
        parents = [p for p in node["depends_on"]["nodes"] if p in built]
        if len(parents) == 1:
            tests_on[parents[0]].append(uid)
        elif parents:
            detached.append((uid, node["name"]))
    tasks = [
        NodeTask(
            task_id=f"{node['name']}_{BUILT_TYPES[node['resource_type']]}",
            name=node["name"],
            kind=node["resource_type"],
            nodes=(uid, *sorted(tests_on[uid])),
        )
        for uid, node in built.items()
    ]
    tasks += [
        NodeTask(task_id=f"{name}_test", name=name, kind="test", nodes=(uid,)) for uid, name in detached
    ]
    return tasks
