"""`recflow sql`: the runbooks' queries run read-only on the warehouse of the settings.

The warehouse is a DuckDB file the test writes with DuckDB itself; what the command prints is
compared with what DuckDB reads back from it, and every refusal leaves the file as it was.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest

from recflow.cli import main
from recflow.core.config import Settings
from tests.duckdb_files import home_warehouse

ROWS = [
    ("e1", "user_id is null", "part-00000.parquet", 3, "refused"),
    ("e2", "unknown event_type 'clck'", "part-00000.parquet", 9, "refused"),
    ("e3", "user_id is null", "part-00001.parquet", 1, "published"),
]


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = home_warehouse(tmp_path, monkeypatch)
    with duckdb.connect(str(path)) as con:
        con.execute("create schema quality")
        con.execute(
            "create table quality.quarantine_events (event_id varchar, broken_rules varchar, "
            "source_file varchar, source_row integer, verdict varchar, ds date)"
        )
        con.executemany(
            "insert into quality.quarantine_events values (?, ?, ?, ?, ?, ?)",
            [(*row, dt.date(2026, 1, 3)) for row in ROWS],
        )
    return path


def _table(path: Path) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("select * from quality.quarantine_events order by event_id").fetchall()


def test_the_runbooks_query_prints_the_refused_rows(
    warehouse: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = "select * from quality.quarantine_events where ds = '2026-01-03' and verdict = 'refused' order by event_id"
    assert main(["sql", query]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["event_id", "broken_rules", "source_file", "source_row", "verdict", "ds"]
    refused = [row for row in _table(warehouse) if row[4] == "refused"]
    assert [line.split()[0] for line in lines[2:-1]] == [row[0] for row in refused]
    assert "unknown event_type 'clck'" in lines[3] and lines[-1] == "(2 rows)"

    assert main(["sql", query, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(r["event_id"], r["source_row"], r["ds"]) for r in printed] == [
        (row[0], row[3], str(row[5])) for row in refused
    ]


def test_rows_past_the_limit_are_said_to_be_left_out(
    warehouse: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["sql", "select event_id from quality.quarantine_events order by event_id;", "--limit", "2"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:] == ["e1", "e2", "(2 rows; more past --limit)"]
    for limit in ("0", "-3"):
        with pytest.raises(SystemExit):
            main(["sql", "select 1", "--limit", limit])
        assert "is not a count of at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("delete from quality.quarantine_events", "'delete' is not one of them"),
        ("-- a look first\ndrop table quality.quarantine_events", "'drop' is not one of them"),
        ("select 1; delete from quality.quarantine_events", "one statement at a time: the text holds 2"),
        ("   ", "one statement at a time: the text holds none"),
        (
            "with refused as (select * from quality.quarantine_events) insert into quality.quarantine_events "
            "select * from refused",
            "'insert' writes (the warehouse is changed only by the pipeline's tasks; a column of that name "
            'is read quoted: "insert", on Spark `insert`)',
        ),
        ("select 1 /* ; */; drop table quality.quarantine_events", "the text holds 2"),
        # a quote inside a comment opens no string (a review's reproductions)
        (
            "with x as (select 1 as a) -- it's\ninsert into quality.quarantine_events select a from x --'",
            "'insert'",
        ),
        ("select 1 -- don't\n; delete from quality.quarantine_events --'", "the text holds 2"),
        # a backslash-escaped quote, as Spark reads it, ends no string
        (
            "with x as (select '\\'' as c) insert into quality.quarantine_events select c from x where c <> ''",
            "'insert'",
        ),
    ],
)
def test_a_statement_that_writes_is_refused_and_changes_nothing(
    warehouse: Path, capsys: pytest.CaptureFixture[str], query: str, said: str
) -> None:
    before = _table(warehouse)
    assert main(["sql", query]) == 2
    assert said in capsys.readouterr().err
    assert _table(warehouse) == before


def test_a_semicolon_or_a_write_word_inside_a_string_is_part_of_the_query(
    warehouse: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = (
        "select count(*) as n from quality.quarantine_events "
        "where broken_rules <> 'a; drop table x -- b' and \"verdict\" <> 'update'"
    )
    assert main(["sql", query]) == 0
    assert capsys.readouterr().out.splitlines()[2] == str(len(ROWS))


def test_a_warehouse_not_made_yet_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "empty-home"))
    assert main(["sql", "select 1"]) == 2
    err = capsys.readouterr().err
    assert "does not exist yet: run the recsys_warehouse DAG first" in err and "Traceback" not in err
    assert not Settings.from_env().duckdb_path.exists()


def test_a_query_the_engine_refuses_is_one_line(warehouse: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "select * from quality.no_such_table"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "recflow: duckdb refused the query: Catalog Error: Table with name no_such_table"
    ), err
    assert "Traceback" not in err
