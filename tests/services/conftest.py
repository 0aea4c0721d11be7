"""The services suite (``make test-services``): the production profile on real servers.

PostgreSQL (127.0.0.1:5432, trust auth), Redis (127.0.0.1:6379) and moto's server on
loopback stand in for the managed services. The suite must run whole: a skipped test
fails here, so a missing service shows as red instead of as a quiet skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this folder's tests ``services`` (the hook sees the whole session's items: only ours)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.services)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"the services suite runs whole, nothing skipped: {report.longrepr}"


def _admin_execute(sql: str) -> None:
    import psycopg2

    con = psycopg2.connect(PG_ADMIN_URL)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(sql)
    finally:
        con.close()


@pytest.fixture
def pg_database_factory() -> Iterator[Callable[[], str]]:
    """Makes new, empty PostgreSQL databases for one test (their SQLAlchemy URLs), dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"recflow_{uuid.uuid4().hex[:12]}"
        _admin_execute(f'create database "{name}"')
        made.append(name)
        return f"postgresql://postgres@127.0.0.1:5432/{name}"

    try:
        yield make
    finally:
        for name in made:
            _admin_execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def pg_database(pg_database_factory: Callable[[], str]) -> str:
    """A new, empty PostgreSQL database for one test (its SQLAlchemy URL), dropped afterwards."""
    return pg_database_factory()


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Spark standalone master, two workers and the Thrift server, for the whole session
    (``recflow.stack.spark_cluster``, what ``recflow spark up`` starts), stopped at its end."""
    from tests.services.spark import running_cluster

    with running_cluster(tmp_path_factory.mktemp("spark")) as cluster:
        yield cluster


@pytest.fixture
def spark_warehouse(spark_cluster: Any) -> Any:
    """The session's Spark cluster with no recflow database on it (each test starts empty)."""
    from tests.services.spark import drop_recflow_databases

    drop_recflow_databases(spark_cluster)
    return spark_cluster
