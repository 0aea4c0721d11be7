"""The REST client rides out the embedded metadata DB's write lock, and only where a retry is safe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from recflow.stack.api import AirflowApiError, AirflowClient
from tests.loopback import JsonHandler, airflow_stand_in

Answer = tuple[int, dict[str, object]]
"""A status and the JSON body the stand-in answers with."""


class _Airflow(JsonHandler):
    """Answers each request with the next (status, body) of ``script``, then 200."""

    script: ClassVar[list[Answer]] = []
    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        self.send_json(*(self.script.pop(0) if self.script else (200, {"ok": True})))

    do_GET = do_POST = do_PATCH = _answer


@pytest.fixture
def airflow() -> Iterator[tuple[AirflowClient, type[_Airflow]]]:
    handler = type("Handler", (_Airflow,), {"script": [], "seen": []})
    with airflow_stand_in(handler) as client:
        yield client, handler


LOCKED: Answer = (
    503,
    {"detail": "Database is locked. Backfill creation is not supported on SQLite under concurrent access."},
)
DB_ERROR: Answer = (500, {"detail": {"reason": "Database error", "statement": "hidden"}})


def test_a_backfill_refused_because_the_db_is_locked_is_created_on_a_later_try(
    airflow: tuple[AirflowClient, type[_Airflow]],
) -> None:
    client, handler = airflow
    handler.script.extend([LOCKED, LOCKED])
    assert client._request("POST", "/api/v2/backfills", {"dag_id": "d"}) == {"ok": True}
    assert handler.seen == ["POST /api/v2/backfills"] * 3


def test_an_idempotent_request_is_retried_after_a_database_error(
    airflow: tuple[AirflowClient, type[_Airflow]],
) -> None:
    client, handler = airflow
    handler.script.append(DB_ERROR)
    client.set_paused("recsys_warehouse", True)
    assert handler.seen == ["PATCH /api/v2/dags/recsys_warehouse"] * 2


def test_a_post_that_may_have_written_is_not_retried(airflow: tuple[AirflowClient, type[_Airflow]]) -> None:
    client, handler = airflow
    handler.script.append(DB_ERROR)
    with pytest.raises(AirflowApiError, match="HTTP 500"):
        client._request("POST", "/api/v2/dags/d/dagRuns", {})
    assert len(handler.seen) == 1


def test_a_lock_that_lasts_is_reported(airflow: tuple[AirflowClient, type[_Airflow]]) -> None:
    client, handler = airflow
    handler.script.extend([LOCKED] * 5)
    with pytest.raises(AirflowApiError, match=r"HTTP 503: .*Database is locked"):
        client._request("GET", "/api/v2/dags")
    assert len(handler.seen) == 5


def test_a_refusal_keeps_its_status_and_the_servers_own_words(
    airflow: tuple[AirflowClient, type[_Airflow]],
) -> None:
    client, handler = airflow
    words = "Invalid input for param max_quarantine_share: 1.5 is greater than the maximum of 1"
    handler.script.append((400, {"detail": words}))
    with pytest.raises(AirflowApiError) as refused:
        client.trigger("recsys_warehouse", {"max_quarantine_share": 1.5})
    assert refused.value.status == 400
    assert refused.value.reason == words
    handler.script.append((500, {"detail": {"reason": "Database error"}}))
    with pytest.raises(AirflowApiError) as failed:
        client.trigger("recsys_warehouse", {})
    assert failed.value.status == 500 and "Database error" in failed.value.reason


def test_a_server_that_refuses_this_homes_password_is_not_called_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two checkouts on one machine: the port answers, with another home's Airflow, which refuses
    this home's admin password (401). It was reported as 'cannot reach ... is it running?'."""
    from recflow.cli import main
    from recflow.core.config import Settings

    handler: type[_Airflow] = type(
        "Handler", (_Airflow,), {"script": [(401, {"detail": "Invalid credentials"})], "seen": []}
    )
    with airflow_stand_in(handler) as stand_in:
        port = stand_in.base_url.rsplit(":", 1)[1]
        monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("RECFLOW_AIRFLOW_API_PORT", port)
        settings = Settings.from_env()
        settings.airflow_home.mkdir(parents=True)
        (settings.airflow_home / "simple_auth_manager_passwords.json").write_text('{"admin": "ours"}')
        assert main(["clear", "recsys_warehouse", "-t", "^audit$", "-s", "2026-01-03"]) == 2
    err = capsys.readouterr().err
    assert handler.seen == ["POST /auth/token"]
    assert f"at http://127.0.0.1:{port} refused the admin password of RECFLOW_HOME={tmp_path / 'home'}" in err
    assert "another home's Airflow" in err and "cannot reach" not in err
