"""A local training job's environment: the SageMaker contract's variables and the allow-list, nothing
of the worker's secrets.

The environment is read from the running entrypoint itself (``/proc/<pid>/environ``, through
psutil), not from the code that builds it.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from recflow.core.config import Settings, subprocess_env
from recflow.snapshot import take_snapshot
from recflow.training import local_runner
from recflow.training.jobs import run_training_job
from recflow.training.local import LocalTrainingBackend, RunnerPid
from tests.integration.conftest import home_with_warehouse_of
from tests.integration.test_training_job import STARTUP, _spec

pytestmark = pytest.mark.integration

PLANTED = {
    "AWS_SECRET_ACCESS_KEY": "planted-aws-secret",
    "AWS_ACCESS_KEY_ID": "planted-aws-key",
    "AIRFLOW__CORE__FERNET_KEY": "planted-fernet-key",
    "AIRFLOW__API_AUTH__JWT_SECRET": "planted-jwt-secret",
    "RECFLOW_WAREHOUSE_PASSWORD": "planted-warehouse-password",
    "RECFLOW_NOT_ALLOWED": "planted",
}
"""What an Airflow worker's environment holds and a training job must not see."""
CONTRACT = {"SAGEMAKER_BASE_DIR", "TRAINING_JOB_NAME", "PYTHONUNBUFFERED"}
"""The contract's variables besides ``SM_*`` (``recflow_ml.contract``)."""


def _entrypoint_environ(job_dir: Path) -> dict[str, str]:
    """The environment the job's entrypoint (the runner's ``recflow_ml.train`` child) was started with."""
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        runner = RunnerPid.read(job_dir)
        if runner is not None:
            try:
                for child in psutil.Process(runner.pid).children():
                    if "recflow_ml.train" in child.cmdline():
                        return dict(child.environ())
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no entrypoint process appeared within {STARTUP:.0f}s; see {job_dir / 'logs.txt'}")


def test_the_job_sees_the_contract_and_the_allow_list_only(
    warehouse: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TZ", "UTC")  # allow-listed: it passes through
    settings = home_with_warehouse_of(warehouse, tmp_path)
    snap = take_snapshot(settings)
    backend = LocalTrainingBackend(settings)
    spec = _spec(settings, snap, "job-env", epochs="1")
    backend.create_training_job(spec.request())
    environ = _entrypoint_environ(backend.job_dir("job-env"))
    description = run_training_job(backend, spec, poll_seconds=0.5, echo=print)  # re-attaches

    assert description["TrainingJobStatus"] == "Completed", "the job runs in the narrowed environment"
    leaked = sorted(name for name in PLANTED if name in environ)
    assert not leaked, f"the worker's {leaked} reached the training job"
    assert not [value for value in environ.values() if value.startswith("planted")]
    others = {name for name in environ if not name.startswith("SM_") and name not in CONTRACT}
    allowed = set(local_runner.JOB_ENV_ALLOWED)
    assert others <= allowed, f"not in the allow-list: {sorted(others - allowed)}"
    assert environ["TZ"] == "UTC"
    assert environ["PATH"] == subprocess_env({})["PATH"]
    layout = backend.layout("job-env")
    assert environ["SAGEMAKER_BASE_DIR"] == str(layout.base)
    assert environ["SM_CHANNEL_TRAIN"] == str(layout.channel_dir("train"))
    assert environ["TRAINING_JOB_NAME"] == "job-env"
