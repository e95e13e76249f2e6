"""The SWIM + Lifeguard member table and every one of its transitions.

Like h11's ``_state.py``, everything that changes the member table lives in
this module: the node core (probe scheduling, ping / ping-req / ack / nack,
the dissemination queue, the codec) decodes a message, hands it to
:class:`Membership`, and queues whatever comes back. Pure: no IO, no clock
(time arrives as ``now``, monotonic seconds), randomness from an injected
:class:`random.Random`, so a run is a function of its inputs and seed.

Members and messages
====================

A :class:`Member` is an immutable snapshot: name, :class:`Address`,
incarnation, :class:`MemberState`, ``meta`` (opaque ``bytes``, like
memberlist's node meta; its size limit belongs to the codec) and
``state_changed_at``. The membership messages are :class:`Alive`,
:class:`Suspect`, :class:`Dead` and :class:`Leave` (:data:`Message`);
:meth:`Membership.receive` dispatches one to its handler.

Precedence (:data:`TRANSITIONS`, hashicorp/memberlist ``state.go``)
====================================================================

For a member other than this one, an incoming message with incarnation ``m``
against a record at incarnation ``r`` (``LOWER``/``EQUAL``/``HIGHER``/``BEYOND``
= ``m < r``/``m == r``/``m == r + 1``/``m > r + 1``):

* ``alive`` wins only with ``m > r``, whatever the state: a suspect or dead
  member comes back only by refuting with a higher incarnation.
* ``suspect`` turns an ALIVE record SUSPECT if ``m >= r`` and starts a
  suspicion; on a SUSPECT record it is a *confirmation* (and, if ``m > r``,
  raises the record's incarnation, keeping the timer). Ignored on DEAD/LEFT.
* ``dead`` turns ALIVE or SUSPECT into DEAD if ``m >= r``.
* ``leave`` turns ALIVE, SUSPECT *or DEAD* into LEFT if ``m >= r``: a member
  that left is not reported as failed, even where its death was heard first.
* anything older is ignored, so a replayed message changes nothing; messages
  about an unknown member are ignored, except ``alive`` (a join).
* ``suspect``, ``dead`` and ``leave`` ``BEYOND`` the record are ignored (and
  counted as ``accusations_out_of_range``): no honest accuser is more than one
  alive ahead of this table, and an accusation at an incarnation the member
  never announced could push it where it can no longer refute (a forged
  ``dead`` at 2**64 - 1). ``alive`` ``BEYOND`` is accepted: the member itself
  may have refuted many times while this table heard nothing.

Death grace (``config.death_grace``): a ``dead`` declared by another member
is not believed at once if this member has not been suspecting the accused
for ``death_grace`` seconds: it becomes (or stays) SUSPECT with a suspicion
that expires ``death_grace`` after it began (:meth:`Suspicion.doom
<gossipreg.core.suspicion.Suspicion.doom>`). A death declared on the far side
of a partition that has just healed crosses together with the suspicion
before it; the accused, reachable from this side, refutes within a few hops,
before its registrations leave any view here.

Leave is a message of its own. memberlist's convention, a ``dead`` whose
``from_member`` is the member itself, is accepted too (:meth:`on_dead`
treats it as :meth:`on_leave`).

About this member (:data:`SELF_TRANSITIONS`): a ``suspect``, ``dead`` or
``leave`` with ``own <= m <= own + 1`` is *refuted*: the local incarnation
jumps to ``max(own, m) + 1``, the returned :class:`Outcome` carries the
:class:`Alive` to broadcast, and local awareness gets ``+1``. One ``BEYOND``
(``m > own + 1``) is refuted *in place*, at ``own + 1``: every other member
ignored it, and jumping would let one forged message use up the incarnation
range. Only a push-pull state (:meth:`Membership.merge_remote`) makes the
incarnation jump past ``m``, which is how a restarted process learns what
its previous self reached. No refutation goes past :data:`MAX_INCARNATION`
(counted as ``incarnation_overflows``). An ``alive`` about this member is
refuted if ``m > own``, or ``m == own`` with different meta or epoch. An accusation
*older* than ``own`` comes from a member that missed the refutation and
would otherwise let its suspicion run out: the current alive is announced
again, unchanged, at most once per ``probe_interval`` per accuser (the node
core sends it to the accuser). Once this member has left
(:meth:`Membership.leave`) nothing about it is refuted.

Restarts
========

A restarted process starts at incarnation 0 while the cluster may remember
its old self at incarnation ``k`` (alive, suspect, dead or left). Other
members ignore its ``alive(0)``, but the push/pull of its join (see
:meth:`Membership.merge_remote`) shows it its old self at ``k``, which it
refutes with ``k + 1`` (as it does an ``alive`` of its old self heard by
gossip); that then beats the old record everywhere. No persistent state is
needed.

Name conflicts
==============

An ``alive`` for a known name at a *different* address may rebind the name
only if the record is not live and the incarnation is higher:

* record ALIVE or SUSPECT: never. The claim is dropped (not re-gossiped),
  a ``CONFLICT`` event (with both members) is queued and counted. The known
  member keeps its name until probes of *its* address fail and it is declared
  dead; a live duplicate therefore cannot steal the name or make it flap.
* record LEFT: if ``m > r``.
* record DEAD: if ``m > r`` and ``config.dead_node_reclaim_time`` is non-zero
  and has elapsed since the death; with 0 (the default, as in memberlist) the
  name stays bound until the dead member is reaped.

Otherwise it is a conflict. A higher incarnation is required because
``suspect``/``dead`` carry no address: only an incarnation above everything
said about the old binding keeps an old accusation from hitting the new one.
An ``alive`` about *this* member from another address is a conflict too; it
is not refuted (two live processes sharing a name would refute each other
forever).

Timers
======

:meth:`Membership.probe_failed` starts (or confirms) a suspicion sized for
``n`` = members not dead or left (Lifeguard's dynamic timeout, see
:mod:`gossipreg.core.suspicion`); suspect messages from other members confirm
it. :meth:`Membership.tick` declares DEAD the suspects whose deadline passed
(returning the :class:`Dead` messages to broadcast) and reaps DEAD and LEFT
members ``config.gossip_to_the_dead`` seconds after their state changed;
until then they remain gossip targets (:meth:`Membership.gossip_targets`).
:meth:`Membership.next_deadline` tells the driver when to call :meth:`tick`.
A reaped member's last record stays in a graveyard for
``config.tombstone_ttl`` (:meth:`Membership.graveyard`, shared in push-pulls):
an ``alive`` of it at an incarnation no higher than that is stale, so replays
of its old alives change nothing, and a restarted process under its name is
told that incarnation (as a death to refute) when it joins.

Events
======

:meth:`Membership.take_events` drains :class:`MemberEvent` values:
``JOINED`` (unknown, DEAD or LEFT -> ALIVE), ``UPDATED`` (an alive record's
address or meta changed, or its suspicion was refuted), ``SUSPECTED``,
``FAILED`` (-> DEAD), ``LEFT`` (-> LEFT), ``REAPED`` and ``CONFLICT``. The
node core maps FAILED/LEFT to :meth:`Catalog.owner_down`, JOINED to
:meth:`Catalog.owner_up` and REAPED to :meth:`Catalog.purge_owner`. Changes
to this member itself raise no events.

Driver contract (the node core)
===============================

* decoded gossip -> :meth:`Membership.receive` (or ``on_*``); queue
  ``outcome.broadcast``;
* push/pull state -> :meth:`Membership.merge_remote`; queue the broadcasts;
* probing: :meth:`Membership.next_probe_target` each protocol period
  (interval scaled by :attr:`Membership.awareness`); when a probe of a SUSPECT
  member is sent, piggyback ``Suspect(name, incarnation, local_name)`` (buddy
  system); apply :func:`gossipreg.core.awareness.probe_delta` to
  :attr:`Membership.awareness`; if no ack came, call :meth:`probe_failed`
  and queue its broadcast; helpers for ping-req from :meth:`random_members`;
* timers: sleep until :meth:`next_deadline`, then :meth:`tick` and queue;
* :meth:`leave` for the local change; drain
  :meth:`take_events` after each call.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import math
from collections.abc import Collection, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from random import Random
from types import MappingProxyType
from typing import NamedTuple

from .awareness import REFUTED, Awareness
from .config import Config
from .layered import LayeredDict, SortedOverlay
from .suspicion import Suspicion

__all__ = [
    "MAX_INCARNATION",
    "SELF_TRANSITIONS",
    "TRANSITIONS",
    "Action",
    "Address",
    "Alive",
    "Dead",
    "Decision",
    "EventKind",
    "Leave",
    "Member",
    "MemberEvent",
    "MemberState",
    "Membership",
    "MembershipStatistics",
    "Message",
    "MessageKind",
    "Order",
    "Outcome",
    "Suspect",
    "TableSnapshot",
]


# ----------------------------------------------------------------- records


class MemberState(enum.Enum):
    """A member's state in the local table."""

    # Hashed by identity, in C, rather than by Enum's hash(name) in Python: these
    # enums key the lookups made for every message (a member is its own only
    # instance, so equal means identical anyway; neither hash is stable across
    # processes, so nothing may depend on it).
    __hash__ = object.__hash__

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


_LIVE = frozenset({MemberState.ALIVE, MemberState.SUSPECT})
_GONE = frozenset({MemberState.DEAD, MemberState.LEFT})


class Address(NamedTuple):
    """Where a member receives datagrams and streams."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Member:
    """An immutable snapshot of one member's record."""

    name: str
    """Unique member name."""
    address: Address
    """Its advertised address."""
    incarnation: int
    """Incarnation number: only the member itself raises it (when refuting or updating)."""
    state: MemberState
    """Its state in this table."""
    meta: bytes = b""
    """Opaque application metadata (memberlist's node meta), bounded by the codec."""
    state_changed_at: float = 0.0
    """``now`` when :attr:`state` last changed in this table (monotonic seconds)."""
    epoch: int = 0
    """The hybrid-logical-clock stamp at which its process began (0: unknown). Records
    it owns stamped earlier were written by a previous process under its name."""


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Alive:
    """``name`` is alive at ``address`` with ``incarnation`` and ``meta`` (also a join)."""

    name: str
    incarnation: int
    address: Address
    meta: bytes = b""
    epoch: int = 0
    """The hybrid-logical-clock stamp at which the member's process began (see
    :attr:`Member.epoch`)."""
    signature: bytes = field(default=b"", compare=False)
    """The member's own signature over the other fields (member identities), or ``b""``."""
    certificate: bytes = field(default=b"", compare=False)
    """The member's certificate (DER) that signature verifies with, or ``b""``."""


@dataclass(frozen=True, slots=True)
class Suspect:
    """``from_member`` suspects ``name`` at ``incarnation``."""

    name: str
    incarnation: int
    from_member: str


@dataclass(frozen=True, slots=True)
class Dead:
    """``from_member`` declares ``name`` dead at ``incarnation``."""

    name: str
    incarnation: int
    from_member: str


@dataclass(frozen=True, slots=True)
class Leave:
    """``name`` leaves the cluster gracefully at ``incarnation``."""

    name: str
    incarnation: int
    signature: bytes = field(default=b"", compare=False)
    """The leaving member's own signature (member identities), or ``b""``."""


Message = Alive | Suspect | Dead | Leave
"""A membership message, as the codec decodes and the dissemination queue carries it."""


# ---------------------------------------------------------------- the table


class MessageKind(enum.Enum):
    """The kind of a membership message."""

    __hash__ = object.__hash__  # by identity, as MemberState

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEAVE = "leave"


class Order(enum.Enum):
    """An incoming incarnation compared with the record's."""

    __hash__ = object.__hash__  # by identity, as MemberState

    LOWER = "lower"
    EQUAL = "equal"
    HIGHER = "higher"
    """One above the record's: as far as an honest accuser can be ahead of this table."""
    BEYOND = "beyond"
    """More than one above: an accusation at an incarnation the member never announced here."""


class Decision(enum.Enum):
    """What an incoming message does to a record."""

    __hash__ = object.__hash__  # by identity, as MemberState

    IGNORE = "ignore"
    """Stale or no news: nothing changes, nothing is re-gossiped."""
    BECOME_ALIVE = "become_alive"
    BECOME_SUSPECT = "become_suspect"
    """Start a suspicion."""
    CONFIRM = "confirm"
    """Confirm the running suspicion (and adopt a higher incarnation)."""
    BECOME_DEAD = "become_dead"
    BECOME_LEFT = "become_left"
    REFUTE = "refute"
    """About this member: raise the incarnation and broadcast alive."""
    REFUTE_IF_DIFFERENT = "refute_if_different"
    """About this member at its own incarnation: refute if the meta differs."""
    REFUTE_IN_PLACE = "refute_in_place"
    """About this member, beyond anything it announced: refute at its own
    incarnation + 1 rather than jumping past the message's (which no other
    member accepted). A push-pull state may still make it jump: that is how a
    restarted process learns its previous incarnation."""


def _row(
    lower: Decision, equal: Decision, higher: Decision, beyond: Decision | None = None
) -> Mapping[Order, Decision]:
    return MappingProxyType(
        {Order.LOWER: lower, Order.EQUAL: equal, Order.HIGHER: higher, Order.BEYOND: beyond or higher}
    )


_S, _K = MessageKind, MemberState
_I = Decision.IGNORE
_A, _SU, _C = Decision.BECOME_ALIVE, Decision.BECOME_SUSPECT, Decision.CONFIRM
_D, _L, _R = Decision.BECOME_DEAD, Decision.BECOME_LEFT, Decision.REFUTE

TRANSITIONS: Mapping[tuple[MessageKind, MemberState], Mapping[Order, Decision]] = MappingProxyType(
    {
        # (message, record state): (lower, equal, higher incarnation)
        (_S.ALIVE, _K.ALIVE): _row(_I, _I, _A),
        (_S.ALIVE, _K.SUSPECT): _row(_I, _I, _A),
        (_S.ALIVE, _K.DEAD): _row(_I, _I, _A),
        (_S.ALIVE, _K.LEFT): _row(_I, _I, _A),
        # Accusations (and leaves) reach at most one past what this table holds.
        (_S.SUSPECT, _K.ALIVE): _row(_I, _SU, _SU, _I),
        (_S.SUSPECT, _K.SUSPECT): _row(_I, _C, _C, _I),
        (_S.SUSPECT, _K.DEAD): _row(_I, _I, _I),
        (_S.SUSPECT, _K.LEFT): _row(_I, _I, _I),
        (_S.DEAD, _K.ALIVE): _row(_I, _D, _D, _I),
        (_S.DEAD, _K.SUSPECT): _row(_I, _D, _D, _I),
        (_S.DEAD, _K.DEAD): _row(_I, _I, _I),
        (_S.DEAD, _K.LEFT): _row(_I, _I, _I),
        (_S.LEAVE, _K.ALIVE): _row(_I, _L, _L, _I),
        (_S.LEAVE, _K.SUSPECT): _row(_I, _L, _L, _I),
        (_S.LEAVE, _K.DEAD): _row(_I, _L, _L, _I),
        (_S.LEAVE, _K.LEFT): _row(_I, _I, _I),
    }
)
"""Messages about *another* member, for a record in each state (an ``alive``
at a different address first passes the name-conflict rule)."""

