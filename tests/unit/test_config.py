from __future__ import annotations

from pathlib import Path

import pytest

from recflow.config import ConfigError, Settings


def test_defaults_put_all_state_under_home(tmp_path: Path) -> None:
    s = Settings.from_env({"RECFLOW_HOME": str(tmp_path)})
    assert s.duckdb_path == tmp_path / "warehouse" / "recflow.duckdb"
    assert s.artifacts_uri == (tmp_path / "artifacts").as_uri()
    assert s.mlflow_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert s.training_backend == "local"
    assert s.dbt_env()["RECFLOW_DUCKDB_PATH"] == str(s.duckdb_path)


def test_bad_values_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RECFLOW_TRAINING_BACKEND='k8s' is not one of local, sagemaker"):
        Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_TRAINING_BACKEND": "k8s"})
    with pytest.raises(ConfigError, match="RECFLOW_GATE_TOLERANCE='a lot' is not a number"):
        Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_GATE_TOLERANCE": "a lot"})


def test_production_overrides(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "RECFLOW_HOME": str(tmp_path),
            "RECFLOW_ARTIFACT_ROOT": "s3://bucket/recflow",
            "RECFLOW_TRAINING_BACKEND": "sagemaker",
            "RECFLOW_GATE_MIN_HR_AT_10": "0.3",
            "RECFLOW_GIT_COMMIT": "abc123",
        }
    )
    assert s.artifacts_uri == "s3://bucket/recflow"
    assert s.training_backend == "sagemaker"
    assert s.gate.min_hr_at_10 == 0.3
    assert s.git_commit == "abc123"


def test_to_env_round_trips(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "RECFLOW_HOME": str(tmp_path),
            "RECFLOW_MODEL_NAME": "m",
            "RECFLOW_MLFLOW_TRACKING_URI": "sqlite:////x.db",
            "RECFLOW_GATE_TOLERANCE": "0.05",
            "RECFLOW_ARTIFACT_ROOT": "s3://b/p",
        }
    )
    assert Settings.from_env(s.to_env()) == s
