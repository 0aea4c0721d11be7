"""``recflow airflow ARGS``: Airflow's own CLI with the project's environment, and what the project
knows better than Airflow said before it starts."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from recflow.core.config import Settings, subprocess_env
from recflow.core.days import landing_wait
from recflow.core.errors import ConfigError
from recflow.core.names import TRAINING_DAG, WAREHOUSE_DAG
from recflow.stack.pids import note_of, other_noted_process
from recflow.stack.services import run_airflow

PROJECT_DAGS = (WAREHOUSE_DAG, TRAINING_DAG)

_DAG_ID_FIRST = frozenset(
    {
        "test",
        "trigger",
        "pause",
        "unpause",
        "state",
        "show",
        "details",
        "next-execution",
        "list-runs",
        "clear",
        "delete",
    }
)
"""The ``airflow dags`` commands whose first argument is a DAG id."""


_DAG_ID = re.compile(r"[\w.][\w.-]*")
"""What Airflow allows in a DAG id (word characters, dashes, dots; Airflow's ``KEY_REGEX``), not starting
as an option does: the only ids a lock file is named after (never a path)."""


def cmd_airflow(settings: Settings, args: argparse.Namespace) -> int:
    """On Ctrl-C, airflow is stopped (``stack.services``) and the KeyboardInterrupt goes on to ``cli.main``."""
    _refuse_mistakes(settings, args.args)
    with _one_dags_test(settings, args.args):
        return run_airflow(settings, args.args, check=False, notice=_landing_notice(settings, args.args))


@contextlib.contextmanager
def _one_dags_test(settings: Settings, argv: list[str]) -> Iterator[None]:
    """One ``dags test`` of a DAG at a time per home, held by an exclusive ``flock`` (released by the
    kernel when the holder dies) on ``$RECFLOW_HOME/run/dags-test.<dag>.lock``. A second one of the same
    day deletes the first's run while it goes on: Airflow 3.3's first process then fails to report and
    hangs for good, holding the DuckDB warehouse (seen); of another day, it waits on that warehouse.
    Only this machine's home is guarded (a metadata database shared by several machines is not), and on
    Linux only does the lock outlive a ``recflow`` killed before its ``airflow`` (the kernel's SIGKILL
    on the parent's death, ``stack.services``)."""
    dag_id = _dag_id(argv)
    if (
        argv[1:2] != ["test"]
        or dag_id is None
        or not _DAG_ID.fullmatch(dag_id)
        or not settings.airflow_home.is_dir()
    ):
        yield  # not a dags test of a DAG id Airflow allows, or a home not set up (run_airflow says so)
        return
    path = settings.home / "run" / f"dags-test.{dag_id}.lock"
    path.parent.mkdir(exist_ok=True)
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"a `dags test {dag_id}` already runs for RECFLOW_HOME={settings.home}{_holder(path)}: a "
                "second would replace its run of the same day while it goes on, or wait on its warehouse. "
                "Let it finish, or stop it first (Ctrl-C in its terminal)"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(note_of(os.getpid()))
        lock.flush()
        yield


def _holder(path: Path) -> str:
    """`` (pid N; `kill N` stops it)`` for the process the lock file names, once it is the one running
    (it writes its pid just after taking the lock, so a moment is allowed; the file outlives holders, so
    a pid of an earlier one, or one reused since, is not named); else nothing."""
    deadline = time.monotonic() + 0.5
    while True:
        pid = other_noted_process(path)
        if pid is not None:
            return f" (pid {pid}; `kill {pid}` stops it)"
        if time.monotonic() > deadline:
            return ""
        time.sleep(0.05)


def _landing_notice(settings: Settings, argv: list[str]) -> str | None:
    """Before ``dags test recsys_warehouse [D]`` of a day that has not landed: the run will wait for it,
    for hours, while Airflow prints "No tasks to run" every second; say so and how to land it. Only for
    a day given as the sole argument (or none: today); options such as ``-c`` may name other days."""
    if argv[:3] != ["dags", "test", WAREHOUSE_DAG] or len(argv) > 4 or any(a.startswith("-") for a in argv):
        return None
    import pendulum  # noqa: PLC0415 (Airflow's date parser: only for this command)

    try:  # read as Airflow reads it (naive: UTC, Airflow's default time zone), its day in UTC as the tasks take it
        moment = pendulum.parse(argv[3], tz="UTC", strict=False) if len(argv) == 4 else pendulum.now("UTC")
        day = moment.in_timezone("UTC").date()  # type: ignore[union-attr]
    except (ValueError, AttributeError):  # not a moment (pendulum's ParserError is a ValueError), a duration
        return None  # Airflow says what is wrong with it
    from recflow.ingest.contract import not_landed  # noqa: PLC0415 (pyarrow: only for this command)

    missing = not_landed(settings.landing_dir, [day])
    if missing is None:
        return None
    poke, timeout = landing_wait()
    return (
        f"recflow: ds={day} has not landed ({missing}). This run waits for it, looking every "
        f"{poke} for up to {timeout} (Airflow prints 'No tasks to run' "
        f"meanwhile): land the day in another terminal (`recflow generate --days N --end {day}`, `recflow load "
        "movielens`), or stop with Ctrl-C"
    )


def _refuse_mistakes(settings: Settings, argv: list[str]) -> None:
    """A ConfigError, before Airflow starts, for what Airflow would answer with a traceback: a DAG id a
    letter or two from one of the project's (``dags test recsys_warehose``), and a ``dags test`` or
    ``dags trigger`` whose ``-c``/``--conf`` is not a JSON object. Any other DAG id is Airflow's to judge:
    a deployment may add DAGs of its own, so an id that extends one of ours by a separator and two
    characters or more (``recsys_warehouse_eu``, not ``recsys_warehouses``),
    one a file of the DAGs folder Airflow is given names, and a command given its own DAG file or
    bundle (``-f``, ``-B``) are left alone."""
    dag_id = _dag_id(argv)
    if (
        dag_id is not None
        and argv[1] in _DAG_ID_FIRST
        and dag_id not in PROJECT_DAGS
        and not any(re.fullmatch(re.escape(ours) + r"[_.-]\w{2,}", dag_id) for ours in PROJECT_DAGS)
        and not _OWN_DAGS.intersection(a.split("=")[0] for a in argv)
    ):
        near = difflib.get_close_matches(dag_id, PROJECT_DAGS, n=1, cutoff=0.8)
        if near and not _named_in(_dags_folder(settings), dag_id):
            raise ConfigError(
                f"no DAG {dag_id!r} in this project: did you mean {near[0]}? (its DAGs: "
                f"{', '.join(PROJECT_DAGS)}; for a DAG of your own by that id, give its file with -f)"
            )
    if argv[:1] != ["dags"] or argv[1:2] not in (["test"], ["trigger"]):
        return
    for k, arg in enumerate(argv):
        if arg in ("-c", "--conf") and k + 1 < len(argv):
            _require_object(arg, argv[k + 1], empty_is_none=argv[1] == "test")
        elif arg.startswith("--conf="):
            _require_object("--conf", arg.removeprefix("--conf="), empty_is_none=argv[1] == "test")


_VALUE_OPTIONS = frozenset(
    {"-c", "--conf", "-f", "--dagfile-path", "-B", "--bundle-name", "--save-dagrun", "--mark-success-pattern"}
    | {"-r", "--run-id", "-l", "--logical-date", "-o", "--output"}
)
"""The options of ``dags test`` and ``dags trigger`` that take the next word as their value."""


def _dag_id(argv: list[str]) -> str | None:
    """The DAG id of ``dags <command> …``: its first positional word, wherever options put it
    (``dags test --conf '{}' recsys_warehouse`` as well); ``None`` for another command or none given."""
    if argv[:1] != ["dags"]:
        return None
    words = iter(argv[2:])
    for word in words:
        if word in _VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


_OWN_DAGS = frozenset({"-f", "--dagfile-path", "-B", "--bundle-name", "--treat-dag-id-as-regex"})
"""Options that point Airflow at DAGs other than the project's folder (or at many)."""


def _dags_folder(settings: Settings) -> Path:
    """The DAGs folder the ``airflow`` child is given: the caller's ``AIRFLOW__CORE__DAGS_FOLDER``
    (``stack.runtime.airflow_env`` lets it through), else the project's ``dags/``."""
    given = subprocess_env({}).get("AIRFLOW__CORE__DAGS_FOLDER")
    return Path(given) if given else settings.dags_dir


def _named_in(folder: Path, dag_id: str) -> bool:
    """Whether a Python file of the DAGs folder holds ``dag_id`` as a string (a DAG of the deployment's
    own, say ``eu_recsys_warehouse``): then the id is no misspelling of ours."""
    return any(
        f"'{dag_id}'" in text or f'"{dag_id}"' in text
        for text in (p.read_text(errors="replace") for p in folder.rglob("*.py"))
    )


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _require_object(option: str, text: str, *, empty_is_none: bool) -> None:
    """The run's conf: a JSON object (Airflow refuses anything else, after a traceback). ``dags test``
    reads an empty one as none."""
    if empty_is_none and not text:
        return
    example = f"""e.g. {option} '{{"name": "value"}}'"""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{option} {text!r} is not JSON ({exc.msg}, at character {exc.pos + 1}); the run's conf is "
            f"a JSON object of the DAG's params by name, {example}"
        ) from None
    if value is not None and not isinstance(value, dict):
        raise ConfigError(
            f"{option} {text!r} is {_JSON_KINDS[type(value)]}, not a JSON object; the run's conf is a "
            f"JSON object of the DAG's params by name, {example}"
        )
