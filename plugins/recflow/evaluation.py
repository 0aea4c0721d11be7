"""Offline evaluation of retrieval models on the holdout, and the promotion gate.

Protocol (leave-last-out): each holdout row is a user's latest positive pin.
``hr@10`` / ``ndcg@10``: the positive is ranked against 99 pins that user never
engaged with, sampled with a fixed seed, so challenger and champion see the
same candidates; ties count against the positive. ``recall@50``: the positive
is ranked against the whole catalogue minus the user's train positives.
A random ranker scores hr@10 ≈ 0.10.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from recflow.core.artifacts import ArtifactStore, join, store_for, unpack_model
from recflow.core.config import GateSettings, Settings
from recflow.publishing.serving import has_user_tower, refresh_user_vectors
from recflow.registry import registry_for
from recflow.snapshot import Snapshot

log = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(user_ids, item_ids) of equal length → scores; higher is better."""

NEGATIVES = 99
EVAL_SEED = 42
"""The seed of the sampled negatives: every model is scored on the same candidates."""
METRIC_NAMES = ("hr@10", "ndcg@10", "recall@50")


@dataclass(frozen=True)
class EvalSet:
    users: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray
    catalogue: np.ndarray
    seen: Mapping[str, frozenset[str]]


def build_eval_set(
    holdout: Sequence[tuple[str, str]],
    train: Sequence[tuple[str, str]],
    catalogue: Sequence[str],
    seed: int = 42,
    negatives: int = NEGATIVES,
) -> EvalSet:
    """Sample each holdout user's negatives among pins that user never engaged with (train or holdout)."""
    engaged: dict[str, set[str]] = {}
    for user, pin in (*train, *holdout):
        engaged.setdefault(user, set()).add(pin)
    items = np.array(sorted(set(catalogue)), dtype=object)
    rng = np.random.default_rng(seed)
    rows = sorted(holdout)
    sampled = np.empty((len(rows), negatives), dtype=object)
    for r, (user, _) in enumerate(rows):
        exclude = engaged[user]
        if len(items) - len(exclude) < negatives:
            raise ValueError(
                f"user {user!r} engaged with {len(exclude)} of {len(items)} pins: "
                f"fewer than {negatives} are left to sample as negatives"
            )
        chosen: list[str] = []
        taken: set[str] = set()
        while len(chosen) < negatives:
            for item in items[rng.integers(0, len(items), size=2 * negatives)]:
                if item not in exclude and item not in taken:
                    chosen.append(item)
                    taken.add(item)
                    if len(chosen) == negatives:
                        break
        sampled[r] = chosen
    seen = {u: frozenset(p for uu, p in train if uu == u) for u in {u for u, _ in rows}}
    return EvalSet(
        users=np.array([u for u, _ in rows], dtype=object),
        positives=np.array([p for _, p in rows], dtype=object),
        negatives=sampled,
        catalogue=items,
        seen=seen,
    )


def rank_of_positive(positive_score: float, other_scores: np.ndarray) -> int:
    """0-based rank of the positive among the others; ties are ranked ahead of it (pessimistic)."""
    return int(np.sum(other_scores >= positive_score))


def hit_and_ndcg(rank: int, k: int = 10) -> tuple[float, float]:
    if rank < k:
        return 1.0, 1.0 / math.log2(rank + 2)
    return 0.0, 0.0


