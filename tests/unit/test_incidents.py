"""Incidents: classification by type, the record, the store across processes, the CLI."""

from __future__ import annotations

import json
import multiprocessing
import re
import socket
import sqlite3
import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest

from recflow import cli
from recflow.core import errors
from recflow.core.config import PROJECT_ROOT, Settings
from recflow.oncall import incidents
from recflow.oncall.incidents import (
    TaskFailure,
    build_incident,
    classify,
    record_failure,
)
from recflow.oncall.record import Incident
from recflow.oncall.store import IncidentStore, parse_since

D = datetime(2026, 1, 3, tzinfo=UTC)
D1 = datetime(2026, 1, 4, tzinfo=UTC)
EVIDENCE = "select * from quality.quarantine_events where ds = '2026-01-03'"


def _refused() -> errors.PartitionRefused:
    return errors.PartitionRefused(
        "partition ds=2026-01-03 refused: 2.40% of rows quarantined\n(rule event_type_known: 240 rows)",
        check="quarantine_share",
        columns=["event_type", "event_ts"],
        observed="2.40% (240 of 10000 rows)",
        expected="at most 1.00%",
        evidence=EVIDENCE,
    )


def _warehouse_failure(error: BaseException | str | None, task_id: str = "audit", **kw: Any) -> TaskFailure:
    return TaskFailure(
        dag_id="recsys_warehouse",
        task_id=task_id,
        run_id="scheduled__2026-01-03T00:00:00+00:00",
        try_number=2,
        interval_start=D,
        interval_end=D1,
        error=error,
        days=(date(2026, 1, 3),),
        **kw,
    )


def _champion(name: str) -> str:
    return f"{name} version 3 stays champion"


# -- classification ------------------------------------------------------------------------------


def test_kinds_follow_the_error_type() -> None:
    """recflow's own classifier; Airflow's errors: tests/unit/airflow/test_classify.py."""
    assert classify(_refused()) == "data"
    assert classify(errors.ContractViolation("x", check="columns")) == "data"
    assert classify(errors.DataQualityError("x", report=None, check="suite")) == "data"
    assert (
        classify(errors.TrainingJobFailed("j", "Failed", "AlgorithmError: nan", "algorithm"))
        == "training_job"
    )
    assert classify(errors.ConfigError("RECFLOW_X='a' is not a number")) == "pipeline"
    assert classify(errors.LandingLate("no _SUCCESS")) == "pipeline"
    assert classify(KeyError("x")) == "infrastructure"
    assert classify(None) == "infrastructure"
    assert classify("a string") == "infrastructure"
    try:
        raise RuntimeError("audit refused the day") from _refused()
    except RuntimeError as wrapped:
        assert classify(wrapped) == "data"


def test_a_class_named_like_a_verdict_is_not_one() -> None:
    """By type, never by name."""
    impostor = type("PartitionRefused", (Exception,), {})("looks like one")
    assert classify(impostor) == "infrastructure"


# -- the record ----------------------------------------------------------------------------------


