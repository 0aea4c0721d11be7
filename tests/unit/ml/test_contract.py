from __future__ import annotations

import json
from pathlib import Path

import pytest

from recflow_ml.contract import ContractError, TrainingEnv
from recflow_ml.hyperparameters import Hyperparameters
from recflow_ml.layout import CONTAINER_CHECKPOINT_DIR, JobLayout, host_share


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


def test_a_channel_is_sharded_only_when_the_platform_says_so_and_the_job_has_hosts(tmp_path: Path) -> None:
    """``S3DistributionType`` as SageMaker writes it into ``inputdataconfig.json``."""
    layout = JobLayout(tmp_path)
    channels = {
        "train": {"S3DistributionType": "ShardedByS3Key"},
        "catalogue": {"S3DistributionType": "FullyReplicated"},
        "holdout": {},
    }
    layout.write_config({}, channels, hosts=["algo-1", "algo-2"], current_host="algo-2")
    env = TrainingEnv.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert [env.sharded(c) for c in ("train", "catalogue", "holdout")] == [True, False, False]

    layout.write_config({}, channels)  # one host holds every object, whatever the distribution
    assert not TrainingEnv.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}).sharded("train")

    layout.write_config({}, {"train": {"S3DistributionType": "ShardedByHash"}})
    with pytest.raises(
        ContractError, match=r"channel 'train': S3DistributionType 'ShardedByHash' in .*inputdataconfig"
    ):
        TrainingEnv.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)})


def test_a_sharded_channel_is_dealt_out_disjoint_and_whole() -> None:
    keys = [f"interactions.parquet/part-{k:05d}.parquet" for k in (4, 0, 3, 1, 2)]
    shares = [host_share(keys, 3, k) for k in range(3)]
    assert sorted(k for s in shares for k in s) == sorted(keys), "every object on exactly one host"
    assert [len(s) for s in shares] == [2, 2, 1]
    assert shares == [host_share(list(reversed(keys)), 3, k) for k in range(3)], (
        "by key, not by listing order"
    )
    with pytest.raises(ValueError, match="host index 3 is not among 3 hosts"):
        host_share(keys, 3, 3)


@pytest.mark.parametrize(
    ("channels", "refusal"),
    [
        (
            {"train": {"S3DistributionType": "ShardedByS3Key"}},
            "the train channel is ShardedByS3Key, so each host holds only some of its files: give the side "
            "tables (pins.parquet, users.parquet) in a FullyReplicated channel 'catalogue'",
        ),
        (
            {"train": {}, "catalogue": {"S3DistributionType": "ShardedByS3Key"}},
            "the 'catalogue' channel is ShardedByS3Key: every host needs the side tables",
        ),
    ],
)
def test_a_job_of_several_hosts_refuses_side_tables_some_hosts_would_lack(
    tmp_path: Path, channels: dict[str, dict[str, str]], refusal: str
) -> None:
    """Refused before any host waits for another: the job fails at once, and says why."""
    import subprocess
    import sys

    from recflow.core.config import subprocess_env

    layout = JobLayout(tmp_path)
    layout.write_config({}, channels, hosts=["127.0.0.1:1", "127.0.0.1:2"], current_host="127.0.0.1:1")
    for name in channels:
        layout.channel_dir(name).mkdir(parents=True)
    job = subprocess.run(
        [sys.executable, "-m", "recflow_ml.train", "train"],
        env=subprocess_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert job.returncode == 1, job.stderr[-2000:]
    assert layout.failure_file.read_text().startswith(f"ContractError: {refusal}")
