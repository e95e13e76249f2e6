"""The node core: one gossip member as a pure state machine.

:class:`NodeCore` ties membership (SWIM + Lifeguard), dissemination (the
transmit-limited broadcast queue, gossip rounds and eager push), the catalog
and anti-entropy together. It performs no IO and reads no clock; a driver
(the trio runtime or the simulator) feeds it and carries out what it asks:

* inputs: :meth:`NodeCore.receive_datagram`, :meth:`NodeCore.receive_stream`,
  :meth:`NodeCore.stream_failed`, :meth:`NodeCore.tick` (at
  :meth:`NodeCore.next_deadline`), and the local calls :meth:`~NodeCore.join`,
  :meth:`~NodeCore.leave`, :meth:`~NodeCore.register`,
  :meth:`~NodeCore.deregister`;
* outputs: :meth:`NodeCore.take_outbox` (:class:`SendDatagram`,
  :class:`SendStream`, :class:`CloseStream`) and :meth:`NodeCore.take_events`
  (membership, catalog and join events).

Datagrams
    Every datagram is ``[PROTOCOL_VERSION][msgpack array of messages]``,
    sealed with the keyring's primary key (AES-GCM, the cluster label as
    additional data) unless the member runs ``insecure``. A received datagram
    is authenticated before a byte of it is decoded; failures are counted and
    dropped. Each message in a datagram is decoded on its own, so one bad
    message does not discard its neighbours. Protocol messages (pings, acks)
    are topped up with queued broadcasts up to ``max_packet_size``.

Probing (SWIM with Lifeguard)
    Every protocol period (``probe_interval`` scaled by local health) the
    next member of a shuffled round-robin is pinged. No ack within
    ``probe_timeout`` (also scaled) → ``indirect_checks`` random members are
    asked to ping it (ping-req) and to send a nack if they get no answer. No
    ack by the end of the period → the member is suspected; local health
    rises by one plus one per missing nack. A probe of a suspect carries the
    suspicion, so the suspect can refute at once (the buddy system).

Dissemination
    Updates new to this member (membership messages and catalog records) go
    into the broadcast queue and ride on every datagram; a gossip round every
    ``gossip_interval`` sends them to ``gossip_nodes`` random members. With
    ``eager_push`` a fresh update is also sent at once to ``gossip_nodes``
    members, rate-limited per destination (``eager_push_rate``) and in
    rounds per second (``eager_round_rate``), and an update this member
    *originates* (a registration, its alive after joining, its leave; not a
    refutation) goes down a broadcast tree over the live
    members with ``gossip_nodes`` children per level (``docs/protocol.md``),
    which every member forwards at once. Spread time then approaches
    ``log_(gossip_nodes+1) n`` hop latencies instead of hops x
    ``gossip_interval``. Each tree datagram is acknowledged by its child and
    sent again every ``tree_ack_timeout`` until it is (at most
    ``tree_resends`` times; a repeat is acked but not passed on twice), so a
    lost one delays its subtree by an ack timeout, not a gossip round; random
    gossip repairs whatever the tree still misses.

Reconnect and re-merge
    Every ``reconnect_interval`` one random member declared dead within
    ``reconnect_timeout`` is sent an anti-entropy check (serf's reconnect),
    and every ``probe_interval`` one is sent a ping, each with probability
    ``failed / alive`` (about one per failed member per interval
    cluster-wide). Any authenticated datagram from the address of a member
    held dead (a ping, its ack, gossip) starts a push-pull with it at once,
    at most once per ``probe_interval``: two sides of a partition, each
    believing the other dead, merge within about a second of the heal.

Anti-entropy (push-pull, over streams)
    Every ``push_pull_interval`` (scaled with the cluster size) and at join,
    a four-message exchange with one member: INIT (members, catalog digest) →
    REPLY (members, catalog offer) → RECONCILE (records the responder lacks,
    hashes of those the initiator wants) → FETCH (those records). Streams are
    reliable and of any size; each message is sealed like a datagram, under
    a label distinct from the datagram label. A periodic exchange first
    compares 64-bit summaries of both member tables and catalogs (CHECK →
    CHECK_REPLY) and stops there when they match, so an idle cluster's
    anti-entropy costs two small messages per exchange, whatever its size.

Owner liveness
    When membership declares a member dead or left, its registrations leave
    the view (:meth:`Catalog.owner_down`); when it is reaped they are dropped.
    When it is alive again its stored registrations are what it held before,
    which it may have changed while away: they stay hidden (in *resync*,
    :meth:`Catalog.owner_up`) until a push-pull this member opens with it
    afterwards completes (the responder's FETCH returns its current version
    of every key the initiator pushed, owner-authority corrections
    included), or, failing that, for ``3 * stream_timeout``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from random import Random
from typing import Any

from . import chunks, codec, pushpull
from .broadcast import BroadcastQueue
from .catalog import Catalog, CatalogEvent, Key, MergeResult, Record, key_hash
from .codec import Ack, Cert, CertWant, Message, Nack, Ping, PingReq, RecordMsg, Tree
from .config import Config
from .crypto import OVERHEAD, Keyring
from .errors import AuthenticationError, ConfigError, DecodeError
from .hlc import HybridClock
from .identity import ALIVE_DOMAIN, LEAVE_DOMAIN, RECORD_DOMAIN, Identity, TrustStore
from .membership import (
    Action,
    Address,
    Alive,
    Dead,
    EventKind,
    Leave,
    Member,
    MemberEvent,
    Membership,
    MemberState,
    Suspect,
    TableSnapshot,
)
from .model import Service, shown
from .observe import HistogramSnapshot, Observations
from .pushpull import Exchange, Role, Step, role_of
from .tree import RoundTrips, child_ranks, next_wait, resend_span

__all__ = [
    "CloseStream",
    "JoinResult",
    "NodeCore",
    "NodeEvent",
    "RegistrationConflict",
    "SendDatagram",
    "SendStream",
    "StreamId",
    "TrafficRefused",
]

StreamId = tuple[str, int]
"""A stream (conversation) id: ``("out", n)`` for streams this member opens,
any other tag for streams the driver accepted (the driver chooses those)."""


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """Send ``data`` to ``address`` over the datagram transport."""

    address: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class SendStream:
    """Send ``data`` as one message on stream ``stream``; open it to ``address`` if new."""

    stream: StreamId
    address: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseStream:
    """Close stream ``stream``: this member is done with it."""

    stream: StreamId


Outgoing = SendDatagram | SendStream | CloseStream


@dataclass(frozen=True, slots=True)
class JoinResult:
    """The outcome of a join attempt through one seed."""

    address: Address
    ok: bool
    reason: str = ""
    #: The seed refused for a reason that retrying will not change (another
    #: cluster key or label, plaintext against sealed, not a gossip port).
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class RegistrationConflict:
    """Two members register the same (service, version, node id).

    The newer registration is shown everywhere; the other owner keeps its own
    and re-asserts it when the shown one is deregistered, or its owner dies or
    leaves. Drivers log it as a warning.
    """

    key: tuple[str, str, str]
    """``(service, version, node id)``."""
    other: str
    """The other owner."""
    ours_shown: bool
    """Whether this member's registration is the one shown."""


@dataclass(frozen=True, slots=True)
class TrafficRefused:
    """Traffic of one kind was refused: the first after a quiet period.

    Emitted at once for the first occurrence, then at most once per
    :data:`NOTICE_INTERVAL` seconds per cause, so a flood cannot flood the
    log; the counter of the same name counts every occurrence. Drivers log it
    as a warning.
    """

    cause: str
    """The counter that moved: ``auth_failures``, ``plaintext_rejected``,
    ``sealed_received_while_insecure``, ``decode_errors`` or ``records_rejected_drift``."""
    count: int
    """Occurrences since the previous event of this cause (this one included)."""
    address: Address
    """Where the latest one came from."""


NodeEvent = MemberEvent | CatalogEvent | JoinResult | RegistrationConflict | TrafficRefused
"""Everything :meth:`NodeCore.take_events` yields."""


@dataclass(slots=True)
class _Probe:
    target: str
    started: float
    timeout_at: float
    period_end: float
    sent_at: dict[int, float]  # seq of each ping sent (re-pings too) -> when
    wait: float  # how long the last ping waits for its ack before the next (Config.probe_resends)
    resend_at: float  # when the next ping goes; inf when no more will
    indirect: bool = False
    req_seq: int = -1  # of the ping-reqs to helpers, and of their nacks and relayed acks
    helpers: frozenset[str] = frozenset()
    nacks: set[str] = field(default_factory=set)  # helpers whose nack arrived


@dataclass(slots=True)
class _Relay:
    """A ping-req this member is carrying out for ``source``."""

    source_seq: int
    source_address: Address
    nack_at: float | None  # when to nack if no ack came by then; None: not asked, or sent
    deadline: float  # forget the relay: a later ack is not forwarded


@dataclass(slots=True)
class _TreeSend:
    """A broadcast-tree datagram awaiting its child's ack (``Config.tree_resends``)."""

    child: str
    address: Address
    root: str  # the tree's root and this datagram's hop count, for each copy's marker
    hops: int
    updates: list[bytes]  # sent again as they are, behind a marker naming the copy
    due: float  # when to send it again if no ack came
    wait: float  # how long the latest copy waits for its ack (tree.next_wait)
    sent_at: list[float]  # when each copy was sent: an ack names its copy, a round trip


@dataclass(slots=True)
class _Resync:
    """An owner back from down whose records stay hidden until a push-pull with it completes."""

    address: Address
    next_try: float
    give_up_at: float
    after_stream: int
    """Only a push-pull opened after the resync began (a higher stream number) ends it:
    one opened before may not have exchanged this owner's records."""


#: The node core's own counters (see :meth:`NodeCore.statistics`); all start at 0.
_COUNTER_NAMES = (
    "datagrams_sent", "datagrams_received", "bytes_sent", "bytes_received",
    "auth_failures", "plaintext_rejected", "sealed_received_while_insecure", "decode_errors",
    "pings_received", "pings_misdirected", "ping_reqs_received", "ping_reqs_sent",
    "probes_sent", "probes_acked", "probes_failed", "probe_resends", "nacks_sent", "nacks_received",
    "tree_datagrams", "tree_acks_received", "tree_resends", "tree_unacked", "tree_duplicates",
    "reconnect_attempts", "reconnect_pings", "remerges_started",
    "owner_resyncs", "owner_resyncs_abandoned", "stale_skipped", "push_pull_checks",
    "push_pull_checks_matched",
    "eager_pushes", "eager_rounds_deferred", "gossip_datagrams", "records_rejected_drift",
    "records_too_large_for_gossip",
    "stream_messages_sent", "stream_messages_received", "stream_bytes_sent", "stream_bytes_received",
    "push_pulls_started", "push_pulls_answered", "push_pulls_completed", "push_pulls_failed",
    "stream_messages_too_large",
    "stream_refusals_sent",
    "stream_refusals_received",
    "identity_unsigned", "identity_unknown_signer", "identity_bad_signature", "identity_bad_certificate",
    "identity_certificates_asked", "identity_certificates_sent", "identity_pending_dropped",
)


