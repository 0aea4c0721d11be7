"""The model registry on MLflow (embedded default: a SQLite file and a local artifact root).

A published model is an MLflow run (metrics as ``hr_at_10`` for ``hr@10``, hyperparameters, the
SavedModel) plus a registered model version tagged with its lineage; the alias ``champion`` points at
the served version. Each move of it is a tag of the registered model, ``recflow.champion_history.<seq>``
(JSON), written ahead as ``recflow.champion_pending``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.core.config import Settings
from recflow.core.errors import RegistryError
from recflow.registry.base import BaseRegistry, ChampionState
from recflow.registry.champion import unknown_version
from recflow.registry.mlflow_keys import (
    from_mlflow_key,
    history_key,
    is_complete,
    local_path,
    quoted,
    to_mlflow_key,
)
from recflow.registry.model import (
    CARD_TAG_PREFIXES,
    CHAMPION,
    COMPLETE_TAG,
    CURVE_PREFIX,
    EXPERIMENT,
    HISTORY_PREFIX,
    JOB_KEY,
    JOB_TAG,
    LINEAGE_PREFIX,
    NOT_A_METRIC,
    PENDING_TAG,
    PICTURE_FILES,
    PICTURES,
    ModelVersionInfo,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)


class MlflowRegistry(BaseRegistry):
    """The registry on MLflow: the primitives of :class:`~recflow.registry.base.BaseRegistry`."""

    def __init__(self, settings: Settings) -> None:
        import mlflow  # noqa: PLC0415 (mlflow takes seconds to import: not at DAG parse time)
        from mlflow.tracking import MlflowClient  # noqa: PLC0415 (mlflow takes seconds to import: not at DAG parse time)

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
        if location.startswith("file:"):
            Path(local_path(location)).mkdir(parents=True, exist_ok=True)
        return str(self.client.create_experiment(EXPERIMENT, artifact_location=location))

    def _info(self, mv: Any) -> ModelVersionInfo:
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        run_tags: dict[str, str] = {}
        run = None
        if mv.run_id:
            run = self.client.get_run(mv.run_id)
            metrics = {
                from_mlflow_key(k): float(v)
                for k, v in run.data.metrics.items()
                if not k.startswith(CURVE_PREFIX)
            }
            params = dict(run.data.params)
            run_tags = {k: v for k, v in run.data.tags.items() if k.startswith(CARD_TAG_PREFIXES)}
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
            complete=is_complete(mv.tags, run),
            run_tags=run_tags,
            artifact_uri=run.info.artifact_uri if run is not None else "",
        )

    def get_by_alias(self, name: str, alias: str = CHAMPION) -> ModelVersionInfo | None:
        from mlflow.exceptions import MlflowException  # noqa: PLC0415 (mlflow takes seconds to import: not at DAG parse time)

        try:
            return self._info(self.client.get_model_version_by_alias(name, alias))
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def list_versions(self, name: str | None = None) -> list[ModelVersionInfo]:
        """Every version (``complete`` says whether its publication finished), by name then version."""
        query = f"name = {quoted(name)}" if name else ""
        versions = self.client.search_model_versions(query)
        infos = [self._info(self.client.get_model_version(mv.name, mv.version)) for mv in versions]
        return sorted(infos, key=lambda i: (i.name, i.version))

    def _run_complete(self, run: Any) -> bool:
        return bool(run.data.tags.get(COMPLETE_TAG) == "true")

    def _log_artifacts(
        self, name: str, job: str, run: Any, model_dir: Path, pictures_dir: Path | None
    ) -> None:
        self.client.log_artifacts(run.info.run_id, str(model_dir), artifact_path="model")
        if pictures_dir is not None and any(pictures_dir.iterdir()):
            self.client.log_artifacts(run.info.run_id, str(pictures_dir), artifact_path=PICTURES)

    def _complete_run(self, name: str, job: str, run: Any) -> None:
        if run.info.status != "FINISHED":
            self.client.set_terminated(run.info.run_id)
        self.client.set_tag(run.info.run_id, COMPLETE_TAG, "true")

    def _version_of(self, handle: Any) -> int:
        return int(handle.version)

    def _published(self, name: str, handle: Any) -> ModelVersionInfo:
        return self._info(self.client.get_model_version(name, str(handle.version)))

    def _ensure_run(self, name: str, job: str) -> Any:
        experiment_id = self._experiment_id()
        runs = self.client.search_runs([experiment_id], filter_string=f"tags.`{JOB_TAG}` = {quoted(job)}")
        if len(runs) > 1:
            ids = ", ".join(r.info.run_id for r in runs)
            raise RegistryError(
                f"training job {job} has {len(runs)} MLflow runs ({ids}) in experiment {EXPERIMENT!r}; "
                "a job is published as one run: delete the extra runs and retry"
            )
        if runs:
            log.info("training job %s: found run %s", job, runs[0].info.run_id)
            return runs[0]
        run = self.client.create_run(experiment_id, run_name=job, tags={JOB_TAG: job, COMPLETE_TAG: "false"})
        log.info("training job %s: created run %s", job, run.info.run_id)
        return run

    def _ensure_logged(
        self,
        name: str,
        job: str,
        run: Any,
        metrics: Mapping[str, float],
        params: Mapping[str, str],
        lineage: Mapping[str, str],
        curves: Mapping[str, Sequence[float]],
        run_tags: Mapping[str, str],
    ) -> Any:
        from mlflow.entities import Metric, Param, RunTag  # noqa: PLC0415 (mlflow takes seconds to import: not at DAG parse time)

        have = run.data
        now = int(datetime.now(UTC).timestamp() * 1000)
        new_metrics = [
            Metric(to_mlflow_key(k), float(v), now, 0)
            for k, v in metrics.items()
            if k not in NOT_A_METRIC and to_mlflow_key(k) not in have.metrics
        ]
        new_metrics += [
            Metric(f"{CURVE_PREFIX}{name}", float(value), now, epoch)
            for name, values in curves.items()
            if f"{CURVE_PREFIX}{name}" not in have.metrics
            for epoch, value in enumerate(values, start=1)
        ]
        clashes = {
            k: (have.params[k], str(v))
            for k, v in params.items()
            if k in have.params and have.params[k] != str(v)
        }
        if clashes:
            raise RegistryError(
                f"run {run.info.run_id} of training job {lineage[JOB_KEY]} already has other values for params "
                + ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in sorted(clashes.items()))
            )
        new_params = [Param(k, str(v)) for k, v in params.items() if k not in have.params]
        new_tags = [
            RunTag(f"{LINEAGE_PREFIX}{k}", v)
            for k, v in lineage.items()
            if f"{LINEAGE_PREFIX}{k}" not in have.tags
        ]
        new_tags += [RunTag(k, str(v)) for k, v in run_tags.items() if k not in have.tags]
        if new_metrics or new_params or new_tags:
            self.client.log_batch(run.info.run_id, metrics=new_metrics, params=new_params, tags=new_tags)
        return run

    def _ensure_registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException  # noqa: PLC0415 (mlflow takes seconds to import: not at DAG parse time)

        try:
            self.client.get_registered_model(name)
            return
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        try:
            self.client.create_registered_model(name, description="Two-tower retrieval model (recflow)")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _ensure_version(self, name: str, job: str, run: Any, lineage: Mapping[str, str]) -> Any:
        run_id, source = run.info.run_id, f"{run.info.artifact_uri}/model"
        found = self.client.search_model_versions(f"name = {quoted(name)} and run_id = {quoted(run_id)}")
        if len(found) > 1:
            versions = ", ".join(sorted(str(v.version) for v in found))
            raise RegistryError(
                f"{name} has versions {versions} for run {run_id} (training job {lineage[JOB_KEY]}); "
                "a job is published as one version: delete the extra versions and retry"
            )
        if found:
            log.info("training job %s: found %s version %s", lineage[JOB_KEY], name, found[0].version)
            return self.client.get_model_version(name, found[0].version)
        tags = {f"{LINEAGE_PREFIX}{k}": v for k, v in lineage.items()} | {COMPLETE_TAG: "false"}
        mv = self.client.create_model_version(name, source, run_id=run_id, tags=tags)
        log.info("training job %s: created %s version %s", lineage[JOB_KEY], name, mv.version)
        return mv

    def _ensure_version_complete(self, name: str, mv: Any, lineage: Mapping[str, str]) -> None:
        tags: dict[str, str] = dict(mv.tags)
        if tags.get(COMPLETE_TAG) == "true":
            return
        for key, value in lineage.items():
            if f"{LINEAGE_PREFIX}{key}" not in tags:
                self.client.set_model_version_tag(name, str(mv.version), f"{LINEAGE_PREFIX}{key}", value)
        self.client.set_model_version_tag(name, str(mv.version), COMPLETE_TAG, "true")

    def _registered_model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException  # noqa: PLC0415 (mlflow takes seconds to import: not at DAG parse time)

        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError(f"there is no registered model named {name!r}") from exc
            raise

    @staticmethod
    def _champion_of(model: Any) -> int | None:
        version = (model.aliases or {}).get(CHAMPION)
        return None if version is None else int(version)

    def _champion_now(self, name: str) -> int | None:
        try:
            return self._champion_of(self._registered_model(name))
        except RegistryError:
            return None

    @classmethod
    def _history_of(cls, model: Any) -> list[dict[str, Any]]:
        entries = {
            int(json.loads(v)["seq"]): v for k, v in model.tags.items() if k.startswith(HISTORY_PREFIX)
        }
        pending = model.tags.get(PENDING_TAG)
        if pending is not None:
            # a move whose alias moved but whose record was interrupted did happen
            entry = json.loads(pending)
            if cls._champion_of(model) == entry["version"]:
                entries.setdefault(int(entry["seq"]), pending)
        return [json.loads(entries[seq]) for seq in sorted(entries)]

    def require_model(self, name: str) -> None:
        self._registered_model(name)

    def _model_version(self, name: str, version: int, unknown: Callable[[], RegistryError]) -> Any:
        from mlflow.exceptions import MlflowException  # noqa: PLC0415 (mlflow takes seconds to import: not at DAG parse time)

        try:
            return self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise unknown() from exc

    def get_version(self, name: str, version: int) -> ModelVersionInfo:
        self._registered_model(name)
        return self._info(
            self._model_version(name, version, lambda: RegistryError(f"{name} has no version {version}"))
        )

    def curve(self, info: ModelVersionInfo, name: str) -> list[float]:
        if not info.run_id:
            return []
        history = self.client.get_metric_history(info.run_id, f"{CURVE_PREFIX}{name}")
        return [m.value for m in sorted(history, key=lambda m: m.step)]

    def pictures(self, info: ModelVersionInfo) -> dict[str, str]:
        if not info.artifact_uri:
            return {}
        names = {a.path.rsplit("/", 1)[-1] for a in self.client.list_artifacts(info.run_id, PICTURES)}
        return {
            key: local_path(f"{info.artifact_uri}/{PICTURES}/{file}")
            for key, file in PICTURE_FILES.items()
            if file in names
        }

    def _completeness(self, name: str, version: int) -> tuple[bool, str]:
        versions = self.list_versions
        mv = self._model_version(
            name, version, lambda: unknown_version(name, version, (v.version for v in versions(name)))
        )
        return self._info(mv).complete, mv.tags.get(JOB_TAG, "(unknown)")

    def _champion_state(self, name: str, handle: Any = None) -> ChampionState:
        model = self._registered_model(name)
        return ChampionState(self._history_of(model), self._champion_of(model))

    def _intend(self, name: str, entry: Mapping[str, Any]) -> None:
        self.client.set_registered_model_tag(name, PENDING_TAG, json.dumps(dict(entry), sort_keys=True))

    def _move(self, name: str, entry: Mapping[str, Any], state: ChampionState) -> None:
        self.client.set_registered_model_alias(name, CHAMPION, str(entry["version"]))

    def _pending(self, name: str) -> dict[str, Any] | None:
        raw = self._registered_model(name).tags.get(PENDING_TAG)
        return None if raw is None else dict(json.loads(raw))

    def _finish_pending(self, name: str, entry: Mapping[str, Any]) -> bool:
        """Tag the move ``recflow.champion_history.<seq>`` (unless a move is) if the alias moved."""
        model = self._registered_model(name)
        if self._champion_of(model) != entry["version"]:
            return False
        key = history_key(int(entry["seq"]))
        if key not in model.tags:
            self.client.set_registered_model_tag(name, key, json.dumps(dict(entry), sort_keys=True))
        return True

    def _clear_pending(self, name: str) -> None:
        self.client.delete_registered_model_tag(name, PENDING_TAG)

    def _record_move(self, name: str, entry: Mapping[str, Any]) -> None:
        """Tag the move ``recflow.champion_history.<seq>``; a different move under that number refuses."""
        key, raw = history_key(int(entry["seq"])), json.dumps(dict(entry), sort_keys=True)
        recorded = self._registered_model(name).tags.get(key)
        if recorded is not None and recorded != raw:
            raise RegistryError(
                f"{name}: move {entry['seq']} is already recorded ({recorded}); not overwriting it with "
                f"{raw}. Another writer moved the champion without its lock: check `recflow models "
                f"history --name {name}` and the alias"
            )
        self.client.set_registered_model_tag(name, key, raw)

    def _download(self, info: ModelVersionInfo, out: Path) -> Path:
        """The version's SavedModel, copied into ``out``."""
        import mlflow.artifacts  # noqa: PLC0415 (mlflow takes seconds to import: not at DAG parse time)

        # a folder of its own to download into, removed with what is left in it: never a name beside
        # ``out`` that a person's folder could already hold; ``out`` is made once the files are here, so
        # a failed download leaves no empty folder
        with tempfile.TemporaryDirectory(prefix="recflow-export-") as tmp:
            with_files = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.source, dst_path=tmp))
            out.mkdir(parents=True, exist_ok=True)
            for child in with_files.iterdir():
                shutil.move(str(child), out / child.name)
        return out
