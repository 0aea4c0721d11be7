from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from recflow.core.errors import ParamsError, TrainingJobFailed
from recflow.training.jobs import failure_kind, hyperparameters_of, job_failed
from recflow.training.spec import (
    MAX_RUNTIME_SECONDS,
    TrainingJobSpec,
    attempt_name,
    base_name,
    code_version,
    job_name,
)
from recflow_ml.hyperparameters import Hyperparameters

HPS = {"epochs": "3", "learning_rate": "0.01"}


def test_job_name_is_deterministic_and_sagemaker_valid() -> None:
    a = job_name("recsys_train", "abcdef0123456789", "c0de", HPS)
    assert a == job_name("recsys_train", "abcdef0123456789", "c0de", dict(reversed(list(HPS.items()))))
    assert a.startswith("recsys-train-abcdef012345-c0de-")
    assert len(a) <= 63
    assert a != job_name("recsys_train", "abcdef0123456789", "c0de", {**HPS, "epochs": "4"})
    assert a != job_name("recsys_train", "fffff", "c0de", HPS)
    assert attempt_name(a, 1) == a
    assert attempt_name(a, 3) == f"{a}-r3"
    assert base_name(attempt_name(a, 3)) == base_name(a) == a


def test_code_version_changes_with_the_code(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print(1)\n")
    before = code_version(tmp_path)
    assert before == code_version(tmp_path)
    (tmp_path / "train.py").write_text("print(2)\n")
    assert code_version(tmp_path) != before


def test_request_has_the_create_training_job_shape() -> None:
    spec = TrainingJobSpec(
        name="job-1",
        image="123.dkr.ecr.us-east-1.amazonaws.com/recflow-ml:abc",
        role_arn="arn:aws:iam::123:role/sm",
        hyperparameters={"epochs": 3},  # type: ignore[dict-item]
        channels={"train": "s3://b/snap/train", "holdout": "s3://b/snap/holdout"},
        output_uri="s3://b/models",
        tags={"snapshot_id": "s1"},
    )
    body = spec.request()
    assert body["TrainingJobName"] == "job-1"
    assert body["HyperParameters"] == {"epochs": "3"}
    assert [c["ChannelName"] for c in body["InputDataConfig"]] == ["holdout", "train"]
    assert body["InputDataConfig"][1]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://b/snap/train"
    assert body["OutputDataConfig"] == {"S3OutputPath": "s3://b/models"}
    assert body["ResourceConfig"]["InstanceCount"] == 1
    assert body["StoppingCondition"]["MaxRuntimeInSeconds"] > 0
    assert body["Tags"] == [{"Key": "snapshot_id", "Value": "s1"}]


def test_a_multi_host_job_asks_for_its_instances_and_replicates_every_channel(tmp_path: Path) -> None:
    from recflow.core.config import Settings
    from recflow.core.errors import ConfigError
    from recflow.training.local import LocalTrainingBackend

    spec = TrainingJobSpec(
        name="job-2",
        image="img",
        role_arn="arn:aws:iam::123:role/sm",
        hyperparameters={},
        channels={"train": "s3://b/snap/train"},
        output_uri="s3://b/models",
        instance_count=3,
    )
    body = spec.request()
    assert body["ResourceConfig"]["InstanceCount"] == 3
    assert (
        body["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataDistributionType"]
        == "FullyReplicated"
    )
    local = LocalTrainingBackend(Settings.from_env({"RECFLOW_HOME": str(tmp_path)}))
    with pytest.raises(ConfigError, match=r"InstanceCount=3 .* the local backend runs one host"):
        local.create_training_job(body)


def test_bad_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="naming rule"):
        job_name("---", "", "", {})


