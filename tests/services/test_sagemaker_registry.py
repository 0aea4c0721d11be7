"""The SageMaker Model Registry backend against moto's server over HTTP: the MLflow backend's contract.

Each test publishes under a model name of its own into one moto server and bucket for the
module. A failure is injected through ``on_step``, as in ``tests/integration/test_registry_faults.py``:
the callback raises right after step k, as a crash there would.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from recflow.core.artifacts import S3ArtifactStore, join, store_for
from recflow.core.config import Settings
from recflow.core.errors import ConfigError, RegistryError
from recflow.publishing.card import model_card
from recflow.publishing.publish import publish_training_job
from recflow.registry import MlflowRegistry, registry_for
from recflow.registry.sagemaker import APPROVED, REJECTED, SEQ_PROPERTY, SageMakerRegistry
from recflow.registry.sagemaker_records import COMPLETE_PROPERTY, JOB_PROPERTY
from tests.integration.test_registry_faults import (
    ALL_STEPS,
    InjectedFault,
    check_a_publication_expecting_another_champion,
    check_a_rollback_during_a_publication,
    check_a_rolled_back_version_waits_for_a_person,
    check_champion_after_crash,
    check_promote_refusals,
    check_recorded_moves,
    fail_after,
)
from tests.loopback import moto_server

BUCKET = "recflow-registry"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
MODEL_FILES = {
    "saved_model.pb": b"\x08\x01 a serialized graph",
    "variables/variables.index": b"index",
    "variables/variables.data-00000-of-00001": b"\x00\x01\x02 weights",
    "metadata.json": json.dumps(
        {"history": [{"loss": 2.5, "seconds": 1.0}, {"loss": 1.5, "seconds": 0.9}]}
    ).encode(),
}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env(
        {
            "RECFLOW_HOME": str(tmp_path),
            "RECFLOW_ARTIFACT_ROOT": f"s3://{BUCKET}/recflow",
            "RECFLOW_REGISTRY_BACKEND": "sagemaker",
            "RECFLOW_AWS_ENDPOINT_URL": moto_url,
        }
    )
    store = store_for(settings)
    assert isinstance(store, S3ArtifactStore)
    if BUCKET not in [b["Name"] for b in store.client.list_buckets().get("Buckets", [])]:
        store.client.create_bucket(Bucket=BUCKET)
    return settings


@pytest.fixture
def model_uri(aws: Settings, tmp_path: Path) -> str:
    """A training job's ``model.tar.gz`` in S3, as the production profile leaves it."""
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for rel, data in MODEL_FILES.items():
            path = tmp_path / "model" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for path in sorted((tmp_path / "model").iterdir()):
            tar.add(path, arcname=path.name)
    return store_for(aws).put_file(
        archive, join(aws.artifacts_uri, "models", "tiny", "output", "model.tar.gz")
    )


