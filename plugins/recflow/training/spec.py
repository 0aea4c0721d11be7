"""Build ``CreateTrainingJob`` requests with deterministic job names."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recflow.core.config import PROJECT_ROOT
from recflow_ml.layout import CONTAINER_CHECKPOINT_DIR

ML_PACKAGE = PROJECT_ROOT / "ml" / "recflow_ml"
JOB_NAME_MAX = 63
_NAME_OK = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ATTEMPT_SUFFIX = re.compile(r"-r[0-9]+$")

MAX_RUNTIME_SECONDS = 3600
"""``StoppingCondition.MaxRuntimeInSeconds`` of every training job; the train task's timeout derives from it."""
CHECKPOINT_LOCAL_PATH = CONTAINER_CHECKPOINT_DIR.as_posix()
"""``CheckpointConfig.LocalPath``: where the container finds (and writes) its checkpoints."""


def code_version(package: Path = ML_PACKAGE) -> str:
    """A hash of the training code: the same sources give the same version, any edit a new one."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _hash(mapping: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(mapping.items()))).encode()).hexdigest()


def job_name(prefix: str, snapshot_id: str, code: str, hyperparameters: Mapping[str, str]) -> str:
    """``<prefix>-<snapshot>-<code>-<hps>``: the same inputs always name the same job."""
    clean = re.sub(r"[^a-zA-Z0-9-]+", "-", prefix).strip("-")[:24]
    name = f"{clean}-{snapshot_id[:12]}-{code[:8]}-{_hash(hyperparameters)[:6]}"
    if not _NAME_OK.match(name) or len(name) > JOB_NAME_MAX:
        raise ValueError(f"training job name {name!r} breaks SageMaker's naming rule")
    return name


def attempt_name(base: str, attempt: int) -> str:
    """Name of the n-th launch of a job (after failed ones): ``base``, ``base-r2``, ``base-r3``..."""
    return base if attempt <= 1 else f"{base}-r{attempt}"


def base_name(name: str) -> str:
    """The job name without its attempt suffix: ``base-r3`` → ``base``."""
    return _ATTEMPT_SUFFIX.sub("", name)


@dataclass(frozen=True)
class TrainingJobSpec:
    name: str
    image: str
    role_arn: str
    hyperparameters: Mapping[str, str]
    channels: Mapping[str, str]
    output_uri: str
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    """Hosts of the job: more than one trains on MultiWorkerMirroredStrategy (``recflow_ml.distributed``)."""
    max_runtime_seconds: int = MAX_RUNTIME_SECONDS
    tags: Mapping[str, str] | None = None
    checkpoint_root: str = ""
    """Where checkpoints live (``<artifacts>/checkpoints``); empty = the job keeps none. Each job's
    are under ``<checkpoint_root>/<base name>``: its ``-r2``, ``-r3`` attempts resume from them."""

    @property
    def checkpoint_uri(self) -> str:
        if not self.checkpoint_root:
            return ""
        return f"{self.checkpoint_root.rstrip('/')}/{base_name(self.name)}"

    def request(self) -> dict[str, Any]:
        """The ``CreateTrainingJob`` request body (hyperparameters as strings, as SageMaker wants)."""
        body: dict[str, Any] = {
            "TrainingJobName": self.name,
            "AlgorithmSpecification": {"TrainingImage": self.image, "TrainingInputMode": "File"},
            "RoleArn": self.role_arn or "arn:aws:iam::000000000000:role/recflow-local",
            "HyperParameters": {k: str(v) for k, v in self.hyperparameters.items()},
            "InputDataConfig": [
                {
                    "ChannelName": channel,
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": uri,
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                    "ContentType": "application/x-parquet",
                    "InputMode": "File",
                }
                for channel, uri in sorted(self.channels.items())
            ],
            "OutputDataConfig": {"S3OutputPath": self.output_uri},
            "ResourceConfig": {
                "InstanceType": self.instance_type,
                "InstanceCount": self.instance_count,
                "VolumeSizeInGB": 10,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": self.max_runtime_seconds},
        }
        if self.checkpoint_uri:
            body["CheckpointConfig"] = {"S3Uri": self.checkpoint_uri, "LocalPath": CHECKPOINT_LOCAL_PATH}
        if self.tags:
            body["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(self.tags.items())]
        return body
