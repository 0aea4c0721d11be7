"""The marts suite and the snapshot on Spark (a two-worker cluster), against DuckDB on the same marts.

As the last tests of ``test_warehouse_postgres.py``: the tests write the same marts to both engines
through the warehouse interface. On Spark the snapshot's tables are written by Spark itself (one
sorted Parquet file each, no row through this process) and published to the artifact store: the
same rows in the same order as DuckDB's snapshot, content-addressed, and readable by the job.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from recflow.core.config import Settings
from recflow.core.errors import DataQualityError
from recflow.quality import check_training_marts
from recflow.snapshot import take_snapshot
from tests.services.test_warehouse_postgres import _marts, _plain, _write_marts


def test_great_expectations_imports_beside_pyspark_where_main_has_no_file() -> None:
    """With pyspark installed (the Spark engine's packages), importing Great Expectations imports
    pyspark.sql.connect, which took any process whose ``__main__`` has no file (``python -c``, each
    pytest-xdist worker of ``make test``) for its doctest run and ended it with exit status 0, unless
    Spark Connect's client packages are there too (requirements-spark.txt)."""
    code = "import great_expectations; print('imported')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "imported"), done.stderr[-2000:]


@pytest.fixture
def mart_engines(tmp_path: Path, spark_warehouse: Any) -> dict[str, Settings]:
    """Two homes (their own artifact stores), one on DuckDB, one on the Spark cluster."""
    return {
        "duckdb": Settings.from_env({"RECFLOW_HOME": str(tmp_path / "duckdb")}),
        "spark": spark_warehouse.settings(RECFLOW_HOME=str(tmp_path / "spark")),
    }


def test_marts_suite_agrees_on_spark_and_duckdb(mart_engines: dict[str, Settings]) -> None:
    for settings in mart_engines.values():
        _write_marts(settings, _marts())
    reports = {engine: check_training_marts(settings) for engine, settings in mart_engines.items()}
    assert reports["spark"].success and reports["spark"].evaluated == reports["duckdb"].evaluated

    errors = {}
    for engine, settings in mart_engines.items():
        _write_marts(settings, {name: table.slice(0, 0) for name, table in _marts().items()})
        with pytest.raises(DataQualityError) as caught:
            check_training_marts(settings)
        errors[engine] = caught.value
    lines = [f.line() for f in errors["spark"].report.failures]
    assert lines == [f.line() for f in errors["duckdb"].report.failures]
    assert any("there is something to train on" in line for line in lines)


def test_snapshot_written_by_spark_holds_what_duckdb_holds(mart_engines: dict[str, Settings]) -> None:
    snapshots = {}
    for engine, settings in mart_engines.items():
        _write_marts(settings, _marts())
        snapshots[engine] = take_snapshot(settings)
    spark, duck = snapshots["spark"], snapshots["duckdb"]
    assert (
        spark.rows
        == duck.rows
        == {"train": 4, "holdout": 2, "pins": 4, "pin_features": 4, "user_features": 2}
    )
    assert spark.dbt_invocation_id == duck.dbt_invocation_id == "inv-1"
    for uri in ("train_uri", "holdout_uri", "pins_uri"):
        tables = [pq.read_table(Path(getattr(s, uri).removeprefix("file://"))) for s in (spark, duck)]
        assert tables[0].column_names == tables[1].column_names
        assert [[_plain(v) for v in r.values()] for r in tables[0].to_pylist()] == [
            [_plain(v) for v in r.values()] for r in tables[1].to_pylist()
        ], f"{uri}: same rows, same order"
    written = pq.ParquetFile(Path(spark.train_uri.removeprefix("file://")))
    assert "Spark" in (written.metadata.created_by or "") or b"org.apache.spark" in b"".join(
        (written.metadata.metadata or {}).keys()
    ), f"the train table was not written by Spark: {written.metadata.created_by}"
    assert take_snapshot(mart_engines["spark"]).snapshot_id == spark.snapshot_id, "content-addressed"
    leftovers = [
        p for p in Path(spark.uri.removeprefix("file://")).parents[1].iterdir() if p.name.startswith("tmp")
    ]
    assert leftovers == [], "the engine's scratch folder is gone"


@pytest.mark.parametrize(
    ("query", "spark_says"),
    [
        ("select user_id from raw.no_such_table", "[TABLE_OR_VIEW_NOT_FOUND]"),  # refused when submitted
        ("select raise_error('the executor gave up') as user_id from range(4)", "the executor gave up"),
    ],
)
def test_an_expectation_spark_could_not_run_says_what_spark_said(
    mart_engines: dict[str, Settings], query: str, spark_says: str
) -> None:
    """Great Expectations passes on SQLAlchemy's text of PyHive's error, the server's whole TStatus with
    kilobytes of Java frames; the suite's error (the task's ON-CALL line) carries Spark's own message."""
    from great_expectations.expectations.core.expect_column_values_to_not_be_null import (
        ExpectColumnValuesToNotBeNull,
    )

    from recflow.quality._gx import Asset, SuiteNotEvaluated, rule, run_suite

    asset = Asset(
        name="broken",
        query=query,
        expectations=[
            ExpectColumnValuesToNotBeNull(column="user_id", **rule("users", "every row has a user"))
        ],
    )
    with pytest.raises(SuiteNotEvaluated) as caught:
        run_suite(mart_engines["spark"], "training_marts", [asset])
    message = str(caught.value)
    assert "expect_column_values_to_not_be_null (users): could not be evaluated: " in message, message
    assert spark_says in message, message
    assert "TStatus" not in message and "infoMessages" not in message and len(message) < 2000, message
    assert caught.value.retryable and caught.value.runbook == "infrastructure"
