"""Trust under faults, end to end, through the real scheduler.

Five days of synthetic events; day 3 has 0.5% rows with a null ``user_id``, day 4 has 5%.

- days 1-3 run as one backfill with three runs at once: they succeed, day 3 with exactly
  its bad rows quarantined, and the marts equal those of three serial bare runs;
- clearing day 3's run leaves the raw, quarantine and mart tables with the content
  checksums the 3-day backfill left;
- a champion is trained and published from them; training again on the same snapshot
  reuses the job and publishes nothing;
- days 4-5 run next: day 4 is refused (an incident names the column, no asset event,
  nothing of it reaches the marts, the champion stays), day 5 succeeds;
- for every day, accepted + quarantined = landed;
- once day 4's export is fixed upstream, the runbook's command (`recflow clear recsys_warehouse
  -t '^land$' -s D -e D -d`) runs the day again and publishes all of it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recflow.cli import main
from recflow.core.config import Settings
from recflow.core.names import TRAINING_DAG, WAREHOUSE_DAG
from recflow.ingest.contract import partition_dir
from recflow.ingest.days import stage_and_audit
from recflow.producers.generate import GeneratorConfig, generate, write_partition
from recflow.registry import MlflowRegistry
from recflow.stack.api import AirflowClient, wait_for_dags
from recflow.stack.demo import (
    close_backfill,
    setup,
    wait_for_train_run,
    wait_for_warehouse_runs,
    warehouse_checksums,
)
from recflow.stack.services import running_airflow
from recflow.warehouse import connect
from tests.integration.conftest import build_marts

pytestmark = pytest.mark.e2e

START = date(2026, 2, 1)
DAYS = [START + timedelta(days=i) for i in range(5)]
CFG = GeneratorConfig(start=START, days=5, users=200, pins=150, topics=6, seed=5)
MODEL = "recsys-faults"
MARTS = (
    "analytics.fct_engagements",
    "analytics.dim_users",
    "analytics.dim_pins",
    "analytics.training_interactions",
)
TIMEOUT = 900.0


def _null_user_ids(settings: Settings, day: date, every: int) -> list[int]:
    """Set ``user_id`` to null on every ``every``-th row of the day; return those rows."""
    path = partition_dir(settings.landing_dir, day) / "part-00000.parquet"
    table = pq.read_table(path)
    rows = list(range(every // 2, table.num_rows, every))
    users = table.column("user_id").to_pylist()
    for i in rows:
        users[i] = None
    column = table.schema.get_field_index("user_id")
    write_partition(path.parent, [table.set_column(column, "user_id", pa.array(users, pa.string()))])
    return rows


@dataclass
class World:
    settings: Settings
    client: AirflowClient
    bad_rows: dict[date, list[int]]
    runs: dict[date, dict[str, Any]]
    originals: Path
    """Day 4's export as the producer first wrote it, before rows were broken: its fix upstream."""


def _since() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=1)


def _backfill(world: World, first: date, last: date, *, at_once: int) -> dict[date, dict[str, Any]]:
    for earlier in world.client.backfills(WAREHOUSE_DAG):
        if earlier.get("completed_at") is None:
            close_backfill(world.client, earlier["id"])
    since = _since()
    world.client.backfill(
        WAREHOUSE_DAG, first.isoformat(), last.isoformat(), reprocess="completed", max_active_runs=at_once
    )
    days = [d for d in DAYS if first <= d <= last]
    runs = wait_for_warehouse_runs(world.client, days, since, print, TIMEOUT, fail_fast=False)
    world.runs.update(runs)
    return runs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_HOME", str(root / "home"))
        mp.setenv("RECFLOW_MODEL_NAME", MODEL)
        mp.setenv("RECFLOW_GATE_MIN_HR_AT_10", "0.05")
        mp.setenv("RECFLOW_GATE_MIN_NDCG_AT_10", "0.02")
        settings = Settings.from_env()
        generate(settings.landing_dir, CFG)
        originals = root / "originals"
        shutil.copytree(partition_dir(settings.landing_dir, DAYS[3]), originals)
        bad = {
            DAYS[2]: _null_user_ids(settings, DAYS[2], 200),
            DAYS[3]: _null_user_ids(settings, DAYS[3], 20),
        }
        setup(settings, echo=print)
        with running_airflow(settings) as client:
            wait_for_dags(client, [WAREHOUSE_DAG, TRAINING_DAG])
            client.set_paused(TRAINING_DAG, True)
            client.set_paused(WAREHOUSE_DAG, False)
            yield World(settings, client, bad, {}, originals)
            client.set_paused(WAREHOUSE_DAG, True)


