"""Training-job entrypoint: ``python -m recflow_ml.train`` (the image's ENTRYPOINT).

Reads the ``train`` channel (``interactions.parquet``, one file or a directory of
Parquet shards: user_id, pin_id, weight, n_positive_events, event_ts; ids stay
Arrow arrays; ``pins.parquet`` and ``users.parquet``: side features), trains the
two-tower model, and saves a SavedModel into the
model directory with ``metadata.json`` beside it. Each epoch ends with a
checkpoint in the checkpoint directory; a run that finds one of the same job
there continues after that epoch. Any failure is written to ``output/failure``
(what DescribeTrainingJob reports as FailureReason) and the process exits non-zero.

A job of several hosts (``SM_HOSTS`` / ``resourceconfig.json``) trains under
``MultiWorkerMirroredStrategy`` (``recflow_ml.distributed``): every host runs this entrypoint,
and only the chief (the first host) writes the model, its metadata and the checkpoints. A streamed
channel is read in shares: each host streams only its own row groups (``recflow_ml.stream``), all
of its files' when the ``train`` channel is ``ShardedByS3Key`` (the side tables, ``pins.parquet``
and ``users.parquet``, then come from a ``catalogue`` channel every host holds whole), else those
dealt to it in turn; the chief's ``metadata.json`` lists each host's row groups (``shards``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recflow_ml.contract import SHARDED_BY_S3_KEY, ContractError, TrainingEnv
from recflow_ml.hyperparameters import Hyperparameters
from recflow_ml.rows import positive_weights, string_ids

if TYPE_CHECKING:
    from recflow_ml.distributed import Workers
    from recflow_ml.model import EpochLog, TwoTowerModel
    from recflow_ml.stream import RowGroup

log = logging.getLogger("recflow_ml")
T = TypeVar("T")

REQUIRED_COLUMNS = ("user_id", "pin_id", "weight")
INTERACTIONS_FILE = "interactions.parquet"
LEFT_OUT_WARNING = 0.05
"""Share of a sharded channel's interactions an epoch may leave out (uneven shares) before a warning."""
CATALOGUE_CHANNEL = "catalogue"
"""Optional channel of the side tables; a sharded train channel needs it (every host reads them whole)."""
PINS_FILE = "pins.parquet"
USERS_FILE = "users.parquet"
USER_FEATURE_COLUMNS = ("country", "age", "gender", "occupation")
AGE_BUCKETS = (18, 25, 35, 45, 50, 56)
"""Upper bounds of the age buckets (MovieLens' own grouping): <18, 18-24, ..., 56+."""


def read_event_times(channel: Path) -> np.ndarray | None:
    """Each interaction's ``event_ts`` as int64 (nulls → 0), or ``None`` when the column is absent."""
    path = channel / INTERACTIONS_FILE
    if "event_ts" not in _column_names(path):
        return None
    column = pq.read_table(path, columns=["event_ts"]).column("event_ts")
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
    return np.asarray(column.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)


def _age_bucket(age: object) -> str | None:
    if age is None:
        return None
    years = int(str(age))
    return f"age<{next((b for b in AGE_BUCKETS if years < b), 'max')}"


def read_user_features(channel: Path) -> dict[str, list[str | None]]:
    """``users.parquet`` as user_id → [country, age bucket, gender, occupation]; empty when absent."""
    path = channel / USERS_FILE
    if not path.exists():
        return {}
    table = pq.read_table(path)
    present = [c for c in USER_FEATURE_COLUMNS if c in table.column_names]
    out: dict[str, list[str | None]] = {}
    for row in table.select(["user_id", *present]).to_pylist():
        out[str(row["user_id"])] = [
            _age_bucket(row[c]) if c == "age" else (None if row[c] is None else str(row[c])) for c in present
        ]
    return out


def read_item_topics(channel: Path) -> dict[str, list[str]]:
    """``pins.parquet`` as pin_id → topics; empty when absent."""
    path = channel / PINS_FILE
    if not path.exists():
        return {}
    table = pq.read_table(path)
    if "topics" not in table.column_names:
        return {}
    return {
        str(row["pin_id"]): [str(t) for t in (row["topics"] or []) if t is not None]
        for row in table.select(["pin_id", "topics"]).to_pylist()
    }


def _column_names(path: Path) -> list[str]:
    """The columns of a Parquet file, or of a directory of Parquet shards (read as one table)."""
    return list(pq.ParquetDataset(path).schema.names)


