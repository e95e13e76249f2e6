"""The broadcast tree's shape (gossipreg.core.tree): every rank reached once, within the bound."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossipreg.core.tree import (
    FLAT_RESENDS,
    RoundTrip,
    RoundTrips,
    child_ranks,
    next_wait,
    parent_rank,
    resend_span,
)


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


# ---------------------------------------------------------------- ack timeouts (the tree repair)


def test_the_ack_timeout_is_the_floor_until_a_round_trip_is_measured() -> None:
    rtt = RoundTrip(0.01)
    before: object = rtt.measured  # a bool, not merely falsy or truthy
    assert before is False
    assert rtt.timeout() == 0.01
    rtt.sample(0.002)  # fast: srtt + 4 * rttvar = 0.002 + 0.004, below the floor
    after: object = rtt.measured
    assert after is True
    assert rtt.timeout() == 0.01


def test_the_ack_timeout_follows_slow_round_trips_as_tcp_does() -> None:
    rtt = RoundTrip(0.01)
    rtt.sample(0.1)  # first sample: srtt = 0.1, rttvar = 0.05
    assert rtt.timeout() == pytest.approx(0.1 + 4 * 0.05)
    rtt.sample(0.1)  # rttvar = 0.75 * 0.05 + 0.25 * 0; srtt unchanged
    assert rtt.timeout() == pytest.approx(0.1 + 4 * 0.0375)
    rtt.sample(0.2)  # srtt moves by an eighth of the gap, rttvar by a quarter of it
    srtt, rttvar = 0.875 * 0.1 + 0.125 * 0.2, 0.75 * 0.0375 + 0.25 * 0.1
    assert rtt.timeout() == pytest.approx(srtt + 4 * rttvar)
    for _ in range(200):
        rtt.sample(0.001)  # the host recovered: back down to the floor
    assert rtt.timeout() == 0.01


def test_resends_wait_one_timeout_each_then_twice_as_long_each_time_up_to_the_cap() -> None:
    waits, wait = [], 0.01
    for resend in range(1, 12):
        wait = next_wait(wait, resend, 1.0)
        waits.append(wait)
    assert FLAT_RESENDS == 3
    assert waits == pytest.approx([0.01, 0.01, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0])
    assert next_wait(2.0, 5, 1.0) == 2.0  # a timeout above the cap is kept, not shortened


def test_the_resend_span_sums_the_waits_of_every_copy() -> None:
    assert resend_span(0.01, 0, 1.0) == pytest.approx(0.01)
    assert resend_span(0.01, 3, 1.0) == pytest.approx(0.04)
    # 4 copies of 10 ms, then 20 ms doubling to 640 ms (6), then 1 s for the last 7.
    assert resend_span(0.01, 16, 1.0) == pytest.approx(0.04 + 1.26 + 7 * 1.0)
    assert resend_span(2.0, 2, 1.0) == pytest.approx(6.0)


def test_a_member_not_measured_yet_gets_the_timeout_of_all_members_round_trips() -> None:
    rtts = RoundTrips(0.01, limit=8)
    assert rtts.timeout("a") == 0.01  # nothing measured: the floor
    rtts.sample("a", 0.1)
    assert rtts.timeout("a") == pytest.approx(0.1 + 4 * 0.05)
    assert rtts.timeout("b") == pytest.approx(0.1 + 4 * 0.05)  # from everyone's so far
    rtts.sample("b", 0.02)
    assert rtts.timeout("b") == pytest.approx(0.02 + 4 * 0.01)  # its own from then on
    assert rtts.timeout("a") == pytest.approx(0.1 + 4 * 0.05)  # unchanged by b's


def test_round_trips_are_kept_for_at_most_limit_members_and_forgotten_on_request() -> None:
    rtts = RoundTrips(0.01, limit=2)
    rtts.sample("a", 0.5)
    rtts.sample("b", 0.02)
    rtts.sample("c", 0.02)  # the oldest, a, makes room
    assert len(rtts) == 2
    prior = rtts.timeout("zz")  # all members' round trips, a's included
    assert rtts.timeout("a") == prior
    rtts.forget("b")
    assert len(rtts) == 1
    assert rtts.timeout("b") == prior
    rtts.forget("b")  # forgetting twice is harmless
    assert rtts.timeout("c") == pytest.approx(0.02 + 4 * 0.01)
