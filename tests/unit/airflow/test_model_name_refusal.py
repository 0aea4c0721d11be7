"""A model name the configured registry would refuse is refused before anything trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recflow.airflow import training
from recflow.airflow.params import TRAIN_PARAMS, check_conf, chosen_model_name
from recflow.core.config import Settings
from recflow.core.errors import ConfigError, ParamsError


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"RECFLOW_HOME": str(tmp_path), **env})


SAGEMAKER = {"RECFLOW_REGISTRY_BACKEND": "sagemaker", "RECFLOW_ARTIFACT_ROOT": "s3://acme-ml/recflow"}


def test_sagemaker_refuses_what_the_params_pattern_lets_through(tmp_path: Path) -> None:
    """recsys_walk8 passed the params' pattern, trained, evaluated, passed the gate, and failed publish
    twice (a ValueError, retried, kind infrastructure)."""
    check_conf("recsys_train_and_publish", TRAIN_PARAMS, {"model_name": "recsys_walk8"})  # the pattern's
    settings = _settings(tmp_path, **SAGEMAKER)
    with pytest.raises(ParamsError, match="param model_name: 'recsys_walk8' is not a name SageMaker") as p:
        chosen_model_name(settings, {"model_name": "recsys_walk8"})
    assert not p.value.retryable
    assert chosen_model_name(settings, {"model_name": "recsys-walk8"}) == "recsys-walk8"
    long = "a" + "-b" * 40  # SageMaker's pattern counts no hyphen: its 63 is the length's bound
    with pytest.raises(ConfigError, match="1 to 63"):
        chosen_model_name(_settings(tmp_path, RECFLOW_MODEL_NAME=long, **SAGEMAKER), {})
    named = _settings(tmp_path, RECFLOW_MODEL_NAME="recsys_demo", **SAGEMAKER)
    with pytest.raises(ConfigError, match="RECFLOW_MODEL_NAME: 'recsys_demo' is not a name SageMaker"):
        chosen_model_name(named, {})
    # MLflow's registry takes it
    assert chosen_model_name(_settings(tmp_path), {"model_name": "recsys_walk8"}) == "recsys_walk8"


def test_the_train_task_refuses_it_before_launching_a_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training, "task_settings", lambda: _settings(tmp_path, **SAGEMAKER))

    def launched(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("a job was launched for a model the registry refuses")

    monkeypatch.setattr("recflow.training.jobs.start_on_snapshot", launched)
    operator = training.TrainingJobOperator(task_id="train", snapshot={"snapshot_id": "s"})
    with pytest.raises(ParamsError, match="recsys_walk8"):
        operator.execute({"params": {"model_name": "recsys_walk8"}})
