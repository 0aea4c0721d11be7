"""What the local Spark cluster's processes log (their log4j2 configuration), and reading it back."""

from __future__ import annotations

import re
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
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = info
"""
"""Warnings, and the lines that say a server started, a worker registered or a service bound its port (Spark's
INFO is ~1 MB a query)."""

_BOUND_UI = re.compile(r"Successfully started service '\w*UI' on port (\d+)\.")
"""``org.apache.spark.util.Utils``' line once a web UI (MasterUI, WorkerUI, SparkUI) listens."""


def log_tail(path: Path, lines: int = 25, *, since: int = 0) -> str:
    """The last ``lines`` of the log written after byte ``since`` (this run's, in a log appended to)."""
    try:
        with path.open("rb") as log:
            log.seek(since)
            written = log.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(written.splitlines()[-lines:]) or "(nothing written)"


def bound_ui(path: Path, since: int) -> int | None:
    """The port of the web UI the process logged binding after byte ``since`` of its log, or ``None`` yet.

    The port asked for is not always where a UI listens: when it is taken, Spark binds the next free
    one (up to ``spark.port.maxRetries`` further) and says where only in its log. ``since`` is the log's
    size before the process started, so an earlier run's line in the same (appended) log never counts.
    """
    try:
        with path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except OSError:
        return None
    found = _BOUND_UI.findall(text)
    return int(found[-1]) if found else None
