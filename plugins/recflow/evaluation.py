"""Offline evaluation of retrieval models on the holdout, and the promotion gate.

Protocol (leave-last-out): each holdout row is a user's latest positive pin, scored two ways.

* **Full ranking** (``full_hr@10``, ``full_ndcg@10``, ``full_recall@50``): the positive is ranked
  against every pin of the catalogue the user did not engage with in training, as a user's feed
  ranks them. Exact: every candidate is scored. When ``users × catalogue`` passes
  ``full_ranking_budget`` scores, a seeded uniform sample of ``budget // catalogue`` users is
  ranked (still exactly, over the whole catalogue) and ``full_users`` says how many; each metric
  is then a mean over that sample, whose standard error is ``sqrt(p(1 - p) / full_users)``
  (logged with it).
* **Sampled** (``hr@10``, ``ndcg@10``): the positive is ranked against 99 pins that user never
  engaged with, sampled with a fixed seed, so challenger and champion see the same candidates.
  Cheap and common in older papers, but it can order models differently from the full ranking
  (Krichene & Rendle, KDD 2020) and drifts toward AUC; a random ranker scores hr@10 ≈ 0.10.

Ties count against the positive in both. The gate (``decide``) applies its floors and tolerance to
the family ``settings.gate.ranking`` names.
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
from recflow.core.gate import FULL_METRICS, GATE_APPLIED, RANKING_METRICS, SAMPLED_METRICS, gate_setting
from recflow.publishing.serving import has_user_tower, refresh_user_vectors
from recflow.registry import registry_for
from recflow.snapshot import Snapshot

log = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(user_ids, item_ids) of equal length → scores; higher is better."""

NEGATIVES = 99
EVAL_SEED = 42
"""The seed of the sampled negatives: every model is scored on the same candidates."""
METRIC_NAMES = SAMPLED_METRICS + FULL_METRICS
FULL_RANKING_BUDGET = 200_000_000
"""Scores one full-ranking evaluation may compute (users × catalogue) before it samples users."""


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


def evaluate(
    scorer: Scorer, data: EvalSet, batch: int = 50_000, full_ranking_budget: int = FULL_RANKING_BUDGET
) -> dict[str, float]:
    """Both metric families of ``scorer`` on ``data`` (the module's docstring says how)."""
    n = len(data.users)
    if n == 0:
        raise ValueError("the holdout is empty: no user has two or more positive pins")
    width = data.negatives.shape[1] + 1
    candidates = np.concatenate([data.positives[:, None], data.negatives], axis=1)
    scores = _score_batched(scorer, np.repeat(data.users, width), candidates.reshape(-1), batch).reshape(
        n, width
    )
    hits, gains = zip(*(hit_and_ndcg(rank_of_positive(s[0], s[1:])) for s in scores), strict=True)
    return {
        "hr@10": float(np.mean(hits)),
        "ndcg@10": float(np.mean(gains)),
        "users": float(n),
        **full_ranking(scorer, data, batch, full_ranking_budget),
    }


