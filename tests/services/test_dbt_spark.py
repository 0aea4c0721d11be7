"""The dbt project runs unchanged on Spark (a two-worker cluster) and builds the same marts as on DuckDB.

One landing zone, with bad rows in a day; ``land`` and ``audit`` run on each engine (Spark reads
the landing files itself and publishes each day as a partition of ``raw.events``), then
``dbt build`` on each (``--target spark`` there). Every mart must have the same content digest on
both engines, read independently of recflow's warehouse code (Spark writes each mart to Parquet
itself; pyarrow reads it back), and no quarantined event reaches the marts. Then a new day is
landed and an earlier day is landed again with corrected rows (a republication): the marts are
equal again, and on Spark the incremental ``fct_engagements`` rewrote only those two days'
partitions (the files of the untouched day are the same files).
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
from tests.services.test_dbt_postgres import MARTS

DBT_DIR = Path(__file__).resolve().parents[2] / "dbt"
CFG = GeneratorConfig(start=date(2026, 2, 1), days=3, users=60, pins=200, topics=6, seed=23)
DAYS = [CFG.start + timedelta(days=i) for i in range(CFG.days)]


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


def _publish_and_build_both(
    duck: Settings, spark: Settings, cursor: Any, exchange: Path, days: list[date], run: str
) -> str:
    for settings in (duck, spark):
        stage_and_audit(settings, days, run_id=run)
    _dbt_build(duck)
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


def _null_users(landing: Path, day: date, rows: range) -> list[str]:
    """``rows`` of the day's first file lose their user_id (quarantined at the audit); their event ids."""
    path = sorted(partition_dir(landing, day).glob("*.parquet"))[0]
    table = pq.read_table(path)
    users = table.column("user_id").to_pylist()
    for i in rows:
        users[i] = None
    pq.write_table(
        table.set_column(table.schema.get_field_index("user_id"), "user_id", pa.array(users, pa.string())),
        path,
    )
    return [table.column("event_id")[i].as_py() for i in rows]


def _correct_day(landing: Path, day: date) -> None:
    """The producer republishes ``day`` with its first 25 rows withdrawn (a correction)."""
    for path in sorted(partition_dir(landing, day).glob("*.parquet"))[:1]:
        table = pq.read_table(path)
        keep = pc.greater_equal(pa.array(range(table.num_rows)), 25)
        pq.write_table(table.filter(keep), path)


def test_marts_are_the_same_on_duckdb_and_spark(tmp_path: Path, spark_warehouse: Any) -> None:
    duck = Settings.from_env({"RECFLOW_HOME": str(tmp_path / "duck")})
    spark = spark_warehouse.settings(
        RECFLOW_HOME=str(tmp_path / "spark"), RECFLOW_LANDING_DIR=str(duck.landing_dir)
    )
    assert spark.dbt_target == "spark"
    cursor = spark_cursor(spark_warehouse.warehouse_url)
    exchange = tmp_path / "exchange"
    generate(duck.landing_dir, CFG)
    quarantined = _null_users(duck.landing_dir, DAYS[1], range(100, 105))  # 0.5% of the day

    _publish_and_build_both(duck, spark, cursor, exchange, DAYS[:2], "first")
    cursor.execute(
        f"select count(*) from {ANALYTICS_SCHEMA}.fct_engagements where event_id in ({', '.join(repr(e) for e in quarantined)})"
    )
    assert cursor.fetchall() == [(0,)], "a quarantined event reached the marts"
    before = _partition_files(spark_warehouse.warehouse_dir)
    assert sorted(before) == [f"ds={d}" for d in DAYS[:2]], before

    # a new day, and the first day published again with corrected rows: only those two are rebuilt
    _correct_day(duck.landing_dir, DAYS[0])
    _publish_and_build_both(duck, spark, cursor, exchange, [DAYS[0]], "correction")
    _publish_and_build_both(duck, spark, cursor, exchange, DAYS[2:], "second")
    after = _partition_files(spark_warehouse.warehouse_dir)
    assert sorted(after) == [f"ds={d}" for d in DAYS], after
    assert after[f"ds={DAYS[1]}"] == before[f"ds={DAYS[1]}"], "the untouched day's files were rewritten"
    assert after[f"ds={DAYS[0]}"].isdisjoint(before[f"ds={DAYS[0]}"]), "the corrected day was not rebuilt"
    compiled = (
        spark.home / "dbt-target-spark" / "compiled" / "recflow" / "models" / "marts" / "fct_engagements.sql"
    ).read_text()
    assert "days_to_build" in compiled, "fct_engagements was not built incrementally on Spark"
    cursor.close()
