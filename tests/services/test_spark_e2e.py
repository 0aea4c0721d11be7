"""Both DAGs end to end through the scheduler with the warehouse on Spark: a two-worker standalone cluster.

The embedded stack (LocalExecutor, local artifacts and training jobs, MLflow on SQLite) with
``RECFLOW_WAREHOUSE_URL`` on the cluster's Thrift server and ``RECFLOW_DBT_TARGET=spark``: every
warehouse step (land, the audit and its Great Expectations judge, dbt's one build reading the
``recflow_warehouse`` connection through the committed profile, the marts suite, ``snapshot``)
runs on Spark. The DAG files are unchanged.

Checked: both DAGs succeed; every mart equals what the embedded DuckDB profile builds from the same
landing files, by content digest (each engine's rows fetched as Arrow, compared engine-independently);
the snapshot the job trained on was taken from Spark and holds the marts' rows; a champion is
registered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from recflow.core.config import Settings
from recflow.stack.ports import free_port_block

DAYS = [date(2026, 3, 1), date(2026, 3, 2)]
MARTS = ("fct_engagements", "dim_users", "dim_pins", "training_interactions")
TIMEOUT = 1500.0


@pytest.fixture
def spark_profile(
    tmp_path: Path, spark_warehouse: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, Path]]:
    """The embedded profile with its warehouse on the Spark cluster, in this process's environment."""
    env = {
        **spark_warehouse.env,
        "RECFLOW_HOME": str(tmp_path / "scheduler"),
        "RECFLOW_LANDING_DIR": str(tmp_path / "landing"),
        "RECFLOW_DBT_TARGET": "spark",
        "RECFLOW_WAREHOUSE_URL": spark_warehouse.warehouse_url,
        # no Airflow connection: the two settings alone, as the README's Spark path exports them (the embedded
        # stack derives `recflow_warehouse` from the URL, which dbt's build reads too)
        "RECFLOW_MODEL_NAME": "recsys-spark",
        "RECFLOW_GATE_MIN_HR_AT_10": "0.05",
        "RECFLOW_GATE_MIN_NDCG_AT_10": "0.02",
        "RECFLOW_AIRFLOW_API_PORT": str(free_port_block()),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield Settings.from_env(), tmp_path


def _digests(settings: Settings) -> dict[str, Any]:
    """Each mart's content digest, its rows fetched as Arrow through recflow's warehouse interface."""
    from recflow.warehouse import connect
    from recflow.warehouse.checksum import arrow_digest

    with connect(settings, read_only=True) as con:
        return {m: arrow_digest(con.fetch_arrow(f"select * from analytics.{m}")) for m in MARTS}


def _embedded_digests(tmp_path: Path, landing: Path) -> dict[str, Any]:
    """The same landing files through the embedded profile's steps (DuckDB), without Airflow."""
    from recflow.ingest.days import stage_and_audit
    from tests.integration.conftest import build_marts

    settings = Settings.from_env(
        {"RECFLOW_HOME": str(tmp_path / "embedded"), "RECFLOW_LANDING_DIR": str(landing)}
    )
    for day in DAYS:  # one day per run, as the DAG's backfill runs them
        stage_and_audit(settings, [day], run_id=f"embedded-{day}")
        build_marts(settings)
    return _digests(settings)


def test_both_dags_run_with_the_warehouse_on_a_two_worker_spark_cluster(
    spark_profile: tuple[Settings, Path],
) -> None:
    import pyarrow.parquet as pq

    from recflow.producers.generate import GeneratorConfig, generate
    from recflow.stack.demo import run_pipeline, setup

    settings, root = spark_profile
    generate(settings.landing_dir, GeneratorConfig(start=DAYS[0], days=len(DAYS), seed=11))
    setup(settings, echo=print)
    result = run_pipeline(settings, DAYS, echo=print, timeout=TIMEOUT)
    assert result.ok, f"runs: {result.warehouse_runs + result.train_runs}"

    spark = _digests(settings)
    assert spark == _embedded_digests(root, settings.landing_dir)

    # the job trained on a snapshot of Spark's marts: its train rows are the mart's train rows
    assert result.training is not None
    manifests = sorted((settings.home / "artifacts" / "snapshots").glob("*/manifest.json"))
    assert len(manifests) == 1, manifests
    manifest = json.loads(manifests[0].read_text())
    train = pq.read_table(manifest["train_uri"].removeprefix("file://"))
    assert train.num_rows == manifest["rows"]["train"] > 0
    from recflow.warehouse import connect

    with connect(settings, read_only=True) as con:
        row = con.execute(
            "select count(*) from analytics.training_interactions where split = 'train'"
        ).fetchone()
    assert row is not None and int(row[0]) == train.num_rows
