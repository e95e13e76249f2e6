"""The broadcast tree's shape (gossipreg.core.tree): every rank reached once, within the bound."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossipreg.core.tree import child_ranks, parent_rank


def _walk(n: int, fanout: int) -> dict[int, int]:
    """Depth of every rank reached from the root, failing on a rank reached twice."""
    depth = {0: 0}
    frontier = [0]
    while frontier:
        nxt = []
        for r in frontier:
            for c in child_ranks(r, n, fanout):
                assert c not in depth, f"rank {c} reached twice (n={n}, fanout={fanout})"
                depth[c] = depth[r] + 1
                nxt.append(c)
        frontier = nxt
    return depth


@given(st.integers(1, 3000), st.integers(1, 8))
def test_every_rank_is_reached_exactly_once_within_log_base_n_hops(n: int, fanout: int) -> None:
    depth = _walk(n, fanout)
    assert sorted(depth) == list(range(n))
    bound = math.ceil(math.log(n, fanout + 1) - 1e-9) if n > 1 else 0
    assert max(depth.values()) <= bound


@given(st.integers(1, 5000), st.integers(1, 8))
def test_the_parent_of_a_rank_is_the_one_that_sends_to_it(rank: int, fanout: int) -> None:
    parent = parent_rank(rank, fanout)
    assert parent is not None
    assert rank in child_ranks(parent, rank + 1, fanout)


@pytest.mark.parametrize(("rank", "n", "fanout", "children"), [
    (0, 1, 3, []),
    (0, 10, 3, [1, 2, 3, 4, 8]),
    (1, 10, 3, [5, 9]),
    (4, 10, 3, []),
    (0, 5, 1, [1, 2, 4]),
])
def test_child_ranks_examples(rank: int, n: int, fanout: int, children: list[int]) -> None:
    assert child_ranks(rank, n, fanout) == children


def test_the_root_has_no_parent() -> None:
    assert parent_rank(0, 3) is None
