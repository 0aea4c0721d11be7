"""Which days a warehouse run processes, from its params, logical date and data interval.

One rule for the tasks that do the work (``recflow.airflow.tasks``) and for the commands that pick
runs by the days they processed (``recflow clear -s D``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from recflow.core.errors import ParamsError

LANDING_POKE = timedelta(minutes=2)
"""How often a warehouse run looks again for a day that has not landed."""
LANDING_TIMEOUT = timedelta(hours=6)
"""How long a warehouse run waits for a day to land before it fails (``LandingLate``)."""


def landing_wait() -> tuple[str, str]:
    """:data:`LANDING_POKE` and :data:`LANDING_TIMEOUT` in words (``"2 minutes"``, ``"6 hours"``), as the
    sensor's log and ``recflow airflow dags test`` say them."""
    import humanize  # noqa: PLC0415 (only once a day is found missing, not at DAG parse)

    return str(humanize.naturaldelta(LANDING_POKE)), str(humanize.naturaldelta(LANDING_TIMEOUT))


def _interval(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    if start is None or end is None or start >= end:
        raise ValueError(
            f"this task needs a data interval [start, end) with start < end, got [{start}, {end}): "
            "the DAG must use CronDataIntervalTimetable, not a cron trigger"
        )
    return start, end


def days_to_process(
    params: dict[str, Any] | None,
    logical_date: datetime | None,
    start: datetime | None,
    end: datetime | None,
) -> list[date]:
    """Which landing partitions a warehouse run processes.

    A scheduled or backfill run of day D has ``logical_date = data_interval_start = D``:
    it processes ``ds=D``. A manual run for a logical date D (``airflow dags test
    recsys_warehouse D``, or the UI with a date) processes ``ds=D`` too, although the
    timetable infers it the interval ending at D. Params ``reload_from``/``reload_to`` make it a
    historical reload (``ParamsError`` when only one is given, or the range is reversed). A run
    with neither a logical date nor a reload range (the UI's trigger form with its date cleared:
    Airflow 3 then gives it no data interval either) names no day: ``ParamsError``.
    """
    params = params or {}
    first, last = params.get("reload_from"), params.get("reload_to")
    if first or last:
        if not (first and last):
            raise ParamsError(f"reload_from={first!r} and reload_to={last!r}: give both days or neither")
        lo, hi = date.fromisoformat(str(first)), date.fromisoformat(str(last))
        if hi < lo:
            raise ParamsError(f"reload_to={hi} is before reload_from={lo}")
        return [lo + timedelta(days=i) for i in range((hi - lo).days + 1)]
    if logical_date is not None:
        return [logical_date.astimezone(UTC).date()]
    if start is None and end is None:
        raise ParamsError(
            "this run names no day: it has no logical date (the trigger form's date was cleared) and no "
            "reload_from/reload_to; trigger it again with the day as its logical date, or with both "
            "reload_from and reload_to"
        )
    interval_start, _ = _interval(start, end)
    return [interval_start.date()]
