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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recflow.core.errors import ConfigError
from recflow.core.ownership import claim, folder_store
from recflow.ingest.contract import EVENTS_SCHEMA, PINS_SCHEMA, SUCCESS_MARKER, USERS_SCHEMA, partition_dir

log = logging.getLogger(__name__)

SURFACES = ("home_feed", "search", "related", "board")
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "JP", "IN", "MX")
OCCUPATIONS = ("student", "engineer", "artist", "teacher", "writer", "other")
SECONDS_IN_DAY = 86_400
USERS_PER_CHUNK = 100_000
"""Users per part file of a day: what bounds the generator's memory (~2M events, a few hundred MB).
Part of the data's definition (each block has its own seed), so it is a constant, not a setting."""
MAX_DAYS = 3660
"""The longest window generated at once: beyond it a ``--days`` is a typo (100,000 days wrote 2.5 GB)."""
EPOCH = date(1970, 1, 1)
"""No generated day before it."""
EVENT_IDS_PER_CHUNK = 10_000_000
"""Event ids of block ``k`` of a day start at ``k * EVENT_IDS_PER_CHUNK``: unique without counting
what the earlier blocks emitted, so a block is reproducible on its own."""


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
                raise ConfigError(f"generator setting {name}={getattr(self, name)} must be at least 1")
        if self.days > MAX_DAYS:
            raise ConfigError(
                f"generator setting days={self.days} is more than {MAX_DAYS} (ten years of daily partitions)"
            )
        if self.start < EPOCH:
            raise ConfigError(
                f"generator setting start={self.start} (the last day minus days - 1) is before {EPOCH}"
            )
        if self.interests_per_user > self.topics:
            raise ConfigError(
                f"interests_per_user={self.interests_per_user} cannot exceed topics={self.topics}"
            )


@dataclass(frozen=True)
class World:
    pin_topic: np.ndarray
    """[pins]: each pin's topic."""
    user_interests: np.ndarray
    """[users, interests_per_user]: each user's topics."""
    popularity_cdf: np.ndarray
    """[pins]: cumulative share of global popularity, for drawing a popular pin."""
    pins_by_topic: np.ndarray
    """[pins]: pin indices grouped by topic, in the order of ``topic_cdf``."""
    topic_cdf: np.ndarray
    """[pins]: topic + cumulative share of the topic's popularity, for drawing a pin of a topic."""
    topic_sizes: np.ndarray
    """[topics]: pins per topic."""


@dataclass(frozen=True)
class GeneratedSummary:
    start: date
    end: date
    partitions: int
    events: int
    users: int
    pins: int


