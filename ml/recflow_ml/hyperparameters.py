"""Typed hyperparameters of the two-tower model, parsed from the job's string map.

The defaults are the ones chosen on the MovieLens validation split by
``bench/sweep_two_tower.py`` (see ``docs/model.md``); the holdout was not used
to choose them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields

from recflow_ml.contract import ContractError


@dataclass(frozen=True)
class Hyperparameters:
    embedding_dim: int = 64
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 0.003
    temperature: float = 1.0
    oov_rate: float = 0.02
    seed: int = 7
    history_length: int = 20
    history_decay: float = 0.6
    hidden_dim: int = 128
    dropout: float = 0.1
    weight_decay: float = 0.01
    mask_history: int = 1
    sampled_softmax_min_items: int = 100_000
    """A catalogue of this many pins or more trains on a sampled softmax (``num_negatives`` uniform
    negatives + in-batch negatives, logQ-corrected); a smaller one on the full softmax."""
    num_negatives: int = 1024
    """Uniform negatives drawn per step and shared by the batch (sampled softmax only)."""

    def __post_init__(self) -> None:
        positive = (
            "embedding_dim",
            "epochs",
            "batch_size",
            "learning_rate",
            "temperature",
            "history_length",
            "history_decay",
            "hidden_dim",
            "sampled_softmax_min_items",
            "num_negatives",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ContractError(f"hyperparameter {name}={getattr(self, name)!r} must be > 0")
        for name in ("oov_rate", "dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ContractError(f"hyperparameter {name}={getattr(self, name)!r} must be in [0, 1)")
        if self.history_decay > 1:
            raise ContractError(f"hyperparameter history_decay={self.history_decay!r} must be in (0, 1]")
        if self.weight_decay < 0:
            raise ContractError(f"hyperparameter weight_decay={self.weight_decay!r} must be >= 0")
        if self.mask_history not in (0, 1):
            raise ContractError(f"hyperparameter mask_history={self.mask_history!r} must be 0 or 1")

    @classmethod
    def from_strings(cls, raw: Mapping[str, str]) -> Hyperparameters:
        """Parse SageMaker-style string values; unknown or malformed names are errors, not ignored."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ContractError(f"unknown hyperparameter(s) {unknown}; known: {sorted(known)}")
        values: dict[str, int | float] = {}
        for name, text in raw.items():
            kind = int if known[name].type in (int, "int") else float
            try:
                values[name] = kind(text)
            except ValueError:
                raise ContractError(
                    f"hyperparameter {name}={text!r} is not a valid {kind.__name__}"
                ) from None
        return cls(**values)  # type: ignore[arg-type]

    def as_strings(self) -> dict[str, str]:
        return {k: str(v) for k, v in dataclasses.asdict(self).items()}
