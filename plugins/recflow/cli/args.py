"""What the command groups share: the type of the ``sub`` they add their commands to, and
argument types (a day as ``YYYY-MM-DD``, a share, a bounded whole number, a port, a regex).

A type refuses a value with :class:`argparse.ArgumentTypeError`: argparse then names the argument
and the command, exits 2, and nothing has been touched yet."""

from __future__ import annotations

import argparse
import calendar
import re
from collections.abc import Callable
from datetime import date
from typing import TypeAlias

from recflow.core.declare import SHARE_BOUNDS
from recflow.core.names import TRAINING_DAG, WAREHOUSE_DAG

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers`` returns: each command group adds its commands to it."""

SQL_INTEGER_MAX = 2**63 - 1
"""The largest integer SQLite and PostgreSQL store (``BIGINT``): an id, a version or a ``LIMIT`` above
it is refused by the database driver with an ``OverflowError``, so it is refused here first."""

_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?=$|[T ])")


def missing_day(text: str) -> str | None:
    """Why ``text``, written ``YYYY-MM-DD`` (maybe followed by a time), names no day of the calendar
    (``2026-02-30``, ``2026-13-01``); ``None`` when it names one, or is not written so."""
    found = _DAY.match(text.strip())
    if found is None:
        return None
    year, month, day = (int(part) for part in found.groups())
    if year == 0:
        return f"{text!r} does not exist: the calendar starts at year 1"
    if not 1 <= month <= 12:
        return f"{text!r} does not exist: there is no month {month} (01 to 12)"
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        return f"{text!r} does not exist: {calendar.month_name[month]} {year} has {days} days"
    return None


_YYYY_MM_DD = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_date(text: str) -> date:
    """A day as YYYY-MM-DD only: Python also reads ``20260103`` and ``2026-W01-1`` (a Monday of the
    previous year's December), which the help does not promise and a typo can produce."""
    try:
        if not _YYYY_MM_DD.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            missing_day(text) or f"{text!r} is not a date (YYYY-MM-DD)"
        ) from None


def share(text: str) -> float:
    """A share of rows (``--max-quarantine-share``), checked here so a paused DAG or a typo does not
    hide the mistake until Airflow refuses the run."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    least, greatest = SHARE_BOUNDS
    if not least <= value <= greatest:  # NaN fails both
        raise argparse.ArgumentTypeError(f"{text} is not a share between {least:g} and {greatest:g}")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise argparse.ArgumentTypeError(f"{shown!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """A count of at least 1 (``--limit``): 0 or a negative number is refused, not read as "no limit"."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count of at least 1")
    return value


def count_up_to(greatest: int, what: str) -> Callable[[str], int]:
    """An argument type: a count from 1 to ``greatest`` (``--limit``): below 1 refused as
    :func:`positive_int` refuses it, above as ``N is not a count of <what> from 1 to <greatest>``."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > greatest:
            raise argparse.ArgumentTypeError(f"{value} is not a count of {what} from 1 to {greatest:,}")
        return value

    return parse


def int_between(least: int, greatest: int, what: str, *, grouped: bool = True) -> Callable[[str], int]:
    """An argument type: a whole number from ``least`` to ``greatest``, refused as ``N is not <what>
    from <least> to <greatest>`` (``grouped``: with thousands separators, as for a count). Where the
    upper bound comes from is said where it is defined."""
    low, high = (f"{least:,}", f"{greatest:,}") if grouped else (str(least), str(greatest))

    def parse(text: str) -> int:
        value = _whole(text)
        if not least <= value <= greatest:
            raise argparse.ArgumentTypeError(f"{value} is not {what} from {low} to {high}")
        return value

    return parse


PORT_RANGE = (1, 65535)
"""The TCP ports a server can be asked to listen on (0 would be "any free port", unknown to the user)."""

tcp_port = int_between(*PORT_RANGE, "a TCP port", grouped=False)


def regex(text: str) -> str:
    """A regular expression (``--task-regex``), compiled here so a typo is refused before Airflow is asked.
    An empty one (an unset shell variable) would match every task: whoever means that says ``.``."""
    if not text:
        raise argparse.ArgumentTypeError("'' matches every task; to mean every task, give '.'")
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular expression: {exc}") from None
    return text


def dag_id(text: str) -> str:
    """A DAG id to filter by, one of recflow's: an empty one was taken as no filter at all, and a typo
    matched nothing, which read as "no incidents"."""
    if text not in (WAREHOUSE_DAG, TRAINING_DAG):
        raise argparse.ArgumentTypeError(
            f"{text!r} is no DAG of recflow's: give {WAREHOUSE_DAG} or {TRAINING_DAG}, "
            "or leave the option out for every DAG's"
        )
    return text


def model_name(text: str) -> str:
    """``--name`` of a registered model: not blank, and without the ``/`` and ``:`` no registry takes (MLflow
    answered either with a traceback, and ``models list --name ""`` listed every model)."""
    if not text.strip() or "/" in text or ":" in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is no model name: give one (`recflow models list` shows them; no '/' or ':')"
        )
    return text


def out_dir(text: str) -> str:
    """A folder to write into: an empty one was taken as the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: give the folder to write into")
    return text


# The synthetic data set's size (``recflow generate``, ``recflow demo``). The upper bounds are where a
# number stops being a size and is a typo: ``--users 10000000000`` asked numpy for 37 GiB at once.
GENERATED_USERS = (1, 10_000_000)
"""Users: the scale benchmark's largest day has 6.1M users (100M events, docs/benchmarks.md); a day of
1M users takes 15 s and 0.7 GB, and the catalogue of every user is held in memory."""
GENERATED_PINS = (1, 10_000_000)
"""Pins: the scale benchmarks go to 1M; 10M pins peak at 1.4 GB (the pin catalogue is held whole)."""
GENERATED_TOPICS = (1, 1_000)
"""Topics: each user's interests are drawn from a row of one key per topic, 100,000 users at a time
(1,000 topics peak at 1.3 GB; 99,999 would need 120 GB), and a topic id is a 16-bit integer."""
SEED_RANGE = (0, 2**32 - 1)
"""A seed is a 32-bit word (numpy's ``SeedSequence`` refuses a negative one)."""

generated_users = int_between(*GENERATED_USERS, "a number of users")
generated_pins = int_between(*GENERATED_PINS, "a number of pins")
generated_topics = int_between(*GENERATED_TOPICS, "a number of topics")
seed = int_between(*SEED_RANGE, "a seed")


def generated_days(text: str) -> int:
    """``--days`` of a generated window: 1 to the generator's own ``MAX_DAYS`` (read when a ``--days``
    is given: its module imports numpy, which the parser must not at start-up)."""
    from recflow.producers.generate import MAX_DAYS  # noqa: PLC0415

    return int_between(1, MAX_DAYS, "a number of days")(text)


def add_world_size(parser: argparse.ArgumentParser) -> None:
    """``--users``, ``--pins`` and ``--seed`` of the synthetic data set (``generate`` and ``demo``), bounded
    where a number stops being a size and is a typo."""
    parser.add_argument(
        "--users",
        type=generated_users,
        default=400,
        help=f"1 to {GENERATED_USERS[1]:,}, held in memory whole (default 400)",
    )
    parser.add_argument(
        "--pins",
        type=generated_pins,
        default=1200,
        help=f"1 to {GENERATED_PINS[1]:,}, held in memory whole (default 1200)",
    )
    parser.add_argument("--seed", type=seed, default=7, help="0 to 2**32 - 1 (default 7)")
