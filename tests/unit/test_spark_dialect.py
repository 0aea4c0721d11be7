"""What each engine's dialect writes where Spark differs: the SQL each named difference renders."""

from __future__ import annotations

import datetime as dt

import pytest

from recflow.warehouse import DUCKDB, POSTGRES, SparkDialect
from recflow.warehouse.base import placeholders
from recflow.warehouse.spark import _bind

SPARK = SparkDialect("parquet")
COLUMNS = (
    ("ds", "date not null"),
    ("event_id", "varchar"),
    ("event_ts", "timestamptz"),
    ("rules", "varchar[]"),
)


def test_a_table_is_partitioned_by_day_on_spark_only() -> None:
    assert SPARK.create_table("raw.events", COLUMNS, partitioned_by=("ds",)) == (
        "create table if not exists raw.events (ds date, event_id string, event_ts timestamp, "
        "rules array<string>) using parquet partitioned by (ds)"
    )
    assert DUCKDB.create_table("raw.events", COLUMNS, partitioned_by=("ds",)) == (
        "create table if not exists raw.events (ds date not null, event_id varchar, event_ts timestamptz, "
        "rules varchar[])"
    )
    assert SparkDialect("iceberg").replace_table_as("a.t", "select 1") == [
        "drop table if exists a.t",
        "create table a.t using iceberg as select 1",
    ]


@pytest.mark.parametrize(
    ("method", "args", "duckdb", "spark"),
    [
        ("timestamp_literal", ("2026-01-01T00:00:00+00:00",), "timestamptz '2026-01-01T00:00:00+00:00'", "timestamp '2026-01-01T00:00:00+00:00'"),
        ("double_literal", ("NaN",), "'NaN'::double precision", "cast('NaN' as double)"),
        ("unnest", ("r",), "unnest(r)", "explode(r)"),
        ("array_to_string", ("r", ","), "array_to_string(r, ',')", "array_join(r, ',')"),
        ("non_null_array", (["a", "b"],), "list_filter([a, b], lambda r: r is not null)", "filter(array(a, b), r -> r is not null)"),
        ("rename_table", ("s.a", "b"), "alter table s.a rename to b", "alter table s.a rename to s.b"),
        ("string_type", (), "varchar", "string"),
        ("delete_statement", ("q.t", {"ds": "'2026-01-02'", "verdict": "'refused'"}), "delete from q.t where ds = '2026-01-02' and verdict = 'refused'", "alter table q.t drop if exists partition (ds = '2026-01-02', verdict = 'refused')"),
    ],
)  # fmt: skip
def test_each_difference_is_one_named_method(
    method: str, args: tuple[object, ...], duckdb: str, spark: str
) -> None:
    assert getattr(DUCKDB, method)(*args) == duckdb
    assert getattr(SPARK, method)(*args) == spark


def test_postgres_keeps_its_own_spellings() -> None:
    assert POSTGRES.bytewise("x") == 'x collate "C"' and SPARK.bytewise("x") == "x"
    assert POSTGRES.serialize_writers("t") and not SPARK.serialize_writers("t")


def test_parameters_become_spark_literals_outside_quotes_only() -> None:
    sql = _bind(
        "select ? , '?', ?, ?, ?, ? where x = ?",
        [
            dt.date(2026, 1, 2),
            "it's \\ here",
            None,
            float("nan"),
            dt.datetime(2026, 1, 2, 3, tzinfo=dt.UTC),
            7,
        ],
    )
    assert sql == (
        "select date '2026-01-02' , '?', 'it\\'s \\\\ here', null, cast('NaN' as double), "
        "timestamp '2026-01-02T03:00:00+00:00' where x = 7"
    )
    assert (
        _bind("? ?", [float("inf"), float("-inf")])
        == "cast('Infinity' as double) cast('-Infinity' as double)"
    )
    assert placeholders("a ? '%' ?", lambda: "%s", percent="%%") == "a %s '%%' %s"
