"""The services suite's Spark cluster: one two-worker standalone cluster for the session, started and
stopped through ``recflow.stack.spark_cluster`` (what ``recflow spark up`` runs), on free loopback ports.

Each test that uses :func:`spark_warehouse <tests.services.conftest.spark_warehouse>` starts with no
recflow database on it (every database but ``default`` dropped), as a PostgreSQL test starts with a
new database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recflow.core.config import Settings
from recflow.stack import spark_cluster
from recflow.stack.pids import is_running
from recflow.stack.ports import free_port_block


@dataclasses.dataclass(frozen=True)
class SparkCluster:
    """A running cluster: where it lives and the settings that point recflow at it."""

    directory: Path
    master_port: int
    thrift_port: int
    env: dict[str, str]
    """``RECFLOW_SPARK_*`` of the cluster, ``RECFLOW_WAREHOUSE_URL`` and ``RECFLOW_DBT_TARGET=spark``."""
    state: spark_cluster.ClusterState

    @property
    def warehouse_url(self) -> str:
        return self.state.warehouse_url

    @property
    def warehouse_dir(self) -> Path:
        """Where the cluster's tables keep their files (``<database>.db/<table>/``)."""
        return self.directory / "warehouse"

    def settings(self, **env: str) -> Settings:
        return Settings.from_env({**self.env, **env})


def spark_cursor(url: str) -> Any:
    """A PyHive cursor on the Thrift server of ``url`` (``hive://user@host:port/db``)."""
    from pyhive import hive
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    connection = hive.connect(
        host=parsed.host, port=parsed.port, username=parsed.username, database=parsed.database or "default"
    )
    return connection.cursor()


@contextmanager
def running_cluster(
    root: Path, master_port: int | None = None, **settings_env: str
) -> Iterator[SparkCluster]:
    """A cluster in ``root`` on free ports (the master's port block also holds the UIs' ports), or on
    ``master_port``; ``settings_env`` adds ``RECFLOW_SPARK_*`` settings."""
    ports = free_port_block(9)  # one block: the Thrift port drawn alone could land in the master's
    master_port = master_port or ports
    thrift_port = ports + 8
    env = {
        **settings_env,
        "RECFLOW_HOME": str(root / "home"),
        "RECFLOW_SPARK_DIR": str(root / "spark"),
        "RECFLOW_SPARK_MASTER_PORT": str(master_port),
        "RECFLOW_SPARK_THRIFT_PORT": str(thrift_port),
    }
    settings = Settings.from_env(env)
    state = spark_cluster.start(settings)
    try:
        yield SparkCluster(
            directory=root / "spark",
            master_port=master_port,
            thrift_port=thrift_port,
            env={**{k: v for k, v in env.items() if k != "RECFLOW_HOME"}, **state.env()},
            state=state,
        )
    finally:
        spark_cluster.stop(settings)
        left = [f"{role} (pid {pid})" for role, pid in state.pids.items() if is_running(pid)]
        assert not left, f"`recflow spark down` left processes of the cluster running: {left}"


def drop_recflow_databases(cluster: SparkCluster) -> None:
    """Every database but ``default``, with its tables: the next test starts on an empty warehouse."""
    cursor = spark_cursor(cluster.warehouse_url)
    try:
        cursor.execute("show databases")
        for (name,) in cursor.fetchall():
            if name != "default":
                cursor.execute(f"drop database if exists `{name}` cascade")
    finally:
        cursor.close()