def vocabulary(ids: pa.ChunkedArray) -> list[str]:
    """The distinct ids, sorted (by code point, as ``sorted`` orders Python strings)."""
    distinct = pc.unique(ids)
    return [str(v) for v in pc.take(distinct, pc.sort_indices(distinct)).to_pylist()]


def read_interactions(channel: Path) -> tuple[pa.ChunkedArray, pa.ChunkedArray, np.ndarray]:
    """(user ids, pin ids, weights) of ``interactions.parquet``: the ids stay Arrow string arrays (the
    model maps them to rows in Arrow), so ten million rows never become Python objects."""
    path = channel / INTERACTIONS_FILE
    if not path.exists():
        raise FileNotFoundError(f"channel directory {channel} has no {INTERACTIONS_FILE}")
    names = _column_names(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{channel}: missing column(s) {missing} (found {names})")
    table = pq.read_table(path, columns=list(REQUIRED_COLUMNS))
    users, items = string_ids(table, "user_id", str(path)), string_ids(table, "pin_id", str(path))
    return users, items, positive_weights(table.column("weight"), users, items, str(path))


def run(env: TrainingEnv) -> dict[str, object]:
    # TensorFlow loads only when the job trains: the contract's checks and a refused input fail fast without it
    from recflow_ml.distributed import (  # noqa: PLC0415 (TensorFlow)
        Workers,
        checkpoint_directory,
        weights_digest,
    )
    from recflow_ml.model import TrainingData, TwoTowerModel, export  # noqa: PLC0415 (TensorFlow)
    from recflow_ml.stream import open_stream, row_groups, serving_histories  # noqa: PLC0415 (beside the model)

    started = time.monotonic()
    hp = Hyperparameters.from_strings(env.hyperparameters)
    log.info("job %s: hyperparameters %s", env.job_name, hp.as_strings())
    channel = env.channel("train")
    sharded = env.sharded("train")
    side = env.channel(CATALOGUE_CHANNEL) if CATALOGUE_CHANNEL in env.channels else channel
    if sharded and side == channel:
        raise ContractError(
            f"the train channel is {SHARDED_BY_S3_KEY}, so each host holds only some of its files: give "
            f"the side tables ({PINS_FILE}, {USERS_FILE}) in a FullyReplicated channel "
            f"{CATALOGUE_CHANNEL!r}"
        )
    if env.sharded(CATALOGUE_CHANNEL):
        raise ContractError(
            f"the {CATALOGUE_CHANNEL!r} channel is {SHARDED_BY_S3_KEY}: every host needs the side tables "
            f"({PINS_FILE}, {USERS_FILE}) whole; make it FullyReplicated"
        )
    workers = None
    if env.hosts.distributed:  # before TensorFlow's first operation: the strategy configures the runtime
        log.info("host %s: TF_CONFIG %s", env.hosts.current, json.dumps(env.hosts.tf_config()))
        workers = Workers(env.hosts)
    user_features = read_user_features(side)
    item_topics = read_item_topics(side)
    log.info("side features: %d users, %d pins with topics", len(user_features), len(item_topics))
    if workers is not None:  # a side table a host lacks, or holds otherwise, would give it another model
        workers.agree(_side_tables_digest(side), f"the side tables ({PINS_FILE}, {USERS_FILE}; their sha256)")
    path = channel / INTERACTIONS_FILE
    extra: dict[str, object] = {}
    if not sharded and not path.exists():
        raise FileNotFoundError(f"channel directory {channel} has no {INTERACTIONS_FILE}")
    groups = [] if sharded else row_groups(path)
    streamed = sharded or sum(g.rows for g in groups) >= hp.stream_min_interactions
    if streamed and workers is not None:  # each host streams its own share of the row groups
        if sharded:  # the platform dealt the files: this host's are all it has

            def own() -> list[RowGroup]:
                return row_groups(path) if path.exists() else []
        else:  # every host has every file: the row groups are dealt in turn
            dealt = groups[workers.index :: workers.count]

            def own() -> list[RowGroup]:
                return dealt

        input_path = "sharded stream"
        with tempfile.TemporaryDirectory(prefix=".recflow-stream-", dir=env.base_dir) as kept:
            model, history, n_interactions, extra = _train_sharded(
                env, hp, workers, path, own, Path(kept), user_features, item_topics
            )
    elif streamed:
        input_path = "stream"
        # the row groups mapped to model rows, kept on the job's volume while it trains (removed after)
        cache = tempfile.TemporaryDirectory(prefix=".recflow-stream-", dir=env.base_dir)
        stream, summary = open_stream(path, hp, cache_dir=Path(cache.name))
        n_interactions = summary.examples
        model = TwoTowerModel(
            summary.user_vocab, summary.item_vocab, hp, user_features=user_features, item_topics=item_topics
        )
        del summary  # its vocabularies now live in the model
        log.info(
            "train channel: %d interactions, %d users, %d pins; streamed: %d row groups, a shuffle "
            "buffer of %d examples",
            n_interactions,
            len(model.user_vocab),
            len(model.item_vocab),
            len(groups),
            stream.shuffle_buffer,
        )
        with cache:
            serving, counts = serving_histories(stream)
            with checkpoint_directory(env.checkpoint_dir, workers) as checkpoint_dir:
                history = model.fit_stream(
                    stream, counts, serving, checkpoint_dir=checkpoint_dir, workers=workers
                )
    else:
        input_path = "memory"
        users, items, weights = read_interactions(channel)
        n_interactions = len(users)
        model = TwoTowerModel(
            vocabulary(users), vocabulary(items), hp, user_features=user_features, item_topics=item_topics
        )
        log.info(
            "train channel: %d interactions, %d users, %d pins; loaded whole (under stream_min_interactions)",
            n_interactions,
            len(model.user_vocab),
            len(model.item_vocab),
        )
        timestamps = read_event_times(channel)
        with checkpoint_directory(env.checkpoint_dir, workers) as checkpoint_dir:
            history = model.fit(
                TrainingData(users, items, weights, timestamps),
                checkpoint_dir=checkpoint_dir,
                workers=workers,
            )
        del users, items, weights, timestamps
    if workers is not None:
        digest = weights_digest(model.variables)
        log.info("worker %d of %d: trained weights sha256 %s", workers.index, workers.count, digest)
        workers.agree(int(digest[:15], 16), "the trained weights (their sha256)")
    metadata: dict[str, object] = {
        "job_name": env.job_name,
        "hyperparameters": hp.as_strings(),
        "users": len(model.user_vocab),
        "pins": len(model.item_vocab),
        "interactions": n_interactions,
        "input": input_path,
        "history": [
            {"epoch": h.epoch, "loss": h.loss, "seconds": h.seconds, "input_seconds": h.input_seconds}
            for h in history
        ],
        **extra,
    }
    if workers is not None:
        metadata["workers"] = workers.count
        if not workers.is_chief:
            log.info(
                "worker %d of %d: the chief writes the model; nothing saved here",
                workers.index,
                workers.count,
            )
            return metadata
    env.model_dir.mkdir(parents=True, exist_ok=True)
    export(model, env.model_dir)
    metadata["train_seconds"] = time.monotonic() - started
    (env.model_dir / "metadata.json").write_text(json.dumps(metadata, indent=2))
    env.output_data_dir.mkdir(parents=True, exist_ok=True)
    (env.output_data_dir / "history.json").write_text(json.dumps(metadata["history"], indent=2))
    log.info("saved SavedModel to %s in %.1fs", env.model_dir, metadata["train_seconds"])
    return metadata


def _side_tables_digest(directory: Path) -> int:
    """The leading 60 bits of the SHA-256 of the side tables' bytes in ``directory`` (absent: none)."""
    digest = hashlib.sha256()
    for name in (PINS_FILE, USERS_FILE):
        file = directory / name
        digest.update(name.encode() + (file.read_bytes() if file.exists() else b"-"))
    return int(digest.hexdigest()[:15], 16)


def _train_sharded(
    env: TrainingEnv,
    hp: Hyperparameters,
    workers: Workers,
    path: Path,
    own: Callable[[], list[RowGroup]],
    cache_dir: Path,
    user_features: dict[str, list[str | None]],
    item_topics: dict[str, list[str]],
) -> tuple[TwoTowerModel, list[EpochLog], int, dict[str, object]]:
    """Train on this host's share of the train channel at ``path``, its row groups ``own()`` (of a
    ``ShardedByS3Key`` channel, every row group of the files the platform gave it; of a replicated
    one, the row groups dealt to it in turn), with the other hosts: (the model, its epochs, the
    channel's interactions, what the chief's metadata adds: each host's row groups and rows of a
    batch, and the examples an epoch trains).

    What must be the whole channel's is agreed first: the vocabularies and the weights' mean, the
    label counts and every user's serving history (``recflow_ml.distributed``). Each host's rows
    of a global batch are in proportion to the rows it holds (``batch_shares``), so every host
    runs through its files in about as many steps; an epoch is the fewest any host has, and what
    that leaves out (rounding, or uneven files) is logged. A failure on one host, before training,
    fails every host with its reason (``_together``), rather than leave them waiting."""
    from recflow_ml.distributed import checkpoint_directory  # noqa: PLC0415 (TensorFlow)
    from recflow_ml.model import Sharding, TwoTowerModel  # noqa: PLC0415 (TensorFlow)
    from recflow_ml.stream import (  # noqa: PLC0415 (beside the model)
        ChannelSummary,
        batch_shares,
        merge_summaries,
        open_stream,
        serving_pass,
        summarise,
    )

    groups = _together(workers, env, "listing its share of the train channel", own)
    share = [
        {
            "file": f.relative_to(path.parent).as_posix(),
            "row_groups": [g.index for g in groups if g.path == f],
            "rows": sum(g.rows for g in groups if g.path == f),
        }
        for f in sorted({g.path for g in groups})
    ]
    shares = [json.loads(b) for b in workers.gather_bytes(json.dumps(share).encode())]
    rows = [sum(int(f["rows"]) for f in s) for s in shares]
    log.info(
        "host %s: its share of the train channel is %d row group(s) of %d file(s), %d rows",
        env.hosts.current,
        len(groups),
        len(share),
        rows[workers.index],
    )
    sizes = batch_shares(dict(zip(env.hosts.hosts, rows, strict=True)), hp.batch_size)
    steps = min(n // size for n, size in zip(rows, sizes, strict=True))
    mine = _together(
        workers, env, "summarising its share", lambda: summarise(path, groups=groups, allow_empty=True)
    )
    summary = merge_summaries([ChannelSummary.from_bytes(b) for b in workers.gather_bytes(mine.to_bytes())])
    del mine
    stream, _ = open_stream(
        path,
        hp,
        cache_dir=cache_dir,
        groups=groups,
        summary=summary,
        batch_size=sizes[workers.index],
        host=workers.index,
    )
    model = TwoTowerModel(
        summary.user_vocab, summary.item_vocab, hp, user_features=user_features, item_topics=item_topics
    )
    n_interactions = summary.examples
    del summary
    found = _together(workers, env, "mapping its share to model rows", lambda: serving_pass(stream))
    counts = workers.sum(found.counts)
    serving = workers.merge_serving(found.serving, found.latest)
    del found
    log.info(
        "train channel: %d interactions over %d hosts (%s rows, %s of each batch), %d users, %d pins; "
        "each host streams its own row groups, %d steps an epoch",
        n_interactions,
        workers.count,
        rows,
        sizes,
        len(model.user_vocab),
        len(model.item_vocab),
        steps,
    )
    left_out = n_interactions - steps * hp.batch_size
    if left_out > LEFT_OUT_WARNING * n_interactions:
        log.warning(
            "an epoch leaves out %d of the %d interactions (%.1f%%): a host's share of a batch is a whole "
            "number of rows, which this channel's %s rows per host make uneven; a larger channel or "
            "batch_size leaves out less",
            left_out,
            n_interactions,
            100 * left_out / n_interactions,
            rows,
        )
    layout = hashlib.sha256(json.dumps([shares, sizes]).encode()).hexdigest()
    sharding = Sharding(steps, sum(sizes[: workers.index]), layout)
    with checkpoint_directory(env.checkpoint_dir, workers) as checkpoint_dir:
        history = model.fit_stream(
            stream, counts, serving, checkpoint_dir=checkpoint_dir, workers=workers, sharding=sharding
        )
    extra: dict[str, object] = {
        "shards": {
            host: {"files": s, "batch_rows": size}
            for host, s, size in zip(env.hosts.hosts, shares, sizes, strict=True)
        },
        "examples_per_epoch": steps * hp.batch_size,
    }
    return model, history, n_interactions, extra


def _together(workers: Workers, env: TrainingEnv, what: str, work: Callable[[], T]) -> T:
    """``work()`` on every host at once, before training: if it fails on any host, it fails on every
    host, naming that host and its error (a host that failed alone would leave the others waiting
    in the next collective)."""
    failure, error = "", None
    try:
        result = work()
    except Exception as exc:  # reported to every host, then raised here as it was
        failure, error = f"{type(exc).__name__}: {exc}", exc
    reports = [b.decode() for b in workers.gather_bytes(failure.encode())]
    if error is not None:
        raise error
    failed = [(host, report) for host, report in zip(env.hosts.hosts, reports, strict=True) if report]
    if failed:
        host, report = failed[0]
        raise RuntimeError(f"host {host} failed {what}: {report}")
    return result


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] != "train":
        log.error("unknown command %r: SageMaker starts training containers with 'train'", args[0])
        return 2
    env = TrainingEnv.from_env()
    try:
        run(env)
    except Exception as exc:  # the contract: every failure becomes output/failure
        env.write_failure(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
