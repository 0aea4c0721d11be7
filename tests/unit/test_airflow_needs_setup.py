"""`recflow airflow …` on a home `recflow setup` never prepared names the fix, not Airflow's.

Airflow alone says "run `airflow db migrate`", which leaves the dbt manifest and the warehouse
pool the DAGs need unmade; the README's commands run on any RECFLOW_HOME, so the refusal names
`recflow setup` and the home.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from recflow import cli
from recflow.core.config import Settings
from recflow.stack import services


def test_a_fresh_home_is_refused_with_recflow_setup_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    assert cli.main(["airflow", "dags", "test", "recsys_warehouse", "2026-01-03"]) == 2
    err = capsys.readouterr().err
    database = home / "airflow" / "airflow.db"
    assert err.startswith(
        f"recflow: RECFLOW_HOME={home} is not set up: its Airflow metadata database {database}"
    )
    assert "Run `recflow setup` (or `make setup`) once for this home" in err
    assert "Traceback" not in err
    # nothing at all: the home's secrets written before the refusal made the mistyped home one that
    # `recflow incidents list` read as empty ("no incidents recorded") instead of refusing it
    assert not home.exists(), sorted(str(p) for p in home.rglob("*"))


@pytest.fixture
def airflow_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """A fresh home; the argv of each `airflow` process run_airflow starts (and waits for), which
    stands in for it."""
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    ran: list[list[str]] = []

    class _Airflow:
        def __init__(self, argv: list[str], **kwargs: Any) -> None:
            ran.append(argv)

        def wait(self, timeout: float | None = None) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", _Airflow)  # the module services starts it through
    return ran


def test_airflow_db_commands_still_run_on_a_fresh_home(airflow_runs: list[list[str]]) -> None:
    """`recflow setup` itself starts with `airflow db migrate` on a home without a database."""
    assert services.run_airflow(Settings.from_env(), ["db", "migrate"]) == 0
    assert [argv[1:] for argv in airflow_runs] == [["db", "migrate"]]


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["dags", "--help"]])
def test_airflow_options_first_are_airflows(airflow_runs: list[list[str]], argv: list[str]) -> None:
    """`recflow airflow --help` was argparse's "unrecognized arguments: --help": its REMAINDER takes no
    leading option. Everything after `airflow` is Airflow's."""
    database = Settings.from_env().airflow_home / "airflow.db"
    database.parent.mkdir(parents=True)
    database.touch()  # a home set up (its metadata database exists)
    assert cli.main(["airflow", *argv]) == 0
    assert [a[1:] for a in airflow_runs] == [argv]