@dataclass(slots=True)
class _Counters:
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTER_NAMES, 0))

    def inc(self, name: str, n: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + n


#: Seconds between two :class:`TrafficRefused` events of the same cause.
NOTICE_INTERVAL = 60.0
#: Refusals (:func:`~gossipreg.core.chunks.refusal`) a member writes per second at
#: most, on average (bursts of as many): beyond, a refused stream is just closed.
REFUSALS_PER_SECOND = 10.0
#: Message types that are updates (gossiped, and forwarded down broadcast trees).
_UPDATE_TYPES = frozenset({codec.ALIVE, codec.SUSPECT, codec.DEAD, codec.LEAVE, codec.RECORD})
#: Tolerance for comparing times computed along different paths (float rounding).
_EPSILON = 1e-9
#: Member identities: signers with statements waiting for their certificate, and statements each.
_MAX_PENDING_SIGNERS = 256
_MAX_PENDING_PER_SIGNER = 16
#: Most signatures of this member's own records kept (cleared when full).
_MAX_OWN_SIGNATURES = 65536
#: Most members remembered as reconnect candidates.
_MAX_RECONNECT_CANDIDATES = 4096
#: Tree repair: most tree datagrams awaiting an ack (the oldest is given up beyond),
#: and most (sender, seq) pairs of received tree datagrams remembered to pass on once.
_MAX_TREE_UNACKED = 4096
_MAX_TREE_SEEN = 16384
_MAX_RTTS = 16384
# A tree datagram's seq: this flag (above any probe seq), a per-member counter, and in
# the low bits the copy (0 for the first send, then each re-send's number), so an ack
# names the copy it answers and gives a round trip even for a re-sent datagram.
_TREE_SEQ_FLAG = 1 << 62
_TREE_COPY_BITS = 7  # tree_resends is at most 64
_TREE_COPY_MASK = (1 << _TREE_COPY_BITS) - 1
#: The largest Tree marker's extra bytes for its seq (a msgpack uint64).
_TREE_SEQ_BYTES = 9


class NodeCore:
    """One member of a gossipreg cluster, without IO.

    Args:
        name: this member's unique name.
        address: the address other members reach it at (advertised).
        config: protocol parameters.
        rng: the only source of randomness.
        wall_clock: seconds since the epoch (``time.time`` in production); used
            only for hybrid-logical-clock stamps and certificate validity.
        now: monotonic seconds at creation.
        keyring: the cluster keyring; required unless ``insecure``.
        insecure: send and accept plaintext. An explicit opt-in.
        meta: this member's metadata bytes (at most ``codec.MAX_META``).
        incarnation: starting incarnation (0 for a new process).
        identity: this member's certificate and key (member identities, opt-in):
            it signs its records, tombstones and alives with it.
        trust: the cluster CA with the certificates admitted so far; with
            ``identity``, records are accepted only signed by their owner and
            alives only signed by the member they announce.

    Raises:
        ConfigError: neither a keyring nor ``insecure``, or both; only one of
            ``identity`` and ``trust``; an identity for another name, or not
            valid now under ``trust``.
    """

    def __init__(
        self,
        name: str,
        address: tuple[str, int],
        *,
        config: Config,
        rng: Random,
        wall_clock: Callable[[], float],
        now: float,
        keyring: Keyring | None = None,
        insecure: bool = False,
        meta: bytes = b"",
        incarnation: int = 0,
        identity: Identity | None = None,
        trust: TrustStore | None = None,
    ) -> None:
        if (identity is None) != (trust is None):
            raise ConfigError("identity: member identities need both an identity and a trust store")
        if identity is not None and trust is not None:
            if identity.name != name:
                raise ConfigError(f"identity: the certificate is {identity.name!r}'s, not {name!r}'s")
            trust.admit_own(identity, wall_clock())
        self.identity = identity
        self.trust = trust
        self._wall = wall_clock
        # Signatures of this member's own statements, by what they sign.
        self._own_record_sigs: dict[tuple[Key, int, bool], bytes] = {}
        self._own_alive: Alive | None = None
        # The latest verified alive of each member, sent as its proof in push-pull states.
        self._alive_proofs: dict[str, Alive] = {}
        # Statements waiting for their signer's certificate (asked of their sender), by signer,
        # and when each certificate was last asked for.
        self._pending_certs: dict[str, list[Message]] = {}
        self._cert_asked: dict[str, float] = {}
        if keyring is None and not insecure:
            raise ConfigError("keyring: a cluster keyring is required unless insecure=True")
        if keyring is not None and insecure:
            raise ConfigError("insecure: cannot be combined with a keyring")
        if len(meta) > codec.MAX_META:
            raise ConfigError(f"meta: at most {codec.MAX_META} bytes")
        self.name = name
        self.address = Address(*address)
        self.config = config
        self.keyring = keyring
        self._rng = rng
        self._label = config.label_bytes
        self._stream_label = self._label + chunks.STREAM_LABEL_SUFFIX
        clock = HybridClock(wall_clock, config.max_clock_drift)
        # This process's epoch: records under this name stamped before it are a previous
        # process's, which other members then stop showing at once (Catalog.owner_epoch).
        self.membership = Membership(
            name, self.address, config, rng, now, incarnation=incarnation, meta=meta, epoch=clock.now()
        )
        self.catalog = Catalog(
            name,
            clock,
            tombstone_ttl=config.tombstone_ttl,
            convergence_bound=min(300.0, config.tombstone_ttl / 2),
            # Only members membership reports alive (JOINED -> owner_up) are shown: a
            # joiner must not show the stored records of a member that died before it came.
            owners_up_by_default=False,
            max_records_per_owner=config.max_records_per_owner,
        )
        self._queue = BroadcastQueue(config.broadcast_queue_limit)
        self._outbox: list[Outgoing] = []
        self._events: list[NodeEvent] = []
        self._counters = _Counters()
        self._observed = Observations()
        # Per cause: when the last TrafficRefused went out, and how many since.
        self._notices: dict[str, tuple[float, int]] = {}
        self._from = self.address  # the sender of the datagram or stream message being handled
        # Per open stream: chunks sent, and (chunks received, the partial message).
        self._chunks_out: dict[StreamId, int] = {}
        self._chunks_in: dict[StreamId, tuple[int, bytearray]] = {}
        self._seq = 0
        self._stream_seq = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._pushpulls: dict[StreamId, Exchange] = {}
        self._eager_last: dict[str, float] = {}
        self._eager_tokens = config.eager_round_rate
        self._new_member = False  # a member unknown until now joined in this entry point
        self._eager_refilled = now
        self._fresh = False
        # Updates this member originated, to send down its own broadcast tree.
        self._tree_pending: list[bytes] = []
        # Tree repair: datagrams sent down a tree awaiting their ack, by seq; and the
        # tree datagrams received lately, (sender address, seq) -> forget at.
        self._tree_sends: dict[int, _TreeSend] = {}  # by seq of the first copy
        self._tree_counter = 0
        self._tree_seen: dict[tuple[Address, int], float] = {}
        # Round trips per member, from the acks of tree datagrams (the tree repair's
        # timeouts) and, apart, of probe pings (Config.probe_resends).
        self._tree_rtts = RoundTrips(config.tree_ack_timeout, _MAX_RTTS)
        self._probe_rtts = RoundTrips(config.tree_ack_timeout, _MAX_RTTS)
        self._tree_resend_span = resend_span(
            config.tree_ack_timeout, config.tree_resends, config.probe_interval
        )
        # Members declared dead, as reconnect candidates: name -> (address, since).
        self._failed: dict[str, tuple[Address, float]] = {}
        self._failed_at: dict[Address, str] = {}  # the same members by address
        self._suspect_at: dict[Address, str] = {}  # members held SUSPECT, by address
        self._last_heard = now  # when an authenticated datagram last arrived
        self._refusal_tokens = REFUSALS_PER_SECOND  # token bucket of refusals to write
        self._refusal_at = now
        self._next_reconnect = now + rng.uniform(0.5, 1.0) * config.reconnect_interval
        self._next_reconnect_ping = now + rng.uniform(0, config.probe_interval)
        # Push-pulls begun because a member held dead spoke (address -> when), rate-limited.
        self._reached: dict[Address, float] = {}
        # Owners back from down, in resync (see Catalog.owner_up).
        self._resync: dict[str, _Resync] = {}
        self._resync_due = math.inf
        self._left = False
        # Start staggered so members created together do not probe in lockstep.
        self._next_probe = now + rng.uniform(0, config.probe_interval)
        self._next_gossip = now + rng.uniform(0, config.gossip_interval)
        self._gossip_promised = False  # whether next_deadline asked the driver to wake for it
        self._next_push_pull = now + rng.uniform(0.5, 1.0) * config.push_pull_interval
        self._last_check = -math.inf  # when the last periodic (or early) check began
        self._now = now
        # Announce ourselves: our alive rides on the first datagrams we send.
        self._queue_message(self.membership.local_alive())

    # ================================================================ queries

    @property
    def left(self) -> bool:
        """Whether this member has left the cluster."""
        return self._left

    def members(self) -> tuple[Member, ...]:
        """Every known member, this one included, sorted by name."""
        return self.membership.members()

    def get_service(self, name: str) -> list[Service]:
        """The local view of ``name`` (see :meth:`Catalog.get_service`)."""
        return self.catalog.get_service(name)

    def list_services(self) -> list[Service]:
        """The local view of all services, without nodes."""
        return self.catalog.list_services()

    @property
    def last_heard(self) -> float:
        """When (``now``) an authenticated datagram last arrived from another member;
        the creation time until one does."""
        return self._last_heard

    def statistics(self) -> dict[str, int]:
        """Counters: packets, bytes, failures, protocol and catalog activity.

        Every key is present from the start (0 until something happens):

        * traffic: ``datagrams_sent``, ``datagrams_received``, ``bytes_sent``,
          ``bytes_received``, ``stream_messages_sent``, ``stream_messages_received``,
          ``stream_bytes_sent``, ``stream_bytes_received``;
        * rejected input: ``auth_failures`` (wrong key or label, tampered),
          ``plaintext_rejected`` (plaintext to a sealed member),
          ``sealed_received_while_insecure``, ``decode_errors`` (per bad
          datagram, message or stream message), ``stale_skipped`` (updates
          judged already known before decoding), ``pings_misdirected`` (a ping
          for another member's name), ``records_rejected_drift``,
          ``stream_messages_too_large`` (a stream message over
          ``Config.max_stream_frame``, reassembled from authenticated chunks),
          ``stream_refusals_sent`` / ``stream_refusals_received`` (refusals
          saying why a stream's first frame was not accepted: another key or
          label, plaintext against sealed; at most ``REFUSALS_PER_SECOND``),
          and with member identities ``identity_unsigned`` (a record, alive or
          member state that needs its signer's signature and has none),
          ``identity_unknown_signer`` (a statement whose signer's certificate is
          not known here yet: asked of its sender, ``identity_certificates_asked``,
          the statement waits, and is dropped past the bound,
          ``identity_pending_dropped``), ``identity_certificates_sent`` (answers
          to such requests), ``identity_bad_signature``, ``identity_bad_certificate``
          (not of the cluster CA, expired, or for another name),
          ``incarnation_overflows`` (an accusation this member could not refute
          because its incarnation would pass the largest encodable one);
        * probing: ``probes_sent``, ``probes_acked``, ``probes_failed``,
          ``probe_resends`` (pings sent again within a probe, its ack overdue),
          ``pings_received``, ``ping_reqs_sent``, ``ping_reqs_received``,
          ``nacks_sent``, ``nacks_received``;
        * dissemination: ``eager_pushes``, ``eager_rounds_deferred`` (fresh news
          left to the next gossip round: ``eager_round_rate`` spent),
          ``gossip_datagrams``, ``tree_datagrams``, ``records_too_large_for_gossip``;
        * the broadcast tree's repair: ``tree_acks_received``, ``tree_resends``,
          ``tree_unacked`` (given up: no ack after every re-send, the child no
          longer live, or too many awaiting), ``tree_duplicates`` (repeats received);
        * anti-entropy: ``push_pulls_started``, ``push_pulls_answered``,
          ``push_pulls_completed``, ``push_pulls_failed``, ``reconnect_attempts``,
          ``reconnect_pings`` (pings to a member held dead, to notice a healed
          partition), ``remerges_started`` (push-pulls begun because a member
          held dead spoke), ``owner_resyncs`` (push-pulls with a member back
          from down, whose records stay hidden until it completes),
          ``owner_resyncs_abandoned`` (such records shown without one, after
          ``3 * stream_timeout`` of failed attempts),
          ``push_pull_checks`` (periodic exchanges begun with a summary check),
          ``push_pull_checks_matched`` (those that found nothing to exchange);
        * ``members_*``: every field of
          :class:`~gossipreg.core.membership.MembershipStatistics`;
          ``catalog_*``: every counter of :attr:`Catalog.counters`;
          ``broadcast_queue``, ``broadcast_dropped``, ``broadcast_invalidated``.
        """
        out = dict(self._counters.values)
        ms = self.membership.statistics()
        for f in ms.__dataclass_fields__:
            out[f"members_{f}"] = getattr(ms, f)
        for k, v in self.catalog.counters.items():
            out[f"catalog_{k}"] = v
        out["incarnation_overflows"] = ms.incarnation_overflows
        out["catalog_rejected_drift"] = self.catalog.clock.rejected
        out["broadcast_queue"] = len(self._queue)
        out["broadcast_dropped"] = self._queue.dropped
        out["broadcast_invalidated"] = self._queue.invalidated
        return out

    def histograms(self) -> dict[str, HistogramSnapshot]:
        """Latency histograms (seconds), by name: ``probe_rtt`` (a probe's ping to its
        ack), ``push_pull`` (INIT to FETCH of completed push-pulls this member started)
        and ``spread`` (a record's owner stamp to its first merge here). See
        :mod:`gossipreg.core.observe`."""
        return self._observed.snapshot()

    # ================================================================ driver I/O

    def take_outbox(self) -> list[Outgoing]:
        """Return and clear what the driver must send, in order."""
        out, self._outbox = self._outbox, []
        return out

    def take_events(self) -> list[NodeEvent]:
        """Return and clear the events queued since the last call, in order.

        Drivers must drain events regularly: they accumulate until taken.
        """
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has work. Idle members wake only for probes
        (and the rarer push-pull, expiries and reaps)."""
        if self._left:
            return None
        # The least of the candidates below (asked after every datagram: no list built).
        due = min(self._next_probe, self._next_push_pull)
        if self._failed:
            due = min(due, self._next_reconnect, self._next_reconnect_ping)
        if self._resync and self._resync_due < due:
            due = self._resync_due
        p = self._probe
        if p is not None:
            t = min(p.timeout_at, p.resend_at) if not p.indirect else p.period_end
            if t < due:
                due = t
        if len(self._queue) and self.membership.has_peers():
            t = self._gossip_due()
            self._gossip_promised = True  # the driver wakes for it: the round is owed
            if t < due:
                due = t
        else:
            self._gossip_promised = False
        for r in self._relays.values():
            t = r.deadline if r.nack_at is None else r.nack_at
            if t < due:
                due = t
        for sent in self._tree_sends.values():
            if sent.due < due:
                due = sent.due
        for pp in self._pushpulls.values():
            if pp.deadline < due:
                due = pp.deadline
        for other in (self.membership.next_deadline(), self.catalog.next_deadline()):
            if other is not None and other < due:
                due = other
        return due

    def _gossip_due(self) -> float:
        """The next gossip round, on the member's fixed gossip schedule.

        While the queue is empty the member does not wake for gossip rounds, so
        ``_next_gossip`` may lie in the past; the round a new update waits for
        is the next one on the schedule, not an immediate one.
        """
        due = self._next_gossip
        # A round the driver was told to wake for, with news still waiting, stays due
        # however late the driver (or any input before it) comes: it is not moved on.
        if due < self._now - _EPSILON and not (self._gossip_promised and len(self._queue)):
            interval = self.config.gossip_interval
            due += interval * math.ceil((self._now - due) / interval - _EPSILON)
            self._next_gossip = due
        return due

    def tick(self, now: float) -> None:
        """Run every timer due at ``now``."""
        self._now = now
        if self._left:
            return
        if not len(self._queue):
            # A gossip schedule gone stale while nothing waited moves on to its next
            # round (news queued by this tick's timers waits for that one).
            self._gossip_due()
        self._probe_timers(now)
        if self._tree_sends:
            self._tree_timers(now)
        for seq, relay in list(self._relays.items()):
            if relay.nack_at is not None and relay.nack_at <= now:
                relay.nack_at = None
                self._counters.inc("nacks_sent")
                self._send(relay.source_address, [Nack(relay.source_seq, self.name)])
            if relay.deadline <= now:
                del self._relays[seq]
        for sid in [s for s, p in self._pushpulls.items() if p.deadline <= now]:
            self._fail_push_pull(sid, "timed out")
        for dead in self.membership.tick(now):
            self._queue_message(dead)
        for rec in self.catalog.tick(now):
            self._queue_record(rec)  # a lease of ours ran out: the tombstone goes to everyone
        if now >= self._next_probe:
            self._start_probe(now)
        # A round due runs however late the driver woke for it (a real clock always
        # wakes a little after the deadline; moving the round on then skipped it).
        if now >= self._next_gossip - _EPSILON:
            self._next_gossip = now + self.config.gossip_interval
            self._gossip_promised = False
            if len(self._queue):
                self._gossip_round(now, eager=False)
        if now >= self._next_push_pull:
            n = self.membership.alive_count()
            self._next_push_pull = now + self.config.push_pull_interval_for(max(n, 1))
            peers = self.membership.random_members(1)
            if peers:
                self._last_check = now
                self._start_check(peers[0].address, now)
        if now >= self._next_reconnect:
            self._next_reconnect = now + self.config.reconnect_interval
            self._reconnect(now)
        if now >= self._next_reconnect_ping:
            self._next_reconnect_ping = now + self.config.probe_interval
            self._reconnect_ping(now)
        self._after(now)

    def _reconnect_ping(self, now: float) -> None:
        """Maybe ping one random member declared dead, as cheaply as a probe.

        With the same probability as :meth:`_reconnect` (``failed / alive``),
        but every ``probe_interval``: about one datagram per failed member per
        probe interval cluster-wide, the cost of probing it. A crashed member
        never answers; a member on the far side of a healed partition (or
        behind a restored route) answers, and each side, hearing from a member
        it holds dead, re-merges with it at once (:meth:`_reach_out`), instead
        of waiting up to ``reconnect_interval`` for the stream check.
        """
        name = self._draw_failed()
        if name is not None:
            self._counters.inc("reconnect_pings")
            self._send(self._failed[name][0], [Ping(self._next_seq(), name, self.name, self.address)])

    def _draw_failed(self) -> str | None:
        """One random member held dead, with probability ``failed / alive`` (serf's rule), or None."""
        if not self._failed:
            return None
        alive = max(1, self.membership.alive_count())
        if self._rng.random() * alive >= len(self._failed):
            return None
        return self._rng.choice(sorted(self._failed))

    def _heard(self, address: tuple[str, int], now: float) -> None:
        """An authenticated datagram arrived from ``address``: evidence of life.

        From a member held dead: re-merge with it at once (:meth:`_reach_out`).
        From a member held suspect: its suspicion does not expire within
        ``death_grace``. After ``2 * probe_interval`` of hearing nothing at all
        (this member's own link was down): every running suspicion, formed
        while it was deaf, gets the grace, so the suspects can refute before
        its timers declare them dead.
        """
        grace = self.config.death_grace
        if grace > 0:
            if now - self._last_heard > 2 * self.config.probe_interval:
                self.membership.hold_suspicions(now + grace)
            suspect = self._suspect_at.get(Address(*address)) if self._suspect_at else None
            if suspect is not None:
                self.membership.hold_suspicion(suspect, now + grace)
        self._last_heard = now
        if self._failed_at and address in self._failed_at:
            self._reach_out(Address(*address), now)

    def _reach_out(self, address: Address, now: float) -> None:
        """A member this member holds dead spoke from ``address``: push-pull with it now.

        At most one such exchange per address per ``probe_interval``, and none
        while a push-pull with it is under way.
        """
        last = self._reached.get(address)
        if last is not None and now - last < self.config.probe_interval:
            return
        if any(pp.address == address for pp in self._pushpulls.values()):
            return
        self._reached[address] = now
        if len(self._reached) > _MAX_RECONNECT_CANDIDATES:
            horizon = now - self.config.probe_interval
            self._reached = {a: t for a, t in self._reached.items() if t >= horizon}
        self._counters.inc("remerges_started")
        self._start_push_pull(address, now, join=False)
        if self.config.death_grace > 0:
            # A partition has likely healed: suspects beyond it get the grace to refute.
            self.membership.hold_suspicions(now + self.config.death_grace)

    def _drive_resyncs(self, now: float) -> None:
        """Start (or retry) the push-pull with each owner in resync; give up on the stale ones."""
        if now < self._resync_due:
            return
        due = math.inf
        for name, r in list(self._resync.items()):
            if r.next_try > now:
                due = min(due, r.next_try)
                continue
            if now >= r.give_up_at:
                # Its records are better shown than lost: the member is alive.
                del self._resync[name]
                self._counters.inc("owner_resyncs_abandoned")
                self.catalog.owner_synced(name)
                continue
            if not any(
                role_of(sid) is Role.INITIATOR and sid[1] > r.after_stream
                and pp.step is not Step.CHECK_SENT and pp.address == r.address
                for sid, pp in self._pushpulls.items()
            ):
                # (A push-pull of ours already under way ends the resync when it completes.)
                self._counters.inc("owner_resyncs")
                self._start_push_pull(r.address, now, join=False)
            r.next_try = now + self.config.probe_interval
            due = min(due, r.next_try)
        self._resync_due = due

    def _synced_with(self, address: Address, sid: StreamId) -> None:
        """A push-pull this member started with ``address`` completed: end resyncs it answers."""
        for name in [n for n, r in self._resync.items() if r.address == address and sid[1] > r.after_stream]:
            del self._resync[name]
            self.catalog.owner_synced(name)

    def _reconnect(self, now: float) -> None:
        """Maybe try to reach one random member declared dead (serf's reconnect).

        After a partition longer than ``gossip_to_the_dead`` each side has
        declared the other dead and stopped talking to it; this is what merges
        them again once the network heals. A member that is really gone just
        fails the stream.

        As in serf, a member tries with probability ``failed / alive`` (at
        most 1), so the cluster as a whole makes about one attempt per failed
        member per interval whatever its size, rather than every member
        making one (N connections and N full member lists per interval, for
        one crashed member). Two halves of a partition, each holding the
        other dead, still try from every member. The attempt starts with the
        anti-entropy check, so an attempt on a crashed member costs one
        small message; the full push-pull follows once a healed peer answers.
        """
        horizon = now - self.config.reconnect_timeout
        for name in [n for n, (_, since) in self._failed.items() if since < horizon]:
            self._forget_failed(name)
        target = self._draw_failed()
        if target is not None:
            self._counters.inc("reconnect_attempts")
            self._start_check(self._failed[target][0], now)

    # ================================================================ local calls

    def adopt(self, snapshot: TableSnapshot, now: float) -> None:
        """Start warm from a member table shared with other members (simulations).

        The same state as merging ``snapshot`` in a push-pull and applying the
        JOINED events (see :meth:`Membership.adopt
        <gossipreg.core.membership.Membership.adopt>` and
        :meth:`Catalog.adopt_owners_up
        <gossipreg.core.catalog.Catalog.adopt_owners_up>`), but in O(1) memory
        and time, and without the events: nothing is sent and no
        :class:`MemberEvent` is queued. Valid only before this member knows
        any other; the simulator's warm start of large clusters uses it.

        Raises:
            ValueError: this member already knows another member.
        """
        self._now = now
        self.membership.adopt(snapshot, now)
        self.catalog.adopt_owners_up(snapshot.owners_up)

    def join(self, seeds: Iterable[tuple[str, int]], now: float) -> list[StreamId]:
        """Start a join push-pull with each seed; results arrive as :class:`JoinResult` events."""
        self._now = now
        return [self._start_push_pull(Address(*s), now, join=True) for s in seeds]

    def leave(self, now: float) -> None:
        """Leave gracefully: broadcast the leave to ``gossip_nodes`` members at once.

        Afterwards the member sends nothing more and its timers stop; the
        driver should give the outbox a moment to drain, then close.
        """
        self._now = now
        if self._left:
            return
        msg = self.membership.leave(now)
        self._queue_message(msg, tree=True)
        # Down this member's own broadcast tree now: once left, nothing flushes it (and
        # its copies are not sent again; the direct datagrams below are the fallback).
        if self.config.eager_push and self._tree_pending:
            self._send_tree(self.name, 0, self._tree_pending)
        self._tree_pending = []
        targets = self.membership.random_members(max(self.config.gossip_nodes, 3))
        data = self._encode(msg)
        for m in targets:
            self._emit(m.address, [data])
        self._left = True

    def register(self, service: Service, ttl: float | None, now: float) -> list[Record]:
        """Register ``service``'s nodes as owned by this member and disseminate them."""
        self._now = now
        records = self.catalog.register(service, ttl, now)
        for rec in records:
            self._queue_record(rec)
        self._after(now)
        return records

    def deregister(self, service: Service, now: float) -> list[Record]:
        """Deregister ``service``'s nodes (this member's) and disseminate the tombstones."""
        self._now = now
        records = self.catalog.deregister(service, now)
        for rec in records:
            self._queue_record(rec)
        self._after(now)
        return records

    # ================================================================ datagrams in

    def receive_datagram(self, data: bytes, address: tuple[str, int], now: float) -> None:
        """Handle one datagram from ``address``. Never raises for bad input."""
        self._now = now
        self._from = address if type(address) is Address else Address(*address)
        c = self._counters
        c.inc("datagrams_received")
        c.inc("bytes_received", len(data))
        if self._left:
            return
        plain = self._open(data, self._label)
        if plain is None:
            return
        self._heard(address, now)
        try:
            raw_messages = codec.unpack_datagram(plain)
        except DecodeError:
            self._refused("decode_errors")
            return
        tree: Tree | None = None
        forward: list[bytes] = []
        stale = 0
        for i, raw in enumerate(raw_messages):
            # Updates of a tree datagram are passed on whether or not they are new here;
            # every receiver decodes (and so checks) them itself.
            passes_on = i > 0 and tree is not None and self._is_update(raw)
            if self._known_stale(raw, now):
                stale += 1
                if passes_on:
                    forward.append(codec.pack(raw))
                continue
            try:
                msg = codec.decode_message(raw)
            except DecodeError:
                self._refused("decode_errors")
                continue
            if isinstance(msg, Tree):
                if i == 0:
                    tree = msg
                continue
            if passes_on:
                forward.append(codec.pack(raw))
            self._handle(msg, now)
        if stale:
            c.inc("stale_skipped", stale)
        if tree is not None and tree.seq is not None and not self._tree_ack(tree.seq, now):
            tree = None  # a repeat of a tree datagram already passed on: acked, not again
        if tree is not None:
            # Pass the updates on down the tree, whether or not they were new here:
            # the subtree below this member hears them only from it.
            self._send_tree(tree.root, tree.hops, forward)
        self._after(now)

    def _open(self, data: bytes, label: bytes) -> bytes | None:
        if self.keyring is None:
            if data[:1] == bytes([codec.PROTOCOL_VERSION]):
                return data
            if data[:1] == b"\x01":
                # A sealed packet reached a plaintext member: say why it cannot work.
                self._refused("sealed_received_while_insecure")
            else:
                self._refused("decode_errors")
            return None
        try:
            return self.keyring.open(data, label)
        except AuthenticationError:
            if data[:1] == bytes([codec.PROTOCOL_VERSION]):
                self._refused("plaintext_rejected")
            else:
                self._refused("auth_failures")
            return None

    def _refused(self, cause: str, n: int = 1) -> None:
        """Count ``n`` refused items of ``cause`` from ``self._from``; the first after a
        quiet period becomes a :class:`TrafficRefused` event at once."""
        self._counters.inc(cause, n)
        last, pending = self._notices.get(cause, (-math.inf, 0))
        if self._now - last >= NOTICE_INTERVAL:
            self._events.append(TrafficRefused(cause, pending + n, self._from))
            self._notices[cause] = (self._now, 0)
        else:
            self._notices[cause] = (last, pending + n)

    def _seal(self, plain: bytes, label: bytes) -> bytes:
        return plain if self.keyring is None else self.keyring.seal(plain, label)

    def _handle(self, msg: Message, now: float) -> None:
        c = self._counters
        match msg:
            # (The membership updates first: most messages are.)
            case Alive() | Suspect() | Dead() | Leave():
                if isinstance(msg, Alive) and not self._authorised_alive(msg, defer=msg):
                    return
                if isinstance(msg, Leave) and not self._authorised_leave(msg):
                    return
                outcome = self.membership.receive(msg, now)
                signed = not isinstance(msg, Suspect | Dead)  # (their fields all compare)
                for b in outcome.broadcast:
                    # Passed on as received: with identities, its signature rides along. (A
                    # suspect or dead equal to the message encodes as it does: no need to ask.)
                    self._queue_message(msg if signed and b == msg else b)
                if (
                    outcome.action is Action.IGNORED
                    and outcome.broadcast
                    and isinstance(msg, Suspect | Dead)
                    and msg.from_member != self.name
                ):
                    # This member's alive, re-announced because the accuser missed it: tell
                    # the accuser first, or its suspicion runs out (Membership._reassert).
                    accuser = self.membership.get(msg.from_member)
                    if accuser is not None and accuser.state in (MemberState.ALIVE, MemberState.SUSPECT):
                        self._send(accuser.address, list(outcome.broadcast))
            case Ping():
                c.inc("pings_received")
                if msg.target != self.name:
                    c.inc("pings_misdirected")
                    return
                self.membership.heard_from(msg.source, now)
                self._send(msg.source_address, [Ack(msg.seq, self.name)])
            case PingReq():
                c.inc("ping_reqs_received")
                self.membership.heard_from(msg.source, now)
                seq = self._next_seq()
                nack_at = now + self._nack_delay() if msg.nack else None
                deadline = now + self.config.probe_timeout
                self._relays[seq] = _Relay(msg.seq, msg.source_address, nack_at, deadline)
                self._send(msg.target_address, [Ping(seq, msg.target, self.name, self.address)])
            case Ack():
                self._on_ack(msg)
            case Nack():
                c.inc("nacks_received")
                p = self._probe
                if p is not None and p.req_seq == msg.seq and msg.source in p.helpers:
                    p.nacks.add(msg.source)  # a duplicated datagram does not count twice
            case CertWant():
                self._answer_cert_want(msg)
            case Cert():
                self._on_cert(msg, now)
            case RecordMsg():
                if not self._authorised_record(msg.record, defer=msg):
                    return
                result = self.catalog.merge([msg.record], now)
                self._observe_spread(result.accepted)
                for rec in result.accepted:
                    self._queue_record(rec)
                for rec in result.reply:
                    self._queue_record(rec)
                if result.rejected:
                    self._refused("records_rejected_drift", result.rejected)

    @staticmethod
    def _is_update(raw: object) -> bool:
        return type(raw) is list and bool(raw) and raw[0] in _UPDATE_TYPES and type(raw[0]) is int

    def _known_stale(self, raw: object, now: float) -> bool:
        """Skip, before decoding, an update this member certainly has already.

        While many members join, most datagrams repeat alives and records every
        member has; while many are suspected (heavy loss), most repeat
        suspicions and deaths. Judging them from a few raw fields
        (:func:`codec.peek_update`) saves their validation. Anything not
        certainly stale is decoded and handled in full.
        """
        # (isinstance and unpacking: cheaper than class patterns, for every message)
        peeked = codec.peek_update(raw)
        if isinstance(peeked, codec.PeekedAccusation):
            name, inc, frm, dead = peeked
            return self.membership.accusation_is_stale(name, inc, frm, dead, now)
        if isinstance(peeked, codec.PeekedAlive):
            name, inc, host, port = peeked
            return self.membership.alive_is_stale(name, inc, host, port)
        if isinstance(peeked, codec.PeekedRecord):
            key, stamp, owner, deleted = peeked
            return self.catalog.is_stale(key, stamp, owner, deleted)
        return False

    def _nack_delay(self) -> float:
        """How long a ping-req helper waits for the target's ack before it nacks.

        The requester's indirect phase lasts ``probe_interval - probe_timeout``
        (at full health) from the ping-req; a nack that arrives later counts as
        missing and the requester blames its own health. So the helper waits
        ``probe_timeout``, but at most 80% of that window, leaving the rest for
        the two hops. (The relay itself stays open ``probe_timeout``: a late ack
        is still forwarded.)
        """
        cfg = self.config
        return min(cfg.probe_timeout, 0.8 * (cfg.probe_interval - cfg.probe_timeout))

    def _on_ack(self, ack: Ack) -> None:
        relay = self._relays.pop(ack.seq, None)
        if relay is not None:
            self._send(relay.source_address, [Ack(relay.source_seq, ack.source)])
            return
        if ack.seq >= _TREE_SEQ_FLAG:
            base, copy = ack.seq & ~_TREE_COPY_MASK, ack.seq & _TREE_COPY_MASK
            sent = self._tree_sends.get(base)
            if sent is not None and sent.child == ack.source and copy < len(sent.sent_at):
                del self._tree_sends[base]
                self._counters.inc("tree_acks_received")
                self._tree_rtts.sample(sent.child, self._now - sent.sent_at[copy])
            return
        p = self._probe
        if p is None:
            return
        sent_at = p.sent_at.get(ack.seq)
        if sent_at is not None:  # the target's own ack to one of the pings
            rtt = self._now - sent_at
            self._probe_rtts.sample(p.target, rtt)
        elif ack.seq != p.req_seq:
            return
        else:  # relayed by a helper: timed from the first ping
            rtt = self._now - p.started
        if ack.source == p.target:
            self.membership.heard_from(p.target, self._now)
        self.membership.awareness.apply_delta(-1)
        self._counters.inc("probes_acked")
        self._observed.probe_rtt.observe(rtt)
        self._probe = None

    # ================================================================ probing

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _start_probe(self, now: float) -> None:
        interval, timeout = self.config.scaled_probe(self.membership.awareness.score)
        self._next_probe = now + interval
        if self._probe is not None:
            return  # the previous probe is still running (can happen after a long pause)
        target = self.membership.next_probe_target()
        if target is None:
            return
        seq = self._next_seq()
        wait = self._probe_rtts.timeout(target.name)
        p = self._probe = _Probe(target.name, now, now + timeout, now + interval, {seq: now}, wait, math.inf)
        self._schedule_reping(p, now)
        self._counters.inc("probes_sent")
        self._ping(target, seq)

    def _ping(self, target: Member, seq: int) -> None:
        """Send one ping of the running probe to ``target``."""
        msgs: list[Message] = [Ping(seq, target.name, self.name, self.address)]
        if target.state is MemberState.SUSPECT:
            # Buddy system: tell the suspect it is suspected so it can refute now.
            msgs.append(Suspect(target.name, target.incarnation, self.name))
        self._send(target.address, msgs)

    def _reping(self, p: _Probe, now: float) -> None:
        """Send the running probe's ping again: its ack is overdue (``Config.probe_resends``)."""
        target = self._probe_target(p)
        if target is None:
            p.resend_at = math.inf
            return
        seq = self._next_seq()
        p.sent_at[seq] = now
        self._counters.inc("probe_resends")
        self._ping(target, seq)
        p.wait = next_wait(p.wait, len(p.sent_at) - 1, p.timeout_at - p.started)
        self._schedule_reping(p, now)

    def _schedule_reping(self, p: _Probe, now: float) -> None:
        """The next ping of ``p`` goes when its last one's wait ends, unless every re-ping
        was sent or the wait reaches ``probe_timeout`` (then the helpers are asked)."""
        due = now + p.wait
        done = len(p.sent_at) - 1 >= self.config.probe_resends
        p.resend_at = math.inf if done or due >= p.timeout_at - _EPSILON else due

    def _probe_target(self, p: _Probe) -> Member | None:
        """The running probe's target, or ``None`` once it is not live to probe (gone,
        dead or left)."""
        target = self.membership.get(p.target)
        if target is None or target.state in (MemberState.DEAD, MemberState.LEFT):
            return None
        return target

    def _probe_timers(self, now: float) -> None:
        p = self._probe
        if p is None:
            return
        if not p.indirect and now >= p.resend_at and now < p.timeout_at:
            self._reping(p, now)
        if not p.indirect and now >= p.timeout_at:
            p.indirect = True
            target = self._probe_target(p)
            if target is None:
                self._probe = None
                return
            helpers = self.membership.random_members(self.config.indirect_checks, exclude=[p.target])
            p.helpers = frozenset(h.name for h in helpers)
            p.req_seq = self._next_seq()
            req = PingReq(p.req_seq, target.name, target.address, self.name, self.address, True)
            for h in helpers:
                self._send(h.address, [req])
            self._counters.inc("ping_reqs_sent", len(helpers))
        if p.indirect and now >= p.period_end:
            self._probe = None
            missing = len(p.helpers) - len(p.nacks)
            self.membership.awareness.apply_delta(1 + missing)
            self._counters.inc("probes_failed")
            outcome = self.membership.probe_failed(p.target, now)
            for b in outcome.broadcast:
                self._queue_message(b)

    # ================================================================ dissemination

    def _queue_message(self, msg: Alive | Suspect | Dead | Leave, *, tree: bool = False) -> None:
        data = self._encode(msg)  # gossip copies of an alive leave its certificate out
        self._queue.queue(("m", msg.name), data)
        self._fresh = True
        # Down the broadcast tree go only the membership updates a caller marks (this
        # member's leave; its alive after a join is added by the join itself). Not
        # suspicions and death declarations about others: many members make the same one
        # at about the same time (dozens at 2,000 members), and each tree costs a
        # datagram per member whether or not its updates are new. Not refutations either:
        # under heavy loss every member refutes again and again, and a tree per
        # refutation would cost every member a datagram per refutation anywhere in the
        # cluster; gossip reaches everyone well within the suspicion timeout. All of
        # these spread by gossip, eager and periodic, as in memberlist.
        if tree:
            self._tree_pending.append(self._encode(msg, with_certificate=True))

    def _queue_record(self, rec: Record) -> None:
        data = self._encode(RecordMsg(rec))
        if len(data) > self._budget():
            # Too large to ride in a datagram: anti-entropy carries it.
            self._counters.inc("records_too_large_for_gossip")
            return
        self._queue.queue(("r", *rec.key), data)
        self._fresh = True
        if rec.owner == self.name:
            self._tree_pending.append(data)

    def _budget(self) -> int:
        overhead = codec.DATAGRAM_OVERHEAD + (OVERHEAD if self.keyring is not None else 0)
        return self.config.max_packet_size - overhead

    def _retransmit_limit(self) -> int:
        return self.config.retransmit_limit(max(1, self.membership.alive_count()))

    def _send(self, address: Address, msgs: list[Message]) -> None:
        """Send protocol messages, topped up with queued broadcasts."""
        encoded = [self._encode(m) for m in msgs]
        used = sum(len(e) for e in encoded)
        encoded += self._queue.take(self._budget() - used, 0, self._retransmit_limit())
        self._emit(address, encoded)

    def _emit(self, address: Address, encoded: list[bytes]) -> None:
        # Receivers accept at most MAX_MESSAGES per datagram (large packets, small messages).
        for i in range(0, max(1, len(encoded)), codec.MAX_MESSAGES):
            data = self._seal(codec.pack_datagram(encoded[i : i + codec.MAX_MESSAGES]), self._label)
            self._counters.inc("datagrams_sent")
            self._counters.inc("bytes_sent", len(data))
            self._outbox.append(SendDatagram(address, data))

    def _gossip_round(self, now: float, *, eager: bool) -> None:
        targets = self.membership.gossip_targets(self.config.gossip_nodes, now)
        limit = self._retransmit_limit()
        min_gap = 1.0 / self.config.eager_push_rate
        budget = self._budget()
        # An eager round that carries the whole queue to its targets stands for the next
        # periodic round, which is then due a whole gossip interval later: while news keeps
        # coming in small amounts (a suspicion storm) every transmission rides an eager
        # round, without a periodic round's datagrams on top. When the news is more than a
        # datagram holds (many members joining at once), periodic rounds keep their pace.
        whole = eager and self._queue.fits(budget)
        sent = False
        for m in targets:
            if eager:
                last = self._eager_last.get(m.name)
                if last is not None and now - last < min_gap:
                    continue
                self._eager_last[m.name] = now
            batch = self._queue.take(budget, 0, limit)
            if not batch:
                break
            self._counters.inc("eager_pushes" if eager else "gossip_datagrams")
            self._emit(m.address, batch)
            sent = True
        if whole and sent:
            self._next_gossip = now + self.config.gossip_interval

    # ---------------------------------------------------------------- broadcast tree

    def _tree_children(self, root: str) -> list[Member]:
        """This member's children in the broadcast tree rooted at ``root``.

        The tree is laid over the sorted names of the live members (this one
        included), rotated so that ``root`` has rank 0; its shape is
        :func:`gossipreg.core.tree.child_ranks` (every member reached exactly
        once, in at most ``ceil(log_b n)`` hops, when views agree). A root this
        member does not know as live gives no children.
        """
        live = self.membership.live_names
        n = len(live) + 1
        if n == 1:
            return []
        me = live.bisect_left(self.name)  # this member's index in the full list

        def index(name: str) -> int | None:
            if name == self.name:
                return me
            i = live.bisect_left(name)
            if i == len(live) or live[i] != name:
                return None
            return i + 1 if i >= me else i

        def at(i: int) -> str:
            return self.name if i == me else live[i - 1 if i > me else i]

        root_index = index(root)
        if root_index is None:
            return []
        rank = (me - root_index) % n
        children = []
        for child in child_ranks(rank, n, self.config.gossip_nodes):
            m = self.membership.get(at((root_index + child) % n))
            if m is not None:
                children.append(m)
        return children

    def _send_tree(self, root: str, hops: int, updates: list[bytes]) -> None:
        """Send ``updates`` to this member's children in ``root``'s broadcast tree."""
        if hops >= codec.MAX_TREE_HOPS or not updates:
            return
        children = self._tree_children(root)
        if not children:
            return
        marker = codec.encode_message(Tree(root, hops + 1))
        repair = self.config.tree_resends > 0
        budget = self._budget() - len(marker) - (_TREE_SEQ_BYTES if repair else 0)
        batches: list[list[bytes]] = [[]]
        used = 0
        for data in updates:
            if batches[-1] and (used + len(data) > budget or len(batches[-1]) >= codec.MAX_MESSAGES - 1):
                batches.append([])
                used = 0
            batches[-1].append(data)
            used += len(data)
        for child in children:
            for batch in batches:
                self._counters.inc("tree_datagrams")
                if not repair:
                    self._emit(child.address, [marker, *batch])
                    continue
                self._tree_counter += 1
                seq = _TREE_SEQ_FLAG | (self._tree_counter << _TREE_COPY_BITS)
                self._emit(child.address, [codec.encode_message(Tree(root, hops + 1, seq)), *batch])
                if len(self._tree_sends) >= _MAX_TREE_UNACKED:
                    del self._tree_sends[next(iter(self._tree_sends))]
                    self._counters.inc("tree_unacked")
                wait = self._tree_rtts.timeout(child.name)
                self._tree_sends[seq] = _TreeSend(
                    child.name, child.address, root, hops + 1, batch, self._now + wait, wait, [self._now],
                )


    def _tree_ack(self, seq: int, now: float) -> bool:
        """Acknowledge the tree datagram ``seq`` just received (the tree repair); whether
        it is the first copy of it, to be passed on (a re-send is not passed on again)."""
        self._emit(self._from, [codec.encode_message(Ack(seq, self.name))])
        seen = self._tree_seen
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > now and len(seen) < _MAX_TREE_SEEN:
                break
            del seen[oldest]
        # The copies of one datagram differ only in their copy bits.
        key = (self._from, seq & ~_TREE_COPY_MASK if seq >= _TREE_SEQ_FLAG else seq)
        if key in seen:
            self._counters.inc("tree_duplicates")
            return False
        seen[key] = now + self._tree_resend_span
        return True

    def _tree_timers(self, now: float) -> None:
        """Send again every tree datagram whose ack is overdue, while re-sends are left
        and its child is live; give up on the rest."""
        for seq in [s for s, t in self._tree_sends.items() if t.due <= now + _EPSILON]:
            sent = self._tree_sends[seq]
            child = self.membership.get(sent.child)
            copy = len(sent.sent_at)  # this re-send's number: copies sent so far
            if (
                copy > self.config.tree_resends
                or child is None
                or child.state not in (MemberState.ALIVE, MemberState.SUSPECT)
            ):
                del self._tree_sends[seq]
                self._counters.inc("tree_unacked")
                continue
            sent.wait = next_wait(sent.wait, copy, self.config.probe_interval)
            sent.due = now + sent.wait
            sent.sent_at.append(now)
            self._counters.inc("tree_resends")
            marker = codec.encode_message(Tree(sent.root, sent.hops, seq | copy))
            self._emit(sent.address, [marker, *sent.updates])

    def _after(self, now: float) -> None:
        """End of every entry point: apply membership changes to the catalog, eager-push."""
        self._collect_events()
        if self._resync:
            self._drive_resyncs(now)
        self._flush_eager(now)

    def _flush_eager(self, now: float) -> None:
        if self.config.eager_push and not self._left:
            if self._tree_pending:
                self._send_tree(self.name, 0, self._tree_pending)
            if self._fresh and (self._new_member or self._take_eager_token(now)):
                self._gossip_round(now, eager=True)
        self._tree_pending = []
        self._fresh = False
        self._new_member = False
        if len(self._eager_last) > 4 * max(16, self.membership.alive_count()):
            horizon = now - 1.0 / self.config.eager_push_rate
            self._eager_last = {k: t for k, t in self._eager_last.items() if t >= horizon}

    def _take_eager_token(self, now: float) -> bool:
        """Spend one eager round from the bucket (see ``Config.eager_round_rate``)."""
        rate = self.config.eager_round_rate
        self._eager_tokens = min(rate, self._eager_tokens + max(0.0, now - self._eager_refilled) * rate)
        self._eager_refilled = now
        if self._eager_tokens < 1.0:
            self._counters.inc("eager_rounds_deferred")
            return False
        self._eager_tokens -= 1.0
        return True

    # ================================================================ events

    def _collect_events(self) -> None:
        for ev in self.membership.take_events():
            kind = ev.kind
            name = ev.member.name
            if kind is EventKind.SUSPECTED:
                self._suspect_at[ev.member.address] = name
            elif self._suspect_at and self._suspect_at.get(ev.member.address) == name:
                del self._suspect_at[ev.member.address]
            if kind in (EventKind.FAILED, EventKind.LEFT):
                self._tree_rtts.forget(name)
                self._probe_rtts.forget(name)
                self.catalog.owner_down(name)
                self._resync.pop(name, None)
                if kind is EventKind.FAILED:
                    self._remember_failed(ev.member)
                    self._check_soon()
                else:
                    self._forget_failed(name)
            elif kind is EventKind.JOINED or kind is EventKind.UPDATED:
                if ev.previous_state is None:
                    self._new_member = True  # first news of this member: eager, token or not
                self.catalog.owner_epoch(name, ev.member.epoch)
                if kind is EventKind.UPDATED and ev.previous_state is not MemberState.SUSPECT:
                    pass  # an address or meta change: liveness unchanged
                elif self.catalog.owner_up(name) and name not in self._resync:
                    # Back from down: its records stay hidden until we hold its current ones.
                    self._resync[name] = _Resync(
                        ev.member.address,
                        self._now,
                        self._now + 3 * self.config.stream_timeout,
                        self._stream_seq,
                    )
                    self._resync_due = self._now
                self._forget_failed(name)
            elif kind is EventKind.REAPED:
                self.catalog.purge_owner(name)
                self._resync.pop(name, None)
            self._events.append(ev)
        for rec in self.catalog.take_outgoing():
            self._queue_record(rec)
        for key, other, ours in self.catalog.take_conflicts():
            self._events.append(RegistrationConflict(key, other, ours))
        self._events.extend(self.catalog.take_events())

    def _check_soon(self) -> None:
        """A member failed: bring the next anti-entropy check forward to within a probe interval.

        Updates sent to a member that was already unreachable (the far side of a
        partition not yet detected, a crashed process) were lost, and with them
        part of their transmit budget: in a small cluster cut in half, a
        deregistration can miss a member of its own side. The early check repairs
        that within about a second of the failure instead of a ``push_pull_interval``.
        At most one early check per probe interval.
        """
        interval = self.config.probe_interval
        soon = max(self._now + self._rng.uniform(0.5, 1.0) * interval, self._last_check + interval)
        self._next_push_pull = min(self._next_push_pull, soon)

    def _remember_failed(self, member: Member) -> None:
        self._forget_failed(member.name)
        self._failed[member.name] = (member.address, self._now)
        self._failed_at[member.address] = member.name
        if len(self._failed) > _MAX_RECONNECT_CANDIDATES:
            self._forget_failed(next(iter(self._failed)))  # the longest dead

    def _forget_failed(self, name: str) -> None:
        entry = self._failed.pop(name, None)
        if entry is not None and self._failed_at.get(entry[0]) == name:
            del self._failed_at[entry[0]]

    # ================================================================ streams

    def _start_check(self, address: Address, now: float) -> None:
        """Begin a periodic anti-entropy exchange with a cheap check.

        Both sides compare 64-bit summaries of their member tables and catalog
        digests first; only if either differs does the full push-pull follow.
        An idle cluster's anti-entropy then costs two small messages, whatever
        its size, instead of the whole member list each way.
        """
        self._stream_seq += 1
        sid: StreamId = ("out", self._stream_seq)
        self._pushpulls[sid] = Exchange(address, False, now + self.config.stream_timeout, Step.CHECK_SENT)
        self._counters.inc("push_pull_checks")
        self._stream_send(sid, address, [codec.PP_CHECK, self.membership.fingerprint(), self.catalog.root()])

    def _start_push_pull(self, address: Address, now: float, *, join: bool) -> StreamId:
        self._stream_seq += 1
        sid: StreamId = ("out", self._stream_seq)
        # A joining member is the one missing everything: what it receives is no news to others.
        self._pushpulls[sid] = Exchange(address, join, now + self.config.stream_timeout, Step.INIT_SENT,
                                        regossip=not join)
        self._counters.inc("push_pulls_started")
        self._observed.push_pull_started(sid, now)
        self._stream_send(sid, address, [codec.PP_INIT, join, self._member_states(),
                                         codec.encode_digest(self.catalog.digest())])
        return sid

    def _member_states(self) -> list[Any]:
        members = (*self.membership.members(), *self.membership.graveyard())
        if self.identity is None:
            return [codec.encode_member(m) for m in members]
        return [codec.encode_member(m, self._proof_of(m)) for m in members]

    # ================================================================ member identities

    def _encode(self, msg: Message, *, with_certificate: bool = False) -> bytes:
        """Encode ``msg``, signing it first if it is this member's own statement.

        An alive carries its member's certificate (about 450 bytes) only where
        asked: down the broadcast tree, which reaches every member once. Gossip
        copies carry the signature alone; a member that does not know the
        certificate yet gets it from the tree or the next push-pull.
        """
        if self.identity is not None:
            if isinstance(msg, Alive):
                if msg.name == self.name and not msg.signature:
                    msg = self._signed_alive(msg)
                if not with_certificate and msg.certificate:
                    msg = replace(msg, certificate=b"")
            elif isinstance(msg, RecordMsg) and msg.record.owner == self.name and not msg.record.signature:
                msg = RecordMsg(self._signed_record(msg.record))
            elif isinstance(msg, Leave) and msg.name == self.name and not msg.signature:
                msg = replace(msg, signature=self.identity.sign(LEAVE_DOMAIN, codec.leave_payload(msg)))
        return codec.encode_message(msg)

    def _signed_alive(self, alive: Alive) -> Alive:
        assert self.identity is not None
        own = self._own_alive
        if own is None or own != alive:
            sig = self.identity.sign(ALIVE_DOMAIN, codec.alive_payload(alive))
            own = self._own_alive = replace(alive, signature=sig, certificate=self.identity.certificate_der)
        return own

    def _signed_record(self, rec: Record) -> Record:
        assert self.identity is not None
        what = (rec.key, rec.stamp, rec.deleted)
        sig = self._own_record_sigs.get(what)
        if sig is None:
            if len(self._own_record_sigs) >= _MAX_OWN_SIGNATURES:
                self._own_record_sigs.clear()
            sig = self._own_record_sigs[what] = self.identity.sign(
                RECORD_DOMAIN, codec.record_payload(rec)
            )
        return replace(rec, signature=sig)

    def _signed_transfers(self, items: list[tuple[Record, float]]) -> list[tuple[Record, float]]:
        if self.identity is None:
            return items
        return [(self._signed_record(r) if r.owner == self.name and not r.signature else r, a)
                for r, a in items]

    def _proof_of(self, m: Member) -> Alive | None:
        """The signed alive that vouches for ``m``'s state entry, if this member has it."""
        if m.name == self.name:
            return self._signed_alive(self.membership.local_alive())
        proof = self._alive_proofs.get(m.name)
        if proof is None or not proof.certificate or (
            proof.incarnation, proof.address, proof.meta, proof.epoch
        ) != (m.incarnation, m.address, m.meta, m.epoch):
            return None
        return proof

    def _authorised_alive(self, alive: Alive, *, defer: Message | None = None) -> bool:
        """With identities: whether ``alive`` is signed by the member it announces (and
        remember it as that member's proof). Counts and refuses it otherwise."""
        trust = self.trust
        if trust is None:
            return True
        if not alive.signature:
            self._refused("identity_unsigned")
            return False
        known = self._alive_proofs.get(alive.name)
        if known is not None and known.signature == alive.signature and known == alive:
            return True  # verified when it first came
        wall = self._wall()
        if alive.certificate:
            fp = trust.admit(alive.name, alive.certificate, wall)
            if fp is None:
                self._refused("identity_bad_certificate")
                return False
            candidates: tuple[bytes, ...] = (fp,)
        else:
            candidates = trust.fingerprints(alive.name)
            if not candidates:
                self._unknown_signer(alive.name, defer)
                return False
        payload = codec.alive_payload(alive)
        signer = next((fp for fp in candidates if trust.verify(
            alive.name, ALIVE_DOMAIN, payload, alive.signature, fingerprint=fp, wall_time=wall)), None)
        if signer is None:
            self._refused("identity_bad_signature")
            return False
        if alive.name != self.name and (known is None or alive.incarnation >= known.incarnation):
            # Kept with its certificate: it is the member's proof in push-pull states. An
            # older alive (a peer behind) never replaces a newer proof: the membership
            # keeps the newer state, which that proof vouches for.
            cert = alive.certificate or trust.certificate(alive.name, signer) or b""
            self._alive_proofs[alive.name] = replace(alive, certificate=cert)
        return True

    def _prune_proofs(self) -> None:
        """Forget the proofs of members no longer in the table (after merges, so the
        proofs of members a push-pull is adding are kept)."""
        if len(self._alive_proofs) > 2 * len(self.membership.members()) + 64:
            members = {m.name for m in self.membership.members()}
            self._alive_proofs = {n: a for n, a in self._alive_proofs.items() if n in members}

    def _authorised_record(self, rec: Record, *, defer: Message | None = None) -> bool:
        """With identities: whether ``rec`` is signed by its owner. Counts and refuses
        it otherwise; an owner whose certificate is not known here yet brings the next
        anti-entropy exchange forward (its member state carries the certificate)."""
        trust = self.trust
        if trust is None:
            return True
        if not rec.signature:
            self._refused("identity_unsigned")
            return False
        current = self.catalog.get(rec.key)
        if current is not None and (
            current.order() > rec.order() or (current == rec and current.signature == rec.signature)
        ):
            return True  # changes nothing here (older), or verified when it first came
        if not trust.known(rec.owner):
            self._unknown_signer(rec.owner, defer)
            return False
        if not trust.verify(rec.owner, RECORD_DOMAIN, codec.record_payload(rec), rec.signature,
                            wall_time=self._wall()):
            self._refused("identity_bad_signature")
            return False
        return True

    def _authorised_leave(self, leave: Leave) -> bool:
        """With identities: whether ``leave`` is signed by the member leaving (believed at
        once, a leave hides the member's registrations, so no one else may say it)."""
        trust = self.trust
        if trust is None:
            return True
        if not leave.signature:
            self._refused("identity_unsigned")
            return False
        if not trust.known(leave.name):
            self._unknown_signer(leave.name, leave)
            return False
        if not trust.verify(leave.name, LEAVE_DOMAIN, codec.leave_payload(leave), leave.signature,
                            wall_time=self._wall()):
            self._refused("identity_bad_signature")
            return False
        return True

    def _unknown_signer(self, name: str, defer: Message | None) -> None:
        """A statement of ``name``, whose certificate is not known here: park ``defer`` (a
        datagram's message) and ask its sender for the certificate, or (from a stream,
        nothing to park) bring the next anti-entropy exchange forward."""
        self._counters.inc("identity_unknown_signer")  # normal while members join: no warning
        if defer is None:
            self._check_soon()
            return
        waiting = self._pending_certs.get(name)
        if waiting is None:
            if len(self._pending_certs) >= _MAX_PENDING_SIGNERS:
                dropped = self._pending_certs.pop(next(iter(self._pending_certs)))
                self._counters.inc("identity_pending_dropped", len(dropped))
            waiting = self._pending_certs[name] = []
        if len(waiting) >= _MAX_PENDING_PER_SIGNER:
            waiting.pop(0)
            self._counters.inc("identity_pending_dropped")
        waiting.append(defer)
        asked = self._cert_asked.get(name)
        if asked is None or self._now - asked >= self.config.probe_interval:
            if len(self._cert_asked) >= 4 * _MAX_PENDING_SIGNERS:
                self._cert_asked.clear()
            self._cert_asked[name] = self._now
            self._counters.inc("identity_certificates_asked")
            self._send(self._from, [CertWant(name)])

    def _answer_cert_want(self, msg: CertWant) -> None:
        if self.trust is None or self.identity is None:
            return
        if msg.name == self.name:
            der: bytes | None = self.identity.certificate_der
        else:
            fps = self.trust.fingerprints(msg.name)
            der = self.trust.certificate(msg.name, fps[0]) if fps else None
        if der is not None:
            self._counters.inc("identity_certificates_sent")
            self._send(self._from, [Cert(msg.name, der)])

    def _on_cert(self, msg: Cert, now: float) -> None:
        """A certificate this member asked for: admit it, then handle what waited for it."""
        if self.trust is None or msg.name not in self._pending_certs:
            return  # only certificates asked for are admitted
        if self.trust.admit(msg.name, msg.certificate, self._wall()) is None:
            self._refused("identity_bad_certificate")
            return
        self._cert_asked.pop(msg.name, None)
        for waiting in self._pending_certs.pop(msg.name):
            self._handle(waiting, now)

    def _authorised_members(self, entries: list[tuple[Member, Alive | None]]) -> list[Member]:
        """With identities: the push-pull member states to merge. An alive or suspect entry
        needs the member's signed alive for exactly that state; a dead or left entry (an
        accusation, which the accused can refute) is taken unsigned unless it would move
        the member's incarnation more than one past what this member holds."""
        if self.trust is None:
            return [m for m, _ in entries]
        out = []
        for m, proof in entries:
            if m.state in (MemberState.ALIVE, MemberState.SUSPECT):
                if proof is None:
                    self._refused("identity_unsigned")
                    continue
                if not self._authorised_alive(proof):
                    continue
            elif proof is None or not self._authorised_alive(proof):
                known = self.membership.get(m.name)
                if known is not None and m.incarnation > known.incarnation + 1:
                    self._refused("identity_unsigned")
                    continue
            out.append(m)
        return out


    def _stream_send(self, sid: StreamId, address: Address, obj: list[Any]) -> None:
        """Queue ``obj`` on ``sid`` as sealed chunks (:mod:`~gossipreg.core.chunks`)."""
        seq = self._chunks_out.get(sid, 0)
        frames = chunks.seal_chunks(self.keyring, self._stream_label, codec.pack_stream(obj),
                                    initiator=role_of(sid) is Role.INITIATOR, seq=seq)
        self._chunks_out[sid] = seq + len(frames)
        self._counters.inc("stream_messages_sent")
        for data in frames:
            self._counters.inc("stream_bytes_sent", len(data))
            self._outbox.append(SendStream(sid, address, data))

    def _close_stream(self, sid: StreamId) -> None:
        """Close ``sid`` and forget its chunk state."""
        self._outbox.append(CloseStream(sid))
        self._forget_stream(sid)

    def _forget_stream(self, sid: StreamId) -> None:
        self._chunks_out.pop(sid, None)
        self._chunks_in.pop(sid, None)

    def _fail_push_pull(self, sid: StreamId, reason: str, *, permanent: bool = False) -> bool:
        """Abandon the push-pull on ``sid`` and close it; False if there was none."""
        pp = self._pushpulls.pop(sid, None)
        if pp is None:
            return False
        self._counters.inc("push_pulls_failed")
        self._observed.push_pull_ended(sid, self._now, completed=False)
        if pp.join and role_of(sid) is Role.INITIATOR:
            self._events.append(JoinResult(pp.address, False, reason, permanent))
        self._close_stream(sid)
        return True

    def _abort_stream(self, sid: StreamId, reason: str, *, permanent: bool = False) -> None:
        """Close ``sid`` after bad input, failing its push-pull if any (one CloseStream)."""
        if not self._fail_push_pull(sid, reason, permanent=permanent):
            self._close_stream(sid)

    def _refuse_stream(self, sid: StreamId, cause: str) -> None:
        """Write a refusal saying ``cause`` on inbound stream ``sid``, whose first frame
        this member cannot accept (at most :data:`REFUSALS_PER_SECOND`); the caller closes it."""
        now = self._now
        self._refusal_tokens = min(
            REFUSALS_PER_SECOND, self._refusal_tokens + (now - self._refusal_at) * REFUSALS_PER_SECOND
        )
        self._refusal_at = now
        if self._refusal_tokens < 1:
            return
        self._refusal_tokens -= 1
        self._counters.inc("stream_refusals_sent")
        self._outbox.append(SendStream(sid, self._from, chunks.refusal(chunks.REFUSAL_CODES[cause])))

    def stream_failed(
        self, stream: StreamId, now: float, reason: str = "stream failed", *, permanent: bool = False
    ) -> None:
        """The driver could not open, or lost, ``stream`` (or it ended: drivers call this
        for every stream they close, so its state goes). ``permanent``: for a join, the
        reason will not change by retrying (say, the address speaks another protocol)."""
        self._now = now
        self._fail_push_pull(stream, reason, permanent=permanent)
        self._forget_stream(stream)

    def receive_stream(self, stream: StreamId, address: tuple[str, int], data: bytes, now: float) -> bool:
        """Handle one frame (a sealed chunk) received on ``stream`` from ``address``.

        A message is handled when its last chunk arrives. Never raises for bad
        input: a frame that does not authenticate, or a message that does not
        decode or exceeds ``Config.max_stream_frame``, closes the stream.

        Returns:
            whether the frame authenticated (always, without a keyring). A
            driver holds an inbound stream to a tighter budget until the first
            frame does.
        """
        self._now = now
        self._from = Address(*address)
        c = self._counters
        c.inc("stream_bytes_received", len(data))
        if self._left:
            return False
        # The peer sent this as the initiator if this member's end is the inbound one.
        inbound = role_of(stream) is Role.RESPONDER
        first = stream not in self._chunks_in
        seq, partial = self._chunks_in.get(stream, (0, None))
        if first and not inbound:
            refused = chunks.read_refusal(data)
            if refused is not None:  # the peer could not accept this member's first frame
                c.inc("stream_refusals_received")
                self._abort_stream(stream, f"refused: {refused}", permanent=True)
                return False
        try:
            flag, piece = chunks.open_chunk(
                self.keyring, self._stream_label, data, initiator=inbound, seq=seq
            )
        except AuthenticationError:
            cause = "plaintext_rejected" if _plaintext_chunk(data) else "auth_failures"
            self._refused(cause)
            if first and inbound:
                self._refuse_stream(stream, cause)
            self._abort_stream(stream, "authentication failed")
            return False
        except DecodeError:
            self._refused("decode_errors")
            self._abort_stream(stream, "malformed stream chunk")
            return self.keyring is not None
        if partial is None:
            partial = bytearray()
        if self.keyring is None and not partial and piece[:1] != bytes([codec.PROTOCOL_VERSION]):
            # A message starts with the protocol version; a sealed frame (version 1, which
            # also reads as the last-chunk flag) reached this plaintext member.
            sealed = data[:1] == b"\x01"
            self._refused("sealed_received_while_insecure" if sealed else "decode_errors")
            if sealed and first and inbound:
                self._refuse_stream(stream, "sealed_received_while_insecure")
            self._abort_stream(stream, "not a plaintext stream message")
            return False
        if len(partial) + len(piece) > self.config.max_stream_frame:
            c.inc("stream_messages_too_large")
            self._abort_stream(stream, "stream message too large")
            return True
        partial += piece
        if flag == chunks.MORE:
            self._chunks_in[stream] = (seq + 1, partial)
            return True
        self._chunks_in[stream] = (seq + 1, bytearray())
        c.inc("stream_messages_received")
        try:
            obj = codec.unpack_stream(bytes(partial))
            self._on_stream(stream, Address(*address), obj, now)
        except DecodeError:
            self._refused("decode_errors")
            self._abort_stream(stream, "malformed stream message")
        self._after(now)
        return True

    def _on_stream(self, sid: StreamId, address: Address, obj: list[Any], now: float) -> None:
        """Handle one push-pull message (:mod:`~gossipreg.core.pushpull`): check it is the
        one expected of this member's role at this step, then its handler."""
        kind = obj[0]
        pp = self._pushpulls.get(sid)
        if not pushpull.expects(kind, role_of(sid), pp):
            raise DecodeError(f"unexpected stream message type {shown(kind)} at this point")
        if kind == codec.PP_CHECK:
            self._on_check(sid, address, obj)
        elif kind == codec.PP_INIT:
            self._on_init(sid, address, obj, now)
        else:
            assert pp is not None  # pushpull.expects: every other message continues an exchange
            if kind == codec.PP_CHECK_REPLY:
                self._on_check_reply(sid, pp, obj, now)
            elif kind == codec.PP_REPLY:
                self._on_reply(sid, pp, obj, now)
            elif kind == codec.PP_RECONCILE:
                self._on_reconcile(sid, address, obj, now)
            else:
                self._on_fetch(sid, pp, obj, now)

    def _on_check(self, sid: StreamId, address: Address, obj: list[Any]) -> None:
        """Responder: compare the initiator's summaries with ours, answer, close."""
        _, members_fp, catalog_root = _args(obj, 3)
        same = (
            type(members_fp) is int
            and type(catalog_root) is int
            and members_fp == self.membership.fingerprint()
            and catalog_root == self.catalog.root()
        )
        self._stream_send(sid, address, [codec.PP_CHECK_REPLY, same])
        self._close_stream(sid)

    def _on_check_reply(self, sid: StreamId, pp: Exchange, obj: list[Any], now: float) -> None:
        """Initiator: done if the summaries matched, else open the full push-pull."""
        _, same = _args(obj, 2)
        if type(same) is not bool:
            raise DecodeError("push-pull check reply: expected a bool")
        del self._pushpulls[sid]
        self._close_stream(sid)
        if same:
            self._counters.inc("push_pull_checks_matched")
        else:
            self._start_push_pull(pp.address, now, join=False)

    def _on_init(self, sid: StreamId, address: Address, obj: list[Any], now: float) -> None:
        """Responder: merge the initiator's members, offer what its digest lacks."""
        _, join, members, digest = _args(obj, 4)
        if type(join) is not bool:
            raise DecodeError("push-pull init: join must be a bool")
        remote = self._authorised_members(codec.decode_member_proofs(members))
        peer_digest = codec.decode_digest(digest)
        self._merge_members(remote, now)
        offer = self.catalog.offer(peer_digest, now)
        self._pushpulls[sid] = Exchange(address, join, now + self.config.stream_timeout, Step.REPLY_SENT)
        offer = offer._replace(records=self._signed_transfers(offer.records))
        reply = [codec.PP_REPLY, self._member_states(), codec.encode_offer(offer)]
        self._stream_send(sid, address, reply)
        self._counters.inc("push_pulls_answered")

    def _on_reply(self, sid: StreamId, pp: Exchange, obj: list[Any], now: float) -> None:
        """Initiator: merge the responder's members and offer, push and ask for the rest."""
        _, members, offer_obj = _args(obj, 3)
        remote = self._authorised_members(codec.decode_member_proofs(members))
        offer = codec.decode_offer(offer_obj)
        self._merge_members(remote, now)
        self._merge_transfers(offer.records, now, regossip=pp.regossip)
        push, want = self.catalog.reconcile(offer._replace(records=[]), now)
        pp.step = Step.RECONCILE_SENT
        self._stream_send(sid, pp.address, [codec.PP_RECONCILE,
                                            [codec.encode_transfer(r, a)
                                             for r, a in self._signed_transfers(push)],
                                            codec.encode_hashes(want)])
        if pp.join:
            self._events.append(JoinResult(pp.address, True))
            pp.join = False
            # Announce ourselves down our own broadcast tree, now that we know the
            # members; and push-pull again soon, to catch members that joined
            # concurrently through other seeds (their news may not have reached
            # our seed yet).
            self._tree_pending.append(self._encode(self.membership.local_alive(), with_certificate=True))
            soon = now + 2 * self.config.probe_interval
            self._next_push_pull = min(self._next_push_pull, soon)

    def _on_reconcile(self, sid: StreamId, address: Address, obj: list[Any], now: float) -> None:
        """Responder: merge what was pushed, send what was asked for, close."""
        _, push_obj, want_obj = _args(obj, 3)
        push = codec.decode_transfers(push_obj)
        want = codec.decode_hashes(want_obj)
        self._merge_transfers(push, now, regossip=True)
        fetched = self.catalog.fetch(want, now)
        # Where this member now holds something newer than what the initiator pushed (an
        # owner-authority correction of it, or a write that arrived since the offer), that
        # goes back too: the initiator ends the exchange holding this member's current state.
        sent = {r.key for r, _ in fetched}
        newer = []
        for rec, _age in push:
            current = self.catalog.get(rec.key)
            if current is not None and current != rec and rec.key not in sent:
                sent.add(rec.key)
                newer.append(key_hash(rec.key))
        fetched.extend(self.catalog.fetch(newer, now))
        transfers = [codec.encode_transfer(r, a) for r, a in self._signed_transfers(fetched)]
        self._stream_send(sid, address, [codec.PP_FETCH, transfers])
        del self._pushpulls[sid]
        self._counters.inc("push_pulls_completed")
        self._close_stream(sid)

    def _on_fetch(self, sid: StreamId, pp: Exchange, obj: list[Any], now: float) -> None:
        """Initiator: merge what was fetched; the exchange is complete."""
        _, fetched_obj = _args(obj, 2)
        fetched = codec.decode_transfers(fetched_obj)
        self._merge_transfers(fetched, now, regossip=pp.regossip)
        del self._pushpulls[sid]
        self._counters.inc("push_pulls_completed")
        self._observed.push_pull_ended(sid, now, completed=True)
        if self._resync:
            self._synced_with(pp.address, sid)
        self._close_stream(sid)

    def _merge_members(self, remote: list[Member], now: float) -> None:
        for outcome in self.membership.merge_remote(remote, now):
            for b in outcome.broadcast:
                if self.identity is not None and isinstance(b, Alive) and b.name != self.name:
                    # Gossip another member's alive only with its own signature (the proof
                    # its state carried); receivers refuse it otherwise.
                    proof = self._alive_proofs.get(b.name)
                    if proof is None or proof != b:
                        continue
                    b = proof
                self._queue_message(b)
        if self.identity is not None:
            self._prune_proofs()

    def _merge_transfers(
        self, items: list[tuple[Record, float]], now: float, *, regossip: bool
    ) -> MergeResult:
        """Merge records received on a stream, and gossip on what was new here.

        Anti-entropy repairs what gossip missed; passing the repaired records on
        spreads the repair at gossip speed instead of one push-pull at a time
        (after a partition heals, say). Owner-authority corrections are always
        gossiped; with ``regossip`` false (this member's own join, which brings
        it what everyone else has) nothing else is.
        """
        if self.trust is not None:
            items = [(r, a) for r, a in items if self._authorised_record(r)]
        result = self.catalog.merge_aged(items, now)
        if regossip:  # not this member's own join: what it brings is old news
            self._observe_spread(result.accepted)
        for rec in (*(result.accepted if regossip else ()), *result.reply):
            self._queue_record(rec)
        if result.rejected:
            self._refused("records_rejected_drift", result.rejected)
        return result


    def _observe_spread(self, accepted: list[Record]) -> None:
        """Spread time of other owners' records first merged here (reads the wall clock)."""
        if accepted:
            stamps = [r.stamp for r in accepted if r.owner != self.name]
            if stamps:
                self._observed.records_merged(stamps, self._wall())


def _plaintext_chunk(frame: bytes) -> bool:
    """Whether a stream frame that did not authenticate is a plaintext chunk (its flag,
    then a message: the protocol version and one msgpack document) rather than a frame
    sealed with another key.

    A sealed frame starts with the key version (1, which reads as the ``LAST`` flag) and
    then a nonce whose bytes are random: its second byte is the protocol version one
    time in 256, so a last chunk counts as plaintext only if the rest is one whole
    msgpack document too (a first chunk of several is a ``MORE``, never a key version).
    """
    if len(frame) < 2 or frame[1] != codec.PROTOCOL_VERSION:
        return False
    if frame[0] == chunks.MORE:
        return True
    try:
        codec.unpack(frame[2:])
    except DecodeError:
        return False
    return True


def _args(obj: list[Any], n: int) -> list[Any]:
    if len(obj) != n:
        raise DecodeError(f"stream message: expected {n} items, got {len(obj)}")
    return obj

