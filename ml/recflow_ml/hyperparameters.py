"""Typed hyperparameters of the two-tower model, parsed from the job's string map."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields

from recflow_ml.contract import ContractError


@dataclass(frozen=True)
class Hyperparameters:
    embedding_dim: int = 32
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 0.01
    temperature: float = 0.1
    oov_rate: float = 0.02
    seed: int = 7

    def __post_init__(self) -> None:
        positive = ("embedding_dim", "epochs", "batch_size", "learning_rate", "temperature")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ContractError(f"hyperparameter {name}={getattr(self, name)!r} must be > 0")
        if not 0 <= self.oov_rate < 1:
            raise ContractError(f"hyperparameter oov_rate={self.oov_rate!r} must be in [0, 1)")

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
