"""The model registry: where published models, their versions and ``champion`` live.

Two backends keep one contract (:class:`Registry`): :class:`MlflowRegistry` (embedded default: a
SQLite file and a local artifact root) and :class:`~recflow.registry.sagemaker.SageMakerRegistry`
(SageMaker's Model Registry, a model package group per model name); :func:`registry_for` picks one
from ``RECFLOW_REGISTRY_BACKEND``.

Its modules: :mod:`~recflow.registry.model` (the contract: :class:`Registry`, :class:`ModelVersionInfo`,
the names of the records, :data:`PUBLISH_STEPS`), :mod:`~recflow.registry.champion` (the rules of a
move of ``champion``, its lock), :mod:`~recflow.registry.base` (a publication, a promotion and a
move written once, on :class:`~recflow.registry.base.BaseRegistry`), :mod:`~recflow.registry.mlflow`
and :mod:`~recflow.registry.sagemaker` (one backend each: primitives only), with
:mod:`~recflow.registry.mlflow_keys` (recflow's names as MLflow's) and
:mod:`~recflow.registry.sagemaker_records` (the SageMaker backend's S3 side: records, archives, the
champion's log). This package imports :mod:`recflow.core` and :mod:`recflow.training` only; the rest
of recflow imports it from here.
"""

from __future__ import annotations

from pathlib import Path

from recflow.core.config import Settings
from recflow.core.errors import ConfigError
from recflow.registry.mlflow import MlflowRegistry
from recflow.registry.model import (
    AT_START,
    CHAMPION,
    CHART_METRICS,
    CURVE_PREFIX,
    EXPERIMENT,
    JOB_KEY,
    JOB_TAG,
    LOSS_PICTURE,
    MODEL_FETCHED,
    PENDING_TAG,
    PICTURES,
    PUBLISH_STEPS,
    VERSUS_PICTURE,
    ExpectedChampion,
    ModelVersionInfo,
    OnStep,
    Registry,
)
from recflow.registry.sagemaker import SageMakerRegistry

__all__ = [
    "AT_START",
    "CHAMPION",
    "CHART_METRICS",
    "CURVE_PREFIX",
    "EXPERIMENT",
    "JOB_KEY",
    "JOB_TAG",
    "LOSS_PICTURE",
    "MODEL_FETCHED",
    "PENDING_TAG",
    "PICTURES",
    "PUBLISH_STEPS",
    "VERSUS_PICTURE",
    "ExpectedChampion",
    "MlflowRegistry",
    "ModelVersionInfo",
    "OnStep",
    "Registry",
    "missing_registry",
    "registry_for",
    "require_registry",
]


def missing_registry(settings: Settings) -> Path | None:
    """The embedded registry's SQLite file when it does not exist yet (MLflow creates it on first
    use, so a reader must look before it opens one), else ``None``."""
    uri = settings.mlflow_uri
    if settings.registry_backend != "mlflow" or not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    return None if database.exists() else database


def require_registry(settings: Settings) -> None:
    """Refuse (:class:`ConfigError`) to read an embedded registry that does not exist: MLflow would
    create its SQLite file, so a mistyped ``RECFLOW_HOME`` left an empty registry behind and its
    commands answered "no versions" as if the right one were empty."""
    database = missing_registry(settings)
    if database is not None:
        given = (
            "RECFLOW_MLFLOW_TRACKING_URI" if settings.mlflow_tracking_uri else f"RECFLOW_HOME={settings.home}"
        )
        raise ConfigError(
            f"there is no model registry at {database} ({given}): nothing has been published there. "
            "Check the setting (a typo makes a new, empty home), or run the pipeline first (make demo)"
        )


def registry_for(settings: Settings) -> Registry:
    """The registry backend ``settings.registry_backend`` names (``RECFLOW_REGISTRY_BACKEND``)."""
    if settings.registry_backend == "sagemaker":
        return SageMakerRegistry(settings)
    return MlflowRegistry(settings)