def test_a_data_verdict_becomes_a_complete_incident(settings: Settings) -> None:
    incident = build_incident(settings, _warehouse_failure(_refused()), champion=_champion)
    assert incident.kind == "data"
    assert incident.error_type == "PartitionRefused"
    assert incident.root_cause == (
        "PartitionRefused: partition ds=2026-01-03 refused: 2.40% of rows quarantined; "
        "(rule event_type_known: 240 rows)"
    )
    assert "\n" in incident.message and incident.message.startswith("PartitionRefused: partition")
    assert (incident.check, incident.columns) == ("quarantine_share", ("event_type", "event_ts"))
    assert (incident.observed, incident.expected, incident.evidence) == (
        "2.40% (240 of 10000 rows)",
        "at most 1.00%",
        EVIDENCE,
    )
    assert incident.runbook == "docs/runbooks/recsys_warehouse.md#partition-refused"
    assert "select * from quality.quarantine_events where ds = '2026-01-03'" in incident.what_to_do
    assert "-s 2026-01-03 -e 2026-01-03" in incident.what_to_do
    assert incident.blast_radius == {
        "stale_asset": "asset training_interactions is not updated for ds=2026-01-03: no training starts from it",
        "champion": "recsys-demo version 3 stays champion",
    }
    assert (incident.interval_start, incident.interval_end) == (
        "2026-01-03T00:00:00+00:00",
        "2026-01-04T00:00:00+00:00",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", incident.at)


def test_a_training_failure_says_no_model_is_published(settings: Settings) -> None:
    failure = TaskFailure(
        dag_id="recsys_train_and_publish",
        task_id="train",
        run_id="asset_triggered__x",
        try_number=3,
        error=errors.TrainingJobFailed(
            "recsys-train-abc", "Failed", "killed by SIGKILL, peak 7.9 GB", "killed"
        ),
        model_name="movielens-100k",
    )
    incident = build_incident(settings, failure, champion=_champion)
    assert incident.kind == "training_job"
    assert incident.runbook == "docs/runbooks/recsys_train_and_publish.md#job-killed"
    assert (
        incident.root_cause
        == "TrainingJobFailed: training job recsys-train-abc Failed: killed by SIGKILL, peak 7.9 GB"
    )
    assert (
        incident.blast_radius["stale_asset"]
        == "no new version of movielens-100k is published by run asset_triggered__x"
    )
    assert incident.blast_radius["champion"] == "movielens-100k version 3 stays champion"
    assert incident.check == "" and incident.columns == ()


def test_without_its_days_a_warehouse_incident_names_the_run(settings: Settings) -> None:
    """Days unknown (the run's params are refused): no interval, rather than one the run did not process."""
    failure = TaskFailure(
        "recsys_warehouse", "audit", "r1", 1, interval_start=D, interval_end=D1, error=_refused()
    )
    incident = build_incident(settings, failure, champion=_champion)
    assert "not updated for run r1:" in incident.blast_radius["stale_asset"]
    assert (incident.interval_start, incident.interval_end, incident.days) == (None, None, "")
    assert incident.what == "recsys_warehouse.audit failed (try 1, run r1)"
    assert "-s D -e D" in incident.what_to_do, "no day: the runbook's placeholder stays"


def test_a_run_of_several_days_fills_in_the_day_the_error_names(settings: Settings) -> None:
    """A backfill refused one of its days: the runbook's commands kept the placeholder D (the run has no
    one day), and its accept command a share that could not accept the day (0.05 for 5.14 %). The day, the
    least accepting share and the run that holds a claimed day come from the error."""
    days = tuple(date(2026, 1, d) for d in (4, 5, 6))
    refused = errors.PartitionRefused(
        "ds=2026-01-05 refused", check="quarantine_share", ds="2026-01-05", share_needed=0.06
    )
    failure = TaskFailure("recsys_warehouse", "audit", "backfill", 1, error=refused, days=days)
    what_to_do = build_incident(settings, failure, champion=_champion).what_to_do
    assert "-s 2026-01-05 -e 2026-01-05" in what_to_do
    assert "recflow backfill --from 2026-01-05 --to 2026-01-05 --max-quarantine-share 0.06" in what_to_do
    claimed = errors.DayClaimed("held", ds="2026-01-06", holder="manual__dead-run")
    failure = TaskFailure("recsys_warehouse", "land", "backfill", 1, error=claimed, days=days)
    incident = build_incident(settings, failure, champion=_champion)
    assert incident.runbook.endswith("#day-claimed")
    assert "recflow claims release --ds 2026-01-06 --run 'manual__dead-run'" in incident.what_to_do
    not_staged = errors.NotStaged("ds=2026-01-04 is not staged", ds="2026-01-04")
    failure = TaskFailure("recsys_warehouse", "audit", "backfill", 1, error=not_staged, days=days)
    incident = build_incident(settings, failure, champion=_champion)
    assert incident.runbook.endswith("#not-staged")
    assert "recflow clear recsys_warehouse -t '^land$' -d --run 'backfill'" in incident.what_to_do


def test_a_clear_command_names_the_failed_run_and_task(settings: Settings) -> None:
    """The runbooks' `--run RUN_ID` and `-t '^TASK$'` are the failed run and task: a later run may be the
    day's latest (clearing by day would rerun that one); a dbt node's task is cleared with its group
    (its build and the other node tasks report one build), any other task alone (a run id of
    Airflow's pattern holding a placeholder's name is filled in as it is)."""
    locked = duckdb.IOException('Could not set lock on file "recflow.duckdb": Conflicting lock')
    failure = TaskFailure(
        "recsys_warehouse",
        "transform.stg_events_model_build",
        "manual__2026-01-04T10:00:00+00:00",
        2,
        error=locked,
    )
    incident = build_incident(settings, failure, champion=_champion)
    assert incident.runbook.endswith("#warehouse-locked")
    assert (
        r"recflow clear recsys_warehouse -t '^transform\..*$' -d --run 'manual__2026-01-04T10:00:00+00:00'"
    ) in incident.what_to_do, "a node's task is cleared with the build and its other node tasks"
    stopped = errors.TrainingJobFailed("recsys-train-abc", "Stopped", "stopped by a person", "stopped")
    failure = TaskFailure("recsys_train_and_publish", "train", "asset_triggered__x", 1, error=stopped)
    incident = build_incident(settings, failure, champion=_champion)
    assert (
        "recflow clear recsys_train_and_publish -t '^train$' -d --run 'asset_triggered__x'"
        in incident.what_to_do
    )
    failure = TaskFailure(
        "recsys_warehouse", "land", "manual__rerun-N-TASK-D", 2, error=locked, days=(D.date(),)
    )
    incident = build_incident(settings, failure, champion=_champion)
    assert (
        "recflow clear recsys_warehouse -t '^land$' -d --run 'manual__rerun-N-TASK-D'" in incident.what_to_do
    )


def test_a_rollback_section_fills_in_the_model_name(settings: Settings) -> None:
    failure = TaskFailure(
        "recsys_train_and_publish", "evaluate", "r", 1, error=OSError("gone"), model_name="m1"
    )
    incident = build_incident(settings, failure, champion=_champion)
    assert incident.runbook.endswith("#evaluate-failed")
    assert "recflow models list --name m1 --json" in incident.what_to_do


def test_without_an_exception_the_incident_says_so(settings: Settings) -> None:
    incident = build_incident(settings, _warehouse_failure(None, task_id="land"), champion=_champion)
    assert incident.kind == "infrastructure"
    assert incident.error_type == ""
    assert incident.root_cause.startswith("the task ended without an exception")
    assert incident.runbook.endswith("#infrastructure")


def test_a_dbt_node_points_to_dbt_failed(settings: Settings) -> None:
    from recflow.airflow import classify as airflow

    error = errors.DbtNodeFailed(
        "model stg_events: model.recflow.stg_events error in the run's dbt build (transform.dbt_build): "
        "Database Error\n  syntax",
        node="stg_events",
        failed=["model.recflow.stg_events"],
    )
    failure = _warehouse_failure(error, task_id="transform.stg_events_model_build")
    incident = build_incident(settings, failure, champion=_champion, classifier=airflow.classify)
    assert (incident.kind, incident.runbook.rpartition("#")[2]) == ("transform", "dbt-failed")
    assert incident.root_cause == (
        "DbtNodeFailed: model stg_events: model.recflow.stg_events error in the run's dbt build "
        "(transform.dbt_build): Database Error; syntax"
    )


def test_the_root_cause_is_one_bounded_line() -> None:
    assert incidents.one_line("a\n\n  b   c\n") == "a; b c"
    long = incidents.one_line("x" * 1000)
    assert len(long) == incidents.ROOT_CAUSE_CHARS and long.endswith("…")


def test_the_on_call_line_and_the_notification(settings: Settings) -> None:
    incident = record_failure(settings, _warehouse_failure(_refused()), champion=_champion)
    line = incident.on_call_line()
    assert line.startswith(
        "ON-CALL: recsys_warehouse.audit failed for ds=2026-01-03 (try 2, run scheduled__2026-01-03T00:00:00+00:00) "
        "| why: PartitionRefused: partition ds=2026-01-03 refused"
    )
    assert "| what to do: look at the refused rows" in line
    assert line.endswith(
        "| runbook: docs/runbooks/recsys_warehouse.md#partition-refused | incident: 1 (recflow incidents show 1)"
    )
    assert "\n" not in line
    assert incident.title == "[recflow] recsys_warehouse.audit failed"
    body = incident.notification_body().splitlines()
    assert body[0] == incident.root_cause
    assert body[1].startswith("What to do: ") and body[2].startswith("Runbook: ")
    assert body[3] == "Incident: 1 (recflow incidents show 1)"


# -- the champion --------------------------------------------------------------------------------


class _Info:
    version = 4


def _fake_registry(monkeypatch: pytest.MonkeyPatch, settings: Settings, get_by_alias: Any) -> None:
    import recflow.registry

    db = Path(settings.mlflow_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    db.touch()

    class FakeRegistry:
        def __init__(self, s: Settings) -> None:
            pass

        def get_by_alias(self, name: str) -> Any:
            return get_by_alias(name)

    monkeypatch.setattr(recflow.registry, "MlflowRegistry", FakeRegistry)


def test_the_champion_is_read_from_the_registry(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert incidents.champion_of(settings, "m").startswith("none: no model registry yet")
    _fake_registry(monkeypatch, settings, lambda name: _Info())
    assert incidents.champion_of(settings, "m") == "m version 4 stays champion"
    _fake_registry(monkeypatch, settings, lambda name: None)
    assert incidents.champion_of(settings, "m") == "none: m has no champion"


def test_an_unreadable_registry_is_unknown_not_an_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(name: str) -> Any:
        raise sqlite3.DatabaseError("file is not a database")

    _fake_registry(monkeypatch, settings, broken)
    assert incidents.champion_of(settings, "m") == (
        "unknown: the registry could not be read (DatabaseError: file is not a database)"
    )

    def slow(name: str) -> Any:
        time.sleep(2)
        return _Info()

    _fake_registry(monkeypatch, settings, slow)
    assert incidents.champion_of(settings, "m", timeout_s=0.1).startswith(
        "unknown: the registry did not answer within 0.1 s"
    )


# -- the store -----------------------------------------------------------------------------------


def test_the_store_keeps_incidents_across_instances_in_wal_mode(settings: Settings) -> None:
    first = record_failure(settings, _warehouse_failure(_refused()), champion=_champion)
    second = record_failure(
        settings,
        TaskFailure("recsys_train_and_publish", "publish", "r2", 1, error=errors.RegistryError("no")),
        champion=_champion,
    )
    assert (first.id, second.id) == (1, 2)
    store = IncidentStore(settings.incidents_path)
    assert store.get(1) == first
    assert [i.id for i in store.find()] == [1, 2]
    assert [i.id for i in store.find(dag_id="recsys_train_and_publish")] == [2]
    assert [i.id for i in store.find(limit=1)] == [2]
    assert store.get(3) is None
    with sqlite3.connect(settings.incidents_path) as db:
        assert db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_an_empty_store_reads_as_no_incidents(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "none.db")
    assert store.find() == [] and store.get(1) is None
    assert not (tmp_path / "none.db").exists()


def test_a_store_that_cannot_be_written_still_gives_the_incident(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings.from_env({"RECFLOW_HOME": str(home)})
    settings.incidents_path.mkdir(parents=True)  # a folder where the store's file should be
    incident = record_failure(settings, _warehouse_failure(_refused()), champion=_champion)
    assert incident.id is None
    assert incident.on_call_line().endswith("| incident: not stored")


def _write_many(url: str, worker: int, count: int) -> None:
    store = IncidentStore(url)
    for i in range(count):
        store.add(
            Incident(
                at=datetime.now(UTC).isoformat(timespec="seconds"),
                dag_id="recsys_warehouse",
                task_id=f"task_{worker}",
                run_id=f"run_{i}",
                interval_start=None,
                interval_end=None,
                try_number=1,
                kind="infrastructure",
                error_type="RuntimeError",
                root_cause=f"worker {worker} incident {i}",
            )
        )


def write_concurrently(url: str, workers: int, count: int) -> None:
    """``workers`` processes each add ``count`` incidents to the store at ``url`` at the same time."""
    ctx = multiprocessing.get_context("spawn")
    processes = [ctx.Process(target=_write_many, args=(url, w, count)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0


def test_concurrent_writers_in_several_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    write_concurrently(f"sqlite:///{path}", 4, 25)
    found = IncidentStore(path).find()
    assert len(found) == 100
    assert len({i.id for i in found}) == 100
    assert {i.root_cause for i in found} == {f"worker {w} incident {i}" for w in range(4) for i in range(25)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", datetime(2026, 1, 2, 12, tzinfo=UTC)),
        ("7d", datetime(2025, 12, 27, 12, tzinfo=UTC)),
        ("30m", datetime(2026, 1, 3, 11, 30, tzinfo=UTC)),
        ("2026-01-02", datetime(2026, 1, 2, tzinfo=UTC)),
        ("2026-01-02T06:00", datetime(2026, 1, 2, 6, tzinfo=UTC)),
        ("2026-01-02T06:00+02:00", datetime(2026, 1, 2, 4, tzinfo=UTC)),
    ],
)
def test_since_takes_dates_and_durations(text: str, expected: datetime) -> None:
    assert parse_since(text, now=datetime(2026, 1, 3, 12, tzinfo=UTC)) == expected


def test_since_refuses_anything_else() -> None:
    with pytest.raises(ValueError, match="neither an ISO date"):
        parse_since("yesterday")
    with pytest.raises(ValueError, match="'999999999d' reaches back before the year 1: give fewer days"):
        parse_since("999999999d")


# -- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def home(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RECFLOW_HOME", str(settings.home))
    store = IncidentStore(settings.incidents_path)
    for n, (dag_id, task_id, at) in enumerate(
        [
            ("recsys_warehouse", "audit", datetime(2026, 1, 1, 6, tzinfo=UTC)),
            ("recsys_warehouse", "land", datetime(2026, 1, 2, 6, tzinfo=UTC)),
            ("recsys_train_and_publish", "train", datetime(2026, 1, 3, 6, tzinfo=UTC)),
        ]
    ):
        failure = _warehouse_failure(
            _refused() if n == 0 else RuntimeError(f"boom {n}\nsecond line"), task_id
        )
        failure = TaskFailure(**{**failure.__dict__, "dag_id": dag_id})
        store.add(build_incident(settings, failure, champion=_champion, now=at))
    return settings


def test_cli_list_prints_one_line_per_incident(home: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["incidents", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:4] == ["1", "2026-01-01T06:00:00+00:00", "recsys_warehouse.audit", "data"]
    assert lines[0].endswith("[#partition-refused]")
    assert "boom 1; second line" in lines[1]


def test_cli_list_filters_by_dag_and_time(home: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["incidents", "list", "--dag", "recsys_warehouse", "--json"]) == 0
    assert [i["id"] for i in json.loads(capsys.readouterr().out)] == [1, 2]
    assert cli.main(["incidents", "list", "--since", "2026-01-02", "--json"]) == 0
    assert [i["id"] for i in json.loads(capsys.readouterr().out)] == [2, 3]
    assert cli.main(["incidents", "list", "--since", "1h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no incidents match --since 20") and "(3 recorded in sqlite:///" in out, out
    with pytest.raises(SystemExit) as typo:  # a typo is refused: "no incidents match" read as an all-clear
        cli.main(["incidents", "list", "--dag", "recsys_warehous"])
    assert typo.value.code == 2 and "'recsys_warehous' is no DAG of recflow's" in capsys.readouterr().err
    assert cli.main(["incidents", "list", "--dag", "recsys_train_and_publish"]) == 0
    assert "recsys_train_and_publish.train" in capsys.readouterr().out
    for limit in ("0", "-1"):  # read as "no limit" before: every incident listed
        with pytest.raises(SystemExit):
            cli.main(["incidents", "list", "--limit", limit])
        assert "is not a count of at least 1" in capsys.readouterr().err
    assert cli.main(["incidents", "list", "--limit", "1", "--json"]) == 0
    assert [i["id"] for i in json.loads(capsys.readouterr().out)] == [3]
    with pytest.raises(SystemExit):
        cli.main(["incidents", "list", "--since", "last tuesday"])
    assert "neither an ISO date" in capsys.readouterr().err


def test_cli_show_prints_blocks_and_json(home: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["incidents", "show", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("incident 1: recsys_warehouse.audit failed (try 2)\n")
    for label in ("root cause", "check", "columns", "observed", "expected", "evidence", "stale", "champion"):
        assert re.search(rf"^  {label} +\S", out, re.MULTILINE), label
    assert "  what to do    look at the refused rows" in out
    assert "  runbook       docs/runbooks/recsys_warehouse.md#partition-refused" in out
    assert "\n  message:\n    PartitionRefused: partition ds=2026-01-03" in out
    assert cli.main(["incidents", "show", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["id"] == 1 and record["columns"] == ["event_type", "event_ts"]
    assert cli.main(["incidents", "show", "99"]) == 1
    assert "no incident 99" in capsys.readouterr().err


def test_a_run_with_no_span_of_data_shows_no_interval(
    home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manual training run's data interval starts where it ends: the card printed '[X, X)'."""
    assert cli.main(["incidents", "show", "1"]) == 0
    assert re.search(r"^  interval +\[2026-01-03", capsys.readouterr().out, re.MULTILINE)
    manual = TaskFailure(
        **{
            **_warehouse_failure(RuntimeError("boom"), "train").__dict__,
            "dag_id": "recsys_train_and_publish",
            "interval_end": D,
            "days": (),
        }
    )
    added = IncidentStore(home.incidents_path).add(build_incident(home, manual, champion=_champion))
    assert cli.main(["incidents", "show", str(added.id)]) == 0
    assert "interval" not in capsys.readouterr().out


def test_docs_describe_every_json_key(settings: Settings) -> None:
    doc = (PROJECT_ROOT / "docs" / "incidents.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", doc, re.MULTILINE))
    record = build_incident(settings, _warehouse_failure(_refused()), champion=_champion).as_dict()
    keys = set(record) | {f"blast_radius.{k}" for k in record["blast_radius"]}
    assert documented == keys
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "docs/incidents.md" in readme


# -- the models CLI (the registry itself is tested in tests/integration) -------------------------


class _FakeChampions:
    moves: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, settings: Settings) -> None:
        pass

    def promote(self, name: str, version: int, reason: str, who: str) -> dict[str, Any] | None:
        if version == 9:
            raise errors.RegistryError(f"{name} has no version 9 (versions: 1, 2)")
        if self.moves and self.moves[-1]["version"] == version:
            return None
        move = {
            "seq": len(self.moves) + 1,
            "version": version,
            "previous_version": self.moves[-1]["version"] if self.moves else None,
            "who": who,
            "at": "2026-01-03T06:00:00+00:00",
            "reason": reason,
        }
        self.moves.append(move)
        return move

    def champion_history(self, name: str) -> list[dict[str, Any]]:
        return list(self.moves)


def test_cli_models_promote_and_history(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import getpass

    import recflow.registry

    monkeypatch.setenv("RECFLOW_HOME", str(settings.home))
    monkeypatch.setattr(recflow.registry, "MlflowRegistry", _FakeChampions)
    monkeypatch.setattr(_FakeChampions, "moves", [])
    (settings.home / "mlflow").mkdir(parents=True, exist_ok=True)
    (settings.home / "mlflow" / "mlflow.db").touch()  # the embedded registry exists (require_registry)
    monkeypatch.setattr(getpass, "getuser", lambda: "alice")
    assert cli.main(["models", "promote", "--name", "m", "--version", "2", "--reason", "first"]) == 0
    assert cli.main(["models", "promote", "--name", "m", "--version", "1", "--reason", "roll back"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[1]
        == "m: champion moved from version 2 to 1 by alice at 2026-01-03T06:00:00+00:00 (move 2): roll back"
    )
    assert cli.main(["models", "promote", "--name", "m", "--version", "1", "--reason", "again"]) == 0
    assert "already is the champion" in capsys.readouterr().out
    assert cli.main(["models", "promote", "--name", "m", "--version", "9", "--reason", "x"]) == 1
    assert "not promoted: m has no version 9" in capsys.readouterr().err
    assert cli.main(["models", "history", "--name", "m"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "   1  2026-01-03T06:00:00+00:00  v- -> v2  alice  first",
        "   2  2026-01-03T06:00:00+00:00  v2 -> v1  alice  roll back",
    ]
    assert cli.main(["models", "history", "--name", "m", "--json"]) == 0
    assert [m["version"] for m in json.loads(capsys.readouterr().out)] == [2, 1]


def _no_server(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"a command that must be refused started {args[0]!r}")


@pytest.mark.parametrize(
    "argv",
    [
        ["models", "list"],
        ["models", "show", "--name", "recsys-demo", "--alias", "champion"],
        ["models", "history", "--name", "recsys-demo"],
        ["models", "export", "--name", "recsys-demo", "--alias", "champion", "--out", "out"],
        ["models", "promote", "--name", "recsys-demo", "--version", "1", "--reason", "roll back"],
        ["mlflow", "ui"],
    ],
    ids=lambda argv: argv[1],
)
def test_a_home_with_no_registry_is_named_and_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A mistyped RECFLOW_HOME: the models commands created an empty MLflow store there and listed
    nothing, as if the registry meant were empty."""
    home = tmp_path / "recflow-hmoe"
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    monkeypatch.delenv("RECFLOW_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RECFLOW_REGISTRY_BACKEND", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "run", _no_server)  # mlflow ui: refused, never started
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"there is no model registry at {home / 'mlflow' / 'mlflow.db'} (RECFLOW_HOME={home})" in err
    assert not home.exists() and not (tmp_path / "out").exists()


def test_mlflow_ui_under_the_sagemaker_registry_is_refused_without_creating_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With SageMaker's registry nothing is written to MLflow: its UI would open an empty store it
    had just created under the home."""
    home = tmp_path / "home"
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    monkeypatch.setenv("RECFLOW_REGISTRY_BACKEND", "sagemaker")
    monkeypatch.delenv("RECFLOW_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(subprocess, "run", _no_server)
    assert cli.main(["mlflow", "ui"]) == 2
    err = capsys.readouterr().err
    assert "RECFLOW_REGISTRY_BACKEND=sagemaker" in err and "recflow models list" in err
    assert not (home / "mlflow").exists()


@pytest.mark.parametrize("argv", [["incidents", "list"], ["incidents", "show", "1"]], ids=lambda a: a[1])
def test_incidents_of_a_home_that_does_not_exist_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A mistyped RECFLOW_HOME answered "no incidents in sqlite:///..." with rc 0, as a healthy home does."""
    home = tmp_path / "recflow-hmoe"
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    assert cli.main(argv) == 2
    assert f"RECFLOW_HOME={home} does not exist" in capsys.readouterr().err
    assert not home.exists()


def test_incidents_kept_in_a_shared_store_need_no_home(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On-call reads the workers' incident store (RECFLOW_INCIDENTS_URL) from a machine with no home."""
    shared = tmp_path / "shared.db"
    IncidentStore(f"sqlite:///{shared}").add(
        build_incident(settings, _warehouse_failure(_refused()), champion=_champion)
    )
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "no-home-here"))
    monkeypatch.setenv("RECFLOW_INCIDENTS_URL", f"sqlite:///{shared}")
    assert cli.main(["incidents", "list"]) == 0
    assert "recsys_warehouse.audit" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["incidents", "list"], ["incidents", "show", "1"]], ids=lambda a: a[1])
def test_a_store_that_cannot_be_reached_is_named_in_one_line_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """On-call's first command met a PostgreSQL store that was down with psycopg's traceback."""
    with socket.socket() as closed:  # a port nothing listens on: the connection is refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("RECFLOW_INCIDENTS_URL", f"postgresql://oncall:s3cret@127.0.0.1:{port}/recflow")
    assert cli.main(argv) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith(
        f"recflow: cannot reach the incident store postgresql://oncall:***@127.0.0.1:{port}/recflow "
        "(RECFLOW_INCIDENTS_URL): connection failed"
    ), out.err
    assert len(out.err.splitlines()) == 1 and "s3cret" not in out.err


def test_what_to_do_names_the_incident_it_is_shown_in(
    home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runbook's `recflow incidents show ID` was printed as written, in an incident that knows its id."""
    assert cli.main(["incidents", "show", "2"]) == 0
    out = capsys.readouterr().out
    assert "`recflow incidents show 2` keeps the" in out and "incidents show ID" not in out
    stored = IncidentStore(home.incidents_path).get(2)
    assert (
        stored is not None and "incidents show ID" in stored.what_to_do
    )  # the record keeps the runbook's text
    assert (
        "recflow incidents show 2`" in stored.on_call_line()
        and "recflow incidents show 2`" in stored.notification_body()
    )


def test_a_build_that_could_not_open_the_held_file_is_the_warehouse_locked(settings: Settings) -> None:
    """run_build raises RuntimeError("dbt could not run the build …") from DuckDB's lock error: that is
    the warehouse locked, not a model to fix (dbt-failed)."""
    locked = duckdb.IOException('Could not set lock on file "recflow.duckdb": Conflicting lock is held')
    try:
        raise RuntimeError(f"dbt could not run the build (no node ran): {locked}") from locked
    except RuntimeError as error:
        failure = TaskFailure("recsys_warehouse", "transform.dbt_build", "r", 2, error=error)
    assert build_incident(settings, failure, champion=_champion).runbook.endswith("#warehouse-locked")
