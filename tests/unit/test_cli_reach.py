"""The model registry's store, down or misnamed: ``recflow models …`` says so in one line (the incident
store's case is in test_incidents)."""

from __future__ import annotations

import socket
import sqlite3
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from recflow import cli
from tests.loopback import JsonHandler


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
        shown, variable = f"SageMaker at http://127.0.0.1:{port}", "RECFLOW_AWS_ENDPOINT_URL"
        reason = "could not connect"
    else:
        monkeypatch.setenv("RECFLOW_MLFLOW_TRACKING_URI", f"{scheme}://oncall:s3cret@127.0.0.1:{port}/mlflow")
        shown, variable, reason = (
            f"the model registry's store {scheme}://oncall:***@127.0.0.1:{port}/mlflow",
            "RECFLOW_MLFLOW_TRACKING_URI",
            "refused",
        )

    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"recflow: cannot reach {shown} ({variable}): "), err
    assert reason in err.lower(), err
    assert len(err.splitlines()) == 1
    assert "s3cret" not in err, err
    assert not (tmp_path / "exported").exists()


@pytest.mark.parametrize("scheme", ["postgresql", "http", "sagemaker"])
def test_gc_names_a_registry_it_cannot_reach_in_one_line_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], scheme: str
) -> None:
    """``recflow gc`` reads the registry's references before it deletes anything; a tracking server down
    printed MLflow's traceback, the URL's password in it (found by a session walking the on-call list)."""
    import mlflow.store.db.utils  # seconds to import: only this test needs it

    monkeypatch.setattr(mlflow.store.db.utils, "MAX_RETRY_COUNT", 1)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port = _closed_port()
    home = tmp_path / "home"
    for n in range(4):  # what gc would weigh: three beyond the last one kept, none of them young
        (home / "artifacts" / "snapshots" / f"snap-{n}").mkdir(parents=True)
        (home / "artifacts" / "snapshots" / f"snap-{n}" / "interactions.parquet").write_bytes(b"x" * 10)
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    monkeypatch.setenv("RECFLOW_RETENTION_KEEP_LAST", "1")
    monkeypatch.setenv("RECFLOW_RETENTION_MIN_AGE_HOURS", "0")
    if scheme == "sagemaker":
        monkeypatch.setenv("RECFLOW_REGISTRY_BACKEND", "sagemaker")
        monkeypatch.setenv("RECFLOW_ARTIFACT_ROOT", "s3://recflow/artifacts")
        monkeypatch.setenv("RECFLOW_AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(key, "testing")
        shown = f"SageMaker at http://127.0.0.1:{port} or the artifact store s3://recflow/artifacts"
        variable, reason = "RECFLOW_AWS_ENDPOINT_URL", "could not connect"
    else:
        monkeypatch.setenv("RECFLOW_MLFLOW_TRACKING_URI", f"{scheme}://oncall:s3cret@127.0.0.1:{port}/mlflow")
        shown = f"the model registry's store {scheme}://oncall:***@127.0.0.1:{port}/mlflow"
        variable, reason = "RECFLOW_MLFLOW_TRACKING_URI", "refused"
    before = sorted(p.relative_to(home) for p in home.rglob("*"))

    assert cli.main(["gc"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"recflow: cannot reach {shown} ({variable}): "), err
    assert reason in err.lower() and len(err.splitlines()) == 1 and "s3cret" not in err, err
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before, "gc deleted without the registry"


class _Unavailable(JsonHandler):
    """A proxy in front of a tracking server that is down: 503 to everything."""

    def do_GET(self) -> None:
        self.send_json(503, {"error": "no healthy upstream"})


def test_a_tracking_server_behind_a_proxy_that_answers_503_cannot_be_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """urllib3 ends 503s with a RetryError, not a ConnectionError: it was a traceback (found in review)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("RECFLOW_MLFLOW_TRACKING_URI", url)
    try:
        assert cli.main(["models", "list"]) == 1
    finally:
        server.shutdown()
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"recflow: cannot reach the model registry's store {url} (RECFLOW_MLFLOW_TRACKING_URI): "
    )
    assert "503" in err and len(err.splitlines()) == 1, err


def test_an_artifact_store_that_cannot_be_reached_is_named_not_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An MLflow registry (reachable) keeps the model's files in S3; S3 down was blamed on the registry's
    database (found in review)."""
    from mlflow.tracking import MlflowClient  # seconds to import: only this test needs it

    home = tmp_path / "home"
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    monkeypatch.setenv("RECFLOW_ARTIFACT_ROOT", "s3://recflow/artifacts")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    (home / "mlflow").mkdir(parents=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    client.create_registered_model("recsys-demo")
    version = client.create_model_version("recsys-demo", "s3://recflow/artifacts/1/model")
    client.set_registered_model_alias("recsys-demo", "champion", version.version)

    assert cli.main(["models", "export", "--name", "recsys-demo", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "recflow: cannot reach the artifact store s3://recflow/artifacts (RECFLOW_ARTIFACT_ROOT): "
        "Could not connect to the endpoint URL"
    ), err
    assert not (tmp_path / "out").exists()


def test_a_statement_the_store_refuses_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a failure to connect is 'cannot reach': a store that answered (here, with a table of another
    shape) is not called unreachable (found in review)."""
    from sqlalchemy.exc import OperationalError

    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "incidents.db") as db:
        db.execute("create table incidents (id integer primary key, at text)")
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    with pytest.raises(OperationalError, match="no such column"):
        cli.main(["incidents", "list"])


def test_a_command_gives_up_on_a_tracking_server_after_a_few_tries_not_minutes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLflow's own retries (7, backing off from 2 s) kept ``models list`` silent for 4.5 minutes before it
    said the server was not there: a command tries 1 + CLI_HTTP_RETRIES times, and leaves the variable
    as it found it (the pipeline's tasks keep MLflow's retries)."""
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR

    from recflow.cli.reach import CLI_HTTP_RETRIES

    asked: list[str] = []

    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_TIMEOUT

    from recflow.cli.reach import CLI_HTTP_TIMEOUT_SECONDS

    timeouts: list[int] = []

    class _Counting(_Unavailable):
        def do_GET(self) -> None:
            asked.append(self.path)
            timeouts.append(MLFLOW_HTTP_REQUEST_TIMEOUT.get())  # type: ignore[no-untyped-call]
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(name, "7")
        monkeypatch.delenv(name)  # unset, and restored so after the test
    monkeypatch.setenv(MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.name, "0")  # the count is under test, not the waits
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RECFLOW_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        assert cli.main(["models", "list"]) == 1
    finally:
        server.shutdown()
    assert len(asked) == 1 + CLI_HTTP_RETRIES, asked
    assert set(timeouts) == {CLI_HTTP_TIMEOUT_SECONDS}  # each try waits 30 s at most, not MLflow's 120
    assert "cannot reach the model registry's store" in capsys.readouterr().err
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES

    assert not MLFLOW_HTTP_REQUEST_MAX_RETRIES.is_set()  # type: ignore[no-untyped-call]
    assert not MLFLOW_HTTP_REQUEST_TIMEOUT.is_set()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("argv", [["models", "list"], ["gc", "--dry-run"]], ids=lambda argv: argv[0])
def test_a_command_gives_up_on_a_registry_database_after_a_few_tries_not_ten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """MLflow opens a registry on a database server with ten tries, backing off from 0.1 s: ``models
    list`` waited 100 s and printed nine warnings before it said PostgreSQL refused the connection. A
    command tries CLI_DB_TRIES times, and puts MLflow's count back after (the tasks keep ten)."""
    import mlflow.store.db.utils as db_utils

    from recflow.cli.reach import CLI_DB_TRIES

    opened: list[str] = []
    create = db_utils.create_sqlalchemy_engine

    def counting(db_uri: str) -> object:
        opened.append(db_uri)
        return create(db_uri)  # type: ignore[no-untyped-call]  # MLflow's, untyped

    monkeypatch.setattr(db_utils, "create_sqlalchemy_engine", counting)
    monkeypatch.setattr(db_utils, "time", SimpleNamespace(sleep=lambda seconds: None))  # tries, not waits
    kept = db_utils.MAX_RETRY_COUNT
    home = tmp_path / "home"
    (home / "artifacts").mkdir(parents=True)
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    url = f"postgresql://oncall:s3cret@127.0.0.1:{_closed_port()}/mlflow"
    monkeypatch.setenv("RECFLOW_MLFLOW_TRACKING_URI", url)

    assert cli.main(argv) == 1
    assert len(opened) == CLI_DB_TRIES < kept, opened
    assert kept == db_utils.MAX_RETRY_COUNT
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("recflow: cannot reach the model registry's store postgresql://oncall:***@"), err
