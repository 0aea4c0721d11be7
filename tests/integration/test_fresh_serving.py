"""Fresh serving and honest gating: the published model serves each user's holdout, the evaluation never sees it.

A small trained two-tower model in a world of two clusters (users u0..u9 like pins
p000..p059, the others p060..p119) is published twice through the real publishing path
(real MLflow on SQLite, the real artifact store), from the same training job's archive,
once with user u0's holdout in cluster 0 and once in cluster 1. Only u0's recommendations
may move; the registry's metrics are those of the archive that never saw a holdout.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recflow.cli import main as cli_main
from recflow.core.artifacts import join, store_for, unpack_model
from recflow.core.config import GateSettings, Settings
from recflow.evaluation import (
    GateDecision,
    build_eval_set,
    evaluate_champion,
    evaluate_model_archive,
    savedmodel_scorer,
)
from recflow.publishing.card import model_card
from recflow.publishing.publish import publish_evaluated, publish_training_job
from recflow.publishing.serving import latest_histories, refresh_user_vectors
from recflow.registry import CURVE_PREFIX, MlflowRegistry
from recflow.registry.model import NOT_A_METRIC

pytestmark = pytest.mark.integration

tf = pytest.importorskip("tensorflow")

USERS = [f"u{i}" for i in range(20)]
ITEMS = [f"p{i:03d}" for i in range(120)]
HISTORY = 4
EPOCHS = 12


def cluster_of(user: str) -> int:
    return 0 if int(user[1:]) < 10 else 1


def interactions(rows: list[tuple[str, str, int]]) -> pa.Table:
    return pa.table(
        {
            "user_id": [u for u, _, _ in rows],
            "pin_id": [p for _, p, _ in rows],
            "weight": pa.array([1.0] * len(rows), pa.float64()),
            "n_positive_events": pa.array([1] * len(rows), pa.int64()),
            "event_ts": pa.array([t * 1_000_000 for *_, t in rows], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
        }
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The job's ``model.tar.gz``, the snapshot's train file and two holdout files, in the artifact store."""
    from recflow_ml.hyperparameters import Hyperparameters
    from recflow_ml.model import TrainingData, TwoTowerModel, export

    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path_factory.mktemp("fresh-serving"))})
    rng = np.random.default_rng(3)
    train_rows = [
        (u, ITEMS[int(rng.integers(0, 60)) + 60 * cluster_of(u)], t) for u in USERS for t in range(1, 16)
    ]
    data = TrainingData(
        np.array([u for u, _, _ in train_rows]),
        np.array([p for _, p, _ in train_rows]),
        np.ones(len(train_rows), np.float32),
        np.array([t for *_, t in train_rows]),
    )
    model = TwoTowerModel(
        USERS,
        ITEMS,
        Hyperparameters(
            epochs=EPOCHS, batch_size=32, embedding_dim=8, hidden_dim=16, history_length=HISTORY, dropout=0.0
        ),
    )
    model.fit(data)
    work = tmp_path_factory.mktemp("fresh-work")
    export(model, work / "savedmodel")
    (work / "savedmodel" / "metadata.json").write_text(
        json.dumps(
            {
                "input": "stream",
                "history": [{"epoch": e, "loss": 5.0 - e / 10, "seconds": 0.1} for e in range(1, EPOCHS + 1)],
            }
        )
    )
    archive = work / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((work / "savedmodel").iterdir()):
            tar.add(path, arcname=path.name)
    store = store_for(settings)
    base = join(settings.artifacts_uri, "snapshots", "s1")
    model_uri = store.put_file(
        archive, join(settings.artifacts_uri, "models", "job", "output", "model.tar.gz")
    )
    # every user's holdout is a pin of their own cluster, one second after their last train row;
    # only u0's differs between the two holdouts: cluster 0 in A, cluster 1 in B
    holdout_a = [(u, ITEMS[5 + 60 * cluster_of(u) + int(u[1:])], 16) for u in USERS]
    holdout_b = [("u0", ITEMS[100], 16), *holdout_a[1:]]
    uris = {}
    for name, rows in (("train", train_rows), ("holdout_a", holdout_a), ("holdout_b", holdout_b)):
        pq.write_table(interactions(rows), work / f"{name}.parquet")
        uris[name] = store.put_file(work / f"{name}.parquet", join(base, name, "interactions.parquet"))
    pairs = {
        name: [(u, p) for u, p, _ in rows]
        for name, rows in (("train", train_rows), ("holdout_a", holdout_a), ("holdout_b", holdout_b))
    }
    return {"settings": settings, "model_uri": model_uri, "archive": archive, "uris": uris, "pairs": pairs}


