"""How recflow's names map onto MLflow's: metric keys, quoted search values, the champion's history
tags, a version's ``recflow.complete`` flag, and ``file:`` artifact URIs as local paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlparse

from recflow.registry.model import COMPLETE_TAG, HISTORY_PREFIX


def to_mlflow_key(metric: str) -> str:
    return metric.replace("@", "_at_")


def from_mlflow_key(key: str) -> str:
    return key.replace("_at_", "@")


def quoted(value: str) -> str:
    if "'" in value:
        raise ValueError(f"{value!r}: registry names and ids cannot contain a single quote")
    return f"'{value}'"


def history_key(seq: int) -> str:
    return f"{HISTORY_PREFIX}{seq:06d}"


def is_complete(tags: Mapping[str, str], run: Any | None) -> bool:
    flag = tags.get(COMPLETE_TAG)
    if flag is not None:
        return flag == "true"
    # versions registered before publishing was idempotent carry no flag: that code created
    # a version only after the run's artifacts were logged and the run terminated
    return run is not None and run.info.status == "FINISHED"


def local_path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri
