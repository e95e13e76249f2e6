"""A deterministic discrete-event simulator of gossipreg clusters.

It runs N real :class:`~gossipreg.core.node.NodeCore` instances (the very code
the trio runtime drives) on a virtual clock over a simulated network. Every
byte goes through the real codec and, unless ``crypto=False``, the real
AES-GCM keyring. The only randomness is one seeded :class:`random.Random`
(the network's) plus one per member, derived from the seed, so the same seed
gives the same trace: :attr:`Simulation.trace_hash` digests every delivery.

The network model:

* per-link latency, uniform in ``latency`` (seconds); reordering follows from
  the jitter;
* independent datagram ``loss`` and ``duplicate`` probabilities;
* partitions: :meth:`Simulation.partition` splits members into groups that
  cannot reach each other (datagrams dropped, streams fail) until
  :meth:`Simulation.heal`;
* :meth:`Simulation.crash` stops a member for good (its state is lost),
  :meth:`Simulation.pause` stops it for a while (a GC pause, a starved
  process: what arrives meanwhile waits in its socket buffer and timers fire
  late), :meth:`Simulation.restart` brings a crashed member back as a fresh
  process under the same name and address.

Streams are reliable and ordered while both ends are up and connected; a
stream to a crashed or unreachable member fails after ``connect_timeout``.
A datagram reaches whichever process is up at its destination address when
it arrives (a member restarted meanwhile gets it); a stream message only
reaches the process the stream was opened to.

Scenarios inject actions at exact virtual times with :meth:`Simulation.schedule`.

Determinism: the keyring's AES-GCM nonces normally start at a random point
(``os.urandom``); the simulator restarts each member's nonce counter at a
value derived from the seed, so sealed bytes, and with them the trace hash,
are reproducible.
"""

from __future__ import annotations

import datetime
import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gossipreg import pki
from gossipreg.core.catalog import Record
from gossipreg.core.config import Config
from gossipreg.core.crypto import Keyring
from gossipreg.core.identity import Identity, TrustStore
from gossipreg.core.membership import Address, TableSnapshot
from gossipreg.core.model import Service
from gossipreg.core.node import CloseStream, NodeCore, NodeEvent, SendDatagram, SendStream, StreamId

__all__ = ["SimMember", "Simulation"]

#: Virtual wall-clock time at t = 0 (2026-01-01), for hybrid-logical-clock stamps.
EPOCH = 1_767_225_600.0
#: Simulated certificates are valid from a day before EPOCH.
_CERT_EPOCH = datetime.datetime.fromtimestamp(EPOCH - 86400, tz=datetime.UTC)
_KEY = bytes(range(32))


@dataclass
class SimMember:
    """One simulated process."""

    name: str
    address: Address
    core: NodeCore
    up: bool = True
    paused_until: float = 0.0
    backlog: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)
    timer_at: float | None = None
    skew: float = 0.0
    generation: int = 0


