"""The one typed settings object of recflow.

Every knob of the pipeline is read here, from the environment, once. Nothing
else in the package (or in the DAGs) reads environment variables: code asks for
``Settings`` and passes the values it needs down. The defaults are the embedded
profile (DuckDB, SQLite, local files, local training jobs, MLflow on SQLite),
with all state under ``RECFLOW_HOME`` (default ``./.recflow``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from recflow.errors import ConfigError

__all__ = ["ConfigError", "Settings", "subprocess_env"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The repository root: ``plugins/recflow/config.py`` lives two levels below it."""

TrainingBackendName = Literal["local", "sagemaker"]


def _as_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _as_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class GateSettings:
    """Absolute floors a challenger must clear, and how much worse than the champion it may be."""

    min_hr_at_10: float = 0.15
    min_ndcg_at_10: float = 0.07
    tolerance: float = 0.01


@dataclass(frozen=True)
class Settings:
    """Where state lives and which backends the pipeline talks to."""

    home: Path
    project_root: Path = PROJECT_ROOT
    warehouse_path: Path | None = None
    artifact_root: str | None = None
    mlflow_tracking_uri: str | None = None
    training_backend: TrainingBackendName = "local"
    dbt_target: str = "duckdb"
    warehouse_pool_slots: int = 1
    max_quarantine_share: float = 0.01
    volume_max_ratio: float = 5.0
    volume_history_days: int = 7
    alerts_conn_id: str = "recflow_alerts"
    model_name: str = "recsys-demo"
    training_image: str = "recflow-ml:local"
    training_instance_type: str = "ml.m5.xlarge"
    sagemaker_role_arn: str = ""
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    git_commit_override: str | None = None
    gate: GateSettings = field(default_factory=GateSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("RECFLOW_HOME") or PROJECT_ROOT / ".recflow").resolve()
        return cls(
            home=home,
            warehouse_path=Path(env["RECFLOW_WAREHOUSE_PATH"]).resolve()
            if env.get("RECFLOW_WAREHOUSE_PATH")
            else None,
            artifact_root=env.get("RECFLOW_ARTIFACT_ROOT") or None,
            mlflow_tracking_uri=env.get("RECFLOW_MLFLOW_TRACKING_URI") or None,
            training_backend=_choice(  # type: ignore[arg-type]
                env, "RECFLOW_TRAINING_BACKEND", "local", ("local", "sagemaker")
            ),
            dbt_target=env.get("RECFLOW_DBT_TARGET") or "duckdb",
            warehouse_pool_slots=_as_int(env, "RECFLOW_WAREHOUSE_POOL_SLOTS", 1),
            max_quarantine_share=_as_float(env, "RECFLOW_MAX_QUARANTINE_SHARE", 0.01),
            volume_max_ratio=_as_float(env, "RECFLOW_VOLUME_MAX_RATIO", 5.0),
            volume_history_days=_as_int(env, "RECFLOW_VOLUME_HISTORY_DAYS", 7),
            alerts_conn_id=env.get("RECFLOW_ALERTS_CONN_ID") or "recflow_alerts",
            model_name=env.get("RECFLOW_MODEL_NAME") or "recsys-demo",
            training_image=env.get("RECFLOW_TRAINING_IMAGE") or "recflow-ml:local",
            training_instance_type=env.get("RECFLOW_TRAINING_INSTANCE_TYPE") or "ml.m5.xlarge",
            sagemaker_role_arn=env.get("RECFLOW_SAGEMAKER_ROLE_ARN") or "",
            aws_region=env.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_endpoint_url=env.get("RECFLOW_AWS_ENDPOINT_URL") or None,
            git_commit_override=env.get("RECFLOW_GIT_COMMIT") or None,
            gate=GateSettings(
                min_hr_at_10=_as_float(env, "RECFLOW_GATE_MIN_HR_AT_10", 0.15),
                min_ndcg_at_10=_as_float(env, "RECFLOW_GATE_MIN_NDCG_AT_10", 0.07),
                tolerance=_as_float(env, "RECFLOW_GATE_TOLERANCE", 0.01),
            ),
        )

    def to_env(self) -> dict[str, str]:
        """The variables that make ``from_env`` rebuild these settings in a child process."""
        env = {
            "RECFLOW_HOME": str(self.home),
            "RECFLOW_TRAINING_BACKEND": self.training_backend,
            "RECFLOW_DBT_TARGET": self.dbt_target,
            "RECFLOW_WAREHOUSE_POOL_SLOTS": str(self.warehouse_pool_slots),
            "RECFLOW_MAX_QUARANTINE_SHARE": str(self.max_quarantine_share),
            "RECFLOW_VOLUME_MAX_RATIO": str(self.volume_max_ratio),
            "RECFLOW_VOLUME_HISTORY_DAYS": str(self.volume_history_days),
            "RECFLOW_ALERTS_CONN_ID": self.alerts_conn_id,
            "RECFLOW_MODEL_NAME": self.model_name,
            "RECFLOW_TRAINING_IMAGE": self.training_image,
            "RECFLOW_TRAINING_INSTANCE_TYPE": self.training_instance_type,
            "RECFLOW_SAGEMAKER_ROLE_ARN": self.sagemaker_role_arn,
            "AWS_DEFAULT_REGION": self.aws_region,
            "RECFLOW_GATE_MIN_HR_AT_10": str(self.gate.min_hr_at_10),
            "RECFLOW_GATE_MIN_NDCG_AT_10": str(self.gate.min_ndcg_at_10),
            "RECFLOW_GATE_TOLERANCE": str(self.gate.tolerance),
        }
        optional = {
            "RECFLOW_WAREHOUSE_PATH": str(self.warehouse_path) if self.warehouse_path else None,
            "RECFLOW_ARTIFACT_ROOT": self.artifact_root,
            "RECFLOW_MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "RECFLOW_AWS_ENDPOINT_URL": self.aws_endpoint_url,
            "RECFLOW_GIT_COMMIT": self.git_commit_override,
        }
        env.update({k: v for k, v in optional.items() if v})
        return env

    @property
    def git_commit(self) -> str:
        """The deployed commit (``RECFLOW_GIT_COMMIT``, else read from ``.git``), for lineage."""
        return self.git_commit_override or _git_commit(self.project_root)

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

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
    def mlflow_artifact_root(self) -> Path:
        return self.home / "mlflow" / "artifacts"

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
        """The variables the committed ``dbt/profiles.yml`` reads through ``env_var()``."""
        return {
            "RECFLOW_DUCKDB_PATH": str(self.duckdb_path),
            "DBT_PROFILES_DIR": str(self.dbt_project_dir),
        }


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
