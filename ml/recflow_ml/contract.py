"""The SageMaker training-container contract, read once into a typed object.

The layout under the base directory (``/opt/ml``) is ``recflow_ml.layout``'s.

The training toolkit also exports ``SM_MODEL_DIR``, ``SM_CHANNEL_<NAME>``,
``SM_HPS``, ``SM_OUTPUT_DATA_DIR``, ``SM_HOSTS`` and ``SM_CURRENT_HOST``; they win
when set. This module is the only place in ``ml/`` that reads the environment.

A job of several instances (``InstanceCount`` > 1) runs this entrypoint once per host;
``Hosts`` is this host's view of them, and ``Hosts.tf_config`` the ``TF_CONFIG`` of
``tf.distribute.MultiWorkerMirroredStrategy``: every host is a worker, listening on
``RECFLOW_WORKER_PORT`` (``DEFAULT_WORKER_PORT``) unless its entry names its own port
(``"127.0.0.1:40123"``, what a test on one machine needs), and ``hosts[0]`` is the chief.
Each channel's ``S3DistributionType`` (``inputdataconfig.json``) says whether every host got the
whole channel (``FullyReplicated``) or its own share of the channel's objects (``ShardedByS3Key``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recflow_ml.layout import (
    DEFAULT_BASE_DIR,
    FAILURE_FILE,
    HYPERPARAMETERS_FILE,
    INPUT_DATA_CONFIG_FILE,
    RESOURCE_CONFIG_FILE,
    JobLayout,
)

FAILURE_REASON_LIMIT = 1024
FULLY_REPLICATED = "FullyReplicated"
SHARDED_BY_S3_KEY = "ShardedByS3Key"
"""A channel whose objects the platform divided among the hosts: each host holds its own share."""
DEFAULT_WORKER_PORT = 2222
"""The port every worker's collective-ops server listens on, unless its host entry names one."""


class ContractError(ValueError):
    """The job was started without what the contract promises (a channel, a hyperparameter)."""


@dataclass(frozen=True)
class Hosts:
    """The job's hosts, in the platform's order (``hosts[0]`` is the chief), and this one's name."""

    hosts: tuple[str, ...] = ()
    current: str = ""
    port: int = DEFAULT_WORKER_PORT

    def __post_init__(self) -> None:
        if len(set(self.hosts)) != len(self.hosts):
            raise ContractError(f"hosts {list(self.hosts)} name a host more than once")
        if self.hosts and self.current not in self.hosts:
            raise ContractError(f"current host {self.current!r} is not one of the hosts {list(self.hosts)}")

    @property
    def count(self) -> int:
        """How many workers train together (1 when the job names no hosts)."""
        return max(len(self.hosts), 1)

    @property
    def distributed(self) -> bool:
        return self.count > 1

    @property
    def index(self) -> int:
        """This host's worker index; 0 is the chief, the one that writes the model."""
        return self.hosts.index(self.current) if self.hosts else 0

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    def address(self, host: str) -> str:
        """``host:port`` of a host's worker: the entry itself when it names a port."""
        return host if ":" in host else f"{host}:{self.port}"

    def tf_config(self) -> dict[str, Any]:
        """``TF_CONFIG`` for ``MultiWorkerMirroredStrategy``: every host a worker, this one at ``index``."""
        return {
            "cluster": {"worker": [self.address(h) for h in self.hosts]},
            "task": {"type": "worker", "index": self.index},
        }