class Simulation:
    """N members on a virtual clock over a simulated network.

    Args:
        n: number of members to create (named ``m0000``...).
        seed: the seed of everything random.
        config: protocol parameters (default: the LAN profile).
        latency: ``(low, high)`` one-way link latency in seconds.
        loss: probability that a datagram is lost.
        duplicate: probability that a datagram is delivered twice.
        crypto: seal with a real keyring (``False`` runs plaintext, for large runs).
        identities: give every member a certificate of one cluster CA (member
            identities: signed records and alives), derived from ``seed``.
        clock_skew: members' wall clocks are offset uniformly in ``±clock_skew`` seconds.
        on_event: called as ``on_event(sim, member, event)`` for every node event.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        config: Config | None = None,
        latency: tuple[float, float] = (0.001, 0.005),
        loss: float = 0.0,
        duplicate: float = 0.0,
        crypto: bool = True,
        clock_skew: float = 0.0,
        connect_timeout: float = 0.05,
        on_event: Callable[[Simulation, SimMember, NodeEvent], None] | None = None,
        identities: bool = False,
    ) -> None:
        self.config = config or Config.lan()
        self.rng = random.Random(seed)
        self.seed = seed
        self.latency = latency
        self.loss = loss
        self.duplicate = duplicate
        self.crypto = crypto
        self.identities = identities
        # Member identities: one cluster CA, certificates derived from the seed (reproducible).
        self._ca: tuple[bytes, bytes] | None = None
        if identities:
            self._ca = pki.create_ca("simulated cluster CA", at=_CERT_EPOCH,
                                     rng=random.Random(f"{seed}/identity-ca"))
        self.clock_skew = clock_skew
        self.connect_timeout = connect_timeout
        self.on_event = on_event
        self.now = 0.0
        self._heap: list[tuple[float, int, tuple[Any, ...]]] = []
        self._seq = 0
        self.members: dict[str, SimMember] = {}
        self.by_address: dict[Address, str] = {}
        self._groups: dict[str, int] | None = None
        self._rest_group = 0
        # Last arrival time scheduled on each stream direction, to keep streams FIFO.
        self._stream_tail: dict[tuple[str, StreamId], float] = {}
        # Stream routing: (member, stream id) -> (peer member, peer's stream id, peer generation).
        self._routes: dict[tuple[str, StreamId], tuple[str, StreamId, int]] = {}
        self._in_seq = 0
        self._trace = hashlib.sha256()
        #: Counters of the simulated network.
        self.stats: dict[str, int] = dict.fromkeys(
            ("datagrams", "datagram_bytes", "lost", "duplicated", "partitioned", "to_down",
             "stream_messages", "stream_bytes", "streams_failed"), 0)
        for i in range(n):
            self.add_member(f"m{i:04d}")

    # ------------------------------------------------------------ members

    def add_member(self, name: str, *, start: bool = True) -> SimMember:
        """Create a member (not joined yet). Its address is derived from its index."""
        index = len(self.members)
        address = Address(f"10.{index // 65536}.{(index // 256) % 256}.{index % 256}", 7946)
        skew = self.rng.uniform(-self.clock_skew, self.clock_skew) if self.clock_skew else 0.0
        m = SimMember(name, address, self._new_core(name, address, skew), skew=skew)
        self.members[name] = m
        self.by_address[address] = name
        if start:
            self._reschedule(m)
        return m

    def _new_core(self, name: str, address: Address, skew: float) -> NodeCore:
        rng = random.Random(f"{self.seed}/{name}/{self.rng.random()}")
        keyring: Keyring | None = None
        if self.crypto:
            # The nonce counter starts from the seed, not os.urandom, so that sealed
            # bytes (and the trace hash) are reproducible.
            keyring = Keyring(_KEY, nonce_start=rng.getrandbits(95))
        return NodeCore(
            name,
            address,
            config=self.config,
            rng=rng,
            wall_clock=lambda: EPOCH + self.now + skew,
            now=self.now,
            keyring=keyring,
            insecure=not self.crypto,
            **self._identity_of(name),
        )

    def _identity_of(self, name: str) -> dict[str, Any]:
        """The identity and trust-store arguments of member ``name`` (none without identities)."""
        if self._ca is None:
            return {}
        cert, key = pki.create_member_cert(*self._ca, name, at=_CERT_EPOCH,
                                           rng=random.Random(f"{self.seed}/identity/{name}"))
        label = self.config.label_bytes
        return {"identity": Identity(cert, key, name=name, label=label),
                "trust": TrustStore(self._ca[0], label=label)}

    def alive_members(self) -> list[SimMember]:
        """Members whose process is up (paused ones included)."""
        return [m for m in self.members.values() if m.up]

    def live_members(self) -> list[SimMember]:
        """Members whose process is up and has not left the cluster."""
        return [m for m in self.members.values() if m.up and not m.core.left]

    def join_all(self, seed_member: str | None = None) -> None:
        """Every member joins through ``seed_member`` (default: the first)."""
        first = self.members[seed_member or next(iter(self.members))]
        for m in self.members.values():
            if m is not first and m.up:
                self.join(m.name, [first.name])

    def bootstrap(self, names: list[str] | None = None, *, shared: bool = True) -> None:
        """Start ``names`` (default: every member up) *warm*: as if they had joined
        long ago and their gossip had died down.

        With ``shared`` (the default) every member :meth:`adopts
        <gossipreg.core.node.NodeCore.adopt>` one
        :class:`~gossipreg.core.membership.TableSnapshot` of the chosen members'
        ALIVE records: the tables share it and each stores only its own
        differences from then on, so N members cost O(N) memory and time, not
        O(N^2). No node event is emitted for these joins (a
        :class:`~simulations.metrics.Tracker` is told with
        :meth:`~simulations.metrics.Tracker.warm_start`).

        With ``shared=False`` each table is fed the others' records through
        :meth:`Membership.merge_remote <gossipreg.core.membership.Membership.merge_remote>`,
        the call a push/pull makes, and the JOINED events are emitted: O(N^2)
        table entries. Both give the same protocol behaviour (the same trace
        hash); the test suite checks it.

        Either way the re-broadcasts a real join would queue are discarded (in a
        converged cluster they have long finished their retransmissions) and
        nothing is sent. A real join of N members costs O(N^2) decoded gossip
        messages (about two minutes of wall time for 1,000 members). Probe,
        gossip and push/pull schedules are the cores' own (staggered from their
        creation). Call it before the members have sent anything.
        """
        chosen = [self.members[n] for n in names] if names is not None else self.alive_members()
        # Stamped now, as merge_remote stamps the records it adds.
        records = [replace(m.core.membership.local, state_changed_at=self.now) for m in chosen]
        snapshot = TableSnapshot(records) if shared else None
        for m in chosen:
            if snapshot is not None:
                m.core.adopt(snapshot, self.now)
            else:
                m.core.membership.merge_remote([r for r in records if r.name != m.name], self.now)
            m.core.tick(self.now)  # applies the membership events; no timer is due yet
            m.core.take_outbox()  # the alive announcements a converged member would have sent
            self._drain(m)

    def join(self, name: str, seeds: list[str]) -> None:
        """``name`` joins through the named seed members."""
        m = self.members[name]
        m.core.join([self.members[s].address for s in seeds], self.now)
        self._drain(m)

    def crash(self, name: str) -> None:
        """Stop ``name`` abruptly: no leave, state lost."""
        m = self.members[name]
        m.up = False
        m.backlog.clear()
        m.timer_at = None
        m.paused_until = 0.0

    def restart(self, name: str, seeds: list[str]) -> None:
        """Bring a crashed member back as a fresh process and join through ``seeds``."""
        m = self.members[name]
        m.up = True
        m.generation += 1
        m.paused_until = 0.0
        m.core = self._new_core(name, m.address, m.skew)
        self._reschedule(m)
        self.join(name, seeds)

    def pause(self, name: str, duration: float) -> None:
        """Freeze ``name`` for ``duration`` seconds (a GC pause, a starved process)."""
        m = self.members[name]
        m.paused_until = max(m.paused_until, self.now + duration)
        self._push(m.paused_until, ("resume", name, m.generation))

    def leave(self, name: str) -> None:
        """``name`` leaves gracefully."""
        m = self.members[name]
        m.core.leave(self.now)
        self._drain(m)

    def register(self, name: str, service: Service, ttl: float | None = None) -> list[Record]:
        """``name`` registers ``service`` (as its owner) now; returns the records written."""
        m = self.members[name]
        records = m.core.register(service, ttl, self.now)
        self._drain(m)
        return records

    def deregister(self, name: str, service: Service) -> list[Record]:
        """``name`` deregisters ``service`` now; returns the tombstones written."""
        m = self.members[name]
        records = m.core.deregister(service, self.now)
        self._drain(m)
        return records

    def partition(self, *groups: list[str]) -> None:
        """Split the network: members in different groups cannot reach each other.
        Members not named form one more group."""
        mapping: dict[str, int] = {}
        for i, g in enumerate(groups):
            for name in g:
                if name not in self.members:
                    raise KeyError(f"unknown member {name!r}")
                mapping[name] = i
        self._rest_group = rest = len(groups)
        self._groups = {name: mapping.get(name, rest) for name in self.members}

    def heal(self) -> None:
        """Remove every partition."""
        self._groups = None

    def connected(self, a: str, b: str) -> bool:
        """Whether the network lets ``a`` reach ``b``."""
        groups = self._groups
        if groups is None:
            return True
        rest = self._rest_group  # members added after the split belong to the unnamed group
        return groups.get(a, rest) == groups.get(b, rest)

    # ------------------------------------------------------------ the clock

    def _push(self, at: float, event: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, event))

    def schedule(self, at: float, action: Callable[[], object]) -> None:
        """Call ``action()`` at virtual time ``at`` (at once if it is in the past).

        Actions scheduled for the same time run in the order they were scheduled,
        after the deliveries already queued for that time."""
        self._push(max(at, self.now), ("call", "", 0, action))

    def run_until(self, t: float) -> None:
        """Process every event up to virtual time ``t`` and set the clock to ``t``."""
        while self._heap and self._heap[0][0] <= t:
            at, seq, event = heapq.heappop(self._heap)
            self.now = at
            self._dispatch(seq, event)
        self.now = max(self.now, t)

    def run_for(self, seconds: float) -> None:
        """Advance virtual time by ``seconds``."""
        self.run_until(self.now + seconds)

    def run_while(self, condition: Callable[[], bool], limit: float, step: float = 0.01) -> float:
        """Advance in ``step`` increments while ``condition()`` holds, at most ``limit``
        seconds. Returns the virtual time at which it stopped."""
        end = self.now + limit
        while condition() and self.now < end:
            self.run_until(min(end, self.now + step))
        return self.now

    @property
    def trace_hash(self) -> str:
        """Digest of every delivery so far: same seed, same hash."""
        return self._trace.hexdigest()

    # ------------------------------------------------------------ dispatch

    def _dispatch(self, seq: int, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "call":
            event[3]()
            return
        if kind == "resume":
            m = self.members[event[1]]
            if m.up and m.generation == event[2] and self.now >= m.paused_until:
                backlog, m.backlog = m.backlog, []
                for s, ev in backlog:
                    self._deliver(m, s, ev)
                self._reschedule(m, force=True)
            return
        m = self.members[event[1]]
        if not m.up or (m.generation != event[2] and kind != "datagram"):
            # The process is gone (crashed, or restarted since): nothing arrives. A datagram
            # reaches whichever process listens at the address now; streams, timers and
            # stream failures belong to the process they were made for.
            if kind in ("datagram", "stream"):
                self.stats["to_down"] += 1
            if kind == "stream":
                self._stream_failed_back(event)
            return
        if self.now < m.paused_until:
            if kind != "timer":
                m.backlog.append((seq, event))
            return
        self._deliver(m, seq, event)

    def _deliver(self, m: SimMember, seq: int, event: tuple[Any, ...]) -> None:
        kind = event[0]
        core = m.core
        if kind == "timer":
            if m.timer_at is None or event[3] != m.timer_at:
                return  # superseded
            m.timer_at = None
            core.tick(self.now)
        elif kind == "datagram":
            _, _, _, src, data = event
            self._trace.update(b"d%s%s%.9f" % (m.name.encode(), hashlib.md5(data).digest(), self.now))
            core.receive_datagram(data, src, self.now)
        elif kind == "stream":
            _, _, _, sid, src, data, _sender = event
            self._trace.update(b"s%s%s%.9f" % (m.name.encode(), hashlib.md5(data).digest(), self.now))
            core.receive_stream(sid, src, data, self.now)
        elif kind == "stream_failed":
            core.stream_failed(event[3], self.now, "peer unreachable")
        self._drain(m)

    def _stream_failed_back(self, event: tuple[Any, ...]) -> None:
        sender = event[6]
        if sender is None:
            return
        name, sid, gen = sender
        self.stats["streams_failed"] += 1
        self._push(self.now + self.connect_timeout, ("stream_failed", name, gen, sid))

    # ------------------------------------------------------------ outputs

    def _drain(self, m: SimMember) -> None:
        for out in m.core.take_outbox():
            if isinstance(out, SendDatagram):
                self._send_datagram(m, out)
            elif isinstance(out, SendStream):
                self._send_stream(m, out)
            elif isinstance(out, CloseStream):
                self._routes.pop((m.name, out.stream), None)
                self._stream_tail.pop((m.name, out.stream), None)
        for ev in m.core.take_events():
            if self.on_event is not None:
                self.on_event(self, m, ev)
        self._reschedule(m)

    def _reschedule(self, m: SimMember, *, force: bool = False) -> None:
        if not m.up:
            return
        deadline = m.core.next_deadline()
        if deadline is None:
            m.timer_at = None
            return
        deadline = max(deadline, self.now)
        if force or m.timer_at is None or deadline < m.timer_at or m.timer_at < self.now:
            m.timer_at = deadline
            self._push(deadline, ("timer", m.name, m.generation, deadline))
        elif deadline > m.timer_at:
            # The core's next deadline moved later; the pending timer fires early and re-arms.
            pass

    def _link_delay(self) -> float:
        lo, hi = self.latency
        return self.rng.uniform(lo, hi)

    def _send_datagram(self, m: SimMember, out: SendDatagram) -> None:
        self.stats["datagrams"] += 1
        self.stats["datagram_bytes"] += len(out.data)
        dest = self.by_address.get(out.address)
        if dest is None:
            return
        if not self.connected(m.name, dest):
            self.stats["partitioned"] += 1
            return
        if self.loss and self.rng.random() < self.loss:
            self.stats["lost"] += 1
            return
        target = self.members[dest]
        copies = 2 if self.duplicate and self.rng.random() < self.duplicate else 1
        if copies == 2:
            self.stats["duplicated"] += 1
        for _ in range(copies):
            self._push(self.now + self._link_delay(),
                       ("datagram", dest, target.generation, m.address, out.data))

    def _send_stream(self, m: SimMember, out: SendStream) -> None:
        self.stats["stream_messages"] += 1
        self.stats["stream_bytes"] += len(out.data)
        route = self._routes.get((m.name, out.stream))
        if route is None:
            dest = self.by_address.get(out.address)
            if dest is None or not self.connected(m.name, dest):
                if dest is not None:
                    self.stats["partitioned"] += 1
                self.stats["streams_failed"] += 1
                self._fail_stream_soon(m, out.stream)
                return
            self._in_seq += 1
            peer_sid: StreamId = ("in", self._in_seq)
            target = self.members[dest]
            route = (dest, peer_sid, target.generation)
            self._routes[(m.name, out.stream)] = route
            self._routes[(dest, peer_sid)] = (m.name, out.stream, m.generation)
        dest, peer_sid, gen = route
        if not self.connected(m.name, dest):
            self.stats["partitioned"] += 1
            self.stats["streams_failed"] += 1
            self._fail_stream_soon(m, out.stream)
            return
        # Reliable and ordered: a message never overtakes the previous one on its stream.
        tail_key = (m.name, out.stream)
        at = max(self.now + self._link_delay(), self._stream_tail.get(tail_key, 0.0))
        self._stream_tail[tail_key] = at
        sender = (m.name, out.stream, m.generation)
        self._push(at, ("stream", dest, gen, peer_sid, m.address, out.data, sender))

    def _fail_stream_soon(self, m: SimMember, stream: StreamId) -> None:
        self._push(self.now + self.connect_timeout, ("stream_failed", m.name, m.generation, stream))
