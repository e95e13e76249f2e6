"""Latency histograms the node core keeps: probe round trips, push-pulls, spread.

The core observes durations where they end (an ack, a FETCH, a record new to
this member) and adds them to fixed-bucket histograms: a count per bucket and
a running sum, as Prometheus histograms are, so a driver exports them without
keeping any samples (:mod:`gossipreg.metrics` does). Times come from the
``now`` arguments and the injected wall clock; nothing here reads a clock,
draws a random number or changes what the core sends.

* ``probe_rtt``: seconds from a probe's ping to its ack, for acked probes
  (including acks forwarded by ping-req helpers, which take longer);
* ``push_pull``: seconds from the INIT of a push-pull this member started to
  the FETCH that completes it (failed exchanges are not observed: they are
  ``push_pulls_failed``);
* ``spread``: for each record of another owner new to this member, by gossip
  or by a push-pull other than its own join, seconds from the owner's stamp
  (the wall-clock part of its hybrid-logical-clock stamp) to this member's
  wall clock at the merge. Clock skew between the two members adds to it or
  takes from it; a negative difference counts as 0.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from .hlc import physical_ms

__all__ = [
    "PROBE_RTT_BUCKETS",
    "PUSH_PULL_BUCKETS",
    "SPREAD_BUCKETS",
    "Histogram",
    "HistogramSnapshot",
    "Observations",
]

#: Upper bounds (seconds) of the probe round-trip buckets: a LAN ack comes within
#: milliseconds; ``probe_timeout`` is 0.5 s by default and a probe period 1 s.
PROBE_RTT_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
#: Upper bounds (seconds) of the push-pull duration buckets: four messages on a
#: stream, up to ``stream_timeout`` (10 s by default) for large catalogs.
PUSH_PULL_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
#: Upper bounds (seconds) of the spread-time buckets: a few link latencies with
#: eager push, gossip rounds without, push-pull intervals for what gossip missed.
SPREAD_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram's state at one moment."""

    bounds: tuple[float, ...]
    """Upper bounds of the finite buckets, increasing."""
    counts: tuple[int, ...]
    """Observations per bucket (not cumulative): one per bound, then one for
    values above the last bound (``+Inf``)."""
    sum: float
    """Sum of every observed value."""

    @property
    def count(self) -> int:
        """Number of observations."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)`` per bucket, ending with ``(inf, count)``,
        as Prometheus exposes ``_bucket{le=...}`` samples."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class Histogram:
    """Fixed-bucket histogram: counts per bucket and a sum.

    Args:
        bounds: upper bounds of the finite buckets, strictly increasing; a
            value equal to a bound falls in that bound's bucket.

    Raises:
        ValueError: ``bounds`` empty or not strictly increasing.
    """

    __slots__ = ("_counts", "_sum", "bounds")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if not bounds or any(a >= b for a, b in pairwise(bounds)):
            raise ValueError(f"bounds must be non-empty and strictly increasing, not {bounds!r}")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` (seconds) in its bucket and add it to the sum."""
        self._counts[bisect_left(self.bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> HistogramSnapshot:
        """The counts and sum now (a copy)."""
        return HistogramSnapshot(self.bounds, tuple(self._counts), self._sum)


class Observations:
    """The node core's histograms, and the push-pulls it is timing."""

    __slots__ = ("_started", "probe_rtt", "push_pull", "spread")

    def __init__(self) -> None:
        self.probe_rtt = Histogram(PROBE_RTT_BUCKETS)
        """Probe round trips (seconds)."""
        self.push_pull = Histogram(PUSH_PULL_BUCKETS)
        """Completed push-pulls this member started (seconds)."""
        self.spread = Histogram(SPREAD_BUCKETS)
        """Owner's stamp to first merge here (seconds)."""
        self._started: dict[tuple[str, int], float] = {}

    def push_pull_started(self, stream: tuple[str, int], now: float) -> None:
        """A push-pull this member initiates on ``stream`` began (INIT sent) at ``now``."""
        self._started[stream] = now

    def push_pull_ended(self, stream: tuple[str, int], now: float, *, completed: bool) -> None:
        """The push-pull on ``stream`` ended at ``now``; observed if ``completed``.

        Streams not begun with :meth:`push_pull_started` are ignored.
        """
        started = self._started.pop(stream, None)
        if started is not None and completed:
            self.push_pull.observe(max(0.0, now - started))

    def records_merged(self, stamps: Iterable[int], wall: float) -> None:
        """Records with hybrid-logical-clock ``stamps`` were first merged here when this
        member's wall clock read ``wall`` (seconds since the epoch)."""
        wall_ms = wall * 1000.0
        for stamp in stamps:
            self.spread.observe(max(0.0, (wall_ms - physical_ms(stamp)) / 1000.0))

    def snapshot(self) -> dict[str, HistogramSnapshot]:
        """Every histogram by name: ``probe_rtt``, ``push_pull``, ``spread``."""
        return {
            "probe_rtt": self.probe_rtt.snapshot(),
            "push_pull": self.push_pull.snapshot(),
            "spread": self.spread.snapshot(),
        }
