"""What the command groups share: the type of the ``sub`` they add their commands to, and
argument types (a day as ``YYYY-MM-DD``)."""

from __future__ import annotations

import argparse
from datetime import date
from typing import TypeAlias

from recflow.core.declare import SHARE_BOUNDS

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers`` returns: each command group adds its commands to it."""


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


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


def positive_int(text: str) -> int:
    """A count of at least 1 (``--limit``): 0 or a negative number is refused, not read as "no limit"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count of at least 1")
    return value
