"""The catalog: the replicated view of registrations, as a state-based CRDT.

Every member holds one :class:`Catalog`. It is pure: no IO, no clock of its
own (time-dependent methods take ``now``, a monotonic reading in seconds, and
stamps come from an injected :class:`~gossipreg.core.hlc.HybridClock`).

Records
    One :class:`Record` per key ``(service name, version, node id)``. It holds
    the node, the service-level metadata and endpoints, the owner member's
    name, a hybrid-logical-clock stamp, a lease (``ttl`` seconds or ``None``)
    and a ``deleted`` flag (a tombstone).

Merge
    Last-writer-wins per key, ordered by ``(stamp, owner, deleted)`` and, only
    if all of those tie (which an honest cluster never produces), by the
    record's canonical encoding. The order is total, so merge is a join:
    commutative, associative and idempotent, and every member that has seen
    the same records holds the same state whatever the delivery order.

Leases
    A registration with a ttl is leased by its *owner*: the owner counts the
    lease on its own monotonic clock from the last registration or renewal,
    and when it runs out unrenewed the owner deregisters it (a tombstone,
    disseminated like any deregistration). Renewing an unchanged registration
    (registering it again, ``keep_alive``) restarts the lease at the owner
    only: no new version, no watch event, nothing sent. Other members keep
    the record while its owner is alive, which is what a renewal would tell
    them; when the owner dies or leaves, owner liveness hides it anyway. No
    clock of any other machine is involved, so clock skew cannot move an
    expiry. (go-micro's gossip registry sent ``sender_wall_clock + ttl`` and
    every receiver compared it with its own wall clock, so skew moved
    expiries; and its renewals were full re-registrations, a broadcast each:
    at 5,000 services renewing a 30 s ttl every 10 s, 500 broadcasts a
    second.) Changing anything (the node, the service fields, the ttl)
    issues a newer version, as before. Transfers carry a tombstone's *age*
    on the sender's clock, so every member collects it at about the same time
    (0 for live records).

Owner liveness
    The node core calls :meth:`Catalog.owner_down` when membership declares a
    member dead or left and :meth:`Catalog.owner_up` when it is alive again.
    A down owner's records leave the view (with ``delete`` events) but stay
    stored; :meth:`Catalog.purge_owner` drops them for good once the member
    is reaped.

Returning owners
    An owner that comes back after being down (it refuted its death, or a
    partition healed) may have changed its registrations meanwhile, and the
    stored copy is what it registered *before*. Showing that copy at once
    would bring back services it deregistered while away. So
    :meth:`Catalog.owner_up` of an owner known down, whose records are
    stored, puts it *in resync*: its records take part in anti-entropy again
    but stay out of the view until :meth:`Catalog.owner_synced` (the node
    core calls it when a push-pull it started with that owner completes,
    which brings the owner's current records, tombstones included).

Owner authority
    A member is the authority on records it owns. If it receives a record that
    names it as owner but is not what it currently registers (a previous
    process's registration after a restart, or a forgery), it answers with a
    newer version: its current registration, or a tombstone. Restarted members
    therefore clear their old registrations as soon as they see them.

Shared node ids
    Two live members may register the same key (a copied configuration). The
    newer registration wins the merge and is shown everywhere; the other owner
    keeps its own registration (in its local set, renewed and expired there
    silently), counts and reports the conflict (:meth:`Catalog.take_conflicts`),
    and re-asserts it with a fresh stamp as soon as the shown one is withdrawn
    (a tombstone of that owner) or its owner goes down
    (:meth:`Catalog.owner_down`, :meth:`Catalog.take_outgoing`). Deregistering
    a registration shown as another owner's sends nothing.

Tombstones
    Deletions are tombstones kept ``tombstone_ttl`` seconds (default 3600)
    after this member received them, then collected. ``tombstone_ttl`` must be
    at least the longest lease plus the convergence bound (``max_ttl`` =
    ``tombstone_ttl - convergence_bound``), so that when a tombstone is
    collected no member can still hold a live copy it could resurrect through
    anti-entropy. Expired records are collected the same way.

Anti-entropy
    :meth:`Catalog.digest` summarises the state per owner as ``(newest stamp,
    fingerprint)``, the fingerprint being the XOR of a 64-bit hash of every
    ``(key, stamp)`` of that owner's records. A push-pull is four messages:

    1. the initiator sends its digest;
    2. the responder answers with :meth:`Catalog.offer`: for each owner whose
       summary differs, its *key versions* (64-bit key hash -> stamp), plus
       the whole records of owners the initiator does not know;
    3. the initiator's :meth:`Catalog.reconcile` merges those and works out
       exactly which records the responder lacks (sent) and which it wants
       (requested by key hash);
    4. the responder merges what it was sent and answers the request with
       :meth:`Catalog.fetch`.

    Only owners that differ cost more than a digest entry, and only the
    records that differ are sent, so an exchange costs in proportion to the
    difference, not to the catalog size. It is exact whatever order gossip
    delivered things in: a member that missed an old update and received a
    newer one of another key still gets the old one. A joining member can
    instead take :meth:`Catalog.export`, the full state.

Views
    :meth:`Catalog.get_service` and :meth:`Catalog.list_services` are answered
    from an index and a per-name cache of immutable :class:`Service` objects,
    so a read costs O(size of the answer).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from .errors import ClockDriftError, InvalidServiceError, NotFoundError, RegistrationLimitError
from .hlc import HybridClock
from .layered import LayeredDict
from .model import EMPTY_METADATA, Endpoint, Node, Service

__all__ = [
    "DEFAULT_CONVERGENCE_BOUND",
    "DEFAULT_TOMBSTONE_TTL",
    "Catalog",
    "CatalogEvent",
    "Digest",
    "Key",
    "MergeResult",
    "Offer",
    "Record",
    "key_hash",
    "sync_pair",
]

#: Default seconds a tombstone (or an expired record) is kept before collection.
DEFAULT_TOMBSTONE_TTL = 3600.0
#: Default bound, in seconds, on the time a change needs to reach every member
#: through anti-entropy: ten push-pull rounds at the lan interval, which covers
#: memberlist's push-pull interval scaling up to 10,000 members (30 s x 10).
DEFAULT_CONVERGENCE_BOUND = 300.0

Key = tuple[str, str, str]
"""A record key: ``(service name, version, node id)``."""

Action = Literal["create", "update", "delete"]

_INF = math.inf


@dataclass(frozen=True, slots=True)
class Record:
    """One registration (or its tombstone): the unit of replication.

    Records are built by :meth:`Catalog.register`/:meth:`Catalog.deregister`
    locally and by the codec from validated wire data.
    """

    service: str
    """Service name."""
    version: str
    """Service version."""
    node_id: str
    """Node id, unique within (service, version)."""
    owner: str
    """Name of the member that wrote this version."""
    stamp: int
    """Hybrid-logical-clock stamp of the write (see :mod:`gossipreg.core.hlc`)."""
    ttl: float | None = None
    """Lease in seconds, or ``None``: live as long as the owner is."""
    deleted: bool = False
    """True for a tombstone."""
    node: Node | None = None
    """The node; ``None`` in a tombstone."""
    metadata: Mapping[str, str] = field(default_factory=lambda: EMPTY_METADATA)
    """Service-level metadata."""
    endpoints: tuple[Endpoint, ...] = ()
    """Service-level endpoints."""
    signature: bytes = field(default=b"", compare=False)
    """The owner's signature over the record (member identities), or ``b""``.
    Not part of the record's identity: equality, order and hash ignore it."""

    @property
    def key(self) -> Key:
        """The record's key ``(service, version, node_id)``."""
        return (self.service, self.version, self.node_id)

    def order(self) -> tuple[int, str, bool]:
        """The last-writer-wins order: greater wins."""
        return (self.stamp, self.owner, self.deleted)

    def __hash__(self) -> int:
        return hash((self.service, self.version, self.node_id, self.stamp, self.owner, self.deleted))

    def wins_over(self, other: Record) -> bool:
        """Whether this record replaces ``other`` (same key) under last-writer-wins."""
        a = (self.stamp, self.owner, self.deleted)
        b = (other.stamp, other.owner, other.deleted)
        if a != b:
            return a > b
        if self == other:
            return False
        # Only forged or corrupt input ties here; break it deterministically.
        return _canonical(self) > _canonical(other)


