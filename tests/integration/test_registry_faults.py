"""Publishing under faults, and the recorded moves of ``champion``: real MLflow (SQLite), a real SavedModel.

A failure is injected through ``on_step``, the callback publishing calls after
each of its steps: the callback raises right after step k, as a crash there would;
a person's rollback is made there the same way, while the publication goes on.
"""

from __future__ import annotations

import json
import tarfile
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest

from recflow.core.artifacts import join, store_for
from recflow.core.config import Settings
from recflow.core.errors import RegistryError
from recflow.publishing.publish import publish_training_job
from recflow.registry import (
    EXPERIMENT,
    JOB_TAG,
    MODEL_FETCHED,
    PENDING_TAG,
    PUBLISH_STEPS,
    MlflowRegistry,
    Registry,
)
from recflow.registry.champion import require_reason

pytestmark = pytest.mark.integration

tf = pytest.importorskip("tensorflow")

ALL_STEPS = (MODEL_FETCHED, *PUBLISH_STEPS)


class InjectedFault(RuntimeError):
    pass


def fail_after(step: str) -> Callable[[str], None]:
    def on_step(done: str) -> None:
        if done == step:
            raise InjectedFault(f"crash right after step {done!r}")

    return on_step


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One registry for the module (MLflow's schema takes seconds to create); each test uses its own model name."""
    return Settings.from_env({"RECFLOW_HOME": str(tmp_path_factory.mktemp("registry-faults"))})


@pytest.fixture(scope="module")
def model_uri(home: Settings, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny trained two-tower SavedModel as a training job leaves it: ``model.tar.gz`` in the artifact store."""
    from recflow_ml.hyperparameters import Hyperparameters
    from recflow_ml.model import TrainingData, TwoTowerModel, export

    users = [f"u{i}" for i in range(8)]
    items = [f"p{i}" for i in range(120)]  # `recommend` returns a top 100
    pairs = [(u, items[(i * 15 + j) % len(items)]) for i, u in enumerate(users) for j in range(15)]
    data = TrainingData(
        np.array([u for u, _ in pairs]), np.array([i for _, i in pairs]), np.ones(len(pairs), np.float32)
    )
    model = TwoTowerModel(
        users, items, Hyperparameters(epochs=1, batch_size=32, embedding_dim=4, hidden_dim=8)
    )
    model.fit(data)
    work = tmp_path_factory.mktemp("tiny-model")
    export(model, work / "savedmodel")
    archive = work / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((work / "savedmodel").iterdir()):
            tar.add(path, arcname=path.name)
    return store_for(home).put_file(
        archive, join(home.artifacts_uri, "models", "tiny", "output", "model.tar.gz")
    )


class Publish(Protocol):
    def __call__(
        self,
        settings: Settings,
        model_uri: str,
        name: str,
        job: str,
        run: str,
        /,
        on_step: Callable[[str], None],
    ) -> dict[str, Any]: ...


def publish(
    home: Settings,
    model_uri: str,
    name: str,
    job: str,
    run: str,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    return publish_training_job(
        home,
        name=name,
        model_uri=model_uri,
        training_job=job,
        metrics={"hr@10": 0.5, "ndcg@10": 0.25, "users": 8.0},
        params={"epochs": "1"},
        lineage={"snapshot_id": "s1", "airflow_dag_id": "dag", "airflow_run_id": run},
        reason=f"promoted by the gate of {run}",
        on_step=on_step,
    )


def check_champion_after_crash(
    registry: Registry, name: str, step: str, version: int, with_previous_champion: bool
) -> None:
    """After a crash right after ``step``: the new version is champion once the alias (or approval)
    moved, else the previous champion stays (or there is none)."""
    champion = registry.get_by_alias(name)
    moved = step in PUBLISH_STEPS and PUBLISH_STEPS.index(step) >= PUBLISH_STEPS.index("champion")
    if moved:
        assert champion is not None and (champion.version, champion.complete) == (version, True)
    elif with_previous_champion:
        assert champion is not None and (champion.version, champion.complete) == (1, True)
    else:
        assert champion is None


def runs_of(registry: MlflowRegistry, job: str) -> list[Any]:
    experiment = registry.client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    return list(
        registry.client.search_runs([experiment.experiment_id], filter_string=f"tags.`{JOB_TAG}` = '{job}'")
    )


def moves(registry: Registry, name: str) -> list[tuple[Any, ...]]:
    return [
        (m["seq"], m["previous_version"], m["version"], m["who"]) for m in registry.champion_history(name)
    ]


def check_recorded_moves(registry: Registry, back: Mapping[str, Any], forward: Mapping[str, Any]) -> None:
    """The history of model ``moves``: two publications, then ``back`` (alice) and ``forward`` (bob)."""
    history = registry.champion_history("moves")
    assert [(m["seq"], m["previous_version"], m["version"], m["who"], m["reason"]) for m in history] == [
        (1, None, 1, "dag/run-1", "promoted by the gate of run-1"),
        (2, 1, 2, "dag/run-2", "promoted by the gate of run-2"),
        (3, 2, 1, "alice", "version 2 recommends stale pins"),
        (4, 1, 2, "bob", "the stale pins are fixed upstream"),
    ]
    times = [datetime.fromisoformat(m["at"]) for m in history]
    assert times == sorted(times) and all(t.utcoffset() is not None for t in times)
    assert history[2] == back and history[3] == forward


def check_a_rollback_during_a_publication(
    settings: Settings,
    model_uri: str,
    publish: Publish,
    registry: Callable[[], Registry],
    recorded: Callable[[str], list[dict[str, Any]]],
    champion: Callable[[str], int | None],
    step: str,
) -> None:
    """Version 2 is champion; while version 3 is published, alice rolls back to version 1 right after
    ``step``. Whatever the step, alice's move is the last: the champion is version 1, the history has
    unique consecutive move numbers, each move starting where the one before ended, and the
    publication's move, if it made one, comes before alice's.

    ``recorded`` (every recorded move, read from the backend's own records) and ``champion`` (read
    from the alias or the approvals) do not go through the code under test. When the publication
    holds the model's lock (``registry/locks/<name>`` in the artifact store) at ``step``, alice's
    rollback runs in a thread (it waits for the lock); else it runs there and then.
    """
    name = f"race-{step}".replace("_", "-")
    for k in (1, 2):
        publish(settings, model_uri, name, f"{name}-job-{k}", f"run-{k}", on_step=lambda _done: None)
    assert champion(name) == 2
    lock = join(settings.artifacts_uri, "registry", "locks", name)
    errors: list[BaseException] = []
    rollbacks: list[threading.Thread] = []

    def roll_back() -> None:
        try:
            registry().promote(name, 1, "version 2 recommends stale pins", who="alice")
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    def on_step(done: str) -> None:
        if done != step:
            return
        if store_for(settings).exists(lock):
            rollbacks.append(threading.Thread(target=roll_back, name=f"rollback-{step}"))
            rollbacks[-1].start()
        else:
            roll_back()

    published = publish(settings, model_uri, name, f"{name}-job-3", "run-3", on_step=on_step)
    for thread in rollbacks:
        thread.join(120)
    assert not errors, errors
    assert not any(t.is_alive() for t in rollbacks), "the rollback is still waiting"

    assert published["version"] == 3
    moves = recorded(name)
    assert [m["seq"] for m in moves] == list(range(1, len(moves) + 1)), "unique, consecutive move numbers"
    assert all(m["previous_version"] == before["version"] for before, m in pairwise(moves))
    assert (moves[-1]["who"], moves[-1]["version"]) == ("alice", 1), moves
    assert champion(name) == 1
    by_publication = [m for m in moves if m["who"] == "dag/run-3"]
    assert [m["seq"] for m in moves[:2]] == [1, 2] and len(moves) == 3 + len(by_publication), moves
    if by_publication:
        assert by_publication[0]["version"] == 3 and by_publication[0]["seq"] < moves[-1]["seq"]
    else:
        assert "moved by alice at move 3" in published["not_promoted"], published


def check_a_publication_expecting_another_champion(
    settings: Settings, model_uri: str, registry: Registry, champion: Callable[[str], int | None]
) -> None:
    """Model ``expect``: versions 1 and 2 published, alice rolled back to 1. A publication whose gate
    compared against version 2 registers version 3 and leaves the alias; one that compared against
    version 1 (the champion) moves it."""
    publish(settings, model_uri, "expect", "expect-job-1", "run-1")
    publish(settings, model_uri, "expect", "expect-job-2", "run-2")
    registry.promote("expect", 1, "version 2 recommends stale pins", who="alice")

    def publish_expecting(job: str, run: str, expected: int) -> dict[str, Any]:
        return publish_training_job(
            settings,
            name="expect",
            model_uri=model_uri,
            training_job=job,
            metrics={"hr@10": 0.5, "ndcg@10": 0.25},
            params={"epochs": "1"},
            lineage={"snapshot_id": "s1", "airflow_dag_id": "dag", "airflow_run_id": run},
            reason=f"promoted by the gate of {run}",
            expected_champion=expected,
        )

    stale = publish_expecting("expect-job-3", "run-3", 2)
    assert (stale["version"], stale["aliases"], champion("expect")) == (3, [], 1)
    assert stale["not_promoted"].startswith("champion is version 1, moved by alice at move 3 (")
    assert "since the evaluation compared against version 2; version 3 not promoted" in stale["not_promoted"]
    assert registry.get_version("expect", 3).complete
    fresh = publish_expecting("expect-job-4", "run-4", 1)
    assert (fresh["version"], fresh["aliases"], champion("expect")) == (4, ["champion"], 4)
    assert "not_promoted" not in fresh
    assert [(m["seq"], m["version"], m["who"]) for m in registry.champion_history("expect")] == [
        (1, 1, "dag/run-1"),
        (2, 2, "dag/run-2"),
        (3, 1, "alice"),
        (4, 4, "dag/run-4"),
    ]


def check_a_rolled_back_version_waits_for_a_person(
    settings: Settings, model_uri: str, registry: Registry, champion: Callable[[str], int | None]
) -> None:
    """Model ``back``: versions 1 and 2 published, alice rolled back to 1. The training job of version 2
    published again by a later DAG run (a run on unchanged data reuses the snapshot and the job, and
    its gate compares against version 1, the champion) is version 2 again and leaves the alias,
    saying why; a person moves it, and then version 1 waits for a person in turn. A new job moves it."""
    publish(settings, model_uri, "back", "back-job-1", "run-1")
    publish(settings, model_uri, "back", "back-job-2", "run-2")
    registry.promote("back", 1, "version 2 recommends stale pins", who="alice")

    again = publish(settings, model_uri, "back", "back-job-2", "run-3")
    assert (again["version"], again["aliases"], champion("back")) == (2, [], 1)
    assert again["not_promoted"].startswith("version 2 was moved off champion by hand by alice at move 3 (")
    assert again["not_promoted"].endswith("recflow models promote --name back --version 2 --reason TEXT")
    assert (
        "version 2 recommends stale pins); a publication does not make it champion again"
        in again["not_promoted"]
    )
    assert [m["who"] for m in registry.champion_history("back")] == ["dag/run-1", "dag/run-2", "alice"]

    forward = registry.promote("back", 2, "the stale pins are fixed upstream", who="bob")
    assert forward is not None and forward["by_hand"] is True and champion("back") == 2
    older = publish(settings, model_uri, "back", "back-job-1", "run-4")
    assert (older["aliases"], champion("back")) == ([], 2)
    assert older["not_promoted"].startswith("version 1 was moved off champion by hand by bob at move 4 (")
    new = publish(settings, model_uri, "back", "back-job-3", "run-5")
    assert (new["version"], new["aliases"], champion("back")) == (3, ["champion"], 3)
    assert [m["who"] for m in registry.champion_history("back")][3:] == ["bob", "dag/run-5"]


def check_promote_refusals(settings: Settings, model_uri: str, registry: Registry) -> None:
    """Model ``refuse``: version 1 champion, version 2 cut off after its ``version`` step; each refusal
    of promote (unknown version or model, incomplete version, no reason) names what is wrong."""
    publish(settings, model_uri, "refuse", "refuse-job-1", "run-1")
    with pytest.raises(InjectedFault):
        publish(settings, model_uri, "refuse", "refuse-job-2", "run-2", on_step=fail_after("version"))
    assert [(v.version, v.complete) for v in registry.list_versions("refuse")] == [(1, True), (2, False)]

    with pytest.raises(RegistryError, match=r"refuse has no version 7 \(versions: 1, 2\)"):
        registry.promote("refuse", 7, "try", who="alice")
    with pytest.raises(RegistryError, match=r"refuse version 2 is incomplete.*refuse-job-2"):
        registry.promote("refuse", 2, "try", who="alice")
    with pytest.raises(RegistryError, match="no registered model named 'nobody'"):
        registry.promote("nobody", 1, "try", who="alice")
    with pytest.raises(RegistryError, match="no registered model named 'nobody'"):
        registry.champion_history("nobody")
    with pytest.raises(ValueError, match="needs a reason"):
        registry.promote("refuse", 1, " ", who="alice")
    # a line break in the reason printed a forged move of its own in `recflow models history`
    with pytest.raises(
        ValueError, match=r"the reason for moving the champion of refuse is one line: it holds '\\n'"
    ):
        registry.promote("refuse", 1, "roll back\n   4  2026-01-01  v9 -> v9  admin  forged", who="alice")
    with pytest.raises(ValueError, match=r"has 501 characters, over 500"):
        registry.promote("refuse", 1, "x" * 501, who="alice")
    with pytest.raises(ValueError, match=r"is one line: it holds '\\u2028'"):  # a line separator
        registry.promote("refuse", 1, "roll back\u2028forged", who="alice")
    require_reason("refuse", 1, "roll back\u00a0— CTR drop, see INC-12 👩\u200d💻")  # a sentence's characters
    assert moves(registry, "refuse") == [(1, None, 1, "dag/run-1")]


def test_a_clean_publication_runs_every_step_in_order(home: Settings, model_uri: str) -> None:
    steps: list[str] = []
    published = publish(home, model_uri, "clean", "clean-job-1", "run-1", on_step=steps.append)
    assert published == {"name": "clean", "version": 1, "aliases": ["champion"]}
    assert steps == list(ALL_STEPS)
    registry = MlflowRegistry(home)
    champion = registry.get_by_alias("clean")
    assert champion is not None and champion.complete
    assert champion.metrics == {"hr@10": 0.5, "ndcg@10": 0.25}, "the evaluation's user count is not a metric"
    assert champion.lineage == {
        "snapshot_id": "s1",
        "airflow_dag_id": "dag",
        "airflow_run_id": "run-1",
        "training_job_name": "clean-job-1",
    }
    [move] = registry.champion_history("clean")
    assert move["reason"] == "promoted by the gate of run-1"
    assert datetime.fromisoformat(move["at"]).utcoffset() is not None


@pytest.mark.parametrize("with_previous_champion", [True, False], ids=["over-a-champion", "first-version"])
@pytest.mark.parametrize("step", ALL_STEPS)
def test_a_retry_after_a_crash_at_any_step_leaves_one_complete_version(
    home: Settings, model_uri: str, step: str, with_previous_champion: bool
) -> None:
    name = f"faults-{step}-{with_previous_champion}".replace("_", "-")
    previous: list[tuple[Any, ...]] = []
    if with_previous_champion:
        publish(home, model_uri, name, f"{name}-job-0", "run-0")
        previous = [(1, None, 1, "dag/run-0")]
    version = len(previous) + 1
    job = f"{name}-job-1"

    with pytest.raises(InjectedFault):
        publish(home, model_uri, name, job, "run-1", on_step=fail_after(step))

    registry = MlflowRegistry(home)
    check_champion_after_crash(registry, name, step, version, with_previous_champion)
    assert len(runs_of(registry, job)) <= 1
    assert len(registry.list_versions(name)) <= version

    published = publish(home, model_uri, name, job, "run-1")

    assert published == {"name": name, "version": version, "aliases": ["champion"]}
    versions = registry.list_versions(name)
    assert [(v.version, v.complete, v.lineage["training_job_name"]) for v in versions][-1] == (
        version,
        True,
        job,
    )
    assert len(versions) == version and all(v.complete for v in versions), "no orphan or incomplete version"
    [run] = runs_of(registry, job)
    assert run.info.status == "FINISHED" and run.data.tags["recflow.complete"] == "true"
    assert versions[-1].run_id == run.info.run_id
    assert len(run.data.metrics) == 2 and set(run.data.params) == {"epochs"}
    history = registry.client.get_metric_history(run.info.run_id, "hr_at_10")
    assert len(history) == 1, "a retry logs no metric twice"
    assert moves(registry, name) == [*previous, (version, version - 1 or None, version, "dag/run-1")]
    assert PENDING_TAG not in registry.client.get_registered_model(name).tags
    files = {p.name for p in Path(run.info.artifact_uri.removeprefix("file://"), "model").iterdir()}
    assert {"saved_model.pb", "variables"} <= files


def test_publishing_a_job_twice_is_one_version_and_champion_stays(home: Settings, model_uri: str) -> None:
    first = publish(home, model_uri, "twice", "twice-job-1", "run-1")
    steps: list[str] = []
    again = publish(home, model_uri, "twice", "twice-job-1", "run-1", on_step=steps.append)
    from_another_dag_run = publish(home, model_uri, "twice", "twice-job-1", "run-2")

    assert first == again == from_another_dag_run == {"name": "twice", "version": 1, "aliases": ["champion"]}
    assert steps == list(ALL_STEPS)
    registry = MlflowRegistry(home)
    assert [v.version for v in registry.list_versions("twice")] == [1]
    assert len(runs_of(registry, "twice-job-1")) == 1
    assert moves(registry, "twice") == [(1, None, 1, "dag/run-1")]


def test_a_retried_publication_does_not_undo_a_rollback(home: Settings, model_uri: str) -> None:
    publish(home, model_uri, "undo", "undo-job-1", "run-1")
    publish(home, model_uri, "undo", "undo-job-2", "run-2")
    registry = MlflowRegistry(home)
    registry.promote("undo", 1, "version 2 recommends stale pins", who="alice")

    retried = publish(home, model_uri, "undo", "undo-job-2", "run-2")

    assert retried == {"name": "undo", "version": 2, "aliases": []}
    champion = registry.get_by_alias("undo")
    assert champion is not None and champion.version == 1


def test_promote_rolls_back_and_forward_and_history_records_every_move(
    home: Settings, model_uri: str
) -> None:
    publish(home, model_uri, "moves", "moves-job-1", "run-1")
    publish(home, model_uri, "moves", "moves-job-2", "run-2")
    registry = MlflowRegistry(home)

    back = registry.promote("moves", 1, "version 2 recommends stale pins", who="alice")
    assert back is not None
    assert {k: v for k, v in back.items() if k != "at"} == {
        "seq": 3,
        "version": 1,
        "previous_version": 2,
        "who": "alice",
        "reason": "version 2 recommends stale pins",
        "by_hand": True,
    }
    champion = registry.get_by_alias("moves")
    assert champion is not None and (champion.version, champion.aliases) == (1, ["champion"])
    assert registry.promote("moves", 1, "still broken", who="alice") is None, "already champion: no move"
    forward = registry.promote("moves", 2, "the stale pins are fixed upstream", who="bob")
    assert forward is not None and forward["previous_version"] == 1

    check_recorded_moves(registry, back, forward)


def test_a_rolled_back_version_is_made_champion_again_only_by_a_person(
    home: Settings, model_uri: str
) -> None:
    registry = MlflowRegistry(home)
    check_a_rolled_back_version_waits_for_a_person(
        home, model_uri, registry, lambda name: alias_of(registry, name)
    )


def test_promote_refuses_unknown_and_incomplete_versions(home: Settings, model_uri: str) -> None:
    check_promote_refusals(home, model_uri, MlflowRegistry(home))


def recorded_moves(registry: MlflowRegistry, name: str) -> list[dict[str, Any]]:
    """The moves recorded as the registered model's tags, by number (read with MLflow's client)."""
    tags = registry.client.get_registered_model(name).tags
    assert PENDING_TAG not in tags, "no move left half done"
    return sorted(
        (json.loads(v) for k, v in tags.items() if k.startswith("recflow.champion_history.")),
        key=lambda m: int(m["seq"]),
    )


def alias_of(registry: MlflowRegistry, name: str) -> int | None:
    version = registry.client.get_registered_model(name).aliases.get("champion")
    return None if version is None else int(version)


@pytest.mark.parametrize("step", ALL_STEPS)
def test_a_rollback_during_a_publication_is_the_last_move(home: Settings, model_uri: str, step: str) -> None:
    registry = MlflowRegistry(home)
    check_a_rollback_during_a_publication(
        home,
        model_uri,
        publish,
        lambda: MlflowRegistry(home),
        lambda name: recorded_moves(registry, name),
        lambda name: alias_of(registry, name),
        step,
    )


def test_a_publication_leaves_a_champion_moved_since_its_evaluation(home: Settings, model_uri: str) -> None:
    registry = MlflowRegistry(home)
    check_a_publication_expecting_another_champion(
        home, model_uri, registry, lambda name: alias_of(registry, name)
    )


def test_an_empty_listing_names_the_registry_it_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A registry with no versions looks the same as the wrong registry (the default backend when
    the models are in SageMaker, another home): the line names the store and the backend setting."""
    from recflow import cli

    home = tmp_path / "empty-home"
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    MlflowRegistry(Settings.from_env({"RECFLOW_HOME": str(home)})).list_versions()  # a registry, empty
    assert cli.main(["models", "list"]) == 0
    said = capsys.readouterr().out.strip()
    database = home / "mlflow" / "mlflow.db"
    assert database.is_file(), sorted(p.name for p in home.rglob("*"))
    assert said.startswith("no registered model versions in the model registry's store sqlite:///"), said
    assert str(database) in said and said.endswith("(RECFLOW_REGISTRY_BACKEND=mlflow)"), said


def test_history_prints_each_move_on_one_line_whatever_was_recorded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A reason recorded before reasons were checked (or by another client of the registry) is shown
    escaped: a line break in it printed a line that reads as another move."""
    from recflow import cli
    from recflow.cli import models

    recorded = [
        {"seq": 1, "at": "2026-01-01T00:00:00+00:00", "previous_version": None, "version": 1, "who": "dag/r"},
        {"seq": 2, "at": "2026-01-02T00:00:00+00:00", "previous_version": 1, "version": 1, "who": "eve"},
    ]
    recorded[0]["reason"] = "first"
    recorded[1]["reason"] = "roll back\n   3  2026-01-01  v9 -> v9  admin  forged"

    class _Registry:
        def champion_history(self, name: str) -> list[dict[str, object]]:
            return recorded

    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path))
    monkeypatch.setattr(models, "require_registry", lambda settings: None)
    monkeypatch.setattr(models, "registry_for", lambda settings: _Registry())
    assert cli.main(["models", "history", "--name", "m"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].endswith("eve  roll back\\n   3  2026-01-01  v9 -> v9  admin  forged")
