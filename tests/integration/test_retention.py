"""``recflow gc``: what a real training run left, published, is kept; what nothing references goes.

The state is built by the real steps (snapshot, a local training job, evaluation, publication
with its serving archive), a second registered model whose artifacts are old, and leftovers
that no version references: older snapshots, failed and completed jobs with their checkpoints,
archives and evaluations, a job still running, and snapshots written in the last hours.
What ``gc`` may delete is written out below from that design (:func:`_deletable`), and checked against the
registry's versions read back and the files on disk, never against the policy's own code.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recflow.cli import main as cli_main
from recflow.core.config import Settings
from recflow.evaluation import evaluate_challenger
from recflow.publishing.publish import publish_evaluated
from recflow.registry import MlflowRegistry
from recflow.snapshot import take_snapshot
from recflow.training.jobs import train_on_snapshot
from tests.integration.conftest import home_with_warehouse_of

pytestmark = pytest.mark.integration

DAY = 86400.0
KEEP_LAST = 2
OTHER_MODEL = "gc-other"
TINY_HPS = {"epochs": 1, "embedding_dim": 8, "hidden_dim": 16, "batch_size": 128, "history_length": 4}

OLD = [f"old-{i}" for i in range(1, 7)]
"""Leftovers of six runs nothing references; old-1 the most recent (10 days), old-6 the oldest (15)."""
FRESH = ["fresh-a", "fresh-b", "fresh-c"]
"""Snapshots written 1, 2 and 3 hours ago that nothing references yet."""


def _write(path: Path, data: bytes, age_days: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))


def _job_folder(jobs: Path, name: str, status: str, age_days: float, snapshot: str = "") -> None:
    _write(jobs / name / "description.json", json.dumps({"TrainingJobStatus": status}).encode(), age_days)
    channel = f"{(jobs.parent / 'artifacts' / 'snapshots' / snapshot / 'train').as_uri()}" if snapshot else ""
    request = {
        "TrainingJobName": name,
        "InputDataConfig": [{"DataSource": {"S3DataSource": {"S3Uri": channel}}}],
    }
    _write(jobs / name / "request.json", json.dumps(request).encode(), age_days)
    _write(jobs / name / "logs.txt", b"epoch 1/1\n" * 50, age_days)


def _job_artifacts(
    artifacts: Path, job: str, age_days: float, *, serving: bool = False, folder: bool = False
) -> None:
    """``folder``: the evaluations as written since 92aef8c (one per champion compared against), else
    as one ``<job>.json``, the layout before it, which gc still recognises."""
    _write(artifacts / "checkpoints" / job / "ckpt-1.index", b"i" * 300, age_days)
    _write(artifacts / "models" / job / "output" / "model.tar.gz", b"m" * 2000, age_days)
    if folder:
        for against in ("none", "v1"):
            _write(
                artifacts / "evaluations" / job / f"against-{against}.json", b'{"challenger": {}}', age_days
            )
    else:
        _write(artifacts / "evaluations" / f"{job}.json", b'{"challenger": {}}', age_days)
    if serving:
        _write(artifacts / "serving" / job / "model.tar.gz", b"s" * 1500, age_days)


def _snapshot(artifacts: Path, snapshot: str, age_days: float) -> None:
    for part in ("train/interactions.parquet", "holdout/interactions.parquet", "manifest.json"):
        _write(artifacts / "snapshots" / snapshot / part, b"p" * 700, age_days)


@pytest.fixture(scope="module")
def state(warehouse: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = home_with_warehouse_of(warehouse, tmp_path_factory.mktemp("gc"))
    snap = take_snapshot(settings).to_xcom()
    training = train_on_snapshot(settings, snap, TINY_HPS, poll_seconds=0.5)
    evaluation = evaluate_challenger(settings, snap, training, settings.model_name)
    publish_evaluated(
        settings,
        snapshot=snap,
        training=training,
        evaluation=evaluation,
        decision={"promote": True, "reason": "promoted: first model (no champion yet)"},
        dag_id="recsys_train_and_publish",
        run_id="gc-test",
    )
    artifacts, jobs = settings.home / "artifacts", settings.jobs_dir
    # a second model, published 40 days ago from job-other-r2 (its first attempt failed) on snap-other
    for name, status in (("job-other", "Failed"), ("job-other-r2", "Completed")):
        _job_folder(jobs, name, status, 41, snapshot="snap-other")
    _snapshot(artifacts, "snap-other", 41)
    _job_artifacts(artifacts, "job-other-r2", 40, serving=True)
    model_dir = tmp_path_factory.mktemp("other-model")
    (model_dir / "saved_model.pb").write_bytes(b"not a real model: the registry only stores it")
    base = artifacts.as_uri()
    MlflowRegistry(settings).publish(
        OTHER_MODEL,
        model_dir,
        {"hr@10": 0.2},
        {"epochs": "1"},
        {
            "snapshot_id": "snap-other",
            "training_job_name": "job-other-r2",
            "model_uri": f"{base}/models/job-other-r2/output/model.tar.gz",
            "serving_model_uri": f"{base}/serving/job-other-r2/model.tar.gz",
            "evaluation_report": f"{base}/evaluations/job-other-r2.json",
            "airflow_dag_id": "recsys_train_and_publish",
            "airflow_run_id": "long-ago",
        },
    )
    # leftovers nothing references: old-1 (10 days) .. old-6 (15 days)
    for k, name in enumerate(OLD):
        age = 10 + k
        _snapshot(artifacts, f"snap-{name}", age)
        _job_folder(jobs, f"job-{name}", "Failed" if k % 2 else "Completed", age, snapshot=f"snap-{name}")
        _job_artifacts(artifacts, f"job-{name}", age, serving=k < 3, folder=k % 2 == 0)
    # a job still running for 30 days (its description not terminal), on a snapshot as old
    _snapshot(artifacts, "snap-inflight", 30)
    _job_folder(jobs, "job-inflight", "InProgress", 30, snapshot="snap-inflight")
    _write(artifacts / "checkpoints" / "job-inflight" / "ckpt-1.index", b"i" * 300, 30)
    for k, name in enumerate(FRESH, start=1):
        _snapshot(artifacts, f"snap-{name}", k / 24)
    # a write in progress (hidden) is never an item
    _write(artifacts / "snapshots" / ".snap-partial.tmp", b"p", 20)
    return {"settings": settings, "training": training, "snapshot": snap}


def _deletable() -> set[tuple[str, str]]:
    """By design, with RECFLOW_RETENTION_KEEP_LAST=2: of each kind, the unreferenced, unused items
    beyond the two most recent, unless modified under 24 hours ago."""
    jobs_beyond_two = {f"job-{n}" for n in OLD[2:]}  # job-old-1, job-old-2 are the 2 most recent
    # fresh-a, fresh-b: the 2 most recent; fresh-c: 3 hours old; old-1, old-2: the kept jobs' inputs
    snapshots = {f"snap-{n}" for n in OLD[2:]}
    serving = {"job-old-3"}  # serving archives only for old-1..old-3
    return (
        {("snapshots", s) for s in snapshots}
        | {(kind, j) for kind in ("checkpoints", "models", "evaluations", "jobs") for j in jobs_beyond_two}
        | {("serving", s) for s in serving}
    )


def _items_on_disk(settings: Settings) -> dict[tuple[str, str], Path]:
    found = {}
    artifacts = settings.home / "artifacts"
    roots = {k: artifacts / k for k in ("snapshots", "checkpoints", "models", "serving", "evaluations")}
    for kind, root in (*roots.items(), ("jobs", settings.jobs_dir)):
        for path in root.iterdir():
            if not path.name.startswith("."):
                found[(kind, path.name.removesuffix(".json") if kind == "evaluations" else path.name)] = path
    return found


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            stat = path.lstat()
            digest.update(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def env(state: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    settings: Settings = state["settings"]
    monkeypatch.setenv("RECFLOW_HOME", str(settings.home))
    monkeypatch.setenv("RECFLOW_WAREHOUSE_PATH", str(settings.duckdb_path))
    monkeypatch.setenv("RECFLOW_RETENTION_KEEP_LAST", str(KEEP_LAST))
    yield settings


def _referenced(settings: Settings) -> set[tuple[str, str]]:
    """What the registry's versions, read back, name: their snapshots and training jobs' items."""
    referenced = set()
    for version in MlflowRegistry(settings).list_versions():
        referenced.add(("snapshots", version.lineage["snapshot_id"]))
        job = version.lineage["training_job_name"]
        referenced |= {(kind, job) for kind in ("checkpoints", "models", "serving", "evaluations", "jobs")}
    return referenced


def test_dry_run_lists_exactly_the_unreferenced_beyond_the_last_n_and_changes_nothing(
    env: Settings, state: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    on_disk = _items_on_disk(env)
    expected = _deletable()
    assert expected <= set(on_disk), "the design's leftovers are on disk"
    referenced = _referenced(env)
    assert ("snapshots", state["snapshot"]["snapshot_id"]) in referenced
    assert ("snapshots", "snap-other") in referenced and not expected & referenced
    before = _tree_digest(env.home)

    assert cli_main(["gc", "--dry-run", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {(i["kind"], i["name"]) for i in listed} == expected
    by_name = {(i["kind"], i["name"]): i for i in listed}
    for key, path in on_disk.items():
        if key in expected:
            files = [p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()]
            assert by_name[key]["uri"] == path.as_uri()
            assert by_name[key]["bytes"] == sum(p.stat().st_size for p in files), key
            assert by_name[key]["age_hours"] >= 10 * 24
            assert "no registered version references it" in by_name[key]["why"]

    assert cli_main(["gc", "--dry-run"]) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if "file://" in line]
    assert sorted(line.split()[1] for line in lines) == sorted(on_disk[k].as_uri() for k in expected)
    assert f"would delete {len(expected)} item(s)" in text
    assert _tree_digest(env.home) == before, "a dry run changed the disk"


def test_gc_deletes_them_and_keeps_the_referenced_the_running_and_the_recent(
    env: Settings, state: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    on_disk = _items_on_disk(env)
    expected = _deletable()
    referenced = _referenced(env)

    assert cli_main(["gc"]) == 0
    out = capsys.readouterr().out
    assert f"deleted {len(expected)} item(s)" in out

    after = _items_on_disk(env)
    assert set(after) == set(on_disk) - expected
    assert not any(on_disk[k].exists() for k in expected)
    # every item of the two registered versions' lineage is still there, and what a running job uses
    assert {k for k in referenced if k in on_disk} <= set(after)
    assert {("jobs", "job-other"), ("jobs", "job-inflight"), ("snapshots", "snap-inflight")} <= set(after)
    assert {("checkpoints", "job-inflight"), ("snapshots", "snap-fresh-c")} <= set(after)
    assert {("jobs", "job-old-1"), ("snapshots", "snap-old-1"), ("snapshots", "snap-old-2")} <= set(after)
    assert (env.home / "artifacts" / "snapshots" / ".snap-partial.tmp").exists()
    for uri in (state["training"]["model_uri"], state["snapshot"]["train_uri"]):
        assert Path(uri.removeprefix("file://")).exists()
    # what the registry serves still comes back whole
    champion = MlflowRegistry(env).get_by_alias(env.model_name)
    assert champion is not None
    assert Path(champion.lineage["serving_model_uri"].removeprefix("file://")).exists()

    assert cli_main(["gc", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [], "a second pass finds nothing more"


def test_evaluating_the_published_job_again_leaves_the_report_its_version_names(
    state: dict[str, Any],
) -> None:
    """A run on unchanged data reuses the training job and evaluates it again, now against the
    champion it has become: that report was written over the one the published version's lineage
    names, which then compared the model with itself while its card said "champion then: none"."""
    settings: Settings = state["settings"]
    champion = MlflowRegistry(settings).get_by_alias(settings.model_name)
    assert champion is not None and champion.lineage["training_job_name"] == state["training"]["job_name"]
    published = Path(champion.lineage["evaluation_report"].removeprefix("file://"))
    before = published.read_bytes()
    assert json.loads(before)["champion_version"] is None

    again = evaluate_challenger(settings, state["snapshot"], state["training"], settings.model_name)

    assert published.read_bytes() == before
    assert again["champion_version"] == champion.version
    written = Path(again["report_uri"].removeprefix("file://"))
    assert written != published and json.loads(written.read_bytes())["champion_version"] == champion.version
