from __future__ import annotations

import json
from pathlib import Path

import pytest

from recflow_ml.contract import ContractError, TrainingEnv
from recflow_ml.hyperparameters import Hyperparameters
from recflow_ml.layout import CONTAINER_CHECKPOINT_DIR, JobLayout


def test_the_layout_is_sagemakers(tmp_path: Path) -> None:
    """The paths SageMaker documents for /opt/ml, which every writer and the reader share."""
    layout = JobLayout(tmp_path)
    config = layout.write_config({"epochs": "3"}, {"train": {"ContentType": None}})
    assert config == tmp_path / "input" / "config"
    assert json.loads((config / "hyperparameters.json").read_text()) == {"epochs": "3"}
    assert json.loads((config / "inputdataconfig.json").read_text()) == {"train": {"ContentType": None}}
    resource = json.loads((config / "resourceconfig.json").read_text())
    assert resource == {"current_host": "algo-1", "hosts": ["algo-1"]}
    assert layout.channel_dir("train") == tmp_path / "input" / "data" / "train"
    assert (layout.model_dir, layout.checkpoint_dir) == (tmp_path / "model", tmp_path / "checkpoints")
    assert layout.failure_file == tmp_path / "output" / "failure"
    assert layout.output_data_dir == tmp_path / "output" / "data"
    assert CONTAINER_CHECKPOINT_DIR.as_posix() == "/opt/ml/checkpoints"
    assert layout.container_path("/opt/ml/checkpoints") == layout.checkpoint_dir
    with pytest.raises(ValueError):
        layout.container_path("/elsewhere/checkpoints")


def test_reads_the_layout_under_a_movable_base_dir(tmp_path: Path) -> None:
    layout = JobLayout(tmp_path)
    layout.write_config({"epochs": "3"}, {"train": {}, "holdout": {}})
    layout.channel_dir("train").mkdir(parents=True)
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
    assert len(JobLayout(tmp_path).failure_file.read_text()) == 1024


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
