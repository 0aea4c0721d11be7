"""Write, audit, publish: the real land and audit on crafted partitions (the bad-input catalogue).

Every case checks its outcome (quarantined with the exact rows, or refused with its
message) and conservation: accepted + quarantined = landed, as recorded in
``quality.partition_audit`` and as found in ``raw.events`` and the quarantine.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from recflow.core.config import Settings
from recflow.core.errors import NotStaged, PartitionRefused
from recflow.ingest.contract import partition_dir, staged_table
from recflow.ingest.days import audit_days, stage_and_audit
from recflow.ingest.land import stage_partitions
from recflow.producers.generate import GeneratorConfig, generate, write_partition
from recflow.warehouse import connect, content_checksum, table_exists
from tests.integration.conftest import build_marts

pytestmark = pytest.mark.integration

START = dt.date(2026, 1, 1)
D1, D2, D3, D4 = (START + dt.timedelta(days=i) for i in range(4))
CFG = GeneratorConfig(start=START, days=4, users=60, pins=200, topics=6, seed=11)


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path / "home")})
    generate(settings.landing_dir, CFG)
    return settings


def _table(settings: Settings, day: dt.date) -> pa.Table:
    return pq.read_table(partition_dir(settings.landing_dir, day) / "part-00000.parquet")


def _set(table: pa.Table, column: str, rows: list[int], value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    for i in rows:
        values[i] = value
    return table.set_column(
        table.schema.get_field_index(column), column, pa.array(values, table.schema.field(column).type)
    )


def _rewrite(settings: Settings, day: dt.date, table: pa.Table) -> None:
    write_partition(partition_dir(settings.landing_dir, day), [table])


def _ids(table: pa.Table, rows: list[int]) -> list[str]:
    return [table.column("event_id")[i].as_py() for i in rows]


def _quarantine(settings: Settings, day: dt.date) -> list[tuple[Any, ...]]:
    with connect(settings, read_only=True) as con:
        return con.execute(
            "select event_id, broken_rules, source_file, source_row, run_id from quality.quarantine_events "
            "where ds = ? order by source_row",
            [day],
        ).fetchall()


def _audit_record(settings: Settings, day: dt.date) -> tuple[Any, ...]:
    with connect(settings, read_only=True) as con:
        row = con.execute(
            "select landed, accepted, quarantined, verdict from quality.partition_audit "
            "where ds = ? order by audited_at desc limit 1",
            [day],
        ).fetchone()
    assert row is not None
    return tuple(row)


def _published(settings: Settings, day: dt.date) -> int:
    with connect(settings, read_only=True) as con:
        if not table_exists(con, "raw", "events"):
            return 0
        row = con.execute("select count(*) from raw.events where ds = ?", [day]).fetchone()
    assert row is not None
    return int(row[0])


def _assert_conserved(settings: Settings, day: dt.date, landed: int) -> None:
    accepted_recorded, quarantined_recorded = _audit_record(settings, day)[1:3]
    assert accepted_recorded + quarantined_recorded == landed
    assert quarantined_recorded == len(_quarantine(settings, day))


Fault = Callable[[pa.Table], tuple[pa.Table, list[int]]]
"""Takes a clean day, returns the faulty one and the rows that must be quarantined."""

BAD = [5, 17, 230]


def _blank(column: str, value: object) -> Fault:
    return lambda t: (_set(t, column, BAD, value), BAD)


def _future(t: pa.Table) -> tuple[pa.Table, list[int]]:
    return _set(t, "event_ts", BAD, dt.datetime.now(dt.UTC) + dt.timedelta(days=400)), BAD


def _pad(t: pa.Table, column: str) -> pa.Table:
    values = [f" {v}" if i in BAD else v for i, v in enumerate(t.column(column).to_pylist())]
    return t.set_column(t.schema.get_field_index(column), column, pa.array(values, pa.string()))


def _duplicate_in_day(t: pa.Table) -> tuple[pa.Table, list[int]]:
    ids = t.column("event_id").to_pylist()
    return _set(t, "event_id", [40, 41], ids[3]), [40, 41]  # row 3 is the first: it is kept


CASES: dict[str, tuple[Fault, str]] = {
    "null-event_id": (_blank("event_id", None), "event_id_missing"),
    "empty-event_id": (_blank("event_id", "  "), "event_id_missing"),
    "null-user_id": (_blank("user_id", None), "user_id_missing"),
    "empty-user_id": (_blank("user_id", ""), "user_id_missing"),
    "null-pin_id": (_blank("pin_id", None), "pin_id_missing"),
    "empty-pin_id": (_blank("pin_id", ""), "pin_id_missing"),
    # an id with spaces around it is another id: the walk's 'u00000 ' became a user of its own, no features
    "padded-user_id": (_blank("user_id", "u00001 "), "user_id_padded"),
    "padded-pin_id": (_blank("pin_id", " p00001"), "pin_id_padded"),
    "carriage-return-user_id": (_blank("user_id", "u00001\r"), "user_id_padded"),  # a CSV's line end
    "no-break-space-pin_id": (_blank("pin_id", "\u00a0p00001"), "pin_id_padded"),
    "tab-user_id": (_blank("user_id", "u00001\t"), "user_id_padded"),
    "padded-event_id": (lambda t: (_pad(t, "event_id"), BAD), "event_id_padded"),
    "unknown-event_type": (_blank("event_type", "clik"), "event_type_unknown"),
    "duplicate-event_id-in-day": (_duplicate_in_day, "event_id_duplicate_in_day"),
    "event_ts-outside-interval": (
        _blank("event_ts", dt.datetime(2025, 12, 31, 23, 59, tzinfo=dt.UTC)),
        "event_ts_outside_interval",
    ),
    "event_ts-in-future": (_future, "event_ts_in_future"),
    "nan-value": (_blank("value", float("nan")), "value_not_finite"),
    "infinite-value": (_blank("value", float("-inf")), "value_not_finite"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_row_fault_is_quarantined_and_the_day_published(home: Settings, case: str) -> None:
    fault, rule = CASES[case]
    clean = _table(home, D2)
    faulty, bad_rows = fault(clean)
    _rewrite(home, D2, faulty)

    results = stage_and_audit(home, [D1, D2], run_id="run-1")

    landed = faulty.num_rows
    assert [r.verdict for r in results] == ["published", "published"]
    assert (results[1].landed, results[1].quarantined) == (landed, len(bad_rows))
    kept = _quarantine(home, D2)
    assert [row[3] for row in kept] == bad_rows, "exactly the faulty rows, one row per rejected event"
    assert all(rule in row[1] for row in kept)
    assert all(str(row[2]).endswith("part-00000.parquet") and row[4] == "run-1" for row in kept)
    assert _published(home, D2) == landed - len(bad_rows)
    _assert_conserved(home, D2, landed)
    with connect(home, read_only=True) as con:
        leaked = con.execute(
            "select count(*) from raw.events where ds = ? and _source_row in (select unnest(?))",
            [D2, bad_rows],
        ).fetchone()
    assert leaked == (0,)


def test_event_id_of_an_earlier_day_is_quarantined(home: Settings) -> None:
    earlier = _ids(_table(home, D1), [0, 1])
    faulty = _set(_set(_table(home, D2), "event_id", [10], earlier[0]), "event_id", [11], earlier[1])
    _rewrite(home, D2, faulty)

    stage_and_audit(home, [D1], run_id="r1")
    result = stage_and_audit(home, [D2], run_id="r2")[0]

    assert result.quarantined == 2
    assert [(r[0], r[1]) for r in _quarantine(home, D2)] == [
        (earlier[0], ["event_id_seen_on_other_day"]),
        (earlier[1], ["event_id_seen_on_other_day"]),
    ]
    _assert_conserved(home, D2, faulty.num_rows)


def test_a_row_that_breaks_several_rules_is_quarantined_once_with_all_of_them(home: Settings) -> None:
    faulty = _set(_set(_table(home, D1), "user_id", [7], None), "event_type", [7], "nope")
    _rewrite(home, D1, faulty)
    stage_and_audit(home, [D1], run_id="r1")
    assert [r[1] for r in _quarantine(home, D1)] == [["user_id_missing", "event_type_unknown"]]


def _five_percent_null_user_id(settings: Settings, day: dt.date) -> tuple[pa.Table, list[int]]:
    clean = _table(settings, day)
    rows = list(range(0, clean.num_rows, 20))  # 5%
    faulty = _set(clean, "user_id", rows, None)
    _rewrite(settings, day, faulty)
    return faulty, rows


def test_too_many_bad_rows_refuse_the_day_and_publish_nothing(home: Settings) -> None:
    stage_and_audit(home, [D1, D2], run_id="r1")
    faulty, rows = _five_percent_null_user_id(home, D3)

    with pytest.raises(PartitionRefused) as caught:
        stage_and_audit(home, [D3], run_id="r3")

    err = caught.value
    assert err.check == "quarantine_share"
    assert err.columns == ("user_id",)
    assert f"{len(rows)} of {faulty.num_rows:,} rows" in str(err)
    assert "above max_quarantine_share=1.00%" in str(err)
    assert "user_id_missing (user_id)" in str(err)
    assert "select * from quality.quarantine_events where ds = '2026-01-03'" in err.evidence
    assert _published(home, D3) == 0
    assert _audit_record(home, D3) == (faulty.num_rows, faulty.num_rows - len(rows), len(rows), "refused")
    assert len(_quarantine(home, D3)) == len(rows), "the evidence is kept"
    with connect(home, read_only=True) as con:
        assert table_exists(con, "raw_staging", staged_table(D3).split(".")[1]), "the day stays staged"
    # what the incident fills into the runbook's accept command: the least share, in hundredths, that
    # accepts the day, which it does
    assert (err.ds, err.share_needed) == ("2026-01-03", math.ceil(100 * len(rows) / faulty.num_rows) / 100)
    assert stage_and_audit(home, [D3], run_id="r4", max_quarantine_share=err.share_needed)[0].verdict == (
        "published"
    )
    # what the refusal said it keeps after that publication, and what it said would go
    assert f"the whole day is in {staged_table(D3)} until it is published" in str(err)
    with connect(home, read_only=True) as con:
        query = err.evidence.split(";")[0]
        (refused_kept,) = con.execute(f"select count(*) from ({query}) as q").fetchone()
        assert refused_kept == len(rows), "the evidence query still reads the refused rows"
        assert not table_exists(con, "raw_staging", staged_table(D3).split(".")[1]), "published: unstaged"


@pytest.mark.parametrize(("bad", "landed"), [(7, 10), (29, 100), (57, 100)])
def test_a_share_of_exactly_the_threshold_is_accepted(home: Settings, bad: int, landed: int) -> None:
    """ "At most S" holds at S itself, for the shares whose complement is no exact binary fraction
    (1 - 0.7 is 0.30000000000000004, above 3 / 10): the share the incident fills in accepts the day."""
    day = _table(home, D1).slice(0, landed)
    _rewrite(home, D1, _set(day, "user_id", list(range(bad)), None))
    with pytest.raises(PartitionRefused) as caught:
        stage_and_audit(home, [D1], run_id="r1", check_volume=False)
    assert caught.value.share_needed == bad / landed

    accepted = stage_and_audit(
        home, [D1], run_id="r2", max_quarantine_share=bad / landed, check_volume=False
    )[0]
    assert (accepted.verdict, accepted.quarantined, _published(home, D1)) == ("published", bad, landed - bad)


def test_auditing_a_published_day_again_without_land_is_refused_without_retry(home: Settings) -> None:
    """Another run's `audit` on a day published since its `land` (the UI's Clear of `audit` alone in an
    older run): its staged table went with the publication."""
    stage_and_audit(home, [D1], run_id="r1")
    before = _published(home, D1)
    with pytest.raises(NotStaged, match="clear `land` and its downstream tasks") as caught:
        audit_days(home, [D1], run_id="r0")
    assert not caught.value.retryable
    assert _published(home, D1) == before, "the day's publication is as it was"


def test_a_retry_of_an_audit_that_published_before_it_died_succeeds(
    home: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The scheduler killed while `audit` ran: the try published the day, Airflow never heard, and the
    retry failed with NotStaged ("cleared alone"), paging with a cause that was not true and leaving the
    run failed. The run's own publication, the day's latest audit, is its result."""
    first = stage_and_audit(home, [D1, D2], run_id="r1")
    before = {d: _published(home, d) for d in (D1, D2)}
    with caplog.at_level("WARNING"):
        again = audit_days(home, [D1, D2], run_id="r1")
    assert [r.to_xcom() for r in again] == [r.to_xcom() for r in first]
    assert {d: _published(home, d) for d in (D1, D2)} == before
    assert "was published by this run (r1) already" in caplog.text
    stage_and_audit(home, [D1], run_id="r2")  # a later run publishes the day: r1's retry is refused
    with pytest.raises(NotStaged):
        audit_days(home, [D1], run_id="r1")


