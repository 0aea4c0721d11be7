"""The one typed settings object of recflow.

Every knob of the pipeline is read here, from the environment, once: code asks for ``Settings``
and passes the values it needs down. Each setting is declared once, as a field: its type (with its
bounds), its embedded default and an ``Env`` marker (:mod:`recflow.core.declare`, which derives
``from_env``, ``to_env`` and ``docs/configuration.md`` from those fields). ``RECFLOW_PROFILE`` picks
the defaults: ``embedded`` (one machine, all state under ``RECFLOW_HOME``) or ``production``
(shared services; ``from_env`` refuses to start without the settings it requires).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from recflow.core.checkout import PROJECT_ROOT, read_git_commit
from recflow.core.declare import (
    REQUIRED,
    SETTINGS_CONFIG,
    AbsolutePath,
    ArtifactRoot,
    DatabaseUrl,
    DeclaredSetting,
    Env,
    FolderPath,
    Integer,
    MemorySize,
    MlflowStoreUri,
    Profile,
    Share,
    env_of,
    read_env,
    read_env_despite_refused,
    walk,
)
from recflow.core.errors import ConfigError
from recflow.core.gate import GateSettings
from recflow.core.profiles import dbt_env
from recflow.core.spark import SparkSettings

__all__ = [
    "PROJECT_ROOT",
    "ConfigError",
    "GateSettings",
    "Settings",
    "SparkSettings",
    "declared_settings",
    "subprocess_env",
]

TrainingBackendName = Literal["local", "sagemaker"]
RegistryBackendName = Literal["mlflow", "sagemaker"]


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class Settings:
    """Where state lives and which backends the pipeline talks to."""

    home: Annotated[
        FolderPath,
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
        FolderPath | None,
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
        MemorySize,
        Env(
            "RECFLOW_DUCKDB_MEMORY_LIMIT",
            "Memory DuckDB may use in any process that opens the warehouse (land, the audits, dbt, "
            "snapshot), e.g. `4GB`; beyond it DuckDB spills to a temporary directory beside the file.",
        ),
    ] = "4GB"
    artifact_root: Annotated[
        ArtifactRoot | None,
        Env(
            "RECFLOW_ARTIFACT_ROOT",
            "URI under which snapshots and model archives are stored (`s3://bucket/prefix` or `file://`). "
            "Unset: `$RECFLOW_HOME/artifacts`.",
            production=REQUIRED,
        ),
    ] = None
    mlflow_tracking_uri: Annotated[
        MlflowStoreUri | None,
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
        Field(ge=1, le=10_000),
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
        Field(ge=1, allow_inf_nan=False),
        Env(
            "RECFLOW_VOLUME_MAX_RATIO",
            "A day's event count must lie between the median of recent published days "
            "divided by this and multiplied by it; a catalogue may not shrink below the published one "
            "divided by it.",
        ),
    ] = 5.0
    volume_history_days: Annotated[
        Integer,
        Field(ge=1),
        Env("RECFLOW_VOLUME_HISTORY_DAYS", "How many recent days the volume check compares a day with."),
    ] = 7
    incidents_url: Annotated[
        DatabaseUrl | None,
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
            "Inside Airflow, when it exists, it gives every task the warehouse (dbt included, through the "
            "committed profile's variables) and wins over `RECFLOW_WAREHOUSE_URL`, which serves processes outside Airflow.",
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
        Field(ge=0, le=24 * 366 * 100),  # a century: more overflows the time arithmetic
        Env(
            "RECFLOW_RETENTION_MIN_AGE_HOURS",
            "`recflow gc` never deletes anything modified less than this many hours ago (a run may be "
            "using it before any version references it).",
        ),
    ] = 24
    gate: GateSettings = Field(default_factory=GateSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``env`` alone (``os.environ`` when not given); an empty value counts as unset.
        Raises :class:`ConfigError` naming every invalid variable, or every required one unset."""
        return read_env(cls, declared_settings(), os.environ if env is None else env)

    @classmethod
    def despite_refused(cls) -> tuple[Settings, ConfigError | None]:  # see declare.read_env_despite_refused
        return read_env_despite_refused(cls, declared_settings(), os.environ)

    def to_env(self) -> dict[str, str]:
        """The variables that make ``from_env`` rebuild these settings in a child process."""
        return env_of(self, declared_settings())

    def child_env(self) -> dict[str, str]:
        """``to_env``, and an empty value (unset, to ``from_env``) for every setting left unset, so a child
        rebuilds exactly these even where it inherits others (a shell's RECFLOW_WAREHOUSE_URL)."""
        return {**{setting.env.name: "" for setting in declared_settings()}, **self.to_env()}

    @property
    def git_commit(self) -> str:
        """The deployed commit (``RECFLOW_GIT_COMMIT``, else read from ``.git``), for lineage."""
        return self.git_commit_override or read_git_commit(self.project_root)

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
        """The compiled graph the DAG file draws the ``transform`` group from (the project's own)."""
        return self.dbt_project_dir / "target" / "manifest.json"

    @property
    def dbt_target_dir(self) -> Path:
        """This home's dbt target folder: its builds' compiled SQL, run results and partial-parse state."""
        return self.home / "dbt" / "target"

    @property
    def dbt_log_dir(self) -> Path:
        return self.home / "dbt" / "logs"

    @property
    def dags_dir(self) -> Path:
        return self.project_root / "dags"

    def dbt_env(self) -> dict[str, str]:
        """The variables the committed ``dbt/profiles.yml`` reads (:func:`recflow.core.profiles.dbt_env`)."""
        return dbt_env(self.duckdb_path, self.duckdb_memory_limit, self.dbt_project_dir, self.warehouse_url)


def declared_settings() -> tuple[DeclaredSetting, ...]:
    """Every field of :class:`Settings` (nested groups included) that has an :class:`Env` marker."""
    return _DECLARED


_DECLARED: Final = tuple(walk(Settings, ()))


def subprocess_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra``, for a child process (Airflow, dbt, a training job)."""
    return {**os.environ, **extra}
