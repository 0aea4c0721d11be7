"""The incident record: one failed task, what it was, why, what it leaves stale and what to do.

:class:`Incident` is built by :mod:`recflow.oncall.incidents`, kept by :mod:`recflow.oncall.store`
and read by ``recflow incidents list`` / ``show``; its JSON keys are documented in
``docs/incidents.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, get_args

from recflow.core.names import WAREHOUSE_DAG

Kind = Literal["data", "training_job", "sensor_timeout", "transform", "pipeline", "infrastructure"]
KINDS: tuple[str, ...] = get_args(Kind)


ON_CALL = "ON-CALL:"
"""What the line a failed task's log ends with starts with (:meth:`Incident.on_call_line`)."""


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

    @property
    def advice(self) -> str:
        """``what_to_do`` with the runbook's ``ID`` filled in once the incident is stored (its number)."""
        return self.what_to_do if self.id is None else re.sub(r"\bID\b", str(self.id), self.what_to_do)

    def on_call_line(self) -> str:
        """The one line the task log ends with."""
        return (
            f"{ON_CALL} {self.what} | why: {self.root_cause} | what to do: {self.advice} "
            f"| runbook: {self.runbook} | incident: {self.reference}"
        )

    def notification_body(self) -> str:
        return (
            f"{self.root_cause}\n"
            f"What to do: {self.advice}\n"
            f"Runbook: {self.runbook}\n"
            f"Incident: {self.reference}"
        )


def days_text(first: date, last: date) -> str:
    """Days ``first`` to ``last`` (inclusive) in words: ``2026-03-04``, or ``2026-01-01..2026-01-07``."""
    return first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"