def test_the_threshold_is_a_per_run_param(home: Settings) -> None:
    faulty, rows = _five_percent_null_user_id(home, D1)
    result = stage_and_audit(home, [D1], run_id="r1", max_quarantine_share=0.06)[0]
    assert (result.verdict, result.quarantined, _published(home, D1)) == (
        "published",
        len(rows),
        faulty.num_rows - len(rows),
    )


def test_refusal_keeps_the_previous_publication_of_the_day(home: Settings) -> None:
    stage_and_audit(home, [D1], run_id="r1")
    before = _published(home, D1)
    _five_percent_null_user_id(home, D1)
    with pytest.raises(PartitionRefused):
        stage_and_audit(home, [D1], run_id="r2")
    assert _published(home, D1) == before


def test_a_day_ten_times_the_usual_volume_is_refused_with_the_figures(home: Settings) -> None:
    stage_and_audit(home, [D1, D2, D3], run_id="r1")
    day = _table(home, D4)
    copies = []
    for k in range(10):
        ids = pc.binary_join_element_wise(day.column("event_id"), pa.scalar(f"-{k}"), "")
        copies.append(day.set_column(0, "event_id", ids))
    big = pa.concat_tables(copies)
    _rewrite(home, D4, big)

    with pytest.raises(PartitionRefused) as caught:
        stage_and_audit(home, [D4], run_id="r4")

    err = caught.value
    assert (err.check, err.share_needed) == ("volume", None), "no share accepts a volume"
    assert f"{big.num_rows:,} rows landed, outside" in str(err)
    assert "5x around the median" in str(err) and "of the last 3 published days" in str(err)
    assert _published(home, D4) == 0
    assert _audit_record(home, D4)[3] == "refused"
    # a deliberate one-off: the same day passes with check_volume=false
    assert stage_and_audit(home, [D4], run_id="r5", check_volume=False)[0].verdict == "published"


