"""What the command groups share: the type of the ``sub`` they add their commands to, and
argument types (a day as ``YYYY-MM-DD``)."""

from __future__ import annotations

import argparse
from datetime import date
from typing import TypeAlias

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers`` returns: each command group adds its commands to it."""


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None