def eval_set(world: dict[str, Any], holdout: str) -> Any:
    return build_eval_set(world["pairs"][holdout], world["pairs"]["train"], ITEMS, seed=42)


def recommend(model_dir: Path, users: list[str]) -> list[list[str]]:
    out = tf.saved_model.load(str(model_dir)).signatures["recommend"](user_id=tf.constant(users))["item_id"]
    return [[i.decode() for i in row] for row in out.numpy()]


FIRST = {"promote": True, "reason": "promoted: first model (no champion yet) and above the floors"}
"""A gate decision as XComs recorded it before decisions carried the settings they applied."""
APPLIED_ELSEWHERE = GateDecision(
    True,
    "promoted: first model (no champion yet), hr@10 0.9 and ndcg@10 0.8 above the floors",
    GateSettings(ranking="sampled", min_hr_at_10=0.3, min_ndcg_at_10=0.2, tolerance=0.02),
).as_dict()
"""The gate's XCom when it ran under other settings than the ones ``publish`` runs under."""


def publish_with(
    world: dict[str, Any], name: str, job: str, holdout: str, decision: dict[str, Any]
) -> dict[str, Any]:
    settings: Settings = world["settings"]
    metrics = evaluate_model_archive(world["archive"], eval_set(world, holdout))
    return publish_evaluated(
        settings,
        snapshot={
            "snapshot_id": f"snap-{holdout}",
            "dbt_invocation_id": "dbt-1",
            "train_uri": world["uris"]["train"],
            "holdout_uri": world["uris"][holdout],
        },
        training={
            "code_version": "c0ffee",
            "job_name": job,
            "model_uri": world["model_uri"],
            "hyperparameters": {"epochs": str(EPOCHS), "history_length": str(HISTORY)},
            "training_seconds": 12,
            "peak_memory_mb": 321,
        },
        evaluation={
            "model_name": name,
            "report_uri": "file:///evaluations/report.json",
            "challenger": metrics,
            "champion": None,
            "champion_version": None,
        },
        decision=decision,
        dag_id="recsys_train_and_publish",
        run_id=f"run-{job}",
    ) | {"evaluated": metrics}


