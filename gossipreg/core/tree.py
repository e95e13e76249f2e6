"""The broadcast tree's shape: which ranks a rank sends to, as a pure function.

Every update a member originates goes down a tree laid over the sorted names
of the live members, rotated so that the originator (the *root*) has rank 0
(:meth:`gossipreg.core.node.NodeCore._tree_children` maps names to ranks).
With ``b = fanout + 1``, the member of rank ``r`` sends to every rank
``r + d * b**i`` (``d`` from 1 to ``b - 1``) for each power ``b**i`` above
``r``'s highest base-``b`` digit: a ``(b-1)``-nomial tree, in which every
rank below ``n`` is reached exactly once, in at most ``ceil(log_b n)`` hops
(the parent of ``r`` is ``r`` with its highest non-zero base-``b`` digit
cleared).
"""

from __future__ import annotations

__all__ = ["RoundTrip", "child_ranks", "parent_rank", "resend_span"]


def child_ranks(rank: int, n: int, fanout: int) -> list[int]:
    """The ranks rank ``rank`` sends to, in a tree of ``n`` ranks where each
    member sends to up to ``fanout`` children per level.

    Args:
        rank: the sender's rank, ``0 <= rank < n`` (0 is the root).
        n: the number of ranks (live members, the sender included).
        fanout: ``gossip_nodes``; the tree's base is ``fanout + 1``.

    Returns:
        the children's ranks, in increasing order.
    """
    base = fanout + 1
    # The first power of the base above rank's highest digit.
    place = 1
    while place <= rank:
        place *= base
    children = []
    while rank + place < n:
        for digit in range(1, base):
            child = rank + digit * place
            if child >= n:
                break
            children.append(child)
        place *= base
    return children


def parent_rank(rank: int, fanout: int) -> int | None:
    """The rank that sends to ``rank`` (``None`` for the root): ``rank`` with its
    highest non-zero base-``fanout + 1`` digit cleared."""
    if rank == 0:
        return None
    base = fanout + 1
    place = 1
    while place * base <= rank:
        place *= base
    return rank % place


class RoundTrip:
    """How long a tree datagram waits for its ack: a retransmission timeout.

    As TCP's (RFC 6298): ``srtt + 4 * rttvar`` from the round trips of tree
    datagrams acknowledged without a re-send (Karn's rule: the ack of a
    re-sent datagram may answer any copy), never below ``floor``
    (``Config.tree_ack_timeout``), which is also the timeout before the first
    sample. When a datagram's wait runs out, the timeout for datagrams sent
    after it is backed off to twice that wait (at most ``cap``) until the next
    valid sample: a member whose peers answer slowly (a loaded host, a longer
    path) then sends each datagram about once, not once per ``floor`` until the
    ack can arrive, and learns the real round trip from the next one.
    """

    __slots__ = ("_backoff", "_cap", "_floor", "_rttvar", "_srtt")

    def __init__(self, floor: float, cap: float) -> None:
        self._floor = floor
        self._cap = max(floor, cap)
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._backoff = 0.0

    def sample(self, rtt: float) -> None:
        """Account one round trip (seconds from a datagram's only send to its ack)."""
        rtt = max(0.0, rtt)
        if self._srtt is None:
            self._srtt = rtt
            self._rttvar = rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt
        self._backoff = 0.0

    def expired(self, wait: float) -> float:
        """A datagram waited ``wait`` seconds in vain: back off, and return how long
        its next copy waits (twice as long, at most ``cap`` unless ``wait`` was longer)."""
        following = min(2 * wait, max(wait, self._cap))
        self._backoff = max(self._backoff, following)
        return following

    def timeout(self) -> float:
        """Seconds a datagram sent now waits for its ack before it is sent again."""
        rto = self._floor if self._srtt is None else max(self._floor, self._srtt + 4 * self._rttvar)
        return min(max(rto, self._backoff), max(rto, self._cap))


def resend_span(first_wait: float, resends: int, cap: float) -> float:
    """Seconds from a tree datagram's first send to its last re-send's deadline.

    Each re-send waits twice as long as the one before, at most ``cap`` (or
    ``first_wait`` if that is longer); ``resends`` re-sends follow the first
    copy. A receiver keeps the datagram's sequence number this long, so that
    a late copy is acknowledged but not passed on again.
    """
    total, wait = 0.0, first_wait
    for _ in range(resends + 1):
        total += wait
        wait = min(2 * wait, max(wait, cap))
    return total
