"""Conservation, proven from counts the audit does not make: every row of the landing files is in
``raw.events`` or in the quarantine of the day, after every path of write-audit-publish (publish,
refuse, re-land of a corrected day, refused re-land of a published day, by another run or by the
same one), and the audit's guard refuses a publication whose rows do not add up.

The counts: rows read from the landing Parquet files with pyarrow, and ``count(*)`` queries on a
DuckDB connection of the test's own (not recflow's warehouse layer).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from recflow.core import errors
from recflow.core.config import Settings
from recflow.ingest.contract import partition_dir
from recflow.ingest.days import stage_and_audit
from recflow.producers.generate import GeneratorConfig, generate, write_partition
from recflow.warehouse import DuckDBWarehouse
from tests.integration.test_audit import _set

pytestmark = pytest.mark.integration

START = dt.date(2026, 1, 1)
D1, D2, D3 = (START + dt.timedelta(days=i) for i in range(3))
CFG = GeneratorConfig(start=START, days=3, users=60, pins=200, topics=6, seed=11)
FEW = [5, 17, 230]
"""Rows given a null user_id: quarantined, the day still published (well under 1%)."""


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path / "home")})
    generate(settings.landing_dir, CFG)
    return settings


def _files(settings: Settings, day: dt.date) -> list[Path]:
    return sorted(partition_dir(settings.landing_dir, day).glob("*.parquet"))


def _landed(settings: Settings, day: dt.date) -> int:
    """Rows in the day's landing files, read with pyarrow."""
    return sum(pq.read_table(path).num_rows for path in _files(settings, day))


def _null_user_ids(settings: Settings, day: dt.date, rows: list[int]) -> list[int]:
    """Rewrite the day (one file, the generator's) with a null ``user_id`` on ``rows``; return them."""
    path = _files(settings, day)[0]
    write_partition(path.parent, [_set(pq.read_table(path), "user_id", rows, None)])
    return rows


def _many(settings: Settings, day: dt.date) -> list[int]:
    """5% of the day's rows: the day is refused."""
    return list(range(0, _landed(settings, day), 20))


def _count(settings: Settings, sql: str, params: list[object]) -> int:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        row = con.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def _published(settings: Settings, day: dt.date) -> int:
    return _count(settings, "select count(*) from raw.events where ds = ?", [day])


def _quarantined(settings: Settings, day: dt.date, run_id: str | None = None) -> int:
    if run_id is None:
        return _count(settings, "select count(*) from quality.quarantine_events where ds = ?", [day])
    return _count(
        settings, "select count(*) from quality.quarantine_events where ds = ? and run_id = ?", [day, run_id]
    )


def _staged(settings: Settings, day: dt.date) -> int:
    return _count(settings, f"select count(*) from raw_staging.events__{day:%Y%m%d}", [])


def _events(settings: Settings, day: dt.date) -> list[tuple[object, ...]]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(
            "select event_id, user_id, _source_file, _source_row from raw.events where ds = ? order by all",
            [day],
        ).fetchall()


def _record(settings: Settings, day: dt.date, run_id: str) -> tuple[int, int, int, str]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        rows = con.execute(
            "select landed, accepted, quarantined, verdict from quality.partition_audit "
            "where ds = ? and run_id = ?",
            [day, run_id],
        ).fetchall()
    assert len(rows) == 1, rows
    landed, accepted, quarantined, verdict = rows[0]
    return int(landed), int(accepted), int(quarantined), str(verdict)


def test_every_landed_row_is_published_or_quarantined_after_every_path(home: Settings) -> None:
    # publish: D1 with a few bad rows
    bad = _null_user_ids(home, D1, FEW)
    stage_and_audit(home, [D1], run_id="r1")
    landed = _landed(home, D1)
    assert _quarantined(home, D1, "r1") == len(bad)
    assert _published(home, D1) + _quarantined(home, D1, "r1") == landed
    assert _record(home, D1, "r1") == (landed, landed - len(bad), len(bad), "published")

    # refuse: D2 with 5% bad rows, never published
    bad = _null_user_ids(home, D2, _many(home, D2))
    with pytest.raises(errors.PartitionRefused) as refusal:
        stage_and_audit(home, [D2], run_id="r2")
    landed = _landed(home, D2)
    assert (_published(home, D2), _quarantined(home, D2, "r2"), _staged(home, D2)) == (0, len(bad), landed)
    assert _record(home, D2, "r2") == (landed, landed - len(bad), len(bad), "refused")
    refused = len(bad)
    evidence = refusal.value.evidence.split(";")[0].replace("select *", "select count(*)", 1)

    # re-land: the producer corrects D2 (a few bad rows left), another run publishes it
    generate(home.landing_dir, CFG)
    bad = _null_user_ids(home, D2, FEW)
    stage_and_audit(home, [D2], run_id="r3")
    landed = _landed(home, D2)
    assert _published(home, D2) + _quarantined(home, D2, "r3") == landed
    assert _quarantined(home, D2, "r3") == len(bad), "the publication's own rows"
    # the refusal's rows stay beside it: the publication of the fixed export erased them, and with them
    # what the refusal's incident points at (its evidence query then read no row)
    assert _quarantined(home, D2, "r2") == _count(home, evidence, []) == refused
    assert _record(home, D2, "r3") == (landed, landed - len(bad), len(bad), "published")
    published = _events(home, D2)

    # refused re-land of the published day: the producer re-exports D2 worse, a third run refuses it
    generate(home.landing_dir, CFG)
    worse = _null_user_ids(home, D2, _many(home, D2))
    with pytest.raises(errors.PartitionRefused) as caught:
        stage_and_audit(home, [D2], run_id="r4")
    assert _events(home, D2) == published, "raw.events keeps the publication"
    assert _published(home, D2) + _quarantined(home, D2, "r3") == landed, "the publication is still whole"
    assert _quarantined(home, D2, "r4") == len(worse), "and the refusal's rows are kept beside it"
    assert _quarantined(home, D2) == len(bad) + len(worse)
    assert _record(home, D2, "r4") == (
        _landed(home, D2),
        _landed(home, D2) - len(worse),
        len(worse),
        "refused",
    )
    refused_rows = caught.value.evidence.split(";")[0]
    assert _count(home, refused_rows.replace("select *", "select count(*)", 1), []) == len(worse), (
        "the error's evidence query shows the refused rows, and only them"
    )


