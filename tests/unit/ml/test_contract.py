from __future__ import annotations

import json
from pathlib import Path

import pytest

from recflow_ml.contract import ContractError, TrainingEnv
from recflow_ml.hyperparameters import Hyperparameters


def test_reads_the_layout_under_a_movable_base_dir(tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"epochs": "3"}))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {}, "holdout": {}}))
    (tmp_path / "input" / "data" / "train").mkdir(parents=True)
    env = TrainingEnv.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert env.model_dir == tmp_path / "model"
    assert env.hyperparameters == {"epochs": "3"}
    assert env.channel("train") == tmp_path / "input" / "data" / "train"
    with pytest.raises(ContractError, match=r"channel .holdout.: directory .* does not exist"):
        env.channel("holdout")
    with pytest.raises(ContractError, match="channel 'validation' was not given"):
        env.channel("validation")


def test_toolkit_variables_win(tmp_path: Path) -> None:
    env = TrainingEnv.from_env(
        {
            "SAGEMAKER_BASE_DIR": str(tmp_path),
            "SM_MODEL_DIR": str(tmp_path / "m"),
            "SM_CHANNELS": '["train"]',
            "SM_CHANNEL_TRAIN": str(tmp_path / "t"),
            "SM_HPS": '{"epochs": 4, "learning_rate": 0.5}',
        }
    )
    assert env.model_dir == tmp_path / "m"
    assert env.channels == {"train": tmp_path / "t"}
    assert env.hyperparameters == {"epochs": "4", "learning_rate": "0.5"}


def test_failure_reason_is_written_and_truncated(tmp_path: Path) -> None:
    env = TrainingEnv.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    env.write_failure("x" * 5000)
    assert len((tmp_path / "output" / "failure").read_text()) == 1024


def test_hyperparameters_parse_and_refuse_clearly() -> None:
    hp = Hyperparameters.from_strings({"epochs": "3", "learning_rate": "0.05"})
    assert (hp.epochs, hp.learning_rate) == (3, 0.05)
    assert Hyperparameters.from_strings(hp.as_strings()) == hp
    with pytest.raises(ContractError, match=r"hyperparameter epochs='three' is not a valid int"):
        Hyperparameters.from_strings({"epochs": "three"})
    with pytest.raises(ContractError, match=r"unknown hyperparameter\(s\) \['epoch'\]"):
        Hyperparameters.from_strings({"epoch": "3"})
    with pytest.raises(ContractError, match=r"learning_rate=-1\.0 must be > 0"):
        Hyperparameters.from_strings({"learning_rate": "-1"})
