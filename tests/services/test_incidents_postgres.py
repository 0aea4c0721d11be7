"""The incident store on PostgreSQL: what a task records on one worker, the on-call reads from anywhere."""

from __future__ import annotations

from pathlib import Path

from recflow.core import errors
from recflow.core.config import Settings
from recflow.oncall.incidents import TaskFailure, record_failure
from recflow.oncall.store import IncidentStore
from tests.unit.test_incidents import _champion, _refused, _warehouse_failure, write_concurrently


def test_incidents_recorded_by_two_homes_are_one_list_in_postgresql(pg_database: str, tmp_path: Path) -> None:
    workers = [
        Settings.from_env({"RECFLOW_HOME": str(tmp_path / name), "RECFLOW_INCIDENTS_URL": pg_database})
        for name in ("worker1", "worker2")
    ]
    first = record_failure(workers[0], _warehouse_failure(_refused()), champion=_champion)
    second = record_failure(
        workers[1],
        TaskFailure("recsys_train_and_publish", "publish", "r2", 1, error=errors.RegistryError("no")),
        champion=_champion,
    )
    assert (first.id, second.id) == (1, 2)
    assert not any((w.home / "incidents.db").exists() for w in workers), "nothing kept on a worker's disk"
    store = IncidentStore(pg_database)
    assert store.get(1) == first and store.get(2) == second
    assert [i.id for i in store.find(dag_id="recsys_train_and_publish")] == [2]
    assert "postgres@127.0.0.1" in str(store)


def test_concurrent_writers_lose_nothing_in_postgresql(pg_database: str) -> None:
    write_concurrently(pg_database, 4, 20)
    found = IncidentStore(pg_database).find()
    assert len({i.id for i in found}) == len(found) == 80
    assert IncidentStore(pg_database).count() == 80  # the count query agrees with the rows read
