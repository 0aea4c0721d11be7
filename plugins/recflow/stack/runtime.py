"""Airflow's environment: the variables Airflow, dbt and the tasks run with, derived from ``Settings``.

``recflow airflow ...`` and ``make up``/``make demo`` start every Airflow
process with this environment, so the scheduler, the DAG processor, the API
server and the task processes they spawn agree on one ``AIRFLOW_HOME``, one
metadata database and one JWT secret, and the tasks rebuild the caller's
``Settings`` (``Settings.to_env``). ``AIRFLOW__*`` values already set in the
caller's environment win over the embedded defaults (that is how the
production profile points the same DAGs at PostgreSQL and CeleryExecutor).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path

from recflow.core.config import Settings, subprocess_env
from recflow.core.errors import ConfigError

API_HOST = "127.0.0.1"
ADMIN_USER = "admin"


def api_base_url(settings: Settings) -> str:
    """Where the embedded Airflow's API server (and UI) listens."""
    return f"http://{API_HOST}:{settings.airflow_api_port}"


PRIVATE_MODE = 0o600
"""Files that hold a secret are readable by their owner only, from the first byte written."""


def _keep_private(path: Path) -> None:
    """Take group and other access from an existing secret file (one an older version left wider)."""
    if path.stat().st_mode & 0o077:
        path.chmod(PRIVATE_MODE)


def _write_private_once(path: Path, content: str) -> bool:
    """Create ``path`` holding ``content``, owner-only from the start: the content goes to a
    ``tempfile.mkstemp`` file (mode 0600 whatever the umask) in the same folder, which is then
    hard-linked to ``path``. The link is atomic and never replaces, so of two processes racing
    to create the file exactly one wins and the other reads the winner's. False: it existed."""
    descriptor, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(content)
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


def _local_secrets(airflow_home: Path) -> dict[str, str]:
    """Secrets the embedded profile generates once and keeps in ``AIRFLOW_HOME`` (never in the repo)."""
    path = airflow_home / "recflow-secrets.json"
    airflow_home.mkdir(parents=True, exist_ok=True)
    generated = {
        "jwt_secret": secrets.token_urlsafe(32),
        "api_secret_key": secrets.token_urlsafe(32),
        "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }
    if _write_private_once(path, json.dumps(generated)):
        return generated
    _keep_private(path)
    stored: dict[str, str] = json.loads(path.read_text())
    return stored


PASSWORDS_FILE = "simple_auth_manager_passwords.json"


def _passwords_file(airflow_home: Path) -> Path:
    """Where Airflow's simple auth manager keeps the generated UI passwords (in plain text). It opens
    the file for appending, so a file that exists keeps its mode: created here, empty and owner-only,
    the passwords it writes are never readable by others."""
    path = airflow_home / PASSWORDS_FILE
    if not _write_private_once(path, ""):
        _keep_private(path)
    return path


EMBEDDED_TUNING: dict[str, tuple[str, str]] = {
    "AIRFLOW__CORE__PARALLELISM": (
        "4",
        "LocalExecutor's worker processes: 2 cores; a warehouse day runs one task at a time (the "
        "one-slot warehouse pool), the dbt node tasks end in the triggerer, so more only adds memory",
    ),
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": (
        "0.25",
        "seconds the scheduler sleeps after a loop with nothing to do: each task hop waits for a loop "
        "(Airflow 3 has no mini scheduler). Measured by `make bench-overhead` on 2 cores: a scheduled "
        "day 10.7 s at Airflow's default 1 s, 8.3 s at 0.25 s (docs/benchmarks.md)",
    ),
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": (
        "15",
        "seconds between scans of dags/ for new files: a fresh home sees its DAGs within seconds, "
        "and the parser's CPU is not taken from the tasks on 2 cores",
    ),
}
"""The embedded Airflow's settings chosen for 2 cores: value and reason, each in one place (the
overhead benchmark records them beside its figures)."""


def airflow_tuning() -> dict[str, str]:
    """:data:`EMBEDDED_TUNING`'s values."""
    return {key: value for key, (value, _) in EMBEDDED_TUNING.items()}


def embedded_metadata_db(settings: Settings) -> str:
    """The embedded profile's Airflow metadata database: SQLite, in ``AIRFLOW_HOME``."""
    return f"sqlite:///{settings.airflow_home / 'airflow.db'}"


