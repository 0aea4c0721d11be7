"""``recflow generate``, ``recflow load movielens``, ``recflow benchmark movielens``: data into
the landing zone, synthetic or public, and the pipeline run on a public data set."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recflow.cli.args import (
    GENERATED_TOPICS,
    Subcommands,
    add_world_size,
    generated_days,
    generated_topics,
    iso_date,
)
from recflow.core.config import ConfigError, Settings
from recflow.core.ownership import claim, landing_store
from recflow.stack.demo import PipelineFailed


def cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.producers.generate import GeneratorConfig, generate  # noqa: PLC0415 (pyarrow, numpy: not at start-up)

    end = args.end or datetime.now(UTC).date() - timedelta(days=1)
    try:
        start = end - timedelta(days=args.days - 1)
    except OverflowError:
        raise ConfigError(f"--end {end} minus --days {args.days} is before year 1") from None
    cfg = GeneratorConfig(  # refuses --days 0, too many, or a start before 1970, before the zone is claimed
        start=start,
        days=args.days,
        users=args.users,
        pins=args.pins,
        topics=args.topics,
        seed=args.seed,
    )
    claim([landing_store(settings)], "recflow generate")  # never a producers' landing zone
    summary = generate(settings.landing_dir, cfg)
    print(
        f"generated {summary.events} events in {summary.partitions} daily partitions "
        f"({summary.start}..{summary.end}), {summary.users} users, {summary.pins} pins "
        f"under {settings.landing_dir}"
    )
    return 0


def cmd_load_movielens(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.producers.movielens import check_data_dir, load_movielens  # noqa: PLC0415 (pyarrow, numpy: not at start-up)

    check_data_dir(Path(args.data_dir))  # a wrong folder is refused before the landing zone is claimed
    claim([landing_store(settings)], "recflow load movielens")  # never a producers' landing zone
    summary = load_movielens(Path(args.data_dir), settings.landing_dir)
    print(
        f"landed {summary.ratings} ratings ({summary.users} users, {summary.items} movies) as "
        f"{summary.partitions} daily partitions {summary.first_day}..{summary.last_day} under {settings.landing_dir}"
    )
    return 0


def cmd_benchmark_movielens(settings: Settings, args: argparse.Namespace) -> int:
    from recflow.stack.benchmark import run_movielens  # noqa: PLC0415 (pyarrow, numpy: not at start-up)

    try:
        result = run_movielens(settings, Path(args.data_dir))
    except (PipelineFailed, TimeoutError) as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if result["champion_version"] is not None else 1


def add_generate(sub: Subcommands) -> None:
    gen = sub.add_parser("generate", help="write a synthetic Pinterest-like data set into the landing zone")
    # --days past 1..3660 is refused by the generator's own config, before the landing zone is claimed
    gen.add_argument("--days", type=generated_days, default=7, help="daily partitions, 1 to 3660 (default 7)")
    gen.add_argument("--end", type=iso_date, default=None, help="last day (default: yesterday, UTC)")
    add_world_size(gen)
    gen.add_argument(
        "--topics",
        type=generated_topics,
        default=16,
        help=f"1 to {GENERATED_TOPICS[1]:,}: every user's interests are drawn over all of them (default 16)",
    )
    gen.set_defaults(func=cmd_generate)


def add_datasets(sub: Subcommands) -> None:
    load = sub.add_parser("load", help="load a public data set into the landing zone").add_subparsers(
        dest="dataset", required=True
    )
    ml = load.add_parser("movielens", help="MovieLens 100K (ratings as save events, genres as topics)")
    ml.add_argument("--data-dir", required=True, help="the ml-100k folder, e.g. ../shared/data/ml-100k")
    ml.set_defaults(func=cmd_load_movielens)
    bench = sub.add_parser("benchmark", help="run the pipeline on a public data set").add_subparsers(
        dest="dataset", required=True
    )
    bml = bench.add_parser(
        "movielens", help="MovieLens 100K through the scheduler, registered as movielens-100k"
    )
    bml.add_argument("--data-dir", required=True)
    bml.add_argument("--out", help="also write the JSON result here")
    bml.set_defaults(func=cmd_benchmark_movielens)
