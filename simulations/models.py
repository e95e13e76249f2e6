"""The reference curves the scenarios are plotted against.

* :func:`ideal_hops`: ``ceil(log_(f+1) N)``, the fewest rounds in which N members
  can all be reached when every holder tells ``f`` new members per round;
* :func:`serf_infected` and :func:`serf_time_to`: HashiCorp's Serf convergence
  *model* (the formula behind serf's online "convergence simulator", not a
  measurement): ``contact = fanout / n * (1 - loss) * (1 - fail) * 0.5`` and
  ``infected(x) = n / (1 + (n + 1) * exp(-contact * n * x))`` after ``x``
  gossip intervals;
* :func:`swim_first_detection`: SWIM's expected time from a crash to its first
  detection somewhere, ``e / (e - 1)`` protocol periods (for large N).
"""

from __future__ import annotations

import math

__all__ = ["ideal_hops", "serf_infected", "serf_time_to", "swim_first_detection"]


def ideal_hops(n: int, fanout: int) -> int:
    """``ceil(log_(fanout+1) n)``: rounds to reach ``n`` members, each holder telling ``fanout``."""
    if n <= 1:
        return 0
    hops = math.ceil(math.log(n) / math.log(fanout + 1) - 1e-12)
    return max(1, hops)


def serf_infected(n: int, x: float, *, fanout: int, loss: float = 0.0, fail: float = 0.0) -> float:
    """Serf's model: members infected after ``x`` gossip intervals."""
    contact = fanout / n * (1 - loss) * (1 - fail) * 0.5
    return n / (1 + (n + 1) * math.exp(-contact * n * x))


def serf_time_to(
    n: int, fraction: float, *, fanout: int, interval: float, loss: float = 0.0, fail: float = 0.0
) -> float | None:
    """Seconds until Serf's model has ``fraction`` of ``n`` infected (None: never, e.g. 100 %)."""
    if not 0 < fraction < 1:
        return None
    rate = fanout * (1 - loss) * (1 - fail) * 0.5  # contact * n
    if rate <= 0:
        return None
    x = math.log((n + 1) * fraction / (1 - fraction)) / rate
    return max(0.0, x) * interval


def swim_first_detection(probe_interval: float) -> float:
    """SWIM: expected seconds from a crash to its first detection, ``e / (e - 1)`` periods."""
    return math.e / (math.e - 1) * probe_interval
