"""The architecture of docs/architecture.md, checked: the layer contract bites, no import circle,
no module too long to read.

The contracts themselves are in pyproject.toml (``[tool.importlinter]``) and ``make lint`` runs
them; these tests show that they refuse what they are meant to refuse, on a copy of the package
with one upward import added, and check what import-linter does not: circles among all modules
(imports inside functions included) and the size of each module.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from recflow.core.config import PROJECT_ROOT

MAX_MODULE_LINES = 400
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle_among_recflows_modules() -> None:
    graph = grimp.build_graph("recflow", include_external_packages=False)
    circles = _circles(graph)
    assert not circles, "import circles (imports inside functions count too):\n" + "\n".join(
        " <-> ".join(circle) for circle in circles
    )


def test_no_module_of_the_package_over_400_lines() -> None:
    too_long = {
        str(path.relative_to(PROJECT_ROOT)): n
        for path in sorted((PROJECT_ROOT / "plugins" / "recflow").rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def _lint_copy(tmp_path: Path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the project's contracts on a copy of ``recflow`` and ``recflow_ml`` with ``extra`` files added."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(PROJECT_ROOT / "plugins" / "recflow", src / "recflow", ignore=ignore)
    shutil.copytree(PROJECT_ROOT / "ml" / "recflow_ml", src / "recflow_ml", ignore=ignore)
    for relative, text in extra.items():
        (src / relative).write_text(text)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "text", "expected"),
    [
        (
            "recflow/core/_upward.py",
            "from recflow.registry import registry_for\n",
            "recflow.core._upward -> recflow.registry",
        ),
        (
            "recflow/warehouse/_airflow.py",
            "from airflow.sdk import task\n",
            "recflow.warehouse._airflow -> airflow",
        ),
        (
            "recflow_ml/_recflow.py",
            "import recflow.core.config\n",
            "recflow_ml._recflow -> recflow.core.config",
        ),
    ],
    ids=["upward", "airflow-outside-recflow.airflow", "ml-imports-recflow"],
)
def test_the_contracts_refuse_an_import_against_the_architecture(
    tmp_path: Path, module: str, text: str, expected: str
) -> None:
    result = _lint_copy(tmp_path, {module: text})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
    assert expected in result.stdout, result.stdout


def test_the_contracts_pass_on_the_package_as_it_is(tmp_path: Path) -> None:
    result = _lint_copy(tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout
