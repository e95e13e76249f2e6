"""Configuration: one frozen :class:`Config` and the formulas that scale it.

Three profiles follow hashicorp/memberlist's defaults:

* :meth:`Config.lan` (also plain ``Config()``): one data centre, sub-millisecond
  round trips;
* :meth:`Config.wan`: members spread over data centres, longer round trips and
  more loss, so slower probes and longer suspicion;
* :meth:`Config.local`: loopback or one host (tests, a laptop), everything faster.

Every profile accepts keyword overrides (``Config.lan(probe_interval=2.0,
probe_timeout=1.0)``) and :meth:`Config.replace` derives a changed copy. Both
validate the *whole* result: an invalid value, or a combination that cannot
work (``probe_timeout`` not less than ``probe_interval``), raises
:class:`~gossipreg.ConfigError` whose message starts with the field's name,
e.g. ``probe_timeout: must be less than probe_interval (1.0 s), got 2.0``.

Numbers of seconds may be given as ``int`` or ``float`` and are stored as
``float``; counts must be ``int`` (``bool`` is not accepted as either).

The formulas that turn the configuration plus the current member count ``n``
into timeouts and limits are methods here (plus the pure
:func:`remaining_suspicion_time`), so every layer computes them the same way:

* :meth:`Config.suspicion_timeout_bounds`:
  ``min = suspicion_mult * max(1, log10 n) * probe_interval``,
  ``max = suspicion_max_timeout_mult * min``;
* :meth:`Config.suspicion_confirmations`: ``k = suspicion_mult - 2``, 0 if ``n - 2 < k``;
* :func:`remaining_suspicion_time`:
  ``max(0, max(min, max - (max - min) * log(c + 1) / log(k + 1)) - elapsed)``;
* :meth:`Config.retransmit_limit`: ``retransmit_mult * ceil(log10(n + 1))``;
* :meth:`Config.push_pull_interval_for`:
  ``push_pull_interval * (ceil(log2 n - 5) + 1)`` once ``n > 32``;
* :meth:`Config.scaled_probe`: ``(probe_interval, probe_timeout) * (awareness + 1)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Self

from .errors import ConfigError

__all__ = [
    "MAX_LABEL_BYTES",
    "MAX_PACKET_SIZE_RANGE",
    "PUSH_PULL_SCALE_THRESHOLD",
    "Config",
    "remaining_suspicion_time",
]

#: Longest cluster label, in UTF-8 bytes (it travels as ``[len: u8][label]``).
MAX_LABEL_BYTES = 255
#: Inclusive bounds of ``max_packet_size``, in bytes: 512 is the smallest
#: datagram every IPv4 host must accept (576 minus headers, rounded down);
#: 65000 stays under the 65,507-byte UDP payload limit.
MAX_PACKET_SIZE_RANGE = (512, 65000)
#: Member count above which the push/pull interval starts to grow (memberlist's).
PUSH_PULL_SCALE_THRESHOLD = 32
#: Largest stream frame a u32 length prefix can describe.
_MAX_U32 = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class Config:
    """Timing, sizing and security parameters of one gossipreg member.

    ``Config()`` is the LAN profile; see :meth:`lan`, :meth:`wan` and
    :meth:`local`. Instances are immutable and hashable; derive a changed copy
    with :meth:`replace`.

    Raises:
        ConfigError: a field has the wrong type or an invalid value, or two
            fields contradict each other; the message names the field.
    """

    # -- failure detection (SWIM probes) -------------------------------------

    probe_interval: float = 1.0
    """Seconds between two probes of a random member (SWIM's protocol period).

    Scaled by local health: see :meth:`scaled_probe`. LAN 1 s, WAN 5 s, local 1 s.
    """

    probe_timeout: float = 0.5
    """Seconds to wait for the ack of a direct probe before asking
    ``indirect_checks`` other members to probe indirectly.

    Should be around the 99th percentile of the round-trip time; must be less
    than ``probe_interval``. Scaled like ``probe_interval``. LAN 0.5 s, WAN 3 s,
    local 0.2 s.
    """

    probe_resends: int = 8
    """Most times a probe's ping is sent again, before ``probe_timeout``, while no
    ack has come; 0 sends one ping per probe.

    A lost ping or ack would otherwise cost the probe its direct path: at a
    datagram loss rate ``p`` a single ping fails with probability
    ``1 - (1 - p)**2`` (75 % at 50 % loss), and every failed probe that the
    indirect path does not save is a false suspicion that every member hears,
    and its refutation. Each re-ping waits the target's retransmission timeout
    (measured from the acks of pings to it as the broadcast tree's are from its
    acks, see ``tree_ack_timeout``): the ping and the first three re-pings wait
    one timeout each, later ones twice as long as the one before; none is sent
    at or after ``probe_timeout``. An ack to any copy
    answers the probe. Cost: nothing while acks arrive in time; a member that
    is down gets at most this many more pings per probe until it is declared
    dead. 8 in every profile: as many as fit before ``probe_timeout`` at the
    smallest timeout (7 on a LAN, 5 on a WAN), so at 50 % loss the direct path
    fails with probability 0.10 (three re-pings: 0.32; none: 0.75); at most 16.
    """

    indirect_checks: int = 3
    """Members asked to probe a member that missed its direct ack (SWIM's *k*).

    0 disables indirect probes (not recommended). LAN 3, WAN 3, local 1.
    """

    suspicion_mult: int = 4
    """Multiplier of the minimum suspicion timeout (Lifeguard).

    ``min = suspicion_mult * max(1, log10 n) * probe_interval`` seconds: a
    suspected member has at least that long to refute before it is declared
    dead. Also sets the confirmations that shorten the timeout,
    ``k = suspicion_mult - 2``. LAN 4, WAN 6, local 3.
    """

    suspicion_max_timeout_mult: int = 6
    """Ratio of the maximum to the minimum suspicion timeout (Lifeguard).

    ``max = suspicion_max_timeout_mult * min``: a suspicion nobody confirms
    lasts ``max``; each independent confirmation brings it closer to ``min``.
    6 in every profile.
    """

    awareness_max_multiplier: int = 8
    """Bound of the local-health (awareness) multiplier (Lifeguard LHA-Probe).

    The awareness score runs from 0 to ``awareness_max_multiplier - 1``; probe
    interval and timeout are multiplied by ``score + 1``, so a struggling member
    probes at most 8 times slower rather than falsely accusing others. 1 turns
    the scaling off. 8 in every profile.
    """

    # -- dissemination (gossip) ----------------------------------------------

    gossip_interval: float = 0.2
    """Seconds between two gossip rounds, each sending queued broadcasts to
    ``gossip_nodes`` random members. LAN 0.2 s, WAN 0.5 s, local 0.1 s."""

    gossip_nodes: int = 3
    """Members a gossip round (and an eager push) sends to. LAN 3, WAN 4, local 3."""

    retransmit_mult: int = 4
    """Multiplier of the number of times each broadcast is transmitted.

    ``limit = retransmit_mult * ceil(log10(n + 1))`` transmissions, see
    :meth:`retransmit_limit`; LAN with n = 100 gives 12. 4 in LAN and WAN, 2 in
    local.
    """

    gossip_to_the_dead: float = 30.0
    """Seconds after a member is declared dead during which it is still chosen
    as a gossip target, so that it learns it was declared dead and can refute.

    0 stops gossip to dead members at once. LAN 30 s, WAN 60 s, local 15 s
    (memberlist's ``GossipToTheDeadTime``).
    """

    eager_push: bool = True
    """Forward a fresh update (one this member had not seen) to
    ``gossip_nodes`` random members at once, instead of waiting for the next
    gossip round. Cuts propagation latency by up to ``gossip_interval`` per hop.
    """

    eager_push_rate: float = 50.0
    """Most eager-push datagrams per second sent to any one destination member.

    Above the rate, fresh updates simply wait for the next gossip round, so a
    burst of registrations cannot flood a peer: at 50/s and 1400-byte
    datagrams that is at most 70 kB/s per peer, against 5 datagrams/s from
    regular LAN gossip rounds. Datagrams per second, must be positive.
    """

    eager_round_rate: float = 10.0
    """Most eager-push rounds per second a member starts, sustained.

    A token bucket holding at most one second's worth (``eager_round_rate``
    rounds) and refilled at this rate; each eager round (``gossip_nodes``
    datagrams, every fresh update that fits) spends one. Without it a member
    sends a round for every burst of news it receives, so traffic grows with
    the cluster's update rate: under heavy loss, where every member's probes
    fail and suspicions and refutations pour in, a member would send well over
    a hundred eager datagrams a second. With the bucket empty, fresh updates
    wait for the next regular gossip round (``gossip_interval``), so the
    bound is ``eager_round_rate * gossip_nodes`` datagrams a second. One kind
    of news is exempt: the first news of a member this one never knew (a
    join), which is rare outside a burst of joins and would otherwise wait for
    gossip rounds (at most one round per datagram bringing such news; the
    per-destination ``eager_push_rate`` still applies).
    Rounds per second, must be positive.
    """

    tree_resends: int = 16
    """Most times a broadcast-tree datagram is sent again to a child that has
    not acknowledged it (the tree repair); 0 turns the repair off.

    Without it, a lost tree datagram cuts off the child's whole subtree, whose
    members then wait for random gossip (up to ``gossip_interval`` per hop).
    With it, each tree datagram asks for an ack; the sender sends it again
    when the ack is overdue (see ``tree_ack_timeout``): the first three
    re-sends one timeout apart, then each waiting twice as long as the one
    before (up to ``probe_interval``), until it is acknowledged, the child is
    no longer live, or this many re-sends went unanswered. The child passes
    a repeated datagram on to its own children only once. Cost: one small ack per tree datagram, plus about
    ``1 / (1 - loss)**2 - 1`` re-sends per tree edge at a datagram loss rate
    ``loss`` (0.23 at 10 %, 3 at 50 %); with loss ``p`` a child misses the
    datagram with probability ``p ** (tree_resends + 1)`` (random gossip still
    repairs that). A child that is down costs its parent at most this many
    re-sends per tree datagram, spaced ever further apart, until it is
    declared dead. 16 in every profile: at 50 % loss a child is then missed
    with probability 8e-6 (with 8, 0.2 %); at most 64.
    """

    tree_ack_timeout: float = 0.01
    """Least seconds a broadcast-tree datagram waits for its ack before it is
    sent again (see ``tree_resends``), and the wait before any round trip is
    known. The wait is the child's retransmission timeout, as TCP's: the
    smoothed round trip plus four times its variation, never below this. Each
    ack names the copy it answers, so every ack is a round trip; a child not
    measured yet starts from the round trips to all children. So a slow child
    or a loaded host is not sent each datagram many times before its ack can
    arrive. Should be just above the round-trip time: a loss delays the child
    (and its subtree) by about this much. LAN 0.01 s, WAN 0.3 s, local 0.005 s.
    """

    broadcast_queue_limit: int = 4096
    """Most broadcasts queued for retransmission (serf's ``MaxQueueDepth``).

    On overflow the queued broadcast that has been transmitted the most times
    is dropped first (the oldest among equals): it has already spread the
    furthest, and push/pull anti-entropy repairs whatever a drop misses.
    """

    max_packet_size: int = 1400
    """Largest datagram sent, in bytes, after sealing (memberlist's
    ``UDPBufferSize``). 1400 fits a 1500-byte Ethernet MTU with room for IP,
    UDP and tunnel headers. Between 512 and 65000 inclusive."""

    # -- anti-entropy and streams --------------------------------------------

    push_pull_interval: float = 30.0
    """Seconds between full-state push/pull exchanges with one random member
    over a stream (anti-entropy).

    Grows with the cluster so the total load stays flat: see
    :meth:`push_pull_interval_for`, ``push_pull_interval * (ceil(log2 n - 5) + 1)``
    once ``n > 32``. LAN 30 s, WAN 60 s, local 15 s.
    """

    stream_timeout: float = 10.0
    """Seconds allowed to connect a stream and exchange one push/pull over it
    (memberlist's ``TCPTimeout``). LAN 10 s, WAN 30 s, local 1 s."""

    max_stream_frame: int = 16 * 1024 * 1024
    """Largest stream message accepted, in bytes (16 MiB). A message travels as
    sealed chunks of at most 64 KiB, each authenticated on arrival
    (:mod:`gossipreg.core.chunks`), so only a key holder's bytes count towards
    it; a message growing past it closes the stream
    (``stream_messages_too_large``). At least ``max_packet_size`` and at most
    2**32 - 1."""

    # -- state lifetimes -----------------------------------------------------

    tombstone_ttl: float = 3600.0
    """Seconds a deletion (tombstone) is kept, so anti-entropy cannot
    resurrect what was deleted (Demers' death certificates). Must outlast the
    longest registration lease plus the time the cluster needs to converge."""

    max_clock_drift: float = 60.0
    """Seconds a remote hybrid-logical-clock stamp may lead the local wall
    clock before it is rejected (and counted) instead of adopted; see
    :mod:`gossipreg.core.hlc`."""

    reconnect_interval: float = 30.0
    """Seconds between a member's chances to reach one random member declared
    dead (serf's ``ReconnectInterval``): an anti-entropy exchange with its
    last address, taken with probability ``min(1, failed / alive)`` so the
    cluster makes about ``failed`` attempts per interval in all. A
    partition that outlasts ``gossip_to_the_dead`` leaves each side thinking
    the other is dead and no longer talking to it; these attempts are what
    merges the two sides again once the network heals. Besides these, a
    member pings one member held dead every ``probe_interval`` with the same
    probability, and re-merges at once with any member held dead that it
    hears from, so a healed partition is usually merged within about a
    second; this check is the fallback. LAN and WAN 30 s, local 15 s."""

    reconnect_timeout: float = 86400.0
    """Seconds a member declared dead stays a reconnect candidate (serf's
    ``ReconnectTimeout``, 24 h); members that left gracefully are not."""

    dead_node_reclaim_time: float = 0.0
    """Seconds after which a dead member's name may be taken by a member at a
    different address. 0 means never, as in memberlist: the name stays bound
    to its address until the dead member is reaped."""

    max_records_per_owner: int = 10_000
    """Most live registrations (nodes) one member may own. Registering past it
    raises :class:`~gossipreg.core.errors.RegistrationLimitError`; a peer's
    records past it are refused and counted (``catalog_over_owner_limit``), so
    one member cannot make every other grow without bound (each record costs
    a member about 2.4 kB). Tombstones do not count."""

    death_grace: float = 1.0
    """Seconds a member gives another that a *third* member declared dead
    before believing it, counted from when it began suspecting the accused
    itself (from the declaration if it did not): the accused is suspected
    meanwhile, keeps its registrations in the view, and refutes if it is
    reachable. A death declared on the far side of a partition that has just
    healed then does not delete a member its own side can reach. A suspicion
    older than this is believed dead at once, as in memberlist, so the delay
    to detect a real failure is at most this, and only for members that had
    not heard the suspicion. 0 believes every death at once. LAN and local
    1 s, WAN 5 s (one probe interval)."""

    # -- security ------------------------------------------------------------

    label: str = ""
    """Cluster label, at most 255 UTF-8 bytes; "" means no label.

    Bound into every sealed datagram as additional authenticated data
    (:attr:`label_bytes`), so two clusters that share a key still cannot open
    each other's packets.
    """

    # -------------------------------------------------------------------------

    def __post_init__(self) -> None:
        seconds = self._seconds
        count = self._count
        seconds("probe_interval", positive=True)
        seconds("probe_timeout", positive=True)
        if not self.probe_timeout < self.probe_interval:
            raise ConfigError(
                f"probe_timeout: must be less than probe_interval "
                f"({self.probe_interval} s), got {self.probe_timeout}"
            )
        count("probe_resends", minimum=0, maximum=16)
        count("indirect_checks", minimum=0)
        count("suspicion_mult", minimum=1)
        count("suspicion_max_timeout_mult", minimum=1)
        count("awareness_max_multiplier", minimum=1)
        seconds("gossip_interval", positive=True)
        count("gossip_nodes", minimum=1)
        count("retransmit_mult", minimum=1)
        seconds("gossip_to_the_dead", positive=False)
        if not isinstance(self.eager_push, bool):
            raise ConfigError(f"eager_push: must be a bool, got {_describe(self.eager_push)}")
        seconds("eager_push_rate", positive=True)
        seconds("eager_round_rate", positive=True)
        count("tree_resends", minimum=0, maximum=64)
        seconds("tree_ack_timeout", positive=True)
        count("broadcast_queue_limit", minimum=1)
        low, high = MAX_PACKET_SIZE_RANGE
        count("max_packet_size", minimum=low, maximum=high)
        seconds("push_pull_interval", positive=True)
        seconds("stream_timeout", positive=True)
        count("max_stream_frame", minimum=self.max_packet_size, maximum=_MAX_U32)
        seconds("tombstone_ttl", positive=True)
        seconds("max_clock_drift", positive=True)
        seconds("dead_node_reclaim_time", positive=False)
        seconds("death_grace", positive=False)
        count("max_records_per_owner", minimum=1)
        seconds("reconnect_interval", positive=True)
        seconds("reconnect_timeout", positive=False)
        self._check_label()

    def _seconds(self, name: str, *, positive: bool) -> None:
        """Check a real-valued field (seconds or a rate) and store it as ``float``."""
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: must be a number, got {_describe(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise ConfigError(f"{name}: must be finite, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{name}: must be finite, got {value!r}")
        if positive and not number > 0:
            raise ConfigError(f"{name}: must be positive, got {value!r}")
        if not positive and number < 0:
            raise ConfigError(f"{name}: must not be negative, got {value!r}")
        object.__setattr__(self, name, number)

    def _count(self, name: str, *, minimum: int, maximum: int | None = None) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: must be an int, got {_describe(value)}")
        if value < minimum:
            raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name}: must be at most {maximum}, got {value}")

    def _check_label(self) -> None:
        if not isinstance(self.label, str):
            raise ConfigError(f"label: must be a str, got {_describe(self.label)}")
        try:
            size = len(self.label.encode("utf-8"))
        except UnicodeEncodeError:
            raise ConfigError("label: is not encodable as UTF-8") from None
        if size > MAX_LABEL_BYTES:
            raise ConfigError(f"label: must be at most {MAX_LABEL_BYTES} UTF-8 bytes, got {size}")

    # -- construction --------------------------------------------------------

    @classmethod
    def lan(cls, **changes: Any) -> Self:
        """The LAN profile (memberlist's ``DefaultLANConfig``), with ``changes`` applied."""
        return cls._profile({}, changes)

    @classmethod
    def wan(cls, **changes: Any) -> Self:
        """The WAN profile (memberlist's ``DefaultWANConfig``), with ``changes`` applied."""
        return cls._profile(_WAN, changes)

    @classmethod
    def local(cls, **changes: Any) -> Self:
        """The local profile (memberlist's ``DefaultLocalConfig``), with ``changes`` applied."""
        return cls._profile(_LOCAL, changes)

    @classmethod
    def _profile(cls, base: Mapping[str, Any], changes: Mapping[str, Any]) -> Self:
        _check_names(changes)
        return cls(**{**base, **changes})

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied, validated as a whole.

        Raises:
            ConfigError: a name is not a field, or the result is invalid.
        """
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    # -- derived values ------------------------------------------------------

    @property
    def label_bytes(self) -> bytes:
        """``label`` encoded as UTF-8: the additional data of every sealed packet."""
        return self.label.encode("utf-8")

    def suspicion_timeout_bounds(self, n: int) -> tuple[float, float]:
        """The ``(min, max)`` suspicion timeout, in seconds, in a cluster of ``n`` members.

        ``min = suspicion_mult * max(1, log10 n) * probe_interval`` and
        ``max = suspicion_max_timeout_mult * min``. LAN, n = 100: (8 s, 48 s).
        """
        _check_n(n)
        scale = max(1.0, math.log10(n)) if n > 0 else 1.0
        low = self.suspicion_mult * scale * self.probe_interval
        return low, self.suspicion_max_timeout_mult * low

    def suspicion_confirmations(self, n: int) -> int:
        """Independent confirmations ``k`` that shrink a suspicion to its minimum.

        ``k = suspicion_mult - 2``, or 0 when the cluster is too small to supply
        them (``n - 2 < k``: the suspect and the suspecter do not count).
        """
        _check_n(n)
        k = max(0, self.suspicion_mult - 2)
        return 0 if n - 2 < k else k

    def retransmit_limit(self, n: int) -> int:
        """Transmissions of each broadcast in a cluster of ``n`` members.

        ``retransmit_mult * ceil(log10(n + 1))``: 0 for n = 0, LAN 4 for
        n in 1..9, 8 for 10..99, 12 for 100..999. Computed on integers
        (``ceil(log10(n + 1))`` is the number of decimal digits of ``n``).
        """
        _check_n(n)
        digits = len(str(n)) if n > 0 else 0
        return self.retransmit_mult * digits

    def push_pull_interval_for(self, n: int) -> float:
        """Seconds between push/pulls in a cluster of ``n`` members.

        ``push_pull_interval`` up to 32 members, then multiplied by
        ``ceil(log2 n - 5) + 1`` (memberlist's ``pushPullScale``): x2 up to 64
        members, x3 up to 128, x4 up to 256, ... Computed on integers.
        """
        _check_n(n)
        if n <= PUSH_PULL_SCALE_THRESHOLD:
            return self.push_pull_interval
        # ceil(log2(n / 32)) is the smallest m with 32 * 2**m >= n.
        groups = -(-n // PUSH_PULL_SCALE_THRESHOLD)
        return self.push_pull_interval * ((groups - 1).bit_length() + 1)

    def scaled_probe(self, awareness: int) -> tuple[float, float]:
        """``(probe_interval, probe_timeout)`` multiplied by ``awareness + 1``.

        ``awareness`` is the local-health score, 0 (healthy) to
        ``awareness_max_multiplier - 1``.

        Raises:
            ValueError: ``awareness`` is outside that range.
        """
        if isinstance(awareness, bool) or not isinstance(awareness, int):
            raise TypeError(f"awareness must be an int, not {type(awareness).__name__}")
        if not 0 <= awareness < self.awareness_max_multiplier:
            raise ValueError(
                f"awareness must be in 0..{self.awareness_max_multiplier - 1}, got {awareness}"
            )
        factor = awareness + 1
        return self.probe_interval * factor, self.probe_timeout * factor


def remaining_suspicion_time(
    confirmations: int, k: int, elapsed: float, min_timeout: float, max_timeout: float
) -> float:
    """Seconds left before a suspicion expires (Lifeguard LHA-Suspicion).

    The timeout starts at ``max_timeout`` and falls logarithmically towards
    ``min_timeout`` with each independent confirmation::

        timeout = max(min, max - (max - min) * log(c + 1) / log(k + 1))

    and the result is ``max(0, timeout - elapsed)``. With ``k == 0`` (no
    confirmations expected) the timeout is ``min_timeout``.

    Args:
        confirmations: independent confirmations ``c`` received so far.
        k: confirmations expected (:meth:`Config.suspicion_confirmations`).
        elapsed: seconds since the suspicion started.
        min_timeout: the lower bound (:meth:`Config.suspicion_timeout_bounds`).
        max_timeout: the upper bound.
    """
    if confirmations < 0 or k < 0:
        raise ValueError(f"confirmations and k must not be negative, got {confirmations}, {k}")
    if k == 0:
        timeout = min_timeout
    else:
        fraction = math.log(confirmations + 1) / math.log(k + 1)
        timeout = max(min_timeout, max_timeout - (max_timeout - min_timeout) * fraction)
    return max(0.0, timeout - elapsed)


_FIELDS = frozenset(f.name for f in dataclasses.fields(Config))

_WAN: Mapping[str, Any] = MappingProxyType(
    {
        "probe_interval": 5.0,
        "probe_timeout": 3.0,
        "gossip_interval": 0.5,
        "gossip_nodes": 4,
        "suspicion_mult": 6,
        "push_pull_interval": 60.0,
        "gossip_to_the_dead": 60.0,
        "stream_timeout": 30.0,
        "death_grace": 5.0,
        "tree_ack_timeout": 0.3,
    }
)

_LOCAL: Mapping[str, Any] = MappingProxyType(
    {
        "probe_timeout": 0.2,
        "gossip_interval": 0.1,
        "suspicion_mult": 3,
        "indirect_checks": 1,
        "retransmit_mult": 2,
        "push_pull_interval": 15.0,
        "gossip_to_the_dead": 15.0,
        "stream_timeout": 1.0,
        "reconnect_interval": 15.0,
        "tree_ack_timeout": 0.005,
    }
)


def _check_names(changes: Mapping[str, Any]) -> None:
    for name in changes:
        if name not in _FIELDS:
            raise ConfigError(f"{name}: not a Config field")


def _check_n(n: int) -> None:
    if n < 0:
        raise ValueError(f"member count must not be negative, got {n}")


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"
