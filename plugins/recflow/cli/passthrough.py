"""``recflow airflow ARGS``: Airflow's own CLI with the project's environment, and what the project
knows better than Airflow said before it starts."""

from __future__ import annotations

import argparse

from recflow.core.config import Settings
from recflow.core.days import landing_wait
from recflow.core.names import WAREHOUSE_DAG
from recflow.stack.services import run_airflow


def cmd_airflow(settings: Settings, args: argparse.Namespace) -> int:
    return run_airflow(settings, args.args, check=False, notice=_landing_notice(settings, args.args))


def _landing_notice(settings: Settings, argv: list[str]) -> str | None:
    """Before ``dags test recsys_warehouse [D]`` of a day that has not landed: the run will wait for it,
    for hours, while Airflow prints "No tasks to run" every second; say so and how to land it. Only for
    a day given as the sole argument (or none: today); options such as ``-c`` may name other days."""
    if argv[:3] != ["dags", "test", WAREHOUSE_DAG] or len(argv) > 4 or any(a.startswith("-") for a in argv):
        return None
    import pendulum  # noqa: PLC0415 (Airflow's date parser: only for this command)

    try:  # read as Airflow reads it (naive: UTC, Airflow's default time zone), its day in UTC as the tasks take it
        moment = pendulum.parse(argv[3], tz="UTC", strict=False) if len(argv) == 4 else pendulum.now("UTC")
        day = moment.in_timezone("UTC").date()  # type: ignore[union-attr]
    except (ValueError, AttributeError):  # not a moment (pendulum's ParserError is a ValueError), a duration
        return None  # Airflow says what is wrong with it
    from recflow.ingest.contract import not_landed  # noqa: PLC0415 (pyarrow: only for this command)

    missing = not_landed(settings.landing_dir, [day])
    if missing is None:
        return None
    poke, timeout = landing_wait()
    return (
        f"recflow: ds={day} has not landed ({missing}). This run waits for it, looking every "
        f"{poke} for up to {timeout} (Airflow prints 'No tasks to run' "
        f"meanwhile): land the day in another terminal (`recflow generate --days N --end {day}`, `recflow load "
        "movielens`), or stop with Ctrl-C"
    )
