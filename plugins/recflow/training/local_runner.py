"""The local job runner: what the SageMaker platform does around a training container.

``python -m recflow.training.local_runner JOB_DIR`` (started detached by
``LocalTrainingBackend``): lays out ``/opt/ml`` under ``JOB_DIR/opt_ml``,
downloads the input channels and the job's checkpoints (``CheckpointConfig``)
from the artifact store, runs the entrypoint with the contract's environment,
uploads new checkpoint files while it runs and once more at the end, enforces
``MaxRuntimeInSeconds``, uploads ``model.tar.gz`` to
``<S3OutputPath>/<job>/output/`` and records the outcome in ``description.json``.

Outcomes, as DescribeTrainingJob reports them:

====================================  ==================  ==========================================
how the entrypoint ended              status / secondary  FailureReason
====================================  ==================  ==========================================
exit 0                                Completed           —
exit non-zero                         Failed              ``AlgorithmError: <output/failure>``
killed by a signal (not by us)        Failed              ``AlgorithmError: ... killed by signal ...``
past ``MaxRuntimeInSeconds``          Stopped / MaxRuntimeExceeded  ``MaxRuntimeExceeded: ...``
``StopTrainingJob`` (SIGTERM to us)   Stopped             —
input data missing                    Failed              ``ClientError: ...``
====================================  ==================  ==========================================

A stop and the maximum runtime end the entrypoint as SageMaker does: SIGTERM,
then SIGKILL after ``STOP_GRACE_SECONDS``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any, Final

from recflow.core.artifacts import join, pack_directory, store_for
from recflow.core.config import Settings, subprocess_env
from recflow.training.checkpoint_sync import CheckpointSync
from recflow.training.local import CODE, RunnerPid, job_layout, now_iso, update_description
from recflow.training.spec import CHECKPOINT_LOCAL_PATH
from recflow_ml.layout import JobLayout

ENTRYPOINT = [sys.executable, "-m", "recflow_ml.train", "train"]
POLL_SECONDS = 0.5
CHECKPOINT_SYNC_SECONDS = 2.0
STOP_GRACE_SECONDS = 120.0
"""SageMaker's window between SIGTERM and the end of a stopped job."""
OOM_HINT = "SIGKILL with no other cause is usually the kernel's out-of-memory killer"
JOB_ENV_ALLOWED: Final[Mapping[str, str]] = {
    "PATH": "where programs are found, as in any container",
    "HOME": "where libraries keep caches and configuration (Keras under ~/.keras)",
    "TMPDIR": "where temporary files go (TensorFlow's, pyarrow's)",
    "LANG": "the locale: the encoding of the job's files and of its log",
    "LC_ALL": "the locale, over LANG",
    "LC_CTYPE": "the character encoding, over LANG",
    "TZ": "the time zone of the log's timestamps",
    "PYTHONPATH": "where the interpreter looks for modules after the job's own copy of recflow_ml",
    "OMP_NUM_THREADS": "the CPU threads of OpenMP (TensorFlow's oneDNN kernels) an operator capped",
    "OPENBLAS_NUM_THREADS": "the CPU threads of NumPy's BLAS an operator capped",
    "TF_NUM_INTRAOP_THREADS": "TensorFlow's threads within an operation",
    "TF_NUM_INTEROP_THREADS": "TensorFlow's threads across operations",
    "TF_CPP_MIN_LOG_LEVEL": "how much TensorFlow's C++ runtime logs (Airflow's environment sets 2)",
    "CUDA_VISIBLE_DEVICES": "which GPUs the job may use",
    "LD_LIBRARY_PATH": "where the CUDA libraries are found",
}
"""What the entrypoint takes from the runner's environment (the Airflow worker's), by name, and why.
Besides these it gets only the contract's variables (``SAGEMAKER_BASE_DIR``, ``SM_*``,
``TRAINING_JOB_NAME``), ``PYTHONUNBUFFERED`` (its log streams line by line) and the job's own copy
of ``recflow_ml`` first on ``PYTHONPATH`` (``recflow.training.local.CODE``), as a SageMaker
container does: none of the worker's secrets (AWS keys, ``AIRFLOW__*``, the warehouse password)
reaches the training code. The runner itself, the platform, keeps the worker's environment: it
reads the channels from, and writes the model to, the artifact store."""


class _Stop:
    requested = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    _Stop.requested = True


def _stop_requested(job_dir: Path) -> bool:
    """SIGTERM arrived, or the job was marked ``Stopping`` before this runner could be signalled."""
    if not _Stop.requested:
        description = json.loads((job_dir / "description.json").read_text())
        _Stop.requested = description["TrainingJobStatus"] == "Stopping"
    return _Stop.requested


