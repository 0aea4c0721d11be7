"""Incidents: one record per failed task, kept in a database that outlives the process.

The failure callback (``recflow.airflow.alerts``) unpacks Airflow's context into a
:class:`TaskFailure` and calls :func:`record_failure`, which classifies the error by
its type, says what the failure leaves stale and which model stays champion, quotes
the runbook's "What to do" and stores an :class:`Incident` in the store
``RECFLOW_INCIDENTS_URL`` names (a SQLite file under ``RECFLOW_HOME`` by default; a database
every worker reaches in the production profile). ``recflow incidents list`` / ``show`` read the store; the
JSON keys are documented in ``docs/incidents.md``.

Several task processes may fail at once: on SQLite the store uses the WAL journal, a
busy timeout and one ``BEGIN IMMEDIATE`` transaction per write.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

from recflow.core.config import Settings
from recflow.core.errors import DataVerdict, RecflowError, TrainingJobFailed
from recflow.oncall import runbooks

log = logging.getLogger(__name__)

Kind = Literal["data", "training_job", "sensor_timeout", "transform", "pipeline", "infrastructure"]
KINDS: tuple[str, ...] = get_args(Kind)

WAREHOUSE_DAG = "recsys_warehouse"
TRAINING_DAG = "recsys_train_and_publish"
TRAINING_ASSET = "training_interactions"
"""The name of the asset ``recsys_warehouse`` updates (``recflow.airflow.assets.TRAINING_MART``)."""

ROOT_CAUSE_CHARS = 300
REGISTRY_TIMEOUT_S = 20.0
NO_EXCEPTION = (
    "the task ended without an exception in its process: it was killed, marked failed by a person, "
    "or its worker was lost"
)


@dataclass(frozen=True)
class TaskFailure:
    """What the failure callback knows about a failed task, unpacked from Airflow's context."""

    dag_id: str
    task_id: str
    run_id: str
    try_number: int
    interval_start: datetime | None = None
    interval_end: datetime | None = None
    error: BaseException | str | None = None
    model_name: str | None = None
    days: tuple[date, ...] = ()
    """The landing partitions the run processes, in order (``recflow.airflow.tasks.days_to_process``);
    empty when unknown (its params are refused) or for a run of another DAG."""

    @property
    def day(self) -> date | None:
        """The one landing partition the run processes (``D`` in the runbook's commands), if exactly one."""
        return self.days[0] if len(self.days) == 1 else None


@dataclass(frozen=True)
class Incident:
    """One failed task: what, why, what it leaves stale, what to do. ``id`` is set once stored."""

    at: str
    dag_id: str
    task_id: str
    run_id: str
    interval_start: str | None
    interval_end: str | None
    try_number: int
    kind: Kind
    error_type: str
    root_cause: str
    check: str = ""
    columns: tuple[str, ...] = ()
    observed: str = ""
    expected: str = ""
    evidence: str = ""
    blast_radius: dict[str, str] = field(default_factory=dict)
    what_to_do: str = ""
    runbook: str = ""
    message: str = ""
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``recflow incidents … --json``); every key is described in ``docs/incidents.md``."""
        return {
            "id": self.id,
            "at": self.at,
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "interval_start": self.interval_start,
            "interval_end": self.interval_end,
            "days": self.days,
            "try_number": self.try_number,
            "kind": self.kind,
            "error_type": self.error_type,
            "root_cause": self.root_cause,
            "check": self.check,
            "columns": list(self.columns),
            "observed": self.observed,
            "expected": self.expected,
            "evidence": self.evidence,
            "blast_radius": dict(self.blast_radius),
            "what_to_do": self.what_to_do,
            "runbook": self.runbook,
            "message": self.message,
        }

    @property
    def days(self) -> str:
        """``recsys_warehouse``: the days its run processed, ``D`` or ``D1..D2`` (inclusive); else empty.

        Its incidents' interval is those days' (see :func:`build_incident`), never the interval
        Airflow infers for a manual run."""
        if self.dag_id != WAREHOUSE_DAG or not self.interval_start or not self.interval_end:
            return ""
        return days_text(
            datetime.fromisoformat(self.interval_start).date(),
            (datetime.fromisoformat(self.interval_end) - timedelta(days=1)).date(),
        )

    @property
    def what(self) -> str:
        processed = f" for ds={self.days}" if self.days else ""
        return f"{self.dag_id}.{self.task_id} failed{processed} (try {self.try_number}, run {self.run_id})"

    @property
    def title(self) -> str:
        """The notification's title."""
        return f"[recflow] {self.dag_id}.{self.task_id} failed"

    @property
    def reference(self) -> str:
        return f"{self.id} (recflow incidents show {self.id})" if self.id is not None else "not stored"

    def on_call_line(self) -> str:
        """The one line the task log ends with."""
        return (
            f"ON-CALL: {self.what} | why: {self.root_cause} | what to do: {self.what_to_do} "
            f"| runbook: {self.runbook} | incident: {self.reference}"
        )

    def notification_body(self) -> str:
        return (
            f"{self.root_cause}\n"
            f"What to do: {self.what_to_do}\n"
            f"Runbook: {self.runbook}\n"
            f"Incident: {self.reference}"
        )


