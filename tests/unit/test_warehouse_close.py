"""The error that ended the work on the warehouse is the one reported: a close that fails as well (the
server went away, often why the work failed) is logged beside it, not raised in its place. Seen on
Spark: the audit's GX failure was replaced by ``TTransportException: TSocket read 0 bytes`` from the
close, so the task's error and the incident named the wrong thing."""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

import pytest

from recflow.core.config import Settings
from recflow.warehouse import DuckDBWarehouse, PostgresWarehouse, SparkWarehouse, connect


@pytest.fixture
def closing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    close = DuckDBWarehouse.close

    def fails(self: DuckDBWarehouse) -> None:
        close(self)  # the file is let go all the same: only the report is under test
        raise ConnectionError("TSocket read 0 bytes")

    monkeypatch.setattr(DuckDBWarehouse, "close", fails)


def test_the_works_error_is_raised_and_the_close_failure_logged(
    settings: Settings, closing_fails: None, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(ValueError, match="2 expectations, 2 failed"),
        connect(settings) as con,
    ):
        con.execute("select 1")
        raise ValueError("2 expectations, 2 failed")
    assert "after an error failed too: TSocket read 0 bytes" in caplog.text


def test_a_close_that_fails_after_work_that_succeeded_is_raised(
    settings: Settings, closing_fails: None
) -> None:
    with pytest.raises(ConnectionError, match="TSocket read 0 bytes"), connect(settings) as con:
        con.execute("select 1")


@pytest.mark.parametrize("engine", [PostgresWarehouse, SparkWarehouse], ids=["postgresql", "spark"])
def test_a_cursor_that_cannot_close_leaves_no_connection_open(engine: type[Any]) -> None:
    warehouse: Any = object.__new__(engine)  # the driver's objects stood in: only close's order is under test
    warehouse._cursor = mock.Mock(**{"close.side_effect": ConnectionError("TSocket read 0 bytes")})
    warehouse.connection = mock.Mock()
    with pytest.raises(ConnectionError):
        warehouse.close()
    warehouse.connection.close.assert_called_once_with()
