"""The transmit-limited broadcast queue (memberlist's ``TransmitLimitedQueue``).

Every update a member learns (membership changes and catalog records alike)
is queued here as encoded bytes under a *key* naming what it is about
(``("member", name)``, ``("record", service, version, node id)``). Each
datagram the member sends (probes, acks, gossip rounds, eager pushes) is
topped up with queued updates until ``max_packet_size`` is reached.

Rules:

* **Transmit limit.** An update is sent at most ``limit`` times, where the
  caller passes ``limit = retransmit_mult * ceil(log10(n + 1))`` computed from
  the *live* membership at that moment (go-micro's gossip registry sized it
  from its seed list, so a member with no seeds sent each update once).
* **Fresh first.** Updates that have been sent fewer times go first; among
  equals, the newest queued goes first.
* **Invalidation.** Queuing an update under a key that is already queued
  replaces the older one (a newer alive message supersedes an older suspect
  about the same member; a newer record version supersedes the older one).
  Replacement is O(1).
* **Bounded.** At most ``max_items`` updates are held. On overflow the
  update that has been sent the most times (the oldest among those) is
  dropped: it has had the most chances to spread, and anti-entropy repairs
  whatever gossip misses. Drops are counted.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["BroadcastQueue"]

_NO_SIZE = 1 << 62


@dataclass(slots=True)
class _Item:
    key: Hashable
    data: bytes
    transmits: int


class BroadcastQueue:
    """Queued updates awaiting piggybacking, fresh first.

    Args:
        max_items: most updates held at once; overflow drops the most-sent.
    """

    def __init__(self, max_items: int = 4096) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.max_items = max_items
        self._items: dict[Hashable, _Item] = {}
        # Buckets by transmit count; each bucket maps key -> item in queue order.
        self._buckets: list[dict[Hashable, _Item]] = []
        # A lower bound on the size of every update in each bucket (the smallest put
        # there since it was last seen empty): :meth:`take` skips a bucket where
        # nothing can fit, without looking at its updates.
        self._floors: list[int] = []
        #: Updates dropped on overflow.
        self.dropped = 0
        #: Updates replaced by a newer one under the same key.
        self.invalidated = 0
        # A lower bound on the size of every queued update (the smallest queued
        # since the queue was last empty): once the budget left is below it, no
        # further update can fit and :meth:`take` stops looking.
        self._min_size = _NO_SIZE
        # The bytes of every queued update, summed: when they all fit, take() has no
        # choice to make.
        self._size = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def fits(self, budget: int, overhead: int = 0) -> bool:
        """Whether every queued update fits in one datagram of ``budget`` bytes (each
        costing ``overhead`` more): then :meth:`take` hands out the whole queue."""
        return self._size + overhead * len(self._items) <= budget

    def queue(self, key: Hashable, data: bytes) -> None:
        """Queue ``data`` under ``key``, replacing any update queued under it."""
        old = self._items.pop(key, None)
        if old is not None:
            del self._buckets[old.transmits][key]
            self._size -= len(old.data)
            self.invalidated += 1
        elif len(self._items) >= self.max_items:
            self._drop_one()
        item = _Item(key, data, 0)
        size = len(data)
        self._size += size
        if size < self._min_size:
            self._min_size = size
        self._items[key] = item
        if not self._buckets:
            self._buckets.append({})
            self._floors.append(_NO_SIZE)
        self._buckets[0][key] = item
        if size < self._floors[0]:
            self._floors[0] = size

    def _drop_one(self) -> None:
        for bucket in reversed(self._buckets):
            if bucket:
                key = next(iter(bucket))  # the oldest of the most-sent
                del bucket[key]
                self._size -= len(self._items.pop(key).data)
                self.dropped += 1
                return

    def take(self, budget: int, overhead: int, limit: int) -> list[bytes]:
        """Updates to piggyback on one datagram, fresh first.

        Args:
            budget: bytes available in the datagram.
            overhead: framing bytes each update costs on top of its own size.
            limit: transmit limit; an update sent ``limit`` times is removed.

        Returns the chosen updates; each has its transmit count raised.
        """
        if not self._items:
            return []
        if self._min_size >= 1 and self._size + overhead * len(self._items) <= budget:
            return self._take_all(limit)
        chosen: list[_Item] = []
        smallest = max(self._min_size, 1) + overhead
        buckets = self._buckets
        floors = self._floors
        for t, bucket in enumerate(buckets):
            if budget < smallest:
                break
            if not bucket:
                floors[t] = _NO_SIZE
                continue
            if budget < floors[t] + overhead:
                continue  # nothing in this bucket fits: the choice is the same without looking
            # Newest first within a bucket: dicts keep insertion order.
            for item in reversed(bucket.values()):
                cost = len(item.data) + overhead
                if cost <= budget:
                    chosen.append(item)
                    budget -= cost
                    if budget < smallest:
                        break
        if not chosen:
            return []
        items = self._items
        for item in chosen:
            t = item.transmits
            del buckets[t][item.key]
            t += 1
            item.transmits = t
            if t >= limit:
                del items[item.key]
                self._size -= len(item.data)
            else:
                if t == len(buckets):
                    buckets.append({})
                    floors.append(_NO_SIZE)
                buckets[t][item.key] = item
                if len(item.data) < floors[t]:
                    floors[t] = len(item.data)
        if not items:
            self._min_size = _NO_SIZE
        return [item.data for item in chosen]

    def _take_all(self, limit: int) -> list[bytes]:
        """:meth:`take` when every queued update fits: it would choose them all, so
        here they are, in its order, each bucket moved up one whole."""
        items = self._items
        old = self._buckets
        floors = self._floors
        out: list[bytes] = []
        buckets: list[dict[Hashable, _Item]] = [{}]
        new_floors = [_NO_SIZE]
        for t, bucket in enumerate(old):
            up = t + 1
            moved: dict[Hashable, _Item] = {}
            # Newest first, as take() chooses them (and so re-queues them, one bucket up).
            for key, item in reversed(bucket.items()):
                out.append(item.data)
                item.transmits = up
                if up >= limit:
                    del items[key]
                    self._size -= len(item.data)
                else:
                    moved[key] = item
            if moved or up < len(old):
                buckets.append(moved)
                new_floors.append(floors[t] if moved else _NO_SIZE)
        self._buckets = buckets
        self._floors = new_floors
        if not items:
            self._min_size = _NO_SIZE
        return out

    def clear(self) -> None:
        """Drop every queued update."""
        self._size = 0
        self._items.clear()
        self._buckets.clear()
        self._floors.clear()
        self._min_size = _NO_SIZE
