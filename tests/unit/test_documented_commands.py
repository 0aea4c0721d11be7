"""Every `recflow …` command that README.md and docs/ show is one the CLI accepts.

Commands are read from the Markdown itself (inline code and shell blocks), their placeholders
(`D`, `ID`, `N`…) filled with example values, and parsed by `recflow`'s own parser, or, for
`recflow airflow …`, by Airflow's. What each command does is tested where it runs
(`tests/e2e/test_dags_test.py`: `dags test` of both DAGs; `tests/e2e/test_faults.py`: the
runbooks' `recflow clear` after a refused day is fixed; the CLI's own tests for the rest).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from recflow.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PLACEHOLDERS = {
    "D": "2026-03-04",
    "S": "0.06",
    "D1": "2026-03-01",
    "D2": "2026-03-07",
    "ID": "12",
    "<id>": "12",
    "N": "recsys-demo",
    "V": "3",
    "TEXT": "roll back: CTR drop",
    "RUN_ID": "manual__2026-03-04T00:00:00+00:00",
    "^TASK$": "^land$",
}
INLINE = re.compile(r"`((?:\.venv/bin/)?recflow [a-z][^`]*)`")


def _shell_lines(text: str) -> list[str]:
    """The `recflow` commands of fenced blocks, continuation lines joined."""
    commands: list[str] = []
    fence: str | None = None
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        if line.lstrip().startswith("```"):
            fence = None if fence is not None else line.strip().strip("`")
        elif fence is not None and re.match(r"\s*(\.venv/bin/)?recflow ", line):
            commands.append(line.strip())
    return commands


def _a_name_only(words: list[str]) -> bool:
    """`recflow incidents`, `recflow benchmark movielens`: prose naming a command, not a command line."""
    return all(re.fullmatch(r"[a-z]+", w) for w in words) and len(words) <= 2 and words[0] != "setup"


def documented() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for doc in DOCS:
        text = doc.read_text()
        for command in [*INLINE.findall(text), *_shell_lines(text)]:
            words = shlex.split(command, comments=True)
            if len(words) > 1 and not _a_name_only(words[1:]):
                found.append((doc.relative_to(ROOT).as_posix(), command))
    return sorted(set(found))


def _argv(command: str) -> list[str]:
    words = shlex.split(command.replace("<node>", "stg_events"), comments=True)[1:]
    return [PLACEHOLDERS.get(w, w) for w in words]


def test_the_docs_show_the_commands_on_call_relies_on() -> None:
    commands = " ".join(c for _, c in documented())
    for expected in (
        "airflow dags test",
        "recflow clear recsys_warehouse",
        "models promote",
        "incidents show",
    ):
        assert expected in commands


@pytest.mark.parametrize(("doc", "command"), documented())
def test_a_documented_command_is_accepted(doc: str, command: str) -> None:
    argv = _argv(command)
    if argv[0] == "airflow":
        # `airflow tasks clear -t` matches a substring, not the regex its help promises: it
        # clears nothing for '^land$' and exits 0. The runbooks use `recflow clear`.
        assert argv[1:3] != ["tasks", "clear"], f"{doc}: use `recflow clear`, not {command!r}"
        from airflow.cli.cli_parser import get_parser

        parser, args = get_parser(), argv[1:]
    else:
        parser, args = build_parser(), argv
    try:
        parser.parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{doc}: `{command}` is not a command the CLI accepts (exit {exc.code})")
