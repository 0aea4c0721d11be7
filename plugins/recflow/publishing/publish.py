"""Publication of a training job's model: fetch, refresh the serving user vectors, pictures, register.

The use case above the registry's primitives: :func:`publish_training_job` turns a job's
``model.tar.gz`` into a registered version (fresh histories, lineage, loss curve and the
challenger-vs-champion chart), and :func:`publish_evaluated` is the DAG's ``publish`` step on
the XComs of ``snapshot``, ``train``, ``evaluate`` and ``gate``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recflow.core.artifacts import join, pack_directory, store_for, unpack_model
from recflow.core.config import Settings
from recflow.core.gate import GATE_APPLIED, family_heading
from recflow.publishing.card import version_tag
from recflow.publishing.pictures import loss_curve, versus_chart
from recflow.publishing.serving import refresh_user_vectors
from recflow.registry import (
    AT_START,
    CHART_METRICS,
    LOSS_PICTURE,
    MODEL_FETCHED,
    PICTURES,
    VERSUS_PICTURE,
    ExpectedChampion,
    OnStep,
    registry_for,
)


def publish_training_job(
    settings: Settings,
    *,
    name: str,
    model_uri: str,
    training_job: str,
    metrics: Mapping[str, float],
    params: Mapping[str, str],
    lineage: Mapping[str, str],
    reason: str,
    who: str | None = None,
    on_step: OnStep | None = None,
    history_uris: Sequence[str] = (),
    champion_metrics: Mapping[str, float] | None = None,
    run_tags: Mapping[str, str] | None = None,
    expected_champion: ExpectedChampion = AT_START,
) -> dict[str, Any]:
    """Fetch a training job's ``model.tar.gz`` from the artifact store, unpack it and publish it as ``name``.

    ``metrics`` are the challenger's scores as evaluation returns them (its ``users``
    count is not logged), ``reason`` the gate's decision; see :meth:`recflow.registry.MlflowRegistry.publish`
    for idempotency and ``who``. ``on_step`` is called after :data:`MODEL_FETCHED`, then
    after each of :data:`PUBLISH_STEPS`. Returns ``{"name": str, "version": int,
    "aliases": list[str]}`` of the job's version, with ``"not_promoted": str`` when ``champion``
    was not moved because it is no longer ``expected_champion`` (default: the champion when
    this call begins, before the archive is fetched; see :meth:`recflow.registry.MlflowRegistry.publish`).

    With ``history_uris`` (the snapshot's train and holdout interaction files), what is
    published is the job's model with every user's vector recomputed from those
    interactions (:func:`recflow.publishing.serving.refresh_user_vectors`); its archive is kept at
    ``<artifacts>/serving/<job>/model.tar.gz`` and the lineage names it
    (``serving_model_uri``) beside the evaluated one (``evaluated_model_uri``). The
    loss per epoch of the job's ``metadata.json`` is logged as a curve, and the curve and
    the challenger-vs-``champion_metrics`` chart as pictures.
    """
    registry = registry_for(settings)
    if expected_champion is AT_START:
        champion = registry.get_by_alias(name)
        expected_champion = None if champion is None else champion.version
    store = store_for(settings, model_uri)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        archive = store.get_file(model_uri, work / "model.tar.gz")
        model_dir = unpack_model(archive, work / "model")
        tags = dict(run_tags or {})
        if history_uris:
            files = [
                store.get_file(uri, work / "history" / f"{k}.parquet") for k, uri in enumerate(history_uris)
            ]
            report = refresh_user_vectors(model_dir, files, work / "serving", sources=history_uris)
            serving_uri = join(settings.artifacts_uri, "serving", training_job, "model.tar.gz")
            if not store.exists(serving_uri):
                fresh = work / "serving.tar.gz"
                store.put_file(pack_directory(work / "serving", fresh), serving_uri)
            model_dir = work / "serving"
            lineage = {
                **lineage,
                "evaluated_model_uri": model_uri,
                "serving_model_uri": serving_uri,
                "serving_history": " + ".join(history_uris),
            }
            tags |= {
                "serving.history": "train + holdout: every interaction up to the snapshot",
                "serving.users_refreshed": str(report.users),
                "serving.users_changed": str(report.changed),
                "serving.refresh_seconds": f"{report.seconds:.2f}",
            }
        metadata = _job_metadata(model_dir)
        history = _epoch_history(metadata)
        if "input" in metadata:  # which input path trained it: the channel loaded whole, or streamed
            tags["training.input"] = str(metadata["input"])
        pictures = work / PICTURES
        pictures.mkdir()
        if history:
            loss_curve([h["loss"] for h in history], pictures / LOSS_PICTURE, title=f"{name}: {training_job}")
        versus_chart(
            metrics,
            champion_metrics,
            CHART_METRICS,
            pictures / VERSUS_PICTURE,
            title=f"{name}: challenger {training_job}"
            + _versus(champion_metrics, version_tag(tags.get("gate.champion_version"))),
            judged=family_heading(tags.get("gate.ranking")),
        )
        if on_step is not None:
            on_step(MODEL_FETCHED)
        info = registry.publish(
            name,
            model_dir,
            metrics,
            params,
            lineage,
            training_job=training_job,
            reason=reason,
            who=who,
            on_step=on_step,
            curves={"loss": [h["loss"] for h in history], "epoch_seconds": [h["seconds"] for h in history]},
            run_tags=tags,
            pictures_dir=pictures,
            expected_champion=expected_champion,
        )
    published: dict[str, Any] = {"name": info.name, "version": info.version, "aliases": info.aliases}
    if info.champion_not_moved:
        published["not_promoted"] = info.champion_not_moved
    return published


def _versus(champion_metrics: Mapping[str, float] | None, champion_version: int | None) -> str:
    if not champion_metrics:
        return " (no champion yet)"
    return f" vs champion version {champion_version}" if champion_version is not None else ""


def _job_metadata(model_dir: Path) -> dict[str, Any]:
    """The job's ``metadata.json``, or nothing when absent."""
    path = model_dir / "metadata.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _epoch_history(metadata: Mapping[str, Any]) -> list[dict[str, float]]:
    """The job's per-epoch ``loss`` and ``seconds``."""
    return [{"loss": float(h["loss"]), "seconds": float(h["seconds"])} for h in metadata.get("history", [])]


def publish_evaluated(
    settings: Settings,
    *,
    snapshot: Mapping[str, Any],
    training: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    decision: Mapping[str, Any],
    dag_id: str,
    run_id: str,
) -> dict[str, Any]:
    """The DAG's publication: the gate's challenger, with fresh histories, its lineage, curve and pictures.

    ``snapshot``, ``training``, ``evaluation`` and ``decision`` are the XComs of the
    tasks of those names. The registry's metrics are the evaluation's (the artifact
    that never saw the holdout); what is served is refreshed from train + holdout.
    ``champion`` moves only if it still is the version the gate compared against
    (``evaluation["champion_version"]``): a rollback made since stands, and the result's
    ``not_promoted`` says who made it.
    """
    # what the gate applied, from its decision; a decision recorded before it carried them (a publish
    # cleared across an upgrade) falls back to the settings in force now
    applied = {field: decision.get(field, getattr(settings.gate, field)) for field in GATE_APPLIED}
    lineage = {
        "snapshot_id": str(snapshot["snapshot_id"]),
        "dbt_invocation_id": str(snapshot["dbt_invocation_id"]),
        "git_commit": settings.git_commit,
        "code_version": str(training["code_version"]),
        "training_job_name": str(training["job_name"]),
        "model_uri": str(training["model_uri"]),
        "airflow_dag_id": dag_id,
        "airflow_run_id": run_id,
        "evaluation_report": str(evaluation["report_uri"]),
    }
    tags = {
        "gate.promote": str(bool(decision["promote"])).lower(),
        "gate.reason": str(decision["reason"]),
        **{f"gate.{field}": str(value) for field, value in applied.items()},
        "gate.champion_version": str(evaluation.get("champion_version") or "none"),
        "gate.champion_metrics": json.dumps(evaluation.get("champion") or {}, sort_keys=True),
        "training.seconds": str(training.get("training_seconds")),
        "training.peak_memory_mb": str(training.get("peak_memory_mb")),
    }
    return publish_training_job(
        settings,
        name=str(evaluation["model_name"]),
        model_uri=str(training["model_uri"]),
        training_job=str(training["job_name"]),
        metrics=evaluation["challenger"],
        params=training["hyperparameters"],
        lineage=lineage,
        reason=str(decision["reason"]),
        history_uris=(str(snapshot["train_uri"]), str(snapshot["holdout_uri"])),
        champion_metrics=evaluation.get("champion"),
        run_tags=tags,
        expected_champion=(
            _gate_champion(evaluation["champion_version"]) if "champion_version" in evaluation else AT_START
        ),
    )


def _gate_champion(version: Any) -> int | None:
    return None if version is None else int(version)