@pytest.fixture(scope="module")
def first_three(world: World) -> dict[str, str]:
    runs = _backfill(world, DAYS[0], DAYS[2], at_once=3)
    assert [runs[d]["state"] for d in DAYS[:3]] == ["success"] * 3
    return warehouse_checksums(world.settings)


def _audit(settings: Settings) -> dict[date, tuple[int, int, int, str]]:
    with connect(settings, read_only=True) as con:
        rows = con.execute(
            """
            select ds, landed, accepted, quarantined, verdict from (
                select *, row_number() over (partition by ds order by audited_at desc) as latest
                from quality.partition_audit
            ) where latest = 1 order by ds
            """
        ).fetchall()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3]), str(r[4])) for r in rows}


def test_three_concurrent_days_equal_three_serial_bare_runs(
    world: World, first_three: dict[str, str], tmp_path: Path
) -> None:
    serial = Settings.from_env({"RECFLOW_HOME": str(tmp_path / "serial")})
    generate(serial.landing_dir, CFG)
    _null_user_ids(serial, DAYS[2], 200)
    for day in DAYS[:3]:
        stage_and_audit(serial, [day], run_id=f"serial-{day}")
    build_marts(serial)
    assert warehouse_checksums(serial, MARTS) == {t: first_three[t] for t in MARTS}


def test_a_day_with_few_bad_rows_succeeds_with_exactly_those_quarantined(
    world: World, first_three: dict[str, str]
) -> None:
    day = DAYS[2]
    with connect(world.settings, read_only=True) as con:
        kept = con.execute(
            "select source_row, broken_rules, run_id from quality.quarantine_events where ds = ? order by 1",
            [day],
        ).fetchall()
        in_marts = con.execute(
            "select count(*) from analytics.fct_engagements where ds = ? and user_id is null", [day]
        ).fetchone()
    assert [r[0] for r in kept] == world.bad_rows[day]
    assert all(r[1] == ["user_id_missing"] and r[2] == world.runs[day]["dag_run_id"] for r in kept)
    assert in_marts == (0,)
    landed, accepted, quarantined, verdict = _audit(world.settings)[day]
    assert 0.004 < quarantined / landed < 0.006
    assert (verdict, accepted + quarantined) == ("published", landed)


@pytest.fixture(scope="module")
def rerun(world: World, first_three: dict[str, str]) -> dict[str, str]:
    """Checksums after clearing day 3's run (days 1-3 were one 3-day backfill)."""
    since = _since()
    world.client.clear_run(WAREHOUSE_DAG, world.runs[DAYS[2]]["dag_run_id"])
    again = wait_for_warehouse_runs(world.client, [DAYS[2]], since, print, TIMEOUT, fail_fast=False)
    assert again[DAYS[2]]["state"] == "success"
    return warehouse_checksums(world.settings)


def test_a_cleared_run_changes_no_checksum_of_the_backfill(
    first_three: dict[str, str], rerun: dict[str, str]
) -> None:
    """The 3-day backfill, then a rerun (clear) of its last day: raw, quarantine and marts identical."""
    assert rerun == first_three


def _train(world: World, conf: dict[str, Any]) -> dict[str, Any]:
    since = _since()
    world.client.trigger(TRAINING_DAG, conf)
    run = wait_for_train_run(world.client, since, print, TIMEOUT)
    assert run["state"] == "success"
    return run


@pytest.fixture(scope="module")
def champion(world: World, rerun: dict[str, str]) -> int:
    world.client.set_paused(TRAINING_DAG, False)
    _train(world, {"epochs": 3})
    info = MlflowRegistry(world.settings).get_by_alias(MODEL)
    assert info is not None
    jobs = sorted(p.name for p in world.settings.jobs_dir.iterdir())
    again = _train(world, {"epochs": 3})
    gate = world.client.xcom(TRAINING_DAG, again["dag_run_id"], "gate")
    world.client.set_paused(TRAINING_DAG, True)
    assert gate["reason"].startswith("not promoted: the challenger is the current champion"), gate
    assert sorted(p.name for p in world.settings.jobs_dir.iterdir()) == jobs, "the job is reused"
    assert [v.version for v in MlflowRegistry(world.settings).list_versions(MODEL)] == [info.version]
    return info.version


@pytest.fixture(scope="module")
def last_two(world: World, champion: int) -> dict[str, str]:
    runs = _backfill(world, DAYS[3], DAYS[4], at_once=1)
    assert [runs[d]["state"] for d in DAYS[3:]] == ["failed", "success"]
    return warehouse_checksums(world.settings)


