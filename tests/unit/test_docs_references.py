"""Every module, class or function the docs name exists: a newcomer following docs/architecture.md
(or any runbook) to ``recflow.x.y`` finds it there.

A name is read statically (nothing is imported): the longest prefix that is a module file of
``plugins/`` or ``ml/``, then one name defined or imported at that module's top level. Only dotted
names rooted at ``recflow.`` or ``recflow_ml.`` are checked (``recflow.outputs``, the dbt profile's
key, is not Python).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from recflow.core.config import PROJECT_ROOT

DOCS = sorted([PROJECT_ROOT / "README.md", *(PROJECT_ROOT / "docs").rglob("*.md")])
NAME = re.compile(r"(?<![\w./-])(recflow(?:_ml)?(?:\.[A-Za-z_]\w*)+)")
NOT_PYTHON = {"recflow.outputs"}
ROOTS = (PROJECT_ROOT / "plugins", PROJECT_ROOT / "ml")


def _module_file(parts: list[str]) -> Path | None:
    for root in ROOTS:
        base = root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        if base.is_dir() and len(parts) == 1:  # the namespace package itself
            return base
    return None


@cache
def _top_level_names(path: Path) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        found = _module_file(parts[:cut])
        if found is None:
            continue
        rest = parts[cut:]
        if not rest:
            return True
        return found.is_file() and rest[0] in _top_level_names(found)
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_the_names_a_doc_gives_exist(doc: Path) -> None:
    names = sorted({m.rstrip(".") for m in NAME.findall(doc.read_text())} - NOT_PYTHON)
    missing = [name for name in names if not _resolves(name)]
    assert not missing, f"{doc.relative_to(PROJECT_ROOT)} names what does not exist: {missing}"
