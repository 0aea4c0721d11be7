"""The model card's metric lines (``recflow models show``)."""

from __future__ import annotations

from recflow.cli.models import _metric_lines


def test_a_full_ranking_over_a_sample_of_users_says_so() -> None:
    """Past the full-ranking budget the evaluation ranks a seeded sample of users; the card showed the
    means as if over every user (the count and the sample were only in the evaluate task's log)."""
    sampled = {"full_hr@10": 0.21, "full_ndcg@10": 0.11, "hr@10": 0.7, "users": 943.0, "full_users": 200.0}
    [full, sampled_line] = _metric_lines(sampled)
    assert full.startswith("  full ranking") and full.endswith(
        "(over 200 of 943 users, a seeded sample: docs/model.md, Evaluation)"
    )
    assert "users" not in sampled_line
    every = {**sampled, "full_users": 943.0}
    assert "over" not in _metric_lines(every)[0]
    assert "over" not in _metric_lines({"full_hr@10": 0.2})[0], "a version that recorded no counts"
    assert "over" not in _metric_lines({"full_hr@10": 0.2, "users": 10.0})[0], "users counted, full_users not"
