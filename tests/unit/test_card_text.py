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


def test_the_champion_version_tag_reads_the_same_for_the_card_and_the_pictures_title() -> None:
    """publish writes ``gate.champion_version`` as the version or ``none``; the card and the versus
    picture's title read it through one parser."""
    from recflow.publishing.card import version_tag
    from recflow.publishing.publish import _versus

    champion = {"full_hr@10": 0.2}
    assert [version_tag(t) for t in ("3", "none", "None", None)] == [3, None, None, None]
    assert _versus(champion, version_tag("3")) == " vs champion version 3"
    assert _versus(champion, version_tag("none")) == ""
    assert _versus(None, None) == " (no champion yet)"
