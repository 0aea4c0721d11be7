"""The Spark engine's settings: the cluster ``recflow spark up`` starts here, and the tables it writes.

A group of :class:`recflow.core.config.Settings` (``settings.spark``), declared like the others
(:mod:`recflow.core.declare`). The warehouse is Spark when ``RECFLOW_WAREHOUSE_URL`` is a
``hive://`` URL (the Thrift server, HiveServer2's protocol, as Kyuubi, EMR and Dataproc serve it)
and ``RECFLOW_DBT_TARGET=spark``; these settings say how the local cluster is shaped and which
table format the warehouse's own tables use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from recflow.core.declare import SETTINGS_CONFIG, Env, FolderPath, Integer

CLUSTER_STATE = "cluster.json"
"""The file in the cluster's folder where ``recflow spark up`` records what it started (process ids, ports)."""

SPARK_LEAST_MEMORY_MIB = 512
"""The least heap recflow asks Spark for: Spark needs 450 MiB (1.5 times the 300 MiB it reserves) of the
heap the JVM reports, which is less than the heap asked for (by 3 % with the serial collector the JVM
picks on a small container, 11 % with the parallel one): 512 MiB clears both."""
_UNIT_MIB = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


def _spark_memory(value: str) -> str:
    """A JVM memory size as recflow passes it to Spark (the workers' ``--memory`` reads no ``gb``), a whole
    number and k, m, g or t in either case (``2g``), of at least :data:`SPARK_LEAST_MEMORY_MIB`: below that
    Spark refused to start only when the cluster came up."""
    size = re.fullmatch(r"(\d+)([kmgt])", value.lower())
    if not size or int(size.group(1)) * _UNIT_MIB[size.group(2)] < SPARK_LEAST_MEMORY_MIB:
        raise PydanticCustomError(
            "not_a_spark_size",
            f"not a memory size recflow gives Spark: a whole number and k, m, g or t (2g), at least "
            f"{SPARK_LEAST_MEMORY_MIB}m",
        )
    return value


SparkMemory = Annotated[str, AfterValidator(_spark_memory)]

TableFormat = Literal["parquet", "iceberg", "delta"]


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class SparkSettings:
    """The local standalone cluster (master, workers, Thrift server) and the warehouse's table format."""

    cluster_dir: Annotated[
        FolderPath | None,
        Env(
            "RECFLOW_SPARK_DIR",
            "Folder the local Spark cluster owns: its warehouse directory, metastore, logs and process ids. "
            "Unset: `$RECFLOW_HOME/spark`.",
        ),
    ] = None
    workers: Annotated[
        Integer,
        Field(ge=1, le=8),
        Env("RECFLOW_SPARK_WORKERS", "Standalone workers `recflow spark up` starts, one executor each."),
    ] = 2
    worker_cores: Annotated[
        Integer,
        Field(ge=1),
        Env("RECFLOW_SPARK_WORKER_CORES", "Cores each worker offers its executor."),
    ] = 1
    worker_memory: Annotated[
        SparkMemory,
        Env(
            "RECFLOW_SPARK_WORKER_MEMORY",
            "Memory each worker offers its executor, as Spark writes it (`2g`).",
        ),
    ] = "2g"
    driver_memory: Annotated[
        SparkMemory,
        Env("RECFLOW_SPARK_DRIVER_MEMORY", "Heap of the Thrift server, the driver of every query (`1g`)."),
    ] = "1g"
    master_port: Annotated[
        Integer,
        Field(ge=1024, le=65000),
        Env(
            "RECFLOW_SPARK_MASTER_PORT",
            "Port of the standalone master on 127.0.0.1; its web UI asks for the next port (`recflow spark status` "
            "says where each UI bound).",
        ),
    ] = 7077
    thrift_port: Annotated[
        Integer,
        Field(ge=1024, le=65000),
        Env(
            "RECFLOW_SPARK_THRIFT_PORT",
            "Port of the Thrift (HiveServer2) server `recflow spark up` starts on 127.0.0.1; the warehouse "
            "URL then is `hive://recflow@127.0.0.1:<port>/default`.",
        ),
    ] = 10000
    table_format: Annotated[
        TableFormat,
        Env(
            "RECFLOW_SPARK_TABLE_FORMAT",
            "Format of the tables recflow writes on Spark (`using <format>`). `parquet` (Hive-style "
            "partitions by `ds`) runs anywhere; `iceberg` or `delta` need their jars on the cluster and are "
            "not tested here.",
        ),
    ] = "parquet"

    def directory(self, home: Path) -> Path:
        """The cluster's folder under ``home`` (``RECFLOW_HOME``) unless set."""
        return self.cluster_dir or home / "spark"

    def serves(self, home: Path, warehouse_url: str) -> bool:
        """Whether ``warehouse_url`` is the Thrift server of the cluster ``recflow spark up`` runs from the
        folder of these settings (then its warehouse directory is that folder's, a store recflow made)."""
        from sqlalchemy.engine import make_url  # noqa: PLC0415 (sqlalchemy: only a warehouse URL needs it)

        url = make_url(warehouse_url)
        return (
            url.get_backend_name() == "hive"
            and url.host in ("127.0.0.1", "localhost")
            and (url.port or 10000) == self.thrift_port
            and (self.directory(home) / CLUSTER_STATE).is_file()
        )
