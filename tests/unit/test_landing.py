from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recflow.config import Settings
from recflow.generate import GeneratorConfig, generate
from recflow.landing import LandingError, land_partition, partition_dir
from recflow.warehouse import connect

DAY = date(2026, 1, 1)


@pytest.fixture
def landed(settings: Settings) -> Settings:
    generate(settings.landing_dir, GeneratorConfig(start=DAY, days=2, users=30, pins=120, topics=5))
    return settings


def _snapshot(settings: Settings) -> list[tuple[object, ...]]:
    with connect(settings, read_only=True) as con:
        return con.execute(
            "select ds, count(*), count(distinct event_id), min(event_ts), max(event_ts) "
            "from raw.events group by ds order by ds"
        ).fetchall()


def test_land_is_idempotent_per_day(landed: Settings) -> None:
    first = land_partition(landed, DAY)
    land_partition(landed, date(2026, 1, 2))
    before = _snapshot(landed)
    again = land_partition(landed, DAY)
    assert again.rows == first.rows
    assert _snapshot(landed) == before
    assert [row[1] for row in before] == [first.rows, before[1][1]]


def test_missing_partition_is_named(landed: Settings) -> None:
    with pytest.raises(LandingError, match=r"ds=2026-02-01 does not exist.*has not arrived"):
        land_partition(landed, date(2026, 2, 1))


def test_missing_column_names_file_and_column(landed: Settings) -> None:
    path = partition_dir(landed.landing_dir, DAY) / "part-00000.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["user_id"]), path)
    with pytest.raises(LandingError, match=r"part-00000.parquet: required column 'user_id' is missing"):
        land_partition(landed, DAY)


def test_wrong_type_names_file_column_and_types(landed: Settings) -> None:
    path = partition_dir(landed.landing_dir, DAY) / "part-00000.parquet"
    table = pq.read_table(path)
    bad = table.set_column(
        table.schema.get_field_index("event_ts"), "event_ts", pa.array(["soon"] * table.num_rows)
    )
    pq.write_table(bad, path)
    with pytest.raises(LandingError, match=r"column 'event_ts' has type string, expected timestamp"):
        land_partition(landed, DAY)


def test_optional_value_column_may_be_absent(landed: Settings) -> None:
    path = partition_dir(landed.landing_dir, DAY) / "part-00000.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["value"]), path)
    result = land_partition(landed, DAY)
    with connect(landed, read_only=True) as con:
        row = con.execute("select count(*), count(value) from raw.events").fetchone()
    assert row == (result.rows, 0)
