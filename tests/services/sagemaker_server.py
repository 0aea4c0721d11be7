"""moto's server with SageMaker training jobs that run: a stand-in for AWS in the services suite.

moto records a created training job as ``Completed`` at once and runs nothing, and has no
``StopTrainingJob``. Here, in the server's own process:

- ``CreateTrainingJob`` records the job ``InProgress``/``Starting`` (a second job of the same name
  is refused with ``ResourceInUse``, as SageMaker does) and hands the request to the product's
  local runner (``recflow.training.local.LocalTrainingBackend``: the SageMaker container contract
  in a detached process), whose artifact store is this same server's S3;
- a worker thread per job copies the runner's log into CloudWatch Logs
  (``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-1-<epoch seconds>``) and its
  ``description.json`` into moto's job: status and secondary status (with transitions),
  ``FailureReason``, ``ModelArtifacts``, training times;
- ``StopTrainingJob`` marks an ``InProgress`` job ``Stopping`` and stops its runner, which records
  ``Stopped``; any other status is refused with ``ValidationException``, an unknown job with
  ``ResourceNotFound``.

The job runs a copy of the checkout's ``recflow_ml`` taken at ``CreateTrainingJob``, not
``TrainingImage`` (the image is built from the same code). Run it as::

    python tests/services/sagemaker_server.py --home DIR [--host 127.0.0.1] [--port 0]

It writes ``DIR/server.json`` (``url``, ``pid``) once it answers; SIGTERM stops the jobs still
running, then the server. ``tests/services/aws.py`` starts it for tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.core.responses import EmptyResult
from moto.logs.models import LogsBackend, logs_backends
from moto.sagemaker.exceptions import ResourceInUseException, ResourceNotFound, ValidationError
from moto.sagemaker.models import FakeTrainingJob, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.server import ThreadedMotoServer

from recflow.core.config import Settings
from recflow.training.backend import TERMINAL_STATES
from recflow.training.local import LocalTrainingBackend, RunnerPid, write_json
from recflow.training.sagemaker import LOG_GROUP

POLL_SECONDS = 0.5
SHUTDOWN_GRACE_SECONDS = 15.0
"""How long jobs still running at shutdown get to record ``Stopped`` before their runners are killed."""
READY_FILE = "server.json"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _time(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


class TrainingPlatform:
    """What SageMaker does around a training job, on top of moto's record of it."""

    def __init__(self, local: LocalTrainingBackend) -> None:
        self.local = local
        self.lock = threading.Lock()
        """Held around every read or write of a job's fields, so a DescribeTrainingJob never sees half an update."""
        self.workers: dict[str, threading.Thread] = {}

    def install(self) -> None:
        """Replace moto's create, describe and list of training jobs, and add StopTrainingJob."""
        platform = self
        create = SageMakerModelBackend.create_training_job
        describe = SageMakerModelBackend.describe_training_job
        list_jobs = SageMakerModelBackend.list_training_jobs

        def create_training_job(
            backend: SageMakerModelBackend, training_job_name: str, **kwargs: Any
        ) -> FakeTrainingJob:
            algorithm = dict(kwargs["algorithm_specification"])  # moto writes metric definitions into it
            with platform.lock:
                if training_job_name in backend.training_jobs:
                    arn = FakeTrainingJob.arn_formatter(
                        training_job_name, backend.account_id, backend.region_name
                    )
                    raise ResourceInUseException(
                        "Training job names must be unique within an AWS account and region, and a training "
                        f"job with this name already exists ({arn})"
                    )
                job = create(backend, training_job_name=training_job_name, **kwargs)
                _reset(job, algorithm)
            platform.launch(job, logs_backends[backend.account_id][backend.region_name])
            return job

        def describe_training_job(backend: SageMakerModelBackend, training_job_name: str) -> dict[str, Any]:
            with platform.lock:
                return describe(backend, training_job_name)

        def list_training_jobs(backend: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
            with platform.lock:
                return list_jobs(backend, *args, **kwargs)

        def stop_training_job(backend: SageMakerModelBackend, training_job_name: str) -> None:
            with platform.lock:
                job = backend.training_jobs.get(training_job_name)
                if job is None:
                    arn = FakeTrainingJob.arn_formatter(
                        training_job_name, backend.account_id, backend.region_name
                    )
                    raise ResourceNotFound(f"Could not find training job '{arn}'.")
                if job.training_job_status != "InProgress":
                    raise ValidationError(
                        "The request was rejected because the training job is in status "
                        f"{job.training_job_status}."
                    )
                job.training_job_status = "Stopping"
                _set_secondary(job, "Stopping")
            platform.local.stop_training_job(training_job_name)

        def stop_training_job_response(response: SageMakerResponse) -> EmptyResult:
            stop_training_job(response.sagemaker_backend, response._get_param("TrainingJobName"))
            return EmptyResult()

        patches: dict[type, dict[str, Any]] = {
            SageMakerModelBackend: {
                "create_training_job": create_training_job,
                "describe_training_job": describe_training_job,
                "list_training_jobs": list_training_jobs,
                "stop_training_job": stop_training_job,
            },
            SageMakerResponse: {"stop_training_job": stop_training_job_response},
        }
        for cls, methods in patches.items():
            for method, function in methods.items():
                setattr(cls, method, function)

    def launch(self, job: Any, logs: LogsBackend) -> None:
        name = job.training_job_name
        request: dict[str, Any] = {
            "TrainingJobName": name,
            "AlgorithmSpecification": job.algorithm_specification,
            "RoleArn": job.role_arn,
            "HyperParameters": job.hyper_parameters or {},
            "InputDataConfig": job.input_data_config or [],
            "OutputDataConfig": job.output_data_config,
            "ResourceConfig": job.resource_config,
            "StoppingCondition": job.stopping_condition,
        }
        if job.checkpoint_config:
            request["CheckpointConfig"] = job.checkpoint_config
        try:
            self.local.create_training_job(request)
        except Exception as exc:
            traceback.print_exc()  # into server.log; the client sees a job that failed, as on SageMaker
            self._fail(job, exc)
            return
        worker = threading.Thread(target=self._follow, args=(job, logs), name=f"job-{name}", daemon=True)
        self.workers[name] = worker
        worker.start()

    def _fail(self, job: Any, exc: Exception) -> None:
        """The platform itself lost the job: it fails, as SageMaker's would, with an internal error."""
        with self.lock:
            job.training_job_status = "Failed"
            job.failure_reason = f"InternalServerError: {type(exc).__name__}: {exc}"
            _set_secondary(job, "Failed")

    def _follow(self, job: Any, logs: LogsBackend) -> None:
        try:
            self._copy_until_done(job, logs)
        except Exception as exc:
            self._fail(job, exc)
            raise  # into server.log

    def _copy_until_done(self, job: Any, logs: LogsBackend) -> None:
        """Copy the runner's log and outcome into moto until the job ends.

        The description is read before the log, so every line written before an outcome is in
        CloudWatch by the time a client can see that outcome."""
        name = job.training_job_name
        stream = f"{name}/algo-1-{int(time.time())}"
        with self.lock:
            logs.ensure_log_group(LOG_GROUP)
            logs.create_log_stream(LOG_GROUP, stream)
        cursor = ""
        last_ms = 0
        while True:
            description = self.local.describe_training_job(name)
            lines, cursor = self.local.read_log(name, cursor)
            events = [line for line in lines if line]  # CloudWatch refuses empty messages
            if events:
                last_ms = max(last_ms, int(time.time() * 1000))
                with self.lock:
                    for start in range(0, len(events), 1000):
                        batch = events[start : start + 1000]
                        logs.put_log_events(
                            LOG_GROUP, stream, [{"timestamp": last_ms, "message": m} for m in batch]
                        )
            with self.lock:
                _mirror(job, description)
            if description["TrainingJobStatus"] in TERMINAL_STATES:
                return
            time.sleep(POLL_SECONDS)

    def shutdown(self) -> None:
        """Stop the jobs still running, so that no runner outlives the server."""
        running = [name for name, worker in self.workers.items() if worker.is_alive()]
        for name in running:
            with contextlib.suppress(Exception):
                self.local.stop_training_job(name)
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for name in running:
            self.workers[name].join(max(0.0, deadline - time.monotonic()))
            runner = RunnerPid.read(self.local.job_dir(name))
            if self.workers[name].is_alive() and runner is not None and runner.state() == "alive":
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(runner.pid, signal.SIGKILL)


def _reset(job: Any, algorithm: dict[str, Any]) -> None:
    """Undo moto's instant completion: a new job is InProgress and has produced nothing yet."""
    now = _utcnow()
    job.algorithm_specification = algorithm
    job.training_job_status = "InProgress"
    job.secondary_status = "Starting"
    job.secondary_status_transitions = [
        {"Status": "Starting", "StartTime": now, "StatusMessage": "Starting the training job"}
    ]
    job.model_artifacts = None
    job.final_metric_data_list = None
    job.training_start_time = None
    job.training_end_time = None
    job.failure_reason = None
    job.training_time_in_seconds = None
    job.billable_time_in_seconds = None
    job.creation_time = job.last_modified_time = now


def _set_secondary(job: Any, status: str) -> None:
    if job.secondary_status == status:
        return
    now = _utcnow()
    for transition in job.secondary_status_transitions:
        transition.setdefault("EndTime", now)
    job.secondary_status_transitions.append({"Status": status, "StartTime": now})
    job.secondary_status = status
    job.last_modified_time = now


def _mirror(job: Any, description: dict[str, Any]) -> None:
    """The runner's ``description.json`` into moto's job; a stop is never undone by a progress report."""
    status = description["TrainingJobStatus"]
    if job.training_job_status == "Stopping" and status == "InProgress":
        return
    job.training_job_status = status
    _set_secondary(job, description.get("SecondaryStatus") or status)
    job.failure_reason = description.get("FailureReason")
    job.model_artifacts = description.get("ModelArtifacts")
    job.training_time_in_seconds = job.billable_time_in_seconds = description.get("TrainingTimeInSeconds")
    job.training_start_time = _time(description.get("TrainingStartTime"))
    job.training_end_time = _time(description.get("TrainingEndTime"))


def _inherit_to_runners(platform_home: Path, url: str) -> None:
    """This process's environment is the one every job runner inherits (the local backend starts
    them with it): none of a caller's ``RECFLOW_*`` settings, and this server as AWS, so that the
    runner reads the channels from, and writes the model to, this server's S3."""
    env = os.environ  # noqa: TID251 - the platform's own environment, not a setting read
    for key in [k for k in env if k.startswith("RECFLOW_")]:
        del env[key]
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        env.setdefault(key, value)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env.update({"RECFLOW_HOME": str(platform_home), "RECFLOW_AWS_ENDPOINT_URL": url})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--home", type=Path, required=True, help="where jobs and server.json are written")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port, written to server.json")
    args = parser.parse_args(argv)
    home: Path = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)

    platform = TrainingPlatform(
        LocalTrainingBackend(Settings.from_env({"RECFLOW_HOME": str(home / "platform")}))
    )
    platform.install()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    _inherit_to_runners(home / "platform", url)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    write_json(home / READY_FILE, {"url": url, "pid": os.getpid()})
    print(f"sagemaker stand-in on {url}, jobs under {home / 'platform' / 'jobs'}", flush=True)
    parent = os.getppid()
    while not stop.wait(0.5) and os.getppid() == parent:  # also ends if whoever started it is gone
        pass
    platform.shutdown()
    server.stop()


if __name__ == "__main__":
    main()
