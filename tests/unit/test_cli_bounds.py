"""Numbers and days the CLI is given are refused at parsing, naming the argument and the value, with
exit 2, no traceback, and nothing made: no home, no store, no query. Each case here once ended in a
traceback (IndexError, numpy's ValueError, a 37 GiB allocation, OverflowError from SQLite or from a
date) or was taken silently (``--topics 99999``, ``--dag ''``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from recflow import cli
from recflow.core.config import Settings
from recflow.oncall.incidents import TaskFailure, build_incident
from recflow.oncall.store import IncidentStore

SQLITE_MAX = 9_223_372_036_854_775_807
"""The largest INTEGER SQLite stores (its documentation: a signed 64-bit integer)."""


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI, expect argparse's refusal (exit 2), return what it said."""
    with pytest.raises(SystemExit) as ended:
        cli.main(argv)
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    return home


@pytest.mark.parametrize("days", ["0", "-3", "3661"])
def test_demo_refuses_a_number_of_days_before_it_makes_a_store(
    fresh_home: Path, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    said = _refused(["demo", "--days", days], capsys)
    assert said == f"recflow demo: error: argument --days: {days} is not a number of days from 1 to 3,660"
    assert not fresh_home.exists(), "the four stores were made and marked before the refusal"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--seed", "-1"], "argument --seed: -1 is not a seed from 0 to 4,294,967,295"),
        (["--seed", "4294967296"], "argument --seed: 4294967296 is not a seed from 0 to 4,294,967,295"),
        (
            ["--users", "10000000000"],
            "argument --users: 10000000000 is not a number of users from 1 to 10,000,000",
        ),
        (["--users", "0"], "argument --users: 0 is not a number of users from 1 to 10,000,000"),
        (["--pins", "10000001"], "argument --pins: 10000001 is not a number of pins from 1 to 10,000,000"),
        (["--topics", "99999"], "argument --topics: 99999 is not a number of topics from 1 to 1,000"),
        (["--topics", "x"], "argument --topics: 'x' is not a whole number"),
    ],
)
def test_generate_refuses_a_size_out_of_bounds_before_it_writes(
    fresh_home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    assert _refused(["generate", *argv], capsys) == f"recflow generate: error: {said}"
    assert not fresh_home.exists()


def test_the_bounds_themselves_are_taken() -> None:
    parser = cli.build_parser()
    largest = ["--days", "3660", "--users", "10000000", "--pins", "10000000", "--topics", "1000"]
    args = parser.parse_args(["generate", *largest, "--seed", "4294967295"])
    assert (args.days, args.users, args.pins, args.topics, args.seed) == (
        3660,
        10_000_000,
        10_000_000,
        1000,
        2**32 - 1,
    )
    demo = parser.parse_args(["demo", "--days", "1", "--users", "1", "--pins", "1", "--seed", "0"])
    assert (demo.days, demo.users, demo.pins, demo.seed) == (1, 1, 1, 0)


def test_the_demos_days_are_the_generators_own_limit() -> None:
    """The demo's ``--days`` is bounded by the generator's constant (``recflow generate`` has the
    generator itself refuse it), not by a copy of it."""
    from recflow.producers.generate import MAX_DAYS

    assert cli.build_parser().parse_args(["demo", "--days", str(MAX_DAYS)]).days == MAX_DAYS


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["generate", "--end", "2026-02-30"],
            "argument --end: '2026-02-30' does not exist: February 2026 has 28 days",
        ),
        (
            ["generate", "--end", "2024-02-30"],
            "argument --end: '2024-02-30' does not exist: February 2024 has 29 days",
        ),
        (
            ["generate", "--end", "2026-04-31"],
            "argument --end: '2026-04-31' does not exist: April 2026 has 30 days",
        ),
        (
            ["generate", "--end", "2026-13-01"],
            "argument --end: '2026-13-01' does not exist: there is no month 13 (01 to 12)",
        ),
        (["generate", "--end", "2026-2-3"], "argument --end: '2026-2-3' is not a date (YYYY-MM-DD)"),
        # Python reads these too: 2026-W01-1 is Monday 2025-12-29, generated without a word
        (["generate", "--end", "20260103"], "argument --end: '20260103' is not a date (YYYY-MM-DD)"),
        (["generate", "--end", "2026-W01-1"], "argument --end: '2026-W01-1' is not a date (YYYY-MM-DD)"),
        (["generate", "--days", "0"], "argument --days: 0 is not a number of days from 1 to 3,660"),
        (
            ["incidents", "list", "--since", "2026-02-30"],
            "argument --since: '2026-02-30' does not exist: February 2026 has 28 days",
        ),
        (
            ["incidents", "list", "--since", "2026-02-29T06:00"],
            "argument --since: '2026-02-29T06:00' does not exist: February 2026 has 28 days",
        ),
        (
            ["backfill", "--from", "2026-02-29", "--to", "2026-03-01"],
            "argument --from: '2026-02-29' does not exist: February 2026 has 28 days",
        ),
    ],
)
def test_a_day_that_does_not_exist_is_called_so(
    fresh_home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    assert _refused(argv, capsys).endswith(f"error: {said}")


@pytest.fixture
def incidents_home(fresh_home: Path) -> Settings:
    """A home whose incident store exists and holds one incident."""
    settings = Settings.from_env()
    failure = TaskFailure(
        dag_id="recsys_warehouse", task_id="land", run_id="manual__1", try_number=1, error=RuntimeError("x")
    )
    incident = build_incident(
        settings, failure, champion=lambda name: "none", now=datetime(2026, 1, 2, tzinfo=UTC)
    )
    IncidentStore(settings.incidents_path).add(incident)
    return settings


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["show", "99999999999999999999"],
            f"argument id: 99999999999999999999 is not an incident id from 1 to {SQLITE_MAX:,}",
        ),
        (["show", "0"], f"argument id: 0 is not an incident id from 1 to {SQLITE_MAX:,}"),
        (
            ["list", "--limit", "99999999999999999999"],
            f"argument --limit: 99999999999999999999 is not a count of incidents from 1 to {SQLITE_MAX:,}",
        ),
        (
            ["list", "--since", "0001-01-01T00:00:00+14:00"],
            "argument --since: '0001-01-01T00:00:00+14:00' is outside the years 1 to 9999 once written in UTC, "
            "as incidents are recorded",
        ),
        (
            ["list", "--since", "9999-12-31T23:00:00-14:00"],
            "argument --since: '9999-12-31T23:00:00-14:00' is outside the years 1 to 9999 once written in UTC, "
            "as incidents are recorded",
        ),
        (
            ["list", "--dag", ""],
            "argument --dag: '' is no DAG of recflow's: give recsys_warehouse or recsys_train_and_publish, "
            "or leave the option out for every DAG's",
        ),
        (  # a typo matched no incident and read as "no incidents": an all-clear that was not one
            ["list", "--dag", "recsys_warehous"],
            "argument --dag: 'recsys_warehous' is no DAG of recflow's: give recsys_warehouse or "
            "recsys_train_and_publish, or leave the option out for every DAG's",
        ),
    ],
)
def test_incidents_refuse_what_the_store_cannot_answer(
    incidents_home: Settings, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    assert _refused(["incidents", *argv], capsys) == f"recflow incidents {argv[0]}: error: {said}"


def test_the_largest_id_and_limit_the_store_takes_are_answered(
    incidents_home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["incidents", "show", str(SQLITE_MAX)]) == 1
    assert f"no incident {SQLITE_MAX} in" in capsys.readouterr().err
    assert cli.main(["incidents", "list", "--limit", str(SQLITE_MAX)]) == 0
    assert "recsys_warehouse.land" in capsys.readouterr().out
    assert cli.main(["incidents", "list", "--since", "0001-01-02T00:00:00+14:00"]) == 0
    assert "recsys_warehouse.land" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["show", "--name", "m"], ["promote", "--name", "m", "--reason", "r"]])
