"""Hybrid logical clock (Kulkarni, Demirbas et al., OPODIS 2014).

A stamp is the pair ``(l, c)``: ``l`` is the largest physical time in
milliseconds this member has seen, ``c`` a logical counter that orders events
sharing the same ``l``. gossipreg packs the pair into one integer,
``l << 16 | c``, so that stamps compare, hash and encode as plain ints; with
the owner member's name as tie-breaker, ``(stamp, owner)`` is a total order
and the key of last-writer-wins.

Packing makes both HLC rules one expression each:

* local event / send: ``new = max(last + 1, pt)`` where ``pt = physical_ms << 16``;
* receive of ``remote``: ``new = max(last, remote) + 1`` if that is at least
  ``pt``, else ``pt``.

These are exactly the paper's rules for ``l`` and ``c``. Should ``c`` ever
exceed 16 bits (65,536 events within one millisecond), the carry moves ``l``
one millisecond ahead; order is kept and the drift stays bounded.

A remote stamp more than ``max_drift`` ahead of the local physical clock is
rejected with :class:`~gossipreg.core.errors.ClockDriftError` and counted, not adopted:
otherwise one member with a clock set an hour ahead would drag every clock
along and win every write for that hour. The default, 60 s, tolerates any
NTP-disciplined fleet (skew is typically well under a second) and unsynced
containers that are a little off, while bounding the damage a bad clock does.

The core never reads a clock itself: the wall clock is injected (``time.time``
in the trio runtime, a per-member skewed virtual clock in the simulator).
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import ClockDriftError

__all__ = ["DEFAULT_MAX_DRIFT", "HybridClock", "logical", "make_stamp", "physical_ms"]

LOGICAL_BITS = 16
_LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
#: Largest accepted lead of a remote stamp over the local physical clock, in seconds.
DEFAULT_MAX_DRIFT = 60.0
#: Stamps fit 64 bits: 48 bits of milliseconds (until the year 10889) + 16 logical.
MAX_STAMP = (1 << 64) - 1


def make_stamp(physical: int, logical: int = 0) -> int:
    """Pack physical milliseconds and a logical counter into one stamp."""
    return (physical << LOGICAL_BITS) | logical


def physical_ms(stamp: int) -> int:
    """The physical (wall-clock milliseconds) part of a stamp."""
    return stamp >> LOGICAL_BITS


def logical(stamp: int) -> int:
    """The logical-counter part of a stamp."""
    return stamp & _LOGICAL_MASK


class HybridClock:
    """A hybrid logical clock over an injected wall clock.

    Args:
        wall_clock: returns the current wall-clock time in seconds (``time.time``).
        max_drift: how far, in seconds, a remote stamp may lead the local
            physical clock before :meth:`update` rejects it.
    """

    __slots__ = ("_last", "_max_drift_ms", "_wall_clock", "rejected")

    def __init__(self, wall_clock: Callable[[], float], max_drift: float = DEFAULT_MAX_DRIFT):
        if not max_drift > 0:
            raise ValueError(f"max_drift must be positive, not {max_drift!r}")
        self._wall_clock = wall_clock
        self._max_drift_ms = int(max_drift * 1000)
        self._last = 0
        #: Count of remote stamps rejected for drift.
        self.rejected = 0

    @property
    def last(self) -> int:
        """The most recent stamp issued or observed."""
        return self._last

    def _pt(self) -> int:
        return int(self._wall_clock() * 1000) << LOGICAL_BITS

    def now(self) -> int:
        """A new stamp for a local event, greater than every stamp seen so far."""
        pt = self._pt()
        last = self._last + 1
        self._last = new = pt if pt > last else last
        return new

    def check(self, remote: int) -> None:
        """Raise :class:`ClockDriftError` if ``remote`` leads the physical clock by too much.

        Counts the rejection. Does not change the clock.
        """
        pt_ms = int(self._wall_clock() * 1000)
        lead = physical_ms(remote) - pt_ms
        if lead > self._max_drift_ms:
            self.rejected += 1
            raise ClockDriftError(
                f"remote stamp is {lead / 1000:.3f}s ahead of the local clock "
                f"(max_clock_drift is {self._max_drift_ms / 1000:g}s)"
            )

    def update(self, remote: int) -> int:
        """Observe a remote stamp and return a new stamp greater than both.

        Raises:
            ClockDriftError: ``remote`` is more than ``max_drift`` ahead of the
                local physical clock; it is counted and not adopted.
        """
        self.check(remote)
        pt = self._pt()
        top = self._last if self._last > remote else remote
        self._last = new = top + 1 if top >= pt else pt
        return new

    def observe(self, remote: int) -> None:
        """Advance past ``remote`` without issuing a stamp (bulk merges).

        Unlike :meth:`update` this does not check drift; callers check first.
        """
        if remote > self._last:
            self._last = remote