def test_a_refused_day_is_an_incident_that_names_the_column(
    world: World, last_two: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["incidents", "list", "--json", "--dag", WAREHOUSE_DAG]) == 0
    incidents = json.loads(capsys.readouterr().out)
    refused = [i for i in incidents if i["run_id"] == world.runs[DAYS[3]]["dag_run_id"]]
    assert len(refused) == 1, incidents
    incident = refused[0]
    assert (incident["task_id"], incident["kind"], incident["check"]) == ("audit", "data", "quarantine_share")
    assert incident["columns"] == ["user_id"]
    assert "user_id_missing" in incident["root_cause"]
    assert "quality.quarantine_events where ds = '2026-02-04'" in incident["evidence"]
    assert incident["runbook"].endswith("recsys_warehouse.md#partition-refused")


def test_a_refused_day_reaches_nothing_downstream_and_the_next_day_succeeds(
    world: World, last_two: dict[str, str], champion: int
) -> None:
    refused, after = world.runs[DAYS[3]], world.runs[DAYS[4]]
    assert after["state"] == "success"
    assert world.client.asset_events(WAREHOUSE_DAG, refused["dag_run_id"]) == []
    assert world.client.asset_events(WAREHOUSE_DAG, after["dag_run_id"]), "the clean day updates the asset"
    states = {
        t["task_id"]: t["state"] for t in world.client.task_instances(WAREHOUSE_DAG, refused["dag_run_id"])
    }
    assert states["audit"] == "failed"
    assert states["check_marts"] == "upstream_failed"
    with connect(world.settings, read_only=True) as con:
        leaked = con.execute(
            "select count(*) from analytics.fct_engagements where ds = ?", [DAYS[3]]
        ).fetchone()
        raw = con.execute("select count(*) from raw.events where ds = ?", [DAYS[3]]).fetchone()
    assert leaked == (0,) and raw == (0,)
    info = MlflowRegistry(world.settings).get_by_alias(MODEL)
    assert info is not None and info.version == champion, "the champion is unchanged"


def test_accepted_plus_quarantined_is_landed_for_every_day(world: World, last_two: dict[str, str]) -> None:
    audit = _audit(world.settings)
    assert sorted(audit) == DAYS
    for day, (landed, accepted, quarantined, _) in audit.items():
        assert accepted + quarantined == landed, day
    assert audit[DAYS[3]][3] == "refused"
    assert audit[DAYS[3]][2] == len(world.bad_rows[DAYS[3]])


def test_the_runbooks_clear_command_publishes_a_refused_day_once_it_is_fixed(
    world: World, last_two: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/runbooks/recsys_warehouse.md#partition-refused: fix the export upstream, then
    `recflow clear recsys_warehouse -t '^land$' -s D -e D -d` (Airflow's own `tasks clear -t`
    matches a substring, so the regex there clears nothing)."""
    day = DAYS[3]
    partition = partition_dir(world.settings.landing_dir, day)
    shutil.rmtree(partition)
    shutil.copytree(world.originals, partition)  # the producer re-exports the day, _SUCCESS last
    landed = sum(pq.read_metadata(p).num_rows for p in partition.glob("*.parquet"))
    since = _since()
    capsys.readouterr()
    command = ["clear", WAREHOUSE_DAG, "-t", "^land$", "-s", day.isoformat(), "-e", day.isoformat(), "-d"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert f"ds={day}" in printed and "audit" in printed and "land" in printed, printed
    again = wait_for_warehouse_runs(world.client, [day], since, print, TIMEOUT, fail_fast=False)
    assert again[day]["state"] == "success"
    with connect(world.settings, read_only=True) as con:
        published = con.execute("select count(*) from raw.events where ds = ?", [day]).fetchone()
        in_marts = con.execute(
            "select count(*) from analytics.fct_engagements where ds = ?", [day]
        ).fetchone()
    assert published == (landed,), "every row of the fixed export is published"
    assert in_marts is not None and in_marts[0] > 0
    assert _audit(world.settings)[day][3] == "published"


def test_clear_refuses_a_pattern_that_matches_no_task(
    world: World, last_two: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    day = DAYS[3].isoformat()
    assert main(["clear", WAREHOUSE_DAG, "-t", "^lands$", "-s", day, "-d"]) == 2
    error = capsys.readouterr().err
    assert "matches no task" in error and "wait_for_landing" in error, error