def test_a_run_refused_after_it_published_keeps_its_publication_whole(home: Settings) -> None:
    """A cleared run: the same run id publishes the day, then (the export redone, worse) refuses it."""
    bad = _null_user_ids(home, D3, FEW)
    stage_and_audit(home, [D3], run_id="run-d3")
    landed = _landed(home, D3)
    published = _events(home, D3)

    generate(home.landing_dir, CFG)
    worse = _null_user_ids(home, D3, _many(home, D3))
    with pytest.raises(errors.PartitionRefused):
        stage_and_audit(home, [D3], run_id="run-d3")

    assert _events(home, D3) == published
    assert _published(home, D3) + _quarantined(home, D3) == landed + len(worse)
    with duckdb.connect(str(home.duckdb_path), read_only=True) as con:
        by_verdict = dict(
            con.execute(
                "select verdict, count(*) from quality.quarantine_events where ds = ? group by 1", [D3]
            ).fetchall()
        )
    assert by_verdict == {"published": len(bad), "refused": len(worse)}
    assert _published(home, D3) + by_verdict["published"] == landed


FAULTS: dict[str, dict[str, list[str]]] = {
    "a-published-row-lost": {
        "insert into raw.events": ["delete from raw.events where ds = ? and _source_row = 0"],
    },
    "a-published-row-doubled": {
        "insert into raw.events": ["insert into raw.events select * from raw.events where ds = ? limit 1"],
    },
    "one-row-lost-another-quarantined-twice": {
        "insert into raw.events": ["delete from raw.events where ds = ? and _source_row = 0"],
        "insert into quality.quarantine_events": [
            "insert into quality.quarantine_events select * from quality.quarantine_events "
            "where ds = ? limit 1"
        ],
    },
}
"""Statements run right after the audit's own, inside its publish transaction (``?`` is the day)."""


@pytest.fixture
def fault(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Faults injected inside the audit's statements (set the dict's items to arm them)."""
    armed: dict[str, list[str]] = {}
    execute = DuckDBWarehouse.execute

    def faulty(self: DuckDBWarehouse, sql: str, params: object = None) -> object:
        result = execute(self, sql, params)  # type: ignore[arg-type]
        for statement, extra in armed.items():
            if sql.lstrip().startswith(statement):
                for injected in extra:
                    execute(self, injected, [D1])
        return result

    monkeypatch.setattr(DuckDBWarehouse, "execute", faulty)
    yield armed


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_a_fault_inside_the_publish_is_caught_and_nothing_is_published(
    home: Settings, fault: dict[str, list[str]], case: str
) -> None:
    stage_and_audit(home, [D1], run_id="r1")
    before = _events(home, D1)
    bad = _null_user_ids(home, D1, FEW)
    landed = _landed(home, D1)

    fault.update(FAULTS[case])
    with pytest.raises(errors.RecflowError) as caught:
        stage_and_audit(home, [D1], run_id="r2")
    fault.clear()

    err = caught.value
    assert isinstance(err, errors.ConservationBroken), f"an untyped {type(err).__name__}: {err}"
    assert (err.ds, err.landed) == (D1.isoformat(), landed)
    assert f"{landed} rows landed" in str(err) and "nothing was published" in str(err)
    assert _events(home, D1) == before, "raw.events is unchanged"
    assert _quarantined(home, D1, "r2") == 0
    assert _count(home, "select count(*) from quality.partition_audit where run_id = 'r2'", []) == 0
    assert _staged(home, D1) == landed, "the day stays staged"

    stage_and_audit(home, [D1], run_id="r2")  # the fault gone, the run's retry publishes
    assert _published(home, D1) + _quarantined(home, D1, "r2") == landed
    assert _quarantined(home, D1, "r2") == len(bad)


def test_a_quarantine_written_before_rows_had_a_verdict_is_given_theirs(home: Settings) -> None:
    _null_user_ids(home, D1, FEW)
    stage_and_audit(home, [D1], run_id="r1")
    with duckdb.connect(str(home.duckdb_path)) as con:  # as the audit wrote it before verdicts
        con.execute("alter table quality.quarantine_events drop column verdict")

    stage_and_audit(home, [D2], run_id="r2")

    with duckdb.connect(str(home.duckdb_path), read_only=True) as con:
        verdicts = con.execute(
            "select ds, verdict, count(*) from quality.quarantine_events group by all order by all"
        ).fetchall()
    assert verdicts == [(D1, "published", len(FEW))]
