"""The incremental marts hold exactly what a full refresh builds from all history.

``analytics.fct_engagements`` is rebuilt day by day (the days published since its last
build). The days here reach it the hard ways: one landed before, but published after, a
later day (two runs interleaved), and one republished with a producer's correction
together with a new day. After each step the marts are built incrementally; at the end
``dbt build --full-refresh`` must give the same content, table by table, by checksum.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recflow.core.config import Settings
from recflow.ingest.contract import partition_dir
from recflow.ingest.days import audit_days, stage_and_audit
from recflow.ingest.land import stage_partitions
from recflow.producers.generate import GeneratorConfig, generate, write_partition
from recflow.stack.demo import warehouse_checksums
from recflow.warehouse import connect
from tests.integration.conftest import build_marts

pytestmark = pytest.mark.integration

CFG = GeneratorConfig(start=date(2026, 3, 1), days=4, users=60, pins=200, topics=6, seed=5)
DAYS = [CFG.start + timedelta(days=i) for i in range(CFG.days)]
MARTS = (
    "analytics.fct_engagements",
    "analytics.dim_users",
    "analytics.dim_pins",
    "analytics.training_interactions",
)


def _rows_per_day(settings: Settings, table: str) -> dict[date, int]:
    with connect(settings, read_only=True) as con:
        return dict(con.execute(f"select ds, count(*) from {table} group by ds order by ds").fetchall())  # type: ignore[arg-type]


def test_incremental_marts_equal_a_full_refresh(tmp_path: Path) -> None:
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path / "home")})
    generate(settings.landing_dir, CFG)
    d1, d2, d3, d4 = DAYS

    stage_and_audit(settings, [d1], run_id="run-d1")
    build_marts(settings)
    # d2's run lands first, d3's run lands, publishes and builds, then d2's run publishes and builds
    stage_partitions(settings, [d2])
    stage_and_audit(settings, [d3], run_id="run-d3")
    build_marts(settings)
    audit_days(settings, [d2], run_id="run-d2")
    build_marts(settings)
    assert _rows_per_day(settings, "analytics.fct_engagements") == _rows_per_day(settings, "raw.events")
    # the producer corrects d2 (drops a tenth of its events); a reload publishes it with the new d4
    landed = pq.read_table(partition_dir(settings.landing_dir, d2))
    corrected = landed.slice(0, landed.num_rows * 9 // 10)
    write_partition(partition_dir(settings.landing_dir, d2), [corrected])
    stage_and_audit(settings, [d2, d4], run_id="reload")
    build_marts(settings)

    published = _rows_per_day(settings, "raw.events")
    assert published[d2] == corrected.num_rows
    assert _rows_per_day(settings, "analytics.fct_engagements") == published
    incremental = warehouse_checksums(settings, MARTS)

    build_marts(settings, full_refresh=True)
    assert warehouse_checksums(settings, MARTS) == incremental
