"""The environment Airflow, dbt and the tasks run with, derived from ``Settings``.

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
import secrets
from collections.abc import Mapping
from pathlib import Path

from recflow.config import Settings, subprocess_env
from recflow.errors import ConfigError

API_HOST = "127.0.0.1"
ADMIN_USER = "admin"


def api_base_url(settings: Settings) -> str:
    """Where the embedded Airflow's API server (and UI) listens."""
    return f"http://{API_HOST}:{settings.airflow_api_port}"


def _local_secrets(airflow_home: Path) -> dict[str, str]:
    """Secrets the embedded profile generates once and keeps in ``AIRFLOW_HOME`` (never in the repo)."""
    path = airflow_home / "recflow-secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    airflow_home.mkdir(parents=True, exist_ok=True)
    generated = {
        "jwt_secret": secrets.token_urlsafe(32),
        "api_secret_key": secrets.token_urlsafe(32),
        "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }
    path.write_text(json.dumps(generated))
    path.chmod(0o600)
    return generated


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
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_manager_passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__HOST": API_HOST,
        "AIRFLOW__API__PORT": str(port),
        # two embedded Airflows on one machine (a demo beside a test run) must not share a port
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port + 1),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port + 2),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(port + 3),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "15",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__PROPAGATE_LOGS": "False",
        "SCARF_ANALYTICS": "false",
        "DO_NOT_TRACK": "true",
        "GX_ANALYTICS_ENABLED": "False",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **settings.dbt_env(),
    }
    if settings.profile == "production":
        _production_airflow(defaults, current)
    merged = {**defaults, **{k: v for k, v in current.items() if k in defaults}, **settings.to_env()}
    return subprocess_env(merged)


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
    """The generated password of the ``admin`` UI user, once the API server has written it."""
    path = settings.airflow_home / "simple_auth_manager_passwords.json"
    if not path.exists():
        return None
    password = json.loads(path.read_text()).get(ADMIN_USER)
    return str(password) if password else None