def _order_key(r: Record) -> tuple[int, str, bool, str]:
    """Sort key consistent with :meth:`Record.wins_over` (for max over distinct keys)."""
    return (r.stamp, r.owner, r.deleted, r.node_id)


def _node(r: Record) -> Node:
    assert r.node is not None, "only live records enter the view"
    return r.node


def _canonical(r: Record) -> str:
    # Equal records must encode equally: sorted keys (equal metadata maps may iterate in
    # different orders) and the ttl as a float (``5 == 5.0``).
    return json.dumps(
        [
            None if r.ttl is None else float(r.ttl),
            r.node.to_dict() if r.node is not None else None,
            dict(r.metadata),
            [e.to_dict() for e in r.endpoints],
        ],
        sort_keys=True,
    )


_M64 = (1 << 64) - 1


def key_hash(key: Key) -> int:
    """A stable 64-bit hash of a key, the same on every member (unlike ``hash``)."""
    data = "\x00".join(key).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _fingerprint(khash: int, stamp: int) -> int:
    """A 64-bit mix of ``(key hash, stamp)`` (splitmix64's finaliser); XOR-combined per owner."""
    z = (khash ^ stamp) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class CatalogEvent(NamedTuple):
    """A change of the local view of one key, for watchers.

    ``node`` is the node created, updated or (for ``delete``) removed.
    """

    action: Action
    record: Record
    """The record now in force (for ``delete``, the record that was removed)."""
    node: Node

    @property
    def service(self) -> Service:
        """The change as a go-micro ``Result`` service: the changed node only."""
        r = self.record
        return Service._trusted(r.service, r.version, r.metadata, r.endpoints, (self.node,))


def _event(action: Action, rec: Record) -> CatalogEvent:
    assert rec.node is not None, "only live records enter the view"
    return CatalogEvent(action, rec, rec.node)


class MergeResult(NamedTuple):
    """What :meth:`Catalog.merge` did."""

    accepted: list[Record]
    """Records new to this member: re-gossip these."""
    reply: list[Record]
    """Corrections this member issued as owner authority: disseminate these."""
    rejected: int
    """Records refused for clock drift."""


Digest = dict[str, tuple[int, int]]
"""Per owner: ``(newest stamp, fingerprint of all its (key, stamp) pairs)``."""