# TRANSITIONS of a suspect (index False) and a dead (True), in plain dicts: the
# fast path of :meth:`Membership.accusation_is_stale` reads it for every accusation.
_ACCUSATIONS: tuple[dict[MemberState, dict[Order, Decision]], ...] = tuple(
    {state: dict(TRANSITIONS[(kind, state)]) for state in MemberState} for kind in (_S.SUSPECT, _S.DEAD)
)

SELF_TRANSITIONS: Mapping[MessageKind, Mapping[Order, Decision]] = MappingProxyType(
    {
        _S.ALIVE: _row(_I, Decision.REFUTE_IF_DIFFERENT, _R),
        _S.SUSPECT: _row(_I, _R, _R, Decision.REFUTE_IN_PLACE),
        _S.DEAD: _row(_I, _R, _R, Decision.REFUTE_IN_PLACE),
        _S.LEAVE: _row(_I, _R, _R, Decision.REFUTE_IN_PLACE),
    }
)
"""Messages about *this* member while it has not left (after :meth:`Membership.leave`
every message about it is ignored)."""


def _order(incoming: int, current: int) -> Order:
    if incoming < current:
        return Order.LOWER
    if incoming == current:
        return Order.EQUAL
    return Order.HIGHER if incoming == current + 1 else Order.BEYOND


#: The largest incarnation (the codec's uint64); a refutation never goes past it.
MAX_INCARNATION = (1 << 64) - 1


# ------------------------------------------------------------------ results


class Action(enum.Enum):
    """What a handler did."""

    __hash__ = object.__hash__  # by identity, as MemberState

    IGNORED = "ignored"
    """Stale, duplicate, or about an unknown member: no change."""
    APPLIED = "applied"
    """The record changed; the message is news and is re-gossiped."""
    CONFIRMED = "confirmed"
    """Counted as a new suspicion confirmation; re-gossiped."""
    REFUTED = "refuted"
    """About this member: refuted; ``broadcast`` holds the new :class:`Alive`."""
    CONFLICT = "conflict"
    """An alive for a known name at another address was refused."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of handling one message or local event."""

    action: Action
    member: Member | None
    """The record after handling (None if the member is unknown)."""
    broadcast: tuple[Message, ...] = ()
    """Messages to queue for gossip: the incoming one if it was news, a refutation, or a new suspicion."""

    @property
    def regossip(self) -> bool:
        """Whether the incoming message carried new information and should be re-gossiped."""
        return self.action in (Action.APPLIED, Action.CONFIRMED)


class EventKind(enum.Enum):
    """Kinds of :class:`MemberEvent`."""

    __hash__ = object.__hash__  # by identity, as MemberState

    JOINED = "joined"
    UPDATED = "updated"
    SUSPECTED = "suspected"
    FAILED = "failed"
    LEFT = "left"
    REAPED = "reaped"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """A change of the member table, for the node core and watchers."""

    kind: EventKind
    member: Member
    """The record after the change (for REAPED, the last one; for CONFLICT, the one kept)."""
    previous_state: MemberState | None = None
    """The state before the change (None for a member that was unknown)."""
    conflicting: Member | None = None
    """For CONFLICT: the refused claimant (its state is ALIVE, as claimed)."""


@dataclass(frozen=True, slots=True)
class MembershipStatistics:
    """Counters and current sizes, from :meth:`Membership.statistics`."""

    alive: int
    suspect: int
    dead: int
    left: int
    incarnation: int
    """This member's incarnation."""
    awareness: int
    """The local-health score."""
    joins: int
    suspicions: int
    """ALIVE -> SUSPECT transitions."""
    confirmations: int
    """Independent suspicion confirmations counted."""
    suspicions_refuted: int
    """SUSPECT -> ALIVE transitions."""
    suspicion_timeouts: int
    """Suspicions that expired here (this member declared the death)."""
    deaths: int
    """-> DEAD transitions, whoever declared them."""
    deaths_refuted: int
    """DEAD -> ALIVE: a false death refuted, or a restart."""
    leaves: int
    reaped: int
    refutations: int
    """Accusations about this member that it refuted."""
    conflicts: int
    stale: int
    """Messages ignored as old or as no news."""
    accusations_out_of_range: int
    """Suspicions, deaths and leaves about another member ignored because their
    incarnation is more than one past this table's (see :class:`Order`)."""
    incarnation_overflows: int
    """Accusations this member could not refute: its incarnation is the largest there is."""
    deaths_deferred: int
    """Deaths declared elsewhere taken as a suspicion with a grace to refute (see
    :meth:`Membership.on_dead`)."""
    reassertions: int
    """This member's alive announced again, unchanged, because an accuser had missed
    its refutation (an accusation about it at an older incarnation)."""


@dataclass(slots=True)
class _Counters:
    joins: int = 0
    suspicions: int = 0
    confirmations: int = 0
    suspicions_refuted: int = 0
    suspicion_timeouts: int = 0
    deaths: int = 0
    deaths_refuted: int = 0
    leaves: int = 0
    reaped: int = 0
    refutations: int = 0
    conflicts: int = 0
    stale: int = 0
    accusations_out_of_range: int = 0
    incarnation_overflows: int = 0
    deaths_deferred: int = 0
    reassertions: int = 0


# --------------------------------------------------------------- membership


@dataclass(slots=True)
class _ProbeRound:
    """One pass over the members, in an order shuffled lazily.

    The pass visits the names of ``snapshot`` (the live members when it began)
    and then ``extra`` (members that joined during it), as positions
    ``0 .. size - 1``, in the order of a Fisher-Yates shuffle drawn one step at
    a time: step ``t`` swaps position ``t`` with a random one in ``[t, size)``.
    Only the displaced positions are stored (``swaps``), so a pass costs
    O(1) to begin and O(probes so far) in memory, not O(n): a joiner appended
    at the end is equally likely to come at any place among those not yet
    visited.
    """

    snapshot: SortedOverlay = field(default_factory=SortedOverlay)
    extra: list[str] = field(default_factory=list)
    size: int = 0
    index: int = 0
    swaps: dict[int, int] = field(default_factory=dict)
    visited: set[str] = field(default_factory=set)
    """Names of ``snapshot`` visited in this pass."""
    pending_extra: set[str] = field(default_factory=set)
    """Names of ``extra`` not visited yet."""

    def draw(self, rng: Random) -> str:
        t = self.index
        j = rng.randrange(t, self.size)
        swaps = self.swaps
        value = swaps.pop(t, t)
        if j != t:
            value, swaps[j] = swaps.get(j, j), value
        self.index = t + 1
        snap = self.snapshot
        if value < len(snap):
            name = snap[value]
            self.visited.add(name)
        else:
            name = self.extra[value - len(snap)]
            self.pending_extra.discard(name)
        return name

    def pending(self, name: str) -> bool:
        return name in self.pending_extra or (name in self.snapshot and name not in self.visited)


