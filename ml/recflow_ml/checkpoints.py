"""Training checkpoints in the container's checkpoint directory, at epoch ends and within epochs.

SageMaker's ``CheckpointConfig`` syncs ``/opt/ml/checkpoints`` with an S3 prefix
shared by every attempt of a job: what a killed or stopped attempt saved there
is in place when the next one starts. Each epoch ends (and, with the
``checkpoint_steps`` hyperparameter, every so many steps within an epoch ends) with a
``tf.train.Checkpoint`` of the model's variables, the optimizer (its slots and
step counter, hence the learning-rate schedule), the epochs done and the steps done
in the next one with their summed loss, kept by a ``CheckpointManager`` (the last
``KEEP``, numbered by the steps done in all). Beside them, ``STATE_FILE`` holds the
job's fingerprint (hyperparameters, vocabulary sizes) and the loss history: a
checkpoint left by another job is never restored.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf

log = logging.getLogger(__name__)

KEEP = 2
STATE_FILE = "recflow-state.json"


class EpochCheckpoints:
    def __init__(self, directory: Path, fingerprint: Mapping[str, Any], **trackables: Any) -> None:
        self.directory = directory
        self.fingerprint = json.loads(json.dumps(dict(fingerprint)))
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self._batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches")
        self._loss_total = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="loss_total")
        self.checkpoint = tf.train.Checkpoint(
            epoch=self.epoch, batches=self._batches, loss_total=self._loss_total, **trackables
        )
        self.manager = self._manager()

    def _manager(self) -> tf.train.CheckpointManager:
        self.directory.mkdir(parents=True, exist_ok=True)
        return tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=KEEP)

    def _state(self) -> dict[str, Any]:
        path = self.directory / STATE_FILE
        try:
            state: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return state

    def restore(self) -> tuple[int, list[dict[str, Any]]]:
        """Restore the latest checkpoint of this job: (epochs done, their loss history); (0, []) if none."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            return 0, []
        state = self._state()
        if state.get("fingerprint") != self.fingerprint:
            log.warning(
                "checkpoint %s belongs to another job (%s, this job %s); training from scratch",
                latest,
                state.get("fingerprint", "no fingerprint"),
                self.fingerprint,
            )
            shutil.rmtree(self.directory)
            self.manager = self._manager()
            return 0, []
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        done = int(self.epoch.numpy())
        return done, [e for e in state.get("history", []) if int(e["epoch"]) <= done]

    @property
    def batches(self) -> int:
        """Steps of the epoch after ``epoch`` that the restored checkpoint holds (0 at an epoch's end)."""
        return int(self._batches.numpy())

    @property
    def loss_total(self) -> float:
        """The summed loss of those steps."""
        return float(self._loss_total.numpy())

    def save(
        self,
        epoch: int,
        history: list[dict[str, Any]],
        number: int,
        batches: int = 0,
        loss_total: float = 0.0,
    ) -> None:
        """Checkpoint ``epoch`` epochs done and ``batches`` steps of the next (whose losses summed to
        ``loss_total``) as checkpoint ``number``; the state file goes first, so it never lags the
        checkpoint."""
        tmp = self.directory / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "history": history}, indent=2))
        tmp.replace(self.directory / STATE_FILE)
        self.epoch.assign(epoch)
        self._batches.assign(batches)
        self._loss_total.assign(loss_total)
        self.manager.save(checkpoint_number=number)
