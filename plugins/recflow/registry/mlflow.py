"""The model registry on MLflow (embedded default: a SQLite file and a local artifact root).

A published model is an MLflow run (metrics, hyperparameters, the SavedModel
as artifacts) plus a registered model version tagged with its lineage; the
alias ``champion`` points at the version serving traffic. MLflow metric names
cannot contain ``@``, so ``hr@10`` is stored as ``hr_at_10`` and mapped back.

Every move of ``champion`` (publication, rollback, promotion) is recorded on the
registered model itself, as one tag per move (``recflow.champion_history.<seq>``,
a small JSON document); :meth:`MlflowRegistry.champion_history` reads them back.
A move is written ahead as ``recflow.champion_pending`` before the alias moves,
so a move interrupted between the alias and its record is completed (or, if the
alias never moved, discarded) by the next move or publication of that model.

What a publication of the DAG puts on a version (:func:`publish_evaluated`): the gate's
metrics (scored on the artifact that never saw the holdout), the SavedModel that is
served (same weights, every user's vector refreshed from train *and* holdout, see
:mod:`recflow.publishing.serving`; lineage names both artifacts), the loss per epoch as
step-indexed metrics (``train/loss``: the MLflow UI draws the curve), two pictures under
the run's ``pictures/`` (the curve, and the challenger against the champion), and the
gate's decision, thresholds and the job's time and memory as run tags. :func:`model_card`
reads it all back (``recflow models show``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.core.config import Settings
from recflow.core.errors import RegistryError
from recflow.registry.base import (
    incomplete_version,
    log_promoted,
    log_published,
    publication,
    publish_step,
    require_reason,
    unknown_version,
)
from recflow.registry.champion import move_champion
from recflow.registry.model import (
    AT_START,
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
    ExpectedChampion,
    ModelVersionInfo,
    OnStep,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)


def to_mlflow_key(metric: str) -> str:
    return metric.replace("@", "_at_")


def from_mlflow_key(key: str) -> str:
    return key.replace("_at_", "@")


def _quoted(value: str) -> str:
    if "'" in value:
        raise ValueError(f"{value!r}: registry names and ids cannot contain a single quote")
    return f"'{value}'"


def _history_key(seq: int) -> str:
    return f"{HISTORY_PREFIX}{seq:06d}"


def _complete(tags: Mapping[str, str], run: Any | None) -> bool:
    flag = tags.get(COMPLETE_TAG)
    if flag is not None:
        return flag == "true"
    # versions registered before publishing was idempotent carry no flag: that code created
    # a version only after the run's artifacts were logged and the run terminated
    return run is not None and run.info.status == "FINISHED"


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
        if location.startswith("file:"):
            Path(_local_path(location)).mkdir(parents=True, exist_ok=True)
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
            complete=_complete(mv.tags, run),
            run_tags=run_tags,
            artifact_uri=run.info.artifact_uri if run is not None else "",
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
        """Every version (``complete`` says whether its publication finished), by name then version."""
        query = f"name = {_quoted(name)}" if name else ""
        versions = self.client.search_model_versions(query)
        infos = [self._info(self.client.get_model_version(mv.name, mv.version)) for mv in versions]
        return sorted(infos, key=lambda i: (i.name, i.version))

    def publish(
        self,
        name: str,
        model_dir: Path,
        metrics: Mapping[str, float],
        params: Mapping[str, str],
        lineage: Mapping[str, str],
        *,
        training_job: str | None = None,
        reason: str = "",
        who: str | None = None,
        on_step: OnStep | None = None,
        curves: Mapping[str, Sequence[float]] | None = None,
        run_tags: Mapping[str, str] | None = None,
        pictures_dir: Path | None = None,
        expected_champion: ExpectedChampion = AT_START,
    ) -> ModelVersionInfo:
        """Publish a training job's SavedModel as the one version of ``name`` for that job; move ``champion`` to it.

        Idempotent, keyed by ``training_job`` (default ``lineage["training_job_name"]``):
        the steps of :data:`PUBLISH_STEPS` each find what an earlier attempt wrote before
        writing, and ``on_step(step)`` is called after each (also when it had nothing to do).
        The first publication of a job fixes its record; a later one adds what is missing and
        changes nothing (metrics, params and lineage already there are kept).

        ``champion`` moves once per publication, ``who`` being its key (default
        ``"<airflow_dag_id>/<airflow_run_id>"`` from ``lineage``): a retry of the same
        publication does not move it again, so it never undoes a rollback made in between.
        The move is recorded with ``who`` and ``reason`` (see :meth:`champion_history`).

        ``champion`` moves only if it still is ``expected_champion`` (``None``: there was none;
        default: the champion when this call began), checked under the model's lock
        (:func:`champion_lock`) with the move: when someone moved it in between, the version is
        registered, the alias stays, and the returned ``champion_not_moved`` says who moved it.

        ``curves`` (name → one value per epoch) are logged as step-indexed metrics
        ``train/<name>``, step = epoch; ``run_tags`` on the run; the files of ``pictures_dir``
        under the run's ``pictures/``. Like metrics, they are written once.
        """
        pub = publication(name, lineage, training_job, who, reason)
        job, lineage, who, reason = pub.job, pub.lineage, pub.who, pub.reason
        if expected_champion is AT_START:
            expected_champion = self._champion_now(name)

        step = publish_step(name, job, on_step)
        run = self._ensure_run(job)
        run_id = run.info.run_id
        step("run")
        self._ensure_logged(run, metrics, params, lineage, curves or {}, run_tags or {})
        step("logged")
        run_complete = run.data.tags.get(COMPLETE_TAG) == "true"
        if not run_complete:
            self.client.log_artifacts(run_id, str(model_dir), artifact_path="model")
            if pictures_dir is not None and any(pictures_dir.iterdir()):
                self.client.log_artifacts(run_id, str(pictures_dir), artifact_path=PICTURES)
        step("artifacts")
        if not run_complete:
            if run.info.status != "FINISHED":
                self.client.set_terminated(run_id)
            self.client.set_tag(run_id, COMPLETE_TAG, "true")
        step("run_complete")
        self._ensure_registered_model(name)
        step("registered_model")
        mv = self._ensure_version(name, run_id, f"{run.info.artifact_uri}/model", lineage)
        step("version")
        version = int(mv.version)
        self._ensure_version_complete(name, mv, lineage)
        step("version_complete")
        moved, not_moved = self._move_champion(
            name, version, who=who, reason=reason, once_per_who=True, on_step=step, expected=expected_champion
        )
        info = self._info(self.client.get_model_version(name, str(version)))
        info = dataclasses.replace(info, champion_not_moved=not_moved)
        log_published(name, info, job, moved, reason)
        return info

    def _ensure_run(self, job: str) -> Any:
        experiment_id = self._experiment_id()
        runs = self.client.search_runs([experiment_id], filter_string=f"tags.`{JOB_TAG}` = {_quoted(job)}")
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
        run: Any,
        metrics: Mapping[str, float],
        params: Mapping[str, str],
        lineage: Mapping[str, str],
        curves: Mapping[str, Sequence[float]],
        run_tags: Mapping[str, str],
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

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

    def _ensure_registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

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

    def _ensure_version(self, name: str, run_id: str, source: str, lineage: Mapping[str, str]) -> Any:
        found = self.client.search_model_versions(f"name = {_quoted(name)} and run_id = {_quoted(run_id)}")
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
        from mlflow.exceptions import MlflowException

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

    def get_version(self, name: str, version: int) -> ModelVersionInfo:
        from mlflow.exceptions import MlflowException

        self._registered_model(name)
        try:
            return self._info(self.client.get_model_version(name, str(version)))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise RegistryError(f"{name} has no version {version}") from exc

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
            key: _local_path(f"{info.artifact_uri}/{PICTURES}/{file}")
            for key, file in PICTURE_FILES.items()
            if file in names
        }

    def champion_history(self, name: str) -> list[dict[str, Any]]:
        """Every move of ``champion`` on ``name``, oldest first; raises :class:`RegistryError` for an unknown model.

        Each move is ``{"seq": int, "version": int, "previous_version": int | None,
        "who": str, "at": str, "reason": str}``: ``seq`` counts the moves from 1,
        ``previous_version`` is the champion before the move (``None``: there was none),
        ``who`` is the Airflow ``<dag_id>/<run_id>`` for a publication and the person for
        :meth:`promote`, ``at`` is an ISO-8601 UTC time, ``reason`` the gate's decision or
        the person's words. A model published before moves were recorded has an empty history.
        Read-only: a move interrupted after its alias moved is listed, and recorded by the next write.
        """
        return self._history_of(self._registered_model(name))

    def promote(self, name: str, version: int, reason: str, who: str) -> dict[str, Any] | None:
        """Move ``champion`` of ``name`` to ``version`` (a rollback or a promotion) and record who, when and why.

        Returns the recorded move, shaped as in :meth:`champion_history`, or ``None`` when
        ``version`` already is the champion (nothing moves, nothing is recorded). Raises
        :class:`RegistryError` for an unknown model or version, or a version whose
        publication did not finish (``complete`` false), and ``ValueError`` for an empty reason.
        """
        from mlflow.exceptions import MlflowException

        require_reason(name, version, reason)
        self._registered_model(name)
        try:
            mv = self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise unknown_version(name, version, (v.version for v in self.list_versions(name))) from exc
        if not self._info(mv).complete:
            raise incomplete_version(name, version, mv.tags.get(JOB_TAG, "(unknown)"))
        moved, _ = self._move_champion(name, int(version), who=who, reason=reason, once_per_who=False)
        log_promoted(name, version, who, reason, moved)
        return moved

    def _settle_pending(self, name: str) -> None:
        """Finish a champion move interrupted after its intent was written, or discard it if the alias never moved.

        Under the model's lock (:func:`champion_lock`): the move it finds was not made by a live writer."""
        model = self._registered_model(name)
        raw = model.tags.get(PENDING_TAG)
        if raw is None:
            return
        entry = json.loads(raw)
        if self._champion_of(model) == entry["version"]:
            key = _history_key(int(entry["seq"]))
            if key not in model.tags:
                self.client.set_registered_model_tag(name, key, raw)
            log.warning("%s: recorded an interrupted champion move %s", name, raw)
        else:
            log.warning("%s: discarded an interrupted champion move that did not happen %s", name, raw)
        self.client.delete_registered_model_tag(name, PENDING_TAG)

    def _move_champion(
        self,
        name: str,
        version: int,
        *,
        who: str,
        reason: str,
        once_per_who: bool,
        on_step: OnStep | None = None,
        expected: ExpectedChampion = AT_START,
    ) -> tuple[dict[str, Any] | None, str]:
        """:func:`move_champion` on the registered model's alias and tags."""

        def state() -> tuple[list[dict[str, Any]], int | None]:
            model = self._registered_model(name)
            return self._history_of(model), self._champion_of(model)

        return move_champion(
            self.settings,
            name,
            version,
            who=who,
            reason=reason,
            once_per_who=once_per_who,
            expected=expected,
            step=on_step or (lambda _done: None),
            settle=lambda: self._settle_pending(name),
            state=state,
            intend=lambda entry: self.client.set_registered_model_tag(
                name, PENDING_TAG, json.dumps(entry, sort_keys=True)
            ),
            move=lambda entry: self.client.set_registered_model_alias(name, CHAMPION, str(entry["version"])),
            record=lambda entry: self._record_move(name, entry),
            clear=lambda: self.client.delete_registered_model_tag(name, PENDING_TAG),
        )

    def _record_move(self, name: str, entry: Mapping[str, Any]) -> None:
        """Tag the move ``recflow.champion_history.<seq>``; a different move under that number refuses."""
        key, raw = _history_key(int(entry["seq"])), json.dumps(dict(entry), sort_keys=True)
        recorded = self._registered_model(name).tags.get(key)
        if recorded is not None and recorded != raw:
            raise RegistryError(
                f"{name}: move {entry['seq']} is already recorded ({recorded}); not overwriting it with "
                f"{raw}. Another writer moved the champion without its lock: check `recflow models "
                f"history --name {name}` and the alias"
            )
        self.client.set_registered_model_tag(name, key, raw)

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


def _local_path(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri
