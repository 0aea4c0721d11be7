"""The incident store: a database every worker reaches, and ``--since`` for reading it.

``RECFLOW_INCIDENTS_URL`` names it (a SQLite file under ``RECFLOW_HOME`` by default; a
database every worker reaches in the production profile). Several task processes may
fail at once: on SQLite the store uses the WAL journal, a busy timeout and one
``BEGIN IMMEDIATE`` transaction per write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Index, Integer, MetaData, Table, Text, create_engine, event, func, select
from sqlalchemy.pool import NullPool

from recflow.core.config import Settings
from recflow.core.urls import shown_url
from recflow.oncall.record import KINDS, Incident

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
        return shown_url(self.url)

    @classmethod
    def of(cls, settings: Settings) -> IncidentStore:
        return cls(store_url(settings))

    @contextmanager
    def _engine(self) -> Iterator[Any]:
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

    def count(self) -> int:
        """How many incidents the store holds (a count query: the store is not read)."""
        if self._absent():
            return 0
        with self._engine() as (engine, table), engine.connect() as con:
            if not engine.dialect.has_table(con, "incidents"):
                return 0
            return int(con.execute(select(func.count()).select_from(table)).scalar_one())

    def find(
        self,
        *,
        dag_id: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        run_id: str | None = None,
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
            if run_id:
                query = query.where(table.c.run_id == run_id)
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
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
        except OverflowError:
            raise ValueError(f"{text!r} reaches back before the year 1: give fewer {_UNITS[unit]}") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO date/date-time (2026-01-03, 2026-01-03T06:00) "
            "nor a duration (30m, 24h, 7d, 2w)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
