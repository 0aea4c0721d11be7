"""Both DAGs end to end in the production profile, through the scheduler, on production-shaped services.

Airflow's metadata in PostgreSQL, CeleryExecutor on Redis with two workers (each in its own
directories), the warehouse in PostgreSQL, artifacts in S3, training through the SageMaker API and
the champion in the SageMaker Model Registry (moto's server, extended to run training jobs:
``tests/services/sagemaker_server.py``). The DAG files are the embedded profile's, unchanged.

Checked: both DAGs succeed; both workers ran tasks; the marts in PostgreSQL equal those the
embedded (DuckDB) profile builds from the same landing files, by content digest; the snapshot
and the model lie in S3; the training job went through SageMaker's API and its task waited
deferred (no worker slot); the champion is an ``Approved`` model package.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from recflow.core.config import Settings
from recflow.stack.ports import free_port_block
from tests.services.aws import create_bucket, production_env, start_sagemaker_server
from tests.services.cluster import celery_workers, describe

DAYS = [date(2026, 3, 1), date(2026, 3, 2)]
MODEL = "recsys-services"
MARTS = ("fct_engagements", "dim_users", "dim_pins", "training_interactions")
TIMEOUT = 1500.0


def _redis_db() -> int:
    """A Redis database of its own (1..15) for this run's broker, emptied before use."""
    import redis

    index = 1 + uuid.uuid4().int % 15
    redis.Redis(host="127.0.0.1", port=6379, db=index).flushdb()
    return index


@pytest.fixture
def production(
    tmp_path: Path, pg_database_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, Path]]:
    """The production profile's environment in this process (the components inherit it)."""
    airflow_db, warehouse_db, mlflow_db, incidents_db = (pg_database_factory() for _ in range(4))
    # a password, as a real warehouse has (the profile's password variable must be set; trust auth ignores it)
    warehouse_db = warehouse_db.replace("//postgres@", "//postgres:unused-here@")
    broker = _redis_db()
    server = start_sagemaker_server(tmp_path / "aws")
    try:
        bucket = f"recflow-{uuid.uuid4().hex[:12]}"
        create_bucket(server.url, bucket)
        env = {
            **production_env(server.url, home=tmp_path / "scheduler", bucket=bucket),
            "RECFLOW_PROFILE": "production",
            "RECFLOW_LANDING_DIR": str(tmp_path / "landing"),
            "RECFLOW_DBT_TARGET": "postgres",
            "RECFLOW_WAREHOUSE_URL": warehouse_db,
            # tasks read the warehouse from the Airflow connection (dbt's build included)
            "AIRFLOW_CONN_RECFLOW_WAREHOUSE": warehouse_db,
            "RECFLOW_MLFLOW_TRACKING_URI": mlflow_db,
            "RECFLOW_INCIDENTS_URL": incidents_db,
            "RECFLOW_REGISTRY_BACKEND": "sagemaker",
            "RECFLOW_MODEL_NAME": MODEL,
            "RECFLOW_GATE_MIN_HR_AT_10": "0.05",
            "RECFLOW_GATE_MIN_NDCG_AT_10": "0.02",
            "RECFLOW_WAREHOUSE_POOL_SLOTS": "2",
            "RECFLOW_AIRFLOW_API_PORT": str(free_port_block()),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db.replace(
                "postgresql://", "postgresql+psycopg2://"
            ),
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{broker}",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+"
            + airflow_db.replace("postgresql://", "postgresql+psycopg2://"),
            "MLFLOW_S3_ENDPOINT_URL": server.url,
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield Settings.from_env(), tmp_path
    finally:
        server.stop()


class TaskStates:
    """Watches the training run's task instances while the pipeline runs: the states they went through."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.seen: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        from recflow.stack.api import AirflowClient

        client = None
        while not self._stop.is_set():
            try:
                client = client or AirflowClient.login(self.settings)
                for run in client.runs("recsys_train_and_publish"):
                    for ti in client.task_instances("recsys_train_and_publish", run["dag_run_id"]):
                        self.seen.setdefault(ti["task_id"], set()).add(str(ti.get("state")))
            except Exception:  # the API server is not up yet, or is stopping
                client = None
            self._stop.wait(2)

    def __enter__(self) -> TaskStates:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _embedded_marts(tmp_path: Path, landing: Path) -> dict[str, Any]:
    """The same landing files through the embedded profile's steps (DuckDB), without Airflow."""
    import duckdb

    from recflow.ingest.days import stage_and_audit
    from recflow.warehouse.checksum import table_digest
    from tests.integration.conftest import build_marts

    settings = Settings.from_env(
        {"RECFLOW_HOME": str(tmp_path / "embedded"), "RECFLOW_LANDING_DIR": str(landing)}
    )
    for day in DAYS:  # one day per run, as the DAG's backfill runs them
        stage_and_audit(settings, [day], run_id=f"embedded-{day}")
        build_marts(settings)
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        return {m: table_digest(con, f"analytics.{m}") for m in MARTS}
    finally:
        con.close()


def test_both_dags_run_in_the_production_profile_on_two_celery_workers(
    production: tuple[Settings, Path],
) -> None:
    import boto3
    import sqlalchemy

    from recflow.producers.generate import GeneratorConfig, generate
    from recflow.stack.demo import run_pipeline, setup
    from recflow.warehouse.checksum import table_digest

    settings, root = production
    generate(settings.landing_dir, GeneratorConfig(start=DAYS[0], days=len(DAYS), seed=11))
    setup(settings, echo=print)
    with celery_workers(settings, root / "workers") as workers, TaskStates(settings) as states:
        result = run_pipeline(settings, DAYS, echo=print, timeout=TIMEOUT)
        assert all(w.process.poll() is None for w in workers), "a worker died during the run"
    ran = describe(workers)
    assert result.ok, f"runs: {result.warehouse_runs + result.train_runs}\nworkers: {ran}"

    # every task ran on some worker, both workers took part, and no task needed the other's files
    assert all(w.ran() for w in workers), f"one worker ran nothing: {ran}"
    assert "deferred" in states.seen.get("train", set()), f"train never deferred: {states.seen}"

    # the marts in PostgreSQL are those DuckDB builds from the same landing files
    engine = sqlalchemy.create_engine(settings.warehouse_url or "")
    with engine.connect() as con:
        postgres = {m: table_digest(con, f"analytics.{m}") for m in MARTS}
    engine.dispose()
    assert postgres == _embedded_marts(root, settings.landing_dir)

    # the snapshot and the model in S3; the job through SageMaker's API; the champion approved
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)
    bucket, prefix = settings.artifacts_uri.removeprefix("s3://").split("/", 1)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    assert any(k.startswith(f"{prefix}/snapshots/") for k in keys), keys
    assert result.training is not None
    assert result.training["model_uri"].startswith(f"s3://{bucket}/{prefix}/models/")
    sagemaker = boto3.client(
        "sagemaker", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region
    )
    job = sagemaker.describe_training_job(TrainingJobName=result.training["job_name"])
    assert job["TrainingJobStatus"] == "Completed"
    approved = sagemaker.list_model_packages(ModelPackageGroupName=MODEL, ModelApprovalStatus="Approved")
    assert len(approved["ModelPackageSummaryList"]) == 1
