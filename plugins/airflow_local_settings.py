"""Airflow's local settings hook (imported by every Airflow process): warm the processes that fork tasks.

Airflow runs each task in a process forked from its executor's worker (LocalExecutor's
workers are forked from the scheduler; a Celery worker forks its own), so a module imported
here, before the fork, is already loaded in every task. Without this, each of a warehouse
day's dbt build imported dbt's CLI and the DuckDB adapter again (~4 s on 2 cores; ``dbt.task.build``,
which the CLI imports only when a build starts, ~2 s more), and
``audit`` and ``check_marts`` Great Expectations (~5 s); see ``docs/benchmarks.md``,
overhead. None of these modules starts a thread at import, so forking after them is safe.
Then two ``dbt parse`` into a scratch folder (``recflow.transform.build.warm_dbt``) pays dbt's
once-per-process start (serialisers generated and schemas built at first use, ~1.2 s of each
build) before the fork too; it leaves no thread, file or connection open. A warm-up that fails
is reported on stderr and the process goes on: the builds then pay that start themselves.
Only the processes that fork tasks pay the import, once; ``airflow dags test`` and the API
server do not. TensorFlow is left out on purpose: it is not fork-safe once imported.
"""

from __future__ import annotations

import importlib
import sys

PRELOADED = ("dbt.cli.main", "dbt.task.build", "dbt.adapters.duckdb", "great_expectations")
_TASK_FORKING_COMMANDS = frozenset({"scheduler", "worker"})
"""``airflow scheduler`` (LocalExecutor) and ``airflow celery worker``."""

TRIGGERER_PRELOADED = ("airflow.api_fastapi.execution_api.app",)
"""The triggerer answers its triggers' requests (the dbt node tasks' polls and XCom reads) with an
in-process execution API that it imports at the first request (~0.75 s on 2 cores), in the
middle of the run's dbt build; imported at start instead."""


def _warm_dbt() -> None:
    # Airflow's plugin manager imports this file again, in the scheduler and in every task's process
    # (whose sys.argv is still the scheduler's): warm_dbt returns at once there, the process (or the
    # one it was forked from) being warm already
    try:
        from recflow.core.config import Settings  # noqa: PLC0415 (only the processes that fork tasks)
        from recflow.transform.build import warm_dbt  # noqa: PLC0415

        seconds = warm_dbt(Settings.from_env())
        if seconds is None:
            return
    except Exception as exc:  # a cold build is slower, not wrong: the scheduler or worker must start
        print(f"recflow: dbt not warmed before forking tasks ({type(exc).__name__}: {exc})", file=sys.stderr)
    else:
        print(f"recflow: dbt warmed before forking tasks in {seconds:.1f}s", file=sys.stderr)


if _TASK_FORKING_COMMANDS.intersection(sys.argv[1:3]):
    for _module in PRELOADED:
        importlib.import_module(_module)
    _warm_dbt()
elif "triggerer" in sys.argv[1:3]:
    for _module in TRIGGERER_PRELOADED:
        importlib.import_module(_module)
