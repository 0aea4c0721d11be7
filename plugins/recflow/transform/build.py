"""One ``dbt build`` of the whole project per run, each node's result handed over as it ends.

dbt is started once (its runner, in this process): the project is parsed once and every model,
seed and test of the run goes through one invocation, instead of one dbt start per node. Each
node's result is passed to ``on_result`` the moment dbt reports it (its ``NodeFinished`` event),
so a build killed half-way still leaves the results of the nodes it finished.

A node that fails is a verdict on that node, not on the build: dbt goes on with every node that
does not depend on it and skips those that do; :func:`verdict` turns a task's nodes' results into
its state and the lines its log shows. Only a build that dbt itself could not run (no profile, no
connection, a project that does not parse) raises here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from recflow.core.config import Settings
from recflow.core.errors import WarehouseUnavailable, says_unreachable, unreachable_line
from recflow.core.profiles import dbt_environ
from recflow.warehouse.duckdb import is_lock_error, waiting_for_the_file

log = logging.getLogger(__name__)

PASSED = frozenset({"success", "pass", "warn"})
FAILED = frozenset({"error", "fail", "runtime error"})


@dataclass(frozen=True)
class NodeResult:
    """What dbt reported for one node: ``status`` is dbt's (``success``, ``pass``, ``warn``, ``error``,
    ``fail``, ``skipped``), ``message`` its message (the error, or a test's failing-row count)."""

    unique_id: str
    status: str
    message: str
    seconds: float
    failures: int | None = None
    rows: int | None = None
    relation: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeResult:
        return cls(
            unique_id=str(data["unique_id"]),
            status=str(data["status"]),
            message=str(data.get("message") or ""),
            seconds=float(data.get("seconds") or 0.0),
            failures=data.get("failures"),
            rows=data.get("rows"),
            relation=data.get("relation"),
        )

    @property
    def lost_the_warehouse(self) -> bool:
        """Whether the node failed because the warehouse could not be reached (a server that went away
        mid-build), not for its SQL or its data: the build then fails for a retry
        (:class:`~recflow.core.errors.WarehouseUnavailable`) and pages for it."""
        return self.status in FAILED and says_unreachable(self.message)

    def line(self) -> str:
        """One log line: ``model.recflow.stg_events: success in 0.41s, 1,234 rows (analytics.stg_events)``."""
        text = f"{self.unique_id}: {self.status} in {self.seconds:.2f}s"
        if self.rows is not None:
            text += f", {self.rows:,} rows"
        if self.failures:
            text += f", {self.failures:,} failing rows"
        if self.relation:
            text += f" ({self.relation})"
        if self.message and self.status not in PASSED:
            text += f": {self.message}"
        return text


@dataclass(frozen=True)
class BuildOutcome:
    """The build's counts by dbt status, and its wall time."""

    statuses: dict[str, int]
    seconds: float

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.statuses.items() if s in FAILED)


def _node_result(data: Any) -> NodeResult:
    """A ``NodeFinished`` event's data as a :class:`NodeResult`."""
    result, info = data.run_result, data.node_info
    adapter = dict(result.adapter_response or {})
    rows = adapter.get("rows_affected")
    relation = info.node_relation.relation_name if info.node_relation else ""
    return NodeResult(
        unique_id=info.unique_id,
        status=str(result.status).lower(),
        message=str(result.message or ""),
        seconds=round(float(result.execution_time or 0.0), 3),
        failures=int(result.num_failures) if result.num_failures else None,
        rows=int(rows) if rows is not None and rows >= 0 else None,
        relation=relation or None,
    )


def dbt_args(
    command: str, settings: Settings, target_path: Path | None = None, log_path: Path | None = None
) -> list[str]:
    """dbt's command line for ``command`` on this home: the committed project and profile, the
    profile's output ``settings.dbt_target``, and the home's target and log folders (or the given
    ones). Every dbt invocation of recflow starts from it, so each parses the project as the others do."""
    project = str(settings.dbt_project_dir)
    return [
        command,
        "--project-dir", project,
        "--profiles-dir", project,
        "--target", settings.dbt_target,
        "--target-path", str(target_path or settings.dbt_target_dir),
        "--log-path", str(log_path or settings.dbt_log_dir),
    ]  # fmt: skip


