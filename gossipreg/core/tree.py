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

__all__ = ["child_ranks", "parent_rank"]


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
