"""The dbt project runs unchanged on Spark (a two-worker cluster) and builds the same marts as on DuckDB.

As in ``test_dbt_postgres.py``: generate, land and audit run on the embedded DuckDB warehouse;
what they published (the tables dbt's sources read) is copied to the Spark cluster, the test's
stand-in for a publication (DuckDB writes Parquet, Spark makes its tables from the files,
``raw.events`` partitioned by ``ds``); ``dbt build --target spark`` runs there. Every mart must
have the same content digest on both engines, read independently of recflow's warehouse code
(Spark writes each mart to Parquet itself; pyarrow reads it back). Then a new day is published
and an earlier day is published again with corrected rows: the marts are equal again, and on
Spark the incremental ``fct_engagements`` rewrote only those two days' partitions (the files of
the untouched day are the same files).
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recflow.core.config import Settings, subprocess_env
from recflow.ingest.contract import partition_dir
from recflow.ingest.days import stage_and_audit
from recflow.producers.generate import GeneratorConfig, generate
from recflow.warehouse import ANALYTICS_SCHEMA
from recflow.warehouse.checksum import TableDigest, arrow_digest, table_digest
from tests.services.spark import spark_cursor
from tests.services.test_dbt_postgres import MARTS, _source_tables

DBT_DIR = Path(__file__).resolve().parents[2] / "dbt"
CFG = GeneratorConfig(start=date(2026, 2, 1), days=3, users=60, pins=200, topics=6, seed=23)
DAYS = [CFG.start + timedelta(days=i) for i in range(CFG.days)]
PARTITIONED = {"raw.events": "ds"}


def _dbt_build(settings: Settings) -> str:
    """``dbt build`` on the settings' target in a subprocess, as a worker runs it; its output."""
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")),
            "build",
            "--project-dir", str(DBT_DIR),
            "--profiles-dir", str(DBT_DIR),
            "--target", settings.dbt_target,
            "--target-path", str(settings.home / f"dbt-target-{settings.dbt_target}"),
            "--log-path", str(settings.home / f"dbt-logs-{settings.dbt_target}"),
        ],
        env=subprocess_env(settings.dbt_env()),
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result.stdout


def _publish_to_spark(duck: Settings, cursor: Any, exchange: Path) -> None:
    """Replace each raw table on Spark by DuckDB's, through Parquet files Spark reads itself."""
    with duckdb.connect(str(duck.duckdb_path), read_only=True) as con:
        for table in _source_tables():
            folder = exchange / table
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*.parquet"):
                old.unlink()
            con.execute(f"copy (select * from {table}) to '{folder / 'part-0.parquet'}' (format parquet)")
            schema = table.split(".")[0]
            partitioned = f"partitioned by ({PARTITIONED[table]})" if table in PARTITIONED else ""
            cursor.execute(f"create database if not exists {schema}")
            cursor.execute(f"drop table if exists {table}")
            cursor.execute(
                f"create table {table} using parquet {partitioned} as select * from parquet.`file://{folder}`"
            )


def _spark_digests(cursor: Any, exchange: Path) -> dict[str, TableDigest]:
    """Each mart as Spark writes it to Parquet, read back with pyarrow."""
    digests = {}
    for mart in MARTS:
        folder = exchange / "marts" / mart
        # this session may hold the files of the table dbt has since replaced (Spark caches them)
        cursor.execute(f"refresh table {ANALYTICS_SCHEMA}.{mart}")
        cursor.execute(
            f"insert overwrite directory 'file://{folder}' using parquet "
            f"select * from {ANALYTICS_SCHEMA}.{mart}"
        )
        digests[mart] = arrow_digest(pq.read_table(folder))
    return digests


def _duckdb_digests(duck: Settings) -> dict[str, TableDigest]:
    with duckdb.connect(str(duck.duckdb_path), read_only=True) as con:
        return {mart: table_digest(con, f"{ANALYTICS_SCHEMA}.{mart}") for mart in MARTS}


def _build_both(duck: Settings, spark: Settings, cursor: Any, exchange: Path) -> str:
    _dbt_build(duck)
    _publish_to_spark(duck, cursor, exchange)
    output = _dbt_build(spark)
    on_duckdb, on_spark = _duckdb_digests(duck), _spark_digests(cursor, exchange)
    assert all(d.rows > 0 for d in on_duckdb.values()), on_duckdb
    differing = {m: (on_duckdb[m], on_spark[m]) for m in MARTS if on_duckdb[m] != on_spark[m]}
    assert not differing, f"marts differ between DuckDB and Spark (duckdb, spark): {differing}"
    return output


def _partition_files(warehouse_dir: Path) -> dict[str, set[tuple[str, int]]]:
    """fct_engagements' data files on Spark, by partition: (name, mtime in ns)."""
    table = warehouse_dir / "analytics.db" / "fct_engagements"
    return {
        part.name: {(f.name, f.stat().st_mtime_ns) for f in part.glob("*.parquet")}
        for part in sorted(table.glob("ds=*"))
    }


def _correct_day(landing: Path, day: date) -> None:
    """The producer republishes ``day`` with its first 25 rows withdrawn (a correction)."""
    for path in sorted(partition_dir(landing, day).glob("*.parquet"))[:1]:
        table = pq.read_table(path)
        keep = pc.greater_equal(pa.array(range(table.num_rows)), 25)
        pq.write_table(table.filter(keep), path)


def test_marts_are_the_same_on_duckdb_and_spark(tmp_path: Path, spark_warehouse: Any) -> None:
    duck = Settings.from_env({"RECFLOW_HOME": str(tmp_path / "home")})
    spark = spark_warehouse.settings(RECFLOW_HOME=str(tmp_path / "home"))
    assert spark.dbt_target == "spark"
    cursor = spark_cursor(spark_warehouse.warehouse_url)
    exchange = tmp_path / "exchange"
    generate(duck.landing_dir, CFG)

    stage_and_audit(duck, DAYS[:2], run_id="first")
    _build_both(duck, spark, cursor, exchange)
    before = _partition_files(spark_warehouse.warehouse_dir)
    assert sorted(before) == [f"ds={d}" for d in DAYS[:2]], before

    # a new day, and the first day published again with corrected rows: only those two are rebuilt
    _correct_day(duck.landing_dir, DAYS[0])
    stage_and_audit(duck, [DAYS[0]], run_id="correction")
    stage_and_audit(duck, DAYS[2:], run_id="second")
    _build_both(duck, spark, cursor, exchange)
    after = _partition_files(spark_warehouse.warehouse_dir)
    assert sorted(after) == [f"ds={d}" for d in DAYS], after
    assert after[f"ds={DAYS[1]}"] == before[f"ds={DAYS[1]}"], "the untouched day's files were rewritten"
    assert after[f"ds={DAYS[0]}"].isdisjoint(before[f"ds={DAYS[0]}"]), "the corrected day was not rebuilt"
    compiled = (
        spark.home / "dbt-target-spark" / "compiled" / "recflow" / "models" / "marts" / "fct_engagements.sql"
    ).read_text()
    assert "days_to_build" in compiled, "fct_engagements was not built incrementally on Spark"
    cursor.close()
