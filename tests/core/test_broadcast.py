"""The transmit-limited broadcast queue."""

from __future__ import annotations

import pytest

from gossipreg.core.broadcast import BroadcastQueue


def test_each_update_is_sent_exactly_limit_times() -> None:
    q = BroadcastQueue()
    q.queue("a", b"A")
    sent = 0
    for _ in range(10):
        sent += q.take(budget=100, overhead=2, limit=3).count(b"A")
    assert sent == 3
    assert len(q) == 0


def test_fresh_updates_go_first() -> None:
    q = BroadcastQueue()
    q.queue("old", b"O" * 10)
    assert q.take(budget=100, overhead=0, limit=5) == [b"O" * 10]
    q.queue("new", b"N" * 10)
    # Room for one only: the never-sent update wins over the once-sent one.
    assert q.take(budget=15, overhead=0, limit=5) == [b"N" * 10]


def test_newest_first_among_equally_sent() -> None:
    q = BroadcastQueue()
    for k in "abc":
        q.queue(k, k.encode())
    assert q.take(budget=2, overhead=0, limit=5) == [b"c", b"b"]


def test_newer_update_under_same_key_replaces_older() -> None:
    q = BroadcastQueue()
    q.queue(("member", "x"), b"suspect x")
    q.take(budget=100, overhead=0, limit=5)
    q.queue(("member", "x"), b"alive x")
    assert len(q) == 1
    assert q.invalidated == 1
    assert q.take(budget=100, overhead=0, limit=5) == [b"alive x"]


def test_budget_and_overhead_are_respected() -> None:
    q = BroadcastQueue()
    for i in range(10):
        q.queue(i, bytes(10))
    out = q.take(budget=50, overhead=3, limit=5)
    assert len(out) == 3  # 3 x 13 = 39 <= 50 < 52
    assert sum(len(d) + 3 for d in out) <= 50


def test_oversized_update_is_skipped_not_blocking() -> None:
    q = BroadcastQueue()
    q.queue("big", bytes(1000))
    q.queue("small", b"s")
    assert q.take(budget=100, overhead=0, limit=5) == [b"s"]
    assert "big" in q


def test_overflow_drops_most_transmitted_oldest() -> None:
    q = BroadcastQueue(max_items=3)
    q.queue("a", b"a")
    q.queue("b", b"b")
    q.take(budget=100, overhead=0, limit=10)  # a and b sent once
    q.queue("c", b"c")
    q.queue("d", b"d")  # overflow: drop the oldest among the most-sent (a or b)
    assert len(q) == 3
    assert q.dropped == 1
    assert "c" in q
    assert "d" in q
    assert ("a" in q) != ("b" in q)


def test_invalid_capacity() -> None:
    with pytest.raises(ValueError, match="max_items"):
        BroadcastQueue(max_items=0)
