"""``recflow spark up`` writes only into a folder it made, and ``status`` says when nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from recflow.cli import main
from recflow.core.config import Settings
from recflow.core.ownership import StoreNotOwned
from recflow.stack import spark_cluster


def test_up_refuses_a_folder_another_program_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = tmp_path / "their-spark"
    theirs.mkdir()
    (theirs / "metastore_db").mkdir()
    monkeypatch.setattr(spark_cluster, "spark_home", lambda: tmp_path / "unused")
    monkeypatch.setattr(spark_cluster, "_java", lambda: "java")
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path / "home"), "RECFLOW_SPARK_DIR": str(theirs)})
    with pytest.raises(StoreNotOwned, match=f"RECFLOW_SPARK_DIR={theirs}"):
        spark_cluster.start(settings, echo=lambda _: None)
    assert sorted(p.name for p in theirs.iterdir()) == ["metastore_db"], "nothing was written there"


def test_status_and_down_when_nothing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path))
    assert main(["spark", "status"]) == 1
    assert main(["spark", "down"]) == 0
    out = capsys.readouterr().out
    assert "no Spark cluster recorded" in out and "no Spark cluster is running" in out
