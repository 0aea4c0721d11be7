"""The two-tower model's hyperparameters: their one declaration, and the typed value the job parses.

Each field of :class:`Hyperparameters` is declared once with :func:`declare`: its name, type,
default, bounds and help. The job validates its string map against it (``ContractError`` naming
the field, the value and the bound), and the DAG's run params (``recflow.airflow.params``) are
derived from :data:`DECLARATIONS`, so a bound changed here moves both.

The defaults are the ones chosen on the MovieLens validation split by
``bench/sweep_two_tower.py`` (see ``docs/model.md``); the holdout was not used
to choose them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar, cast

from recflow_ml.contract import ContractError

Number = TypeVar("Number", int, float)


@dataclass(frozen=True)
class Bounds:
    """The values a hyperparameter accepts: ``choices``, or between ``minimum`` and ``maximum``
    (inclusive unless ``exclusive_minimum`` / ``exclusive_maximum``; None = no bound)."""

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[int, ...] = ()

    def refusal(self, value: float) -> str | None:
        """Why ``value`` is out of bounds (``"must be <= 512"``), or None when it is within them."""
        if self.choices:
            return None if value in self.choices else f"must be one of {', '.join(map(str, self.choices))}"
        if self.minimum is not None:
            if self.exclusive_minimum and not value > self.minimum:
                return f"must be > {self.minimum}"
            if not self.exclusive_minimum and not value >= self.minimum:
                return f"must be >= {self.minimum}"
        if self.maximum is not None:
            if self.exclusive_maximum and not value < self.maximum:
                return f"must be < {self.maximum}"
            if not self.exclusive_maximum and not value <= self.maximum:
                return f"must be <= {self.maximum}"
        return None


@dataclass(frozen=True)
class Declaration:
    """One hyperparameter as declared: what the job validates and the DAG's param schema shows."""

    name: str
    kind: type[int] | type[float]
    default: int | float
    bounds: Bounds
    help: str


def declare(
    default: Number,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    choices: tuple[int, ...] = (),
) -> Number:
    """A field of :class:`Hyperparameters`: its default, with its help and bounds as metadata."""
    bounds = Bounds(minimum, maximum, exclusive_minimum, exclusive_maximum, choices)
    return field(default=default, metadata={"help": help, "bounds": bounds})


@dataclass(frozen=True)
class Hyperparameters:
    embedding_dim: int = declare(128, "Width of both towers.", minimum=4, maximum=512)
    epochs: int = declare(20, "Passes over the train split.", minimum=1, maximum=200)
    batch_size: int = declare(256, "Examples per step.", minimum=16, maximum=65536)
    learning_rate: float = declare(
        0.002, "AdamW's peak step size (cosine decay).", minimum=0, exclusive_minimum=True, maximum=1
    )
    temperature: float = declare(1.0, "Softmax temperature.", minimum=0, exclusive_minimum=True, maximum=10)
    oov_rate: float = declare(
        0.02, "Share of users trained as unknown.", minimum=0, maximum=1, exclusive_maximum=True
    )
    seed: int = declare(7, "Seed of the training job.", minimum=0, maximum=2**31 - 1)
    history_length: int = declare(
        20, "Recent engagements pooled into the user tower.", minimum=1, maximum=500
    )
    history_decay: float = declare(
        0.6, "Recency weight per step back (1 = mean).", minimum=0, exclusive_minimum=True, maximum=1
    )
    hidden_dim: int = declare(256, "User tower's hidden layer.", minimum=4, maximum=4096)
    dropout: float = declare(0.3, "Dropout in the user tower.", minimum=0, maximum=1, exclusive_maximum=True)
    weight_decay: float = declare(0.1, "AdamW decoupled weight decay.", minimum=0, maximum=1)
    mask_history: int = declare(1, "1 = never score a user's history items as targets.", choices=(0, 1))
    sampled_softmax_min_items: int = declare(
        100_000,
        "Catalogues of at least this many pins train on a sampled softmax with logQ correction; "
        "smaller ones on the full softmax.",
        minimum=1,
        maximum=1_000_000_000,
    )
    num_negatives: int = declare(
        1024, "Uniform negatives shared by a batch (sampled softmax only).", minimum=1, maximum=65536
    )
    stream_min_interactions: int = declare(
        5_000_000,
        "Channels of at least this many interactions are streamed by row group, histories read from the "
        "snapshot; smaller ones are loaded whole.",
        minimum=1,
        maximum=1_000_000_000_000,
    )
    shuffle_buffer: int = declare(
        1_000_000, "Examples shuffled together (streamed input only).", minimum=1, maximum=100_000_000
    )
    checkpoint_steps: int = declare(
        0,
        "Also checkpoint every this many steps within an epoch (0 = at epoch ends only).",
        minimum=0,
        maximum=1_000_000_000,
    )

    def __post_init__(self) -> None:
        """Every value within its declared bounds, else ``ContractError`` naming field, value and bound."""
        for name, declared in DECLARATIONS.items():
            value = getattr(self, name)
            refusal = declared.bounds.refusal(value)
            if refusal is not None:
                raise ContractError(f"hyperparameter {name}={value!r} {refusal}")

    @classmethod
    def from_strings(cls, raw: Mapping[str, str]) -> Hyperparameters:
        """Parse SageMaker-style string values; unknown or malformed names are errors, not ignored."""
        unknown = sorted(set(raw) - set(DECLARATIONS))
        if unknown:
            raise ContractError(f"unknown hyperparameter(s) {unknown}; known: {sorted(DECLARATIONS)}")
        values: dict[str, int | float] = {}
        for name, text in raw.items():
            kind = DECLARATIONS[name].kind
            try:
                values[name] = kind(text)
            except ValueError:
                raise ContractError(
                    f"hyperparameter {name}={text!r} is not a valid {kind.__name__}"
                ) from None
        return cls(**cast(dict[str, Any], values))

    def as_strings(self) -> dict[str, str]:
        return {k: str(v) for k, v in dataclasses.asdict(self).items()}


def _declaration(f: dataclasses.Field[Any]) -> Declaration:
    kind: type[int] | type[float] = int if f.type in (int, "int") else float
    return Declaration(f.name, kind, cast(int | float, f.default), f.metadata["bounds"], f.metadata["help"])


DECLARATIONS: dict[str, Declaration] = {f.name: _declaration(f) for f in fields(Hyperparameters)}
"""Every hyperparameter's declaration by name, in field order: what validation and the DAG's params read."""
