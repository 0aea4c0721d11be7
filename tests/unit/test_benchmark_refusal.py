"""``recflow benchmark movielens`` with a folder that is not MovieLens: refused before it makes a store.

It made and marked the four stores of ``$RECFLOW_HOME/benchmarks/movielens-100k`` first, then refused
the folder; ``recflow load movielens`` already checked the folder first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recflow.cli import main


def test_a_missing_data_dir_is_refused_before_any_store_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    (tmp_path / "not-movielens").mkdir()
    assert main(["benchmark", "movielens", "--data-dir", str(tmp_path / "not-movielens")]) == 2
    assert "missing ratings.train.tsv" in capsys.readouterr().err
    assert list(home.iterdir()) == []
