"""Lifeguard local health (LHA-Probe): the awareness score.

A member that is itself slow (CPU starved, paused by the garbage collector,
its network queue full) misses acks and then wrongly accuses healthy peers.
Lifeguard makes such a member *notice* its own trouble and slow down instead:
an :class:`Awareness` score between ``0`` (healthy) and ``max_multiplier - 1``
rises on evidence of local trouble and falls on evidence of health, and the
probe interval and probe timeout are multiplied by ``score + 1``
(:meth:`Awareness.scale`, :meth:`gossipreg.core.config.Config.scaled_probe`).

Deltas (hashicorp/memberlist's ``state.go``), applied by the node core through
:meth:`Awareness.apply_delta`; :func:`probe_delta` computes the probe part:

* ``-1`` (:data:`PROBE_ACKED`) when a direct probe is acked in time;
* after a direct probe that was *not* acked: ``+1`` per indirect-probe helper
  whose nack did not arrive (:data:`MISSING_NACK` each) or, when no helper was
  asked (so no nack can be expected), ``+1`` (:data:`PROBE_FAILED`) for the
  failed probe. As in memberlist this is charged even when an indirect ack
  eventually arrives: the helpers reached the target and we did not;
* ``+1`` (:data:`REFUTED`) each time this member has to refute a suspicion or
  a death about itself; :class:`gossipreg.core.membership.Membership` applies
  this one itself.

The score is clamped: deltas never push it below 0 or above the maximum.
Pure: no clock, no IO.
"""

from __future__ import annotations

__all__ = [
    "MISSING_NACK",
    "PROBE_ACKED",
    "PROBE_FAILED",
    "REFUTED",
    "Awareness",
    "probe_delta",
]

#: Delta when a direct probe is acked in time.
PROBE_ACKED = -1
#: Delta when a probe fails and no indirect helper could have sent a nack.
PROBE_FAILED = 1
#: Delta per indirect-probe helper whose nack did not arrive.
MISSING_NACK = 1
#: Delta when this member must refute a suspicion or death about itself.
REFUTED = 1


class Awareness:
    """The local-health score, ``0`` (healthy) to ``max_multiplier - 1``.

    Args:
        max_multiplier: bound of the multiplier ``score + 1``
            (:attr:`~gossipreg.core.config.Config.awareness_max_multiplier`);
            ``1`` keeps the score at 0, turning the scaling off.

    Raises:
        ValueError: ``max_multiplier`` is not an int of at least 1.
    """

    __slots__ = ("_max", "_score")

    def __init__(self, max_multiplier: int) -> None:
        if isinstance(max_multiplier, bool) or not isinstance(max_multiplier, int):
            raise ValueError(f"max_multiplier must be an int, got {max_multiplier!r}")
        if max_multiplier < 1:
            raise ValueError(f"max_multiplier must be at least 1, got {max_multiplier}")
        self._max = max_multiplier
        self._score = 0

    @property
    def max_multiplier(self) -> int:
        """The bound given at construction."""
        return self._max

    @property
    def score(self) -> int:
        """The current score, ``0 <= score < max_multiplier``."""
        return self._score

    def apply_delta(self, delta: int) -> int:
        """Add ``delta`` to the score, clamped to ``0..max_multiplier - 1``; return the new score."""
        self._score = min(self._max - 1, max(0, self._score + delta))
        return self._score

    def scale(self, duration: float) -> float:
        """``duration * (score + 1)``: a probe interval or timeout stretched by poor health."""
        return duration * (self._score + 1)

    def __repr__(self) -> str:
        return f"Awareness(score={self._score}, max_multiplier={self._max})"


def probe_delta(*, acked: bool, expected_nacks: int = 0, nacks: int = 0) -> int:
    """The awareness delta for one finished probe (memberlist's ``probeNode``).

    Args:
        acked: the *direct* probe was acked within the probe timeout.
        expected_nacks: indirect-probe helpers asked that can send nacks.
        nacks: nacks received from them.

    Returns:
        ``-1`` if ``acked``; otherwise the number of missing nacks if any were
        expected, else ``+1``.
    """
    if acked:
        return PROBE_ACKED
    if expected_nacks > 0:
        return MISSING_NACK * max(0, expected_nacks - nacks)
    return PROBE_FAILED
