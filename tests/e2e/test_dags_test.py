"""The README's `recflow airflow dags test` on a fresh home: both DAGs, every task in one process.

`airflow dags test` runs each task in the calling process, so the warehouse DAG's dbt (DuckDB
in-process, in the build task) and the Great Expectations checks share one process: a
configuration that only a scheduler's one-process-per-task hid. The days are the bad-input
case the faults suite runs through the scheduler: a day with 0.5% null `user_id`
(quarantined exactly, published), a day with 5% (refused, an incident, no retry), then a
clean day (published); then the training DAG on what was published.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from recflow.core.config import Settings, subprocess_env
from recflow.core.names import TRAINING_DAG, WAREHOUSE_DAG
from recflow.ingest.contract import partition_dir
from recflow.oncall.store import IncidentStore
from recflow.producers.generate import GeneratorConfig, generate
from recflow.registry import MlflowRegistry
from recflow.warehouse import connect
from tests.e2e.test_faults import _null_user_ids

pytestmark = pytest.mark.e2e

START = date(2026, 3, 1)
DAYS = [START + timedelta(days=i) for i in range(3)]
CFG = GeneratorConfig(start=START, days=3, users=200, pins=150, topics=6, seed=11)
MODEL = "recsys-dags-test"
RECFLOW = str(Path(sys.executable).parent / "recflow")


@dataclass
class Home:
    settings: Settings
    env: dict[str, str]
    bad_rows: dict[date, list[int]]
    outcomes: dict[date, subprocess.CompletedProcess[str]]


def _recflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RECFLOW, *args], env=env, capture_output=True, text=True, timeout=600, check=False)


def _landed(settings: Settings, day: date) -> int:
    return sum(
        pq.read_metadata(p).num_rows for p in partition_dir(settings.landing_dir, day).glob("*.parquet")
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    root = tmp_path_factory.mktemp("dags-test")
    env = subprocess_env(
        {
            "RECFLOW_HOME": str(root / "home"),
            "RECFLOW_MODEL_NAME": MODEL,
            "RECFLOW_GATE_MIN_HR_AT_10": "0.05",
            "RECFLOW_GATE_MIN_NDCG_AT_10": "0.02",
        }
    )
    settings = Settings.from_env(env)
    generate(settings.landing_dir, CFG)
    bad = {DAYS[0]: _null_user_ids(settings, DAYS[0], 200), DAYS[1]: _null_user_ids(settings, DAYS[1], 20)}
    setup = _recflow(env, "setup")
    assert setup.returncode == 0, setup.stderr[-3000:]
    outcomes = {day: _recflow(env, "airflow", "dags", "test", WAREHOUSE_DAG, day.isoformat()) for day in DAYS}
    yield Home(settings, env, bad, outcomes)


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stdout + result.stderr)[-4000:]


def test_the_slightly_bad_and_the_clean_days_succeed(home: Home) -> None:
    for day in (DAYS[0], DAYS[2]):
        result = home.outcomes[day]
        assert result.returncode == 0, f"ds={day}:\n{_tail(result)}"
    with connect(home.settings, read_only=True) as con:
        for day in (DAYS[0], DAYS[2]):
            published = con.execute("select count(*) from raw.events where ds = ?", [day]).fetchone()
            kept = [
                r[0]
                for r in con.execute(
                    "select source_row from quality.quarantine_events where ds = ? order by 1", [day]
                ).fetchall()
            ]
            assert kept == home.bad_rows.get(day, []), day
            assert published == (_landed(home.settings, day) - len(kept),), day
            marts = con.execute(
                "select count(*) from analytics.fct_engagements where ds = ?", [day]
            ).fetchone()
            assert marts is not None and marts[0] > 0, day


def test_the_refused_day_fails_once_with_an_incident_and_reaches_nothing(home: Home) -> None:
    day = DAYS[1]
    result = home.outcomes[day]
    output = result.stdout + result.stderr
    assert result.returncode != 0, _tail(result)
    assert "PartitionRefused" in output
    assert "try 2" not in output, "a data verdict is not retried"
    with connect(home.settings, read_only=True) as con:
        raw = con.execute("select count(*) from raw.events where ds = ?", [day]).fetchone()
        marts = con.execute("select count(*) from analytics.fct_engagements where ds = ?", [day]).fetchone()
    assert raw == (0,) and marts == (0,)
    incidents = [i for i in IncidentStore.of(home.settings).find() if i.task_id == "audit"]
    assert len(incidents) == 1, incidents
    assert incidents[0].kind == "data" and list(incidents[0].columns) == ["user_id"]


def test_the_training_dag_trains_and_publishes_what_the_warehouse_published(home: Home) -> None:
    result = _recflow(home.env, "airflow", "dags", "test", TRAINING_DAG)
    assert result.returncode == 0, _tail(result)
    assert "try 2" not in result.stdout + result.stderr
    champion = MlflowRegistry(home.settings).get_by_alias(MODEL)
    assert champion is not None and champion.complete


ELSEWHERE = {
    ("generate",): "tests/unit/test_store_ownership.py runs it through the CLI",
    ("airflow", "dags", "test"): "this module",
    ("clear",): "tests/e2e/test_faults.py, after a refused day is fixed",
    ("backfill",): "tests/e2e/test_backfill.py, through a running scheduler",
    (
        "mlflow",
        "ui",
    ): "a server that runs until Ctrl-C; tests/e2e/test_on_kill.py checks what the embedded Airflow binds",
}
"""README commands run by another test, and why there."""


def _readme_commands() -> list[list[str]]:
    from tests.unit.test_documented_commands import ROOT, _shell_lines

    return [shlex.split(line, comments=True)[1:] for line in _shell_lines((ROOT / "README.md").read_text())]


def test_the_readmes_other_commands_do_what_it_says_on_this_home(
    home: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each command of README.md's list, as written there (its model name, version, incident and
    folder swapped for this home's), on the home the `dags test` runs above made."""
    from recflow.cli import main

    champion = MlflowRegistry(home.settings).get_by_alias(MODEL)
    incident = IncidentStore.of(home.settings).find()[-1]
    assert champion is not None
    out_dir = tmp_path / "champion"
    swap = {
        "recsys-demo": MODEL,
        "3": str(champion.version),
        "12": str(incident.id),
        "/tmp/champion": str(out_dir),
    }
    ran: list[str] = []
    for words in _readme_commands():
        if any(tuple(words[: len(k)]) == k for k in ELSEWHERE):
            continue
        argv = [swap.get(w, w) for w in words]
        if argv[0] == "airflow":  # Airflow's CLI, with this home's settings, in its own process
            result = _recflow(home.env, *argv)
            assert result.returncode == 0, f"{' '.join(words)}:\n{_tail(result)}"
        else:
            capsys.readouterr()
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("RECFLOW_HOME", home.env["RECFLOW_HOME"])
                mp.setenv("RECFLOW_MODEL_NAME", MODEL)
                assert main(argv) == 0, " ".join(words)
            out = capsys.readouterr().out
            if argv[:2] == ["models", "list"]:
                assert [v["version"] for v in json.loads(out)] == [champion.version]
            if argv[:2] == ["models", "export"]:
                assert any(out_dir.rglob("saved_model.pb")), out
            if argv[:2] == ["models", "show"]:
                assert f"{MODEL} version {champion.version}" in out and "metrics" in out, out
            if argv[:2] == ["incidents", "show"]:
                assert "audit" in out and "user_id" in out, out
            if argv == ["claims"]:  # every run's audit ended: each released its days
                assert out == "no day is claimed: no run is between its land and its audit\n", out
            if argv[0] == "sql":  # the quarantine's counts, against DuckDB's own reading of the file
                with duckdb.connect(str(home.settings.duckdb_path), read_only=True) as con:
                    kept = con.execute(
                        "select count(*) from quality.quarantine_events group by ds, verdict order by ds"
                    ).fetchall()
                assert [int(line.split()[-1]) for line in out.splitlines()[2:-1]] == [n for (n,) in kept], out
                assert kept and out.splitlines()[-1] == f"({len(kept)} row{'s' if len(kept) > 1 else ''})"
        ran.append(" ".join(words[:2]))
    assert {"models list", "models export", "models promote", "incidents show"} <= set(ran)
    assert any(command.startswith("sql ") for command in ran)
