"""The SageMaker training job's input and output layout: its one definition.

Layout under the base directory (``/opt/ml`` on SageMaker, movable with
``SAGEMAKER_BASE_DIR`` for local runs and tests)::

    input/config/hyperparameters.json   hyperparameters, all values strings
    input/config/inputdataconfig.json   the channels
    input/config/resourceconfig.json    the job's hosts: ``current_host``, ``hosts``
    input/data/<channel>/               each channel's files
    model/                              what we save; the platform tars it to model.tar.gz
    output/failure                      why the job failed, read by DescribeTrainingJob
    output/data/                        extra outputs (plots, metrics)
    checkpoints/                        CheckpointConfig.LocalPath: what an earlier attempt of
                                        the job saved is here at start; synced to S3 while it runs

The job reads it (``recflow_ml.contract``); whatever lays it out for a job (the local runner,
a test or bench that starts the entrypoint by hand) writes it through :class:`JobLayout`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

DEFAULT_BASE_DIR = Path("/opt/ml")
CONTAINER_CHECKPOINT_DIR = DEFAULT_BASE_DIR / "checkpoints"
"""``CheckpointConfig.LocalPath`` in the container: where the job finds (and writes) its checkpoints."""
HYPERPARAMETERS_FILE = "hyperparameters.json"
INPUT_DATA_CONFIG_FILE = "inputdataconfig.json"
RESOURCE_CONFIG_FILE = "resourceconfig.json"
FAILURE_FILE = "failure"
"""In ``output/``: why the job failed."""
SINGLE_HOST = "algo-1"
"""The host name SageMaker gives the only instance of a one-instance job."""


def host_share(keys: Sequence[str], hosts: int, index: int) -> list[str]:
    """The objects of a ``ShardedByS3Key`` channel that host ``index`` of ``hosts`` receives, as a
    runner that stages channels itself (a test, a local job) mirrors the platform: the keys in
    order, dealt out in turn, so the hosts' shares are disjoint, their union is the channel, and
    they differ by one object at most. (The platform promises those properties, not this order.)"""
    if not 0 <= index < hosts:
        raise ValueError(f"host index {index} is not among {hosts} hosts")
    return sorted(keys)[index::hosts]


@dataclass(frozen=True)
class JobLayout:
    """The layout's paths under one base directory (the container's ``/opt/ml``, or a local copy)."""

    base: Path = DEFAULT_BASE_DIR

    @property
    def config_dir(self) -> Path:
        return self.base / "input" / "config"

    @property
    def data_dir(self) -> Path:
        return self.base / "input" / "data"

    def channel_dir(self, name: str) -> Path:
        return self.data_dir / name

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / FAILURE_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.base / "checkpoints"

    def container_path(self, path: str) -> Path:
        """Where a path of the container (``/opt/ml/...``) is under this base; ``ValueError`` if elsewhere."""
        return self.base / PurePosixPath(path).relative_to(DEFAULT_BASE_DIR.as_posix())

    def write_config(
        self,
        hyperparameters: Mapping[str, str],
        channels: Mapping[str, Mapping[str, Any]],
        hosts: Sequence[str] = (SINGLE_HOST,),
        current_host: str = SINGLE_HOST,
    ) -> Path:
        """Write ``input/config`` as the platform does before the job starts; its directory.

        ``channels``: each channel's ``inputdataconfig.json`` entry (``{"ContentType": ...}``)."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / HYPERPARAMETERS_FILE).write_text(json.dumps(dict(hyperparameters)))
        (self.config_dir / INPUT_DATA_CONFIG_FILE).write_text(
            json.dumps({name: dict(entry) for name, entry in channels.items()})
        )
        (self.config_dir / RESOURCE_CONFIG_FILE).write_text(
            json.dumps({"current_host": current_host, "hosts": list(hosts)})
        )
        return self.config_dir