def test_models_refuse_a_version_the_registry_cannot_store(
    fresh_home: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    said = _refused(["models", *command, "--version", "99999999999999999999"], capsys)
    assert said == (
        f"recflow models {command[0]}: error: argument --version: 99999999999999999999 is not a model "
        f"version from 1 to {SQLITE_MAX:,}"
    )
    assert not fresh_home.exists()
    assert (
        cli.build_parser().parse_args(["models", *command, "--version", str(SQLITE_MAX)]).version
        == SQLITE_MAX
    )


@pytest.mark.parametrize("port", ["99999", "0", "65536", "-1"])
def test_mlflow_ui_refuses_a_port_outside_1_to_65535(
    fresh_home: Path, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    said = _refused(["mlflow", "ui", "--port", port], capsys)
    assert said == f"recflow mlflow ui: error: argument --port: {port} is not a TCP port from 1 to 65535"


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["show"],
        ["history"],
        ["promote", "--version", "1", "--reason", "r"],
        ["export", "--out", "exported"],
    ],
    ids=lambda command: command[0],
)
@pytest.mark.parametrize("name", ["", " ", "a/b", "a:b"])
def test_models_refuse_a_name_no_registry_takes(
    fresh_home: Path, capsys: pytest.CaptureFixture[str], command: list[str], name: str
) -> None:
    """MLflow answered a blank or a '/' or ':' name with its traceback; ``models list --name ""`` listed
    every model as if no name were given."""
    said = _refused(["models", command[0], "--name", name, *command[1:]], capsys)
    assert said == (
        f"recflow models {command[0]}: error: argument --name: {name!r} is no model name: give one "
        "(`recflow models list` shows them; no '/' or ':')"
    )
    assert not fresh_home.exists()


def test_models_export_refuses_an_empty_folder_name(
    fresh_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    said = _refused(["models", "export", "--name", "m", "--out", ""], capsys)
    assert (
        said == "recflow models export: error: argument --out: an empty path: give the folder to write into"
    )
