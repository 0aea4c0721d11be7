"""AWS for the services suite: moto's server on 127.0.0.1 with training jobs that run.

``start_sagemaker_server(home)`` starts ``tests/services/sagemaker_server.py`` in a child process
(a free port, chosen by the server) and returns a handle with its ``url``; use it as a context
manager, or call ``stop()``. ``production_env(url, home=..., bucket=...)`` gives the variables of
the production profile against it (artifacts in S3, SageMaker training), ``create_bucket`` makes
the bucket. The fixtures ``aws_server`` and ``aws`` do all of it for one test::

    from tests.services.aws import aws, aws_server  # noqa: F401  (pytest fixtures)

    def test_something(aws: Settings) -> None: ...
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from recflow.core.config import Settings, subprocess_env

SERVER_SCRIPT = Path(__file__).with_name("sagemaker_server.py")
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
ROLE_ARN = "arn:aws:iam::123456789012:role/recflow-training"
TRAINING_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/recflow-ml:services-test"
START_TIMEOUT_SECONDS = 60.0


class SageMakerServer:
    """A running stand-in: ``url`` for every AWS client, ``home`` holds its jobs and ``server.log``."""

    def __init__(self, url: str, home: Path, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.home = home
        self.process = process

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    @property
    def jobs_dir(self) -> Path:
        """One directory per training job, as the local backend lays it out (``opt_ml/``, ``logs.txt``)."""
        return self.home / "platform" / "jobs"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the jobs still running, then the server (killed if it does not end within ``timeout``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> SageMakerServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_sagemaker_server(home: Path, *, host: str = "127.0.0.1") -> SageMakerServer:
    """Start the stand-in with its state under ``home``; returns once it answers.

    The server gets this process's environment without its ``RECFLOW_*`` and ``AWS_*`` variables,
    plus test credentials: what runs there is the platform, not the caller."""
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    ready = home / "server.json"
    ready.unlink(missing_ok=True)
    env = {k: v for k, v in subprocess_env({}).items() if not k.startswith(("RECFLOW_", "AWS_"))}
    with (home / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--home", str(home), "--host", host, "--port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**env, **CREDENTIALS, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            tail = (home / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the SageMaker stand-in did not start (exit {process.returncode}):\n{tail}")
        time.sleep(0.1)
    return SageMakerServer(json.loads(ready.read_text())["url"], home, process)


def production_env(url: str, *, home: Path, bucket: str) -> dict[str, str]:
    """The production profile's AWS side against the stand-in at ``url``: artifacts in
    ``s3://<bucket>/recflow``, training on SageMaker, and the test credentials."""
    return {
        **CREDENTIALS,
        "RECFLOW_HOME": str(home),
        "RECFLOW_ARTIFACT_ROOT": f"s3://{bucket}/recflow",
        "RECFLOW_TRAINING_BACKEND": "sagemaker",
        "RECFLOW_TRAINING_IMAGE": TRAINING_IMAGE,
        "RECFLOW_SAGEMAKER_ROLE_ARN": ROLE_ARN,
        "RECFLOW_AWS_ENDPOINT_URL": url,
    }


def create_bucket(url: str, bucket: str) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=url,
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=bucket)


@pytest.fixture
def aws_server(tmp_path: Path) -> Iterator[SageMakerServer]:
    """A fresh stand-in for one test (jobs are named by their inputs: a shared one would hand a
    test the job of an earlier test)."""
    with start_sagemaker_server(tmp_path / "aws") as server:
        yield server


@pytest.fixture
def aws(aws_server: SageMakerServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of the production profile's AWS side against ``aws_server``, with a new bucket;
    the test credentials are in the environment for the product's boto3 clients."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    bucket = f"recflow-{uuid.uuid4().hex[:12]}"
    create_bucket(aws_server.url, bucket)
    return Settings.from_env(production_env(aws_server.url, home=tmp_path / "home", bucket=bucket))
