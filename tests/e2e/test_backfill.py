"""End to end: ``recflow backfill --from D1 --to D2`` through a real scheduler.

Six days of synthetic events; day 5 has 5% rows with a null ``user_id`` (the audit refuses it).
The first four days go through one backfill: one run, progress shown per day, every landed row
published, the marts built once and equal, table by table, to what day-by-day bare runs of the
same steps build from the same files. Then days 5..6 in one backfill: day 5 is refused alone
(the command exits 1 naming ``audit``), day 6 is published, day 5 reaches nothing. The runbooks'
``recflow clear -s D`` finds the range run that processed D (it has no logical date), and params
the DAG refuses are one line, with no run made.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import pyarrow.parquet as pq
import pytest

from recflow.cli import main
from recflow.core.config import Settings
from recflow.core.errors import ConfigError
from recflow.core.names import TRAINING_DAG, WAREHOUSE_DAG
from recflow.ingest.contract import partition_dir
from recflow.ingest.days import stage_and_audit
from recflow.producers.generate import GeneratorConfig, generate
from recflow.stack.api import AirflowClient, wait_for_dags
from recflow.stack.backfill import backfill_days
from recflow.stack.demo import setup, warehouse_checksums
from recflow.stack.services import running_airflow
from recflow.warehouse import connect
from tests.e2e.test_faults import _null_user_ids
from tests.integration.conftest import build_marts

pytestmark = pytest.mark.e2e

START = date(2026, 5, 1)
DAYS = [START + timedelta(days=i) for i in range(6)]
CFG = GeneratorConfig(start=START, days=6, users=200, pins=150, topics=6, seed=9)


@dataclass
class World:
    settings: Settings
    client: AirflowClient
    bare: Settings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("backfill")
    bare = Settings.from_env({"RECFLOW_HOME": str(root / "bare")})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_HOME", str(root / "home"))
        settings = Settings.from_env()
        generate(settings.landing_dir, CFG)
        _null_user_ids(settings, DAYS[4], 20)
        shutil.copytree(settings.landing_dir, bare.landing_dir)
        setup(settings, echo=print)
        with running_airflow(settings) as client:
            wait_for_dags(client, [WAREHOUSE_DAG, TRAINING_DAG])
            client.set_paused(TRAINING_DAG, True)
            client.set_paused(WAREHOUSE_DAG, False)
            yield World(settings, client, bare)
            client.set_paused(WAREHOUSE_DAG, True)


def _landed(settings: Settings, day: date) -> int:
    return sum(
        pq.read_metadata(p).num_rows for p in partition_dir(settings.landing_dir, day).glob("*.parquet")
    )


def _manual_runs(client: AirflowClient) -> int:
    """Runs triggered by hand (unpausing adds the scheduled run of the latest interval, waiting for its data)."""
    return sum(1 for run in client.runs(WAREHOUSE_DAG) if run.get("run_type") == "manual")


def _published(settings: Settings) -> dict[date, int]:
    with connect(settings, read_only=True) as con:
        rows = con.execute("select ds, count(*) from raw.events group by ds order by ds").fetchall()
    return {ds: n for ds, n in rows}


@pytest.fixture(scope="module")
def first_four(world: World) -> tuple[int, str]:
    runs_before = _manual_runs(world.client)
    out_buffer = io.StringIO()
    with contextlib.redirect_stdout(out_buffer):
        code = main(["backfill", "--from", DAYS[0].isoformat(), "--to", DAYS[3].isoformat()])
    out = out_buffer.getvalue()
    print(out)
    assert _manual_runs(world.client) == runs_before + 1, "one run for the range"
    return code, out


def test_a_range_is_one_run_with_progress_per_day(first_four: tuple[int, str]) -> None:
    code, out = first_four
    assert code == 0, out
    for day in DAYS[:4]:
        assert f"land: staged ds={day}" in out, out
        assert f"ds={day} audited" in out, out
    assert out.count("transform.dbt_build: success") == 1


def test_every_landed_row_is_published_and_the_marts_equal_day_by_day_bare_runs(
    world: World, first_four: tuple[int, str]
) -> None:
    assert _published(world.settings) == {d: _landed(world.settings, d) for d in DAYS[:4]}
    for day in DAYS[:4]:
        stage_and_audit(world.bare, [day], run_id=f"bare-{day}")
        build_marts(world.bare)
    ours, bare = warehouse_checksums(world.settings), warehouse_checksums(world.bare)
    # raw.events records each row's landing file, whose path is each home's own: compared by day above
    del ours["raw.events"], bare["raw.events"]
    assert ours == bare


def test_a_refused_day_in_a_range_is_refused_alone(
    world: World, first_four: tuple[int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["backfill", "--from", DAYS[4].isoformat(), "--to", DAYS[5].isoformat()])
    captured = capsys.readouterr()
    assert code == 1
    assert "audit: failed" in captured.out
    assert "upstream_failed" not in captured.out, "the tasks that did not run are counted, not listed"
    # the task that failed, not the ~20 that did not run after it
    assert re.search(r"failed: audit \(\d+ tasks after it did not run\);", captured.err), captured.err
    published = _published(world.settings)
    assert DAYS[4] not in published
    assert published[DAYS[5]] == _landed(world.settings, DAYS[5])
    with connect(world.settings, read_only=True) as con:
        leaked = con.execute(
            "select count(*) from analytics.fct_engagements where ds = ?", [DAYS[4]]
        ).fetchone()
    assert leaked == (0,)


def test_a_reversed_range_is_refused_before_anything_runs(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    runs_before = _manual_runs(world.client)
    assert main(["backfill", "--from", DAYS[3].isoformat(), "--to", DAYS[0].isoformat()]) == 2
    assert "is before --from" in capsys.readouterr().err
    assert _manual_runs(world.client) == runs_before


def test_clear_by_day_finds_the_range_run_that_processed_it(
    world: World, first_four: tuple[int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/runbooks/recsys_warehouse.md: `recflow clear DAG -t … -s D -e D`, where D was processed by
    `recflow backfill` (one run, no logical date): the run is the one the backfill printed."""
    code, out = first_four
    backfill_run = re.search(rf"{WAREHOUSE_DAG} run (\S+): {DAYS[0]}\.\.{DAYS[3]}", out)
    assert code == 0 and backfill_run, out
    capsys.readouterr()
    day = DAYS[1].isoformat()
    assert main(["clear", WAREHOUSE_DAG, "-t", "^audit$", "-s", day, "-e", day, "-d", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"run {backfill_run.group(1)} (success): would clear audit" in printed, printed
    assert f"ds={DAYS[0]}..{DAYS[3]} (4 days)" in printed, printed
    # the same run named by its id (docs/runbooks/recsys_train_and_publish.md's `--run RUN_ID`), read
    # from Airflow by id rather than from the list of recent runs
    assert (
        main(["clear", WAREHOUSE_DAG, "-t", "^audit$", "-d", "--run", backfill_run.group(1), "--dry-run"])
        == 0
    )
    assert f"run {backfill_run.group(1)} (success): would clear audit" in capsys.readouterr().out


def test_params_the_dag_refuses_are_one_line_and_make_no_run(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI refuses a share out of bounds itself; a conf the DAG's params refuse all the same (one
    sent past the CLI's check, or to a DAG whose params are stricter) is Airflow's one-line refusal."""
    runs_before = _manual_runs(world.client)
    day = DAYS[0].isoformat()
    with pytest.raises(SystemExit) as refused:
        main(["backfill", "--from", day, "--to", day, "--max-quarantine-share", "1.5"])
    assert refused.value.code == 2
    assert "1.5 is not a share between 0 and 1" in capsys.readouterr().err
    with pytest.raises(ConfigError) as by_airflow:
        backfill_days(world.client, DAYS[0], DAYS[0], extra={"max_quarantine_share": 1.5})
    error = str(by_airflow.value)
    assert "refused the run" in error and "max_quarantine_share" in error and "1.5" in error, error
    assert _manual_runs(world.client) == runs_before


class _Said(Exception):
    """Raised by the test's echo once the line it waits for was printed."""


def test_a_range_that_has_not_landed_says_what_it_waits_for(world: World) -> None:
    """The README's backfill on days not landed yet: the sensor reschedules itself for hours, and the
    command used to print its header and then nothing; it says what the run waits for (the echo stops the test at that line)."""
    missing = DAYS[-1] + timedelta(days=30)
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if "wait_for_landing: waiting for" in line:
            raise _Said

    with pytest.raises(_Said):
        backfill_days(world.client, missing, missing, echo=echo, timeout=300)
    run_id = lines[0].split(" run ", 1)[1].split(": ", 1)[0]
    world.client.delete_run(WAREHOUSE_DAG, run_id)
    expected = str(partition_dir(world.settings.landing_dir, missing) / "_SUCCESS")
    assert expected in lines[-1] and "Landing late" in lines[-1], lines
