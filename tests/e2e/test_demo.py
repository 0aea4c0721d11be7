"""End to end: `recflow demo` on a tiny data set, through a real Airflow scheduler.

That a rerun changes nothing (content checksums, the same training job, no second
version) is proven in ``test_faults.py``, on the same DAGs.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from recflow.cli import main
from recflow.core.config import Settings
from recflow.registry import MlflowRegistry, registry_for
from recflow.warehouse import connect

pytestmark = pytest.mark.e2e

DEMO = ["demo", "--days", "2", "--users", "200", "--pins", "150", "--seed", "5"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str]]:
    """The demo's home, and what it printed."""
    root = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_HOME", str(root / "home"))
        mp.setenv("RECFLOW_MODEL_NAME", "recsys-e2e")
        mp.setenv("RECFLOW_GATE_MIN_HR_AT_10", "0.12")
        mp.setenv("RECFLOW_GATE_MIN_NDCG_AT_10", "0.05")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(DEMO)
        print(printed.getvalue())
        assert code == 0
        settings = Settings.from_env()
        yield settings, printed.getvalue()


@pytest.fixture(scope="module")
def home(demo: tuple[Settings, str]) -> Settings:
    return demo[0]


def test_the_demo_shows_each_days_run_once(demo: tuple[Settings, str]) -> None:
    _, printed = demo
    days = re.findall(r"recsys_warehouse ds=(\d{4}-\d{2}-\d{2}): success", printed)
    assert len(days) == 2 and len(set(days)) == 2, printed


def test_champion_ranks_held_out_pins_above_random_pins(home: Settings, tmp_path: Path) -> None:
    import tensorflow as tf

    registry = MlflowRegistry(home)
    champion = registry.get_by_alias("recsys-e2e")
    assert champion is not None
    assert champion.metrics["hr@10"] > 0.12
    assert {
        "snapshot_id",
        "dbt_invocation_id",
        "git_commit",
        "training_job_name",
        "airflow_dag_id",
        "airflow_run_id",
    } <= set(champion.lineage)
    model = tf.saved_model.load(str(registry.download(champion, tmp_path / "model")))
    with connect(home, read_only=True) as con:
        pairs = con.execute("select user_id, pin_id, split from analytics.training_interactions").fetchall()
        pins = sorted(r[0] for r in con.execute("select pin_id from analytics.dim_pins").fetchall())
    engaged: dict[str, set[str]] = {}
    for user, pin, _ in pairs:
        engaged.setdefault(user, set()).add(pin)
    holdout = [(user, pin) for user, pin, split in pairs if split == "holdout"]
    rng = np.random.default_rng(0)
    users, positives, randoms = [], [], []
    for user, pin in holdout:
        candidates = [p for p in pins if p not in engaged[user]]
        users.append(user)
        positives.append(pin)
        randoms.append(candidates[int(rng.integers(0, len(candidates)))])
    score = model.signatures["score"]
    pos = score(user_id=tf.constant(users), item_id=tf.constant(positives))["score"].numpy()
    neg = score(user_id=tf.constant(users), item_id=tf.constant(randoms))["score"].numpy()
    wins = float(np.mean(pos > neg))
    assert len(users) >= 100
    # chance is 0.5; with >= 100 users its standard error is <= 0.05
    assert wins > 0.65, f"held-out pin beat a random pin for only {wins:.0%} of users"


def test_models_list_json(home: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_HOME", str(home.home))
        capsys.readouterr()
        assert main(["models", "list", "--name", "recsys-e2e", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed and {"name", "version", "aliases", "metrics", "lineage", "created_at"} <= set(listed[0])
    assert any("champion" in v["aliases"] for v in listed)
    assert {"hr@10", "ndcg@10", "full_hr@10", "full_ndcg@10", "full_recall@50"} <= set(listed[-1]["metrics"])


def test_the_summary_shows_both_families_under_the_cards_headings(demo: tuple[Settings, str]) -> None:
    """Each family's line heads as ``recflow models show`` heads it, with the champion's figures as
    the registry holds them."""
    settings, printed = demo
    champion = registry_for(settings).get_by_alias("recsys-e2e", "champion")
    assert champion is not None
    lines = printed.splitlines()
    full = next(line for line in lines if line.startswith("    full ranking (every pin the user has not"))
    sampled = next(
        line for line in lines if line.startswith("    sampled (against 99 pins never engaged with): ")
    )
    assert f"full_ndcg@10={champion.metrics['full_ndcg@10']:.4f}" in full
    assert f"hr@10={champion.metrics['hr@10']:.4f}" in sampled and "random ranking" in sampled
