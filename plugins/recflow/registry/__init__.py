"""The model registry: MLflow (embedded default: a SQLite file and a local artifact root).

Two backends keep the same contract (:class:`Registry`): :class:`MlflowRegistry` in :mod:`recflow.registry.mlflow`, and
:class:`recflow.registry.sagemaker.SageMakerRegistry` (SageMaker's Model Registry, a model
package group per model name); :func:`registry_for` picks one from ``RECFLOW_REGISTRY_BACKEND``.
What follows describes the MLflow one; the SageMaker one maps each piece onto its own records.

Its modules: :mod:`~recflow.registry.model` (the contract: :class:`Registry`, :class:`ModelVersionInfo`,
the names of the records, :data:`PUBLISH_STEPS`), :mod:`~recflow.registry.champion` (the rules of a
move of ``champion``, its lock), :mod:`~recflow.registry.base` (what both backends share),
:mod:`~recflow.registry.mlflow` and :mod:`~recflow.registry.sagemaker` (one backend each). This
package imports :mod:`recflow.core` and :mod:`recflow.training` only.
"""

from __future__ import annotations

from recflow.core.config import Settings
from recflow.registry.base import (
    Publication,
    incomplete_version,
    log_promoted,
    log_published,
    publication,
    publish_step,
    require_reason,
    unknown_version,
)
from recflow.registry.champion import (
    LOCKS,
    champion_lock,
    champion_moved_since,
    move_champion,
    next_champion_move,
)
from recflow.registry.mlflow import MlflowRegistry, from_mlflow_key, to_mlflow_key
from recflow.registry.model import (
    AT_START,
    CARD_TAG_PREFIXES,
    CHAMPION,
    CHART_METRICS,
    COMPLETE_TAG,
    CURVE_PREFIX,
    EXPERIMENT,
    HISTORY_PREFIX,
    JOB_KEY,
    JOB_TAG,
    LINEAGE_PREFIX,
    LOSS_PICTURE,
    MODEL_FETCHED,
    NOT_A_METRIC,
    PENDING_TAG,
    PICTURE_FILES,
    PICTURES,
    PUBLISH_STEPS,
    VERSUS_PICTURE,
    ExpectedChampion,
    ModelVersionInfo,
    OnStep,
    Registry,
)

__all__ = [
    "AT_START",
    "CARD_TAG_PREFIXES",
    "CHAMPION",
    "CHART_METRICS",
    "COMPLETE_TAG",
    "CURVE_PREFIX",
    "EXPERIMENT",
    "HISTORY_PREFIX",
    "JOB_KEY",
    "JOB_TAG",
    "LINEAGE_PREFIX",
    "LOCKS",
    "LOSS_PICTURE",
    "MODEL_FETCHED",
    "NOT_A_METRIC",
    "PENDING_TAG",
    "PICTURES",
    "PICTURE_FILES",
    "PUBLISH_STEPS",
    "VERSUS_PICTURE",
    "ExpectedChampion",
    "MlflowRegistry",
    "ModelVersionInfo",
    "OnStep",
    "Publication",
    "Registry",
    "champion_lock",
    "champion_moved_since",
    "from_mlflow_key",
    "incomplete_version",
    "log_promoted",
    "log_published",
    "move_champion",
    "next_champion_move",
    "publication",
    "publish_step",
    "registry_for",
    "require_reason",
    "to_mlflow_key",
    "unknown_version",
]


def registry_for(settings: Settings) -> Registry:
    """The registry backend ``settings.registry_backend`` names (``RECFLOW_REGISTRY_BACKEND``)."""
    if settings.registry_backend == "sagemaker":
        from recflow.registry.sagemaker import SageMakerRegistry

        return SageMakerRegistry(settings)
    return MlflowRegistry(settings)
