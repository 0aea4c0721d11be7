from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import recflow.producers.generate as generate_module
from recflow.core.errors import ConfigError
from recflow.ingest.contract import EVENT_TYPES, EVENTS_SCHEMA
from recflow.producers.generate import GeneratorConfig, generate

SMALL = GeneratorConfig(start=date(2026, 1, 1), days=2, users=40, pins=150, topics=6, seed=3)


def test_writes_contract_partitions_and_catalogues(tmp_path: Path) -> None:
    summary = generate(tmp_path, SMALL)
    assert summary.partitions == 2
    day = pq.read_table(tmp_path / "events" / "ds=2026-01-02" / "part-00000.parquet")
    assert day.schema.equals(EVENTS_SCHEMA)
    assert set(day.column("event_type").to_pylist()) <= set(EVENT_TYPES)
    assert {ts.date() for ts in day.column("event_ts").to_pylist()} == {date(2026, 1, 2)}
    assert len(set(day.column("event_id").to_pylist())) == day.num_rows
    assert pq.read_table(tmp_path / "pins" / "pins.parquet").num_rows == 150
    assert pq.read_table(tmp_path / "users" / "users.parquet").num_rows == 40


def test_is_deterministic(tmp_path: Path) -> None:
    generate(tmp_path / "a", SMALL)
    generate(tmp_path / "b", SMALL)
    for rel in ("events/ds=2026-01-01/part-00000.parquet", "pins/pins.parquet"):
        assert pq.read_table(tmp_path / "a" / rel).equals(pq.read_table(tmp_path / "b" / rel))


def test_a_day_is_the_same_whichever_window_wrote_it(tmp_path: Path) -> None:
    """A day's events came from its place in the window: generating --days 2 and then --days 1 to the
    same --end wrote a different ds=2026-01-02 over the first (6,366 events became 6,569)."""
    generate(tmp_path / "two", SMALL)
    generate(
        tmp_path / "one",
        GeneratorConfig(start=date(2026, 1, 2), days=1, users=40, pins=150, topics=6, seed=3),
    )
    rel = "events/ds=2026-01-02/part-00000.parquet"
    assert (tmp_path / "two" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes()
    first = pq.read_table(tmp_path / "two" / "events/ds=2026-01-01/part-00000.parquet")
    second = pq.read_table(tmp_path / "two" / rel)
    assert first.column("pin_id") != second.column("pin_id"), "two days are not one day twice"


def test_engagement_follows_interests(tmp_path: Path) -> None:
    """Saves concentrate on few topics per user: the signal a model must find."""
    generate(tmp_path, GeneratorConfig(start=date(2026, 1, 1), days=3, users=60, pins=300, topics=8, seed=1))
    events = pq.read_table(tmp_path / "events" / "ds=2026-01-01" / "part-00000.parquet").to_pandas()
    pins = pq.read_table(tmp_path / "pins" / "pins.parquet").to_pandas()
    topic = dict(zip(pins.pin_id, pins.topics.map(lambda t: t[0]), strict=True))
    positive = events[events.event_type.isin(["closeup", "click", "save"])].copy()
    positive["topic"] = positive.pin_id.map(topic)
    top2_share = positive.groupby("user_id").topic.apply(lambda t: t.value_counts().head(2).sum() / len(t))
    assert top2_share.mean() > 0.7


def test_rejects_impossible_config() -> None:
    with pytest.raises(ValueError, match="interests_per_user=5 cannot exceed topics=3"):
        GeneratorConfig(topics=3, interests_per_user=5)
    with pytest.raises(ConfigError, match="days=100000 is more than 3660"):
        GeneratorConfig(days=100_000)  # wrote 2.5 GB of partitions back to 1752 before it was stopped


def test_a_day_is_written_in_blocks_of_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is bounded by a block: each part file holds one block's users, and event ids stay unique."""
    monkeypatch.setattr(generate_module, "USERS_PER_CHUNK", 25)
    summary = generate(
        tmp_path, GeneratorConfig(start=date(2026, 1, 1), days=1, users=60, pins=150, topics=6)
    )
    parts = sorted((tmp_path / "events" / "ds=2026-01-01").glob("*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    tables = [pq.read_table(p) for p in parts]
    assert sum(t.num_rows for t in tables) == summary.events
    ids = [i for t in tables for i in t.column("event_id").to_pylist()]
    assert len(set(ids)) == len(ids)
    for block, table in enumerate(tables):
        users = {int(u[1:]) for u in table.column("user_id").to_pylist()}
        assert users and min(users) >= 25 * block and max(users) < 25 * (block + 1)


def test_refuses_a_folder_it_did_not_create(tmp_path: Path) -> None:
    """Someone else's files (a producer's day, its catalogue) are never replaced by synthetic ones."""
    day = tmp_path / "events" / "ds=2026-01-01"
    day.mkdir(parents=True)
    (day / "part-00000.parquet").write_bytes(b"a producer's day")
    (day / "_SUCCESS").touch()
    with pytest.raises(ConfigError, match=f"{tmp_path} was not created by recflow"):
        generate(tmp_path, SMALL)
    assert sorted(p.name for p in day.iterdir()) == ["_SUCCESS", "part-00000.parquet"]
    assert (day / "part-00000.parquet").read_bytes() == b"a producer's day"
    assert not (tmp_path / "pins").exists()
