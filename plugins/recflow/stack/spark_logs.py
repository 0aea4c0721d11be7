"""What the local Spark cluster's processes log (their log4j2 configuration), and reading it back."""

from __future__ import annotations

from pathlib import Path

LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.thrift.name = org.apache.spark.sql.hive.thriftserver
logger.thrift.level = info
logger.master.name = org.apache.spark.deploy
logger.master.level = info
"""
"""Warnings, and the lines that say a server started or a worker registered (Spark's INFO is ~1 MB a query)."""


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
