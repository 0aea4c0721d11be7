"""`recflow sql`'s refusals: a warehouse it cannot open, a long query, a text that is no query, a
``--limit`` out of bounds and columns a JSON object cannot hold apart, each refused in one line
(exit 2, as the command's other refusals), with no traceback, no password and nothing lost.

What each message must name (the file, the holder's process id, the port, the sum of the rows) is
taken from what the test made: a DuckDB file written and locked with DuckDB itself, in another
process (a DuckDB lock is per process), a port nothing listens on."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

import recflow.warehouse.query
from recflow.cli import main
from tests.duckdb_files import holding, home_warehouse


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = home_warehouse(tmp_path, monkeypatch)
    with duckdb.connect(str(path)) as con:
        con.execute("create table t as select * from range(3) r(x)")
    return path


@pytest.fixture
def holder(warehouse: Path) -> Iterator[subprocess.Popen[str]]:
    with holding(warehouse) as process:
        yield process


def _refusal(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command wrote on stderr, checked to be one line and no traceback; stdout empty."""
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def _table(path: Path) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("select * from t order by x").fetchall()


def test_a_warehouse_a_running_task_holds_is_named_with_what_to_do(
    warehouse: Path,
    holder: subprocess.Popen[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recflow.warehouse.query, "READ_LOCK_WAIT", 0.5)  # it waits for a short hold first
    assert main(["sql", "select 1"]) == 2
    err = _refusal(capsys)
    assert str(warehouse) in err and f"process {holder.pid}" in err
    assert "held by a running task" in err and "try again when the task ends" in err


@pytest.mark.parametrize("kind", ["a directory", "a file that is not a DuckDB database"])
def test_a_warehouse_path_duckdb_cannot_open_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = tmp_path / "warehouse"
    if kind == "a directory":
        path.mkdir()
    else:
        path.write_text("user_id,item_id\n1,2\n")
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RECFLOW_WAREHOUSE_PATH", str(path))
    assert main(["sql", "select 1"]) == 2
    err = _refusal(capsys)
    assert f"cannot open the DuckDB warehouse {path} (RECFLOW_WAREHOUSE_PATH)" in err
    assert path.is_dir() if kind == "a directory" else path.read_text() == "user_id,item_id\n1,2\n"


def test_an_unreachable_postgresql_warehouse_is_named_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port the system just gave out, nothing listening on it now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RECFLOW_WAREHOUSE_URL", f"postgresql://recflow:pw-Secret-9@127.0.0.1:{port}/wh")
    assert main(["sql", "select 1"]) == 2
    err = _refusal(capsys)
    assert "pw-Secret-9" not in err
    assert f"cannot open the PostgreSQL warehouse postgresql://recflow:***@127.0.0.1:{port}/wh" in err


def test_a_warehouse_url_that_is_no_url_is_refused_without_repeating_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RECFLOW_WAREHOUSE_URL", "postgresql://recflow:pw-Secret-9@[::1")
    assert main(["sql", "select 1"]) == 2
    err = _refusal(capsys)
    assert "RECFLOW_WAREHOUSE_URL" in err and "pw-Secret-9" not in err


def test_a_long_query_is_read_whole(warehouse: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # past sqlparse's 10,000 tokens a statement may be grouped into a tree: the check needs none
    values = range(5000)
    query = f"select sum(x) as s from (values {', '.join(f'({v})' for v in values)}) as v(x)"
    assert main(["sql", query]) == 0
    assert capsys.readouterr().out.splitlines()[2] == str(sum(values))
    assert main(["sql", "select 1" + " " * 120_000]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "1"


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("select 1;" + " " * 120_000 + "delete from t", "the text holds 2"),
        (
            f"with x as (select {'+'.join(['1'] * 6000)} as y) insert into t select y from x",
            "'insert' writes",
        ),
        # sqlparse reads ``create or replace`` as one keyword
        ("with x as (select 1) create or replace table t as select * from x", "'create' writes"),
    ],
)
def test_a_long_or_hidden_write_is_still_refused(
    warehouse: Path, capsys: pytest.CaptureFixture[str], query: str, said: str
) -> None:
    before = _table(warehouse)
    assert main(["sql", query]) == 2
    assert said in _refusal(capsys)
    assert _table(warehouse) == before


@pytest.mark.parametrize("query", ["   ;  ", " ; ; -- nothing\n", "/* a look */ ;"])
def test_a_text_of_no_statement_is_said_to_hold_none(
    warehouse: Path, capsys: pytest.CaptureFixture[str], query: str
) -> None:
    assert main(["sql", query]) == 2
    assert "one statement at a time: the text holds none" in _refusal(capsys)


@pytest.mark.parametrize("word", ["selec", "slect", "pragma"])
def test_a_first_word_that_is_no_query_is_not_called_a_write(
    warehouse: Path, capsys: pytest.CaptureFixture[str], word: str
) -> None:
    assert main(["sql", f"{word} 1"]) == 2
    err = _refusal(capsys)
    assert f"{word!r} is not a statement recflow sql runs" in err and "changed only by" not in err


def test_a_limit_past_its_bounds_is_refused_by_the_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))  # no warehouse: never opened
    too_many = str(2**64 + 1)  # past what fetchmany takes
    with pytest.raises(SystemExit) as refused:
        main(["sql", "select 1", "--limit", too_many])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --limit: {too_many} is not a count of rows from 1 to" in err
    assert "refused the query" not in err and "does not exist yet" not in err


def test_columns_of_one_name_are_not_folded_into_one_json_key(
    warehouse: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", "select 1 as a, 2 as a, 3 as b", "--json"]) == 2
    err = _refusal(capsys)
    assert "more than one column named 'a'" in err and "`as`" in err
    assert main(["sql", "select 1 as a, 2 as a_2, 3 as b", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"a": 1, "a_2": 2, "b": 3}]


def test_a_task_waits_for_a_read_that_holds_the_file_for_a_moment(warehouse: Path) -> None:
    """A task's open of the file met on-call's ``recflow sql`` (or ``recflow claims``) and failed its try:
    DuckDB lets no process write a file another reads. It now waits, here for a hold of about a second."""
    from recflow.warehouse.duckdb import DuckDBWarehouse

    with holding(warehouse) as process:
        assert process.stdin is not None
        started = time.monotonic()
        threading.Timer(1.0, process.stdin.close).start()  # the read ends a second later
        opened = DuckDBWarehouse(warehouse, read_only=False, memory_limit="1GB", lock_wait=30.0)
    try:
        assert opened.execute("select count(*) from t").fetchone() == (3,)
    finally:
        opened.close()
    assert time.monotonic() - started >= 0.9, "it opened while the other process held the file"
    # a hold past the wait: the lock error, as before
    with pytest.raises(duckdb.IOException, match="Conflicting lock is held"), holding(warehouse):
        DuckDBWarehouse(warehouse, read_only=False, memory_limit="1GB", lock_wait=0.5)