# -- classification ------------------------------------------------------------------------------


def classify(error: BaseException | str | None) -> Kind:
    """The incident's kind, by the error's type (an error raised ``from`` a RecflowError counts as it)."""
    if error is None or isinstance(error, str):
        return "infrastructure"
    cause = runbooks.recflow_cause(error)
    if cause is not None:
        return _recflow_kind(cause)
    if _is_sensor_timeout(error):
        return "sensor_timeout"
    return "transform" if _is_dbt_failure(error) else "infrastructure"


def _recflow_kind(error: RecflowError) -> Kind:
    if isinstance(error, DataVerdict):
        return "data"
    if isinstance(error, TrainingJobFailed):
        return "training_job"
    return "pipeline"


def _is_sensor_timeout(error: BaseException) -> bool:
    # An instance of Airflow's exception exists only where Airflow is imported: outside a task
    # (the CLI, unit tests) there is nothing to match, and importing Airflow would cost seconds.
    if "airflow.sdk.exceptions" not in sys.modules:
        return False
    from airflow.sdk.exceptions import AirflowSensorTimeout

    return isinstance(error, AirflowSensorTimeout)


def _is_dbt_failure(error: BaseException) -> bool:
    try:
        from cosmos.exceptions import CosmosDbtRunError
    except ImportError:
        return False
    return isinstance(error, CosmosDbtRunError)


def one_line(text: str, limit: int = ROOT_CAUSE_CHARS) -> str:
    """``text`` on one line (line breaks as ``; ``, runs of blanks as one), cut at ``limit`` characters."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    flat = "; ".join(line for line in lines if line)
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _full_message(error: BaseException) -> str:
    """The error's text and, below it, the text of each error it was raised from."""
    parts = [_describe(error)]
    seen = {id(error)}
    cause = error.__cause__
    while cause is not None and id(cause) not in seen:
        parts.append(f"raised from {_describe(cause)}")
        seen.add(id(cause))
        cause = cause.__cause__
    return "\n".join(parts)


# -- building an incident ------------------------------------------------------------------------


ChampionLookup = Callable[[str], str]
"""Given a model name, says which version stays champion (``"unknown: …"`` when it cannot tell)."""


