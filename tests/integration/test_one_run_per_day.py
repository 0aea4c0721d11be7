"""One run of a day at a time, through ``land`` and ``audit``: two runs of one day (a reload over a
scheduled day, a run that died and one that took the day over) never publish each other's staging.

What each run published is checked against the rows of the landing files it read (pyarrow), by a
DuckDB connection of the test's own.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from recflow.cli import main
from recflow.core import errors
from recflow.core.config import Settings
from recflow.ingest.contract import partition_dir
from recflow.ingest.days import audit_days, stage_and_audit
from recflow.ingest.land import stage_partitions
from recflow.producers.generate import GeneratorConfig, generate, write_partition
from recflow.stack.ports import free_port

pytestmark = pytest.mark.integration

D1, D2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path / "home")})
    generate(settings.landing_dir, GeneratorConfig(start=D1, days=2, users=60, pins=200, topics=6, seed=3))
    return settings


def _reexport(settings: Settings, day: dt.date) -> int:
    """The producer rewrites the day with a tenth fewer events; the rows now in its files."""
    path = partition_dir(settings.landing_dir, day) / "part-00000.parquet"
    table = pq.read_table(path)
    write_partition(path.parent, [table.slice(0, table.num_rows * 9 // 10)])
    return int(pq.read_table(path).num_rows)


def _files_rows(settings: Settings, day: dt.date) -> int:
    return int(pq.read_table(partition_dir(settings.landing_dir, day) / "part-00000.parquet").num_rows)


def _sql(settings: Settings, sql: str, params: list[object] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(settings.duckdb_path)) as con:
        return con.execute(sql, params).fetchall()


def _published(settings: Settings, day: dt.date) -> int:
    if not _sql(
        settings,
        "select 1 from information_schema.tables where table_name = 'events' and table_schema = 'raw'",
    ):
        return 0
    return int(_sql(settings, "select count(*) from raw.events where ds = ?", [day])[0][0])


def _audits(settings: Settings, day: dt.date) -> list[tuple[object, ...]]:
    return _sql(
        settings,
        "select run_id, landed, verdict from quality.partition_audit where ds = ? order by audited_at",
        [day],
    )


def test_a_reload_over_a_scheduled_day_waits_for_it_and_each_publishes_its_own(home: Settings) -> None:
    scheduled_read = _files_rows(home, D1)
    stage_partitions(home, [D1], run_id="scheduled__2026-01-01")
    reload_read = _reexport(home, D1)

    with pytest.raises(errors.RecflowError) as caught:
        stage_partitions(home, [D1, D2], run_id="manual__reload")
    err = caught.value
    assert isinstance(err, errors.DayClaimed), f"{type(err).__name__}: {err}"
    assert err.holder == "scheduled__2026-01-01" and "ds=2026-01-01" in str(err)

    audit_days(home, [D1], run_id="scheduled__2026-01-01")
    assert _published(home, D1) == scheduled_read, "the scheduled run published the files it read"

    stage_and_audit(home, [D1, D2], run_id="manual__reload")  # the claim was released by the audit
    assert _published(home, D1) == reload_read
    assert _audits(home, D1) == [
        ("scheduled__2026-01-01", scheduled_read, "published"),
        ("manual__reload", reload_read, "published"),
    ]
    assert _sql(home, "select count(*) from raw_staging.day_claims") == [(0,)]


def test_the_audit_refuses_to_publish_a_day_another_run_staged(home: Settings) -> None:
    stage_partitions(home, [D1], run_id="died")
    _sql(home, "update raw_staging.day_claims set claimed_at = claimed_at - interval '7 hours'")
    taken_over = _reexport(home, D1)
    stage_partitions(home, [D1], run_id="took-over")  # the stale claim is taken over

    with pytest.raises(errors.RecflowError) as caught:
        audit_days(home, [D1], run_id="died")  # the late audit of the run that lost the day
    err = caught.value
    assert isinstance(err, errors.DayClaimed), f"{type(err).__name__}: {err}"
    assert err.holder == "took-over"
    assert "was landed by run 'took-over'" in str(err) and "nothing was published" in str(err)
    assert _published(home, D1) == 0
    assert _audits(home, D1) == []

    audit_days(home, [D1], run_id="took-over")
    assert _published(home, D1) == taken_over
    assert _audits(home, D1) == [("took-over", taken_over, "published")]


def test_a_dead_runs_day_is_released_by_the_command_its_refusal_gives(
    home: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``DayClaimed`` told on-call to run a DELETE, which ``recflow sql`` refuses and the embedded warehouse
    has no other client for: the only way left was to wait out the claim's 6 hours. Its message now gives
    ``recflow claims release``, which releases the claim of the run it names and no other."""
    stage_partitions(home, [D1], run_id="died")  # land, and the run dies before its audit
    with pytest.raises(errors.DayClaimed) as caught:
        stage_partitions(home, [D1], run_id="manual__again")
    command = re.search(r"`(recflow claims release [^`]+)`", str(caught.value))
    assert command is not None, str(caught.value)
    monkeypatch.setenv("RECFLOW_HOME", str(home.home))
    monkeypatch.setenv("RECFLOW_AIRFLOW_API_PORT", str(free_port()))  # no API server: the state is unchecked

    assert main(["claims"]) == 0
    assert capsys.readouterr().out.startswith("ds=2026-01-01 claimed by run died since ")
    assert main(["claims", "release", "--ds", "2026-01-01", "--run", "manual__again"]) == 2
    assert "claimed by run 'died'" in capsys.readouterr().err
    assert _sql(home, "select run_id from raw_staging.day_claims") == [("died",)], "another run's claim stays"

    # with no API server to ask whether the run still runs, the person says so
    assert main(shlex.split(command.group(1))[1:]) == 2
    assert "add --not-running" in capsys.readouterr().err
    assert _sql(home, "select run_id from raw_staging.day_claims") == [("died",)]
    assert main([*shlex.split(command.group(1))[1:], "--not-running"]) == 0
    assert "released ds=2026-01-01, claimed by run died since " in capsys.readouterr().out
    assert _sql(home, "select count(*) from raw_staging.day_claims") == [(0,)]
    stage_and_audit(home, [D1], run_id="manual__again")
    assert _published(home, D1) == _files_rows(home, D1)


def test_claims_on_a_home_with_no_warehouse_make_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    assert (
        main(
            [
                "claims",
                "release",
                "--ds",
                "2026-01-01",
                "--run",
                "r",
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "empty").rglob("*")] == []