@pytest.fixture(scope="module")
def published(world: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    registry = MlflowRegistry(world["settings"])
    out: dict[str, Any] = {}
    for holdout, job, decision in (("holdout_a", "job-a", FIRST), ("holdout_b", "job-b", APPLIED_ELSEWHERE)):
        result = publish_with(world, f"fresh-{holdout[-1]}", job, holdout, decision)
        info = registry.get_by_alias(result["name"])
        assert info is not None
        model_dir = registry.download(info, tmp_path_factory.mktemp(job) / "model")
        out[holdout] = {"result": result, "info": info, "model_dir": model_dir}
    return out


def test_latest_histories_order_by_time_then_pin_and_keep_the_last_n() -> None:
    table = interactions([("u", "b", 2), ("u", "a", 2), ("u", "z", 1), ("u", "c", 3), ("v", "q", 9)])
    assert latest_histories(table, 3) == {"u": ["a", "b", "c"], "v": ["q"]}
    # ties in time by length, then code point, as the holdout split orders them: '10' is the latest
    table = interactions([("u", "10", 5), ("u", "9", 5), ("u", "x", 1)])
    assert latest_histories(table, 3) == {"u": ["x", "9", "10"]}


def test_the_published_recommendations_change_with_the_users_holdout(published: dict[str, Any]) -> None:
    a, b = published["holdout_a"]["model_dir"], published["holdout_b"]["model_dir"]
    users = ["u0", "u1", "u15"]
    rec_a, rec_b = recommend(a, users), recommend(b, users)
    assert rec_a[0] != rec_b[0], "u0's holdout moved from cluster 0 to cluster 1: their list must move"
    assert rec_a[1:] == rec_b[1:], "the other users' holdouts are the same: their lists must not move"
    serving = json.loads((a / "serving.json").read_text())
    assert serving["users"] == len(USERS) and serving["history_length"] == HISTORY


def test_the_evaluation_and_the_registry_metrics_never_used_the_holdout(
    world: dict[str, Any], published: dict[str, Any], tmp_path: Path
) -> None:
    evaluated_dir = unpack_model(world["archive"], tmp_path / "evaluated")
    table = tf.saved_model.load(str(evaluated_dir)).user_vectors.numpy()
    # the evaluated artifact's user table is a function of the train rows alone ...
    train_file = tmp_path / "train.parquet"
    store = store_for(world["settings"])
    store.get_file(world["uris"]["train"], train_file)
    refresh_user_vectors(evaluated_dir, [train_file], tmp_path / "train-only")
    np.testing.assert_allclose(
        tf.saved_model.load(str(tmp_path / "train-only")).user_vectors.numpy(), table, atol=1e-5
    )
    # ... and every user's served vector moved: their holdout is in it
    served = tf.saved_model.load(str(published["holdout_a"]["model_dir"])).user_vectors.numpy()
    assert not np.allclose(served[1:], table[1:], atol=1e-5)
    for holdout, entry in published.items():
        evaluated = evaluate_model_archive(world["archive"], eval_set(world, holdout))
        assert entry["info"].metrics == {k: v for k, v in evaluated.items() if k not in NOT_A_METRIC}
        # the served model scores every holdout pair differently (the pin is in its history):
        # its scores are not what the registry's metrics were computed from
        users, pins = (np.array(x, dtype=object) for x in zip(*world["pairs"][holdout], strict=True))
        served_scores = savedmodel_scorer(entry["model_dir"])(users, pins)
        evaluated_scores = savedmodel_scorer(evaluated_dir)(users, pins)
        assert not np.isclose(served_scores, evaluated_scores, atol=1e-6).any()
    # the gate scores a champion on the same train-only histories as its challenger
    champion = evaluate_champion(
        published["holdout_a"]["model_dir"], [train_file], eval_set(world, "holdout_a"), tmp_path
    )
    assert champion == evaluate_model_archive(world["archive"], eval_set(world, "holdout_a"))


def test_lineage_names_both_artifacts(world: dict[str, Any], published: dict[str, Any]) -> None:
    lineage = published["holdout_a"]["info"].lineage
    assert lineage["evaluated_model_uri"] == world["model_uri"] == lineage["model_uri"]
    assert lineage["serving_model_uri"].endswith("/serving/job-a/model.tar.gz")
    assert store_for(world["settings"]).exists(lineage["serving_model_uri"])
    assert lineage["serving_history"] == f"{world['uris']['train']} + {world['uris']['holdout_a']}"


def test_the_curve_the_pictures_and_the_model_card(
    world: dict[str, Any],
    published: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings: Settings = world["settings"]
    info = published["holdout_a"]["info"]
    curve = MlflowRegistry(settings).client.get_metric_history(info.run_id, f"{CURVE_PREFIX}loss")
    assert [(m.step, round(m.value, 4)) for m in sorted(curve, key=lambda m: m.step)] == [
        (e, round(5.0 - e / 10, 4)) for e in range(1, EPOCHS + 1)
    ]
    card = model_card(settings, "fresh-a")
    assert card["version"] == info.version and card["aliases"] == ["champion"]
    assert card["gate"]["thresholds"] == {"min_hr_at_10": 0.05, "min_ndcg_at_10": 0.02, "tolerance": 0.01}
    assert card["gate"]["reason"].startswith("promoted: first model")
    assert card["gate"]["ranking"] == "full"
    # both families, each as the evaluation scored them, on the card and on the MLflow run
    evaluated = published["holdout_a"]["result"]["evaluated"]
    both = ("full_hr@10", "full_ndcg@10", "full_recall@50", "hr@10", "ndcg@10")
    assert {m: card["metrics"][m] for m in both} == pytest.approx({m: evaluated[m] for m in both})
    run_metrics = MlflowRegistry(settings).client.get_run(info.run_id).data.metrics
    assert {m: run_metrics[m.replace("@", "_at_")] for m in both} == pytest.approx(
        {m: evaluated[m] for m in both}
    )
    assert card["training"] | {"loss_per_epoch": None} == {
        "seconds": 12.0,
        "peak_memory_mb": 321.0,
        "input": "stream",
        "loss_per_epoch": None,
    }
    assert len(card["training"]["loss_per_epoch"]) == EPOCHS
    assert set(card["pictures"]) == {"loss_curve", "challenger_vs_champion"}
    for path in card["pictures"].values():
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert card["serving"]["users_refreshed"] == len(USERS)

    monkeypatch.setenv("RECFLOW_HOME", str(settings.home))
    assert cli_main(["models", "show", "--name", "fresh-a", "--alias", "champion", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["pictures"] == card["pictures"]
    # typed as a script reads them (the registry keeps strings): `jq '.gate.promote == true'` holds
    assert (shown["gate"]["promote"], shown["gate"]["champion_version"]) == (True, None)
    assert shown["gate"]["thresholds"]["min_hr_at_10"] == 0.05 and shown["training"]["seconds"] == 12
    assert shown["serving"]["users_refreshed"] == len(USERS)
    assert shown["hyperparameters"]["epochs"] == str(EPOCHS)  # as the training job received them
    assert cli_main(["models", "show", "--name", "fresh-a", "--version", str(info.version)]) == 0
    text = capsys.readouterr().out
    assert card["pictures"]["loss_curve"] in text
    assert "  champion then: none (the first version of this model)" in text.splitlines()
    assert "training: 12 s, peak memory 321 MB, channel streamed by row group; loss per epoch " in text
    assert (
        "judged on: full ranking (every pin the user has not engaged with); thresholds: full_hr@10 >= 0.05"
        in text
    )
    full_line = next(line for line in text.splitlines() if line.startswith("  full ranking"))
    assert f"full_ndcg@10={evaluated['full_ndcg@10']:.4f}" in full_line
    sampled_line = next(line for line in text.splitlines() if line.startswith("  sampled"))
    assert f"hr@10={evaluated['hr@10']:.4f}" in sampled_line
    assert cli_main(["models", "show", "--name", "fresh-a", "--version", "99"]) == 1
    capsys.readouterr()
    # a mistyped name is refused as show refuses it, naming the models there are
    assert cli_main(["models", "list", "--name", "fresh-x"]) == 1
    err = capsys.readouterr().err
    assert "no registered model named 'fresh-x'" in err and "fresh-a" in err


def test_the_card_says_what_the_gate_applied_not_the_settings_publish_ran_under(
    world: dict[str, Any], published: dict[str, Any]
) -> None:
    """The gate judged fresh-b on the sampled ranking with its own floors; ``publish`` ran under the
    defaults (a publish cleared after the settings changed, as the runbooks' last step does). The card
    took the ranking and thresholds from the settings, so it could contradict its own reason."""
    settings: Settings = world["settings"]
    assert settings.gate.ranking == "full" and settings.gate.min_hr_at_10 == 0.05
    card = model_card(settings, "fresh-b")
    assert card["gate"]["ranking"] == "sampled"
    assert card["gate"]["thresholds"] == {"min_hr_at_10": 0.3, "min_ndcg_at_10": 0.2, "tolerance": 0.02}
    assert card["gate"]["reason"] == APPLIED_ELSEWHERE["reason"]


def test_a_second_challenger_gets_a_bar_chart_against_the_champion(
    world: dict[str, Any], tmp_path: Path
) -> None:
    settings: Settings = world["settings"]
    champion = {"hr@10": 0.5, "ndcg@10": 0.3, "full_hr@10": 0.2, "full_ndcg@10": 0.1, "full_recall@50": 0.6}
    published = publish_training_job(
        settings,
        name="fresh-vs",
        model_uri=world["model_uri"],
        training_job="job-vs",
        metrics={
            "hr@10": 0.55,
            "ndcg@10": 0.31,
            "full_hr@10": 0.21,
            "full_ndcg@10": 0.11,
            "full_recall@50": 0.62,
        },
        params={},
        lineage={"airflow_dag_id": "dag", "airflow_run_id": "r"},
        reason="promoted",
        champion_metrics=champion,
    )
    card = model_card(settings, "fresh-vs", version=published["version"])
    assert Path(card["pictures"]["challenger_vs_champion"]).stat().st_size > 1000
    assert card["serving"] == {}, "without history files the job's model is published as trained"


def test_a_tag_edited_by_hand_is_named_not_a_traceback(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The card types the run's tags (``models show --json``); one edited in the MLflow UI to text publish
    never writes raised a bare ValueError out of ``float``. It is named, with its version and text, and
    deleting it reads as not recorded, as the message says."""
    settings: Settings = world["settings"]
    published = publish_training_job(
        settings,
        name="fresh-edited",
        model_uri=world["model_uri"],
        training_job="job-edited",
        metrics={"hr@10": 0.5, "ndcg@10": 0.3, "full_hr@10": 0.2, "full_ndcg@10": 0.1, "full_recall@50": 0.6},
        params={},
        lineage={"airflow_dag_id": "dag", "airflow_run_id": "r"},
        reason="promoted",
    )
    client = MlflowRegistry(settings).client
    run_id = client.get_model_version("fresh-edited", str(published["version"])).run_id
    assert run_id is not None
    client.set_tag(run_id, "gate.min_hr_at_10", "twenty percent")
    monkeypatch.setenv("RECFLOW_HOME", str(settings.home))
    assert cli_main(["models", "show", "--name", "fresh-edited", "--json"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        f"fresh-edited version {published['version']}: run tag gate.min_hr_at_10 holds 'twenty percent'"
        in err
    )
    client.delete_tag(run_id, "gate.min_hr_at_10")
    assert cli_main(["models", "show", "--name", "fresh-edited", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gate"]["thresholds"]["min_hr_at_10"] is None