def _member_hash(m: Member) -> int:
    return _state_hash(m.name, m.incarnation, m.state)


@functools.lru_cache(maxsize=1 << 16)
def _state_hash(name: str, incarnation: int, state: MemberState) -> int:
    # Cached: a change hashes the old record and the new one, and under heavy loss
    # every member makes the same changes (the same suspicions and refutations).
    data = f"{name}\x00{incarnation}\x00{state.value}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _changed(old: Member, incarnation: int, state: MemberState, state_changed_at: float) -> Member:
    """``old`` at another incarnation and state (``dataclasses.replace`` without its cost)."""
    return Member(old.name, old.address, incarnation, state, old.meta, state_changed_at, old.epoch)


class TableSnapshot:
    """An immutable member table that many :class:`Membership` instances share.

    A warm start for simulations of large clusters: every simulated member
    :meth:`adopts <Membership.adopt>` the same snapshot instead of joining,
    and stores only where its table comes to differ from it (see
    :mod:`gossipreg.core.layered`). 10,000 members then cost 10,000 shared
    records plus small deltas, instead of 10^8 private entries.

    Args:
        members: ALIVE records, one per name.

    Raises:
        ValueError: a record is not ALIVE, or a name repeats.
    """

    __slots__ = ("counts", "fingerprint", "live", "members", "owners_up")

    def __init__(self, members: Iterable[Member]) -> None:
        table: dict[str, Member] = {}
        fp = 0
        for m in sorted(members, key=lambda m: m.name):
            if m.state is not MemberState.ALIVE:
                raise ValueError(f"snapshot records must be ALIVE, not {m.state.value}: {m.name!r}")
            if m.name in table:
                raise ValueError(f"duplicate member {m.name!r}")
            table[m.name] = m
            fp ^= _member_hash(m)
        self.members: Mapping[str, Member] = MappingProxyType(table)
        """name -> record, read-only."""
        self.live: tuple[str, ...] = tuple(table)
        """The sorted names (all ALIVE)."""
        self.owners_up: Mapping[str, bool] = MappingProxyType(dict.fromkeys(table, True))
        """name -> True: the owner liveness a catalog holds after a JOINED event
        about each (see :meth:`Catalog.adopt_owners_up
        <gossipreg.core.catalog.Catalog.adopt_owners_up>`)."""
        self.fingerprint = fp
        """:meth:`Membership.fingerprint` of exactly these records."""
        self.counts: Mapping[MemberState, int] = MappingProxyType(
            {s: (len(table) if s is MemberState.ALIVE else 0) for s in MemberState}
        )
        """Records per state."""

    def __len__(self) -> int:
        return len(self.live)


