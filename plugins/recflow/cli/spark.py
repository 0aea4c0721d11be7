"""``recflow spark up|down|status``: the local Spark standalone cluster (``recflow.stack.spark_cluster``)."""

from __future__ import annotations

import argparse
import sys

from recflow.cli.args import Subcommands
from recflow.core.config import Settings
from recflow.stack.spark_cluster import SparkClusterError, problems, read_state, start, stop


def _point_at(env: dict[str, str]) -> str:
    return "point recflow at it:\n" + "\n".join(f"  export {k}={v}" for k, v in env.items())


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    try:
        state = start(settings)
    except SparkClusterError as exc:  # what failed and its log's last lines; the processes are stopped
        print(f"recflow: {exc}", file=sys.stderr)
        return 1
    print(_point_at(state.env()))
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    if not stop(settings):
        print(f"no Spark cluster is running from {settings.spark.directory(settings.home)}")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    state = read_state(settings)
    if state is None:
        print(f"no Spark cluster recorded in {settings.spark.directory(settings.home)}: `recflow spark up`")
        return 1
    broken = problems(state)
    if broken:
        print(
            f"the Spark cluster in {state.directory} is not whole: {'; '.join(broken)}. "
            "`recflow spark down` then `recflow spark up` starts it anew (a task that failed meanwhile keeps "
            "its retries: clear it once the cluster is up)"
        )
        return 1
    print(
        f"master {state.master_url} (UI {state.master_ui}), {state.workers} worker(s) alive, Thrift {state.warehouse_url} "
        f"answers (Spark UI {state.uis.get('thrift', 'not recorded')})"
    )
    print(_point_at(state.env()))
    return 0


def add_commands(sub: Subcommands) -> None:
    spark = sub.add_parser(
        "spark",
        help="a Spark standalone cluster on this machine (master, workers, Thrift server) for the warehouse",
    )
    commands = spark.add_subparsers(dest="spark_command", required=True)
    up = commands.add_parser("up", help="start it (RECFLOW_SPARK_* settings) and wait until it answers")
    up.set_defaults(func=cmd_up)
    down = commands.add_parser("down", help="stop every process `up` started")
    down.set_defaults(func=cmd_down)
    status = commands.add_parser("status", help="what runs, and the settings that point recflow at it")
    status.set_defaults(func=cmd_status)
