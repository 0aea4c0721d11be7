from __future__ import annotations

from pathlib import Path

import pytest

from recflow.training.spec import TrainingJobSpec, attempt_name, code_version, job_name

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


def test_bad_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="naming rule"):
        job_name("---", "", "", {})
