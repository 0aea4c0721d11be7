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
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import wraps
from typing import Literal

from recflow.core.config import Settings
from recflow.core.errors import first_line
from recflow.core.urls import shown_url

Command = Callable[[Settings, argparse.Namespace], int]


Kind = Literal["database", "http", "aws"]
"""Which client failed to connect: a database driver's, an HTTP server's (an MLflow tracking server),
AWS's (SageMaker, S3): a command reading several stores names the one of that kind."""


def _connection_failure(exc: BaseException) -> tuple[Kind, str] | None:
    """Which client failed to connect, anywhere in the error's chain (under MLflow's own error, say),
    and its reason's first line; ``None`` for any other error, which keeps its traceback. A database
    error counts only when raised before any statement ran: a statement's own error (a timeout, a
    lock, a missing column) is not a store that cannot be reached."""
    from botocore.exceptions import ConnectionError as AwsConnectionError  # noqa: PLC0415 (only on failure)
    from requests.exceptions import ConnectionError as HttpConnectionError  # noqa: PLC0415 (only on failure)
    from requests.exceptions import RetryError  # noqa: PLC0415 (only on failure)
    from sqlalchemy.exc import OperationalError  # noqa: PLC0415 (only on failure)

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AwsConnectionError):
            return "aws", _first_line(seen)
        if isinstance(seen, OperationalError) and seen.statement is None:
            return "database", _first_line(seen.orig or seen)
        if isinstance(seen, HttpConnectionError | RetryError):  # refused; or a proxy's 503s, retried out
            return "http", _first_line(getattr(seen.args[0] if seen.args else None, "reason", None) or seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _first_line(error: BaseException) -> str:
    """The error's first line, at most 300 characters (urllib3's repeat the URL and the retries)."""
    line = first_line(error)
    return line if len(line) <= 300 else f"{line[:300]}…"


CLI_HTTP_RETRIES = 2
"""Retries of an HTTP request to an MLflow tracking server by a command someone waits for: MLflow's
default (7, with a backoff doubling from 2 s) kept ``recflow models list`` silent for 4.5 minutes before it
said the server refused the connection. The pipeline's tasks keep MLflow's default."""
CLI_HTTP_TIMEOUT_SECONDS = 30
"""How long a command waits for each answer (MLflow's default, 120 s a try, made a filtered host's three
tries six minutes)."""
CLI_DB_TRIES = 3
"""Tries to open a registry on a database server (PostgreSQL, MySQL) by a command someone waits for:
MLflow's own ten, backing off from 0.1 s, kept ``recflow models list`` waiting 100 s and printed nine
warnings before it said the server refused the connection. MLflow reads no setting for it (its module's
``MAX_RETRY_COUNT``), so it is lowered while the command runs and put back after; the tasks keep ten."""
_DB_SCHEMES = ("postgresql", "mysql", "mssql")


@contextmanager
def _fewer_database_tries(settings: Settings) -> Iterator[None]:
    """MLflow's tries to open a registry on a database server cut to :data:`CLI_DB_TRIES` while a command
    runs (its module loads only for such a registry: a second of imports)."""
    if settings.registry_backend != "mlflow" or not settings.mlflow_uri.startswith(_DB_SCHEMES):
        yield
        return
    import mlflow.store.db.utils as db_utils  # noqa: PLC0415 (only for a registry on a database server)

    kept = db_utils.MAX_RETRY_COUNT
    db_utils.MAX_RETRY_COUNT = min(kept, CLI_DB_TRIES)
    try:
        yield
    finally:
        db_utils.MAX_RETRY_COUNT = kept


@contextmanager
def _answering_within_seconds() -> Iterator[None]:
    """MLflow's retries and timeout cut to :data:`CLI_HTTP_RETRIES` and :data:`CLI_HTTP_TIMEOUT_SECONDS` while
    a command runs, each unless the environment sets it (MLflow reads them at each request; they are unset
    again after)."""
    from mlflow.environment_variables import (  # noqa: PLC0415 (only here)
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    cut = [
        (variable, value)
        for variable, value in (
            (MLFLOW_HTTP_REQUEST_MAX_RETRIES, CLI_HTTP_RETRIES),
            (MLFLOW_HTTP_REQUEST_TIMEOUT, CLI_HTTP_TIMEOUT_SECONDS),
        )
        if not variable.is_set()  # type: ignore[no-untyped-call]  # MLflow's, untyped
    ]
    for variable, value in cut:
        variable.set(value)  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        for variable, _ in cut:
            variable.unset()  # type: ignore[no-untyped-call]


def reading(
    store: Callable[[Settings, Kind], tuple[str, str]], *, registry: bool = True
) -> Callable[[Command], Command]:
    """Decorate a command that reads stores: ``store(settings, kind)`` names the one a client of that
    kind failed to reach (what it is and where, without a password) and the variable that names it.
    ``registry``: the command opens the model registry (its database tries are cut too)."""

    def decorate(command: Command) -> Command:
        @wraps(command)
        def run(settings: Settings, args: argparse.Namespace) -> int:
            try:
                with (
                    _answering_within_seconds(),
                    _fewer_database_tries(settings) if registry else nullcontext(),
                ):
                    return command(settings, args)
            except Exception as exc:
                failed = _connection_failure(exc)
                if failed is None:
                    raise
                kind, reason = failed
                shown, variable = store(settings, kind)
                print(f"recflow: cannot reach {shown} ({variable}): {reason}", file=sys.stderr)
                return 1

        return run

    return decorate


def registry_store(settings: Settings, kind: Kind) -> tuple[str, str]:
    """The store a command reading the registry failed to reach: the registry's, or (MLflow's registry
    keeps the model's files there) the artifact store when AWS's client failed under MLflow."""
    if settings.registry_backend == "sagemaker":
        if settings.aws_endpoint_url:
            return f"SageMaker at {shown_url(settings.aws_endpoint_url)}", "RECFLOW_AWS_ENDPOINT_URL"
        return f"SageMaker in {settings.aws_region}", "AWS_DEFAULT_REGION"
    if kind == "aws":
        return f"the artifact store {settings.artifacts_uri}", "RECFLOW_ARTIFACT_ROOT"
    variable = "RECFLOW_MLFLOW_TRACKING_URI" if settings.mlflow_tracking_uri else "RECFLOW_HOME"
    return f"the model registry's store {shown_url(settings.mlflow_uri)}", variable