@pytest.mark.parametrize("catalogue", ["pins", "users"])
def test_a_catalogue_cut_short_is_refused_before_it_replaces_the_published_one(
    home: Settings, catalogue: str
) -> None:
    """A users export of a twelfth of the catalogue was published: the users the events still name lost
    their features in the snapshot, and the model trained on it was promoted."""
    stage_and_audit(home, [D1], run_id="r1")
    path = home.landing_dir / catalogue / f"{catalogue}.parquet"
    full = pq.read_table(path)
    pq.write_table(full.slice(0, full.num_rows // 12), path)
    with pytest.raises(PartitionRefused) as caught:
        stage_and_audit(home, [D2], run_id="r2")
    err = caught.value
    assert err.check == "volume" and err.share_needed is None
    assert (
        f"the {catalogue} catalogue holds {full.num_rows // 12:,} rows, under 1/5 of the {full.num_rows:,} "
        "published (RECFLOW_VOLUME_MAX_RATIO)" in str(err)
    )
    with connect(home, read_only=True) as con:
        published = con.execute(f"select count(*) from raw.{catalogue}").fetchone()
    assert published is not None and published[0] == full.num_rows, "the published catalogue is kept"
    assert _published(home, D2) == 0
    # deliberately accepted as the volume is: the smaller catalogue replaces the published one
    assert stage_and_audit(home, [D2], run_id="r3", check_volume=False)[0].verdict == "published"
    with connect(home, read_only=True) as con:
        published = con.execute(f"select count(*) from raw.{catalogue}").fetchone()
    assert published is not None and published[0] == full.num_rows // 12


def test_a_reload_refusing_several_days_gets_the_share_that_accepts_them_all(home: Settings) -> None:
    """The refusal of several days carried no share, so the incident left the runbook's S unfilled."""
    shares = []
    for day, every in ((D1, 20), (D2, 10)):  # 5% and 10% of the day's rows with no user_id
        clean = _table(home, day)
        bad = list(range(0, clean.num_rows, every))
        _rewrite(home, day, _set(clean, "user_id", bad, None))
        shares.append(math.ceil(100 * len(bad) / clean.num_rows) / 100)  # in hundredths, rounded up
    with pytest.raises(PartitionRefused) as caught:
        stage_and_audit(home, [D1, D2, D3], run_id="r1", check_volume=False)
    assert str(caught.value).startswith("2 of 3 days refused")
    assert caught.value.share_needed == max(shares) > min(shares)


def test_a_day_refused_on_volume_and_share_gets_the_share_that_accepts_it(home: Settings) -> None:
    """The incident fills the runbook's accept command with ``share_needed``: it was left out whenever
    the volume failed too."""
    stage_and_audit(home, [D1, D2, D3], run_id="r1")
    day = _table(home, D4).slice(0, 40)
    _rewrite(home, D4, _set(day, "event_type", list(range(10)), "clik"))
    with pytest.raises(PartitionRefused) as caught:
        stage_and_audit(home, [D4], run_id="r4")
    assert caught.value.check == "volume" and caught.value.share_needed == 0.25


@pytest.mark.parametrize("how", ["no-file", "empty-file"])
def test_an_empty_partition_is_refused(home: Settings, how: str) -> None:
    directory = partition_dir(home.landing_dir, D1)
    if how == "no-file":
        (directory / "part-00000.parquet").unlink()
    else:
        _rewrite(home, D1, _table(home, D1).slice(0, 0))
    with pytest.raises(PartitionRefused, match=r"0 rows landed, outside 1 \.\. inf"):
        stage_and_audit(home, [D1], run_id="r1")
    assert _audit_record(home, D1) == (0, 0, 0, "refused")


def test_rerun_is_idempotent_by_checksum(home: Settings) -> None:
    _rewrite(home, D2, _set(_table(home, D2), "event_type", [3, 9], "clik"))
    stage_and_audit(home, [D1, D2], run_id="first")

    def checksums() -> list[tuple[int, str]]:
        with connect(home, read_only=True) as con:
            return [
                content_checksum(con, t)
                for t in ("raw.events", "raw.pins", "raw.users", "quality.quarantine_events")
            ]

    before = checksums()
    stage_and_audit(home, [D2], run_id="second")
    stage_and_audit(home, [D1, D2], run_id="third")
    assert checksums() == before
    assert before[3][0] == 2


def test_staged_or_refused_rows_never_reach_dbt_and_the_next_clean_day_succeeds(home: Settings) -> None:
    """The original fault: a refused day's rows stayed in raw.events and broke every later day's dbt build."""
    stage_and_audit(home, [D1], run_id="r1")
    _five_percent_null_user_id(home, D2)
    with pytest.raises(PartitionRefused):
        stage_and_audit(home, [D2], run_id="r2")
    stage_partitions(home, [D4])  # staged, not audited: another run's rows in flight
    stage_and_audit(home, [D3], run_id="r3")

    build_marts(home)  # dbt's own tests (not_null user_id, ...) pass

    with connect(home, read_only=True) as con:
        days = [
            r[0]
            for r in con.execute("select distinct ds from analytics.fct_engagements order by 1").fetchall()
        ]
    assert days == [D1, D3]
