"""The benchmark's reference recommenders, on matrices small enough to check by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from bench import quality
from bench.baselines import (
    Index,
    MatrixScorer,
    ease_scores,
    ease_weights,
    interaction_matrix,
    popularity_scores,
)
from bench.quality_methods import MethodResult
from bench.quality_report import MARK_END, MARK_START, docs_section, plot, results_report
from bench.report import write_section


def _matrix(rows: list[list[int]]) -> sp.csr_matrix:
    return sp.csr_matrix(np.array(rows, dtype=np.float32))


def test_ease_two_items_matches_the_closed_form_by_hand() -> None:
    # Items a, b: a has 3 users, b has 1, they co-occur once. With λ = 1:
    # G = XᵀX + λI = [[4, 1], [1, 2]], P = G⁻¹ ∝ [[2, -1], [-1, 4]],
    # B[a, b] = -P[a, b] / P[b, b] = 1/4 and B[b, a] = -P[b, a] / P[a, a] = 1/2.
    x = _matrix([[1, 1], [1, 0], [1, 0]])
    b = ease_weights(x, lam=1.0)
    np.testing.assert_allclose(b, [[0.0, 0.25], [0.5, 0.0]], atol=1e-12)


def test_ease_columns_are_ridge_regressions_on_the_other_items() -> None:
    # Steck (2019): column j of B is the ridge regression of item j on every other item.
    x = _matrix([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1], [1, 0, 0, 1]])
    lam = 0.5
    b = ease_weights(x, lam)
    dense = x.toarray().astype(np.float64)
    for j in range(dense.shape[1]):
        others = [i for i in range(dense.shape[1]) if i != j]
        xo = dense[:, others]
        expected = np.linalg.solve(xo.T @ xo + lam * np.eye(len(others)), xo.T @ dense[:, j])
        np.testing.assert_allclose(b[others, j], expected, atol=1e-10)
    np.testing.assert_array_equal(np.diag(b), 0.0)


def test_ease_ranks_the_co_occurring_item_first() -> None:
    # Items 0 and 1 always appear together; item 2 never with item 0.
    x = _matrix([[1, 1, 0], [1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]])
    b = ease_weights(x, lam=1.0)
    scores = np.asarray(_matrix([[1, 0, 0]]) @ b).ravel()
    np.testing.assert_allclose(ease_scores(x, 1.0), np.asarray(x @ b))
    assert scores[0] == 0.0  # zero diagonal: an item never recommends itself
    assert scores[1] > 0.0 >= scores[2]
    assert list(np.argsort(-scores[1:]) + 1) == [1, 2]


def test_ease_rejects_a_non_positive_lambda() -> None:
    with pytest.raises(ValueError, match="lambda"):
        ease_weights(_matrix([[1, 0]]), 0.0)


def test_popularity_counts_training_interactions_for_every_user() -> None:
    index = Index.build(["u1", "u2", "u3"], ["a", "b", "c"])
    pairs = [("u1", "a"), ("u2", "a"), ("u3", "a"), ("u1", "b"), ("u2", "b"), ("u3", "c"), ("u3", "c")]
    x = interaction_matrix(pairs, index)
    assert x.toarray().tolist() == [[1, 1, 0], [1, 1, 0], [1, 0, 1]]  # the repeated pair counts once
    scores = popularity_scores(x)
    np.testing.assert_array_equal(scores, [[3, 2, 1]] * 3)
    scorer = MatrixScorer(scores, index)
    got = scorer(
        np.array(["u1", "u2", "u3", "u1"], dtype=object), np.array(["c", "a", "b", "a"], dtype=object)
    )
    np.testing.assert_array_equal(got, [1.0, 3.0, 2.0, 3.0])


def test_matrix_scorer_reads_the_user_row_and_item_column() -> None:
    index = Index.build(["u2", "u1"], ["y", "x"])  # sorted: u1=0, u2=1; x=0, y=1
    scorer = MatrixScorer(np.array([[0.1, 0.2], [0.3, 0.4]]), index)
    np.testing.assert_allclose(
        scorer(np.array(["u2", "u1"], dtype=object), np.array(["x", "y"], dtype=object)), [0.3, 0.2]
    )


def test_quality_exits_2_naming_the_missing_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "ml-100k"
    assert quality.main(["--data-dir", str(missing), "--no-write"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "does not exist" in err


def test_quality_exits_2_when_files_are_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "u.item").write_text("")
    assert quality.main(["--data-dir", str(tmp_path), "--no-write"]) == 2
    assert "ratings.train.tsv" in capsys.readouterr().err


def test_docs_section_replaces_only_between_the_markers(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\nintro\n\n{MARK_START}\nold\n{MARK_END}\n\n## Other\nkept\n")
    write_section(docs, f"{MARK_START}\nnew\n{MARK_END}", "quality")
    text = docs.read_text()
    assert "old" not in text
    assert "new" in text
    assert text.startswith("# Benchmarks\n\nintro\n")
    assert text.endswith("## Other\nkept\n")
    fresh = tmp_path / "fresh.md"
    write_section(fresh, f"{MARK_START}\nnew\n{MARK_END}", "quality")
    assert fresh.read_text().startswith("# Benchmarks")
    with pytest.raises(ValueError, match="overhead:start"):
        write_section(docs, "no markers", "overhead")


def _result(name: str, full_ndcg: float) -> MethodResult:
    holdout = {
        "full_hr@10": full_ndcg * 1.8,
        "full_ndcg@10": full_ndcg,
        "full_recall@50": full_ndcg * 4,
        "hr@10": 0.7,
        "ndcg@10": 0.45,
        "users": 943.0,
        "full_users": 943.0,
    }
    extra = {"targets": {"hr@10": {"target": 0.68, "value": 0.7, "met": True}}} if name == "ours" else {}
    return MethodResult(name, holdout, 1.5, {}, [], extra)


@pytest.mark.parametrize(("ours", "met"), [(0.116, True), (0.114, False)])
def test_the_report_shows_both_families_and_the_lead_over_sasrec(
    tmp_path: Path, ours: float, met: bool
) -> None:
    results = [_result("popularity", 0.026), _result("sasrec", 0.1), _result("ours", ours)]
    report = results_report(
        results, ["popularity", "sasrec", "ours"], Path(sys.executable), "2026-12-03", 1.0
    )
    assert report["selection_metric"] == "full_ndcg@10"
    assert report["lead"]["met"] is met
    assert report["lead"]["lead"] == pytest.approx(ours / 0.1 - 1, abs=1e-4)
    assert "full_users" not in report["methods"]["ours"]["holdout"]
    section = docs_section(report, results)
    header = next(line for line in section.splitlines() if line.startswith("| Method"))
    assert "Full NDCG@10" in header and "Sampled NDCG@10" in header
    ours_row = next(line for line in section.splitlines() if line.startswith("| Two-tower (ours)"))
    assert f"| {ours:.4f} |" in ours_row and "| 0.7000 | 0.4500 |" in ours_row
    assert ("met" if met else "**missed**") in section
    plot(results, tmp_path / "q.png")
    assert (tmp_path / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("seconds", "shown"), [(0.0002, "< 1 ms"), (0.05, "50 ms"), (71.94, "71.9 s")])
def test_a_fit_under_a_millisecond_is_shown_as_such(tmp_path: Path, seconds: float, shown: str) -> None:
    """Popularity fits in well under a millisecond: the table said "0 ms" and the log-scaled plot drew
    no bar for it."""
    popularity = _result("popularity", 0.026)
    popularity.train_seconds = seconds
    results = [popularity, _result("ours", 0.15)]
    section = docs_section(
        results_report(results, ["popularity", "ours"], Path(sys.executable), "2026-12-05", 1.0), results
    )
    row = next(line for line in section.splitlines() if line.startswith("| Popularity"))
    assert f"| {shown} |" in row
    plot(results, tmp_path / "q.png")
