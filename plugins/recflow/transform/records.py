"""Each node task's record of the run's build, handed to a store as dbt reports its nodes.

A task's record is ``{"started": [unique_id, ...], "results": {unique_id: NodeResult.as_dict()}}``:
the nodes of that task dbt started, and the result of each it finished. :class:`NodeRecords` keeps
them and writes each through ``push(task_id, record)`` (the Airflow layer's XCom push):

- a task's own node starting is written at once, before dbt runs it: a build killed under that
  node then still names it (its task fails as *in flight*);
- results are written by one background thread, the latest record of each task once, gathered
  for :data:`LINGER_SECONDS`, so dbt's threads never wait on a round trip to the store (~20-40 ms
  each) and the store answers fewer of them while dbt runs; :meth:`close`
  returns once everything reported has been written. A result not yet written when the build is
  killed leaves its node *in flight*: its task fails rather than passing unjudged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from recflow.transform.build import NodeResult

log = logging.getLogger(__name__)

Push = Callable[[str, dict[str, Any]], None]
LINGER_SECONDS = 0.2
"""How long the writer lets results gather before it writes: fewer writes (each one a request the
API server answers while dbt runs, on the same cores), at most this much later."""


class NodeRecords:
    """The records of one build, by task id; ``node_task_ids`` maps each node to its task, ``heads``
    are the tasks' own nodes (a model, seed or multi-model test, not the tests on a model)."""

    def __init__(self, node_task_ids: Mapping[str, str], heads: frozenset[str], push: Push) -> None:
        self._task_of = dict(node_task_ids)
        self._heads = heads
        self._push = push
        self._records: dict[str, dict[str, Any]] = {}
        self._dirty: dict[str, None] = {}  # task ids whose latest record is not yet written, in order
        self._lock = threading.Condition()
        self._pushing = threading.Lock()  # one write at a time, each with a record as new as any before it
        self._closed = False
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name="dbt-node-records", daemon=True)
        self._writer.start()

    def task_of(self, unique_id: str) -> str:
        return self._task_of.get(unique_id, unique_id)

    def _record(self, unique_id: str) -> tuple[str, dict[str, Any]]:
        task_id = self.task_of(unique_id)
        return task_id, self._records.setdefault(task_id, {"started": [], "results": {}})

    def started(self, unique_id: str) -> None:
        """dbt started ``unique_id``: written now when it is a task's own node (see the module doc)."""
        if unique_id not in self._heads:
            return
        with self._pushing:
            with self._lock:
                task_id, record = self._record(unique_id)
                record["started"].append(unique_id)
                snapshot = _copy(record)
                self._dirty.pop(task_id, None)  # this write carries every result reported so far
            self._push(task_id, snapshot)

    def result(self, result: NodeResult) -> None:
        """dbt finished a node: queued for the writer thread."""
        with self._lock:
            task_id, record = self._record(result.unique_id)
            record["results"][result.unique_id] = result.as_dict()
            self._dirty[task_id] = None
            self._lock.notify()

    def close(self) -> None:
        """Wait until every reported result is written; raises what the writer could not write."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._writer.join()
        if self._error is not None:
            raise self._error

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._dirty and not self._closed:
                    self._lock.wait()
                if not self._dirty:
                    return
                # let the results that follow join this batch (a task's tests end ~30 ms apart)
                deadline = time.monotonic() + LINGER_SECONDS
                while not self._closed and (left := deadline - time.monotonic()) > 0:
                    self._lock.wait(left)
            while self._write_next():  # the whole batch, one write per task, then wait again
                pass

    def _write_next(self) -> bool:
        """Write the oldest task record not yet written; False when there was none."""
        with self._pushing:
            with self._lock:
                if not self._dirty:
                    return False
                task_id = next(iter(self._dirty))
                del self._dirty[task_id]
                snapshot = _copy(self._records[task_id])
            try:  # the store's round trip, dbt's threads not waiting on it
                self._push(task_id, snapshot)
            except Exception as exc:  # kept, and raised by close() in the build's thread
                log.exception("could not write the record of %s", task_id)
                self._error = self._error or exc
        return True


def _copy(record: dict[str, Any]) -> dict[str, Any]:
    return {"started": list(record["started"]), "results": dict(record["results"])}