class Membership:
    """The member table of one member, and every transition of it.

    Args:
        local_name: this member's name.
        local_address: where this member listens.
        config: timing parameters (suspicion bounds, ``gossip_to_the_dead``,
            ``dead_node_reclaim_time``, ``awareness_max_multiplier``).
        rng: the only source of randomness (probe order, random members).
        now: monotonic seconds at creation.
        incarnation: this member's starting incarnation (0 for a new process).
        meta: this member's metadata.
        epoch: the hybrid-logical-clock stamp at which this process began,
            announced in its alive (see :attr:`Member.epoch`).
    """

    def __init__(
        self,
        local_name: str,
        local_address: tuple[str, int],
        config: Config,
        rng: Random,
        now: float,
        *,
        incarnation: int = 0,
        meta: bytes = b"",
        epoch: int = 0,
    ) -> None:
        _check_incarnation(incarnation)
        self._name = local_name
        self._config = config
        self._rng = rng
        self.awareness = Awareness(config.awareness_max_multiplier)
        """Local health (Lifeguard); refutations add +1, the node core applies probe deltas."""
        me = Member(
            local_name, Address(*local_address), incarnation, MemberState.ALIVE, bytes(meta), now, epoch
        )
        self._members: MutableMapping[str, Member] = {local_name: me}
        self._fp = _member_hash(me)  # fingerprint(), kept up to date by _put/_pop
        self._counts = dict.fromkeys(MemberState, 0)
        self._counts[MemberState.ALIVE] = 1
        self._suspicions: dict[str, Suspicion] = {}
        # The earliest deadline of ``_suspicions`` and of ``_gone`` (None: to be found
        # again), kept so that next_deadline and tick, asked after every datagram,
        # do not scan every running suspicion (hundreds each under heavy loss).
        self._suspicions_due: float | None = math.inf
        self._gone_due: float | None = math.inf
        self._suspicion_sizes: tuple[int, int, float, float] | None = None  # see _new_suspicion
        self._events: list[MemberEvent] = []
        self._counters = _Counters()
        self._probe = _ProbeRound()
        # Indexes kept in step with ``_members`` by ``_transition`` (other members only),
        # so that the per-datagram and per-timer queries cost O(1) or O(k), not O(n).
        self._live = SortedOverlay()  # sorted names of ALIVE or SUSPECT members
        self._gone: dict[str, float] = {}  # DEAD or LEFT member -> reap time
        # Reaped members' last records, kept ``config.tombstone_ttl`` (name -> (record,
        # forget time)): a replayed alive of a reaped member is recognised as old.
        self._graveyard: dict[str, tuple[Member, float]] = {}
        self._reasserted: dict[str, float] = {}  # accuser -> when (see _reassert)
        self._heard: dict[str, float] = {}  # live member -> when last heard directly (heard_from)

    # ------------------------------------------------------------ queries

    @property
    def local_name(self) -> str:
        """This member's name."""
        return self._name

    @property
    def local(self) -> Member:
        """This member's own record."""
        return self._members[self._name]

    @property
    def config(self) -> Config:
        """The configuration given at construction."""
        return self._config

    def get(self, name: str) -> Member | None:
        """The record of ``name``, or None if unknown (or reaped)."""
        return self._members.get(name)

    def members(self) -> tuple[Member, ...]:
        """Every known member, this one and dead/left ones included, sorted by name."""
        return tuple(self._members[name] for name in sorted(self._members))

    @property
    def live_names(self) -> SortedOverlay:
        """Sorted names of the ALIVE and SUSPECT members other than this one.

        The table's own index, returned without a copy: do not modify it.
        """
        return self._live

    def fingerprint(self) -> int:
        """A 64-bit summary of the table: the XOR over every member of a hash of
        ``(name, incarnation, state)``. Two tables with the same members in the
        same states have the same fingerprint (a push-pull pre-check). Kept up
        to date on every change, so reading it costs nothing."""
        return self._fp

    def adopt(self, snapshot: TableSnapshot, now: float) -> None:
        """Start from ``snapshot``'s records, shared rather than copied (a warm start).

        The table becomes the snapshot's records plus this member's own (which
        replaces the snapshot's record of this name, if any), as if
        :meth:`merge_remote` had merged the snapshot, but without copying it and
        without an event per member: nothing is queued. The records are taken
        as they are, ``state_changed_at`` included (``merge_remote`` would stamp
        them ``now``): build the snapshot from records stamped ``now`` for the
        same table. Later changes are
        stored as this table's own differences from the snapshot. The
        simulator's warm bootstrap of large clusters uses it.

        Raises:
            ValueError: this table already knows another member (or a reaped one).
        """
        if self.has_peers() or self._graveyard or self._suspicions or len(self._members) != 1:
            raise ValueError("adopt: only a table that knows no other member can adopt a snapshot")
        me = self.local
        self._members = LayeredDict(snapshot.members)
        self._fp = snapshot.fingerprint
        self._counts = dict(snapshot.counts)
        own = snapshot.members.get(self._name)
        if own is not None:
            self._fp ^= _member_hash(own)
            self._counts[own.state] -= 1
            del self._members[self._name]
        self._members[self._name] = me
        self._fp ^= _member_hash(me)
        self._counts[me.state] += 1
        self._live = SortedOverlay(snapshot.live)
        self._live.discard(self._name)
        self._counters.joins += len(self._live)
        # A pass not yet begun starts from the live members anyway (see _add_probe_target).

    def has_peers(self) -> bool:
        """Whether any other member is known (live, or dead/left and not yet reaped)."""
        return bool(self._live or self._gone)

    def alive_count(self) -> int:
        """Members that are ALIVE or SUSPECT, this one included (the ``n`` of the formulas)."""
        return len(self._live) + (1 if self.local.state in _LIVE else 0)

    def suspicion(self, name: str) -> Suspicion | None:
        """The running suspicion of ``name``, if it is SUSPECT."""
        return self._suspicions.get(name)

    def local_alive(self) -> Alive:
        """This member's current :class:`Alive` (for joins and push/pull)."""
        me = self.local
        return Alive(me.name, me.incarnation, me.address, me.meta, me.epoch)

    def statistics(self) -> MembershipStatistics:
        """A frozen snapshot of the counters."""
        sizes = self._counts
        c = self._counters
        return MembershipStatistics(
            alive=sizes[MemberState.ALIVE],
            suspect=sizes[MemberState.SUSPECT],
            dead=sizes[MemberState.DEAD],
            left=sizes[MemberState.LEFT],
            incarnation=self.local.incarnation,
            awareness=self.awareness.score,
            joins=c.joins,
            suspicions=c.suspicions,
            confirmations=c.confirmations,
            suspicions_refuted=c.suspicions_refuted,
            suspicion_timeouts=c.suspicion_timeouts,
            deaths=c.deaths,
            deaths_refuted=c.deaths_refuted,
            leaves=c.leaves,
            reaped=c.reaped,
            refutations=c.refutations,
            conflicts=c.conflicts,
            stale=c.stale,
            accusations_out_of_range=c.accusations_out_of_range,
            incarnation_overflows=c.incarnation_overflows,
            deaths_deferred=c.deaths_deferred,
            reassertions=c.reassertions,
        )

    def take_events(self) -> list[MemberEvent]:
        """Return and clear the events queued since the last call, in order."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------ incoming gossip

    def receive(self, message: Message, now: float) -> Outcome:
        """Dispatch a decoded membership message to its handler."""
        # (isinstance and attributes: cheaper than class patterns, for every message)
        if isinstance(message, Suspect):
            return self.on_suspect(message.name, message.incarnation, message.from_member, now)
        if isinstance(message, Alive):
            m = message
            return self.on_alive(m.name, m.incarnation, m.address, m.meta, now, epoch=m.epoch)
        if isinstance(message, Dead):
            return self.on_dead(message.name, message.incarnation, message.from_member, now)
        if isinstance(message, Leave):
            return self.on_leave(message.name, message.incarnation, now)
        raise TypeError(f"not a membership message: {message!r}")  # pragma: no cover

    def on_alive(
        self,
        name: str,
        incarnation: int,
        address: tuple[str, int],
        meta: bytes,
        now: float,
        *,
        epoch: int = 0,
    ) -> Outcome:
        """``name`` is alive at ``address`` (a join, a refutation or an update)."""
        _check_incarnation(incarnation)
        at = address if type(address) is Address else Address(*address)
        msg = Alive(name, incarnation, at, bytes(meta), epoch)
        old = self._members.get(name)
        if name == self._name:
            assert old is not None
            return self._about_self(_S.ALIVE, incarnation, now, alive=msg)
        if old is None:
            grave = self._graveyard.get(name)
            if grave is not None:
                if incarnation <= grave[0].incarnation:
                    return self._stale(None)  # a replay, or a restart that must refute first
                del self._graveyard[name]
            new = Member(name, msg.address, incarnation, MemberState.ALIVE, msg.meta, now, epoch)
            self._transition(None, new)
            return Outcome(Action.APPLIED, new, (msg,))
        if msg.address != old.address and not self._may_rebind(old, incarnation, now):
            return self._conflict(old, msg, now)
        decision = TRANSITIONS[(_S.ALIVE, old.state)][_order(incarnation, old.incarnation)]
        if decision is Decision.IGNORE:
            return self._stale(old)
        assert decision is Decision.BECOME_ALIVE
        new = Member(
            name,
            msg.address,
            incarnation,
            MemberState.ALIVE,
            msg.meta,
            old.state_changed_at if old.state is MemberState.ALIVE else now,
            epoch,
        )
        self._transition(old, new)
        return Outcome(Action.APPLIED, new, (msg,))

    def alive_is_stale(self, name: str, incarnation: int, host: object, port: object) -> bool:
        """Whether an ``alive`` is certainly stale, judged before it is fully decoded.

        True (and counted as stale) for another member already known at the
        same address with an incarnation at least as high: :meth:`on_alive`
        would ignore it. Anything else (this member, a new member, another
        address, a higher incarnation) returns False and takes the full path.
        A fast path for the flood of repeated alives while many members join.
        """
        old = self._members.get(name)
        if (
            old is None
            or name == self._name
            or incarnation > old.incarnation
            or old.address.host != host
            or old.address.port != port
        ):
            return False
        self._counters.stale += 1
        return True

    def accusation_is_stale(
        self, name: str, incarnation: int, from_member: str, dead: bool, now: float
    ) -> bool:
        """Whether a ``suspect`` (or, with ``dead``, a ``dead``) is certainly stale,
        judged before it is fully decoded.

        True (and counted as stale) for another known member when
        :meth:`on_suspect` or :meth:`on_dead` would ignore the message: an
        older incarnation, a member already dead or left, or (for a suspicion)
        a repeat at the suspicion's incarnation that would not count as a new
        confirmation. Anything else (this member, an unknown member, a leave
        encoded as ``dead`` from itself, anything that changes state or counts)
        returns False and takes the full path. A fast path for the repeated
        accusations gossip delivers while many members are suspected at once.
        """
        old = self._members.get(name)
        if old is None or name == self._name or (dead and from_member == name):
            return False
        order = _order(incarnation, old.incarnation)
        decision = _ACCUSATIONS[dead][old.state][order]
        if decision is Decision.IGNORE and order is Order.BEYOND:
            self._counters.accusations_out_of_range += 1
            return True
        if decision is Decision.CONFIRM:
            # A repeat at the same incarnation changes nothing unless it counts.
            stale = incarnation == old.incarnation and not self._suspicions[name].would_count(
                from_member, now
            )
        elif decision is Decision.BECOME_DEAD and old.state is MemberState.SUSPECT:
            # A death within the grace changes nothing once one has been deferred.
            stale = (
                incarnation == old.incarnation
                and self._grace_end(old, now) is not None
                and self._suspicions[name].doomed
            )
        else:
            stale = decision is Decision.IGNORE
        if stale:
            self._counters.stale += 1
        return stale

    def on_suspect(self, name: str, incarnation: int, from_member: str, now: float) -> Outcome:
        """``from_member`` suspects ``name`` at ``incarnation``."""
        _check_incarnation(incarnation)
        old = self._members.get(name)
        if name == self._name:
            return self._about_self(_S.SUSPECT, incarnation, now, accuser=from_member)
        if old is None:
            return self._stale(None)
        msg = Suspect(name, incarnation, from_member)
        order = _order(incarnation, old.incarnation)
        decision = TRANSITIONS[(_S.SUSPECT, old.state)][order]
        if decision is Decision.BECOME_SUSPECT:
            new = _changed(old, incarnation, MemberState.SUSPECT, now)
            self._transition(old, new)
            self._suspect(name, self._new_suspicion(from_member, now))
            return Outcome(Action.APPLIED, new, (msg,))
        if decision is Decision.CONFIRM:
            s = self._suspicions[name]
            counted = s.confirm(from_member, now)
            self._lowered(s.deadline())
            if counted:
                self._counters.confirmations += 1
            if incarnation > old.incarnation:
                new = _changed(old, incarnation, old.state, old.state_changed_at)
                self._transition(old, new)
                return Outcome(Action.APPLIED, new, (msg,))
            if counted:
                return Outcome(Action.CONFIRMED, old, (msg,))
        return self._ignore(old, order)

    def on_dead(self, name: str, incarnation: int, from_member: str, now: float) -> Outcome:
        """``from_member`` declares ``name`` dead.

        ``from_member == name`` is memberlist's encoding of a graceful leave: it
        is handled by :meth:`on_leave`, and the outcome's ``broadcast`` then
        holds the equivalent :class:`Leave`.
        """
        if from_member == name:
            return self.on_leave(name, incarnation, now)
        _check_incarnation(incarnation)
        old = self._members.get(name)
        if name == self._name:
            return self._about_self(_S.DEAD, incarnation, now, accuser=from_member)
        if old is None:
            return self._stale(None)
        order = _order(incarnation, old.incarnation)
        decision = TRANSITIONS[(_S.DEAD, old.state)][order]
        if decision is Decision.IGNORE:
            return self._ignore(old, order)
        assert decision is Decision.BECOME_DEAD
        grace_end = self._grace_end(old, now)
        if grace_end is not None:
            return self._defer_death(old, incarnation, from_member, grace_end, now)
        new = _changed(old, incarnation, MemberState.DEAD, now)
        self._transition(old, new)
        return Outcome(Action.APPLIED, new, (Dead(name, incarnation, from_member),))

    def _grace_end(self, old: Member, now: float) -> float | None:
        """Until when a death declared elsewhere is not believed yet (None: believe it now).

        A member this one does not suspect, or has suspected for less than
        ``config.death_grace``, gets until ``death_grace`` after that
        suspicion began to refute: a death declared on the far side of a
        partition that has just healed arrives together with the suspicion
        before it, and the accused, reachable from here, refutes both within a
        few hops.
        """
        grace = self._config.death_grace
        if grace <= 0:
            return None
        s = self._suspicions.get(old.name) if old.state is MemberState.SUSPECT else None
        start = now if s is None else s.started_at
        heard = self._heard.get(old.name)
        if heard is not None and now - heard < grace:
            # It spoke to this member just now (a partition healed under a long suspicion).
            start = max(start, heard)
        end = start + grace
        return end if now < end else None

    def hold_suspicions(self, until: float) -> None:
        """Let no running suspicion expire before ``until`` (see :meth:`Suspicion.hold
        <gossipreg.core.suspicion.Suspicion.hold>`): a member held dead spoke, so a
        partition has likely healed and the suspects beyond it need a moment to refute."""
        for s in self._suspicions.values():
            s.hold(until)
        self._suspicions_due = None

    def hold_suspicion(self, name: str, until: float) -> None:
        """Let the suspicion of ``name`` (if any) not expire before ``until``: it spoke."""
        s = self._suspicions.get(name)
        if s is not None:
            self._raising(s.deadline())
            s.hold(until)

    def heard_from(self, name: str, now: float) -> None:
        """``name`` (another member, ALIVE or SUSPECT here) was heard from directly at ``now``.

        The node core calls it for its probe's ack and for a ping or ping-req
        from ``name``. A death declared elsewhere within ``death_grace`` of
        that is deferred like one about a member not suspected (see
        :meth:`on_dead`), however old the suspicion here.
        """
        m = self._members.get(name)
        if m is not None and name != self._name and m.state in _LIVE and self._config.death_grace > 0:
            self._heard[name] = now

    def _defer_death(
        self, old: Member, incarnation: int, from_member: str, grace_end: float, now: float
    ) -> Outcome:
        """Take a death declared elsewhere as a suspicion that expires at ``grace_end``."""
        msg = Dead(old.name, incarnation, from_member)
        new = old
        if old.state is MemberState.ALIVE:
            new = _changed(old, incarnation, MemberState.SUSPECT, now)
            self._transition(old, new)
            self._suspect(old.name, self._new_suspicion(from_member, now))
        elif incarnation > old.incarnation:
            new = _changed(old, incarnation, old.state, old.state_changed_at)
            self._transition(old, new)
        s = self._suspicions[old.name]
        first = s.doom(grace_end)
        self._lowered(s.deadline())
        if first:
            self._counters.deaths_deferred += 1
        if new is not old:
            return Outcome(Action.APPLIED, new, (msg,))
        if first:
            return Outcome(Action.CONFIRMED, new, (msg,))
        return self._stale(old)

    def on_leave(self, name: str, incarnation: int, now: float) -> Outcome:
        """``name`` left the cluster gracefully at ``incarnation``."""
        _check_incarnation(incarnation)
        old = self._members.get(name)
        if name == self._name:
            return self._about_self(_S.LEAVE, incarnation, now)
        if old is None:
            return self._stale(None)
        order = _order(incarnation, old.incarnation)
        decision = TRANSITIONS[(_S.LEAVE, old.state)][order]
        if decision is Decision.IGNORE:
            return self._ignore(old, order)
        assert decision is Decision.BECOME_LEFT
        new = _changed(old, incarnation, MemberState.LEFT, now)
        self._transition(old, new)
        return Outcome(Action.APPLIED, new, (Leave(name, incarnation),))

    def merge_remote(self, remote: Iterable[Member], now: float) -> list[Outcome]:
        """Merge a peer's table from a push/pull (memberlist's ``mergeState``).

        ALIVE records are handled as :class:`Alive`; SUSPECT *and DEAD* ones as a
        :class:`Suspect` from this member (a remote death is only suspected
        here, so the member gets its full chance to refute); LEFT ones as
        :class:`Leave`. ``state_changed_at`` of the remote records is ignored.
        """
        outcomes = []
        for r in remote:
            if r.state in _GONE and r.name != self._name and r.name not in self._members:
                # A member we never knew, or already reaped: remember its death so
                # replays of its old alives stay harmless here too.
                self._bury(replace(r, state_changed_at=now), now)
                outcomes.append(Outcome(Action.IGNORED, None))
                continue
            if r.name == self._name and r.state is not MemberState.ALIVE:
                # The peer's record of this member: a restarted process learns here which
                # incarnation its previous self reached, so it may jump past it.
                _check_incarnation(r.incarnation)
                kind = _S.LEAVE if r.state is MemberState.LEFT else _S.SUSPECT
                outcomes.append(self._about_self(kind, r.incarnation, now, trusted=True))
            elif r.state is MemberState.ALIVE:
                outcomes.append(self.on_alive(r.name, r.incarnation, r.address, r.meta, now, epoch=r.epoch))
            elif r.state is MemberState.LEFT:
                outcomes.append(self.on_leave(r.name, r.incarnation, now))
            else:
                outcomes.append(self.on_suspect(r.name, r.incarnation, self._name, now))
        return outcomes

    # ------------------------------------------------------------ local events

    def probe_failed(self, name: str, now: float) -> Outcome:
        """A probe of ``name`` got no ack (direct or indirect): suspect it.

        Starts a suspicion of an ALIVE member (the outcome's ``broadcast`` holds
        the :class:`Suspect` to gossip), or confirms a SUSPECT member's
        suspicion started by another member. Ignored for DEAD, LEFT or unknown
        members.

        Raises:
            ValueError: ``name`` is this member.
        """
        if name == self._name:
            raise ValueError("a member does not probe itself")
        m = self._members.get(name)
        if m is None or m.state not in _LIVE:
            return Outcome(Action.IGNORED, m)
        return self.on_suspect(name, m.incarnation, self._name, now)

    def tick(self, now: float) -> tuple[Dead, ...]:
        """Expire suspicions into DEAD and reap old DEAD/LEFT members.

        Returns:
            The :class:`Dead` messages (from this member) to broadcast, one per
            suspicion that expired, in deadline order.
        """
        expired = []
        if self._suspicions and now >= self._next_suspicion_deadline():
            expired = sorted((s.deadline(), name) for name, s in self._suspicions.items() if s.expired(now))
        dead = []
        for _, name in expired:
            old = self._members[name]
            new = _changed(old, old.incarnation, MemberState.DEAD, now)
            self._transition(old, new)
            self._counters.suspicion_timeouts += 1
            dead.append(Dead(name, old.incarnation, self._name))
        reaped = []
        if self._gone and now >= self._next_reap():
            reaped = sorted(n for n, at in self._gone.items() if now >= at)
        for name in reaped:
            m = self._pop(name)
            self._ungone(name)
            self._bury(m, now)
            self._counters.reaped += 1
            self._events.append(MemberEvent(EventKind.REAPED, m, m.state))
        if self._graveyard:
            for name in [n for n, (_, until) in self._graveyard.items() if now >= until]:
                del self._graveyard[name]
        return tuple(dead)

    def _bury(self, m: Member, now: float) -> None:
        old = self._graveyard.get(m.name)
        if old is None or old[0].incarnation <= m.incarnation:
            self._graveyard[m.name] = (m, now + self._config.tombstone_ttl)

    def graveyard(self) -> tuple[Member, ...]:
        """Reaped members still remembered (DEAD or LEFT, with their last incarnation).

        A reaped member is forgotten by the table, but its last incarnation is
        kept for ``config.tombstone_ttl`` seconds and shared in push-pulls, so a
        replayed ``alive`` of it is recognised as old everywhere, and a
        restarted process under its name learns which incarnation to refute.
        """
        return tuple(self._graveyard[name][0] for name in sorted(self._graveyard))

    def next_deadline(self) -> float | None:
        """The earliest suspicion expiry or reap time, or None if nothing is pending."""
        if not self._suspicions and not self._gone:
            return None
        return min(self._next_suspicion_deadline(), self._next_reap())

    def _next_suspicion_deadline(self) -> float:
        due = self._suspicions_due
        if due is None:
            due = min((s.deadline() for s in self._suspicions.values()), default=math.inf)
            self._suspicions_due = due
        return due

    def _next_reap(self) -> float:
        due = self._gone_due
        if due is None:
            due = self._gone_due = min(self._gone.values(), default=math.inf)
        return due

    def _new_suspicion(self, from_member: str, now: float) -> Suspicion:
        """:func:`~gossipreg.core.suspicion.suspicion_for` this table's live count, its sizes
        computed once per count."""
        n = self.alive_count()
        sizes = self._suspicion_sizes
        if sizes is None or sizes[0] != n:
            low, high = self._config.suspicion_timeout_bounds(n)
            sizes = self._suspicion_sizes = (n, self._config.suspicion_confirmations(n), low, high)
        return Suspicion(from_member, sizes[1], sizes[2], sizes[3], now)

    def _suspect(self, name: str, s: Suspicion) -> None:
        """Start the suspicion ``s`` of ``name``."""
        old = self._suspicions.get(name)
        if old is not None:
            self._raising(old.deadline())
        self._suspicions[name] = s
        self._lowered(s.deadline())

    def _lowered(self, deadline: float) -> None:
        """A suspicion now expires at ``deadline`` (begun, or brought forward)."""
        due = self._suspicions_due
        if due is not None and deadline < due:
            self._suspicions_due = deadline

    def _raising(self, deadline: float) -> None:
        """A suspicion that expires at ``deadline`` is about to end or be put off."""
        due = self._suspicions_due
        if due is not None and deadline <= due:
            self._suspicions_due = None

    def _set_gone(self, name: str, reap_at: float) -> None:
        self._ungone(name)
        self._gone[name] = reap_at
        due = self._gone_due
        if due is not None and reap_at < due:
            self._gone_due = reap_at

    def _ungone(self, name: str) -> None:
        at = self._gone.pop(name, None)
        due = self._gone_due
        if at is not None and due is not None and at <= due:
            self._gone_due = None

    def leave(self, now: float) -> Leave:
        """Leave gracefully: this member becomes LEFT; returns the :class:`Leave` to broadcast.

        Afterwards nothing about this member is refuted. Idempotent. A member
        that left does not rejoin: make a new :class:`Membership`.
        """
        me = self.local
        if me.state is not MemberState.LEFT:
            self._put(replace(me, state=MemberState.LEFT, state_changed_at=now))
        return Leave(self._name, me.incarnation)

    # ------------------------------------------------------------ target selection

    def next_probe_target(self) -> Member | None:
        """The next member to probe: round-robin over a shuffled list.

        Each pass visits every ALIVE or SUSPECT member other than this one once,
        in a uniformly random order drawn with the injected rng (lazily, one
        Fisher-Yates step per probe, so a pass over n members costs O(1) to
        begin); a member that joins during a pass is visited at a random place
        among those not yet visited. None if there is no one to probe.
        """
        for _ in range(2):
            probe = self._probe
            while probe.index < probe.size:
                name = probe.draw(self._rng)
                m = self._members.get(name)
                if m is not None and m.state in _LIVE and name != self._name:
                    return m
            snapshot = self._live.copy()
            self._probe = _ProbeRound(snapshot, size=len(snapshot))
            if not snapshot:
                return None
        return None  # pragma: no cover - a fresh pass always has an eligible first entry

    def random_members(
        self,
        k: int,
        *,
        exclude: Collection[str] = (),
        include_dead_within: float | None = None,
        now: float | None = None,
    ) -> list[Member]:
        """Up to ``k`` distinct random members other than this one.

        ALIVE and SUSPECT members are candidates; DEAD and LEFT ones too if
        their state changed at most ``include_dead_within`` seconds before
        ``now``. Use it for ping-req helpers (``exclude=[target]``).

        Raises:
            ValueError: ``include_dead_within`` is given without ``now``.
        """
        if include_dead_within is not None and now is None:
            raise ValueError("include_dead_within needs now")
        live = self._live
        extra: list[str] = []
        if include_dead_within is not None and now is not None:
            extra = sorted(
                n for n in self._gone if now - self._members[n].state_changed_at <= include_dead_within
            )
        total = len(live) + len(extra)
        k = max(k, 0)
        # Sample indexes of the (virtual) concatenation: O(k), not O(n).
        skip = sum(1 for n in exclude if n in self._members and n != self._name)
        picked = self._rng.sample(range(total), min(total, k + skip))
        out = []
        for i in picked:
            name = live[i] if i < len(live) else extra[i - len(live)]
            if name in exclude:
                continue
            out.append(self._members[name])
            if len(out) == k:
                break
        return out

    def gossip_targets(self, k: int, now: float) -> list[Member]:
        """Up to ``k`` random gossip targets: live members, and dead or left ones
        within ``config.gossip_to_the_dead`` seconds (so they can learn and refute)."""
        return self.random_members(k, include_dead_within=self._config.gossip_to_the_dead, now=now)

    # ------------------------------------------------------------ internals

    def _about_self(
        self,
        kind: MessageKind,
        incarnation: int,
        now: float,
        alive: Alive | None = None,
        *,
        trusted: bool = False,
        accuser: str | None = None,
    ) -> Outcome:
        me = self.local
        if me.state is MemberState.LEFT:
            return self._stale(me)
        if alive is not None and alive.address != me.address:
            return self._conflict(me, alive, now)
        decision = SELF_TRANSITIONS[kind][_order(incarnation, me.incarnation)]
        if decision is Decision.REFUTE_IF_DIFFERENT:
            assert alive is not None
            # The same incarnation with other meta, or another process's epoch (a previous
            # process under this name), is not this member's current alive: refute it.
            same = alive.meta == me.meta and alive.epoch == me.epoch
            decision = Decision.IGNORE if same else Decision.REFUTE
        if decision is Decision.REFUTE_IN_PLACE and trusted:
            decision = Decision.REFUTE
        if decision is Decision.IGNORE:
            if accuser is not None and incarnation < me.incarnation:
                return self._reassert(accuser, now)
            return self._stale(me)
        target = me.incarnation + 1
        if decision is Decision.REFUTE:
            target = max(me.incarnation, incarnation) + 1
        if target > MAX_INCARNATION:
            # Cannot go past the message: say at least that this member is alive, if it can.
            self._counters.incarnation_overflows += 1
            target = me.incarnation + 1
            if target > MAX_INCARNATION:
                return Outcome(Action.IGNORED, me)
        new = _changed(me, target, me.state, me.state_changed_at)
        self._put(new)
        self.awareness.apply_delta(REFUTED)
        self._counters.refutations += 1
        return Outcome(Action.REFUTED, new, (self.local_alive(),))

    def _reassert(self, accuser: str, now: float) -> Outcome:
        """An accusation about this member at an incarnation it has already refuted.

        The accuser missed the refutation and will not hear another (the
        accusation is old news to everyone else), so its suspicion would run
        out and it would declare this member dead on its own. Announce the
        current alive again, unchanged (at most once per ``probe_interval`` for
        each accuser): the node core sends it to the accuser and gossips it.
        """
        self._counters.stale += 1
        me = self.local
        last = self._reasserted.get(accuser)
        if last is not None and now - last < self._config.probe_interval:
            return Outcome(Action.IGNORED, me)
        if len(self._reasserted) >= 1024:
            horizon = now - self._config.probe_interval
            self._reasserted = {a: t for a, t in self._reasserted.items() if t >= horizon}
        self._reasserted[accuser] = now
        self._counters.reassertions += 1
        return Outcome(Action.IGNORED, me, (self.local_alive(),))

    def _may_rebind(self, old: Member, incarnation: int, now: float) -> bool:
        if incarnation <= old.incarnation:
            return False
        if old.state is MemberState.LEFT:
            return True
        if old.state is MemberState.DEAD:
            reclaim = self._config.dead_node_reclaim_time
            return reclaim > 0 and now - old.state_changed_at >= reclaim
        return False

    def _conflict(self, kept: Member, claim: Alive, now: float) -> Outcome:
        self._counters.conflicts += 1
        other = Member(claim.name, claim.address, claim.incarnation, MemberState.ALIVE, claim.meta, now)
        self._events.append(MemberEvent(EventKind.CONFLICT, kept, kept.state, other))
        return Outcome(Action.CONFLICT, kept)

    def _stale(self, member: Member | None) -> Outcome:
        self._counters.stale += 1
        return Outcome(Action.IGNORED, member)

    def _ignore(self, member: Member, order: Order) -> Outcome:
        if order is Order.BEYOND:
            self._counters.accusations_out_of_range += 1
            return Outcome(Action.IGNORED, member)
        return self._stale(member)

    def _reap_at(self, m: Member) -> float:
        return m.state_changed_at + self._config.gossip_to_the_dead

    def _transition(self, old: Member | None, new: Member) -> None:
        """Store ``new`` (another member's record) and queue the event the change implies."""
        self._put(new)
        was_live = old is not None and old.state in _LIVE
        if new.state in _LIVE:
            self._ungone(new.name)
            if not was_live:
                self._live.add(new.name)
        else:
            self._set_gone(new.name, self._reap_at(new))
            if was_live:
                self._live.discard(new.name)
        if new.state is not MemberState.SUSPECT:
            s = self._suspicions.pop(new.name, None)
            if s is not None:
                self._raising(s.deadline())
        if new.state in _GONE:
            self._heard.pop(new.name, None)
        prev = old.state if old is not None else None
        c = self._counters
        kind: EventKind | None = None
        if new.state is MemberState.ALIVE:
            if old is None or prev in _GONE:
                kind = EventKind.JOINED
                c.joins += 1
                if prev is MemberState.DEAD:
                    c.deaths_refuted += 1
                self._add_probe_target(new.name)
            elif prev is MemberState.SUSPECT:
                kind = EventKind.UPDATED
                c.suspicions_refuted += 1
            elif old.address != new.address or old.meta != new.meta or old.epoch != new.epoch:
                kind = EventKind.UPDATED
        elif new.state is MemberState.SUSPECT:
            if prev is not MemberState.SUSPECT:
                kind = EventKind.SUSPECTED
                c.suspicions += 1
        elif new.state is MemberState.DEAD:
            if prev is not MemberState.DEAD:
                kind = EventKind.FAILED
                c.deaths += 1
        elif prev is not MemberState.LEFT:
            kind = EventKind.LEFT
            c.leaves += 1
        if kind is not None:
            self._events.append(MemberEvent(kind, new, prev))

    def _put(self, new: Member) -> None:
        """Store a record, keeping the fingerprint and the per-state counts."""
        old = self._members.get(new.name)
        self._members[new.name] = new
        if old is not None:
            if old.incarnation == new.incarnation and old.state is new.state:
                return
            self._fp ^= _member_hash(old)
            self._counts[old.state] -= 1
        self._fp ^= _member_hash(new)
        self._counts[new.state] += 1

    def _pop(self, name: str) -> Member:
        m = self._members.pop(name)
        self._fp ^= _member_hash(m)
        self._counts[m.state] -= 1
        return m

    def _add_probe_target(self, name: str) -> None:
        """A member joined: visit it in the current pass if it is not due anyway.

        It joins the positions not yet visited, so it is probed at a random
        place among them. With no pass under way (or the pass finished) there
        is nothing to do: the next pass begins from the live members.
        """
        probe = self._probe
        if probe.index >= probe.size or probe.pending(name):
            return
        probe.extra.append(name)
        probe.pending_extra.add(name)
        probe.size += 1


def _check_incarnation(incarnation: int) -> None:
    if isinstance(incarnation, bool) or not isinstance(incarnation, int) or incarnation < 0:
        raise ValueError(f"incarnation must be a non-negative int, got {incarnation!r}")
