"""A URL in a message carries no password, wherever the URL holds one."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from recflow import cli
from recflow.core.urls import shown_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://oncall:s3cret@db:5432/recflow", "postgresql://oncall:***@db:5432/recflow"),
        (  # libpq's own place for it, which SQLAlchemy's hide_password leaves
            "postgresql://oncall@db/recflow?password=s3cret&sslmode=require",
            "postgresql://oncall@db/recflow?password=***&sslmode=require",
        ),
        ("https://user:s3cret@mlflow.internal", "https://user:***@mlflow.internal"),
        ("hive://recflow@127.0.0.1:10000/default", "hive://recflow@127.0.0.1:10000/default"),
        ("sqlite:////srv/recflow/incidents.db", "sqlite:////srv/recflow/incidents.db"),
        ("not a url", "not a url"),
        ("postgresql://u:pw@h:bad/db", "postgresql://u:***@h:bad/db"),  # no port SQLAlchemy reads
        ("postgresql://u@h:bad/db?password=pw&x=1", "postgresql://u@h:bad/db?password=***&x=1"),
    ],
)
def test_every_password_is_hidden(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_an_unreachable_store_named_in_a_message_keeps_a_query_password_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path))
    monkeypatch.setenv(
        "RECFLOW_INCIDENTS_URL", f"postgresql://oncall@127.0.0.1:{port}/recflow?password=s3cret"
    )
    assert cli.main(["incidents", "list"]) == 1
    err = capsys.readouterr().err
    assert f"postgresql://oncall@127.0.0.1:{port}/recflow?password=*** (RECFLOW_INCIDENTS_URL)" in err, err
    assert "s3cret" not in err


def test_an_incident_names_a_registry_that_does_not_answer_without_its_password(tmp_path: Path) -> None:
    """The incident's champion line printed the MLflow store URI as set (found in review)."""
    from recflow.core.config import Settings
    from recflow.oncall.incidents import champion_of

    with socket.socket() as silent:  # a tracking server that takes the connection and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://oncall:s3cret@127.0.0.1:{silent.getsockname()[1]}"
        settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_MLFLOW_TRACKING_URI": url})
        said = champion_of(settings, "recsys-demo", timeout_s=0.5)
    assert said == (
        "unknown: the registry did not answer within 0.5 s "
        f"(http://oncall:***@127.0.0.1:{url.rsplit(':', 1)[1]})"
    )
