"""The hyperparameters' one declaration: the job's validation reads its bounds."""

from __future__ import annotations

import dataclasses

import pytest

from recflow_ml.contract import ContractError
from recflow_ml.hyperparameters import DECLARATIONS, Hyperparameters


def test_every_field_is_declared_with_its_default_type_and_help() -> None:
    defaults = Hyperparameters()
    assert list(DECLARATIONS) == [f.name for f in dataclasses.fields(Hyperparameters)]
    for name, declared in DECLARATIONS.items():
        assert declared.default == getattr(defaults, name) and declared.help, name
        assert isinstance(declared.default, declared.kind), name
        assert declared.bounds.refusal(declared.default) is None, name


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"embedding_dim": "513"}, "hyperparameter embedding_dim=513 must be <= 512"),
        ({"embedding_dim": "3"}, "hyperparameter embedding_dim=3 must be >= 4"),
        ({"learning_rate": "0"}, "hyperparameter learning_rate=0.0 must be > 0"),
        ({"dropout": "1"}, "hyperparameter dropout=1.0 must be < 1"),
        ({"mask_history": "2"}, "hyperparameter mask_history=2 must be one of 0, 1"),
        ({"seed": "-1"}, "hyperparameter seed=-1 must be >= 0"),
    ],
)
def test_a_value_out_of_bounds_is_refused_naming_field_value_and_bound(
    raw: dict[str, str], message: str
) -> None:
    with pytest.raises(ContractError) as refused:
        Hyperparameters.from_strings(raw)
    assert str(refused.value) == message


def test_the_bounds_are_inclusive_where_declared_so() -> None:
    edges = {"embedding_dim": "512", "batch_size": "16", "learning_rate": "1", "weight_decay": "0"}
    hp = Hyperparameters.from_strings(edges)
    assert (hp.embedding_dim, hp.batch_size, hp.learning_rate, hp.weight_decay) == (512, 16, 1.0, 0.0)
