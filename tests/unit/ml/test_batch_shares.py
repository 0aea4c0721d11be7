"""How hosts of a sharded channel share a global batch (``recflow_ml.stream.batch_shares``)."""

from __future__ import annotations

import pytest

from recflow_ml.stream import batch_shares


@pytest.mark.parametrize(
    ("rows", "batch_size"),
    [([251, 166], 17), ([100, 100], 16), ([1, 10_000], 64), ([5, 5, 5], 7), ([3, 900, 97], 2048)],
)
def test_each_host_gets_rows_of_a_batch_in_proportion_to_the_rows_it_holds(
    rows: list[int], batch_size: int
) -> None:
    sizes = batch_shares({f"algo-{h + 1}": n for h, n in enumerate(rows)}, batch_size)
    assert sum(sizes) == batch_size and min(sizes) >= 1
    exact = [batch_size * n / sum(rows) for n in rows]
    for size, share in zip(sizes, exact, strict=True):
        assert abs(size - share) < 1 or size == 1, (sizes, exact)
    steps = [n // size for n, size in zip(rows, sizes, strict=True)]
    if min(exact) >= 1:  # hosts run through their rows in about as many steps
        assert max(steps) - min(steps) <= max(steps) // 2 + 1, steps


def test_a_batch_too_small_for_the_hosts_or_a_host_without_rows_is_refused_naming_the_hosts() -> None:
    with pytest.raises(
        ValueError,
        match=r"batch_size=2 is smaller than the job's 3 hosts \(\['algo-1', 'algo-2', 'algo-3'\]\)",
    ):
        batch_shares({"algo-1": 5, "algo-2": 5, "algo-3": 5}, 2)
    with pytest.raises(ValueError, match=r"gave host\(s\) \['algo-1'\] no interactions"):
        batch_shares({"algo-1": 0, "algo-2": 5}, 8)