def publish(
    settings: Settings,
    model_uri: str,
    name: str,
    job: str,
    run: str,
    on_step: Callable[[str], None] | None = None,
    metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    return publish_training_job(
        settings,
        name=name,
        model_uri=model_uri,
        training_job=job,
        metrics=metrics or {"hr@10": 0.5, "ndcg@10": 0.25, "users": 8.0},
        params={"epochs": "1"},
        lineage={"snapshot_id": "s1", "airflow_dag_id": "dag", "airflow_run_id": run},
        reason=f"promoted by the gate of {run}",
        on_step=on_step,
        run_tags={"gate.promote": "true", "gate.reason": f"promoted by the gate of {run}"},
    )


def packages(registry: SageMakerRegistry, name: str) -> dict[int, dict[str, Any]]:
    """The group's packages as SageMaker describes them, by version."""
    return registry._packages(name)


def approvals(registry: SageMakerRegistry, name: str) -> dict[int, str]:
    return {v: p["ModelApprovalStatus"] for v, p in packages(registry, name).items()}


def moves(registry: SageMakerRegistry, name: str) -> list[tuple[Any, ...]]:
    return [
        (m["seq"], m["previous_version"], m["version"], m["who"]) for m in registry.champion_history(name)
    ]


def sagemaker(settings: Settings) -> SageMakerRegistry:
    registry = registry_for(settings)
    assert isinstance(registry, SageMakerRegistry)
    return registry


def test_registry_for_picks_the_backend_and_sagemaker_needs_s3(aws: Settings, tmp_path: Path) -> None:
    assert isinstance(registry_for(aws), SageMakerRegistry)
    embedded = Settings.from_env({"RECFLOW_HOME": str(tmp_path / "embedded")})
    assert isinstance(registry_for(embedded), MlflowRegistry)
    with pytest.raises(ConfigError, match="RECFLOW_ARTIFACT_ROOT must be s3://"):
        SageMakerRegistry(
            Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_REGISTRY_BACKEND": "sagemaker"})
        )


def test_two_versions_are_two_packages_and_the_champion_is_the_approved_one(
    aws: Settings, model_uri: str, tmp_path: Path
) -> None:
    registry = sagemaker(aws)
    assert registry.get_by_alias("two") is None
    assert registry.list_versions("two") == []
    first = publish(aws, model_uri, "two", "two-job-1", "run-1")
    second = publish(aws, model_uri, "two", "two-job-2", "run-2", metrics={"hr@10": 0.6, "ndcg@10": 0.3})

    assert first == {"name": "two", "version": 1, "aliases": ["champion"]}
    assert second == {"name": "two", "version": 2, "aliases": ["champion"]}
    described = registry.client.describe_model_package_group(ModelPackageGroupName="two")
    assert described["ModelPackageGroupName"] == "two"
    assert approvals(registry, "two") == {1: REJECTED, 2: APPROVED}
    package = packages(registry, "two")[2]
    properties = package["CustomerMetadataProperties"]
    assert properties[JOB_PROPERTY] == "two-job-2" and properties[COMPLETE_PROPERTY] == "true"
    assert properties["lineage.snapshot_id"] == "s1" and properties["metric.hr@10"] == "0.6"
    assert properties[SEQ_PROPERTY] == "000002"
    assert "run-2" in package["ApprovalDescription"]
    [container] = package["InferenceSpecification"]["Containers"]
    archive = container["ModelDataUrl"]
    assert archive == f"s3://{BUCKET}/recflow/registry/two/two-job-2/model.tar.gz"
    record_uri = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    record = json.loads(store_for(aws).get_bytes(record_uri))
    assert record["metrics"] == {"hr@10": 0.6, "ndcg@10": 0.3}
    assert record["lineage"]["training_job_name"] == "two-job-2" and record["complete"] is True
    assert store_for(aws).exists(archive)

    champion = registry.get_by_alias("two")
    assert champion is not None and (champion.version, champion.complete, champion.source) == (
        2,
        True,
        archive,
    )
    assert champion.metrics == {"hr@10": 0.6, "ndcg@10": 0.3}, "the evaluation's user count is not a metric"
    assert champion.lineage == {
        "snapshot_id": "s1",
        "airflow_dag_id": "dag",
        "airflow_run_id": "run-2",
        "training_job_name": "two-job-2",
    }
    assert champion.params == {"epochs": "1"} and champion.run_tags["gate.promote"] == "true"
    listed = registry_for(aws).list_versions("two")
    assert [(v.version, v.aliases, v.complete) for v in listed] == [(1, [], True), (2, ["champion"], True)]
    assert ("two", 2) in [(v.name, v.version) for v in registry.list_versions()]
    assert moves(registry, "two") == [(1, None, 1, "dag/run-1"), (2, 1, 2, "dag/run-2")]

    out = registry.download(champion, tmp_path / "export")
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == MODEL_FILES
    with pytest.raises(FileExistsError, match="not empty"):
        registry.download(champion, tmp_path / "export")


def test_a_clean_publication_runs_every_step_in_order(aws: Settings, model_uri: str) -> None:
    steps: list[str] = []
    published = publish(aws, model_uri, "clean", "clean-job-1", "run-1", on_step=steps.append)
    assert published == {"name": "clean", "version": 1, "aliases": ["champion"]}
    assert steps == list(ALL_STEPS)
    [move] = sagemaker(aws).champion_history("clean")
    assert move["reason"] == "promoted by the gate of run-1"
    assert datetime.fromisoformat(move["at"]).utcoffset() is not None


@pytest.mark.parametrize("with_previous_champion", [True, False], ids=["over-a-champion", "first-version"])
@pytest.mark.parametrize("step", ALL_STEPS)
def test_a_retry_after_a_crash_at_any_step_leaves_one_complete_version(
    aws: Settings, model_uri: str, step: str, with_previous_champion: bool
) -> None:
    name = f"faults-{step}-{with_previous_champion}".replace("_", "-")
    previous: list[tuple[Any, ...]] = []
    if with_previous_champion:
        publish(aws, model_uri, name, f"{name}-job-0", "run-0")
        previous = [(1, None, 1, "dag/run-0")]
    version = len(previous) + 1
    job = f"{name}-job-1"

    with pytest.raises(InjectedFault):
        publish(aws, model_uri, name, job, "run-1", on_step=fail_after(step))

    registry = sagemaker(aws)
    check_champion_after_crash(registry, name, step, version, with_previous_champion)
    assert len(registry.list_versions(name)) <= version

    published = publish(aws, model_uri, name, job, "run-1")

    assert published == {"name": name, "version": version, "aliases": ["champion"]}
    versions = registry.list_versions(name)
    assert len(versions) == version and all(v.complete for v in versions), "no orphan or incomplete version"
    assert (versions[-1].version, versions[-1].lineage["training_job_name"]) == (version, job)
    assert versions[-1].metrics == {"hr@10": 0.5, "ndcg@10": 0.25}
    assert [p["CustomerMetadataProperties"][JOB_PROPERTY] for p in packages(registry, name).values()].count(
        job
    ) == 1
    assert approvals(registry, name) == {
        v: APPROVED if v == version else REJECTED for v in range(1, version + 1)
    }
    assert moves(registry, name) == [*previous, (version, version - 1 or None, version, "dag/run-1")]
    assert not store_for(aws).exists(f"s3://{BUCKET}/recflow/registry/{name}/champion/pending.json")


def test_publishing_a_job_twice_is_one_version_and_champion_stays(aws: Settings, model_uri: str) -> None:
    first = publish(aws, model_uri, "twice", "twice-job-1", "run-1")
    steps: list[str] = []
    again = publish(aws, model_uri, "twice", "twice-job-1", "run-1", on_step=steps.append)
    from_another_dag_run = publish(aws, model_uri, "twice", "twice-job-1", "run-2")

    assert first == again == from_another_dag_run == {"name": "twice", "version": 1, "aliases": ["champion"]}
    assert steps == list(ALL_STEPS)
    registry = sagemaker(aws)
    assert [v.version for v in registry.list_versions("twice")] == [1]
    assert approvals(registry, "twice") == {1: APPROVED}
    assert moves(registry, "twice") == [(1, None, 1, "dag/run-1")]


def test_a_republication_keeps_the_first_record_and_refuses_other_params(
    aws: Settings, model_uri: str
) -> None:
    publish(aws, model_uri, "kept", "kept-job-1", "run-1")
    publish(aws, model_uri, "kept", "kept-job-1", "run-2", metrics={"hr@10": 0.9, "recall@50": 0.7})
    info = sagemaker(aws).get_version("kept", 1)
    assert info.metrics == {"hr@10": 0.5, "ndcg@10": 0.25, "recall@50": 0.7}, (
        "kept, and the missing one added"
    )
    assert info.lineage["airflow_run_id"] == "run-1"
    with pytest.raises(RegistryError, match=r"already has other values for params epochs='1' \(now '2'\)"):
        registry_for(aws).publish(
            "kept", Path("unused"), {}, {"epochs": "2"}, {"training_job_name": "kept-job-1"}
        )


def test_a_retried_publication_does_not_undo_a_rollback(aws: Settings, model_uri: str) -> None:
    publish(aws, model_uri, "undo", "undo-job-1", "run-1")
    publish(aws, model_uri, "undo", "undo-job-2", "run-2")
    registry = sagemaker(aws)
    registry.promote("undo", 1, "version 2 recommends stale pins", who="alice")

    retried = publish(aws, model_uri, "undo", "undo-job-2", "run-2")

    assert retried == {"name": "undo", "version": 2, "aliases": []}
    champion = registry.get_by_alias("undo")
    assert champion is not None and champion.version == 1
    assert approvals(registry, "undo") == {1: APPROVED, 2: REJECTED}


def test_promote_rolls_back_and_forward_and_history_records_every_move(aws: Settings, model_uri: str) -> None:
    publish(aws, model_uri, "moves", "moves-job-1", "run-1")
    publish(aws, model_uri, "moves", "moves-job-2", "run-2")
    registry = sagemaker(aws)

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
    assert approvals(registry, "moves") == {1: APPROVED, 2: REJECTED}
    champion = registry.get_by_alias("moves")
    assert champion is not None and (champion.version, champion.aliases) == (1, ["champion"])
    assert registry.promote("moves", 1, "still broken", who="alice") is None, "already champion: no move"
    forward = registry.promote("moves", 2, "the stale pins are fixed upstream", who="bob")
    assert forward is not None and forward["previous_version"] == 1
    assert approvals(registry, "moves") == {1: REJECTED, 2: APPROVED}

    check_recorded_moves(registry, back, forward)


def test_promote_refuses_unknown_and_incomplete_versions(aws: Settings, model_uri: str) -> None:
    registry = sagemaker(aws)
    check_promote_refusals(aws, model_uri, registry)
    with pytest.raises(ValueError, match=r"is not a name SageMaker's Model Registry takes"):
        publish(aws, model_uri, "not_a_group_name", "job", "run-1")
    assert approvals(registry, "refuse") == {1: APPROVED, 2: "PendingManualApproval"}


def test_an_approval_made_outside_recflow_does_not_displace_the_champion(
    aws: Settings, model_uri: str
) -> None:
    publish(aws, model_uri, "console", "console-job-1", "run-1")
    publish(aws, model_uri, "console", "console-job-2", "run-2")
    registry = sagemaker(aws)
    registry.promote("console", 1, "roll back", who="alice")
    old = packages(registry, "console")[2]
    registry.client.update_model_package(
        ModelPackageArn=old["ModelPackageArn"],
        ModelApprovalStatus=APPROVED,
        ApprovalDescription="approved in the console",
        CustomerMetadataProperties={
            k: v for k, v in old["CustomerMetadataProperties"].items() if k != SEQ_PROPERTY
        },
    )

    champion = registry.get_by_alias("console")
    assert champion is not None and champion.version == 1, "the last recorded move wins"
    registry.promote("console", 2, "fixed", who="bob")
    assert approvals(registry, "console") == {1: REJECTED, 2: APPROVED}


def test_the_model_card_reads_the_sagemaker_record(aws: Settings, model_uri: str) -> None:
    publish(aws, model_uri, "card", "card-job-1", "run-1")
    card = model_card(aws, "card")
    assert (card["name"], card["version"], card["aliases"], card["complete"]) == (
        "card",
        1,
        ["champion"],
        True,
    )
    assert card["metrics"] == {"hr@10": 0.5, "ndcg@10": 0.25}
    assert card["gate"]["promote"] is True and card["hyperparameters"] == {"epochs": "1"}
    assert card["training"]["loss_per_epoch"] == [2.5, 1.5]
    prefix = f"s3://{BUCKET}/recflow/registry/card/card-job-1/pictures/"
    assert card["pictures"] == {
        "loss_curve": prefix + "loss_curve.png",
        "challenger_vs_champion": prefix + "challenger_vs_champion.png",
    }
    assert all(store_for(aws).exists(uri) for uri in card["pictures"].values())
    assert model_card(aws, "card", version=1)["version"] == 1
    with pytest.raises(RegistryError, match="card has no version 5"):
        model_card(aws, "card", version=5)
    with pytest.raises(RegistryError, match="no registered model named 'nobody'"):
        model_card(aws, "nobody")


def test_mlflow_on_postgresql_keeps_its_run_artifacts_under_the_s3_root(
    aws: Settings, model_uri: str, pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other backend in the production profile: tracking in PostgreSQL, artifacts in S3, so a
    second worker reads what the first wrote (MLflow reaches a non-AWS S3 through its own variable)."""
    import dataclasses

    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", aws.aws_endpoint_url or "")
    settings = dataclasses.replace(aws, registry_backend="mlflow", mlflow_tracking_uri=pg_database)
    assert settings.mlflow_artifact_root == f"s3://{BUCKET}/recflow/mlflow"
    assert publish(settings, model_uri, "in-mlflow", "mlflow-job-1", "run-1") == {
        "name": "in-mlflow",
        "version": 1,
        "aliases": ["champion"],
    }
    keys = store_for(settings).list(f"s3://{BUCKET}/recflow/mlflow")
    assert any(k.endswith("/saved_model.pb") for k in keys), keys

    registry = registry_for(settings)
    assert isinstance(registry, MlflowRegistry)
    champion = registry.get_by_alias("in-mlflow")
    assert champion is not None and champion.version == 1
    fetched = registry.download(champion, tmp_path / "fetched")
    assert (fetched / "saved_model.pb").read_bytes() == MODEL_FILES["saved_model.pb"]


def recorded_moves(settings: Settings, name: str) -> list[dict[str, Any]]:
    """The moves recorded under ``registry/<name>/champion/history/``, by number (read from S3)."""
    store = store_for(settings)
    champion = f"s3://{BUCKET}/recflow/registry/{name}/champion"
    assert not store.exists(f"{champion}/pending.json"), "no move left half done"
    moves = [json.loads(store.get_bytes(uri)) for uri in store.list(f"{champion}/history/")]
    return sorted(moves, key=lambda m: int(m["seq"]))


def approved(registry: SageMakerRegistry, name: str) -> int | None:
    """The one approved package's version (asserting there is at most one)."""
    versions = [v for v, status in approvals(registry, name).items() if status == APPROVED]
    assert len(versions) <= 1, approvals(registry, name)
    return versions[0] if versions else None


@pytest.mark.parametrize("step", ALL_STEPS)
def test_a_rollback_during_a_publication_is_the_last_move(aws: Settings, model_uri: str, step: str) -> None:
    registry = sagemaker(aws)
    check_a_rollback_during_a_publication(
        aws,
        model_uri,
        publish,
        lambda: sagemaker(aws),
        lambda name: recorded_moves(aws, name),
        lambda name: approved(registry, name),
        step,
    )


def test_a_rolled_back_version_is_made_champion_again_only_by_a_person(aws: Settings, model_uri: str) -> None:
    registry = sagemaker(aws)
    check_a_rolled_back_version_waits_for_a_person(aws, model_uri, registry, lambda n: approved(registry, n))
    assert approvals(registry, "back") == {1: REJECTED, 2: REJECTED, 3: APPROVED}


def test_a_publication_leaves_a_champion_moved_since_its_evaluation(aws: Settings, model_uri: str) -> None:
    registry = sagemaker(aws)
    check_a_publication_expecting_another_champion(aws, model_uri, registry, lambda n: approved(registry, n))
    assert approvals(registry, "expect") == {
        1: REJECTED,
        2: REJECTED,
        3: "PendingManualApproval",
        4: APPROVED,
    }


LOCK_CHECKS = (
    "a_held_lock_refuses_in_time_naming_its_holder",
    "a_crashed_holders_lease_runs_out",
    "holders_exclude_each_other",
    "create_if_absent_writes_once",
)


@pytest.mark.parametrize("check", LOCK_CHECKS)
def test_the_lock_on_s3(aws: Settings, check: str) -> None:
    """The lock's checks of ``tests/integration/test_registry_lock.py`` with conditional writes to S3
    (imported here, so that the rest of this module does not need ``recflow.core.locks``)."""
    from tests.integration import test_registry_lock

    getattr(test_registry_lock, f"check_{check}")(aws)
