"""What a model's name may be in the registry that will hold it: one rule, read where the name is
chosen (the train step, before a job is launched) and where the registry is written."""

from __future__ import annotations

import re
from typing import Final

SAGEMAKER_GROUP_NAME: Final = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
"""SageMaker's pattern for a model package group's name (the model's name there)."""


def name_refusal(registry_backend: str, name: str) -> str | None:
    """Why ``registry_backend`` would refuse a model named ``name``, or None. MLflow takes any name the
    params' pattern lets through; SageMaker's Model Registry takes letters, digits and hyphens only."""
    if registry_backend == "sagemaker" and (len(name) > 63 or not SAGEMAKER_GROUP_NAME.fullmatch(name)):
        return (
            f"{name!r} is not a name SageMaker's Model Registry takes (RECFLOW_REGISTRY_BACKEND=sagemaker): "
            "1 to 63 letters, digits and hyphens"
        )
    return None
