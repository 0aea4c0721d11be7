from __future__ import annotations

import math

import numpy as np
import pytest

from recflow.core.config import GateSettings
from recflow.evaluation import build_eval_set, decide, evaluate, hit_and_ndcg, rank_of_positive

CATALOGUE = [f"p{i:03d}" for i in range(200)]


def test_rank_counts_ties_against_the_positive() -> None:
    assert rank_of_positive(0.5, np.array([0.1, 0.2])) == 0
    assert rank_of_positive(0.5, np.array([0.9, 0.5, 0.1])) == 2


def test_hit_and_ndcg_hand_computed() -> None:
    assert hit_and_ndcg(0) == (1.0, 1.0)
    assert hit_and_ndcg(2) == pytest.approx((1.0, 1 / math.log2(4)))
    assert hit_and_ndcg(9) == pytest.approx((1.0, 1 / math.log2(11)))
    assert hit_and_ndcg(10) == (0.0, 0.0)


def test_negatives_are_seeded_and_never_engaged() -> None:
    train = [("u1", "p001"), ("u1", "p002"), ("u2", "p003")]
    holdout = [("u1", "p004"), ("u2", "p005")]
    a = build_eval_set(holdout, train, CATALOGUE, seed=1)
    b = build_eval_set(holdout, train, CATALOGUE, seed=1)
    assert (a.negatives == b.negatives).all()
    assert a.negatives.shape == (2, 99)
    assert not {"p001", "p002", "p004"} & set(a.negatives[0])
    assert len(set(a.negatives[0])) == 99


def test_negative_sampling_refuses_when_too_few_pins_are_left() -> None:
    with pytest.raises(ValueError, match="fewer than 99 are left"):
        build_eval_set([("u1", "p000")], [("u1", p) for p in CATALOGUE[1:150]], CATALOGUE)


def test_evaluate_with_known_rankings() -> None:
    holdout = [("u1", "p010"), ("u2", "p020")]
    data = build_eval_set(holdout, [("u1", "p011"), ("u2", "p021")], CATALOGUE, seed=0)
    best = {"u1": "p010"}  # u1's positive scores highest; u2's positive lowest

    def scorer(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.array(
            [
                2.0 if best.get(u) == i else (-1.0 if i == "p020" else 0.5)
                for u, i in zip(users, items, strict=True)
            ]
        )

    metrics = evaluate(scorer, data)
    assert metrics["hr@10"] == 0.5
    assert metrics["ndcg@10"] == 0.5
    # full ranking: u1's positive first of 198 candidates; u2's last
    assert metrics["full_hr@10"] == 0.5
    assert metrics["full_ndcg@10"] == 0.5
    assert metrics["full_recall@50"] == 0.5
    assert metrics["full_users"] == 2


def _brute_force_rank(scores: dict[str, float], positive: str, excluded: set[str]) -> int:
    """The positive's 0-based place among the candidates sorted best first, ties ahead of it."""
    candidates = [p for p in scores if p not in excluded and p != positive]
    ordered = sorted(candidates, key=lambda p: (-scores[p], 0))
    return sum(1 for p in ordered if scores[p] >= scores[positive])


def test_full_ranking_matches_a_brute_force_sort_and_leaves_out_the_users_train_pins() -> None:
    rng = np.random.default_rng(5)
    users = [f"u{k}" for k in range(30)]
    table = {(u, p): float(rng.integers(0, 40)) for u in users for p in CATALOGUE}  # many ties
    train = [(u, p) for u in users for p in rng.choice(CATALOGUE, size=15, replace=False)]
    seen = {u: {p for uu, p in train if uu == u} for u in users}
    holdout = [(u, str(rng.choice([p for p in CATALOGUE if p not in seen[u]]))) for u in users]
    # a user's train pins score highest: ranked with them, no positive would be in the top 10
    for u, p in train:
        table[(u, p)] = 100.0
    data = build_eval_set(holdout, train, CATALOGUE, seed=0)
    metrics = evaluate(lambda us, ps: np.array([table[(u, p)] for u, p in zip(us, ps, strict=True)]), data)

    ranks = [_brute_force_rank({p: table[(u, p)] for p in CATALOGUE}, pos, seen[u]) for u, pos in holdout]
    assert metrics["full_hr@10"] == pytest.approx(sum(r < 10 for r in ranks) / len(ranks))
    assert metrics["full_ndcg@10"] == pytest.approx(
        sum(1 / math.log2(r + 2) for r in ranks if r < 10) / len(ranks)
    )
    assert metrics["full_recall@50"] == pytest.approx(sum(r < 50 for r in ranks) / len(ranks))
    assert metrics["full_hr@10"] > 0  # the train pins were left out, or nothing would hit


def test_full_ranking_over_budget_ranks_a_seeded_sample_of_users_within_its_stated_error() -> None:
    rng = np.random.default_rng(9)
    users = [f"u{k}" for k in range(1000)]
    holdout = [(u, CATALOGUE[k % 200]) for k, u in enumerate(users)]
    data = build_eval_set(holdout, [], CATALOGUE, seed=0)
    noise = {u: rng.random(200) for u in users}
    column = {p: j for j, p in enumerate(CATALOGUE)}
    positive = dict(holdout)

    def scorer(us: np.ndarray, ps: np.ndarray) -> np.ndarray:  # the positive often near the top
        return np.array(
            [noise[u][column[p]] + (0.4 if positive[u] == p else 0.0) for u, p in zip(us, ps, strict=True)]
        )

    exact = evaluate(scorer, data)
    sampled = evaluate(scorer, data, full_ranking_budget=300 * 200)
    assert exact["full_users"] == 1000
    assert sampled["full_users"] == 300
    assert sampled["hr@10"] == exact["hr@10"]  # the sampled metrics still score every user
    p = exact["full_hr@10"]
    error = math.sqrt(p * (1 - p) / 300)  # the stated standard error (finite population: smaller)
    assert abs(sampled["full_hr@10"] - p) < 3 * error
    assert evaluate(scorer, data, full_ranking_budget=300 * 200) == sampled  # seeded


def test_random_ranker_is_near_ten_percent() -> None:
    rng = np.random.default_rng(0)
    holdout = [(f"u{i}", CATALOGUE[i % 200]) for i in range(400)]
    data = build_eval_set(holdout, [], CATALOGUE, seed=3)
    metrics = evaluate(lambda u, i: rng.random(len(u)), data)
    assert 0.06 < metrics["hr@10"] < 0.14


GATE = GateSettings(ranking="sampled", min_hr_at_10=0.2, min_ndcg_at_10=0.1, tolerance=0.01)


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "reason"),
    [
        ({"hr@10": 0.3, "ndcg@10": 0.15}, None, True, "first model"),
        (
            {"hr@10": 0.1, "ndcg@10": 0.15},
            None,
            False,
            "hr@10=0.1000 is below the floor 0.2000 (RECFLOW_GATE_MIN_HR_AT_10)",
        ),
        (
            {"hr@10": 0.3, "ndcg@10": 0.05},
            None,
            False,
            "ndcg@10=0.0500 is below the floor 0.1000 (RECFLOW_GATE_MIN_NDCG_AT_10)",
        ),
        ({"hr@10": 0.30, "ndcg@10": 0.15}, {"hr@10": 0.305, "ndcg@10": 0.15}, True, "within 0.0100"),
        (
            {"hr@10": 0.30, "ndcg@10": 0.15},
            {"hr@10": 0.35, "ndcg@10": 0.15},
            False,
            "worse than the champion's 0.3500 by more than the tolerance 0.0100 (RECFLOW_GATE_TOLERANCE)",
        ),
    ],
)
def test_gate(
    challenger: dict[str, float], champion: dict[str, float] | None, promote: bool, reason: str
) -> None:
    decision = decide(challenger, champion, GATE)
    assert decision.promote is promote
    assert reason in decision.reason
    assert decision.reason.startswith("promoted" if promote else "not promoted")
    assert decision.reason.endswith("; the gate judges the sampled ranking (RECFLOW_GATE_RANKING)")
    assert decision.as_dict() == {
        "promote": promote,
        "reason": decision.reason,
        "ranking": "sampled",
        "min_hr_at_10": 0.2,
        "min_ndcg_at_10": 0.1,
        "tolerance": 0.01,
    }, "the decision carries the settings it applied, for the version's card"


