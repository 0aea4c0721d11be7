"""How each process of the local Spark cluster (``recflow.stack.spark_cluster``) is started: its command
line, its environment and the Thrift server's Spark configuration."""

from __future__ import annotations

from pathlib import Path

from recflow.core.config import Settings, subprocess_env


def environment(directory: Path, home: Path) -> dict[str, str]:
    """The processes' environment: Spark's distribution, everything bound to 127.0.0.1, files in the folder."""
    return subprocess_env(
        {
            "SPARK_HOME": str(home),
            "SPARK_LOCAL_IP": "127.0.0.1",  # the RPC endpoints and the web UIs bind to it
            "SPARK_LOG_DIR": str(directory / "logs"),
            "SPARK_PID_DIR": str(directory / "run"),
            "SPARK_WORKER_DIR": str(directory / "work"),
            "SPARK_LOCAL_DIRS": str(directory / "scratch"),
            "SPARK_CONF_DIR": str(directory / "conf"),
            "SPARK_NO_DAEMONIZE": "1",
        }
    )


def thrift_conf(settings: Settings, directory: Path) -> dict[str, str]:
    """The Thrift server's Spark configuration: loopback, UTC sessions, a Derby metastore in the folder."""
    spark = settings.spark
    cores = spark.workers * spark.worker_cores
    return {
        "spark.master": f"spark://127.0.0.1:{spark.master_port}",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.memory": spark.driver_memory,
        "spark.executor.memory": spark.worker_memory,
        "spark.executor.cores": str(spark.worker_cores),
        "spark.cores.max": str(cores),
        # its Spark UI (jobs, stages, executors) after the workers' UIs, on 127.0.0.1 (SPARK_LOCAL_IP) like every
        # port here; where it bound is ClusterState.uis["thrift"], another port if this one was taken
        "spark.ui.port": str(spark.master_port + spark.workers + 2),
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(directory / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={directory / 'metastore_db'};create=true"
        ),
        "spark.sql.session.timeZone": "UTC",
        # a few partitions per core: the default 200 costs seconds of task overhead per shuffle here
        "spark.sql.shuffle.partitions": str(2 * cores),
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        # rows go to the client a partition at a time, not collected whole in the driver first: Great
        # Expectations runs a query asset bare to learn its columns, and a day of events would fill the heap
        "spark.sql.thriftServer.incrementalCollect": "true",
    }


def commands(settings: Settings, directory: Path, home: Path) -> dict[str, list[str]]:
    """Each process's command line by role (master, worker-1.., thrift), in the order they start."""
    spark = settings.spark
    master = f"spark://127.0.0.1:{spark.master_port}"
    classes = home / "bin" / "spark-class"
    commands = {
        "master": [
            str(classes),
            "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1",
            "--port", str(spark.master_port),
            "--webui-port", str(spark.master_port + 1),
        ],
    }  # fmt: skip
    for i in range(1, spark.workers + 1):
        commands[f"worker-{i}"] = [
            str(classes),
            "org.apache.spark.deploy.worker.Worker",
            master,
            "--host", "127.0.0.1",
            "--cores", str(spark.worker_cores),
            "--memory", spark.worker_memory,
            "--work-dir", str(directory / "work" / f"worker-{i}"),
            "--webui-port", str(spark.master_port + 1 + i),
        ]  # fmt: skip
    confs = [
        arg for key, value in thrift_conf(settings, directory).items() for arg in ("--conf", f"{key}={value}")
    ]
    commands["thrift"] = [
        str(home / "bin" / "spark-submit"),
        "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
        "--name", "recflow-thrift",
        *confs,
        "--driver-java-options", f"-Dderby.system.home={directory}",
        "--hiveconf", f"hive.server2.thrift.port={spark.thrift_port}",
        "--hiveconf", "hive.server2.thrift.bind.host=127.0.0.1",
        "spark-internal",
    ]  # fmt: skip
    return commands
