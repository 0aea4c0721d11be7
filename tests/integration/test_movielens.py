"""MovieLens 100K through landing and dbt: counts, side features and the leave-last-out split.

Needs ../shared/data/ml-100k (never copied into the repo); skips with the reason when it is absent.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench.movielens_split import leave_last_out
from recflow.core.config import Settings
from recflow.ingest.days import stage_and_audit
from recflow.producers.movielens import MovieLensError, load_movielens, read_ratings
from recflow.warehouse import connect
from tests.conftest import SHARED_DATA
from tests.integration.conftest import build_marts

ML100K = SHARED_DATA / "ml-100k"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.data,
    pytest.mark.skipif(
        not ML100K.is_dir(), reason=f"MovieLens 100K not found at {ML100K} (see shared/data/README.md)"
    ),
]


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path_factory.mktemp("ml"))})
    summary = load_movielens(ML100K, settings.landing_dir)
    days = sorted(
        date.fromisoformat(p.name.removeprefix("ds=")) for p in (settings.landing_dir / "events").iterdir()
    )
    assert len(days) == summary.partitions
    stage_and_audit(settings, days, run_id="movielens", check_volume=False)
    build_marts(settings)
    return settings


def test_every_rating_lands_once(movielens: Settings) -> None:
    expected = read_ratings(ML100K).num_rows
    assert expected == 99_057
    landed = sum(pq.read_table(f).num_rows for f in (movielens.landing_dir / "events").rglob("*.parquet"))
    with connect(movielens, read_only=True) as con:
        raw = con.execute(
            "select count(*), count(distinct event_id), min(value), max(value) from raw.events"
        ).fetchone()
        pairs = con.execute("select count(*) from analytics.training_interactions").fetchone()
    assert landed == expected
    assert raw == (expected, expected, 1.0, 5.0)
    assert pairs == (expected,), "every rating is one positive user–movie pair"


def test_side_features_reach_the_marts(movielens: Settings) -> None:
    with connect(movielens, read_only=True) as con:
        toy_story = con.execute("select title, topics from analytics.dim_pins where pin_id = '1'").fetchone()
        user_1 = con.execute(
            "select age, gender, occupation from analytics.dim_users where user_id = '1'"
        ).fetchone()
        counts = con.execute(
            "select (select count(*) from analytics.dim_pins), (select count(*) from analytics.dim_users)"
        ).fetchone()
    assert toy_story == ("Toy Story (1995)", ["Animation", "Children's", "Comedy"])
    assert user_1 == (24, "M", "technician")
    assert counts == (1682, 943)


def test_holdout_is_each_users_latest_positive(movielens: Settings) -> None:
    split = leave_last_out(ML100K)
    expected = set(
        zip(
            split.holdout.column("user_id").to_pylist(),
            split.holdout.column("item_id").to_pylist(),
            strict=True,
        )
    )
    with connect(movielens, read_only=True) as con:
        holdout = set(
            con.execute(
                "select user_id, pin_id from analytics.training_interactions where split = 'holdout'"
            ).fetchall()
        )
    assert len(holdout) == 943
    assert holdout == expected, "the dbt split must equal the README's protocol (ties: larger item id)"


def test_a_broken_file_is_named(tmp_path: Path) -> None:
    for name in ("u.item", "u.user", "u.genre"):
        (tmp_path / name).write_text((ML100K / name).read_text(encoding="latin-1"), encoding="latin-1")
    (tmp_path / "ratings.train.tsv").write_text("1\t2\t5\t881250949\n1\ttwo\t5\t881250950\n")
    with pytest.raises(MovieLensError, match=r"ratings.train.tsv:2: expected 4 integer fields"):
        load_movielens(tmp_path, tmp_path / "landing")
    (tmp_path / "u.genre").unlink()
    with pytest.raises(MovieLensError, match=r"missing u\.genre"):
        load_movielens(tmp_path, tmp_path / "landing")


def test_a_refused_file_replaces_nothing_in_the_landing_zone(tmp_path: Path) -> None:
    """The catalogues were written before u.user was read, so a load refused for a broken u.user had
    already replaced the landing zone's pins; an empty ratings file raised an IndexError after writing both."""
    data = tmp_path / "ml"
    data.mkdir()
    for name in ("u.genre", "ratings.train.tsv"):
        (data / name).write_bytes((ML100K / name).read_bytes())
    # a catalogue one movie shorter than the one landed, so a write of it would show
    (data / "u.item").write_bytes(b"\n".join((ML100K / "u.item").read_bytes().splitlines()[:-1]))
    (data / "u.user").write_text("1|24|M|technician\n", encoding="latin-1")  # the zip code is missing
    landing = tmp_path / "landing"
    loaded = load_movielens(ML100K, landing)
    before = {p: p.read_bytes() for p in landing.rglob("*") if p.is_file()}
    with pytest.raises(MovieLensError, match=r"u\.user:1: "):
        load_movielens(data, landing)
    (data / "u.user").write_bytes((ML100K / "u.user").read_bytes())
    (data / "ratings.train.tsv").write_text("")
    with pytest.raises(MovieLensError, match=r"ratings\.train\.tsv: no ratings"):
        load_movielens(data, landing)
    after = {p: p.read_bytes() for p in landing.rglob("*") if p.is_file()}
    assert after == before and len(before) > loaded.partitions
