"""The model card: everything a person asks of a registered version, read back from the registry."""

from __future__ import annotations

import json
from typing import Any

from recflow.core.config import Settings
from recflow.core.errors import RegistryError
from recflow.core.gate import GATE_APPLIED
from recflow.registry import CHAMPION, registry_for


def _flag(text: str | None) -> bool | None:
    """A tag publish writes as ``true``/``false`` (``gate.promote``)."""
    return None if text is None else text == "true"


NO_VALUE = ("", "None", "none")
"""What a tag holds where publish had no value: ``str(None)``, or ``none`` for no champion."""


def _number(text: str | None) -> float | None:
    """A numeric tag, ``None`` where it holds no value."""
    return None if text is None or text in NO_VALUE else float(text)


def version_tag(text: str | None) -> int | None:
    """``gate.champion_version``: the champion's version, ``None`` when there was no champion."""
    return None if text is None or text in NO_VALUE else int(text)


SERVING_TYPES = {"users_refreshed": int, "users_changed": int, "refresh_seconds": float}
"""The ``serving.*`` tags that hold numbers (``history`` is prose)."""


def model_card(
    settings: Settings, name: str, version: int | None = None, alias: str = CHAMPION
) -> dict[str, Any]:
    """Everything a person asks of a version: metrics, the gate's decision and thresholds,
    hyperparameters, lineage, training time, memory and input path, the loss per epoch and the pictures' paths.

    The registry keeps these as strings (MLflow tags); the card gives them their types, as
    ``recflow models show --json`` prints them: ``promote`` a boolean, thresholds and training
    figures numbers, ``champion_version`` an integer, ``null`` where nothing was recorded. The
    hyperparameters stay strings, as the training job received them.

    ``version`` when given, else the version ``alias`` points at. Raises :class:`RegistryError`
    when there is no such model, version or alias.
    """
    registry = registry_for(settings)
    registry.require_model(name)
    if version is None:
        info = registry.get_by_alias(name, alias)
        if info is None:
            raise RegistryError(f"{name} has no version with the alias {alias!r}")
    else:
        info = registry.get_version(name, version)
    tags = info.run_tags
    losses = registry.curve(info, "loss")
    pictures = registry.pictures(info)
    champion_metrics = tags.get("gate.champion_metrics")
    return {
        "name": info.name,
        "version": info.version,
        "aliases": info.aliases,
        "complete": info.complete,
        "created_at": info.created_at,
        "metrics": info.metrics,
        "gate": {
            "promote": _flag(tags.get("gate.promote")),
            "reason": tags.get("gate.reason"),
            # a version published before the gate could judge the full ranking was judged on the sampled one
            "ranking": tags.get("gate.ranking", "sampled" if "gate.reason" in tags else None),
            "thresholds": {k: _number(tags.get(f"gate.{k}")) for k in GATE_APPLIED if k != "ranking"},
            "champion_version": version_tag(tags.get("gate.champion_version")),
            "champion_metrics": json.loads(champion_metrics) if champion_metrics else None,
        },
        "hyperparameters": info.params,
        "lineage": info.lineage,
        "training": {
            "seconds": _number(tags.get("training.seconds")),
            "peak_memory_mb": _number(tags.get("training.peak_memory_mb")),
            # a job from before the streamed input loaded its channel whole
            "input": tags.get("training.input", "memory"),
            "loss_per_epoch": losses,
        },
        "serving": {
            key: SERVING_TYPES.get(key, str)(v)
            for k, v in tags.items()
            if k.startswith("serving.") and (key := k.removeprefix("serving."))
        },
        "pictures": pictures,
        "source": info.source,
    }
