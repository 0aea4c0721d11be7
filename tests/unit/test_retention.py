"""``recflow gc`` without a registry to read, the store's listing and deleting, the retention settings."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from recflow.cli import main as cli_main
from recflow.core.artifacts import LocalArtifactStore, join
from recflow.core.config import ConfigError, Settings

DAY = 86400.0


def _old_file(path: Path, size: int, age_days: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))


def test_gc_refuses_to_delete_when_the_registry_has_no_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    snapshots = [home / "artifacts" / "snapshots" / f"s{k}" for k in range(3)]
    for k, folder in enumerate(snapshots):
        _old_file(folder / "train" / "interactions.parquet", 100, 10 + k)
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    monkeypatch.setenv("RECFLOW_RETENTION_KEEP_LAST", "1")

    assert cli_main(["gc"]) == 2
    err = capsys.readouterr().err
    assert (
        "has no model version" in err
        and "RECFLOW_MLFLOW_TRACKING_URI" in err
        and "--allow-empty-registry" in err
    )
    assert all(folder.exists() for folder in snapshots)
    assert not (home / "mlflow").exists(), "reading the registry must not create it"

    # argparse took any unambiguous prefix of an option: `gc --all` switched the check off
    for prefix in ("--all", "--allow-empty"):
        with pytest.raises(SystemExit) as refused:
            cli_main(["gc", prefix])
        assert refused.value.code == 2 and f"unrecognized arguments: {prefix}" in capsys.readouterr().err
    assert all(folder.exists() for folder in snapshots)

    assert cli_main(["gc", "--allow-empty-registry"]) == 0
    assert "deleted 2 item(s)" in capsys.readouterr().out
    assert [folder.exists() for folder in snapshots] == [True, False, False], "s0 is the most recent"
    assert (home / "artifacts" / "snapshots").is_dir(), "the kind's folder itself stays"


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_gc_refuses_a_home_or_root_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dry_run: list[str]
) -> None:
    """A mistyped home answered "nothing to delete ... kept 0", exit 0: a clean store, as far as one could tell."""
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "hoem"))
    assert cli_main(["gc", *dry_run]) == 2
    assert f"(RECFLOW_HOME={tmp_path / 'hoem'}): nothing has run there" in capsys.readouterr().err
    assert not (tmp_path / "hoem").exists()
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path))  # a home that exists, with nothing trained yet
    assert cli_main(["gc", *dry_run]) == 0
    monkeypatch.setenv("RECFLOW_ARTIFACT_ROOT", (tmp_path / "artefacts").as_uri())
    assert cli_main(["gc", *dry_run]) == 2
    assert "does not exist (RECFLOW_ARTIFACT_ROOT)" in capsys.readouterr().err


def test_local_store_lists_sizes_and_times_and_deletes_a_tree(tmp_path: Path) -> None:
    store = LocalArtifactStore()
    base = (tmp_path / "store").as_uri()
    _old_file(tmp_path / "store" / "a" / "one.bin", 3, 2)
    _old_file(tmp_path / "store" / "a" / "deep" / ".hidden.tmp", 5, 1)
    _old_file(tmp_path / "store" / "b.json", 7, 0)
    _old_file(tmp_path / "store-other" / "c.bin", 11, 0)
    listed = store.list_objects(base)
    assert [(o.uri.removeprefix(base), o.size) for o in listed] == [
        ("/a/deep/.hidden.tmp", 5),
        ("/a/one.bin", 3),
        ("/b.json", 7),
    ]
    ages = [time.time() - o.modified.timestamp() for o in listed]
    assert [round(a / DAY) for a in ages] == [1, 2, 0]
    assert store.list_objects(join(base, "missing")) == []

    assert store.delete_tree(join(base, "a")) == 2
    assert store.delete_tree(join(base, "b.json")) == 1
    assert store.delete_tree(join(base, "missing")) == 0
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == []
    assert (tmp_path / "store-other" / "c.bin").exists()


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("RECFLOW_RETENTION_KEEP_LAST", "0", "below the least allowed value, 1"),
        ("RECFLOW_RETENTION_KEEP_LAST", "five", "is not an integer"),
        ("RECFLOW_RETENTION_MIN_AGE_HOURS", "-1", "below the least allowed value, 0"),
    ],
)
def test_retention_settings_are_checked(variable: str, value: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{variable}='{value}' .*{problem}"):
        Settings.from_env({"RECFLOW_HOME": str(tmp_path), variable: value})
    assert Settings.from_env({"RECFLOW_HOME": str(tmp_path)}).retention_keep_last == 5