def _ids(prefix: str, indices: np.ndarray) -> pa.Array:
    """Ids for many indices at once, as Arrow strings: ``p00042``, ``u00007`` (five digits at least)."""
    digits = pc.utf8_lpad(pa.array(indices, pa.int64()).cast(pa.string()), 5, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _choose_interests(rng: np.random.Generator, cfg: GeneratorConfig) -> np.ndarray:
    """``interests_per_user`` distinct topics per user: the first columns of a random ranking per row."""
    out = np.empty((cfg.users, cfg.interests_per_user), np.int16)
    for lo in range(0, cfg.users, USERS_PER_CHUNK):
        hi = min(lo + USERS_PER_CHUNK, cfg.users)
        keys = rng.random((hi - lo, cfg.topics), dtype=np.float32)
        out[lo:hi] = np.argsort(keys, axis=1)[:, : cfg.interests_per_user]
    return out


def _world(cfg: GeneratorConfig) -> World:
    rng = np.random.default_rng([cfg.seed, 0])
    pin_topic = rng.integers(0, cfg.topics, size=cfg.pins)
    ranks = rng.permutation(cfg.pins) + 1
    popularity = 1.0 / ranks.astype(float) ** cfg.zipf_exponent
    interests = _choose_interests(rng, cfg)
    # one inverse-CDF table for every topic: topic t's pins, by their share of t's popularity,
    # cover [t, t + 1); drawing t + u (u uniform) picks a pin of t in proportion to popularity
    by_topic = np.argsort(pin_topic, kind="stable")
    topics_sorted = pin_topic[by_topic]
    topic_total = np.bincount(pin_topic, weights=popularity, minlength=cfg.topics)
    share = popularity[by_topic] / topic_total[topics_sorted]
    cumulative = np.cumsum(share)
    topic_start = np.searchsorted(topics_sorted, np.arange(cfg.topics))
    before = np.concatenate([[0.0], cumulative])[topic_start]
    topic_cdf = topics_sorted + (cumulative - before[topics_sorted])
    return World(
        pin_topic=pin_topic,
        user_interests=interests,
        popularity_cdf=np.cumsum(popularity / popularity.sum()),
        pins_by_topic=by_topic,
        topic_cdf=topic_cdf,
        topic_sizes=np.bincount(pin_topic, minlength=cfg.topics),
    )


def _catalogues(cfg: GeneratorConfig, world: World) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng([cfg.seed, 1])
    topic_names = pa.array([f"topic_{t:02d}" for t in range(cfg.topics)])
    topic = pc.take(topic_names, pa.array(world.pin_topic))
    board = pc.binary_join_element_wise(
        "b",
        pc.utf8_lpad(pa.array(world.pin_topic, pa.int64()).cast(pa.string()), 3, "0"),
        pa.array(rng.integers(0, 5, cfg.pins), pa.int64()).cast(pa.string()),
        "",
    )
    pins = pa.table(
        {
            "pin_id": _ids("p", np.arange(cfg.pins)),
            "board_id": board,
            "title": pc.binary_join_element_wise(
                topic, pa.array(np.arange(cfg.pins), pa.int64()).cast(pa.string()), " idea #"
            ),
            "topics": pa.ListArray.from_arrays(pa.array(np.arange(cfg.pins + 1), pa.int32()), topic),
        },
        schema=PINS_SCHEMA,
    )
    users = pa.table(
        {
            "user_id": _ids("u", np.arange(cfg.users)),
            "country": pc.take(pa.array(COUNTRIES), pa.array(rng.integers(0, len(COUNTRIES), cfg.users))),
            "age": rng.integers(16, 70, cfg.users).astype(np.int32),
            "gender": pc.take(pa.array(["f", "m", "x"]), pa.array(rng.integers(0, 3, cfg.users))),
            "occupation": pc.take(
                pa.array(OCCUPATIONS), pa.array(rng.integers(0, len(OCCUPATIONS), cfg.users))
            ),
        },
        schema=USERS_SCHEMA,
    )
    return pins, users


def _impressions(
    cfg: GeneratorConfig, world: World, rng: np.random.Generator, users: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(user, pin) of every impression shown to ``users`` in a day, in user order."""
    counts = rng.poisson(cfg.impressions_per_user_day, size=len(users))
    user = np.repeat(users, counts)
    n = len(user)
    from_interests = rng.random(n) < cfg.interest_share
    pick = rng.integers(0, cfg.interests_per_user, n)
    topic = world.user_interests[user, pick].astype(np.int64)
    u = rng.random(n)
    in_topic = world.pins_by_topic[
        np.minimum(np.searchsorted(world.topic_cdf, topic + u, side="right"), cfg.pins - 1)
    ]
    popular = np.minimum(np.searchsorted(world.popularity_cdf, u, side="right"), cfg.pins - 1)
    pin = np.where(from_interests, in_topic, popular)
    keep = ~from_interests | (world.topic_sizes[topic] > 0)  # an interest with no pins shows nothing
    return user[keep], pin[keep]


def _day_events(cfg: GeneratorConfig, world: World, day_index: int, chunk: int) -> pa.Table:
    """The events of one day for one block of ``USERS_PER_CHUNK`` users (a part file of the day)."""
    # seeded by the date itself, not its place in the window: a day is the same whichever window
    # (--days, --end) wrote it, so writing it again never changes a day that has landed
    rng = np.random.default_rng([cfg.seed, 2, (cfg.start + timedelta(days=day_index)).toordinal(), chunk])
    users = np.arange(chunk * USERS_PER_CHUNK, min((chunk + 1) * USERS_PER_CHUNK, cfg.users))
    user, pin = _impressions(cfg, world, rng, users)
    n = len(user)
    liked = (world.user_interests[user] == world.pin_topic[pin][:, None]).any(axis=1)
    surface = rng.integers(0, len(SURFACES), n)
    second = rng.integers(0, SECONDS_IN_DAY - 600, n)
    closeup = rng.random(n) < np.where(liked, 0.45, 0.03)
    closeup_at = second + rng.integers(1, 60, n)
    click = closeup & (rng.random(n) < 0.5)
    click_at = closeup_at + rng.integers(1, 60, n)
    save = closeup & (rng.random(n) < np.where(liked, 0.35, 0.05))
    save_at = closeup_at + rng.integers(60, 300, n)
    hide = ~closeup & ~liked & (rng.random(n) < 0.05)
    hide_at = second + rng.integers(1, 30, n)

    # every event as (impression, kind): kinds in the order a user does them
    kinds = (
        ("impression", np.ones(n, bool), second),
        ("closeup", closeup, closeup_at),
        ("click", click, click_at),
        ("save", save, save_at),
        ("hide", hide, hide_at),
    )
    impression = np.concatenate([np.flatnonzero(mask) for _, mask, _ in kinds])
    kind = np.concatenate([np.full(int(mask.sum()), k, np.int8) for k, (_, mask, _) in enumerate(kinds)])
    at = np.concatenate([when[mask] for _, mask, when in kinds])
    order = np.lexsort((kind, impression))
    impression, kind, at = impression[order], kind[order], np.minimum(at[order], SECONDS_IN_DAY - 1)

    day = cfg.start + timedelta(days=day_index)
    day_start = np.datetime64(datetime(day.year, day.month, day.day), "us")
    serial = pa.array(np.arange(len(order)) + chunk * EVENT_IDS_PER_CHUNK, pa.int64()).cast(pa.string())
    return pa.table(
        {
            "event_id": pc.binary_join_element_wise(f"ev-{day:%Y%m%d}-", pc.utf8_lpad(serial, 7, "0"), ""),
            "user_id": _ids("u", user[impression]),
            "pin_id": _ids("p", pin[impression]),
            "event_type": pc.take(pa.array([k for k, _, _ in kinds]), pa.array(kind)),
            "event_ts": pa.array(day_start + at.astype("timedelta64[s]"), pa.timestamp("us", tz="UTC")),
            "surface": pc.take(pa.array(SURFACES), pa.array(surface[impression])),
            "value": pa.nulls(len(order), pa.float64()),
        },
        schema=EVENTS_SCHEMA,
    )


def write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def write_partition(directory: Path, parts: Iterable[pa.Table]) -> int:
    """Rewrite a landing partition as a producer must: drop ``_SUCCESS``, replace the files, write it last.

    ``parts`` may be a generator: each part is written as it comes, so memory holds one part.
    Returns the rows written."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SUCCESS_MARKER).unlink(missing_ok=True)
    for stale in directory.glob("*.parquet"):
        stale.unlink()
    rows = 0
    for i, part in enumerate(parts):
        write_parquet(part, directory / f"part-{i:05d}.parquet")
        rows += part.num_rows
    (directory / SUCCESS_MARKER).touch()
    return rows


def _day_parts(cfg: GeneratorConfig, world: World, day_index: int) -> Iterator[pa.Table]:
    for chunk in range(-(-cfg.users // USERS_PER_CHUNK)):
        events = _day_events(cfg, world, day_index, chunk)
        if events.num_rows >= EVENT_IDS_PER_CHUNK:
            raise ValueError(
                f"{events.num_rows} events for {USERS_PER_CHUNK} users in a day overflow the "
                f"{EVENT_IDS_PER_CHUNK} event ids of a block: lower impressions_per_user_day "
                f"({cfg.impressions_per_user_day})"
            )
        yield events


def generate(
    landing_dir: Path, cfg: GeneratorConfig, *, command: str = "recflow generate"
) -> GeneratedSummary:
    """Write ``cfg.days`` daily event partitions and the pin/user catalogues under ``landing_dir``.

    Only into a landing zone recflow made (``recflow.core.ownership``): ``landing_dir`` must not exist
    yet, be empty, or carry the marker; anything else, a producers' zone, raises ``StoreNotOwned``
    before a file is touched (the commands claim it first, naming its setting).

    A day is written in blocks of ``USERS_PER_CHUNK`` users, one part file each, so memory is
    bounded by a block whatever the volume (100M events is a matter of ``users`` and ``days``)."""
    claim([folder_store(landing_dir)], command)
    world = _world(cfg)
    pins, users = _catalogues(cfg, world)
    write_parquet(pins, landing_dir / "pins" / "pins.parquet")
    write_parquet(users, landing_dir / "users" / "users.parquet")
    del pins, users
    total = 0
    for i in range(cfg.days):
        day = cfg.start + timedelta(days=i)
        rows = write_partition(partition_dir(landing_dir, day), _day_parts(cfg, world, i))
        total += rows
        log.info("generated ds=%s: %d events", day, rows)
    return GeneratedSummary(
        start=cfg.start,
        end=cfg.start + timedelta(days=cfg.days - 1),
        partitions=cfg.days,
        events=total,
        users=cfg.users,
        pins=cfg.pins,
    )
