"""MovieLens 100K into the landing zone, under the data contract (``docs/data-contract.md``).

Every rating is an implicit positive: a ``save`` event whose ``value`` keeps the
rating, at the rating's unix timestamp, in the daily partition of that UTC day; a day of the
span without ratings gets an empty partition, as a producer exports every day.
``u.item`` becomes the pin catalogue (the 19 genre flags are the pin's
``topics``), ``u.user`` the user catalogue (age, gender, occupation). Ids stay
the strings written in the files. The data is read from where the user keeps
it and never copied into the repository (its terms forbid redistribution).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from recflow.core.errors import ConfigError
from recflow.core.ownership import claim, folder_store
from recflow.ingest.contract import EVENTS_SCHEMA, PINS_SCHEMA, USERS_SCHEMA, partition_dir
from recflow.producers.generate import write_parquet, write_partition

log = logging.getLogger(__name__)

RATINGS_FILE = "ratings.train.tsv"
REQUIRED_FILES = (RATINGS_FILE, "u.item", "u.user", "u.genre")


class MovieLensError(ConfigError):
    """The data directory is not MovieLens 100K as ``../shared/data/README.md`` describes it."""


@dataclass(frozen=True)
class MovieLensSummary:
    ratings: int
    users: int
    items: int
    partitions: int
    first_day: date
    last_day: date


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="latin-1").splitlines()


def check_data_dir(data_dir: Path) -> None:
    missing = [name for name in REQUIRED_FILES if not (data_dir / name).is_file()]
    if missing:
        raise MovieLensError(f"{data_dir}: missing {', '.join(missing)} (expected the ml-100k files)")


def read_ratings(data_dir: Path) -> pa.Table:
    """``ratings.train.tsv`` as (user_id, item_id, rating, ts); malformed lines are named, not skipped."""
    users, items, ratings, stamps = [], [], [], []
    for number, line in enumerate(_lines(data_dir / RATINGS_FILE), start=1):
        fields = line.split("\t")
        if len(fields) != 4 or not all(f.strip().lstrip("-").isdigit() for f in fields):
            raise MovieLensError(
                f"{data_dir / RATINGS_FILE}:{number}: expected 4 integer fields, got {line!r}"
            )
        users.append(fields[0])
        items.append(fields[1])
        ratings.append(float(fields[2]))
        stamps.append(int(fields[3]))
    return pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "item_id": pa.array(items, pa.string()),
            "rating": pa.array(ratings, pa.float64()),
            "ts": pa.array(stamps, pa.int64()),
        }
    )


def read_items(data_dir: Path) -> pa.Table:
    genres = [line.split("|")[0] for line in _lines(data_dir / "u.genre") if line.strip()]
    ids, titles, topics = [], [], []
    for number, line in enumerate(_lines(data_dir / "u.item"), start=1):
        fields = line.split("|")
        if len(fields) != 5 + len(genres):
            raise MovieLensError(
                f"{data_dir / 'u.item'}:{number}: expected {5 + len(genres)} fields, got {len(fields)}"
            )
        ids.append(fields[0])
        titles.append(fields[1])
        topics.append([g for g, flag in zip(genres, fields[5:], strict=True) if flag == "1"])
    return pa.table(
        {"pin_id": ids, "board_id": [None] * len(ids), "title": titles, "topics": topics}, schema=PINS_SCHEMA
    )


def read_users(data_dir: Path) -> pa.Table:
    rows = []
    for number, line in enumerate(_lines(data_dir / "u.user"), start=1):
        fields = line.split("|")
        if len(fields) != 5 or not fields[1].isdigit():
            raise MovieLensError(
                f"{data_dir / 'u.user'}:{number}: expected id|age|gender|occupation|zip, got {line!r}"
            )
        rows.append((fields[0], None, int(fields[1]), fields[2], fields[3]))
    columns = list(zip(*rows, strict=True))
    return pa.table(dict(zip(USERS_SCHEMA.names, columns, strict=True)), schema=USERS_SCHEMA)


def load_movielens(
    data_dir: Path, landing_dir: Path, *, command: str = "recflow load movielens"
) -> MovieLensSummary:
    """Write the ratings as daily event partitions and the two catalogues; returns what was written.

    Only into a landing zone recflow made (``recflow.core.ownership``), as ``generate``: a day's
    partition and the catalogues are replaced, so a producers' zone raises ``StoreNotOwned`` before a
    file is touched (the command claims it first, naming its setting)."""
    check_data_dir(data_dir)
    # every file is read and checked before anything is written: a refused file replaces nothing
    ratings, pins, users = read_ratings(data_dir), read_items(data_dir), read_users(data_dir)
    if ratings.num_rows == 0:
        raise MovieLensError(f"{data_dir / RATINGS_FILE}: no ratings (the file holds no line)")
    claim([folder_store(landing_dir)], command)
    events_ts = pc.cast(pc.multiply(ratings.column("ts"), 1_000_000), pa.timestamp("us", tz="UTC"))
    days = pc.cast(pc.cast(events_ts, pa.timestamp("us")), pa.date32())
    events = pa.table(
        {
            "event_id": pa.array(
                [
                    f"ml-{u}-{i}"
                    for u, i in zip(
                        ratings.column("user_id").to_pylist(),
                        ratings.column("item_id").to_pylist(),
                        strict=True,
                    )
                ]
            ),
            "user_id": ratings.column("user_id"),
            "pin_id": ratings.column("item_id"),
            "event_type": pa.array(["save"] * ratings.num_rows, pa.string()),
            "event_ts": events_ts,
            "surface": pa.nulls(ratings.num_rows, pa.string()),
            "value": ratings.column("rating"),
        },
        schema=EVENTS_SCHEMA,
    )
    seen_days = sorted(set(days.to_pylist()))
    unique_days = [seen_days[0] + timedelta(days=i) for i in range((seen_days[-1] - seen_days[0]).days + 1)]
    write_parquet(pins, landing_dir / "pins" / "pins.parquet")
    write_parquet(users, landing_dir / "users" / "users.parquet")
    written = 0
    for day in unique_days:
        part = events.filter(pc.equal(days, pa.scalar(day, pa.date32())))
        write_partition(partition_dir(landing_dir, day), [part])
        written += part.num_rows
    log.info(
        "landed %d MovieLens ratings into %d daily partitions under %s",
        written,
        len(unique_days),
        landing_dir,
    )
    return MovieLensSummary(
        ratings=written,
        users=len(set(ratings.column("user_id").to_pylist())),
        items=len(set(ratings.column("item_id").to_pylist())),
        partitions=len(unique_days),
        first_day=unique_days[0],
        last_day=unique_days[-1],
    )
