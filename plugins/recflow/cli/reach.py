"""A store a command reads that cannot be reached, in one line instead of a driver's traceback.

The incidents' database and the model registry's store (MLflow's database or tracking server, or
SageMaker's endpoint) are servers in the production profile; when one is down or misnamed, on-call's
first command printed psycopg's, urllib3's or botocore's traceback. The
line names the store without its password, the variable that named it and the store's own reason.
Only failures to connect are turned into a line: any other error keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import wraps

from recflow.core.config import Settings

Command = Callable[[Settings, argparse.Namespace], int]


def _connection_failure(exc: BaseException) -> str | None:
    """The reason of a failure to connect anywhere in the error's chain (a driver's, the HTTP client's
    under MLflow's own error, botocore's), its first line; ``None`` for any other error."""
    from botocore.exceptions import ConnectionError as AwsConnectionError  # noqa: PLC0415 (only on failure)
    from requests.exceptions import ConnectionError as HttpConnectionError  # noqa: PLC0415 (only on failure)
    from sqlalchemy.exc import OperationalError  # noqa: PLC0415 (only on failure)

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AwsConnectionError):  # the SageMaker registry's endpoint
            return str(seen).strip().splitlines()[0]
        if isinstance(seen, OperationalError):
            return str(seen.orig or seen).strip().splitlines()[0]
        if isinstance(seen, HttpConnectionError):  # urllib3's last try's reason, not its retry summary
            last_try = getattr(seen.args[0] if seen.args else None, "reason", None) or seen
            reason = str(last_try).strip().splitlines()[0]
            return reason if len(reason) <= 300 else f"{reason[:300]}…"
        seen = seen.__cause__ or seen.__context__
    return None


def reading(what: str, store: Callable[[Settings], tuple[str, str]]) -> Callable[[Command], Command]:
    """Decorate a command that reads ``what`` (for the message), kept where ``store(settings)`` says:
    its name for people (no password) and the variable that names it."""

    def decorate(command: Command) -> Command:
        @wraps(command)
        def run(settings: Settings, args: argparse.Namespace) -> int:
            try:
                return command(settings, args)
            except Exception as exc:
                reason = _connection_failure(exc)
                if reason is None:
                    raise
                shown, variable = store(settings)
                print(f"recflow: cannot reach {what} {shown} ({variable}): {reason}", file=sys.stderr)
                return 1

        return run

    return decorate
