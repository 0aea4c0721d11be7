"""``recflow backfill``/``clear`` check what they can before asking Airflow's API server, and say on
one line why they cannot ask it: not running, never started for this home, a password file that is
not JSON, another program on the port. ``recflow mlflow ui`` exits non-zero when its UI cannot serve.
Before, each of the first refusals was only "cannot reach Airflow's API server" when it was down,
a corrupt password file was a JSONDecodeError traceback, another server's HTML page was pasted
whole into the message, and a UI that failed to start exited 0."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from recflow import cli
from recflow.core.config import Settings
from tests.loopback import JsonHandler, airflow_stand_in, free_port

PASSWORDS = "simple_auth_manager_passwords.json"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A home whose Airflow port nothing listens on."""
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RECFLOW_AIRFLOW_API_PORT", str(free_port()))
    return Settings.from_env()


def _said(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The CLI's refusal (``recflow: …``, exit 2) as one line; it must be one line."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("recflow: ") and err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["backfill", "--from", "2026-01-05", "--to", "2026-01-01"],
            "recflow: --to 2026-01-01 is before --from 2026-01-05",
        ),
        (
            ["clear", "recsys_warehouse", "-t", "^land$", "-s", "2026-01-05", "-e", "2026-01-01"],
            "recflow: --end-date 2026-01-01 is before --start-date 2026-01-05",
        ),
        (
            ["clear", "recsys_warehouse", "-t", "^land$"],
            "recflow: say which runs to clear: the days they processed (-s D [-e D]) or --run RUN_ID|latest",
        ),
        (
            ["clear", "recsys_warehouse", "-t", "^land$", "-s", "2026-01-05", "--run", "latest"],
            "recflow: give the days (-s/-e) or --run, not both",
        ),
        (
            ["clear", "recsys_warehouse", "-t", "^land$", "-e", "2026-01-05", "--run", "latest"],
            "recflow: give the days (-s/-e) or --run, not both",
        ),
    ],
)
def test_arguments_are_checked_before_the_api_server_is_asked(
    home: Settings, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    assert _said(argv, capsys) == said
    assert not home.home.exists()


@pytest.mark.parametrize(
    ("task_regex", "refusal"),
    [
        ("[", "'[' is not a regular expression: unterminated character set at position 0"),
        # ``-t "$TASK"`` with TASK unset cleared every task of the days (a search for '' matches any id)
        ("", "'' matches every task; to mean every task, give '.'"),
    ],
    ids=["does-not-compile", "empty"],
)
def test_a_task_regex_is_refused_at_parsing(
    home: Settings, capsys: pytest.CaptureFixture[str], task_regex: str, refusal: str
) -> None:
    with pytest.raises(SystemExit) as ended:
        cli.main(["clear", "recsys_warehouse", "-t", task_regex, "-s", "2026-01-05"])
    assert ended.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"recflow clear: error: argument -t/--task-regex: {refusal}"
    )


CLEAR = ["clear", "recsys_warehouse", "-t", "^land$", "-s", "2026-01-05"]
BACKFILL = ["backfill", "--from", "2026-01-01", "--to", "2026-01-05"]


