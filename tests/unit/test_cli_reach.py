"""The model registry's store, down or misnamed: ``recflow models …`` says so in one line (the incident
store's case is in test_incidents)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from recflow import cli


def _closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "argv",
    [
        ["models", "list"],
        ["models", "show", "--name", "recsys-demo"],
        ["models", "history", "--name", "recsys-demo"],
        ["models", "promote", "--name", "recsys-demo", "--version", "1", "--reason", "rollback"],
        ["models", "export", "--name", "recsys-demo", "--out", "exported"],
    ],
    ids=lambda argv: argv[1],
)
@pytest.mark.parametrize("scheme", ["postgresql", "http", "sagemaker"])
def test_a_registry_store_that_cannot_be_reached_is_named_in_one_line_without_its_password(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    scheme: str,
) -> None:
    import mlflow.store.db.utils  # seconds to import: only this test needs it

    # MLflow's own retries stay as they are for the tasks; the test asks for one try of each
    monkeypatch.setattr(mlflow.store.db.utils, "MAX_RETRY_COUNT", 1)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port = _closed_port()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    if scheme == "sagemaker":  # the production registry, through an endpoint (moto's, in tests)
        monkeypatch.setenv("RECFLOW_REGISTRY_BACKEND", "sagemaker")
        monkeypatch.setenv("RECFLOW_ARTIFACT_ROOT", "s3://recflow/artifacts")
        monkeypatch.setenv("RECFLOW_AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(key, "testing")
        shown, variable, reason = f"http://127.0.0.1:{port}", "RECFLOW_AWS_ENDPOINT_URL", "could not connect"
    else:
        monkeypatch.setenv("RECFLOW_MLFLOW_TRACKING_URI", f"{scheme}://oncall:s3cret@127.0.0.1:{port}/mlflow")
        shown, variable, reason = (
            f"{scheme}://oncall:***@127.0.0.1:{port}/mlflow",
            "RECFLOW_MLFLOW_TRACKING_URI",
            "refused",
        )

    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"recflow: cannot reach the model registry's store {shown} ({variable}): "), err
    assert reason in err.lower(), err
    assert len(err.splitlines()) == 1
    assert "s3cret" not in err, err
    assert not (tmp_path / "exported").exists()
