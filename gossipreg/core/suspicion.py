"""Lifeguard suspicion timer (LHA-Suspicion), as pure state.

When a member suspects another, the suspect gets a *long* timeout to refute,
``max_timeout``, which independent confirmations (other members suspecting the
same member on their own) shrink logarithmically towards ``min_timeout``::

    timeout = max(min, max - (max - min) * log(c + 1) / log(k + 1))

with ``c`` the confirmations counted so far and ``k`` the number wanted
(``k == 0`` means "expect none": the timeout is ``min`` at once). The formula
is :func:`gossipreg.core.config.remaining_suspicion_time`; the bounds and
``k`` come from :meth:`Config.suspicion_timeout_bounds` and
:meth:`Config.suspicion_confirmations` (see :func:`suspicion_for`).

Unlike hashicorp/memberlist's ``suspicion.go`` there is no timer here: the
owner (:class:`gossipreg.core.membership.Membership`) asks for
:meth:`Suspicion.deadline` and compares it with ``now`` when driven.

Only *independent* confirmations count: the member that started the suspicion
does not confirm itself, each other member counts once, and at most ``k``
are counted.
"""

from __future__ import annotations

import math

from .config import Config, remaining_suspicion_time

__all__ = ["Suspicion", "suspicion_for"]


class Suspicion:
    """One member's suspicion of another, started at ``started_at``.

    Args:
        from_member: the member whose suspicion started this timer; its own
            later messages are not confirmations.
        k: confirmations that bring the timeout down to ``min_timeout``.
        min_timeout: shortest timeout, seconds.
        max_timeout: timeout with no confirmation, seconds.
        started_at: ``now`` when the suspicion started (monotonic seconds).

    Raises:
        ValueError: ``k`` is negative, or not ``0 <= min_timeout <= max_timeout``.
    """

    __slots__ = ("_confirmers", "_deadline", "_doom", "_floor", "_from", "_k", "_max", "_min", "_started_at")

    def __init__(
        self, from_member: str, k: int, min_timeout: float, max_timeout: float, started_at: float
    ) -> None:
        if k < 0:
            raise ValueError(f"k must not be negative, got {k}")
        if not 0 <= min_timeout <= max_timeout:
            raise ValueError(f"need 0 <= min_timeout <= max_timeout, got {min_timeout}, {max_timeout}")
        self._from = from_member
        self._k = k
        self._min = float(min_timeout)
        self._max = float(max_timeout)
        self._started_at = float(started_at)
        self._confirmers: set[str] = set()
        self._doom: float | None = None
        self._floor = -math.inf  # see hold()
        # Cached: the deadline changes only when a confirmation is counted, and
        # the owner asks for it on every drive.
        self._deadline = self._started_at + self.timeout()

    @property
    def from_member(self) -> str:
        """The member whose suspicion started this timer."""
        return self._from

    @property
    def k(self) -> int:
        """Confirmations wanted."""
        return self._k

    @property
    def started_at(self) -> float:
        """When the suspicion started."""
        return self._started_at

    @property
    def min_timeout(self) -> float:
        """Shortest timeout, seconds."""
        return self._min

    @property
    def max_timeout(self) -> float:
        """Timeout with no confirmation, seconds."""
        return self._max

    @property
    def confirmations(self) -> int:
        """Independent confirmations counted so far (at most ``k``)."""
        return len(self._confirmers)

    def confirm(self, from_member: str, now: float) -> bool:
        """Count ``from_member``'s suspicion as a confirmation, if it is new.

        Returns:
            True if it was counted (the caller should re-gossip it, so other
            members can count it too); False if ``from_member`` started the
            suspicion or already confirmed it, ``k`` confirmations are already
            in, or the suspicion had expired by ``now``.
        """
        if not self.would_count(from_member, now):
            return False
        self._confirmers.add(from_member)
        self._recompute()
        return True

    def _recompute(self) -> None:
        deadline = self._started_at + self.timeout()
        if self._doom is not None:
            deadline = min(deadline, self._doom)
        self._deadline = max(deadline, self._floor)

    def hold(self, until: float) -> None:
        """Do not expire before ``until``, whatever confirmations or deaths say.

        The owner holds every running suspicion for a moment when a member it
        held dead speaks again: a partition has likely healed, and a suspect
        on the far side needs that moment to hear of its suspicion and refute.
        """
        if until > self._floor:
            self._floor = until
            self._recompute()

    @property
    def doomed(self) -> bool:
        """Whether a death declared elsewhere has set a deadline (see :meth:`doom`)."""
        return self._doom is not None

    def doom(self, at: float) -> bool:
        """Another member declared the suspect dead: expire at ``at`` at the latest.

        The owner gives the suspect until ``at`` (a grace to refute) rather
        than believing the death at once. Returns whether this was the first
        such declaration (news to pass on); later ones only keep the earliest.
        """
        first = self._doom is None
        if self._doom is None or at < self._doom:
            self._doom = at
            self._recompute()
        return first

    def would_count(self, from_member: str, now: float) -> bool:
        """Whether :meth:`confirm` would count ``from_member`` at ``now`` (changes nothing)."""
        return (
            len(self._confirmers) < self._k
            and from_member != self._from
            and from_member not in self._confirmers
            and now < self._deadline
        )

    def timeout(self) -> float:
        """The whole timeout in seconds, given the confirmations so far."""
        return remaining_suspicion_time(len(self._confirmers), self._k, 0.0, self._min, self._max)

    def deadline(self) -> float:
        """``started_at + timeout()``: when the suspect is declared dead unless it refutes."""
        return self._deadline

    def remaining(self, now: float) -> float:
        """Seconds left at ``now`` (0 once expired)."""
        return max(0.0, self.deadline() - now)

    def expired(self, now: float) -> bool:
        """Whether the deadline has been reached at ``now``."""
        return now >= self.deadline()

    def __repr__(self) -> str:
        return (
            f"Suspicion(from_member={self._from!r}, k={self._k}, confirmations={self.confirmations}, "
            f"started_at={self._started_at}, deadline={self.deadline()})"
        )


def suspicion_for(config: Config, n: int, from_member: str, started_at: float) -> Suspicion:
    """A suspicion sized for a cluster of ``n`` live members (Lifeguard's dynamic timeout).

    ``(min, max) = config.suspicion_timeout_bounds(n)`` and
    ``k = config.suspicion_confirmations(n)``.
    """
    low, high = config.suspicion_timeout_bounds(n)
    return Suspicion(from_member, config.suspicion_confirmations(n), low, high, started_at)
