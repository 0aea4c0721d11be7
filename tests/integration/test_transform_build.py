"""One ``dbt build`` of the project (``recflow.transform.run_build``) on a copy of the tiny warehouse:
every node's result is handed over, the same as dbt's own ``run_results.json`` says; a model that
fails and a test that fails are reported on their nodes, and what depends on them is skipped.

The faults are made in the warehouse the way they happen: a column added to the incremental mart's
table under dbt (its ``on_schema_change: fail`` refuses the insert), a source column renamed, and rows of a past day broken where
the incremental build does not rewrite them (its ``not_null`` test finds them, counted here in SQL).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest

from recflow.core.config import PROJECT_ROOT, Settings, subprocess_env
from recflow.transform import NodeResult, node_tasks, run_build, verdict
from recflow.warehouse import connect
from tests.duckdb_files import holding
from tests.integration.conftest import TINY, warehouse  # noqa: F401 - a pytest fixture

FCT = "model.recflow.fct_engagements"
STG = "model.recflow.stg_events"
WEIGHT_TEST = "not_null_fct_engagements_weight"


@pytest.fixture
def copy(warehouse: Settings, tmp_path: Path) -> Settings:  # noqa: F811
    """A home of its own on a copy of the session's warehouse, which this test breaks."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse.duckdb_path, path)
    return Settings.from_env({"RECFLOW_HOME": str(tmp_path / "home"), "RECFLOW_WAREHOUSE_PATH": str(path)})


def _build(settings: Settings) -> tuple[dict[str, NodeResult], set[str]]:
    results: dict[str, NodeResult] = {}
    started: set[str] = set()
    run_build(settings, on_result=lambda r: results.__setitem__(r.unique_id, r), on_start=started.add)
    return results, started


def _run_results(settings: Settings) -> dict[str, dict[str, Any]]:
    """dbt's own record of the invocation, written by dbt, not by recflow."""
    data = json.loads((settings.dbt_target_dir / "run_results.json").read_text())
    return {r["unique_id"]: r for r in data["results"]}


def test_a_clean_build_reports_every_node_as_dbt_records_it(copy: Settings) -> None:
    results, started = _build(copy)
    recorded = _run_results(copy)
    assert set(results) == set(recorded) == started
    assert {uid: r.status for uid, r in results.items()} == {uid: r["status"] for uid, r in recorded.items()}
    assert not any(uid.startswith("unit_test.") for uid in results)
    assert all(r.status in ("success", "pass") for r in results.values())
    tasks = node_tasks(copy.dbt_manifest_path)
    assert {verdict(t.nodes, results).state for t in tasks} == {"success"}


def test_a_build_waits_for_a_read_that_holds_the_file_for_a_moment(copy: Settings) -> None:
    """dbt opened the file while another process held it and the build task failed its try with no node
    run; it now waits for the hold to end and builds every node."""
    with holding(copy.duckdb_path) as holder:
        assert holder.stdin is not None
        stdin: IO[str] = holder.stdin

        class _ReleaseWhenWaited(logging.Handler):  # the read ends once the build has met it and waits
            def emit(self, record: logging.LogRecord) -> None:
                if "is held by another process" in record.getMessage() and not stdin.closed:
                    stdin.close()

        waits = logging.getLogger("recflow.warehouse.duckdb")
        handler = _ReleaseWhenWaited()
        waits.addHandler(handler)
        try:
            results, _ = _build(copy)
        finally:
            waits.removeHandler(handler)
    assert set(results) == set(_run_results(copy)) and results
    assert all(r.status in ("success", "pass") for r in results.values())


def test_a_model_that_fails_fails_its_task_alone(copy: Settings) -> None:
    with connect(copy) as con:
        con.execute("alter table analytics.fct_engagements add column tampered integer")
    results, _ = _build(copy)
    assert results[FCT].status == "error"
    assert "out of sync" in results[FCT].message
    by_name = {t.name: t for t in node_tasks(copy.dbt_manifest_path)}
    failed = verdict(by_name["fct_engagements"].nodes, results)
    assert failed.state == "failed" and [r.unique_id for r in failed.failed] == [FCT]
    others = {
        t.name: verdict(t.nodes, results).state for t in by_name.values() if t.name != "fct_engagements"
    }
    # only the tests that read it are skipped: nothing else depends on it
    assert {n for n, state in others.items() if state != "success"} == {
        t.name for t in by_name.values() if t.kind == "test" and any("fct_engagements" in n for n in t.nodes)
    }


def test_a_changed_source_column_fails_its_staging_model_and_skips_everything_after_it(
    copy: Settings,
) -> None:
    with connect(copy) as con:
        con.execute("alter table raw.events rename column event_type to kind")
    results, _ = _build(copy)
    assert results[STG].status == "error"
    assert "event_type" in results[STG].message
    by_name = {t.name: t for t in node_tasks(copy.dbt_manifest_path)}
    assert verdict(by_name["stg_events"].nodes, results).state == "failed"
    for downstream in ("fct_engagements", "int_user_pin_engagement", "dim_users", "training_interactions"):
        assert verdict(by_name[downstream].nodes, results).state == "skipped", downstream
    assert verdict(by_name["stg_pins"].nodes, results).state == "success"


