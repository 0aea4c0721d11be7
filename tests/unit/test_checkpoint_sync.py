"""The local runner's checkpoint sync (``CheckpointSync``, SageMaker's ``CheckpointConfig``): what it
uploads while a job saves checkpoints is always restorable by the next attempt.

The checkpoints are TensorFlow's own (``tf.train.CheckpointManager``), and what was uploaded is read
back with TensorFlow from a fresh download, not from the sync's bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import tensorflow as tf

from recflow.core.artifacts import LocalArtifactStore
from recflow.training.checkpoint_sync import CheckpointSync


class _SavesWhileUploading(LocalArtifactStore):
    """A store whose next upload, once ``armed``, takes long enough for the job to ``save`` meanwhile."""

    def __init__(self, save: Callable[[], None]) -> None:
        self.save = save
        self.armed = False

    def put_file(self, local: Path, uri: str) -> str:
        if self.armed:
            self.armed = False
            self.save()
        return super().put_file(local, uri)


def _restorable(uri: str, into: Path) -> int:
    """The step of the latest checkpoint a fresh attempt finds under ``uri``, restored by TensorFlow."""
    CheckpointSync(LocalArtifactStore(), uri, into).download()
    latest = tf.train.latest_checkpoint(str(into))
    assert latest is not None, f"no checkpoint named in {sorted(p.name for p in into.iterdir())}"
    step = tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(step=step).restore(latest).assert_existing_objects_matched()
    return int(step.numpy())


def _job(local: Path) -> tuple[tf.Variable, tf.train.CheckpointManager]:
    step = tf.Variable(1, dtype=tf.int64)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step), str(local), max_to_keep=2)
    return step, manager


def test_a_checkpoint_saved_during_an_upload_pass_is_named_only_once_its_files_are_up(
    tmp_path: Path,
) -> None:
    local = tmp_path / "opt_ml" / "checkpoints"
    step, manager = _job(local)
    manager.save(checkpoint_number=1)

    def save_next() -> None:
        step.assign(2)
        manager.save(checkpoint_number=2)

    uri = (tmp_path / "store" / "checkpoints").as_uri()
    store = _SavesWhileUploading(save_next)
    sync = CheckpointSync(store, uri, local)

    store.armed = True
    sync.upload()  # the job is killed here: a next attempt must find a whole checkpoint
    assert _restorable(uri, tmp_path / "attempt-2") == 1

    sync.upload()  # the job lived: the next pass takes the newer checkpoint
    assert _restorable(uri, tmp_path / "attempt-3") == 2


def test_a_checkpoint_deleted_during_an_upload_pass_is_never_named(tmp_path: Path) -> None:
    local = tmp_path / "opt_ml" / "checkpoints"
    step, manager = _job(local)
    manager.save(checkpoint_number=1)
    uri = (tmp_path / "store" / "checkpoints").as_uri()

    def save_twice() -> None:  # the manager keeps the last two: checkpoint 2's files go
        for n in (3, 4):
            step.assign(n)
            manager.save(checkpoint_number=n)

    store = _SavesWhileUploading(save_twice)
    sync = CheckpointSync(store, uri, local)
    sync.upload()
    step.assign(2)
    manager.save(checkpoint_number=2)

    store.armed = True
    sync.upload()  # listed checkpoint 2, whose files were deleted before they went up
    assert _restorable(uri, tmp_path / "attempt-2") == 1

    sync.upload()
    assert _restorable(uri, tmp_path / "attempt-3") == 4
