"""The model registry: MLflow (embedded default: a SQLite file and a local artifact root).

A published model is an MLflow run (metrics, hyperparameters, the SavedModel
as artifacts) plus a registered model version tagged with its lineage; the
alias ``champion`` points at the version serving traffic. MLflow metric names
cannot contain ``@``, so ``hr@10`` is stored as ``hr_at_10`` and mapped back.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.config import Settings

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

CHAMPION = "champion"
EXPERIMENT = "recflow"
LINEAGE_PREFIX = "lineage."


def to_mlflow_key(metric: str) -> str:
    return metric.replace("@", "_at_")


def from_mlflow_key(key: str) -> str:
    return key.replace("_at_", "@")


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: int
    aliases: list[str]
    metrics: dict[str, float]
    params: dict[str, str]
    lineage: dict[str, str]
    created_at: str
    source: str
    run_id: str = field(default="")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "aliases": self.aliases,
            "metrics": self.metrics,
            "params": self.params,
            "lineage": self.lineage,
            "created_at": self.created_at,
            "source": self.source,
        }


class MlflowRegistry:
    def __init__(self, settings: Settings) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        if settings.mlflow_uri.startswith("sqlite:///"):
            Path(settings.mlflow_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.tracking_uri = settings.mlflow_uri
        mlflow.set_tracking_uri(self.tracking_uri)
        self.client: MlflowClient = MlflowClient(
            tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
        )

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = self.settings.mlflow_artifact_root
        location.mkdir(parents=True, exist_ok=True)
        return str(self.client.create_experiment(EXPERIMENT, artifact_location=location.as_uri()))

    def _info(self, mv: Any) -> ModelVersionInfo:
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        if mv.run_id:
            run = self.client.get_run(mv.run_id)
            metrics = {from_mlflow_key(k): float(v) for k, v in run.data.metrics.items()}
            params = dict(run.data.params)
        return ModelVersionInfo(
            name=mv.name,
            version=int(mv.version),
            aliases=sorted(getattr(mv, "aliases", []) or []),
            metrics=metrics,
            params=params,
            lineage={
                k.removeprefix(LINEAGE_PREFIX): v for k, v in mv.tags.items() if k.startswith(LINEAGE_PREFIX)
            },
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(),
            source=mv.source,
            run_id=mv.run_id or "",
        )

    def get_by_alias(self, name: str, alias: str = CHAMPION) -> ModelVersionInfo | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self.client.get_model_version_by_alias(name, alias))
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def list_versions(self, name: str | None = None) -> list[ModelVersionInfo]:
        query = f"name = '{name}'" if name else ""
        versions = self.client.search_model_versions(query)
        infos = [self._info(self.client.get_model_version(mv.name, mv.version)) for mv in versions]
        return sorted(infos, key=lambda i: (i.name, i.version))

    def publish(
        self,
        name: str,
        model_dir: Path,
        metrics: dict[str, float],
        params: dict[str, str],
        lineage: dict[str, str],
        *,
        alias: str = CHAMPION,
    ) -> ModelVersionInfo:
        """Log the SavedModel and its metrics as a run, register it as a new version, move ``alias`` to it."""
        from mlflow.exceptions import MlflowException

        run = self.client.create_run(self._experiment_id(), run_name=lineage.get("training_job_name"))
        run_id = run.info.run_id
        for key, value in metrics.items():
            self.client.log_metric(run_id, to_mlflow_key(key), value)
        for key, param in params.items():
            self.client.log_param(run_id, key, param)
        for key, tag in lineage.items():
            self.client.set_tag(run_id, f"{LINEAGE_PREFIX}{key}", tag)
        self.client.log_artifacts(run_id, str(model_dir), artifact_path="model")
        self.client.set_terminated(run_id)
        try:
            self.client.create_registered_model(name, description="Two-tower retrieval model (recflow)")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{run.info.artifact_uri}/model"
        mv = self.client.create_model_version(
            name, source, run_id=run_id, tags={f"{LINEAGE_PREFIX}{k}": v for k, v in lineage.items()}
        )
        self.client.set_registered_model_alias(name, alias, mv.version)
        log.info(
            "registered %s version %s from run %s; alias %r now points to it", name, mv.version, run_id, alias
        )
        return self._info(self.client.get_model_version(name, mv.version))

    def download(self, info: ModelVersionInfo, out: Path) -> Path:
        """The version's SavedModel, copied into ``out`` (which must not exist or be empty)."""
        import mlflow.artifacts

        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} is not empty: refusing to overwrite it")
        out.mkdir(parents=True, exist_ok=True)
        with_files = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=info.source, dst_path=str(out.parent / f".{out.name}.dl")
            )
        )
        for child in with_files.iterdir():
            shutil.move(str(child), out / child.name)
        shutil.rmtree(out.parent / f".{out.name}.dl", ignore_errors=True)
        return out
