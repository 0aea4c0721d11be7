"""The model card: everything a person asks of a registered version, read back from the registry."""

from __future__ import annotations

import json
from collections.abc import Callable
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
    when there is no such model, version or alias, or when a tag holds what publish never writes
    (edited by hand), naming the tag and its text.
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

    def tag(key: str, parse: Callable[[str | None], Any]) -> Any:
        """The run tag ``key`` through ``parse``, or an error naming the version, the tag and what it holds."""
        text = tags.get(key)
        try:
            return parse(text)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise RegistryError(
                f"{info.name} version {info.version}: run tag {key} holds {text!r}, which publish never"
                f" writes ({exc}); set it back in the version's run, or delete it to read as not recorded"
            ) from exc

    losses = registry.curve(info, "loss")
    pictures = registry.pictures(info)
    return {
        "name": info.name,
        "version": info.version,
        "aliases": info.aliases,
        "complete": info.complete,
        "created_at": info.created_at,
        "metrics": info.metrics,
        "gate": {
            "promote": tag("gate.promote", _flag),
            "reason": tags.get("gate.reason"),
            # a version published before the gate could judge the full ranking was judged on the sampled one
            "ranking": tags.get("gate.ranking", "sampled" if "gate.reason" in tags else None),
            "thresholds": {k: tag(f"gate.{k}", _number) for k in GATE_APPLIED if k != "ranking"},
            "champion_version": tag("gate.champion_version", version_tag),
            "champion_metrics": tag("gate.champion_metrics", lambda t: json.loads(t) if t else None),
        },
        "hyperparameters": info.params,
        "lineage": info.lineage,
        "training": {
            "seconds": tag("training.seconds", _number),
            "peak_memory_mb": tag("training.peak_memory_mb", _number),
            # a job from before the streamed input loaded its channel whole
            "input": tags.get("training.input", "memory"),
            "loss_per_epoch": losses,
        },
        "serving": {
            key: tag(k, SERVING_TYPES.get(key, str))
            for k in tags
            if k.startswith("serving.") and (key := k.removeprefix("serving."))
        },
        "pictures": pictures,
        "source": info.source,
    }