def test_every_attempt_of_a_job_shares_its_checkpoints() -> None:
    spec = TrainingJobSpec(
        name="recsys-train-abc-def-012345",
        image="img",
        role_arn="",
        hyperparameters={},
        channels={"train": "s3://b/t"},
        output_uri="s3://b/models",
        checkpoint_root="s3://b/recflow/checkpoints/",
    )
    first = spec.request()["CheckpointConfig"]
    assert first == {
        "S3Uri": "s3://b/recflow/checkpoints/recsys-train-abc-def-012345",
        "LocalPath": "/opt/ml/checkpoints",
    }
    third = replace(spec, name=attempt_name(spec.name, 3)).request()
    assert third["TrainingJobName"] == "recsys-train-abc-def-012345-r3"
    assert third["CheckpointConfig"] == first
    assert "CheckpointConfig" not in replace(spec, checkpoint_root="").request()
    assert spec.request()["StoppingCondition"] == {"MaxRuntimeInSeconds": MAX_RUNTIME_SECONDS}


@pytest.mark.parametrize(
    ("description", "kind"),
    [
        ({"TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxRuntimeExceeded"}, "max_runtime"),
        ({"TrainingJobStatus": "Stopped", "SecondaryStatus": "Stopped"}, "stopped"),
        ({"TrainingJobStatus": "Failed", "FailureReason": "ClientError: no data under s3://b/t"}, "client"),
        (
            {"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: ValueError: bad weight"},
            "algorithm",
        ),
        (
            {
                "TrainingJobStatus": "Failed",
                "FailureReason": "AlgorithmError: the training process was killed by signal SIGKILL (9) ...",
                "LocalExitSignal": "SIGKILL",
            },
            "killed",
        ),
        (
            {"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: ExitCode 137, out of memory"},
            "killed",
        ),
        ({"TrainingJobStatus": "Failed", "FailureReason": "InternalServerError: runner gone"}, "internal"),
        ({"TrainingJobStatus": "Failed"}, "internal"),
    ],
)
def test_failure_kind_is_read_from_the_description(description: dict[str, str], kind: str) -> None:
    assert failure_kind(description) == kind
    error = job_failed({"TrainingJobName": "j", **description})
    assert (error.kind, error.status, error.name) == (kind, description["TrainingJobStatus"], "j")
    assert error.runbook == TrainingJobFailed.RUNBOOKS[kind]


def test_hyperparameters_come_from_params_or_the_model_defaults() -> None:
    hps = hyperparameters_of({"epochs": 3, "learning_rate": 0.05, "dry_run": True, "model_name": None})
    assert hps == {**Hyperparameters().as_strings(), "epochs": "3", "learning_rate": "0.05"}
    assert hyperparameters_of({}) == Hyperparameters().as_strings()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"epochs": 5.0}, "epochs='5.0'"),
        ({"dropout": 1.5}, "dropout=1.5"),
        ({"mask_history": True}, "mask_history"),
    ],
)
def test_a_param_the_job_would_refuse_is_refused_before_launch(params: dict[str, object], named: str) -> None:
    with pytest.raises(ParamsError, match=re.escape(named)) as info:
        hyperparameters_of(params)
    assert "no training job was started" in str(info.value)


def test_the_operator_fails_without_retry_on_bad_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from recflow.airflow.training import DEFAULT_EXECUTION_TIMEOUT, TIMEOUT_MARGIN, TrainingJobOperator

    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    operator = TrainingJobOperator(task_id="train", snapshot={"snapshot_id": "never read"})
    assert operator.execution_timeout == DEFAULT_EXECUTION_TIMEOUT
    assert timedelta(seconds=MAX_RUNTIME_SECONDS) + TIMEOUT_MARGIN == DEFAULT_EXECUTION_TIMEOUT
    with pytest.raises(AirflowFailException, match=r"param epochs: .*epochs='5\.0'") as info:
        operator.execute({"params": {"epochs": 5.0}})
    assert isinstance(info.value.__cause__, ParamsError)
    assert operator.job_name is None
    assert not (tmp_path / "home" / "jobs").exists(), "no job was launched"
    operator.on_kill()  # nothing launched: nothing to stop
