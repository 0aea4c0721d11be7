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
    assert hit_and_ndcg(2) == (1.0, pytest.approx(1 / math.log2(4)))
    assert hit_and_ndcg(9) == (1.0, pytest.approx(1 / math.log2(11)))
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
    assert metrics["recall@50"] == 0.5


def test_random_ranker_is_near_ten_percent() -> None:
    rng = np.random.default_rng(0)
    holdout = [(f"u{i}", CATALOGUE[i % 200]) for i in range(400)]
    data = build_eval_set(holdout, [], CATALOGUE, seed=3)
    metrics = evaluate(lambda u, i: rng.random(len(u)), data)
    assert 0.06 < metrics["hr@10"] < 0.14


GATE = GateSettings(min_hr_at_10=0.2, min_ndcg_at_10=0.1, tolerance=0.01)


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "reason"),
    [
        ({"hr@10": 0.3, "ndcg@10": 0.15}, None, True, "first model"),
        ({"hr@10": 0.1, "ndcg@10": 0.15}, None, False, "hr@10=0.1000 is below the floor 0.2000"),
        ({"hr@10": 0.3, "ndcg@10": 0.05}, None, False, "ndcg@10=0.0500 is below the floor 0.1000"),
        ({"hr@10": 0.30, "ndcg@10": 0.15}, {"hr@10": 0.305, "ndcg@10": 0.15}, True, "within 0.0100"),
        (
            {"hr@10": 0.30, "ndcg@10": 0.15},
            {"hr@10": 0.35, "ndcg@10": 0.15},
            False,
            "worse than the champion",
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


def test_gate_does_not_republish_the_champion() -> None:
    decision = decide(
        {"hr@10": 0.9, "ndcg@10": 0.9}, {"hr@10": 0.9, "ndcg@10": 0.9}, GATE, same_as_champion=True
    )
    assert not decision.promote
    assert "same training job" in decision.reason
