"""The transmit-limited broadcast queue."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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



@dataclass
class _Ref:
    key: str
    data: bytes
    transmits: int
    order: int  # when it entered its current transmit count (later = newer)


class _Reference:
    """The queue's rules written plainly: a list scanned in full on every take."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.items: list[_Ref] = []
        self.clock = 0

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def queue(self, key: str, data: bytes) -> None:
        before = len(self.items)
        self.items = [i for i in self.items if i.key != key]
        if len(self.items) == before and before >= self.max_items:
            most = max(i.transmits for i in self.items)
            self.items.remove(min((i for i in self.items if i.transmits == most), key=lambda i: i.order))
        self.items.append(_Ref(key, data, 0, self._tick()))

    def take(self, budget: int, overhead: int, limit: int) -> list[bytes]:
        chosen = []
        for item in sorted(self.items, key=lambda i: (i.transmits, -i.order)):  # fresh, then newest
            cost = len(item.data) + overhead
            if budget > overhead and cost <= budget:
                chosen.append(item)
                budget -= cost
        for item in chosen:
            item.transmits += 1
            item.order = self._tick()
            if item.transmits >= limit:
                self.items.remove(item)
        return [i.data for i in chosen]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("queue"), st.sampled_from("abcdefgh"), st.integers(1, 60)),
            st.tuples(st.just("take"), st.integers(0, 150), st.integers(0, 3)),
        ),
        max_size=60,
    )
)
def test_take_chooses_what_a_full_scan_would(ops: list[tuple[str, str | int, int]]) -> None:
    """The queue agrees with a plain full-scan model of its rules; in particular,
    stopping a take early (once nothing more can fit) never changes what it picks."""
    q, ref = BroadcastQueue(max_items=5), _Reference(max_items=5)
    for step, (op, a, b) in enumerate(ops):
        if op == "queue":
            data = bytes([step % 256]) * b
            q.queue(a, data)
            ref.queue(str(a), data)
        else:
            assert isinstance(a, int)
            assert q.take(a, b, limit=3) == ref.take(a, b, limit=3)
        assert len(q) == len(ref.items)


def test_fits_tells_whether_one_take_hands_out_the_whole_queue() -> None:
    q = BroadcastQueue()
    assert q.fits(0)  # nothing queued
    q.queue("a", b"x" * 10)
    q.queue("b", b"y" * 20)
    assert q.fits(30)
    assert not q.fits(29)
    assert q.fits(34, overhead=2)
    assert not q.fits(33, overhead=2)
    assert sorted(q.take(30, 0, 10)) == [b"x" * 10, b"y" * 20]
    q.queue("a", b"x" * 40)  # replaces a's update: the size follows
    assert not q.fits(59)
    assert q.fits(60)


@dataclass
class _Entry:
    data: bytes
    transmits: int
    entered: int  # when it entered its current rank (queued, or last sent)


class _ModelQueue:
    """The queue's contract, written plainly: fewest transmissions first, newest first
    among equals (an update sent again counts as newly queued in its new rank), each
    update chosen if it still fits; overflow drops the oldest of the most-sent."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.items: dict[str, _Entry] = {}
        self.clock = 0
        self.dropped = 0
        self.invalidated = 0

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def queue(self, key: str, data: bytes) -> None:
        if key in self.items:
            del self.items[key]
            self.invalidated += 1
        elif len(self.items) >= self.max_items:
            most = max(e.transmits for e in self.items.values())
            oldest = min((e.entered, k) for k, e in self.items.items() if e.transmits == most)[1]
            del self.items[oldest]
            self.dropped += 1
        self.items[key] = _Entry(data, 0, self._tick())

    def take(self, budget: int, overhead: int, limit: int) -> list[bytes]:
        order = sorted(self.items, key=lambda k: (self.items[k].transmits, -self.items[k].entered))
        chosen = []
        for k in order:
            cost = len(self.items[k].data) + overhead
            if cost <= budget:
                chosen.append(k)
                budget -= cost
        out = []
        for k in chosen:
            e = self.items[k]
            out.append(e.data)
            e.transmits += 1
            e.entered = self._tick()
            if e.transmits >= limit:
                del self.items[k]
        return out

    def fits(self, budget: int, overhead: int) -> bool:
        return sum(len(e.data) + overhead for e in self.items.values()) <= budget


_Op = tuple[str, str, int, int, int]  # (kind, key, size or budget, overhead, limit)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("queue"), st.sampled_from("abcdefgh"), st.integers(1, 40), st.just(0), st.just(0)),
        st.tuples(st.just("take"), st.just(""), st.integers(0, 150), st.integers(0, 3), st.integers(1, 4)),
        st.tuples(st.just("clear"), st.just(""), st.just(0), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=_OPS, max_items=st.integers(1, 6))
def test_the_queue_chooses_exactly_as_its_plain_contract_says(ops: list[_Op], max_items: int) -> None:
    q, model = BroadcastQueue(max_items), _ModelQueue(max_items)
    for serial, (kind, key, n, overhead, limit) in enumerate(ops):
        if kind == "queue":
            data = f"{key}{serial}:".encode().ljust(n, b".")
            q.queue(key, data)
            model.queue(key, data)
        elif kind == "take":
            assert q.fits(n, overhead) == model.fits(n, overhead)
            assert q.take(n, overhead, limit) == model.take(n, overhead, limit)
        else:
            q.clear()
            model.items.clear()
        assert len(q) == len(model.items)
        assert all(k in q for k in model.items)
        assert (q.dropped, q.invalidated) == (model.dropped, model.invalidated)


def test_fits_follows_updates_retired_by_the_transmit_limit() -> None:
    # (A case the random operations above may not draw.)
    q = BroadcastQueue()
    q.queue("a", b"x" * 10)
    q.queue("b", b"y" * 10)
    assert q.take(10, 0, 1) == [b"y" * 10]  # only one fits; sent once, it is retired
    assert len(q) == 1
    assert q.fits(10)
    assert not q.fits(9)
