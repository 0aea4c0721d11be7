"""``recflow airflow dags test recsys_warehouse D`` of a day that has not landed says, before Airflow
starts, that the run will wait for it, and how to land it; a landed day, another DAG or a run whose
options may name other days start as before, with nothing said."""

from __future__ import annotations

from pathlib import Path

import pytest

from recflow import cli


def _land(tmp_path: Path, day: str) -> None:
    partition = tmp_path / "home" / "landing" / "events" / f"ds={day}"
    partition.mkdir(parents=True)
    (partition / "_SUCCESS").touch()


def test_a_day_not_landed_is_named_with_the_wait_and_how_to_land_it(
    airflow_started: list[list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["dags", "test", "recsys_warehouse", "2026-01-05"]
    assert cli.main(["airflow", *argv]) == 0
    assert airflow_started == [argv], "the run starts all the same: the day may land while it waits"
    said = capsys.readouterr().err
    assert said.startswith("recflow: ds=2026-01-05 has not landed (")
    assert str(tmp_path / "home" / "landing" / "events" / "ds=2026-01-05") in said
    assert "looking every 2 minutes for up to 6 hours" in said
    assert "`recflow generate --days N --end 2026-01-05`" in said


@pytest.mark.parametrize(
    ("given", "waits_for"),
    [  # the day in UTC of the moment Airflow reads (core.days' rule), not the day as written
        ("2026-01-05T00:30:00+01:00", "2026-01-04"),
        ("2026-01-04T23:30:00-05:00", "2026-01-05"),
        ("2026-01-05 00:30:00 UTC", "2026-01-05"),  # a form Airflow's parser reads and fromisoformat did not
    ],
)
def test_a_moment_with_a_time_zone_names_its_day_in_utc(
    airflow_started: list[list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    given: str,
    waits_for: str,
) -> None:
    _land(tmp_path, "2026-01-04" if waits_for == "2026-01-05" else "2026-01-05")
    assert cli.main(["airflow", "dags", "test", "recsys_warehouse", given]) == 0
    assert capsys.readouterr().err.startswith(f"recflow: ds={waits_for} has not landed (")


@pytest.mark.parametrize(
    "argv",
    [
        ["dags", "test", "recsys_warehouse", "2026-01-04"],  # landed
        ["dags", "test", "recsys_train_and_publish"],
        ["dags", "test", "recsys_warehouse", "2026-01-05", "-c", '{"reload_from": "2026-01-04"}'],
        ["dags", "test", "recsys_warehouse", "not-a-day"],  # Airflow's own message
        ["dags", "list"],
    ],
    ids=["landed", "other-dag", "options", "bad-day", "other-command"],
)
def test_otherwise_nothing_is_said(
    airflow_started: list[list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    _land(tmp_path, "2026-01-04")
    assert cli.main(["airflow", *argv]) == 0
    assert airflow_started == [argv]
    assert capsys.readouterr().err == ""
