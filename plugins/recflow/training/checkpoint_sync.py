"""SageMaker's ``CheckpointConfig`` for the local runner: the job's checkpoint directory mirrored to
the artifact store while it runs (uploads only, as SageMaker does), and restored into the next
attempt's."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from recflow.core.artifacts import ArtifactStore, join

INDEX = "checkpoint"
"""The file in which TensorFlow's ``CheckpointManager`` names the latest checkpoint."""
TENSORFLOW_TEMPORARY = re.compile(r"_temp|\.tmp[0-9a-f]|\.tempstate")
"""What TensorFlow writes on its way to a checkpoint's files: a save's ``_temp`` directory, and the
temporary file of an atomic write (``checkpoint.tmp<hex>``, ``*.tempstate<n>``)."""


class CheckpointSync:
    """``CheckpointConfig``: the local directory mirrored to ``S3Uri`` (uploads only, as SageMaker does)."""

    def __init__(self, store: ArtifactStore, uri: str, local: Path) -> None:
        self.store = store
        self.uri = uri.rstrip("/")
        self.local = local
        self.sent: dict[str, tuple[int, int]] = {}

    def download(self) -> int:
        uris = self.store.list(self.uri)
        for uri in uris:
            relative = uri[len(self.uri) + 1 :]
            self.store.get_file(uri, self.local / relative)
            self.sent[relative] = self._stamp(self.local / relative) or (0, 0)
        return len(uris)

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return stat.st_size, stat.st_mtime_ns

    def upload(self) -> int:
        """Upload new and changed files, TensorFlow's ``checkpoint`` file last, as it read before the
        others were listed.

        That file names the latest checkpoint, and TensorFlow rewrites it (atomically) only once the
        checkpoint's own files are whole. Read before the listing, it names only checkpoints whose
        files the listing holds, or an earlier pass uploaded; read at its upload, it could name one
        saved meanwhile, whose index was not listed, and a job killed then would leave its next
        attempt a ``checkpoint`` naming files that never arrived."""
        index = self._index()
        files = [
            p
            for p in self.local.rglob("*")
            if p.is_file()
            and not p.name.startswith(".")
            and not TENSORFLOW_TEMPORARY.search(p.as_posix())
            and p != self.local / INDEX
        ]
        files.sort(key=lambda p: p.as_posix())
        sent = 0
        for path in files:
            relative = path.relative_to(self.local).as_posix()
            stamp = self._stamp(path)
            if stamp is None or self.sent.get(relative) == stamp:
                continue  # gone (the manager keeps the last two) or unchanged
            try:
                self.store.put_file(path, join(self.uri, relative))
            except FileNotFoundError:
                continue
            self.sent[relative] = stamp
            sent += 1
        if index is not None and self._uploaded(index[0]):
            content, stamp = index
            self.store.put_bytes(content, join(self.uri, INDEX))
            self.sent[INDEX] = stamp
            sent += 1
        return sent

    def _uploaded(self, index: bytes) -> bool:
        """Whether the files of the checkpoint ``index`` names are up: the manager may have deleted
        them during the pass (it keeps the last two), and the next pass takes a newer ``checkpoint``."""
        latest = re.search(r'^model_checkpoint_path: "([^"]+)"', index.decode(errors="replace"), re.MULTILINE)
        if latest is None:
            return False
        prefix = latest.group(1)
        return f"{prefix}.index" in self.sent and any(n.startswith(f"{prefix}.data-") for n in self.sent)

    def _index(self) -> tuple[bytes, tuple[int, int]] | None:
        """The ``checkpoint`` file's content and stamp, if it changed since its last upload (``None``
        also while it is being replaced: the next pass takes it)."""
        path = self.local / INDEX
        before = self._stamp(path)
        if before is None or self.sent.get(INDEX) == before:
            return None
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            return None
        return (content, before) if self._stamp(path) == before else None

    def upload_logged(self, when: str, say: Callable[[str], None]) -> None:
        """``upload``, its outcome told to ``say``; a failure is told, not raised (the next pass retries)."""
        try:
            sent = self.upload()
        except Exception as exc:  # the job goes on; the next sync tries again
            say(f"checkpoint upload {when} failed ({type(exc).__name__}: {exc}); will retry")
            return
        if sent:
            say(f"checkpoints: {sent} file(s) to {self.uri} ({when})")
