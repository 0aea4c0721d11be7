from __future__ import annotations

import dataclasses

from recflow.airflow.params import HYPERPARAMETERS, hyperparameters_from_params
from recflow_ml.hyperparameters import Hyperparameters


def test_params_mirror_the_models_hyperparameters() -> None:
    """A run with default params trains exactly the model's chosen defaults."""
    defaults = Hyperparameters()
    assert set(HYPERPARAMETERS) == {f.name for f in dataclasses.fields(Hyperparameters)}
    assert {name: param.value for name, param in HYPERPARAMETERS.items()} == dataclasses.asdict(defaults)
    assert Hyperparameters.from_strings(hyperparameters_from_params({})) == defaults


def test_overrides_become_strings() -> None:
    hps = hyperparameters_from_params({"epochs": 3, "learning_rate": 0.05})
    assert hps["epochs"] == "3" and hps["learning_rate"] == "0.05"
    assert Hyperparameters.from_strings(hps).epochs == 3
