"""A seeded, deterministic, Pinterest-like synthetic data set in the landing zone's format.

Shape of the world: pins belong to topics and boards, and their popularity is
power-law (Zipf); each user has a few topical interests. Every day each user
is shown pins (``impression``), mostly from their interests, partly from the
globally popular ones; engagement (``closeup`` → ``click`` / ``save``) is far
likelier on pins of the user's interests, and ``hide`` happens on pins outside
them. So there is a signal a model can learn and a random ranker cannot.

Each day is generated from its own seed (``seed``, day index), so a partition
is reproducible on its own and regenerating changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recflow.landing import EVENTS_SCHEMA, PINS_SCHEMA, SUCCESS_MARKER, USERS_SCHEMA, partition_dir

log = logging.getLogger(__name__)

SURFACES = ("home_feed", "search", "related", "board")
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "JP", "IN", "MX")
OCCUPATIONS = ("student", "engineer", "artist", "teacher", "writer", "other")


@dataclass(frozen=True)
class GeneratorConfig:
    start: date = date(2026, 1, 1)
    days: int = 7
    users: int = 400
    pins: int = 1200
    topics: int = 16
    interests_per_user: int = 2
    impressions_per_user_day: float = 10.0
    interest_share: float = 0.7
    zipf_exponent: float = 1.1
    seed: int = 7

    def __post_init__(self) -> None:
        for name in ("days", "users", "pins", "topics", "interests_per_user"):
            if getattr(self, name) < 1:
                raise ValueError(f"generator setting {name}={getattr(self, name)} must be at least 1")
        if self.interests_per_user > self.topics:
            raise ValueError(
                f"interests_per_user={self.interests_per_user} cannot exceed topics={self.topics}"
            )


@dataclass(frozen=True)
class World:
    pin_topic: np.ndarray
    pin_popularity: np.ndarray
    user_interests: np.ndarray
    topic_pins: list[np.ndarray]
    topic_weights: list[np.ndarray]


@dataclass(frozen=True)
class GeneratedSummary:
    start: date
    end: date
    partitions: int
    events: int
    users: int
    pins: int


def pin_id(i: int) -> str:
    return f"p{i:05d}"


def user_id(i: int) -> str:
    return f"u{i:05d}"


def _world(cfg: GeneratorConfig) -> World:
    rng = np.random.default_rng([cfg.seed, 0])
    pin_topic = rng.integers(0, cfg.topics, size=cfg.pins)
    ranks = rng.permutation(cfg.pins) + 1
    popularity = 1.0 / ranks.astype(float) ** cfg.zipf_exponent
    interests = np.stack(
        [rng.choice(cfg.topics, size=cfg.interests_per_user, replace=False) for _ in range(cfg.users)]
    )
    topic_pins = [np.flatnonzero(pin_topic == t) for t in range(cfg.topics)]
    topic_weights = []
    for pins in topic_pins:
        w = popularity[pins]
        topic_weights.append(w / w.sum() if len(pins) else w)
    return World(pin_topic, popularity / popularity.sum(), interests, topic_pins, topic_weights)


def _catalogues(cfg: GeneratorConfig, world: World) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng([cfg.seed, 1])
    topic_names = [f"topic_{t:02d}" for t in range(cfg.topics)]
    pins = pa.table(
        {
            "pin_id": [pin_id(i) for i in range(cfg.pins)],
            "board_id": [f"b{int(t):03d}{int(rng.integers(0, 5))}" for t in world.pin_topic],
            "title": [f"{topic_names[t]} idea #{i}" for i, t in enumerate(world.pin_topic)],
            "topics": [[topic_names[t]] for t in world.pin_topic],
        },
        schema=PINS_SCHEMA,
    )
    users = pa.table(
        {
            "user_id": [user_id(i) for i in range(cfg.users)],
            "country": [COUNTRIES[int(i)] for i in rng.integers(0, len(COUNTRIES), cfg.users)],
            "age": rng.integers(16, 70, cfg.users).astype(np.int32),
            "gender": [("f", "m", "x")[int(i)] for i in rng.integers(0, 3, cfg.users)],
            "occupation": [OCCUPATIONS[int(i)] for i in rng.integers(0, len(OCCUPATIONS), cfg.users)],
        },
        schema=USERS_SCHEMA,
    )
    return pins, users


def _day_events(cfg: GeneratorConfig, world: World, day_index: int) -> pa.Table:
    rng = np.random.default_rng([cfg.seed, 2, day_index])
    day = cfg.start + timedelta(days=day_index)
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    seconds_in_day = 86_400
    rows: dict[str, list[object]] = {f.name: [] for f in EVENTS_SCHEMA}

    def emit(user: int, pin: int, event_type: str, second: int, surface: str) -> None:
        rows["event_id"].append(f"ev-{day:%Y%m%d}-{len(rows['event_id']):07d}")
        rows["user_id"].append(user_id(user))
        rows["pin_id"].append(pin_id(pin))
        rows["event_type"].append(event_type)
        rows["event_ts"].append(day_start + timedelta(seconds=min(second, seconds_in_day - 1)))
        rows["surface"].append(surface)
        rows["value"].append(None)

    impressions = rng.poisson(cfg.impressions_per_user_day, size=cfg.users)
    for user in range(cfg.users):
        interests = world.user_interests[user]
        for _ in range(int(impressions[user])):
            if rng.random() < cfg.interest_share:
                topic = int(rng.choice(interests))
                candidates = world.topic_pins[topic]
                if not len(candidates):
                    continue
                pin = int(rng.choice(candidates, p=world.topic_weights[topic]))
            else:
                pin = int(rng.choice(cfg.pins, p=world.pin_popularity))
            surface = SURFACES[int(rng.integers(0, len(SURFACES)))]
            second = int(rng.integers(0, seconds_in_day - 600))
            emit(user, pin, "impression", second, surface)
            liked = world.pin_topic[pin] in interests
            if rng.random() < (0.45 if liked else 0.03):
                second += int(rng.integers(1, 60))
                emit(user, pin, "closeup", second, surface)
                if rng.random() < 0.5:
                    emit(user, pin, "click", second + int(rng.integers(1, 60)), surface)
                if rng.random() < (0.35 if liked else 0.05):
                    emit(user, pin, "save", second + int(rng.integers(60, 300)), surface)
            elif not liked and rng.random() < 0.05:
                emit(user, pin, "hide", second + int(rng.integers(1, 30)), surface)
    return pa.table(rows, schema=EVENTS_SCHEMA)


def write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def write_partition(directory: Path, parts: list[pa.Table]) -> None:
    """Rewrite a landing partition as a producer must: drop ``_SUCCESS``, replace the files, write it last."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SUCCESS_MARKER).unlink(missing_ok=True)
    for stale in directory.glob("*.parquet"):
        stale.unlink()
    for i, part in enumerate(parts):
        write_parquet(part, directory / f"part-{i:05d}.parquet")
    (directory / SUCCESS_MARKER).touch()


def generate(landing_dir: Path, cfg: GeneratorConfig) -> GeneratedSummary:
    """Write ``cfg.days`` daily event partitions and the pin/user catalogues under ``landing_dir``."""
    world = _world(cfg)
    pins, users = _catalogues(cfg, world)
    write_parquet(pins, landing_dir / "pins" / "pins.parquet")
    write_parquet(users, landing_dir / "users" / "users.parquet")
    total = 0
    for i in range(cfg.days):
        day = cfg.start + timedelta(days=i)
        events = _day_events(cfg, world, i)
        write_partition(partition_dir(landing_dir, day), [events])
        total += events.num_rows
        log.info("generated ds=%s: %d events", day, events.num_rows)
    return GeneratedSummary(
        start=cfg.start,
        end=cfg.start + timedelta(days=cfg.days - 1),
        partitions=cfg.days,
        events=total,
        users=cfg.users,
        pins=cfg.pins,
    )