def airflow_env(settings: Settings, current: Mapping[str, str]) -> dict[str, str]:
    """The full environment for an Airflow process; ``current`` is the caller's environment."""
    home = settings.airflow_home
    keys = _local_secrets(home)
    port = settings.airflow_api_port
    base_url = api_base_url(settings)
    defaults = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.project_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(_passwords_file(home)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": embedded_metadata_db(settings),
        "AIRFLOW__API__HOST": API_HOST,
        "AIRFLOW__API__PORT": str(port),
        # two embedded Airflows on one machine (a demo beside a test run) must not share a port
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port + 1),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port + 2),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(port + 3),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": API_HOST,
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        **airflow_tuning(),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "SCARF_ANALYTICS": "false",
        "DO_NOT_TRACK": "true",
        "GX_ANALYTICS_ENABLED": "False",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **settings.dbt_env(),
    }
    defaults.update(warehouse_connection(settings))
    if settings.profile == "production":
        _production_airflow(defaults, current)
    merged = {**defaults, **{k: v for k, v in current.items() if k in defaults}, **settings.child_env()}
    return subprocess_env(merged)


def warehouse_connection(settings: Settings) -> dict[str, str]:
    """The embedded Airflow's ``recflow_warehouse`` connection, from ``RECFLOW_WAREHOUSE_URL``, when the dbt
    target reads one (``postgres``, ``spark``: the build reads it too) and the caller gave none:
    ``RECFLOW_WAREHOUSE_URL`` and ``RECFLOW_DBT_TARGET`` alone then point a local stack's dbt at the same
    warehouse as its other steps. A production deployment defines the connection itself (docs/deploy.md)."""
    if (
        settings.profile != "embedded"
        or not settings.warehouse_url
        or settings.dbt_target not in ("postgres", "spark")
    ):
        return {}
    from sqlalchemy.engine import make_url  # noqa: PLC0415 (sqlalchemy: only a server warehouse needs it)

    url = make_url(settings.warehouse_url)
    connection: dict[str, object] = {
        "conn_type": settings.dbt_target,
        "host": url.host or "127.0.0.1",
        "port": int(settings.dbt_env()["RECFLOW_WAREHOUSE_PORT"]),
        "login": url.username or "",
        "password": url.password or "",
        "schema": url.database or "",
    }
    connection = {key: value for key, value in connection.items() if value != ""}
    return {f"AIRFLOW_CONN_{settings.warehouse_conn_id.upper()}": json.dumps(connection)}


PRODUCTION_AIRFLOW_REQUIRED = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL")
"""What the production profile's Airflow must be given: a shared metadata database and a broker."""


def _production_airflow(defaults: dict[str, str], current: Mapping[str, str]) -> None:
    """The production profile's Airflow: CeleryExecutor on the given metadata database and broker
    (docs/deploy.md); no SQLite or LocalExecutor default survives."""
    missing = [name for name in PRODUCTION_AIRFLOW_REQUIRED if not current.get(name)]
    if missing:
        raise ConfigError(
            f"RECFLOW_PROFILE=production runs Airflow on CeleryExecutor and needs {', '.join(missing)} "
            "(a PostgreSQL metadata database, a Redis broker: docs/deploy.md)"
        )
    defaults["AIRFLOW__CORE__EXECUTOR"] = "CeleryExecutor"
    for name in PRODUCTION_AIRFLOW_REQUIRED:
        defaults[name] = current[name]


def admin_password(settings: Settings) -> str | None:
    """The generated password of the ``admin`` UI user, once the API server has written it. A file that
    is not the JSON object Airflow writes is a :class:`ConfigError` naming it and what to do."""
    path = settings.airflow_home / PASSWORDS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        passwords = json.loads(text.strip() or "{}")  # empty until the API server writes it
    except ValueError as exc:
        problem = f"is not JSON ({exc})"
    else:
        if isinstance(passwords, dict):
            password = passwords.get(ADMIN_USER)
            return str(password) if password else None
        problem = f"holds a JSON {type(passwords).__name__}, not the object of user names Airflow writes"
    raise ConfigError(
        f"{path} {problem}: Airflow's API server cannot read its admin password from it either. Stop "
        "Airflow (`recflow down`), delete the file, and start it again (`recflow up`): it writes a new "
        "admin password there"
    )
