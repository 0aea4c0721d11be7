"""``recflow gc`` on an S3 artifact root (moto's server): it lists and deletes objects of the
pipeline's own prefixes only, whole items, never an item whose name merely starts the same."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recflow.cli import main as cli_main
from recflow.core.artifacts import S3ArtifactStore, store_for
from recflow.core.config import Settings
from tests.loopback import moto_server

pytestmark = pytest.mark.production

BUCKET = "recflow-gc"
ROOT = f"s3://{BUCKET}/recflow"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REFERENCED_JOB = "recsys-train-ref"


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    with moto_server() as url:
        env = {
            **CREDENTIALS,
            "RECFLOW_HOME": str(tmp_path / "home"),
            "RECFLOW_ARTIFACT_ROOT": ROOT,
            "RECFLOW_AWS_ENDPOINT_URL": url,
            "RECFLOW_RETENTION_KEEP_LAST": "1",
            "RECFLOW_RETENTION_MIN_AGE_HOURS": "0",  # S3 keeps its own LastModified: nothing can be backdated
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings.from_env(env)
        store = store_for(settings)
        assert isinstance(store, S3ArtifactStore)
        store.client.create_bucket(Bucket=BUCKET)
        yield settings


def _keys(settings: Settings) -> dict[str, Any]:
    client = store_for(settings).client  # type: ignore[attr-defined]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {o["Key"]: (o["ETag"], o["LastModified"]) for page in pages for o in page.get("Contents", [])}


def _put(settings: Settings, *keys: str) -> None:
    store = store_for(settings)
    for key in keys:
        store.put_bytes(b"x" * 100, f"{ROOT}/{key}")


def _job_items(job: str) -> list[str]:
    return [
        f"checkpoints/{job}/ckpt-1.index",
        f"models/{job}/output/model.tar.gz",
        f"serving/{job}/model.tar.gz",
        f"evaluations/{job}.json",
    ]


def test_gc_on_s3_deletes_whole_unreferenced_items_and_nothing_else(
    aws: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from recflow.registry import MlflowRegistry

    _put(
        aws,
        "snapshots/s-ref/train/interactions.parquet",
        "snapshots/s-ref/manifest.json",
        *_job_items(REFERENCED_JOB),
        "snapshots/s-a/train/interactions.parquet",
        "snapshots/s-old/train/interactions.parquet",
        *_job_items("job-x"),
        "snapshots-archive/kept-by-someone-else.parquet",
        "mlflow/1/abc/artifacts/model/saved_model.pb",
        "locks/champion-recsys-demo.json",
    )
    time.sleep(1.2)  # LastModified has a resolution of a second: these are the most recent
    _put(aws, "snapshots/s-ab/train/interactions.parquet", *_job_items("job-y"))
    MlflowRegistry(aws)  # creates the store
    client = MlflowClient(tracking_uri=aws.mlflow_uri, registry_uri=aws.mlflow_uri)
    client.create_registered_model("recsys-demo")
    client.create_model_version(
        "recsys-demo",
        f"{ROOT}/serving/{REFERENCED_JOB}/model.tar.gz",
        tags={"lineage.snapshot_id": "s-ref", "lineage.training_job_name": REFERENCED_JOB},
    )
    before = _keys(aws)

    assert cli_main(["gc", "--dry-run", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    expected = {
        ("snapshots", "s-a", f"{ROOT}/snapshots/s-a"),
        ("snapshots", "s-old", f"{ROOT}/snapshots/s-old"),
        ("checkpoints", "job-x", f"{ROOT}/checkpoints/job-x"),
        ("models", "job-x", f"{ROOT}/models/job-x"),
        ("serving", "job-x", f"{ROOT}/serving/job-x"),
        ("evaluations", "job-x", f"{ROOT}/evaluations/job-x.json"),
    }
    assert {(i["kind"], i["name"], i["uri"]) for i in listed} == expected
    assert all(i["bytes"] == 100 * i["files"] for i in listed)
    assert _keys(aws) == before, "a dry run changed the bucket"

    assert cli_main(["gc"]) == 0
    assert "deleted 6 item(s)" in capsys.readouterr().out
    gone = {
        "snapshots/s-a/train/interactions.parquet",
        "snapshots/s-old/train/interactions.parquet",
        *_job_items("job-x"),
    }
    assert set(_keys(aws)) == set(before) - {f"recflow/{key}" for key in gone}
    assert "recflow/snapshots/s-ab/train/interactions.parquet" in _keys(aws), "s-a's deletion spared s-ab"
