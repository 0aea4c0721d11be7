"""``recflow``: the command line of the project.

recflow generate [--days N] [--end DATE] ...   synthetic data into the landing zone
recflow setup                                 Airflow DB, dbt manifest, pools
recflow demo [--days N]                       the whole pipeline through the scheduler, then a summary
recflow up                                    Airflow in the foreground on 127.0.0.1 (RECFLOW_AIRFLOW_API_PORT, 8080)
recflow down                                  stop it (from another terminal)
recflow airflow ARGS...                       the airflow CLI with the project's settings
recflow backfill --from DAY --to DAY [--max-quarantine-share S] [--no-volume-check]
                                              a range of days through the scheduler in one run
recflow clear DAG -t REGEX (-s DAY [-e DAY] | --run ID|latest) [-d] [--only-failed] [--dry-run]
                                              run again from a task
recflow models list [--name NAME] [--json]
recflow models export --name NAME --alias champion --out DIR
recflow models promote --name NAME --version V --reason TEXT   move `champion` (a rollback), recorded
recflow models history --name NAME [--json]   every move of `champion`: who, when, why
recflow models show --name NAME [--version V | --alias champion] [--json]   the model card
recflow mlflow ui [--port 5000]               the MLflow UI on the registry's store (curves, pictures)
recflow incidents list [--dag DAG] [--since TIME] [--limit N] [--json]   failed tasks, one line each
recflow incidents show ID [--json]            one incident: why, blast radius, what to do
recflow gc [--dry-run] [--json] [--show-kept] [--allow-empty-registry]
                                              delete unreferenced snapshots, checkpoints, archives, job folders
recflow sql QUERY [--limit N] [--json]        one read-only query on the warehouse (the runbooks' SQL)
recflow claims [list] [--json]                the days a warehouse run holds between its land and audit
recflow claims release --ds DAY --run RUN_ID  free a day whose run is no longer running
recflow spark up|down|status                  a two-worker Spark cluster on 127.0.0.1 for the warehouse
recflow load movielens --data-dir DIR         MovieLens 100K into the landing zone (ratings as save events)
recflow benchmark movielens --data-dir DIR [--out FILE]   the same DAGs on MovieLens, registered as movielens-100k
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import select
import signal
import sys
from typing import Any

from recflow.cli import claims, data, gc, incidents, models, passthrough, spark, sql, stack
from recflow.core.config import Settings
from recflow.core.errors import ConfigError


class _Parser(argparse.ArgumentParser):
    """A parser that takes an option only as spelled whole. argparse takes any unambiguous prefix by
    default, so ``gc --all`` was ``--allow-empty-registry`` and ``backfill --no`` ``--no-volume-check``:
    a safety check switched off by a word that names none. Every subcommand's parser is one of these
    (``add_subparsers`` makes its parsers of the parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _Parser(
        prog="recflow", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data.add_generate(sub)
    stack.add_commands(sub)
    data.add_datasets(sub)
    models.add_commands(sub)
    incidents.add_commands(sub)
    gc.add_command(sub)
    sql.add_command(sub)
    claims.add_commands(sub)
    spark.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3", "botocore", "pyhive"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["airflow"]:  # all of it Airflow's: argparse's REMAINDER takes no leading option (--help)
        args = argparse.Namespace(func=passthrough.cmd_airflow, args=given[1:])
    else:
        args = build_parser().parse_args(given)
    try:
        settings = Settings.from_env()
        code: int = args.func(settings, args)
    except ConfigError as exc:
        print(f"recflow: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        if not _stdout_is_closed():
            raise  # another pipe or socket: not the reader of this command's output
        return 1  # `recflow sql … | head`: the reader has what it wanted
    except OSError as exc:
        if exc.errno not in _NOT_WRITABLE or exc.filename is None:
            raise  # a process one may not signal, say: its traceback says which
        # a read-only or someone else's home or landing zone: said in one line, naming the path
        print(
            f"recflow: {exc.strerror}: {exc.filename} (a folder of RECFLOW_HOME, or one a setting "
            "names: docs/configuration.md)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        if argv is None and args.func is passthrough.cmd_airflow:  # the `recflow` command, not a caller's
            _end_by_sigint()  # airflow was stopped (stack.services)
        raise
    return code


def _end_by_sigint() -> None:
    """End as a process killed by SIGINT, without Python's traceback: a shell stops a loop of commands
    only for a child that died of the signal (an exit status of 130 would run the loop's next day). Only
    for the command itself: a caller of :func:`main` in its own process (a test) keeps its
    KeyboardInterrupt."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


_NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
"""The errors of a file the command may not read or write (permissions, an immutable or read-only file
system): the machine's setting, not a fault of recflow's, said without a traceback."""


def _stdout_is_closed() -> bool:
    """Whether stdout's reader went away (the pipe reports an error to a poll); if so stdout points at
    /dev/null from now on (Python flushes it at exit, which would raise the broken pipe again)."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (a test's capture)
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    if not any(events & select.POLLERR for _, events in poller.poll(0)):
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    return True


if __name__ == "__main__":
    sys.exit(main())
