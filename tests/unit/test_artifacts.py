from __future__ import annotations

from pathlib import Path

import pytest

from recflow.core.artifacts import LocalArtifactStore, join, store_for
from recflow.core.config import Settings


def test_local_store_round_trip(tmp_path: Path) -> None:
    store = LocalArtifactStore()
    base = (tmp_path / "store").as_uri()
    uri = store.put_bytes(b"hello", join(base, "a", "b.txt"))
    assert store.exists(uri)
    assert store.get_bytes(uri) == b"hello"
    source = tmp_path / "f.bin"
    source.write_bytes(b"\x00\x01")
    store.put_file(source, join(base, "c.bin"))
    assert store.list(base) == [join(base, "a", "b.txt"), join(base, "c.bin")]
    assert store.get_file(join(base, "c.bin"), tmp_path / "out" / "c.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        store.get_bytes(join(base, "missing"))


def test_store_for_picks_by_scheme(settings: Settings) -> None:
    assert isinstance(store_for(settings), LocalArtifactStore)
    with pytest.raises(ValueError, match="scheme 'gs' is not file or s3"):
        store_for(settings, "gs://bucket/x")