def run_build(
    settings: Settings,
    *,
    on_result: Callable[[NodeResult], None],
    on_start: Callable[[str], None] | None = None,
    select: tuple[str, ...] = (),
) -> BuildOutcome:
    """``dbt build`` of the project (unit tests excluded: ``make test`` runs them) on the committed
    profile's output ``settings.dbt_target``, whose values (``settings.dbt_env()``: the DuckDB file, or
    the server warehouse's parts) are set only while it runs; ``on_result`` gets each node's result as
    it ends, ``on_start`` each node's ``unique_id`` as dbt starts it. Raises ``RuntimeError`` when dbt could not run the build at all (nothing was judged:
    another try may), and :class:`WarehouseUnavailable` when nodes failed because the warehouse could
    not be reached (a Thrift server or a PostgreSQL that went away mid-build: another try may too)."""
    from dbt.cli.main import dbtRunner  # noqa: PLC0415 (dbt's runner loads its adapters: only the task that builds pays it)

    statuses: dict[str, int] = {}
    lost: list[NodeResult] = []  # nodes that failed because the warehouse could not be reached

    def _on_event(event: Any) -> None:
        if event.info.name == "NodeStart" and on_start is not None:
            on_start(event.data.node_info.unique_id)
        if event.info.name != "NodeFinished":
            return
        result = _node_result(event.data)
        statuses[result.status] = statuses.get(result.status, 0) + 1
        log.info("%s", result.line())
        if result.lost_the_warehouse:
            lost.append(result)
        on_result(result)

    args = [*dbt_args("build", settings), "--exclude-resource-type", "unit_test"]
    if select:
        args += ["--select", *select]
    started = time.perf_counter()

    def invoke() -> Any:
        try:
            with dbt_environ(settings.dbt_env()):
                done = dbtRunner(callbacks=[_on_event]).invoke(args)
        finally:
            _release_duckdb()
        if done.exception is not None and not statuses and is_lock_error(done.exception):
            raise done.exception  # dbt opened no node: the DuckDB file was held (waited for, then again)
        return done

    if settings.warehouse_url:
        result = invoke()
    else:
        try:
            result = waiting_for_the_file(invoke, settings.duckdb_path)
        except Exception as exc:
            if not is_lock_error(exc):
                raise
            raise RuntimeError(f"dbt could not run the build (no node ran): {exc}") from exc
    outcome = BuildOutcome(statuses=statuses, seconds=round(time.perf_counter() - started, 2))
    if result.exception is not None:
        raise RuntimeError(
            f"dbt could not run the build ({outcome.statuses or 'no node ran'}): {result.exception}"
        )
    if lost:  # the server went away mid-build: not the models' verdict, and another try may find it back
        first = lost[0]
        reason = unreachable_line(first.message)
        raise WarehouseUnavailable(
            f"dbt lost the warehouse during the build: {len(lost)} node(s) could not reach it, the first "
            f"{first.unique_id}: {reason} "
            f"({outcome.statuses}). Bring the warehouse server back; the build's retry rebuilds every node"
        )
    return outcome


_warmed = False
"""Whether :func:`warm_dbt` ran in this process, or in the one it was forked from."""


def warm_dbt(settings: Settings) -> float | None:
    """Pay dbt's once-per-process start in a process that forks the builds, before it forks them.

    dbt generates its dataclasses' (de)serialisers at their first use and builds its configuration
    schemas at their first validation: about 1.2 s of every build on 2 cores, paid again by each task's
    fresh process. Two ``dbt parse`` of the project here, on the profile the builds use, make every
    process forked after them start warm. They parse into a folder of their own, removed after: they read the
    project, write nothing the builds read, and open no connection to the warehouse. Seconds taken;
    ``None``, having done nothing, where this process or the one it was forked from is warm already.
    """
    global _warmed  # noqa: PLW0603 (once per process tree: a fork inherits it)
    if _warmed:
        return None
    _warmed = True
    import tempfile  # noqa: PLC0415 (only the processes that fork builds warm dbt)

    from dbt.cli.main import dbtRunner  # noqa: PLC0415

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recflow-dbt-warm-") as scratch, dbt_environ(settings.dbt_env()):
        # --no-static-parser: dbt's static parser runs a native thread pool that a fork does not
        # copy; started here, it would hang the first build whose process forked from this one
        args = [*dbt_args("parse", settings, Path(scratch), Path(scratch)),
                "--log-level", "none", "--log-level-file", "none", "--no-static-parser"]  # fmt: skip
        # the first parses the whole project; the second reads back what the first saved, as a build does
        for _ in range(2):
            result = dbtRunner().invoke(args)
            if not result.success:
                raise RuntimeError(
                    f"dbt could not parse the project to warm up: {result.exception or 'see dbt'}"
                )
    return time.perf_counter() - started


def _release_duckdb() -> None:
    """dbt-duckdb keeps its database open for the life of the process; release it, as the end of a task's
    process would, so that ``airflow dags test`` (every task in one process) can open it again."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager  # noqa: PLC0415 (only when DuckDB's adapter is loaded)
    except ImportError:
        return
    if DuckDBConnectionManager._ENV is not None:
        DuckDBConnectionManager._ENV.close()
    DuckDBConnectionManager.close_all_connections()  # type: ignore[no-untyped-call]


State = Literal["success", "failed", "skipped"]


@dataclass(frozen=True)
class TaskVerdict:
    """A task's state from its nodes' results, with one log line per node. ``in_flight``: nodes dbt
    started and never finished (the build was killed under them); ``not_reached``: nodes it never started."""

    state: State
    lines: tuple[str, ...]
    failed: tuple[NodeResult, ...] = ()
    in_flight: tuple[str, ...] = ()
    not_reached: tuple[str, ...] = ()


def verdict(
    nodes: tuple[str, ...], results: Mapping[str, NodeResult | None], started: frozenset[str] = frozenset()
) -> TaskVerdict:
    """``failed`` if any node failed or was started and never finished (``started``: the nodes dbt
    started); else ``skipped`` if dbt skipped the node the task builds (something it depends on
    failed) or never reached one of its nodes (not judged, so not green); else ``success``."""
    lines = []
    failed, in_flight, not_reached = [], [], []
    for uid in nodes:
        result = results.get(uid)
        if result is None and uid in started:
            in_flight.append(uid)
            lines.append(f"{uid}: started, never finished: the build ended while dbt ran it")
        elif result is None:
            not_reached.append(uid)
            lines.append(f"{uid}: not reached: the build ended before dbt started it")
        else:
            lines.append(result.line())
            if result.status in FAILED:
                failed.append(result)
    own = results.get(nodes[0])
    if failed or in_flight:
        state: State = "failed"
    elif not_reached or (own is not None and own.status == "skipped"):
        state = "skipped"
    else:
        state = "success"
    return TaskVerdict(
        state=state,
        lines=tuple(lines),
        failed=tuple(failed),
        in_flight=tuple(in_flight),
        not_reached=tuple(not_reached),
    )
