"""The environment dbt's committed profile (``dbt/profiles.yml``) reads, derived from the settings.

Callers set ``DBT_PROFILES_DIR`` to the dbt project and pick an output with ``--target``
(``RECFLOW_DBT_TARGET``): ``duckdb`` reads the file's path and memory limit, ``postgres`` and
``spark`` read the ``RECFLOW_WAREHOUSE_*`` parts of ``RECFLOW_WAREHOUSE_URL`` (the password only
ever travels in the environment).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

DBT_VARIABLES = frozenset(
    {
        "RECFLOW_DUCKDB_PATH",
        "RECFLOW_DUCKDB_MEMORY_LIMIT",
        "RECFLOW_WAREHOUSE_HOST",
        "RECFLOW_WAREHOUSE_PORT",
        "RECFLOW_WAREHOUSE_USER",
        "RECFLOW_WAREHOUSE_PASSWORD",
        "RECFLOW_WAREHOUSE_DBNAME",
    }
)
"""The ``RECFLOW_`` variables :func:`dbt_env` makes for dbt: not settings, but derived from them, so a
process that runs dbt may hold them (``recflow.core.declare`` does not take them for misspelled settings)."""

DEFAULT_PORTS = {"postgresql": 5432, "hive": 10000}
"""The port of a server warehouse whose URL names none, by the URL's scheme (without its driver)."""


def dbt_env(
    duckdb_path: Path, memory_limit: str, project_dir: Path, warehouse_url: str | None
) -> dict[str, str]:
    """The variables the committed ``dbt/profiles.yml`` reads through ``env_var()`` (``Settings.dbt_env``
    passes its values); a server warehouse's URL is split into the ``RECFLOW_WAREHOUSE_*`` parts its
    output reads."""
    env = {
        "RECFLOW_DUCKDB_PATH": str(duckdb_path),
        "RECFLOW_DUCKDB_MEMORY_LIMIT": memory_limit,
        "DBT_PROFILES_DIR": str(project_dir),
    }
    if warehouse_url:
        from sqlalchemy.engine import make_url  # noqa: PLC0415 (sqlalchemy: only a server warehouse needs it)

        url = make_url(warehouse_url)
        env.update(
            {
                "RECFLOW_WAREHOUSE_HOST": url.host or "127.0.0.1",
                "RECFLOW_WAREHOUSE_PORT": str(url.port or DEFAULT_PORTS.get(url.get_backend_name(), 5432)),
                "RECFLOW_WAREHOUSE_USER": url.username or "",
                "RECFLOW_WAREHOUSE_PASSWORD": url.password or "",
                "RECFLOW_WAREHOUSE_DBNAME": url.database or "",
            }
        )
    return env


@contextmanager
def dbt_environ(env: Mapping[str, str]) -> Iterator[None]:
    """This process's environment with ``env`` set while dbt runs in it (its ``env_var()`` reads
    ``os.environ``), then as it was: the values (a warehouse password among them) do not outlive the build."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
