"""The exported SavedModel's signatures, and its round trip through the MLflow registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recflow.cli import main
from recflow.core.config import Settings
from recflow.registry import MlflowRegistry

pytestmark = pytest.mark.integration

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recflow_ml.hyperparameters import Hyperparameters
    from recflow_ml.model import TrainingData, TwoTowerModel, export

    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in range(50)]
    items = [f"p{i}" for i in range(150)]
    # users u0..u24 like p0..p74, the others p75..p149: a learnable two-cluster world
    pairs = [
        (u, items[rng.integers(0, 75) + (75 if int(u[1:]) >= 25 else 0)]) for u in users for _ in range(20)
    ]
    data = TrainingData(
        np.array([u for u, _ in pairs]), np.array([i for _, i in pairs]), np.ones(len(pairs), np.float32)
    )
    model = TwoTowerModel(users, items, Hyperparameters(epochs=15, batch_size=64, embedding_dim=8))
    model.fit(data, np.log(np.full(len(items) + 1, 1 / (len(items) + 1))).astype(np.float32))
    out = tmp_path_factory.mktemp("model") / "savedmodel"
    export(model, out)
    return out


def test_signatures_take_raw_string_ids(saved_model: Path) -> None:
    loaded = tf.saved_model.load(str(saved_model))
    score = loaded.signatures["score"]
    out = score(user_id=tf.constant(["u1", "u1", "nobody"]), item_id=tf.constant(["p3", "p140", "p3"]))[
        "score"
    ]
    assert out.dtype == tf.float32 and out.shape == (3,)
    assert out[0] > out[1], "a cluster-0 user must prefer a cluster-0 pin"
    assert np.isfinite(out.numpy()).all(), "unknown ids get the out-of-vocabulary embedding"

    rec = loaded.signatures["recommend"](user_id=tf.constant(["u1", "u40", "stranger"]))
    assert rec["item_id"].dtype == tf.string and rec["item_id"].shape == (3, 100)
    assert rec["score"].shape == (3, 100)
    scores = rec["score"].numpy()
    assert (np.diff(scores, axis=1) <= 1e-6).all(), "best first"
    top10 = [int(i.decode()[1:]) for i in rec["item_id"].numpy()[0][:10]]
    assert sum(i < 75 for i in top10) >= 8


def test_registry_round_trip(
    saved_model: Path, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = MlflowRegistry(settings)
    assert registry.get_by_alias("recsys-test") is None
    first = {"snapshot_id": "s1", "training_job_name": "job-1", "airflow_dag_id": "d", "airflow_run_id": "r1"}
    second = {**first, "training_job_name": "job-2", "airflow_run_id": "r2"}
    v1 = registry.publish("recsys-test", saved_model, {"hr@10": 0.5, "ndcg@10": 0.3}, {"epochs": "15"}, first)
    v2 = registry.publish(
        "recsys-test", saved_model, {"hr@10": 0.6, "ndcg@10": 0.4}, {"epochs": "15"}, second
    )
    assert (v1.version, v2.version) == (1, 2)
    champion = registry.get_by_alias("recsys-test")
    assert champion is not None and (champion.version, champion.complete) == (2, True)
    assert champion.metrics == {"hr@10": 0.6, "ndcg@10": 0.4}
    assert champion.lineage == second
    listed = MlflowRegistry(settings).list_versions("recsys-test")
    assert [(v.version, v.aliases, v.complete) for v in listed] == [(1, [], True), (2, ["champion"], True)]
    assert [
        (m["previous_version"], m["version"], m["who"]) for m in registry.champion_history("recsys-test")
    ] == [
        (None, 1, "d/r1"),
        (1, 2, "d/r2"),
    ]

    out = registry.download(champion, tmp_path / "export")
    loaded = tf.saved_model.load(str(out))
    assert set(loaded.signatures) == {"score", "recommend", "user_tower"}
    with pytest.raises(FileExistsError, match="not empty"):
        registry.download(champion, tmp_path / "export")

    # the command line says so in a line, the second export of the README's `recflow models export` too
    (tmp_path / "a-file").write_text("someone's notes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_HOME", str(settings.home))
        for name, said in [("export", "is not empty"), ("a-file", "is a file, not a folder")]:
            argv = ["models", "export", "--name", "recsys-test", "--alias", "champion", "--out"]
            assert main([*argv, str(tmp_path / name)]) == 1
            assert f"not exported: {tmp_path / name} {said}" in capsys.readouterr().err
        # a model that does not exist is said as show says it, not as a missing alias
        assert main(["models", "export", "--name", "nope", "--out", str(tmp_path / "nope")]) == 1
        said = capsys.readouterr().err
        assert said.startswith("not exported: ") and "no registered model named 'nope'" in said, said
        assert not (tmp_path / "nope").exists()
    assert (tmp_path / "a-file").read_text() == "someone's notes"
    # the download went through a folder beside --out named after it, then deleted whole: a person's
    # folder of that name went with it
    (tmp_path / ".beside.dl").mkdir()
    (tmp_path / ".beside.dl" / "notes.txt").write_text("mine")
    registry.download(champion, tmp_path / "beside")
    assert (tmp_path / ".beside.dl" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".beside.dl"]