def _say(message: str) -> None:
    print(f"[local-runner {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _download_channels(settings: Settings, request: dict[str, Any], layout: JobLayout) -> dict[str, Path]:
    channels = {}
    for channel in request["InputDataConfig"]:
        name = channel["ChannelName"]
        prefix = channel["DataSource"]["S3DataSource"]["S3Uri"]
        store = store_for(settings, prefix)
        target = layout.channel_dir(name)
        target.mkdir(parents=True, exist_ok=True)
        uris = store.list(prefix)
        if not uris:
            raise FileNotFoundError(f"channel {name!r}: nothing under {prefix}")
        for uri in uris:
            relative = uri[len(prefix.rstrip("/")) + 1 :]
            store.get_file(uri, target / relative)
        _say(f"channel {name}: {len(uris)} file(s) from {prefix}")
        channels[name] = target
    return channels


def _local_checkpoint_dir(layout: JobLayout, request: dict[str, Any]) -> Path:
    try:
        return layout.container_path(request["CheckpointConfig"].get("LocalPath") or CHECKPOINT_LOCAL_PATH)
    except ValueError:
        return layout.checkpoint_dir


def _write_config(layout: JobLayout, request: dict[str, Any]) -> Path:
    return layout.write_config(
        request["HyperParameters"],
        {c["ChannelName"]: {"ContentType": c.get("ContentType")} for c in request["InputDataConfig"]},
    )


def _follow(
    job_dir: Path, process: subprocess.Popen[bytes], deadline: float, checkpoints: CheckpointSync | None
) -> tuple[int, str | None]:
    """Wait for the entrypoint, syncing checkpoints; end it on a stop or at the deadline.

    Returns (its exit code, ``"stop"``/``"max_runtime"`` if we ended it, else ``None``)."""
    ended_by: str | None = None
    kill_at = None
    last_sync = time.monotonic()
    while True:
        try:
            code = process.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if ended_by is None and (_stop_requested(job_dir) or now >= deadline):
            ended_by = "stop" if _Stop.requested else "max_runtime"
            _say(
                "stop requested: SIGTERM to the entrypoint"
                if ended_by == "stop"
                else "MaxRuntimeInSeconds reached: SIGTERM to the entrypoint"
            )
            process.terminate()
            kill_at = now + STOP_GRACE_SECONDS
        elif kill_at is not None and now >= kill_at:
            _say(f"the entrypoint outlived SIGTERM by {STOP_GRACE_SECONDS:.0f}s: SIGKILL")
            process.kill()
            kill_at = None
        if checkpoints is not None and now - last_sync >= CHECKPOINT_SYNC_SECONDS:
            checkpoints.upload_logged("while training", _say)
            last_sync = now
    if ended_by is None and _stop_requested(job_dir):  # the SIGTERM reached the whole group: it ended first
        ended_by = "stop"
    return code, ended_by


def job_env(contract: Mapping[str, str], code: Path) -> dict[str, str]:
    """The entrypoint's whole environment: the contract's variables, ``JOB_ENV_ALLOWED``, and the
    directory holding the job's copy of ``recflow_ml`` first on ``PYTHONPATH``."""
    inherited = subprocess_env({})
    env = {name: inherited[name] for name in JOB_ENV_ALLOWED if name in inherited}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    return {**env, **contract}


def killed_reason(code: int, peak_mb: float) -> str:
    sig = signal.Signals(-code)
    reason = (
        f"AlgorithmError: the training process was killed by signal {sig.name} ({-code}) "
        f"at peak memory {peak_mb:.0f} MB"
    )
    return f"{reason}; {OOM_HINT}" if sig == signal.SIGKILL else reason


def run(job_dir: Path) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    RunnerPid.of(os.getpid()).write(job_dir)
    settings = Settings.from_env()
    request = json.loads((job_dir / "request.json").read_text())
    name = request["TrainingJobName"]
    layout = job_layout(job_dir)
    config_dir = _write_config(layout, request)
    started = time.monotonic()
    max_runtime = int(request["StoppingCondition"]["MaxRuntimeInSeconds"])
    deadline = started + max_runtime
    update_description(job_dir, SecondaryStatus="Downloading", TrainingStartTime=now_iso())

    def record(**fields: Any) -> None:
        update_description(job_dir, TrainingEndTime=now_iso(), **fields)

    checkpoints = None
    try:
        channels = _download_channels(settings, request, layout)
        if "CheckpointConfig" in request:
            uri = request["CheckpointConfig"]["S3Uri"]
            checkpoints = CheckpointSync(
                store_for(settings, uri), uri, _local_checkpoint_dir(layout, request)
            )
            checkpoints.local.mkdir(parents=True, exist_ok=True)
            restored = checkpoints.download()
            _say(
                f"checkpoints: {restored} file(s) from {uri}"
                if restored
                else f"checkpoints: none yet at {uri}"
            )
    except (OSError, ValueError) as exc:
        record(
            TrainingJobStatus="Failed",
            SecondaryStatus="Failed",
            FailureReason=f"ClientError: could not download the input data: {exc}",
        )
        return 1
    if _stop_requested(job_dir):
        _say("stopped before training started")
        record(TrainingJobStatus="Stopped", SecondaryStatus="Stopped")
        return 1
    env = {
        "SAGEMAKER_BASE_DIR": str(layout.base),
        "SM_MODEL_DIR": str(layout.model_dir),
        "SM_OUTPUT_DATA_DIR": str(layout.output_data_dir),
        "SM_INPUT_CONFIG_DIR": str(config_dir),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(request["HyperParameters"]),
        "TRAINING_JOB_NAME": name,
        "PYTHONUNBUFFERED": "1",
        **{f"SM_CHANNEL_{c.upper()}": str(path) for c, path in channels.items()},
    }
    update_description(job_dir, SecondaryStatus="Training")
    _say(f"starting {' '.join(ENTRYPOINT)} (max runtime {max_runtime}s)")
    code_dir = job_dir / CODE  # its working directory too, as an image's: `python -m` searches it first
    process = subprocess.Popen(ENTRYPOINT, env=job_env(env, code_dir), cwd=code_dir, stdin=subprocess.DEVNULL)
    code, ended_by = _follow(job_dir, process, deadline, checkpoints)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    seconds = time.monotonic() - started
    usage = {"TrainingTimeInSeconds": round(seconds), "LocalPeakMemoryMB": round(peak_mb, 1)}
    if checkpoints is not None:
        checkpoints.upload_logged("at the end", _say)
    if ended_by == "stop":
        _say(f"job stopped (entrypoint exit {code}); peak memory {peak_mb:.0f} MB, {seconds:.1f}s")
        record(TrainingJobStatus="Stopped", SecondaryStatus="Stopped", **usage)
        return 1
    if ended_by == "max_runtime":
        reason = f"MaxRuntimeExceeded: the job ran past MaxRuntimeInSeconds={max_runtime}"
        _say(f"job stopped: {reason}")
        record(
            TrainingJobStatus="Stopped", SecondaryStatus="MaxRuntimeExceeded", FailureReason=reason, **usage
        )
        return 1
    if code != 0:
        failure = layout.failure_file
        extra: dict[str, Any] = {}
        if code < 0:
            reason = killed_reason(code, peak_mb)
            extra["LocalExitSignal"] = signal.Signals(-code).name
        elif failure.exists() and failure.read_text().strip():
            reason = f"AlgorithmError: {failure.read_text().strip()}"
        else:
            reason = f"AlgorithmError: the entrypoint exited with code {code} and wrote no output/failure"
        _say(f"job failed: {reason}")
        record(TrainingJobStatus="Failed", SecondaryStatus="Failed", FailureReason=reason, **usage, **extra)
        return 1
    update_description(job_dir, SecondaryStatus="Uploading")
    output_prefix = join(request["OutputDataConfig"]["S3OutputPath"], name, "output")
    store = store_for(settings, output_prefix)
    with tempfile.TemporaryDirectory() as tmp:
        model_archive = Path(tmp) / "model.tar.gz"
        pack_directory(layout.model_dir, model_archive)
        model_uri = store.put_file(model_archive, join(output_prefix, "model.tar.gz"))
        data_dir = layout.output_data_dir
        if data_dir.is_dir() and any(data_dir.iterdir()):
            output_archive = Path(tmp) / "output.tar.gz"
            pack_directory(data_dir, output_archive)
            store.put_file(output_archive, join(output_prefix, "output.tar.gz"))
    _say(f"uploaded {model_uri}; peak memory {peak_mb:.0f} MB, {seconds:.1f}s")
    record(
        TrainingJobStatus="Completed",
        SecondaryStatus="Completed",
        ModelArtifacts={"S3ModelArtifacts": model_uri},
        **usage,
    )
    return 0


def main() -> None:
    job_dir = Path(sys.argv[1])
    try:
        code = run(job_dir)
    except Exception as exc:  # the platform's promise: every outcome ends in description.json
        update_description(
            job_dir,
            TrainingJobStatus="Failed",
            SecondaryStatus="Failed",
            FailureReason=f"InternalServerError: {type(exc).__name__}: {exc}",
            TrainingEndTime=now_iso(),
        )
        raise
    sys.exit(code)


if __name__ == "__main__":
    main()
