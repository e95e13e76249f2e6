"""A hand-driven network of sans-IO cores: :class:`CoreNetwork`.

In the spirit of h11's ``ConnectionPair`` and aioquic's ``roundtrip``: a few
:class:`~gossipreg.core.node.NodeCore` instances, a fake monotonic clock
(:attr:`CoreNetwork.now`) and a fake wall clock derived from it, and a
delivery loop that moves each core's outbox to the right core by address
after a fixed one-way ``latency``. No trio, no socket, no real time: a test
of protocol logic runs in microseconds and the same way every time.

* :class:`~gossipreg.core.node.SendDatagram` goes to the core listening on
  its address, unless a blocked link, a down member or :attr:`CoreNetwork.drop`
  says otherwise;
* :class:`~gossipreg.core.node.SendStream` on the opener's ``("out", n)`` is
  mapped to an id this harness chooses for the acceptor (``("in", k)``) and
  back; a stream to an unreachable address, a down member or across a blocked
  link makes the opener's ``stream_failed`` run after ``connect_timeout``;
* timers: every core is ticked at its ``next_deadline()``.

The loop asserts the core's own contract as it goes: after ``tick(now)`` the
next deadline is later than ``now`` (a deadline that does not move would spin
a driver). For latency distributions, loss, partitions, pauses and thousands
of members, use the simulator (``python -m simulations``) instead.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ..core import chunks, codec
from ..core.config import Config
from ..core.crypto import Keyring
from ..core.errors import AuthenticationError, DecodeError
from ..core.membership import Address, Member, MemberState
from ..core.node import CloseStream, NodeCore, NodeEvent, SendDatagram, SendStream, StreamId
from ._cluster import TEST_KEY

__all__ = ["WALL0", "CoreNetwork", "Datagram", "decode_datagram"]

#: Fake wall clock at ``now == 0`` (2026-01-01), for HLC stamps.
WALL0 = 1_767_225_600.0


@dataclass
class Datagram:
    """One datagram the network carried (or dropped), for inspection and replay."""

    at: float
    src: str
    dst: Address
    data: bytes
    delivered: bool = True


@dataclass
class _Stream:
    opener: str
    acceptor: str
    ids: dict[str, StreamId]  # member name -> its id for this stream
    closed: set[str] = field(default_factory=set)


def decode_datagram(data: bytes, keyring: Keyring | None, label: bytes = b"") -> list[codec.Message]:
    """The messages of a datagram (opened with ``keyring`` unless None); bad ones are skipped."""
    plain = keyring.open(data, label) if keyring is not None else data
    out = []
    for raw in codec.unpack_datagram(plain):
        with contextlib.suppress(DecodeError):
            out.append(codec.decode_message(raw))
    return out


class CoreNetwork:
    """A few :class:`~gossipreg.core.node.NodeCore` members on a fake clock over a
    perfect (but breakable) network, driven by hand.

    Args:
        config: every member's protocol (default ``Config.lan()``).
        latency: one-way delay of every datagram and stream write, in seconds.
        insecure: run without a keyring (default: sealed with :data:`TEST_KEY`).
        seed: seed of the members' random generators.
        connect_timeout: seconds after which a stream to an unreachable member fails.
        wall0: the wall clock (for hybrid-logical-clock stamps) at ``now == 0``.
    """

    def __init__(
        self,
        *,
        config: Config | None = None,
        latency: float = 0.001,
        insecure: bool = False,
        seed: int = 0,
        connect_timeout: float = 0.05,
        wall0: float = WALL0,
    ) -> None:
        self.wall0 = wall0
        self.config = config if config is not None else Config.lan()
        self.latency = latency
        self.insecure = insecure
        self.seed = seed
        self.connect_timeout = connect_timeout
        #: The fake monotonic clock, in seconds.
        self.now = 0.0
        #: The members, by name.
        self.cores: dict[str, NodeCore] = {}
        self.by_address: dict[Address, str] = {}
        #: Each member's events not yet taken (:meth:`take_events`).
        self.events: dict[str, list[NodeEvent]] = {}
        #: How often each member's timers fired.
        self.ticks: Counter[str] = Counter()
        #: Every datagram sent, delivered or dropped, in order.
        self.log: list[Datagram] = []
        #: Members that are down: they receive nothing and their timers do not fire.
        self.down: set[str] = set()
        #: Directed links (src, dst) whose datagrams are dropped and new streams refused.
        self.blocked: set[tuple[str, str]] = set()
        #: Extra datagram filter: return True to drop.
        self.drop: Callable[[str, str, bytes], bool] | None = None
        #: Members whose streams cannot be opened (connect fails).
        self.unreachable_streams: set[Address] = set()
        #: Every stream message sent: (sender, its stream id, push-pull type; -1 if it did not open).
        self.stream_messages: list[tuple[str, StreamId, int]] = []
        # Per (sender, stream): chunks sent, and whether the next one starts a message.
        self._sent_chunks: dict[tuple[str, StreamId], tuple[int, bool]] = {}
        self._heap: list[tuple[float, int, int, tuple[Any, ...]]] = []
        self._seq = 0
        self._streams: dict[tuple[str, StreamId], _Stream] = {}
        self._in_seq = 0

    # ------------------------------------------------------------ members

    def keyring(self) -> Keyring | None:
        """A new keyring of the network's key (:data:`TEST_KEY`), or ``None`` when insecure."""
        return None if self.insecure else Keyring(TEST_KEY)

    def add(self, name: str, *, config: Config | None = None, keyring: Keyring | None = None,
            insecure: bool | None = None, **kwargs: Any) -> NodeCore:
        """A new member ``name`` at the next address ``10.0.0.N:7946``; ``kwargs`` go to :class:`NodeCore`.

        ``keyring`` and ``insecure`` default to the network's; ``insecure=True``
        runs this member without a keyring (to test mixed clusters).
        """
        insecure = self.insecure if insecure is None else insecure
        index = len(self.by_address) + 1
        address = Address(f"10.0.0.{index}", 7946)
        core = NodeCore(
            name,
            address,
            config=config if config is not None else self.config,
            rng=random.Random(f"{self.seed}/{name}"),
            wall_clock=lambda: self.wall0 + self.now,
            now=self.now,
            keyring=None if insecure else keyring if keyring is not None else Keyring(TEST_KEY),
            insecure=insecure,
            **kwargs,
        )
        self.cores[name] = core
        self.by_address[address] = name
        self.events[name] = []
        return core

    def restart(self, name: str, **kwargs: Any) -> NodeCore:
        """Replace ``name``'s process by a fresh one at the same address (a crash and restart
        faster than anyone notices): its streams are gone, its state starts empty."""
        old = self.cores[name]
        for key in [k for k, s in self._streams.items() if name in (s.opener, s.acceptor)]:
            del self._streams[key]
        core = NodeCore(
            name,
            old.address,
            config=old.config,
            rng=random.Random(f"{self.seed}/{name}/restart/{self.now}"),
            wall_clock=lambda: self.wall0 + self.now,
            now=self.now,
            keyring=old.keyring,
            insecure=self.insecure,
            **kwargs,
        )
        self.cores[name] = core
        return core

    def cluster(self, *names: str, settle: float = 3.0) -> list[NodeCore]:
        """Create members; all but the first join through the first; run ``settle`` seconds."""
        cores = [self.add(n) for n in names]
        seed = cores[0].address
        for c in cores[1:]:
            c.join([seed], self.now)
        self.run(settle)
        return cores

    def name_of(self, address: Address) -> str | None:
        """The name of the member at ``address``, or ``None``."""
        return self.by_address.get(address)

    def state(self, observer: str, member: str) -> MemberState | None:
        """``member``'s state as ``observer`` sees it, or ``None`` if unknown there."""
        m = self.cores[observer].membership.get(member)
        return None if m is None else m.state

    def member(self, observer: str, member: str) -> Member:
        """``member`` as ``observer`` sees it (fails if unknown there)."""
        m = self.cores[observer].membership.get(member)
        assert m is not None, f"{observer} does not know {member}"
        return m

    def isolate(self, name: str) -> None:
        """Cut ``name`` off: drop every datagram to and from it and refuse new streams
        either way (streams already open stay open)."""
        for other in self.cores:
            if other != name:
                self.blocked |= {(name, other), (other, name)}

    def heal(self) -> None:
        """Undo every :meth:`isolate`, blocked link and :attr:`drop` filter."""
        self.blocked.clear()
        self.drop = None

    def take_events(self, name: str) -> list[NodeEvent]:
        """The events of ``name`` since the last call."""
        out, self.events[name] = self.events[name], []
        return out

    # ------------------------------------------------------------ the loop

    def _push(self, at: float, priority: int, item: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, priority, self._seq, item))

    def flush(self) -> None:
        """Move every core's outbox onto the wire and its events into :attr:`events`."""
        for name, core in self.cores.items():
            for out in core.take_outbox():
                self._route(name, out)
            self.events[name].extend(core.take_events())

    def _route(self, src: str, out: SendDatagram | SendStream | CloseStream) -> None:
        if isinstance(out, SendDatagram):
            dst = self.by_address.get(out.address)
            dropped = (
                dst is None
                or dst in self.down
                or (src, dst) in self.blocked
                or (self.drop is not None and self.drop(src, dst, out.data))
            )
            record = Datagram(self.now, src, out.address, out.data, not dropped)
            self.log.append(record)
            if not dropped:
                self._push(self.now + self.latency, 0, ("dgram", dst, src, out.data))
        elif isinstance(out, SendStream):
            self._route_stream(src, out)
        else:
            s = self._streams.get((src, out.stream))
            if s is not None and src not in s.closed:
                s.closed.add(src)
                # The peer reads EOF after whatever was sent before the close.
                peer = s.acceptor if src == s.opener else s.opener
                self._push(self.now + self.latency, 0, ("eof", peer, s))

    def _route_stream(self, src: str, out: SendStream) -> None:
        s = self._streams.get((src, out.stream))
        if s is None:
            assert out.stream[0] == "out", f"{src} wrote to an unknown accepted stream {out.stream}"
            dst = self.by_address.get(out.address)
            if (dst is None or dst in self.down or out.address in self.unreachable_streams
                    or (src, dst) in self.blocked):
                self._push(self.now + self.connect_timeout, 1, ("sfail", src, out.stream))
                return
            self._in_seq += 1
            s = _Stream(src, dst, {src: out.stream, dst: ("in", self._in_seq)})
            self._streams[(src, out.stream)] = s
            self._streams[(dst, s.ids[dst])] = s
        peer = s.acceptor if src == s.opener else s.opener
        pp_type = self._pp_type(src, out.stream, out.data)
        if pp_type is not None:
            self.stream_messages.append((src, out.stream, pp_type))
        self._push(self.now + self.latency, 0, ("stream", peer, s, src, out.data))

    def _pp_type(self, src: str, stream: StreamId, data: bytes) -> int | None:
        """The push-pull type of the message ``data`` (a chunk) starts; None for a later
        chunk of a message, -1 for a chunk that does not open."""
        ring = self.cores[src].keyring
        label = self.cores[src].config.label_bytes + chunks.STREAM_LABEL_SUFFIX
        seq, starts = self._sent_chunks.get((src, stream), (0, True))
        try:
            flag, piece = chunks.open_chunk(ring, label, data, initiator=stream[0] == "out", seq=seq)
        except (AuthenticationError, DecodeError):
            self._sent_chunks[(src, stream)] = (seq + 1, True)
            return -1
        self._sent_chunks[(src, stream)] = (seq + 1, flag == chunks.LAST)
        if not starts:
            return None
        if piece[:1] != bytes([codec.PROTOCOL_VERSION]):
            return -1
        unpacker = msgpack.Unpacker()
        unpacker.feed(piece[1:])
        try:
            unpacker.read_array_header()
            return int(unpacker.unpack())
        except (msgpack.OutOfData, ValueError, TypeError):
            return -1

    def _deliver(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "dgram":
            _, dst, src, data = item
            if dst not in self.down:
                self.cores[dst].receive_datagram(data, self.cores[src].address, self.now)
        elif kind == "stream":
            _, dst, s, src, data = item
            if dst not in self.down and dst not in s.closed:
                self.cores[dst].receive_stream(s.ids[dst], self.cores[src].address, data, self.now)
        elif kind == "eof":
            _, dst, s = item
            if dst not in self.down and dst not in s.closed:
                self.cores[dst].stream_failed(s.ids[dst], self.now, "closed by peer")
        else:
            _, src, sid = item
            self.cores[src].stream_failed(sid, self.now, "connect failed")

    def _next_timer(self) -> tuple[float, str | None]:
        best, who = math.inf, None
        for name, core in self.cores.items():
            if name in self.down:
                continue
            d = core.next_deadline()
            if d is not None and d < best:
                best, who = d, name
        return best, who

    def run_until(
        self, t_end: float, *, until: Callable[[], bool] | None = None, max_steps: int = 2_000_000
    ) -> bool:
        """Run to ``t_end``, or until ``until()`` holds (checked after every step); returns whether it did."""
        steps = 0
        while True:
            self.flush()
            if until is not None and until():
                return True
            t_msg = self._heap[0][0] if self._heap else math.inf
            t_tick, who = self._next_timer()
            t = min(t_msg, t_tick)
            if t > t_end:
                break
            self.now = max(self.now, t)
            if t_msg <= t_tick:
                _, _, _, item = heapq.heappop(self._heap)
                self._deliver(item)
            else:
                assert who is not None
                core = self.cores[who]
                core.tick(self.now)
                self.ticks[who] += 1
                after = core.next_deadline()
                assert after is None or after > self.now, f"{who}: deadline {after} is not after {self.now}"
            steps += 1
            assert steps < max_steps, "the network did not settle"
        self.now = max(self.now, t_end)
        self.flush()
        return until is None

    def run(self, seconds: float) -> None:
        """Run the network for ``seconds``."""
        self.run_until(self.now + seconds)

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> float:
        """Run until ``condition()`` holds; fail if it does not within ``timeout``. Returns the time."""
        assert self.run_until(self.now + timeout, until=condition), f"condition not met within {timeout} s"
        return self.now

    def deliver_now(self, dst: str, data: bytes, src_address: Address) -> None:
        """Hand ``data`` to ``dst`` as if it arrived now from ``src_address`` (injection, replay)."""
        self.cores[dst].receive_datagram(data, src_address, self.now)
        self.flush()

    # ------------------------------------------------------------ inspection

    def messages(self, d: Datagram) -> list[codec.Message]:
        """The messages of datagram ``d``, opened with its sender's keyring."""
        core = self.cores[d.src]
        return decode_datagram(d.data, core.keyring, core.config.label_bytes)

    def sent_by(self, name: str, since: float = -1.0) -> list[Datagram]:
        """The datagrams ``name`` sent from time ``since`` on."""
        return [d for d in self.log if d.src == name and d.at >= since]

    def datagrams_with(self, predicate: Callable[[codec.Message], bool], since: float = -1.0,
                       src: Iterable[str] | None = None) -> list[Datagram]:
        """The datagrams (from ``since``, of senders ``src``) holding a message ``predicate`` accepts."""
        names = set(src) if src is not None else None
        return [
            d for d in self.log
            if d.at >= since and (names is None or d.src in names) and any(map(predicate, self.messages(d)))
        ]