def evaluate(scorer: Scorer, data: EvalSet, batch: int = 50_000) -> dict[str, float]:
    n = len(data.users)
    if n == 0:
        raise ValueError("the holdout is empty: no user has two or more positive pins")
    width = data.negatives.shape[1] + 1
    candidates = np.concatenate([data.positives[:, None], data.negatives], axis=1)
    scores = _score_batched(scorer, np.repeat(data.users, width), candidates.reshape(-1), batch).reshape(
        n, width
    )
    hits, gains = zip(*(hit_and_ndcg(rank_of_positive(s[0], s[1:])) for s in scores), strict=True)

    recall_hits = 0
    catalogue = data.catalogue
    chunk = max(1, batch // max(len(catalogue), 1))
    for start in range(0, n, chunk):
        users = data.users[start : start + chunk]
        full = _score_batched(scorer, np.repeat(users, len(catalogue)), np.tile(catalogue, len(users)), batch)
        for row, user in enumerate(users):
            positive = data.positives[start + row]
            row_scores = full[row * len(catalogue) : (row + 1) * len(catalogue)]
            is_positive = catalogue == positive
            others = ~is_positive & np.array([item not in data.seen[user] for item in catalogue])
            if (
                is_positive.any()
                and rank_of_positive(float(row_scores[is_positive][0]), row_scores[others]) < 50
            ):
                recall_hits += 1
    return {
        "hr@10": float(np.mean(hits)),
        "ndcg@10": float(np.mean(gains)),
        "recall@50": recall_hits / n,
        "users": float(n),
    }


def _score_batched(scorer: Scorer, users: np.ndarray, items: np.ndarray, batch: int) -> np.ndarray:
    out = [scorer(users[i : i + batch], items[i : i + batch]) for i in range(0, len(users), batch)]
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def savedmodel_scorer(model_dir: Path) -> Scorer:
    """A scorer calling the exported ``score`` signature with raw string ids."""
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow takes seconds to import; only the scoring path needs it)

    loaded = tf.saved_model.load(str(model_dir))
    signature = loaded.signatures["score"]

    def score(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        result = signature(user_id=tf.constant(users.astype(str)), item_id=tf.constant(items.astype(str)))
        return np.asarray(result["score"].numpy())

    score.loaded = loaded  # type: ignore[attr-defined]
    return score


def evaluate_model_archive(archive: Path, data: EvalSet) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = unpack_model(archive, Path(tmp) / "model")
        return evaluate(savedmodel_scorer(model_dir), data)


def evaluate_champion(
    model_dir: Path, train_files: Sequence[Path], data: EvalSet, workdir: Path
) -> dict[str, float]:
    """Score the champion on the challenger's footing: its user vectors recomputed from the
    snapshot's *train* rows only, as the challenger's are.

    The champion serves fresh histories (:mod:`recflow.publishing.serving`): on the snapshot it was
    published from, they hold the very holdout being scored. Rebased on the train rows,
    both models see the same history and neither sees the holdout. A champion exported
    before the ``user_tower`` signature existed is scored as it is.
    """
    if not has_user_tower(model_dir):
        log.warning("the champion has no user_tower signature: scored with the user vectors it serves")
        return evaluate(savedmodel_scorer(model_dir), data)
    rebased = workdir / "champion-train-histories"
    refresh_user_vectors(model_dir, train_files, rebased)
    return evaluate(savedmodel_scorer(rebased), data)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reason": self.reason}


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    gate: GateSettings,
    *,
    same_as_champion: bool = False,
) -> GateDecision:
    """Promote only above the floors and not worse than the champion by more than ``gate.tolerance``."""
    if same_as_champion:
        return GateDecision(False, "not promoted: the challenger is the current champion (same training job)")
    floors = {"hr@10": gate.min_hr_at_10, "ndcg@10": gate.min_ndcg_at_10}
    for metric, floor in floors.items():
        if challenger[metric] < floor:
            return GateDecision(
                False, f"not promoted: {metric}={challenger[metric]:.4f} is below the floor {floor:.4f}"
            )
    if champion is None:
        return GateDecision(True, "promoted: first model (no champion yet) and above the floors")
    for metric in ("hr@10", "ndcg@10"):
        if metric in champion and challenger[metric] < champion[metric] - gate.tolerance:
            return GateDecision(
                False,
                f"not promoted: {metric}={challenger[metric]:.4f} is worse than the champion's "
                f"{champion[metric]:.4f} by more than the tolerance {gate.tolerance:.4f}",
            )
    summary = ", ".join(
        f"{m} {challenger[m]:.4f} vs {champion[m]:.4f}" for m in ("hr@10", "ndcg@10") if m in champion
    )
    return GateDecision(
        True, f"promoted: not worse than the champion within {gate.tolerance:.4f} ({summary})"
    )


def evaluate_challenger(
    settings: Settings, snapshot: Mapping[str, Any], training: Mapping[str, Any], model_name: str
) -> dict[str, Any]:
    """The ``evaluate`` step: score the training job's model and the registry's champion of
    ``model_name`` on the snapshot's holdout with the same sampled negatives; the report is also
    written to the artifact store (``report_uri``)."""
    snap = Snapshot.from_xcom(dict(snapshot))
    store = store_for(settings, snap.uri)
    with tempfile.TemporaryDirectory() as tmp:
        data = load_eval_set(store, snap, Path(tmp), seed=EVAL_SEED)
        log.info("evaluating on %d holdout users, %d pins", len(data.users), len(data.catalogue))
        archive = store.get_file(training["model_uri"], Path(tmp) / "challenger.tar.gz")
        challenger = evaluate_model_archive(archive, data)
        log.info("challenger %s: %s", training["job_name"], challenger)
        registry = registry_for(settings)
        champion_info = registry.get_by_alias(model_name)
        champion = None
        if champion_info is not None:
            model_dir = registry.download(champion_info, Path(tmp) / "champion")
            train = store.get_file(snap.train_uri, Path(tmp) / "champion-history" / "train.parquet")
            champion = evaluate_champion(model_dir, [train], data, Path(tmp))
            log.info("champion %s v%d: %s", model_name, champion_info.version, champion)
    report: dict[str, Any] = {
        "model_name": model_name,
        "snapshot_id": snap.snapshot_id,
        "challenger_job": training["job_name"],
        "challenger": challenger,
        "champion": champion,
        "champion_version": champion_info.version if champion_info else None,
        "champion_job": champion_info.lineage.get("training_job_name") if champion_info else None,
        "seed": EVAL_SEED,
    }
    report["report_uri"] = store.put_bytes(
        json.dumps(report, indent=2).encode(),
        join(settings.artifacts_uri, "evaluations", f"{training['job_name']}.json"),
    )
    return report


def load_eval_set(store: ArtifactStore, snapshot: Snapshot, workdir: Path, seed: int) -> EvalSet:
    """The snapshot's holdout with seeded negatives, for scoring any model on the same candidates."""

    def pairs(uri: str, name: str) -> list[tuple[str, str]]:
        table = pq.read_table(store.get_file(uri, workdir / f"{name}.parquet"), columns=["user_id", "pin_id"])
        return list(zip(table.column("user_id").to_pylist(), table.column("pin_id").to_pylist(), strict=True))

    pins = (
        pq.read_table(store.get_file(snapshot.pins_uri, workdir / "pins.parquet"))
        .column("pin_id")
        .to_pylist()
    )
    return build_eval_set(
        pairs(snapshot.holdout_uri, "holdout"), pairs(snapshot.train_uri, "train"), pins, seed=seed
    )
