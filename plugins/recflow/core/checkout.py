"""The checkout recflow runs from: its root folder, and the commit it is at (for lineage)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
"""The repository root: this module is ``plugins/recflow/core/checkout.py`` below it."""


def read_git_commit(root: Path) -> str:
    """The checked-out commit, read from ``.git`` without running git."""
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
    except OSError:
        return "unknown"
    if not ref.startswith("ref: "):
        return ref[:40]
    ref_path = root / ".git" / ref[5:]
    if ref_path.exists():
        return ref_path.read_text().strip()[:40]
    packed = root / ".git" / "packed-refs"
    if packed.exists():
        for line in packed.read_text().splitlines():
            if line.endswith(ref[5:]):
                return line.split()[0][:40]
    return "unknown"
