"""Run parameters of ``recsys_train_and_publish``, validated by Airflow (JSON schema) at trigger time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import Param

HYPERPARAMETERS: dict[str, Param] = {
    "embedding_dim": Param(64, type="integer", minimum=4, maximum=512, description="Width of both towers."),
    "epochs": Param(10, type="integer", minimum=1, maximum=200, description="Passes over the train split."),
    "batch_size": Param(256, type="integer", minimum=16, maximum=65536, description="Examples per step."),
    "learning_rate": Param(
        0.003,
        type="number",
        exclusiveMinimum=0,
        maximum=1,
        description="AdamW's peak step size (cosine decay).",
    ),
    "temperature": Param(
        1.0, type="number", exclusiveMinimum=0, maximum=10, description="Softmax temperature."
    ),
    "oov_rate": Param(
        0.02, type="number", minimum=0, exclusiveMaximum=1, description="Share of users trained as unknown."
    ),
    "seed": Param(7, type="integer", minimum=0, description="Seed of the training job."),
    "history_length": Param(
        20,
        type="integer",
        minimum=1,
        maximum=500,
        description="Recent engagements pooled into the user tower.",
    ),
    "history_decay": Param(
        1.0,
        type="number",
        exclusiveMinimum=0,
        maximum=1,
        description="Recency weight per step back (1 = mean).",
    ),
    "hidden_dim": Param(
        128, type="integer", minimum=4, maximum=4096, description="User tower's hidden layer."
    ),
    "dropout": Param(
        0.1, type="number", minimum=0, exclusiveMaximum=1, description="Dropout in the user tower."
    ),
    "weight_decay": Param(0.0, type="number", minimum=0, description="AdamW weight decay."),
    "mask_history": Param(
        1, type="integer", enum=[0, 1], description="1 = never score a user's history items as targets."
    ),
}
"""Defaults equal ``recflow_ml.hyperparameters.Hyperparameters`` (chosen on validation, docs/model.md)."""

TRAIN_PARAMS: dict[str, Param] = {
    **HYPERPARAMETERS,
    "dry_run": Param(False, type="boolean", description="Train and evaluate, never publish."),
    "model_name": Param(
        None,
        type=["null", "string"],
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
        description="Registered model name; empty = RECFLOW_MODEL_NAME (default recsys-demo).",
    ),
}


def hyperparameters_from_params(params: Mapping[str, Any]) -> dict[str, str]:
    """The hyperparameters of a run as SageMaker wants them: every value a string."""
    return {name: str(params.get(name, param.value)) for name, param in HYPERPARAMETERS.items()}


WAREHOUSE_PARAMS: dict[str, Param] = {
    "reload_from": Param(
        None,
        type=["null", "string"],
        format="date",
        description="Historical reload: first day (YYYY-MM-DD) to land and check in this one run; empty = the run's own day.",
    ),
    "reload_to": Param(
        None,
        type=["null", "string"],
        format="date",
        description="Historical reload: last day (inclusive); give both or neither.",
    ),
}