@pytest.mark.parametrize("argv", [CLEAR, BACKFILL], ids=["clear", "backfill"])
def test_an_airflow_never_started_for_this_home_is_called_so(
    home: Settings, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    said = _said(argv, capsys)
    url = f"http://127.0.0.1:{home.airflow_api_port}"
    assert said.startswith(
        f"recflow: Airflow is not running for RECFLOW_HOME={home.home}: nothing listens at {url}, and its "
        f"API server has never started for this home (no admin password in {home.airflow_home / PASSWORDS})."
    )
    assert "Start it with `recflow up`" in said
    assert "has not written the admin password yet" not in said


def test_an_airflow_that_ran_here_and_stopped_is_not_running(
    home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    home.airflow_home.mkdir(parents=True)
    (home.airflow_home / PASSWORDS).write_text('{"admin": "secret"}\n')
    said = _said(CLEAR, capsys)
    assert said.startswith(
        f"recflow: Airflow's API server is not running for RECFLOW_HOME={home.home}: nothing listens at "
        f"http://127.0.0.1:{home.airflow_api_port}. Start it with `recflow up`"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"admin": "secret"', "is not JSON (Expecting ',' delimiter: line 1 column 19 (char 18))"),
        ('["admin"]', "holds a JSON list, not the object of user names Airflow writes"),
    ],
)
def test_a_corrupt_password_file_is_named_with_what_to_do(
    home: Settings, capsys: pytest.CaptureFixture[str], content: str, problem: str
) -> None:
    home.airflow_home.mkdir(parents=True)
    (home.airflow_home / PASSWORDS).write_text(content)
    said = _said(CLEAR, capsys)
    assert said.startswith(f"recflow: {home.airflow_home / PASSWORDS} {problem}: ")
    assert "delete the file" in said and "`recflow up`" in said
    assert (home.airflow_home / PASSWORDS).read_text() == content, "the file is left as it was"


PAGE = (
    "<!DOCTYPE html>\n<html>\n<head><title>Welcome to nginx!</title></head>\n<body>\n"
    + "<p>filler</p>\n" * 200
    + "</body>\n</html>\n"
)


class _NotAirflow(JsonHandler):
    """Another program's web server: an HTML page, with the status the test sets."""

    status: ClassVar[int] = 404

    def _page(self) -> None:
        body = PAGE.encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _page


@pytest.fixture
def not_airflow(home: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_NotAirflow]]:
    handler = type("Handler", (_NotAirflow,), {})
    with airflow_stand_in(handler) as stand_in:
        monkeypatch.setenv("RECFLOW_AIRFLOW_API_PORT", stand_in.base_url.rsplit(":", 1)[1])
        home.airflow_home.mkdir(parents=True)
        (home.airflow_home / PASSWORDS).write_text('{"admin": "secret"}\n')
        yield handler


@pytest.mark.parametrize("status", [404, 200])
def test_another_server_on_the_port_is_named_in_one_line(
    not_airflow: type[_NotAirflow], capsys: pytest.CaptureFixture[str], status: int
) -> None:
    not_airflow.status = status
    said = _said(CLEAR, capsys)
    port = Settings.from_env().airflow_api_port
    assert said.startswith(
        f"recflow: http://127.0.0.1:{port} does not answer as Airflow's API server "
        f"(HTTP {status} to POST /auth/token: Welcome to nginx!): another program holds the port."
    )
    assert "<" not in said and "filler" not in said


def test_a_port_that_answers_before_the_password_is_written_is_starting(
    not_airflow: type[_NotAirflow], home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    (home.airflow_home / PASSWORDS).write_text("")
    said = _said(CLEAR, capsys)
    assert "answers, but the API server of" in said and "it is still starting" in said


# -- recflow mlflow ui -------------------------------------------------------------------------


@pytest.fixture
def registry_home(home: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    (home.home / "mlflow").mkdir(parents=True)
    (home.home / "mlflow" / "mlflow.db").touch()  # the embedded registry exists (require_registry)
    return home


def test_a_ui_that_ends_by_itself_exits_non_zero(
    registry_home: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mlflow ui`` exits 0 when its server fails to start: a UI that ends without Ctrl-C failed."""
    ran: list[list[str]] = []

    def ends_at_once(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        ran.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", ends_at_once)
    port = free_port()
    assert cli.main(["mlflow", "ui", "--port", str(port)]) == 1
    assert len(ran) == 1
    assert (
        f"the MLflow UI on http://127.0.0.1:{port} ended without Ctrl-C (exit status 0)"
        in capsys.readouterr().err
    )


def test_a_ui_stopped_with_ctrl_c_exits_0(registry_home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "run", interrupted)
    assert cli.main(["mlflow", "ui", "--port", str(free_port())]) == 0


def _never_started(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    raise AssertionError(f"the UI was started: {command}")


def test_a_host_that_is_not_this_machines_is_refused_before_the_ui_starts(
    registry_home: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(subprocess, "run", _never_started)
    # 192.0.2.1: TEST-NET-1 (RFC 5737), never an address of this machine
    assert cli.main(["mlflow", "ui", "--host", "192.0.2.1", "--port", "5000"]) == 2
    assert capsys.readouterr().err.strip() == (
        "recflow: the MLflow UI cannot listen on --host 192.0.2.1 --port 5000: Cannot assign requested address"
    )


def test_a_port_another_server_holds_is_refused_before_the_ui_starts(
    registry_home: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(subprocess, "run", _never_started)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["mlflow", "ui", "--port", str(port)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"recflow: the MLflow UI cannot listen on --host 127.0.0.1 --port {port}: Address already in use"
    )