def full_ranking(scorer: Scorer, data: EvalSet, batch: int, budget: int) -> dict[str, float]:
    """``full_hr@10``, ``full_ndcg@10`` and ``full_recall@50``: each positive ranked against every
    catalogue pin its user did not engage with in training; over a seeded sample of users when
    scoring them all would pass ``budget`` scores."""
    catalogue = data.catalogue
    size = len(catalogue)
    column = {item: j for j, item in enumerate(catalogue)}
    rows = np.arange(len(data.users))
    if len(rows) * size > budget:
        keep = max(1, budget // max(size, 1))
        rows = np.sort(np.random.default_rng(EVAL_SEED).choice(rows, size=keep, replace=False))
    ranks = np.empty(len(rows), dtype=np.int64)
    chunk = max(1, batch // max(size, 1))
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        users = data.users[part]
        full = _score_batched(scorer, np.repeat(users, size), np.tile(catalogue, len(users)), batch)
        full = full.reshape(len(users), size)
        for r, (row, user) in enumerate(zip(part, users, strict=True)):
            positive = column.get(data.positives[row])
            if positive is None:  # a pin the catalogue no longer holds cannot be recommended
                ranks[start + r] = size
                continue
            candidate = np.ones(size, dtype=bool)
            candidate[[column[p] for p in data.seen.get(user, ()) if p in column]] = False
            candidate[positive] = False
            ranks[start + r] = rank_of_positive(float(full[r, positive]), full[r, candidate])
    top10 = ranks < 10
    result = {
        "full_hr@10": float(np.mean(top10)),
        "full_ndcg@10": float(np.mean(np.where(top10, 1.0 / np.log2(ranks + 2.0), 0.0))),
        "full_recall@50": float(np.mean(ranks < 50)),
        "full_users": float(len(rows)),
    }
    if len(rows) < len(data.users):
        p = result["full_hr@10"]
        log.info(
            "full ranking on a seeded sample of %d of %d users (%d pins each): full_hr@10 %.4f ± %.4f "
            "(one standard error)",
            len(rows),
            len(data.users),
            size,
            p,
            math.sqrt(p * (1 - p) / len(rows)),
        )
    return result


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
    """The gate's verdict, its reason, and the settings it applied (published with the version, so
    its card says what the gate judged even if the settings change before ``publish`` runs)."""

    promote: bool
    reason: str
    gate: GateSettings

    def as_dict(self) -> dict[str, Any]:
        applied = {field: getattr(self.gate, field) for field in GATE_APPLIED}
        return {"promote": self.promote, "reason": self.reason, **applied}


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    gate: GateSettings,
    *,
    same_as_champion: bool = False,
) -> GateDecision:
    """Promote only above the floors and not worse than the champion by more than ``gate.tolerance``,
    both on the metric family ``gate.ranking`` names; the reason says which, and names the setting
    behind a refusal (a floor mistyped would otherwise hold back every publication unexplained)."""
    hr, ndcg = RANKING_METRICS[gate.ranking]
    on = f"; the gate judges the {gate.ranking} ranking ({gate_setting('ranking')})"
    if same_as_champion:
        return GateDecision(
            False, f"not promoted: the challenger is the current champion (same training job){on}", gate
        )
    floors = {hr: "min_hr_at_10", ndcg: "min_ndcg_at_10"}
    for metric, field in floors.items():
        floor = getattr(gate, field)
        if challenger[metric] < floor:
            return GateDecision(
                False,
                f"not promoted: {metric}={challenger[metric]:.4f} is below the floor {floor:.4f} "
                f"({gate_setting(field)}){on}",
                gate,
            )
    if champion is None:
        return GateDecision(
            True,
            f"promoted: first model (no champion yet), {hr} {challenger[hr]:.4f} and "
            f"{ndcg} {challenger[ndcg]:.4f} above the floors{on}",
            gate,
        )
    for metric in (hr, ndcg):
        if metric in champion and challenger[metric] < champion[metric] - gate.tolerance:
            return GateDecision(
                False,
                f"not promoted: {metric}={challenger[metric]:.4f} is worse than the champion's "
                f"{champion[metric]:.4f} by more than the tolerance {gate.tolerance:.4f} "
                f"({gate_setting('tolerance')}){on}",
                gate,
            )
    summary = ", ".join(f"{m} {challenger[m]:.4f} vs {champion[m]:.4f}" for m in (hr, ndcg) if m in champion)
    return GateDecision(
        True, f"promoted: not worse than the champion within {gate.tolerance:.4f} ({summary}){on}", gate
    )


def evaluate_challenger(
    settings: Settings, snapshot: Mapping[str, Any], training: Mapping[str, Any], model_name: str
) -> dict[str, Any]:
    """The ``evaluate`` step: score the training job's model and the registry's champion of
    ``model_name`` on the snapshot's holdout with the same sampled negatives; the report is also
    written to the artifact store (``report_uri``: ``evaluations/<job>/against-<vN|none>.json``)."""
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
    # one report per (job, champion compared against): a later run that evaluates the same job again
    # (unchanged data reuses it) against another champion must not rewrite the report a published
    # version's lineage names
    against = f"v{champion_info.version}" if champion_info else "none"
    report["report_uri"] = store.put_bytes(
        json.dumps(report, indent=2).encode(),
        join(settings.artifacts_uri, "evaluations", training["job_name"], f"against-{against}.json"),
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
