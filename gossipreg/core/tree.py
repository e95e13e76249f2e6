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

__all__ = [
    "FLAT_RESENDS", "RoundTrip", "RoundTrips", "child_ranks", "next_wait", "parent_rank", "resend_span",
]


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


FLAT_RESENDS = 3
"""Re-sends of a tree datagram that wait one retransmission timeout each before
the waits start doubling (see :func:`next_wait`)."""


class RoundTrip:
    """How long a tree datagram to one child waits for its ack: a retransmission timeout.

    As TCP's (RFC 6298): ``srtt + 4 * rttvar``, never below ``floor``
    (``Config.tree_ack_timeout``), which is also the timeout before the first
    sample. Every ack names the copy it answers (its sequence number carries
    the copy's index), so every ack is a sample, re-sent datagrams included:
    a child slowed down by a loaded host, or a path longer than the profile
    expects, raises the timeout from its first answered datagram on.
    """

    __slots__ = ("_floor", "_rttvar", "_srtt")

    def __init__(self, floor: float) -> None:
        self._floor = floor
        self._srtt: float | None = None
        self._rttvar = 0.0

    def sample(self, rtt: float) -> None:
        """Account one round trip (seconds from sending a copy to the ack naming it)."""
        rtt = max(0.0, rtt)
        if self._srtt is None:
            self._srtt = rtt
            self._rttvar = rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt

    @property
    def measured(self) -> bool:
        """Whether any round trip was sampled."""
        return self._srtt is not None

    def timeout(self) -> float:
        """Seconds a datagram sent now waits for its ack before it is sent again."""
        if self._srtt is None:
            return self._floor
        return max(self._floor, self._srtt + 4 * self._rttvar)


class RoundTrips:
    """A :class:`RoundTrip` per member, and one over all of them.

    :meth:`timeout` towards a member not measured yet is the all-members one, so
    that a host slowed down as a whole does not learn it again from each member.
    At most ``limit`` members are kept (the oldest is dropped first); a member
    that is down is :meth:`forget`-ten.
    """

    __slots__ = ("_all", "_by_member", "_floor", "_limit")

    def __init__(self, floor: float, limit: int) -> None:
        self._floor = floor
        self._limit = limit
        self._by_member: dict[str, RoundTrip] = {}
        self._all = RoundTrip(floor)

    def sample(self, member: str, rtt: float) -> None:
        """Account one round trip to ``member``."""
        mine = self._by_member.get(member)
        if mine is None:
            if len(self._by_member) >= self._limit:
                del self._by_member[next(iter(self._by_member))]
            mine = self._by_member[member] = RoundTrip(self._floor)
        mine.sample(rtt)
        self._all.sample(rtt)

    def timeout(self, member: str) -> float:
        """The retransmission timeout of a datagram sent to ``member`` now."""
        mine = self._by_member.get(member)
        return (mine if mine is not None and mine.measured else self._all).timeout()

    def forget(self, member: str) -> None:
        """Drop ``member``'s round trips (it is down)."""
        self._by_member.pop(member, None)

    def __len__(self) -> int:
        return len(self._by_member)


def next_wait(wait: float, resend: int, cap: float) -> float:
    """How long re-send number ``resend`` (1 for the first) of a tree datagram waits
    for its ack, when the copy before it waited ``wait`` seconds in vain.

    The first :data:`FLAT_RESENDS` re-sends wait as long as the first copy (a
    loss on a healthy path is repaired within a few timeouts); later ones twice
    as long as the one before, at most ``cap`` (or ``wait``, if that is longer),
    so a child that answers far later than its timeout, or not at all, is sent
    a handful of copies, not one per timeout.
    """
    if resend <= FLAT_RESENDS:
        return wait
    return min(2 * wait, max(wait, cap))


def resend_span(first_wait: float, resends: int, cap: float) -> float:
    """Seconds from a tree datagram's first send to its last copy's deadline, with
    ``resends`` re-sends waiting as :func:`next_wait` says. A receiver keeps the
    datagram's sequence number this long, so that a late copy is acknowledged
    but not passed on again."""
    total, wait = first_wait, first_wait
    for resend in range(1, resends + 1):
        wait = next_wait(wait, resend, cap)
        total += wait
    return total
