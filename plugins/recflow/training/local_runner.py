"""The local job runner: what the SageMaker platform does around a training container.

``python -m recflow.training.local_runner JOB_DIR`` (started detached by
``LocalTrainingBackend``): lays out ``/opt/ml`` under ``JOB_DIR/opt_ml``,
downloads the input channels from the artifact store, runs the entrypoint with
the contract's environment, enforces ``MaxRuntimeInSeconds``, uploads
``model.tar.gz`` to ``<S3OutputPath>/<job>/output/`` and records the outcome in
``description.json`` with the ``FailureReason`` the entrypoint wrote.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from recflow.artifacts import join, store_for
from recflow.config import Settings, subprocess_env
from recflow.training.local import now_iso, write_json

ENTRYPOINT = [sys.executable, "-m", "recflow_ml.train", "train"]


def _update(job_dir: Path, **fields: Any) -> None:
    path = job_dir / "description.json"
    description = json.loads(path.read_text())
    description.update(fields)
    write_json(path, description)


def _say(message: str) -> None:
    print(f"[local-runner {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _download_channels(settings: Settings, request: dict[str, Any], base: Path) -> dict[str, Path]:
    channels = {}
    for channel in request["InputDataConfig"]:
        name = channel["ChannelName"]
        prefix = channel["DataSource"]["S3DataSource"]["S3Uri"]
        store = store_for(settings, prefix)
        target = base / "input" / "data" / name
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


def _tar(directory: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)


def run(job_dir: Path) -> int:
    settings = Settings.from_env()
    request = json.loads((job_dir / "request.json").read_text())
    name = request["TrainingJobName"]
    base = job_dir / "opt_ml"
    config_dir = base / "input" / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    hps = request["HyperParameters"]
    (config_dir / "hyperparameters.json").write_text(json.dumps(hps))
    (config_dir / "inputdataconfig.json").write_text(
        json.dumps(
            {c["ChannelName"]: {"ContentType": c.get("ContentType")} for c in request["InputDataConfig"]}
        )
    )
    (config_dir / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )
    started = time.monotonic()
    _update(job_dir, SecondaryStatus="Downloading", TrainingStartTime=now_iso())
    try:
        channels = _download_channels(settings, request, base)
    except (OSError, ValueError) as exc:
        _update(
            job_dir,
            TrainingJobStatus="Failed",
            SecondaryStatus="Failed",
            FailureReason=f"ClientError: could not download the input data: {exc}",
            TrainingEndTime=now_iso(),
        )
        return 1
    env = {
        "SAGEMAKER_BASE_DIR": str(base),
        "SM_MODEL_DIR": str(base / "model"),
        "SM_OUTPUT_DATA_DIR": str(base / "output" / "data"),
        "SM_INPUT_CONFIG_DIR": str(config_dir),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(hps),
        "TRAINING_JOB_NAME": name,
        "PYTHONUNBUFFERED": "1",
        **{f"SM_CHANNEL_{c.upper()}": str(path) for c, path in channels.items()},
    }
    max_runtime = int(request["StoppingCondition"]["MaxRuntimeInSeconds"])
    _update(job_dir, SecondaryStatus="Training")
    _say(f"starting {' '.join(ENTRYPOINT)} (max runtime {max_runtime}s)")
    process = subprocess.Popen(ENTRYPOINT, env=subprocess_env(env), stdin=subprocess.DEVNULL)
    try:
        code = process.wait(timeout=max_runtime)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        code = -9
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    seconds = time.monotonic() - started
    usage = {"TrainingTimeInSeconds": round(seconds), "LocalPeakMemoryMB": round(peak_mb, 1)}
    if code != 0:
        failure = base / "output" / "failure"
        if code == -9:
            reason = f"MaxRuntimeExceeded: the job ran past MaxRuntimeInSeconds={max_runtime}"
        elif failure.exists() and failure.read_text().strip():
            reason = f"AlgorithmError: {failure.read_text().strip()}"
        else:
            reason = f"AlgorithmError: the entrypoint exited with code {code} and wrote no output/failure"
        _say(f"job failed: {reason}")
        _update(
            job_dir,
            TrainingJobStatus="Failed",
            SecondaryStatus="Failed",
            FailureReason=reason,
            TrainingEndTime=now_iso(),
            **usage,
        )
        return 1
    _update(job_dir, SecondaryStatus="Uploading")
    output_prefix = join(request["OutputDataConfig"]["S3OutputPath"], name, "output")
    store = store_for(settings, output_prefix)
    with tempfile.TemporaryDirectory() as tmp:
        model_archive = Path(tmp) / "model.tar.gz"
        _tar(base / "model", model_archive)
        model_uri = store.put_file(model_archive, join(output_prefix, "model.tar.gz"))
        data_dir = base / "output" / "data"
        if data_dir.is_dir() and any(data_dir.iterdir()):
            output_archive = Path(tmp) / "output.tar.gz"
            _tar(data_dir, output_archive)
            store.put_file(output_archive, join(output_prefix, "output.tar.gz"))
    _say(f"uploaded {model_uri}; peak memory {peak_mb:.0f} MB, {seconds:.1f}s")
    _update(
        job_dir,
        TrainingJobStatus="Completed",
        SecondaryStatus="Completed",
        ModelArtifacts={"S3ModelArtifacts": model_uri},
        TrainingEndTime=now_iso(),
        **usage,
    )
    return 0


def main() -> None:
    job_dir = Path(sys.argv[1])
    try:
        code = run(job_dir)
    except Exception as exc:  # the platform's promise: every outcome ends in description.json
        _update(
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