def test_gate_does_not_republish_the_champion() -> None:
    decision = decide(
        {"hr@10": 0.9, "ndcg@10": 0.9}, {"hr@10": 0.9, "ndcg@10": 0.9}, GATE, same_as_champion=True
    )
    assert not decision.promote
    assert "same training job" in decision.reason
    assert decision.reason.endswith("the gate judges the sampled ranking (RECFLOW_GATE_RANKING)")


def test_the_gate_judges_the_family_its_settings_name_and_says_so() -> None:
    # good on the sampled ranking, poor on the full one
    challenger = {"hr@10": 0.8, "ndcg@10": 0.5, "full_hr@10": 0.04, "full_ndcg@10": 0.02}
    full = GateSettings(ranking="full", min_hr_at_10=0.05, min_ndcg_at_10=0.02, tolerance=0.01)
    refused = decide(challenger, None, full)
    assert not refused.promote
    assert refused.reason.startswith("not promoted: full_hr@10=0.0400 is below the floor 0.0500")
    assert "the gate judges the full ranking" in refused.reason
    sampled = GateSettings(ranking="sampled", min_hr_at_10=0.05, min_ndcg_at_10=0.02, tolerance=0.01)
    promoted = decide(challenger, None, sampled)
    assert promoted.promote
    assert "the gate judges the sampled ranking" in promoted.reason

    champion = {"hr@10": 0.5, "ndcg@10": 0.3, "full_hr@10": 0.10, "full_ndcg@10": 0.05}
    better = {"hr@10": 0.4, "ndcg@10": 0.2, "full_hr@10": 0.12, "full_ndcg@10": 0.06}
    assert decide(better, champion, full).promote  # worse sampled, better full: the full ranking decides
    assert not decide(better, champion, sampled).promote
    assert "full_hr@10 0.1200 vs 0.1000" in decide(better, champion, full).reason


def test_the_gate_judges_the_full_ranking_by_default() -> None:
    assert GateSettings().ranking == "full"