class Offer(NamedTuple):
    """The responder's answer to a digest in a push-pull (see :meth:`Catalog.offer`)."""

    versions: dict[str, dict[int, int]]
    """For each owner whose summary differs: key hash -> stamp of every record it has."""
    records: list[tuple[Record, float]]
    """``(record, age)`` of owners the initiator does not know at all."""
    absent: list[str]
    """Owners the initiator knows and the responder does not."""


class _Entry:
    __slots__ = ("dead_at", "khash", "record", "visible")

    def __init__(self, record: Record, khash: int, dead_at: float) -> None:
        self.record = record
        self.khash = khash  # 64-bit hash of the key, for anti-entropy
        self.dead_at = dead_at  # when it became a tombstone or expired, inf if live
        self.visible = False


class _Owner:
    __slots__ = ("fingerprint", "keys", "live", "max_stamp")

    def __init__(self) -> None:
        self.keys: set[Key] = set()
        self.max_stamp = 0
        self.fingerprint = 0
        self.live = 0  # stored records that are not tombstones (the per-owner limit)


class Catalog:
    """The registration CRDT of one member.

    Args:
        name: this member's name; the owner of records it registers.
        clock: the hybrid logical clock that stamps local writes and checks
            remote stamps for drift.
        tombstone_ttl: seconds a tombstone or expired record is kept.
        convergence_bound: seconds a change needs to reach every member; the
            longest accepted lease is ``tombstone_ttl - convergence_bound``.
        owners_up_by_default: whether records of an owner never reported to
            :meth:`owner_up`/:meth:`owner_down` are visible.
        max_records_per_owner: most records (tombstones aside) stored for one
            owner; this member's own registrations past it raise
            :class:`RegistrationLimitError`, a peer's are refused and counted
            (``over_owner_limit``). None: no limit.
    """

    def __init__(
        self,
        name: str,
        clock: HybridClock,
        *,
        tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL,
        convergence_bound: float = DEFAULT_CONVERGENCE_BOUND,
        owners_up_by_default: bool = True,
        max_records_per_owner: int | None = None,
    ) -> None:
        if not name:
            raise ValueError("catalog name must not be empty")
        if not convergence_bound > 0 or not tombstone_ttl > convergence_bound:
            raise ValueError(
                f"tombstone_ttl ({tombstone_ttl}) must exceed convergence_bound ({convergence_bound})"
            )
        self.name = name
        self.clock = clock
        self.tombstone_ttl = float(tombstone_ttl)
        self.max_ttl = float(tombstone_ttl - convergence_bound)
        self._default_up = owners_up_by_default
        self.max_records_per_owner = max_records_per_owner
        self._records: dict[Key, _Entry] = {}
        self._by_hash: dict[int, Key] = {}
        self._owners: dict[str, _Owner] = {}
        self._owner_up: MutableMapping[str, bool] = {}
        # Owners back from down whose records stay hidden until a push-pull with them.
        self._resync: set[str] = set()
        # Owner -> the stamp its current process began at: older records are a previous
        # process's (see owner_epoch).
        self._epochs: dict[str, int] = {}
        self._local: dict[Key, Record] = {}
        # View index: name -> version -> node id -> record, visible records only.
        self._view: dict[str, dict[str, dict[str, Record]]] = {}
        # The newest visible record of each (name, version): its service-level fields win.
        self._heads: dict[tuple[str, str], Record] = {}
        self._service_cache: dict[str, list[Service]] = {}
        self._list_cache: list[Service] | None = None
        # Lazy heaps of (time, key, stamp); stale entries are skipped.
        # This member's own leases: key -> when it ends on the local clock, and a lazy heap.
        self._leases: dict[Key, float] = {}
        self._expiries: list[tuple[float, Key]] = []
        # Registrations this member re-asserted on its own (a registration it shared with
        # another owner, whose record went away), to disseminate: see take_outgoing.
        self._outgoing: list[Record] = []
        # (key, other owner, this member's record shown) per conflict, for the driver's log.
        self._conflict_log: list[tuple[Key, str, bool]] = []
        self._collections: list[tuple[float, Key, int]] = []
        self._events: list[CatalogEvent] = []
        #: Counters: ``merged``, ``duplicates``, ``stale``, ``rejected_drift``,
        #: ``expired``, ``collected``, ``corrections``, ``conflicts``, ``over_owner_limit``,
        #: ``previous_process``, ``renewals``.
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "merged",
                "duplicates",
                "stale",
                "rejected_drift",
                "expired",
                "collected",
                "corrections",
                "conflicts",
                "over_owner_limit",
                "previous_process",
                "renewals",
            ),
            0,
        )

    # ------------------------------------------------------------------ reads

    def __len__(self) -> int:
        """Number of stored records, tombstones and hidden records included."""
        return len(self._records)

    def get(self, key: Key) -> Record | None:
        """The stored record for ``key`` (visible or not), or ``None``."""
        e = self._records.get(key)
        return e.record if e is not None else None

    def is_visible(self, key: Key) -> bool:
        """Whether ``key`` is in the view (live, unexpired, owner up)."""
        e = self._records.get(key)
        return e is not None and e.visible

    def records(self) -> list[Record]:
        """Every stored record, in key order."""
        return [self._records[k].record for k in sorted(self._records)]

    def local_records(self) -> list[Record]:
        """The registrations this member currently asserts as owner."""
        return list(self._local.values())

    def get_service(self, name: str) -> list[Service]:
        """One :class:`Service` per version of ``name``, holding its live nodes.

        Versions are sorted by version string and nodes by id. The services
        are immutable and shared between callers.

        Raises:
            NotFoundError: no live node of that service is in the view.
        """
        cached = self._service_cache.get(name)
        if cached is None:
            versions = self._view.get(name)
            if not versions:
                raise NotFoundError(f"service {name!r} not found")
            cached = self._service_cache[name] = [
                self._build(self._heads[(name, v)], versions[v]) for v in sorted(versions)
            ]
        return list(cached)

    def list_services(self) -> list[Service]:
        """One :class:`Service` per (name, version) in the view, without nodes, sorted."""
        if self._list_cache is None:
            heads = self._heads
            self._list_cache = [
                Service._trusted(name, v, h.metadata, h.endpoints, ())
                for name in sorted(self._view)
                for v in sorted(self._view[name])
                for h in (heads[(name, v)],)
            ]
        return list(self._list_cache)

    @staticmethod
    def _build(head: Record, nodes: dict[str, Record]) -> Service:
        node_tuple = tuple(_node(nodes[i]) for i in sorted(nodes))
        return Service._trusted(head.service, head.version, head.metadata, head.endpoints, node_tuple)

    # ------------------------------------------------------------ local writes

    def register(self, service: Service, ttl: float | None, now: float) -> list[Record]:
        """Register every node of ``service`` as owned by this member.

        Renews the lease of nodes already registered. Returns the records to
        disseminate. ``ttl`` is rounded to whole milliseconds, as records carry it.

        Raises:
            InvalidServiceError: the service has no nodes, or ``ttl`` is not
                ``None`` or a number in ``(0, max_ttl]``.
        """
        if not isinstance(service, Service):
            raise InvalidServiceError(f"service: must be a Service, not {type(service).__name__}")
        if not service.nodes:
            raise InvalidServiceError("service.nodes: a registration needs at least one node")
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl):
                raise InvalidServiceError(f"ttl: must be a number of seconds or None, not {ttl!r}")
            # Whole milliseconds, as the codec carries it: otherwise every copy would differ
            # from the local record and owner authority would "correct" its own echoes forever.
            ms = round(ttl * 1000)
            if not 0 < ms / 1000 <= self.max_ttl:
                raise InvalidServiceError(f"ttl: {ttl} is out of range [0.001, {self.max_ttl:g}] seconds")
            ttl = ms / 1000
        limit = self.max_records_per_owner
        if limit is not None:
            new = {(service.name, service.version, n.id) for n in service.nodes} - self._local.keys()
            if len(self._local) + len(new) > limit:
                raise RegistrationLimitError(
                    f"registering {len(new)} more node(s) would give this member "
                    f"{len(self._local) + len(new)} registrations; max_records_per_owner is {limit}"
                )
        out = []
        for node in service.nodes:
            key = (service.name, service.version, node.id)
            if self._renew(key, ttl, node, service, now):
                continue
            rec = Record(
                service.name,
                service.version,
                node.id,
                self.name,
                self.clock.now(),
                ttl,
                False,
                node,
                service.metadata,
                service.endpoints,
            )
            current = self._records.get(key)
            if current is not None and not current.record.deleted and current.record.owner != self.name:
                # Another member registers this node id too: ours is newer, so it is shown.
                self._conflict(key, current.record.owner, ours_shown=True)
            self._local[rec.key] = rec
            self._lease(key, ttl, now)
            self._apply(rec, 0.0, now)
            out.append(rec)
        return out

    def _lease(self, key: Key, ttl: float | None, now: float) -> None:
        if ttl is None:
            self._leases.pop(key, None)
            return
        self._leases[key] = end = now + ttl
        heapq.heappush(self._expiries, (end, key))

    def _conflict(self, key: Key, other: str, *, ours_shown: bool) -> None:
        self.counters["conflicts"] += 1
        self._conflict_log.append((key, other, ours_shown))

    def take_conflicts(self) -> list[tuple[Key, str, bool]]:
        """Return and clear the registration conflicts seen since the last call.

        Each is ``(key, other owner, whether this member's record is the one
        shown)``: two members register the same (service, version, node id).
        The newer registration is shown everywhere; the other owner keeps its
        own and re-asserts it when the shown one is deregistered, or its owner
        dies or leaves.
        """
        out, self._conflict_log = self._conflict_log, []
        return out

    def take_outgoing(self) -> list[Record]:
        """Return and clear the records this member re-asserted on its own, to disseminate."""
        out, self._outgoing = self._outgoing, []
        return out

    def _renew(self, key: Key, ttl: float | None, node: Node, service: Service, now: float) -> bool:
        """Renew an unchanged registration in place: only its lease restarts, here.

        Returns False (a new version is needed) unless this member currently
        registers exactly this node with the same ttl and service fields.
        """
        local = self._local.get(key)
        if (
            local is None
            or local.ttl != ttl
            or local.node != node
            or local.metadata != service.metadata
            or local.endpoints != service.endpoints
        ):
            return False
        e = self._records.get(key)
        shadowed = e is not None and not e.record.deleted and e.record.owner != self.name
        if e is None or not (e.record == local or shadowed):
            return False
        self._lease(key, ttl, now)
        self.counters["renewals"] += 1
        return True

    def deregister(self, service: Service, now: float) -> list[Record]:
        """Remove this member's registrations of ``service``.

        The nodes listed in ``service`` are removed; a service with no nodes
        removes every node of that name and version this member registered.
        Nodes this member does not own are left alone. Returns the tombstones
        to disseminate.
        """
        if not isinstance(service, Service):
            raise InvalidServiceError(f"service: must be a Service, not {type(service).__name__}")
        if service.nodes:
            keys = [(service.name, service.version, n.id) for n in service.nodes]
        else:
            keys = [k for k in self._local if k[0] == service.name and k[1] == service.version]
        out = []
        for key in keys:
            current = self._records.get(key)
            self._local.pop(key, None)
            self._leases.pop(key, None)
            if current is None or current.record.owner != self.name or current.record.deleted:
                continue  # not ours, or another owner's registration of it is shown: keep that
            tomb = self._tombstone(key)
            self._apply(tomb, 0.0, now)
            out.append(tomb)
        return out

    def _tombstone(self, key: Key) -> Record:
        return Record(key[0], key[1], key[2], self.name, self.clock.now(), None, True)

    # ------------------------------------------------------------------ merge

    def is_stale(self, key: Key, stamp: int, owner: str, deleted: bool) -> bool:
        """Whether a record with these fields would change nothing here, judged
        before it is fully decoded.

        True (and counted as a duplicate or stale) if the stored record for
        ``key`` is newer, or is this very version (same stamp, owner and
        deleted flag). A tie with different content is not judged here: it
        takes the full path, where the deterministic tiebreak decides.
        """
        e = self._records.get(key)
        if e is None:
            return False
        cur = e.record
        if (cur.stamp, cur.owner, cur.deleted) > (stamp, owner, deleted):
            self.counters["stale"] += 1
            return True
        if (cur.stamp, cur.owner, cur.deleted) == (stamp, owner, deleted):
            self.counters["duplicates"] += 1
            return True
        return False

    def merge(self, records: Iterable[Record], now: float) -> MergeResult:
        """Merge remote records received just now (age 0)."""
        return self.merge_aged(((r, 0.0) for r in records), now)

    def merge_aged(self, items: Iterable[tuple[Record, float]], now: float) -> MergeResult:
        """Merge remote ``(record, age)`` pairs; ``age`` is seconds the sender held it.

        Returns the records that were new here (to re-gossip), the corrections
        this member issues as owner authority, and how many records were
        refused because their stamp was too far ahead of the local clock.
        View changes are queued for :meth:`take_events`.
        """
        accepted: list[Record] = []
        reply: list[Record] = []
        rejected = 0
        clock = self.clock
        for rec, age in items:
            current = self._records.get(rec.key)
            if current is not None and not rec.wins_over(current.record):
                self.counters["duplicates" if current.record == rec else "stale"] += 1
                continue
            if not rec.deleted and rec.stamp < self._epochs.get(rec.owner, 0) and rec.owner != self.name:
                # Written by a process of that owner before its current one: never shown.
                self.counters["previous_process"] += 1
                continue
            if (
                self.max_records_per_owner is not None
                and not rec.deleted
                and rec.owner != self.name
                and self._adds_live(rec, current)
            ):
                self.counters["over_owner_limit"] += 1
                continue
            try:
                clock.check(rec.stamp)
            except ClockDriftError:
                rejected += 1
                self.counters["rejected_drift"] += 1
                continue
            clock.observe(rec.stamp)
            if rec.owner == self.name:
                local = self._local.get(rec.key)
                if (local is None and not rec.deleted) or (local is not None and local != rec):
                    # Owner authority: this is not what we register (a previous process's
                    # registration, or a forgery). Answer with a newer version of the truth.
                    fix = self._reassert(rec.key)
                    self._apply(fix, 0.0, now)
                    reply.append(fix)
                    self.counters["corrections"] += 1
                    continue
            if rec.key in self._local and rec.owner != self.name:
                if rec.deleted:
                    # The other owner withdrew its registration of a node id this member
                    # registers too: this member's is the registration again.
                    fix = self._reassert(rec.key)
                    self._apply(fix, 0.0, now)
                    reply.append(fix)
                    continue
                if current is None or current.record.owner != rec.owner:
                    self._conflict(rec.key, rec.owner, ours_shown=False)
            self._apply(rec, age, now)
            accepted.append(rec)
            self.counters["merged"] += 1
        return MergeResult(accepted, reply, rejected)

    def _adds_live(self, rec: Record, current: _Entry | None) -> bool:
        """Whether storing live ``rec`` would take its owner past the per-owner limit."""
        if current is not None and current.record.owner == rec.owner and not current.record.deleted:
            return False  # replaces one of its own live records
        o = self._owners.get(rec.owner)
        assert self.max_records_per_owner is not None
        return o is not None and o.live >= self.max_records_per_owner

    def _reassert(self, key: Key) -> Record:
        # The clock has observed the foreign stamp, so a new stamp is newer than it.
        local = self._local.get(key)
        if local is None:
            return self._tombstone(key)
        fresh = Record(
            local.service,
            local.version,
            local.node_id,
            self.name,
            self.clock.now(),
            local.ttl,
            False,
            local.node,
            local.metadata,
            local.endpoints,
        )
        self._local[key] = fresh
        return fresh

    # ------------------------------------------------------- state machinery

    def _current(self, rec: Record) -> bool:
        """Whether ``rec`` was written by its owner's current process (as far as known)."""
        return rec.stamp >= self._epochs.get(rec.owner, 0) or rec.owner == self.name

    def owner_epoch(self, owner: str, epoch: int) -> None:
        """``owner``'s current process began at hybrid-logical-clock stamp ``epoch``.

        Its live records stamped earlier were written by a previous process
        under that name (a restart), whose registrations the new process does
        not hold: they leave the view at once, and copies still travelling
        between other members are refused (counted as ``previous_process``)
        instead of being shown until the owner's corrections arrive. An older
        epoch than the one known changes nothing.
        """
        if owner == self.name or epoch <= self._epochs.get(owner, 0):
            return
        self._epochs[owner] = epoch
        o = self._owners.get(owner)
        for key in sorted(o.keys) if o else ():
            e = self._records[key]
            if e.visible and e.record.stamp < epoch:
                e.visible = False
                self._hide(e.record)
                self._events.append(_event("delete", e.record))

    def _owner_visible(self, owner: str) -> bool:
        if owner == self.name:
            return True
        return self._owner_up.get(owner, self._default_up) and owner not in self._resync

    def _apply(self, rec: Record, age: float, now: float) -> None:
        """Store ``rec`` (which wins over what is stored) and update the view."""
        key = rec.key
        old = self._records.get(key)
        received = now - max(0.0, age)
        # Leases are counted apart (_leases), by their owner only.
        dead_at = received if rec.deleted else _INF
        if old is not None:
            khash = old.khash
        else:
            khash = key_hash(key)
            self._by_hash[khash] = key
        entry = _Entry(rec, khash, dead_at)
        self._records[key] = entry

        # Owner index and fingerprints.
        if old is not None:
            prev = old.record
            po = self._owners[prev.owner]
            po.fingerprint ^= _fingerprint(khash, prev.stamp)
            po.live -= not prev.deleted
            if prev.owner != rec.owner:
                po.keys.discard(key)
                if not po.keys:
                    del self._owners[prev.owner]
                elif prev.stamp == po.max_stamp:
                    po.max_stamp = max(self._records[k].record.stamp for k in po.keys)
        o = self._owners.get(rec.owner)
        if o is None:
            o = self._owners[rec.owner] = _Owner()
        o.keys.add(key)
        o.fingerprint ^= _fingerprint(khash, rec.stamp)
        o.live += not rec.deleted
        if rec.stamp > o.max_stamp:
            o.max_stamp = rec.stamp

        if dead_at != _INF:
            heapq.heappush(self._collections, (dead_at + self.tombstone_ttl, key, rec.stamp))

        visible = dead_at == _INF and self._owner_visible(rec.owner) and self._current(rec)
        self._set_visible(entry, old, visible)

    def _set_visible(self, entry: _Entry, old: _Entry | None, visible: bool) -> None:
        rec = entry.record
        entry.visible = visible
        if old is not None and old.visible:
            if visible:
                self._show(rec)
                self._events.append(_event("update", rec))
            else:
                self._hide(old.record)
                self._events.append(_event("delete", old.record))
        elif visible:
            self._show(rec)
            self._events.append(_event("create", rec))

    def _show(self, rec: Record) -> None:
        versions = self._view.get(rec.service)
        if versions is None:
            versions = self._view[rec.service] = {}
        nodes = versions.get(rec.version)
        if nodes is None:
            nodes = versions[rec.version] = {}
        nodes[rec.node_id] = rec
        vkey = (rec.service, rec.version)
        head = self._heads.get(vkey)
        # A replacement of the head's own key is newer than it, so it stays head.
        if head is None or head.node_id == rec.node_id or _order_key(rec) > _order_key(head):
            self._heads[vkey] = rec
            self._list_cache = None
        self._service_cache.pop(rec.service, None)

    def _hide(self, rec: Record) -> None:
        versions = self._view.get(rec.service)
        if versions is None:
            return
        nodes = versions.get(rec.version)
        if nodes is None or nodes.pop(rec.node_id, None) is None:
            return
        vkey = (rec.service, rec.version)
        if not nodes:
            del versions[rec.version]
            del self._heads[vkey]
            if not versions:
                del self._view[rec.service]
            self._list_cache = None
        elif self._heads[vkey].node_id == rec.node_id:
            self._heads[vkey] = max(nodes.values(), key=_order_key)
            self._list_cache = None
        self._service_cache.pop(rec.service, None)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`tick` has work (an expiry or collection)."""
        times = []
        if self._expiries:
            times.append(self._expiries[0][0])  # (may be stale: tick then finds nothing)
        if self._collections:
            times.append(self._collections[0][0])
        return min(times) if times else None

    def tick(self, now: float) -> list[Record]:
        """Expire leases and collect tombstones due at ``now``; events are queued.

        Returns the tombstones to disseminate: this member's registrations
        whose lease ran out without renewal are deregistered.
        """
        out: list[Record] = []
        exp = self._expiries
        while exp and exp[0][0] <= now:
            at, key = heapq.heappop(exp)
            if self._leases.get(key) != at:
                continue  # renewed, deregistered or registered again since
            del self._leases[key]
            local = self._local.pop(key, None)
            if local is None:
                continue
            # Our own lease ran out: the registration is over until registered again.
            self.counters["expired"] += 1
            e = self._records.get(key)
            if e is not None and e.record == local:
                tomb = self._tombstone(key)
                self._apply(tomb, 0.0, now)
                out.append(tomb)
            # (Shown as another owner's registration: nothing of ours to withdraw.)
        col = self._collections
        while col and col[0][0] <= now:
            at, key, stamp = heapq.heappop(col)
            e = self._records.get(key)
            # The time matters too: a record replaced by one of the same stamp (another
            # owner, or a tombstone) died later than its predecessor.
            if e is None or e.record.stamp != stamp or e.dead_at + self.tombstone_ttl != at:
                continue
            self._drop(key, e)
            self.counters["collected"] += 1
        return out

    def _drop(self, key: Key, e: _Entry) -> None:
        del self._records[key]
        if self._by_hash.get(e.khash) == key:  # a colliding key may have taken the slot
            del self._by_hash[e.khash]
        if e.visible:
            self._hide(e.record)
            self._events.append(_event("delete", e.record))
        o = self._owners[e.record.owner]
        o.keys.discard(key)
        o.fingerprint ^= _fingerprint(e.khash, e.record.stamp)
        o.live -= not e.record.deleted
        if not o.keys:
            del self._owners[e.record.owner]
        elif e.record.stamp == o.max_stamp:
            o.max_stamp = max(self._records[k].record.stamp for k in o.keys)

    def take_events(self) -> list[CatalogEvent]:
        """Return and clear the view changes queued since the last call, in order."""
        events, self._events = self._events, []
        return events

    # ---------------------------------------------------------- owner liveness

    def owner_down(self, owner: str) -> None:
        """Hide ``owner``'s records: membership declared it dead or left."""
        if owner == self.name:
            return
        self._owner_up[owner] = False
        self._resync.discard(owner)
        o = self._owners.get(owner)
        shadowing = []
        for key in sorted(o.keys) if o else ():
            e = self._records[key]
            if e.visible:
                e.visible = False
                self._hide(e.record)
                self._events.append(_event("delete", e.record))
            if key in self._local and not e.record.deleted:
                shadowing.append(key)
        for key in shadowing:
            # Its registration of a node id this member registers too is gone with it.
            fix = self._reassert(key)
            self._apply(fix, 0.0, 0.0)  # (a live record: the time of receipt plays no part)
            self._outgoing.append(fix)

    def adopt_owners_up(self, shared: Mapping[str, bool]) -> None:
        """Take owner liveness from ``shared`` (owner -> up), shared rather than copied.

        The same as calling :meth:`owner_up` or :meth:`owner_down` for each
        entry, in O(1) memory: later changes are stored as differences from
        ``shared``, which must not change. A warm start of many simulated
        members from one :class:`~gossipreg.core.membership.TableSnapshot`.

        Raises:
            ValueError: liveness was already reported for some owner.
        """
        if self._owner_up:
            raise ValueError("adopt_owners_up: liveness was already reported for some owner")
        self._owner_up = LayeredDict(shared)
        for owner in sorted(o for o in self._owners if o in shared):
            up = shared[owner]
            del self._owner_up[owner]  # let owner_up/owner_down apply the change to the view
            if up:
                self.owner_up(owner)
            else:
                self.owner_down(owner)

    def owner_up(self, owner: str) -> bool:
        """``owner`` is alive (it joined, refuted, or rejoined): show its live records.

        An owner known down whose records are stored is put in resync instead
        (see the module docstring): its records stay hidden until
        :meth:`owner_synced`. Returns whether it is in resync.
        """
        was_down = self._down(owner)
        self._owner_up[owner] = True
        if owner == self.name:
            return False
        if owner in self._resync:
            return True
        if was_down and owner in self._owners:
            self._resync.add(owner)
            return True
        self._show_owner(owner)
        return False

    def in_resync(self, owner: str) -> bool:
        """Whether ``owner``'s records are hidden until a push-pull with it completes."""
        return owner in self._resync

    def owner_synced(self, owner: str) -> None:
        """A push-pull with ``owner`` completed: this member holds its current records.

        Ends the resync begun by :meth:`owner_up` and shows its live records;
        nothing happens if ``owner`` is not in resync.
        """
        if owner in self._resync:
            self._resync.discard(owner)
            self._show_owner(owner)

    def _show_owner(self, owner: str) -> None:
        if not self._owner_visible(owner):
            return
        o = self._owners.get(owner)
        for key in sorted(o.keys) if o else ():
            e = self._records[key]
            if not e.visible and e.dead_at == _INF and self._current(e.record):
                e.visible = True
                self._show(e.record)
                self._events.append(_event("create", e.record))

    def purge_owner(self, owner: str) -> None:
        """Drop every record of ``owner`` (membership reaped it); it stays hidden."""
        if owner == self.name:
            return
        self.owner_down(owner)
        self._epochs.pop(owner, None)  # its next alive says it again
        o = self._owners.get(owner)
        for key in sorted(o.keys) if o else ():
            self._drop(key, self._records[key])

    # ------------------------------------------------------------ anti-entropy

    def _down(self, owner: str) -> bool:
        """Whether membership reported ``owner`` dead, left or reaped (not merely unknown)."""
        return self._owner_up.get(owner) is False

    def _shared(self) -> Iterable[tuple[str, _Owner]]:
        """The owners anti-entropy exchanges: all but those known to be down.

        A down owner's records stay stored (hidden) in case it comes back, but
        are not handed to other members: a member that joins after an owner
        died would otherwise receive its records, never learn that it is dead
        (so never purge them), and keep passing them on.
        """
        return ((name, o) for name, o in self._owners.items() if not self._down(name))

    def digest(self) -> Digest:
        """Per owner: ``(newest stamp, fingerprint)`` of everything stored.

        Owners known to be down are left out (see :meth:`offer`).
        """
        return {name: (o.max_stamp, o.fingerprint) for name, o in self._shared()}

    def root(self) -> int:
        """A 64-bit summary of :meth:`digest`: equal roots mean equal digests
        (but for a 2**-64 chance). A push-pull pre-check compares roots first."""
        root = 0
        for owner, (stamp, fp) in self.digest().items():
            data = owner.encode("utf-8", "surrogatepass") + stamp.to_bytes(9, "big") + fp.to_bytes(8, "big")
            root ^= int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
        return root

    def offer(self, peer: Mapping[str, tuple[int, int]], now: float) -> Offer:
        """Responder's step of a push-pull: answer the initiator's digest.

        For every owner whose summary differs from the initiator's, the offer
        lists this member's key versions (``key hash -> stamp``), so the
        initiator can work out exactly which records either side lacks. The
        records of owners the initiator does not know at all are sent whole,
        and owners only the initiator knows are named. Owners this member
        knows to be down take no part: their records are neither offered nor
        asked for.
        """
        versions: dict[str, dict[int, int]] = {}
        records: list[tuple[Record, float]] = []
        for owner, o in self._shared():
            theirs = peer.get(owner)
            if theirs is None:
                records.extend((self._records[k].record, self._age(self._records[k], now)) for k in o.keys)
            elif theirs != (o.max_stamp, o.fingerprint):
                versions[owner] = {self._records[k].khash: self._records[k].record.stamp for k in o.keys}
        absent = [owner for owner in peer if owner not in self._owners and not self._down(owner)]
        records.sort(key=lambda item: item[0].key)
        return Offer(versions, records, sorted(absent))

    def reconcile(self, offer: Offer, now: float) -> tuple[list[tuple[Record, float]], list[int]]:
        """Initiator's step: merge ``offer`` and work out the rest of the exchange.

        Returns the ``(record, age)`` pairs the responder lacks and the key
        hashes of records this member wants from it (see :meth:`fetch`).
        View changes from merging the offer are queued for :meth:`take_events`.
        """
        merged = self.merge_aged(offer.records, now)
        push: dict[Key, _Entry] = {}
        want: list[int] = []
        for fix in merged.reply:  # owner-authority corrections: the responder has what they fix
            push[fix.key] = self._records[fix.key]
        for owner in offer.absent:
            o = self._owners.get(owner)
            for k in o.keys if o and not self._down(owner) else ():
                push[k] = self._records[k]
        for owner, theirs in offer.versions.items():
            if self._down(owner):
                continue
            o = self._owners.get(owner)
            for k in o.keys if o else ():
                e = self._records[k]
                stamp = theirs.get(e.khash)
                if stamp is None or stamp < e.record.stamp:
                    push[k] = e
            for khash, stamp in theirs.items():
                key = self._by_hash.get(khash)
                if key is None:
                    want.append(khash)
                    continue
                e = self._records[key]
                mine = (e.record.stamp, e.record.owner)
                if (stamp, owner) > mine:
                    want.append(khash)
                elif (stamp, owner) < mine:
                    push[key] = e
        out = [(e.record, self._age(e, now)) for _, e in sorted(push.items())]
        return out, sorted(want)

    def fetch(self, wanted: Iterable[int], now: float) -> list[tuple[Record, float]]:
        """The ``(record, age)`` pairs stored under the given key hashes (unknown ones skipped)."""
        out = []
        for khash in wanted:
            key = self._by_hash.get(khash)
            if key is not None:
                e = self._records[key]
                out.append((e.record, self._age(e, now)))
        return out

    def export(self, now: float) -> list[tuple[Record, float]]:
        """Every stored record with its age (but those of owners known to be down):
        the full state for a joining member."""
        return [
            (e.record, self._age(e, now))
            for _, e in sorted(self._records.items())
            if not self._down(e.record.owner)
        ]

    @staticmethod
    def _age(e: _Entry, now: float) -> float:
        # Only a tombstone's age matters (its collection); leases are their owner's to count.
        return max(0.0, now - e.dead_at) if e.record.deleted else 0.0


def sync_pair(initiator: Catalog, responder: Catalog, now: float) -> int:
    """Run the four-step push-pull between two in-memory catalogs.

    The reference for drivers, which carry the same four steps over a
    stream. Returns the number of records transferred in both directions.
    """
    offer = responder.offer(initiator.digest(), now)
    push, want = initiator.reconcile(offer, now)
    responder.merge_aged(push, now)
    fetched = responder.fetch(want, now)
    initiator.merge_aged(fetched, now)
    return len(offer.records) + len(push) + len(fetched)