def champion_of(settings: Settings, name: str, timeout_s: float = REGISTRY_TIMEOUT_S) -> str:
    """Which version of ``name`` is champion in the registry, in words; never raises.

    A registry that is not there yet (the embedded SQLite file) is not created; one
    that does not answer within ``timeout_s`` is reported as unknown.
    """
    uri = settings.mlflow_uri
    if (
        settings.registry_backend == "mlflow"
        and uri.startswith("sqlite:///")
        and not Path(uri.removeprefix("sqlite:///")).exists()
    ):
        return f"none: no model registry yet ({uri})"
    answer: list[str] = []

    def look_up() -> None:
        try:
            from recflow.registry import registry_for

            info = registry_for(settings).get_by_alias(name)
        except Exception as exc:  # the registry may be what is broken; the incident is recorded anyway
            answer.append(f"unknown: the registry could not be read ({one_line(_describe(exc), 200)})")
            return
        answer.append(
            f"none: {name} has no champion"
            if info is None
            else f"{name} version {info.version} stays champion"
        )

    worker = threading.Thread(target=look_up, name="recflow-champion-lookup", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return answer[0] if answer else f"unknown: the registry did not answer within {timeout_s:g} s ({uri})"


def days_text(first: date, last: date) -> str:
    """Days ``first`` to ``last`` (inclusive) in words: ``2026-03-04``, or ``2026-01-01..2026-01-07``."""
    return first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"


def _processed_interval(failure: TaskFailure) -> tuple[datetime | None, datetime | None]:
    """The incident's interval: for ``recsys_warehouse``, its days ``[first, last + 1)`` (none when
    unknown); for another DAG, the run's data interval."""
    if failure.dag_id != WAREHOUSE_DAG:
        return failure.interval_start, failure.interval_end
    if not failure.days:
        return None, None
    first, last = failure.days[0], failure.days[-1] + timedelta(days=1)
    return (
        datetime(first.year, first.month, first.day, tzinfo=UTC),
        datetime(last.year, last.month, last.day, tzinfo=UTC),
    )


def blast_radius(failure: TaskFailure, model_name: str, champion: str) -> dict[str, str]:
    """What the failure leaves stale, and which model keeps serving."""
    if failure.dag_id == WAREHOUSE_DAG:
        processed = (
            f"ds={days_text(failure.days[0], failure.days[-1])}" if failure.days else f"run {failure.run_id}"
        )
        stale = f"asset {TRAINING_ASSET} is not updated for {processed}: no training starts from it"
    elif failure.dag_id == TRAINING_DAG:
        stale = f"no new version of {model_name} is published by run {failure.run_id}"
    else:
        stale = f"unknown: {failure.dag_id} is not a recflow DAG"
    return {"stale_asset": stale, "champion": champion}


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _what_to_do(failure: TaskFailure, anchor: str, model_name: str) -> str:
    """The runbook's "What to do", with its placeholders ``D`` (the day) and ``N`` (the model) filled in."""
    try:
        text = runbooks.section(failure.dag_id, anchor).what_to_do
    except (KeyError, OSError):
        return (
            f"read the task log and {runbooks.relative_path(failure.dag_id)}; "
            "clear the task once the cause is fixed"
        )
    if failure.day is not None:
        text = re.sub(r"\bD\b", failure.day.isoformat(), text)
    return re.sub(r"\bN\b", model_name, text)


def build_incident(
    settings: Settings,
    failure: TaskFailure,
    *,
    champion: ChampionLookup | None = None,
    now: datetime | None = None,
) -> Incident:
    """The incident for ``failure`` (not stored). ``champion`` defaults to a look-up in the registry."""
    error = failure.error
    model_name = failure.model_name or settings.model_name
    lookup = champion or (lambda name: champion_of(settings, name))
    kind = classify(error)
    verdict: DataVerdict | None = None
    if isinstance(error, BaseException):
        cause: RecflowError | BaseException = runbooks.recflow_cause(error) or error
        verdict = cause if isinstance(cause, DataVerdict) else None
        error_type = type(cause).__name__
        root_cause = one_line(_describe(cause))
        message = _full_message(error)
        anchor = runbooks.anchor_for(failure.task_id, error)
    else:
        error_type = ""
        root_cause = one_line(error) if error else NO_EXCEPTION
        message = error or ""
        anchor = runbooks.anchor_for(failure.task_id, None)
    start, end = _processed_interval(failure)
    return Incident(
        at=(now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds"),
        dag_id=failure.dag_id,
        task_id=failure.task_id,
        run_id=failure.run_id,
        interval_start=_iso(start),
        interval_end=_iso(end),
        try_number=failure.try_number,
        kind=kind,
        error_type=error_type,
        root_cause=root_cause,
        check=verdict.check if verdict else "",
        columns=tuple(verdict.columns) if verdict else (),
        observed=verdict.observed if verdict else "",
        expected=verdict.expected if verdict else "",
        evidence=verdict.evidence if verdict else "",
        blast_radius=blast_radius(failure, model_name, lookup(model_name)),
        what_to_do=_what_to_do(failure, anchor, model_name),
        runbook=f"{runbooks.relative_path(failure.dag_id)}#{anchor}",
        message=message,
    )


def record_failure(
    settings: Settings, failure: TaskFailure, *, champion: ChampionLookup | None = None
) -> Incident:
    """Build the incident for ``failure`` and store it; the one call of the failure callback.

    Storing may fail (a full disk, a read-only home): the incident is then returned
    with ``id`` None and the reason logged, so that the on-call line is still written.
    """
    from sqlalchemy.exc import SQLAlchemyError

    incident = build_incident(settings, failure, champion=champion)
    try:
        return IncidentStore.of(settings).add(incident)
    except (SQLAlchemyError, OSError) as exc:
        log.error("could not store the incident in %s: %s", IncidentStore.of(settings), exc)
        return incident


# -- the store -----------------------------------------------------------------------------------

_COLUMNS = (
    "at",
    "dag_id",
    "task_id",
    "run_id",
    "interval_start",
    "interval_end",
    "try_number",
    "kind",
    "error_type",
    "root_cause",
    "check_name",
    "columns",
    "observed",
    "expected",
    "evidence",
    "blast_radius",
    "what_to_do",
    "runbook",
    "message",
)
BUSY_TIMEOUT_S = 30.0
_SCHEMA_LOCK = 0x7265_6366  # "recf": the advisory lock that serialises creating the table on PostgreSQL
_TEXT_COLUMNS = frozenset(_COLUMNS) - {"try_number", "interval_start", "interval_end"}


def _table(metadata: Any) -> Any:
    from sqlalchemy import Column, Index, Integer, Table, Text

    table = Table(
        "incidents",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        *(Column(name, Text, nullable=False) for name in sorted(_TEXT_COLUMNS)),
        Column("interval_start", Text),
        Column("interval_end", Text),
        Column("try_number", Integer, nullable=False),
        sqlite_autoincrement=True,
    )
    Index("incidents_by_time", table.c.at)
    Index("incidents_by_dag", table.c.dag_id, table.c.at)
    return table


def store_url(settings: Settings) -> str:
    """Where ``settings`` keep incidents: ``RECFLOW_INCIDENTS_URL``, else the SQLite file under the home."""
    return settings.incidents_url or f"sqlite:///{settings.incidents_path}"


class IncidentStore:
    """The incidents in a database that every worker reaches (SQLAlchemy: SQLite by default, PostgreSQL
    in the production profile). Safe for concurrent writers in several processes: on SQLite through the
    WAL journal, a busy timeout and one ``BEGIN IMMEDIATE`` transaction per write."""

    def __init__(self, where: Path | str) -> None:
        self.url = f"sqlite:///{where}" if isinstance(where, Path) else where
        self._sqlite_path = (
            Path(self.url.removeprefix("sqlite:///")) if self.url.startswith("sqlite:///") else None
        )

    def __str__(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    @classmethod
    def of(cls, settings: Settings) -> IncidentStore:
        return cls(store_url(settings))

    @contextmanager
    def _engine(self) -> Iterator[Any]:
        from sqlalchemy import MetaData, create_engine, event
        from sqlalchemy.pool import NullPool

        if self._sqlite_path is None:
            engine = create_engine(self.url, poolclass=NullPool)
        else:
            engine = create_engine(
                self.url,
                poolclass=NullPool,
                connect_args={"timeout": BUSY_TIMEOUT_S, "isolation_level": None},
            )

            @event.listens_for(engine, "connect")
            def _wal(dbapi_connection: Any, record: Any) -> None:
                dbapi_connection.execute("pragma journal_mode=wal")

            # pysqlite's own deferred BEGIN would let two writers deadlock on the lock upgrade
            @event.listens_for(engine, "begin")
            def _immediate(connection: Any) -> None:
                connection.exec_driver_sql("begin immediate")

        try:
            yield engine, _table(MetaData())
        finally:
            engine.dispose()

    def _absent(self) -> bool:
        return self._sqlite_path is not None and not self._sqlite_path.exists()

    def add(self, incident: Incident) -> Incident:
        """Store ``incident``; returns it with its ``id``."""
        if self._sqlite_path is not None:
            self._sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        row = incident.as_dict()
        row["check_name"] = row.pop("check")
        row["columns"] = json.dumps(row["columns"])
        row["blast_radius"] = json.dumps(row["blast_radius"])
        with self._engine() as (engine, table), engine.begin() as con:
            if engine.dialect.name == "postgresql":  # writers that find no table must not all create it
                con.exec_driver_sql(f"select pg_advisory_xact_lock({_SCHEMA_LOCK})")
            table.metadata.create_all(con, checkfirst=True)
            result = con.execute(table.insert().values({name: row[name] for name in _COLUMNS}))
            new_id = int(result.inserted_primary_key[0])
        return replace(incident, id=new_id)

    def get(self, incident_id: int) -> Incident | None:
        if self._absent():
            return None
        with self._engine() as (engine, table), engine.connect() as con:
            if not engine.dialect.has_table(con, "incidents"):
                return None
            row = con.execute(table.select().where(table.c.id == incident_id)).mappings().first()
        return _from_row(row) if row is not None else None

    def find(
        self, *, dag_id: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[Incident]:
        """Incidents, oldest first; ``limit`` keeps the most recent ones."""
        if self._absent():
            return []
        with self._engine() as (engine, table), engine.connect() as con:
            if not engine.dialect.has_table(con, "incidents"):
                return []
            query = table.select().order_by(table.c.id.desc())
            if dag_id:
                query = query.where(table.c.dag_id == dag_id)
            if since is not None:
                query = query.where(table.c.at >= since.astimezone(UTC).isoformat(timespec="seconds"))
            if limit:
                query = query.limit(int(limit))
            rows = con.execute(query).mappings().all()
        return [_from_row(row) for row in reversed(rows)]


def _from_row(row: Mapping[str, Any]) -> Incident:
    kind = row["kind"]
    return Incident(
        id=int(row["id"]),
        at=row["at"],
        dag_id=row["dag_id"],
        task_id=row["task_id"],
        run_id=row["run_id"],
        interval_start=row["interval_start"],
        interval_end=row["interval_end"],
        try_number=int(row["try_number"]),
        kind=kind if kind in KINDS else "infrastructure",
        error_type=row["error_type"],
        root_cause=row["root_cause"],
        check=row["check_name"],
        columns=tuple(json.loads(row["columns"])),
        observed=row["observed"],
        expected=row["expected"],
        evidence=row["evidence"],
        blast_radius=dict(json.loads(row["blast_radius"])),
        what_to_do=row["what_to_do"],
        runbook=row["runbook"],
        message=row["message"],
    )


_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO date or date-time (UTC unless it says otherwise), or ``30m``/``24h``/``7d``/``2w`` ago."""
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO date/date-time (2026-01-03, 2026-01-03T06:00) "
            "nor a duration (30m, 24h, 7d, 2w)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