def test_a_test_that_fails_fails_its_models_task_with_the_rows_it_found(copy: Settings) -> None:
    with connect(copy) as con:
        con.execute("update analytics.fct_engagements set weight = null where ds = ?", [TINY.start])
        broken = con.execute("select count(*) from analytics.fct_engagements where weight is null").fetchone()
    assert broken is not None and broken[0] > 0
    results, _ = _build(copy)
    failing = [r for r in results.values() if r.status == "fail"]
    assert [r.unique_id.split(".")[2] for r in failing] == [WEIGHT_TEST]
    assert failing[0].failures == broken[0]
    fct = verdict(
        next(t for t in node_tasks(copy.dbt_manifest_path) if t.name == "fct_engagements").nodes, results
    )
    assert fct.state == "failed" and fct.failed == (failing[0],)
    assert results[FCT].status == "success"


def test_after_setups_parse_the_first_build_does_not_parse_the_project_again(copy: Settings) -> None:
    """`recflow setup` parses as the builds run dbt: dbt's own log of the first build says it had
    nothing to parse (a full parse is ~3 s of a day's build)."""
    from recflow.stack.demo import compile_dbt_manifest

    copy.home.mkdir(parents=True, exist_ok=True)
    compile_dbt_manifest(copy)
    log = copy.dbt_log_dir / "dbt.log"
    parsed = log.read_text()
    _build(copy)
    build_log = log.read_text()[len(parsed) :]
    assert "Nothing changed, skipping partial parsing" in build_log
    assert "Starting full parse" not in build_log
    assert json.loads(copy.dbt_manifest_path.read_text())["nodes"], "the DAG's manifest is in place"


_FORKED_AFTER_WARM_UP = """
import json, os, signal, sys, threading
from recflow.core.config import Settings
from recflow.transform.build import run_build, warm_dbt

settings = Settings.from_env()
warm_dbt(settings)
print(json.dumps({"threads": [t.name for t in threading.enumerate()]}), flush=True)
pid = os.fork()
if pid == 0:  # a task's process, forked from the warmed scheduler
    signal.alarm(120)
    from dbt_extractor import py_extract_from_source  # the static parser a changed model is parsed with
    refs = py_extract_from_source("select * from {{ ref('stg_events') }}")["refs"]
    results = {}
    run_build(settings, on_result=lambda r: results.__setitem__(r.unique_id, r.status))
    print(json.dumps({"refs": refs, "results": results}), flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _python(home: Settings, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter on ``home``, as a scheduler of that home starts; it must exit 0."""
    env = subprocess_env({"RECFLOW_HOME": str(home.home), "RECFLOW_WAREHOUSE_PATH": str(home.duckdb_path)})
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_a_build_forked_after_the_warm_up_runs_and_the_warm_up_touched_nothing(copy: Settings) -> None:
    """`airflow_local_settings` warms dbt in the scheduler before it forks tasks. The warm-up writes
    nothing the builds read (the home's dbt target folder and the project are as they were), leaves no
    thread behind, and a process forked after it parses with dbt's static parser (a native thread
    pool a fork does not copy: started in the parent, it hangs the child) and builds, with the
    results dbt itself records."""
    from recflow.stack.demo import compile_dbt_manifest

    copy.home.mkdir(parents=True, exist_ok=True)
    compile_dbt_manifest(copy)
    before = (_tree(copy.dbt_target_dir), _tree(copy.dbt_project_dir), copy.duckdb_path.stat().st_mtime_ns)
    _python(copy, _FORKED_AFTER_WARM_UP.split("pid = os.fork()", maxsplit=1)[0])
    assert (
        _tree(copy.dbt_target_dir),
        _tree(copy.dbt_project_dir),
        copy.duckdb_path.stat().st_mtime_ns,
    ) == before

    done = _python(copy, _FORKED_AFTER_WARM_UP)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines[0]["threads"] == ["MainThread"]
    assert lines[1]["refs"] == [{"name": "stg_events"}]
    assert lines[1]["results"] == {uid: r["status"] for uid, r in _run_results(copy).items()}


def test_a_scheduler_warms_dbt_once_however_often_its_local_settings_are_imported(copy: Settings) -> None:
    """Airflow imports ``plugins/airflow_local_settings.py`` as its local settings at a command's
    start, and its plugin manager imports the same file again, in the scheduler and in every task's
    process forked from it (whose sys.argv is still the scheduler's): dbt is warmed once, there."""
    copy.home.mkdir(parents=True, exist_ok=True)
    code = (
        "import os, runpy, sys\n"
        "sys.argv = ['airflow', 'scheduler']\n"
        "run = lambda: runpy.run_path('plugins/airflow_local_settings.py', run_name='airflow_local_settings')\n"
        "run(); run()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    run(); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    done = _python(copy, code)
    assert done.stderr.count("recflow: dbt warmed before forking tasks") == 1, done.stderr[-3000:]
    assert "dbt not warmed" not in done.stderr
