"""The registry's contract: the :class:`Registry` protocol both backends keep, :class:`ModelVersionInfo`,
the names of the records and the steps of a publication (:data:`PUBLISH_STEPS`).

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

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from recflow.core.gate import FAMILIES

CHAMPION = "champion"
EXPERIMENT = "recflow"
LINEAGE_PREFIX = "lineage."
JOB_KEY = "training_job_name"
JOB_TAG = f"{LINEAGE_PREFIX}{JOB_KEY}"
COMPLETE_TAG = "recflow.complete"
HISTORY_PREFIX = "recflow.champion_history."
PENDING_TAG = "recflow.champion_pending"
NOT_A_METRIC = frozenset({"users", "full_users"})
CURVE_PREFIX = "train/"
"""Step-indexed metrics (one value per epoch): curves, not scores; left out of ``metrics``."""
CARD_TAG_PREFIXES = ("gate.", "training.", "serving.")
"""Run tags that hold the rest of the model card."""
PICTURES = "pictures"
LOSS_PICTURE = "loss_curve.png"
VERSUS_PICTURE = "challenger_vs_champion.png"
CHART_METRICS = dict(FAMILIES.values())
"""The challenger-vs-champion picture's panels: each metric family on its own scale."""
PICTURE_FILES = {"loss_curve": LOSS_PICTURE, "challenger_vs_champion": VERSUS_PICTURE}
"""The model card's name of each picture, and its file under ``pictures/``."""

PUBLISH_STEPS: tuple[str, ...] = (
    "run",  # find or create the run tagged with the training job's name
    "logged",  # metrics, hyperparameters and lineage tags on the run
    "artifacts",  # the SavedModel under the run's artifacts, ``model/``
    "run_complete",  # the run terminated and tagged complete
    "registered_model",  # find or create the registered model
    "version",  # find (by run id) or create the one version of this run
    "version_complete",  # the version's lineage tags, then tagged complete
    "champion_intent",  # the move of ``champion`` written ahead
    "champion",  # the alias moved
    "champion_recorded",  # the move recorded in the champion history
)
"""The steps of :meth:`MlflowRegistry.publish`, in order; ``on_step`` is called after each."""

MODEL_FETCHED = "model_fetched"
"""The step :func:`publish_training_job` runs before :data:`PUBLISH_STEPS`."""

OnStep = Callable[[str], None]


class _AtStart(enum.Enum):
    AT_START = "the champion when the publication begins"


AT_START = _AtStart.AT_START
"""``expected_champion`` of a publication that was not told which champion its gate saw: it
expects the one that is champion when it begins."""
ExpectedChampion = int | None | _AtStart
"""The version a publication expects to find as champion when it moves it (``None``: no champion)."""


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
    complete: bool = field(default=False)
    run_tags: dict[str, str] = field(default_factory=dict)
    """The run's model-card tags (:data:`CARD_TAG_PREFIXES`)."""
    artifact_uri: str = field(default="")
    """The run's artifact root (the pictures are under ``pictures/``)."""
    champion_not_moved: str = field(default="")
    """Set by a publication that left ``champion`` alone because it moved since the expected
    version (see :meth:`MlflowRegistry.publish`): who moved it, when; empty otherwise."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "aliases": self.aliases,
            "complete": self.complete,
            "metrics": self.metrics,
            "params": self.params,
            "lineage": self.lineage,
            "created_at": self.created_at,
            "source": self.source,
        }


class Registry(Protocol):
    """What a registry backend offers; :class:`MlflowRegistry` and ``SageMakerRegistry`` keep the same contract.

    Errors: :class:`RegistryError` for an unknown model or version and for an inconsistent
    state, ``ValueError`` for a bad argument (an empty reason, a name the backend cannot hold).
    """

    def get_by_alias(self, name: str, alias: str = CHAMPION) -> ModelVersionInfo | None: ...

    def get_version(self, name: str, version: int) -> ModelVersionInfo:
        """``version`` of ``name``; raises :class:`RegistryError` for an unknown model or version."""
        ...

    def require_model(self, name: str) -> None:
        """Raises :class:`RegistryError` (``there is no registered model named …``) when ``name`` is unknown."""
        ...

    def list_versions(self, name: str | None = None) -> list[ModelVersionInfo]: ...

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
    ) -> ModelVersionInfo: ...

    def promote(self, name: str, version: int, reason: str, who: str) -> dict[str, Any] | None: ...

    def champion_history(self, name: str) -> list[dict[str, Any]]: ...

    def download(self, info: ModelVersionInfo, out: Path) -> Path: ...

    def curve(self, info: ModelVersionInfo, name: str) -> list[float]:
        """The step-indexed values ``train/<name>`` published with the version (one per epoch)."""
        ...

    def pictures(self, info: ModelVersionInfo) -> dict[str, str]:
        """``{"loss_curve": path or URI, "challenger_vs_champion": …}`` for the pictures the version has."""
        ...
