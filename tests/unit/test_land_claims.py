"""One run of a day at a time, at ``land``: a run claims its days before it writes anything, and a
second run of a claimed day is refused, naming the run that holds it (no audit, no GX, no dbt)."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from recflow.core import errors
from recflow.core.config import Settings
from recflow.ingest.contract import partition_dir
from recflow.ingest.land import stage_partitions
from recflow.producers.generate import GeneratorConfig, generate, write_partition

DAY, NEXT = date(2026, 1, 1), date(2026, 1, 2)


@pytest.fixture
def landed(settings: Settings) -> Settings:
    generate(settings.landing_dir, GeneratorConfig(start=DAY, days=2, users=30, pins=120, topics=5))
    return settings


def _part(settings: Settings) -> Path:
    return partition_dir(settings.landing_dir, DAY) / "part-00000.parquet"


def _sql(settings: Settings, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(settings.duckdb_path)) as con:
        return con.execute(sql).fetchall()


def _claims(settings: Settings) -> list[tuple[object, ...]]:
    return _sql(settings, "select ds, run_id from raw_staging.day_claims order by ds")


def _staged(settings: Settings) -> list[tuple[object, ...]]:
    return _sql(settings, "select event_id, _source_row from raw_staging.events__20260101 order by all")


def test_a_second_run_cannot_land_a_day_another_run_holds(landed: Settings) -> None:
    stage_partitions(landed, [DAY], run_id="scheduled")
    stage_partitions(landed, [DAY], run_id="scheduled")  # the same run again: a retry, a cleared run
    staged = _staged(landed)
    assert len(staged) == pq.read_table(_part(landed)).num_rows
    write_partition(_part(landed).parent, [pq.read_table(_part(landed)).slice(0, 10)])  # a new export

    for other in ("reload", None):  # another run, or a bare land
        with pytest.raises(errors.RecflowError) as caught:
            stage_partitions(landed, [DAY, NEXT], run_id=other)
        err = caught.value
        assert isinstance(err, errors.DayClaimed), f"{type(err).__name__}: {err}"
        assert (err.ds, err.holder) == ("2026-01-01", "scheduled")
        assert "ds=2026-01-01 by run 'scheduled'" in str(err)
        assert "Let run 'scheduled' finish its audit, then clear this task" in str(err)
        release = "recflow claims release --ds 2026-01-01 --run 'scheduled'"
        assert f"release the day: `{release}`" in str(err)
    assert _staged(landed) == staged, "the other run wrote nothing over the staged day"
    assert _claims(landed) == [(DAY, "scheduled")], "nor claimed the day it could land"

    _sql(landed, "delete from raw_staging.day_claims where ds = '2026-01-01'")  # released (the command's
    # own test: tests/integration/test_one_run_per_day.py)
    stage_partitions(landed, [DAY, NEXT], run_id="reload")
    assert len(_staged(landed)) == 10
    assert _claims(landed) == [(DAY, "reload"), (NEXT, "reload")]


def test_a_stale_claim_is_taken_over(landed: Settings, caplog: pytest.LogCaptureFixture) -> None:
    stage_partitions(landed, [DAY], run_id="died")
    _sql(landed, "update raw_staging.day_claims set claimed_at = claimed_at - interval '7 hours'")
    with caplog.at_level(logging.WARNING, logger="recflow.ingest.claims"):
        stage_partitions(landed, [DAY], run_id="next")
    assert _claims(landed) == [(DAY, "next")]
    assert (
        "the claim of run 'died'" in caplog.text and "has expired; run next takes the day over" in caplog.text
    )


def test_a_refused_land_releases_the_runs_claims(landed: Settings) -> None:
    bad = partition_dir(landed.landing_dir, NEXT) / "part-00001.parquet"
    bad.write_bytes(b"")
    with pytest.raises(errors.ContractViolation):
        stage_partitions(landed, [DAY, NEXT], run_id="first")
    assert _claims(landed) == []  # nothing of the run is left to audit: the days are free
    bad.unlink()
    stage_partitions(landed, [DAY, NEXT], run_id="second")
    assert _claims(landed) == [(DAY, "second"), (NEXT, "second")]