@dataclass(frozen=True)
class TrainingEnv:
    base_dir: Path
    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path
    channels: Mapping[str, Path]
    hyperparameters: Mapping[str, str]
    job_name: str
    hosts: Hosts = Hosts()
    distributions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Each channel's ``S3DistributionType``; a channel not named is ``FullyReplicated``."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TrainingEnv:
        env = os.environ if env is None else env
        layout = JobLayout(Path(env.get("SAGEMAKER_BASE_DIR") or DEFAULT_BASE_DIR))
        config_dir = Path(env.get("SM_INPUT_CONFIG_DIR") or layout.config_dir)
        hps = _hyperparameters(env, config_dir)
        channel_names = _channel_names(env, config_dir)
        channels = {
            name: Path(env.get(f"SM_CHANNEL_{name.upper()}") or layout.channel_dir(name))
            for name in channel_names
        }
        return cls(
            base_dir=layout.base,
            model_dir=Path(env.get("SM_MODEL_DIR") or layout.model_dir),
            output_dir=layout.output_dir,
            output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR") or layout.output_data_dir),
            checkpoint_dir=layout.checkpoint_dir,
            channels=channels,
            hyperparameters=hps,
            job_name=env.get("TRAINING_JOB_NAME") or env.get("SM_TRAINING_JOB_NAME") or "local",
            hosts=_hosts(env, config_dir),
            distributions=_distributions(config_dir),
        )

    def channel(self, name: str) -> Path:
        try:
            path = self.channels[name]
        except KeyError:
            raise ContractError(
                f"channel {name!r} was not given to the job (channels: {sorted(self.channels)})"
            ) from None
        if not path.is_dir():
            raise ContractError(f"channel {name!r}: directory {path} does not exist")
        return path

    def sharded(self, name: str) -> bool:
        """Whether this host holds only its share of channel ``name``'s objects (``ShardedByS3Key``)
        in a job of several hosts (one host gets every object, whatever the distribution)."""
        return self.hosts.distributed and self.distributions.get(name, FULLY_REPLICATED) == SHARDED_BY_S3_KEY

    def write_failure(self, reason: str) -> None:
        """Leave the reason where the platform (and our local backend) reads it."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / FAILURE_FILE).write_text(reason[:FAILURE_REASON_LIMIT])


def _hyperparameters(env: Mapping[str, str], config_dir: Path) -> dict[str, str]:
    if env.get("SM_HPS"):
        decoded = json.loads(env["SM_HPS"])
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in decoded.items()}
    path = config_dir / HYPERPARAMETERS_FILE
    if not path.exists():
        return {}
    return {str(k): str(v) for k, v in json.loads(path.read_text()).items()}


def _channel_names(env: Mapping[str, str], config_dir: Path) -> list[str]:
    if env.get("SM_CHANNELS"):
        return [str(c) for c in json.loads(env["SM_CHANNELS"])]
    path = config_dir / INPUT_DATA_CONFIG_FILE
    if path.exists():
        return sorted(json.loads(path.read_text()))
    return sorted(key[len("SM_CHANNEL_") :].lower() for key in env if key.startswith("SM_CHANNEL_"))


def _distributions(config_dir: Path) -> dict[str, str]:
    """Each channel's ``S3DistributionType`` in ``inputdataconfig.json`` (absent: none named)."""
    path = config_dir / INPUT_DATA_CONFIG_FILE
    if not path.exists():
        return {}
    out = {}
    for name, entry in json.loads(path.read_text()).items():
        kind = str(entry.get("S3DistributionType", FULLY_REPLICATED))
        if kind not in (FULLY_REPLICATED, SHARDED_BY_S3_KEY):
            raise ContractError(
                f"channel {name!r}: S3DistributionType {kind!r} in {path} is neither "
                f"{FULLY_REPLICATED} nor {SHARDED_BY_S3_KEY}"
            )
        out[str(name)] = kind
    return out


def _hosts(env: Mapping[str, str], config_dir: Path) -> Hosts:
    """``SM_HOSTS`` (a JSON list) and ``SM_CURRENT_HOST``, else ``resourceconfig.json``; none: one host."""
    path = config_dir / RESOURCE_CONFIG_FILE
    resource = json.loads(path.read_text()) if path.exists() else {}
    hosts = json.loads(env["SM_HOSTS"]) if env.get("SM_HOSTS") else resource.get("hosts", [])
    current = env.get("SM_CURRENT_HOST") or resource.get("current_host", "")
    port = env.get("RECFLOW_WORKER_PORT") or str(DEFAULT_WORKER_PORT)
    if not port.isdigit():
        raise ContractError(f"RECFLOW_WORKER_PORT={port!r} is not a port number")
    return Hosts(tuple(str(h) for h in hosts), str(current), int(port))
