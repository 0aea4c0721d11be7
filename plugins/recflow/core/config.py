"""The one typed settings object of recflow.

Every knob of the pipeline is read here, from the environment, once. Nothing
else in the package (or in the DAGs) reads environment variables: code asks for
``Settings`` and passes the values it needs down.

Each setting is declared once, as a field: its type (with its bounds), its
embedded default, and an :class:`Env` marker that names its variable, says what
it is for and what the production profile does with it. ``from_env``, ``to_env``
and ``docs/configuration.md`` (``make docs-config``) are all derived from those
fields.

``RECFLOW_PROFILE`` picks the defaults: ``embedded`` (DuckDB, SQLite, local files,
local training jobs, MLflow on SQLite, all state under ``RECFLOW_HOME``, default
``./.recflow``) or ``production`` (SageMaker training; the artifact root, the
MLflow tracking URI, the dbt target, the training image and the SageMaker role
must be given, and ``from_env`` refuses to start without them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field, ValidationError
from pydantic.dataclasses import dataclass

from recflow.core.declare import (
    PROFILES,
    REQUIRED,
    SETTINGS_CONFIG,
    AbsolutePath,
    DeclaredSetting,
    Env,
    Integer,
    Profile,
    Share,
    applies,
    explain,
    memory_size,
    read_profile,
    walk,
)
from recflow.core.errors import ConfigError

__all__ = [
    "PROFILES",
    "REQUIRED",
    "ConfigError",
    "DeclaredSetting",
    "Env",
    "GateSettings",
    "Settings",
    "declared_settings",
    "subprocess_env",
]

PROJECT_ROOT = Path(__file__).resolve().parents[3]
"""The repository root: ``plugins/recflow/core/config.py`` lives two levels below it."""

TrainingBackendName = Literal["local", "sagemaker"]
RegistryBackendName = Literal["mlflow", "sagemaker"]


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class GateSettings:
    """Absolute floors a challenger must clear, and how much worse than the champion it may be."""

    min_hr_at_10: Annotated[
        Share,
        Env(
            "RECFLOW_GATE_MIN_HR_AT_10", "Floor on the challenger's hit rate at 10; below it, no publication."
        ),
    ] = 0.15
    min_ndcg_at_10: Annotated[
        Share,
        Env("RECFLOW_GATE_MIN_NDCG_AT_10", "Floor on the challenger's NDCG at 10; below it, no publication."),
    ] = 0.07
    tolerance: Annotated[
        Share,
        Env(
            "RECFLOW_GATE_TOLERANCE",
            "How much lower than the champion's a challenger's metrics may be and still be published.",
        ),
    ] = 0.01


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class Settings:
    """Where state lives and which backends the pipeline talks to."""

    home: Annotated[
        AbsolutePath,
        Env(
            "RECFLOW_HOME",
            "Root of the state this machine keeps: landing zone, Airflow home, incidents, local training jobs "
            "and, in the embedded profile, the warehouse, artifacts and MLflow.",
            shown_default="`./.recflow` in the checkout",
        ),
    ] = PROJECT_ROOT / ".recflow"
    project_root: Path = PROJECT_ROOT
    profile: Annotated[
        Profile,
        Env(
            "RECFLOW_PROFILE",
            "Which defaults apply: `embedded` (one machine, no servers) or `production` "
            "(shared services; refuses to start without the settings marked required).",
        ),
    ] = "embedded"
    warehouse_path: Annotated[
        AbsolutePath | None,
        Env(
            "RECFLOW_WAREHOUSE_PATH",
            "The DuckDB warehouse file. Unset: `$RECFLOW_HOME/warehouse/recflow.duckdb`.",
        ),
    ] = None
    landing_path: Annotated[
        AbsolutePath | None,
        Env(
            "RECFLOW_LANDING_DIR",
            "The landing zone producers write day partitions into. With several workers it must be storage "
            "they all mount (the tasks only read it). Unset: `$RECFLOW_HOME/landing`.",
        ),
    ] = None
    warehouse_url: Annotated[
        str | None,
        Env(
            "RECFLOW_WAREHOUSE_URL",
            "SQLAlchemy URL of a server warehouse, `postgresql://user:password@host:5432/db`; every step "
            "(land, the audits, dbt, snapshot) uses it instead of the DuckDB file. Unset: the DuckDB file.",
        ),
    ] = None
    duckdb_memory_limit: Annotated[
        str,
        AfterValidator(memory_size),
        Env(
            "RECFLOW_DUCKDB_MEMORY_LIMIT",
            "Memory DuckDB may use in any process that opens the warehouse (land, the audits, dbt, "
            "snapshot), e.g. `4GB`; beyond it DuckDB spills to a temporary directory beside the file.",
        ),
    ] = "4GB"
    artifact_root: Annotated[
        str | None,
        Env(
            "RECFLOW_ARTIFACT_ROOT",
            "URI under which snapshots and model archives are stored (`s3://bucket/prefix` or `file://`). "
            "Unset: `$RECFLOW_HOME/artifacts`.",
            production=REQUIRED,
        ),
    ] = None
    mlflow_tracking_uri: Annotated[
        str | None,
        Env(
            "RECFLOW_MLFLOW_TRACKING_URI",
            "MLflow tracking and registry store. Unset: SQLite at `$RECFLOW_HOME/mlflow/mlflow.db`.",
            production=REQUIRED,
        ),
    ] = None
    registry_backend: Annotated[
        RegistryBackendName,
        Env(
            "RECFLOW_REGISTRY_BACKEND",
            "Where model versions are published and the champion is kept: MLflow's model registry, or "
            "SageMaker's Model Registry (a model package group per model name).",
        ),
    ] = "mlflow"
    training_backend: Annotated[
        TrainingBackendName,
        Env(
            "RECFLOW_TRAINING_BACKEND",
            "Where training jobs run: a local subprocess honouring the SageMaker container contract, or SageMaker.",
            production="sagemaker",
        ),
    ] = "local"
    dbt_target: Annotated[
        str,
        Env(
            "RECFLOW_DBT_TARGET",
            "The output of `dbt/profiles.yml` that dbt runs against.",
            production=REQUIRED,
        ),
    ] = "duckdb"
    airflow_api_port: Annotated[
        Integer,
        Field(ge=1024, le=65532),
        Env(
            "RECFLOW_AIRFLOW_API_PORT",
            "Port of the embedded Airflow's API server and UI on 127.0.0.1; its worker and triggerer "
            "log servers and the scheduler's health check take the next three ports.",
        ),
    ] = 8080
    warehouse_pool_slots: Annotated[
        Integer,
        Field(ge=1),
        Env("RECFLOW_WAREHOUSE_POOL_SLOTS", "Slots of the Airflow pool that every warehouse task runs in."),
    ] = 1
    max_quarantine_share: Annotated[
        Share,
        Env(
            "RECFLOW_MAX_QUARANTINE_SHARE",
            "Largest share of a day's events that may break row rules (and be quarantined) "
            "before the whole day is refused.",
        ),
    ] = 0.01
    volume_max_ratio: Annotated[
        float,
        Field(ge=1),
        Env(
            "RECFLOW_VOLUME_MAX_RATIO",
            "A day's event count must lie between the median of recent published days "
            "divided by this and multiplied by it.",
        ),
    ] = 5.0
    volume_history_days: Annotated[
        Integer,
        Field(ge=1),
        Env("RECFLOW_VOLUME_HISTORY_DAYS", "How many recent days the volume check compares a day with."),
    ] = 7
    incidents_url: Annotated[
        str | None,
        Env(
            "RECFLOW_INCIDENTS_URL",
            "SQLAlchemy URL of the incident store (one record per failed task), a database every worker and "
            "the on-call's `recflow incidents` reach, e.g. `postgresql://…/recflow`. Unset: SQLite at "
            "`$RECFLOW_HOME/incidents.db`.",
            production=REQUIRED,
        ),
    ] = None
    alerts_conn_id: Annotated[
        str,
        Env(
            "RECFLOW_ALERTS_CONN_ID",
            "Airflow connection (Apprise) that failed tasks are reported through, when it exists.",
        ),
    ] = "recflow_alerts"
    model_name: Annotated[
        str,
        Env("RECFLOW_MODEL_NAME", "Registered model name that training publishes to."),
    ] = "recsys-demo"
    training_image: Annotated[
        str,
        Env(
            "RECFLOW_TRAINING_IMAGE",
            "Container image of the training job, built from `ml/Dockerfile` (an ECR URI for SageMaker).",
            production=REQUIRED,
            required_if=("training_backend", "sagemaker"),
        ),
    ] = "recflow-ml:local"
    training_instance_type: Annotated[
        str,
        Env("RECFLOW_TRAINING_INSTANCE_TYPE", "SageMaker instance type of a training job."),
    ] = "ml.m5.xlarge"
    training_instance_count: Annotated[
        Integer,
        Field(ge=1, le=16),
        Env(
            "RECFLOW_TRAINING_INSTANCE_COUNT",
            "SageMaker instances of a training job; more than one trains data-parallel on "
            "MultiWorkerMirroredStrategy (docs/model.md). The local backend runs one.",
        ),
    ] = 1
    sagemaker_role_arn: Annotated[
        str,
        Env(
            "RECFLOW_SAGEMAKER_ROLE_ARN",
            "IAM role that SageMaker training jobs run as.",
            production=REQUIRED,
            required_if=("training_backend", "sagemaker"),
        ),
    ] = ""
    aws_region: Annotated[
        str,
        Env("AWS_DEFAULT_REGION", "AWS region of S3 and SageMaker."),
    ] = "us-east-1"
    aws_conn_id: Annotated[
        str,
        Env(
            "RECFLOW_AWS_CONN_ID",
            "Airflow connection whose credentials (keys, or a role to assume) Airflow's tasks and triggerer "
            "use for S3 and SageMaker; without it, boto3's own chain (environment, instance or pod role).",
        ),
    ] = "aws_default"
    warehouse_conn_id: Annotated[
        str,
        Env(
            "RECFLOW_WAREHOUSE_CONN_ID",
            "Airflow connection of a server warehouse (PostgreSQL), read when `RECFLOW_DBT_TARGET=postgres`. "
            "Inside Airflow, when it exists, it gives every task the warehouse (dbt through a Cosmos profile "
            "mapping) and wins over `RECFLOW_WAREHOUSE_URL`, which serves processes outside Airflow.",
        ),
    ] = "recflow_warehouse"
    aws_endpoint_url: Annotated[
        str | None,
        Env(
            "RECFLOW_AWS_ENDPOINT_URL",
            "Endpoint for S3 and SageMaker instead of AWS's own (a moto server in tests). Unset: AWS.",
        ),
    ] = None
    git_commit_override: Annotated[
        str | None,
        Env(
            "RECFLOW_GIT_COMMIT",
            "The deployed commit recorded in lineage. Unset: read from `.git` in the checkout.",
        ),
    ] = None
    retention_keep_last: Annotated[
        Integer,
        Field(ge=1),
        Env(
            "RECFLOW_RETENTION_KEEP_LAST",
            "`recflow gc` keeps, of each kind (snapshots, checkpoints, model archives, serving archives, "
            "evaluations, job folders), the N most recently modified that no registered version references, "
            "besides every one a version references (docs/runbooks/recsys_train_and_publish.md).",
        ),
    ] = 5
    retention_min_age_hours: Annotated[
        Integer,
        Field(ge=0),
        Env(
            "RECFLOW_RETENTION_MIN_AGE_HOURS",
            "`recflow gc` never deletes anything modified less than this many hours ago (a run may be "
            "using it before any version references it).",
        ),
    ] = 24
    gate: GateSettings = Field(default_factory=GateSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``env`` alone (``os.environ`` when not given); an empty value counts as unset.

        Raises :class:`ConfigError` naming every variable whose value is invalid, or,
        in the production profile, every variable that must be set and is not.
        """
        env = os.environ if env is None else env
        given = {s.env.name: env[s.env.name] for s in declared_settings() if env.get(s.env.name)}
        profile = read_profile(given)
        values: dict[str, Any] = {}
        unset_required: list[DeclaredSetting] = []
        for setting in declared_settings():
            if setting.env.name in given:
                value: object = given[setting.env.name]
            elif profile == "production" and setting.env.production is REQUIRED:
                unset_required.append(setting)
                continue
            elif profile == "production" and setting.env.production is not None:
                value = setting.env.production
            else:
                continue
            group = values
            for part in setting.path[:-1]:
                group = group.setdefault(part, {})
            group[setting.path[-1]] = value
        try:
            settings = cls(**values)
        except ValidationError as error:
            raise ConfigError(explain(error, declared_settings())) from None
        missing = [s for s in unset_required if applies(s, settings)]
        if missing:
            raise ConfigError(
                "RECFLOW_PROFILE=production needs these variables set (docs/configuration.md):\n"
                + "\n".join(f"  {s.env.name}: {s.env.help}" for s in missing)
            )
        return settings

    def to_env(self) -> dict[str, str]:
        """The variables that make ``from_env`` rebuild these settings in a child process."""
        env = {}
        for setting in declared_settings():
            value = setting.value_in(self)
            if value is not None:
                env[setting.env.name] = str(value)
        return env

    def child_env(self) -> dict[str, str]:
        """``to_env``, and an empty value (unset, to ``from_env``) for every setting left unset: what a
        child process's environment needs so that it rebuilds exactly these settings even where it
        inherits others (a benchmark's own home, started from a shell that sets RECFLOW_WAREHOUSE_URL)."""
        return {**{setting.env.name: "" for setting in declared_settings()}, **self.to_env()}

    @property
    def git_commit(self) -> str:
        """The deployed commit (``RECFLOW_GIT_COMMIT``, else read from ``.git``), for lineage."""
        return self.git_commit_override or _git_commit(self.project_root)

    @property
    def landing_dir(self) -> Path:
        return self.landing_path or self.home / "landing"

    @property
    def incidents_path(self) -> Path:
        """The incident store (SQLite): one record per failed task, kept across processes."""
        return self.home / "incidents.db"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def duckdb_path(self) -> Path:
        return self.warehouse_path or self.home / "warehouse" / "recflow.duckdb"

    @property
    def artifacts_uri(self) -> str:
        return self.artifact_root or (self.home / "artifacts").as_uri()

    @property
    def jobs_dir(self) -> Path:
        """Where the local training backend keeps one folder per training job."""
        return self.home / "jobs"

    @property
    def mlflow_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> str:
        """Where MLflow's experiment keeps run artifacts: under the artifact root when one is configured
        (so every worker reads what another wrote), else a local folder under ``RECFLOW_HOME``."""
        if self.artifact_root:
            return f"{self.artifact_root.rstrip('/')}/mlflow"
        return (self.home / "mlflow" / "artifacts").as_uri()

    @property
    def dbt_project_dir(self) -> Path:
        return self.project_root / "dbt"

    @property
    def dbt_manifest_path(self) -> Path:
        return self.dbt_project_dir / "target" / "manifest.json"

    @property
    def dags_dir(self) -> Path:
        return self.project_root / "dags"

    def dbt_env(self) -> dict[str, str]:
        """The variables the committed ``dbt/profiles.yml`` reads through ``env_var()``.

        With a server warehouse, its URL is split into the ``RECFLOW_WAREHOUSE_*`` parts the
        ``postgres`` output reads (the password only travels in the environment)."""
        env = {
            "RECFLOW_DUCKDB_PATH": str(self.duckdb_path),
            "RECFLOW_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit,
            "DBT_PROFILES_DIR": str(self.dbt_project_dir),
        }
        if self.warehouse_url:
            from sqlalchemy.engine import make_url

            url = make_url(self.warehouse_url)
            env.update(
                {
                    "RECFLOW_WAREHOUSE_HOST": url.host or "127.0.0.1",
                    "RECFLOW_WAREHOUSE_PORT": str(url.port or 5432),
                    "RECFLOW_WAREHOUSE_USER": url.username or "",
                    "RECFLOW_WAREHOUSE_PASSWORD": url.password or "",
                    "RECFLOW_WAREHOUSE_DBNAME": url.database or "",
                }
            )
        return env


def declared_settings() -> tuple[DeclaredSetting, ...]:
    """Every field of :class:`Settings` (nested groups included) that has an :class:`Env` marker."""
    return _DECLARED


_DECLARED: Final = tuple(walk(Settings, ()))


def subprocess_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra``, for a child process (Airflow, dbt, a training job)."""
    return {**os.environ, **extra}


def _git_commit(root: Path) -> str:
    """The checked-out commit, read from ``.git`` without running git."""
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
    except OSError:
        return "unknown"
    if not ref.startswith("ref: "):
        return ref[:40]
    ref_path = root / ".git" / ref[5:]
    if ref_path.exists():
        return ref_path.read_text().strip()[:40]
    packed = root / ".git" / "packed-refs"
    if packed.exists():
        for line in packed.read_text().splitlines():
            if line.endswith(ref[5:]):
                return line.split()[0][:40]
    return "unknown"
