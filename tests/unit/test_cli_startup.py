"""`recflow --help` starts without the heavy libraries: the command modules import them where a
command needs them (`# noqa: PLC0415`), never at start-up."""

from __future__ import annotations

import subprocess
import sys

HEAVY = frozenset(
    {
        "tensorflow",
        "mlflow",
        "airflow",
        "cosmos",
        "great_expectations",
        "pyarrow",
        "numpy",
        "pandas",
        "duckdb",
    }
)


def test_the_parser_is_built_without_the_heavy_libraries() -> None:
    code = "import sys, recflow.cli; recflow.cli.build_parser(); print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert sorted({name.split(".")[0] for name in loaded.split()} & HEAVY) == []
