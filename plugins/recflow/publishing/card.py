"""The model card: everything a person asks of a registered version, read back from the registry."""

from __future__ import annotations

import json
from typing import Any

from recflow.core.config import Settings
from recflow.core.errors import RegistryError
from recflow.core.gate import GATE_APPLIED
from recflow.registry import CHAMPION, registry_for


def model_card(
    settings: Settings, name: str, version: int | None = None, alias: str = CHAMPION
) -> dict[str, Any]:
    """Everything a person asks of a version: metrics, the gate's decision and thresholds,
    hyperparameters, lineage, training time, memory and input path, the loss per epoch and the pictures' paths.

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
            "promote": tags.get("gate.promote"),
            "reason": tags.get("gate.reason"),
            # a version published before the gate could judge the full ranking was judged on the sampled one
            "ranking": tags.get("gate.ranking", "sampled" if "gate.reason" in tags else None),
            "thresholds": {k: tags.get(f"gate.{k}") for k in GATE_APPLIED if k != "ranking"},
            "champion_version": tags.get("gate.champion_version"),
            "champion_metrics": json.loads(champion_metrics) if champion_metrics else None,
        },
        "hyperparameters": info.params,
        "lineage": info.lineage,
        "training": {
            "seconds": tags.get("training.seconds"),
            "peak_memory_mb": tags.get("training.peak_memory_mb"),
            # a job from before the streamed input loaded its channel whole
            "input": tags.get("training.input", "memory"),
            "loss_per_epoch": losses,
        },
        "serving": {k.removeprefix("serving."): v for k, v in tags.items() if k.startswith("serving.")},
        "pictures": pictures,
        "source": info.source,
    }
