"""The trio driver: runs one :class:`~gossipreg.core.node.NodeCore` on a transport.

The driver owns no protocol logic. It runs four kinds of task in one nursery:

* a **receive loop** feeding datagrams to the core;
* a **timer loop** sleeping until the core's ``next_deadline()`` and calling
  ``tick``. Every call into the core moves its wake-up to the new deadline,
  earlier or later, so an idle member wakes once per probe cycle (a probe
  answered in time cancels its timeout) and for little else;
* a **sender** draining a bounded queue of outgoing datagrams (a full queue
  drops, like a full socket buffer, and counts). A datagram goes straight
  to the socket instead when nothing is queued and the transport can send
  it without waiting (:meth:`~gossipreg.runtime.transport.Transport.send_datagram_nowait`),
  so an idle member wakes no task to send its probe or its ack;
* **stream tasks**, one per open stream: outbound ones connect (with TLS if
  configured) and inbound ones are accepted by the transport. Each stream
  carries length-prefixed frames (:mod:`gossipreg.runtime.framing`), each
  one sealed chunk of a message (:mod:`gossipreg.core.chunks`), so no frame
  is larger than :data:`~gossipreg.core.chunks.MAX_FRAME`.

Inbound streams are held to a tighter budget until they prove a key: an
*unauthenticated* stream (accepted, its TLS handshake and first frame not
yet through) gets ``auth_timeout`` seconds in all, at most
``max_pending_per_source`` of them come from one source (an IPv4 address or
an IPv6 /64), and when ``max_inbound_streams`` are open the newcomer evicts
the oldest unauthenticated stream of the source holding the most, instead of
being refused. Idle or slow connections, however many, therefore cannot keep
a member from accepting its peers, and before authentication a connection
costs at most one frame of memory.

Every call into the core is followed by :meth:`MemberDriver.flush`, which
moves the core's outbox to the sockets and its events to subscribers. An
exception while handling one packet or stream is logged and counted, and
the member carries on.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import ipaddress
import logging
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..core import chunks
from ..core.errors import ConfigError
from ..core.membership import Address
from ..core.node import CloseStream, NodeCore, NodeEvent, SendDatagram, SendStream, StreamId
from .framing import ForeignProtocolError, FramedStream, FrameError
from .transport import Transport

__all__ = ["DriverLimits", "MemberDriver", "TLSContexts"]

log = logging.getLogger("gossipreg")

#: Seconds between two warnings of the same cause (see ``MemberDriver._warn``).
WARN_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class TLSContexts:
    """The two TLS contexts of a member: it both accepts and opens streams.

    Both must require a certificate from the peer signed by the cluster CA
    (mutual TLS). See :func:`gossipreg.tls.contexts_from_files`.
    """

    server: ssl.SSLContext
    client: ssl.SSLContext


@dataclass(frozen=True, slots=True)
class DriverLimits:
    """Resource limits of the driver, each bounding what a peer can cost.

    Args:
        max_frame: largest stream frame accepted, in bytes: one sealed chunk
            (:data:`gossipreg.core.chunks.MAX_FRAME`). Whole messages are bounded
            by the core (``Config.max_stream_frame``), from authenticated chunks only.
        stream_timeout: seconds to connect (and handshake), to receive one
            frame once it starts, and to wait for the next frame (``Config.stream_timeout``).
        max_inbound_streams: inbound streams open at once. When full, a new one
            evicts the oldest unauthenticated stream of the source holding the
            most; if every open stream is authenticated it is closed at once.
        auth_timeout: seconds an inbound stream has, from its acceptance, to
            complete the TLS handshake (if any) and deliver its first
            authenticated frame.
        max_pending_per_source: unauthenticated inbound streams from one source
            (an IPv4 address, or an IPv6 /64) at once; a newer one evicts the
            source's oldest.
        send_queue: outgoing datagrams queued at most; more are dropped and counted.
    """

    max_frame: int = chunks.MAX_FRAME
    stream_timeout: float = 10.0
    max_inbound_streams: int = 128
    auth_timeout: float = 2.0
    max_pending_per_source: int = 16
    send_queue: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_frame", "max_inbound_streams", "max_pending_per_source", "send_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: must be a positive int, got {value!r}")
        for name in ("stream_timeout", "auth_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ConfigError(f"{name}: must be a positive finite number of seconds, got {value!r}")


@dataclass(eq=False, slots=True)
class _Inbound:
    """An accepted inbound stream: its slot, and its budget until it authenticates."""

    source: str
    scope: trio.CancelScope
    holds_slot: bool = True
    authenticated: bool = False
    evicted: bool = False


def _source_of(host: str) -> str:
    """The unit per-source limits count by: the address, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class MemberDriver:
    """Runs ``core`` on ``transport`` until cancelled.

    Args:
        core: the member's protocol state machine.
        transport: its sockets.
        limits: resource limits.
        tls: mutual-TLS contexts for streams, or ``None`` for plain TCP.
        on_event: called (in the trio thread) with every event of the core.
    """

    def __init__(
        self,
        core: NodeCore,
        transport: Transport,
        *,
        limits: DriverLimits | None = None,
        tls: TLSContexts | None = None,
        on_event: Callable[[NodeEvent], None] | None = None,
    ) -> None:
        self.core = core
        self.transport = transport
        self.limits = limits or DriverLimits()
        self.tls = tls
        self.on_event = on_event
        self._send_in, self._send_out = trio.open_memory_channel[tuple[bytes, Address]](
            self.limits.send_queue
        )
        self._queued = 0  # datagrams queued for the sender or being sent by it
        self._streams: dict[StreamId, trio.MemorySendChannel[bytes | None]] = {}
        self._nursery: trio.Nursery | None = None
        self._sleep: trio.CancelScope | None = None  # the timer loop's sleep, while it sleeps
        self._inbound = 0
        self._in_seq = 0
        # Unauthenticated inbound streams, by source, oldest first; and the admitted ones
        # whose task has not started yet, by peer address.
        self._unauth: dict[str, list[_Inbound]] = {}
        self._admitted: dict[Address, collections.deque[_Inbound]] = {}
        #: Driver counters; every key is present from the start.
        self._warned: dict[str, tuple[float, int]] = {}
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "datagrams_dropped_queue_full",
                "stream_messages_dropped",
                "receive_errors",
                "send_errors",
                "handler_errors",
                "stream_connect_failures",
                "streams_refused_limit",
                "streams_evicted",
                "streams_refused_source",
                "streams_auth_timeouts",
                "stream_handshake_failures",
                "stream_errors",
            ),
            0,
        )

    # ------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. ``task_status.started()`` once the sockets serve."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(functools.partial(self.transport.serve, self._accept, admit=self._admit))
            nursery.start_soon(self._receive_loop)
            nursery.start_soon(self._timer_loop)
            nursery.start_soon(self._sender)
            self.flush()
            task_status.started()

    def now(self) -> float:
        """The core's clock: trio's (monotonic, virtual under a mock clock)."""
        return trio.current_time()

    def _warn(self, cause: str, message: str, *args: object) -> None:
        """Log a warning about ``cause`` at most once per :data:`WARN_INTERVAL` seconds,
        with how many were suppressed meanwhile: an unauthenticated peer must not
        be able to flood the log. The counters count every occurrence."""
        now = self.now()
        last, suppressed = self._warned.get(cause, (-math.inf, 0))
        if now - last < WARN_INTERVAL:
            self._warned[cause] = (last, suppressed + 1)
            return
        if suppressed:
            message += f" ({suppressed} more since the last warning)"
        log.warning("gossipreg: " + message, *args)
        self._warned[cause] = (now, 0)

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # ------------------------------------------------------------ the core's outputs

    def flush(self) -> None:
        """Move the core's outbox to the sockets and its events to ``on_event``.

        Call after every call into the core (the driver's own loops do).
        """
        for out in self.core.take_outbox():
            if isinstance(out, SendDatagram):
                self._send_datagram(out.data, out.address)
            elif isinstance(out, SendStream):
                self._stream_send(out)
            elif isinstance(out, CloseStream):
                channel = self._streams.pop(out.stream, None)
                if channel is not None:
                    with contextlib.suppress(trio.WouldBlock):  # closing alone ends the writer too
                        channel.send_nowait(None)
                    channel.close()
        events = self.core.take_events()  # taken even without a subscriber: they pile up otherwise
        if self.on_event is not None:
            for ev in events:
                try:
                    self.on_event(ev)
                except Exception:
                    log.exception("gossipreg: event subscriber failed")
        # Move the timer loop's wake-up to the core's new deadline: earlier, so no timer
        # is overslept, or later, so it does not wake for a timer that is gone.
        if self._sleep is not None:
            self._sleep.deadline = _at(self.core.next_deadline())

    def _send_datagram(self, data: bytes, address: Address) -> None:
        """Send at once if nothing is queued before it and the socket takes it; else queue it."""
        if not self._queued:
            try:
                if self.transport.send_datagram_nowait(data, address):
                    return
            except OSError as exc:
                self._send_failed(address, exc)
                return
        try:
            self._send_in.send_nowait((data, address))
        except trio.WouldBlock:
            self._count("datagrams_dropped_queue_full")
        else:
            self._queued += 1

    def _send_failed(self, address: Address, exc: OSError) -> None:
        """Count a datagram the socket refused (best effort: never raised)."""
        self._count("send_errors")
        log.debug("gossipreg: send to %s failed: %s", address, exc)

    def _stream_send(self, out: SendStream) -> None:
        channel = self._streams.get(out.stream)
        if channel is None:
            if out.stream[0] != "out" or self._nursery is None:
                return  # an inbound stream that is already gone
            send, recv = trio.open_memory_channel[bytes | None](64)
            self._streams[out.stream] = send
            self._nursery.start_soon(self._outbound, out.stream, out.address, recv)
            channel = send
        try:
            channel.send_nowait(out.data)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._count("stream_messages_dropped")

    # ------------------------------------------------------------ loops

    async def _receive_loop(self) -> None:
        while True:
            try:
                data, addr = await self.transport.receive_datagram()
            except OSError as exc:  # e.g. ICMP port unreachable surfacing on some platforms
                self._count("receive_errors")
                log.debug("gossipreg: datagram receive error: %s", exc)
                continue
            try:
                self.core.receive_datagram(data, addr, self.now())
            except Exception:
                self._count("handler_errors")
                log.exception("gossipreg: error handling a datagram from %s", addr)
            self.flush()

    async def _timer_loop(self) -> None:
        while True:
            try:
                with trio.CancelScope(deadline=_at(self.core.next_deadline())) as self._sleep:
                    await trio.sleep_forever()
            finally:
                self._sleep = None
            try:
                self.core.tick(self.now())
            except Exception:
                self._count("handler_errors")
                log.exception("gossipreg: error in a protocol timer")
            self.flush()

    async def _sender(self) -> None:
        async for data, addr in self._send_out:
            try:
                await self.transport.send_datagram(data, addr)
            except OSError as exc:
                self._send_failed(addr, exc)
            finally:
                self._queued -= 1

    async def send_remaining(self) -> None:
        """Send, from the calling task, every datagram still queued or in the core's outbox.

        For shutdown: the leave must go out even when the driver's own tasks
        are being cancelled. Bound it with ``trio.move_on_after``.
        """
        pending: list[tuple[bytes, Address]] = [
            (out.data, out.address) for out in self.core.take_outbox() if isinstance(out, SendDatagram)
        ]
        while True:
            try:
                pending.append(self._send_out.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            self._queued -= 1
        for data, addr in pending:
            try:
                await self.transport.send_datagram(data, addr)
            except OSError as exc:
                self._send_failed(addr, exc)

    # ------------------------------------------------------------ streams

    async def _wrap(self, stream: trio.abc.Stream, *, server: bool) -> trio.abc.Stream:
        if self.tls is None:
            return stream
        ctx = self.tls.server if server else self.tls.client
        ssl_stream = trio.SSLStream(stream, ctx, server_side=server, server_hostname=None)
        await ssl_stream.do_handshake()
        return ssl_stream

    async def _outbound(
        self, sid: StreamId, address: Address, messages: trio.MemoryReceiveChannel[bytes | None]
    ) -> None:
        limits = self.limits
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(limits.stream_timeout):
                stream = await self.transport.connect(address)
                stream = await self._wrap(stream, server=False)
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as exc:
            self._count("stream_connect_failures")
            log.debug("gossipreg: stream to %s failed: %r", address, exc)
            if stream is not None:
                await trio.aclose_forcefully(stream)
            self._streams.pop(sid, None)
            self._stream_failed(sid, _connect_failure(exc, limits.stream_timeout))
            return
        await self._converse(sid, address, FramedStream(stream, limits.max_frame, limits.stream_timeout),
                             messages)

    def _admit(self, peer: Address) -> bool:
        """Take in a connection from ``peer``, or refuse it (False), before any task starts.

        A source at its quota of unauthenticated streams is refused; when every
        slot is taken, the oldest unauthenticated stream of the busiest source
        is evicted, or the newcomer refused if all are authenticated.
        """
        limits = self.limits
        source = _source_of(peer.host)
        queue = self._unauth.get(source)
        if queue is not None and len(queue) >= limits.max_pending_per_source:
            self._count("streams_refused_source")
            self._warn("streams_refused_source", "refusing streams from %s: %d unauthenticated already",
                       source, len(queue))
            return False
        if self._inbound >= limits.max_inbound_streams:
            victim = self._eviction_victim()
            if victim is None:
                self._count("streams_refused_limit")
                self._warn("streams_refused_limit", "refusing streams: %d open and authenticated "
                           "(latest from %s)", self._inbound, peer)
                return False
            self._evict(victim, peer)
        entry = _Inbound(source, trio.CancelScope(deadline=trio.current_time() + limits.auth_timeout))
        self._unauth.setdefault(source, []).append(entry)
        self._inbound += 1
        self._admitted.setdefault(peer, collections.deque()).append(entry)
        return True

    async def _accept(self, stream: trio.abc.Stream, peer: Address) -> None:
        limits = self.limits
        if peer not in self._admitted and not self._admit(peer):  # a transport without admit
            await trio.aclose_forcefully(stream)
            return
        waiting = self._admitted[peer]
        entry = waiting.popleft()
        if not waiting:
            del self._admitted[peer]
        try:
            framed: FramedStream | None = None
            first: bytes | None = None
            with entry.scope:
                try:
                    stream = await self._wrap(stream, server=True)
                except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
                    self._count("stream_handshake_failures")
                    self._warn("stream_handshake_failures", "TLS handshake with %s failed: %r", peer, exc)
                    return
                # Until its first frame authenticates, a stream is only this task reading
                # one frame: no conversation (tasks, queues) exists for it yet.
                framed = FramedStream(stream, limits.max_frame, limits.stream_timeout)
                try:
                    first = await framed.receive()
                except (FrameError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self._count("stream_errors")
                    log.debug("gossipreg: stream from %s: %r", peer, exc)
                    return
                if first is None:
                    return
            if entry.scope.cancelled_caught and not entry.evicted:
                self._count("streams_auth_timeouts")
                self._warn("streams_auth_timeouts",
                           "closed a stream from %s: no authenticated frame within %.1f s", peer,
                           limits.auth_timeout)
            if framed is None or first is None:
                return
            self._in_seq += 1
            sid: StreamId = ("in", self._in_seq)
            send, recv = trio.open_memory_channel[bytes | None](64)
            self._streams[sid] = send
            try:
                authentic = self.core.receive_stream(sid, peer, first, self.now())
            except Exception:
                self._count("handler_errors")
                log.exception("gossipreg: error handling a stream message from %s", peer)
                authentic = False
            self.flush()
            if not authentic:
                self._streams.pop(sid, None)
                send.close()
                await self._write_refusal(framed, recv)
                self._stream_failed(sid, "stream closed")
                return
            entry.authenticated = True
            self._forget_unauthenticated(entry)
            # Even if the core already closed the stream (a check: it answers and closes on
            # the first message), what it queued must still be written before closing.
            await self._converse(sid, peer, framed, recv)
        finally:
            await trio.aclose_forcefully(stream)
            self._release(entry)

    def _eviction_victim(self) -> _Inbound | None:
        """The oldest unauthenticated stream of the source holding the most, if any."""
        busiest = max(self._unauth.values(), key=len, default=None)
        return busiest[0] if busiest else None

    def _evict(self, entry: _Inbound, newcomer: Address) -> None:
        """Close ``entry`` (unauthenticated) to make room for a stream from ``newcomer``."""
        entry.evicted = True
        entry.scope.cancel()
        self._release(entry)
        self._count("streams_evicted")
        self._warn("streams_evicted", "evicting unauthenticated streams to accept new ones (latest from %s)",
                   newcomer)

    def _release(self, entry: _Inbound) -> None:
        """Give back ``entry``'s slot (idempotent)."""
        self._forget_unauthenticated(entry)
        if entry.holds_slot:
            entry.holds_slot = False
            self._inbound -= 1

    def _forget_unauthenticated(self, entry: _Inbound) -> None:
        queue = self._unauth.get(entry.source)
        if queue is not None and entry in queue:
            queue.remove(entry)
            if not queue:
                del self._unauth[entry.source]

    async def _converse(
        self,
        sid: StreamId,
        peer: Address,
        framed: FramedStream,
        messages: trio.MemoryReceiveChannel[bytes | None],
    ) -> None:
        """Write what the core queues for ``sid`` and feed it what arrives, until either side ends."""
        failed: str | None = None
        permanent = False

        async def writer(cancel: trio.CancelScope) -> None:
            nonlocal failed
            try:
                async for data in messages:
                    if data is None:
                        break
                    await framed.send(data)
            except (FrameError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                failed = f"send failed: {exc!r}"
            cancel.cancel()

        async def reader(cancel: trio.CancelScope) -> None:
            nonlocal failed, permanent
            try:
                while True:
                    data = await framed.receive(idle_timeout=self.limits.stream_timeout)
                    if data is None or sid not in self._streams:
                        break  # the peer or the core is done with this stream
                    try:
                        self.core.receive_stream(sid, peer, data, self.now())
                    except Exception:
                        self._count("handler_errors")
                        log.exception("gossipreg: error handling a stream message from %s", peer)
                    self.flush()
            except ForeignProtocolError as exc:
                self._count("stream_errors")
                failed, permanent = str(exc), True
                log.debug("gossipreg: stream with %s: %r", peer, exc)
            except (FrameError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._count("stream_errors")
                failed = f"receive failed: {exc!r}"
                log.debug("gossipreg: stream with %s: %r", peer, exc)
            cancel.cancel()

        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(writer, scope)
                    nursery.start_soon(reader, scope)
        finally:
            channel = self._streams.pop(sid, None)
            if channel is not None:
                channel.close()
            await trio.aclose_forcefully(framed.stream)
            self._stream_failed(sid, failed or "stream closed", permanent=permanent)

    async def _write_refusal(
        self, framed: FramedStream, queued: trio.MemoryReceiveChannel[bytes | None]
    ) -> None:
        """Write the refusal the core queued for a stream it did not accept (if any), briefly."""
        with trio.move_on_after(min(1.0, self.limits.stream_timeout)):
            while True:
                try:
                    data = queued.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    return
                if data is None:
                    return
                try:
                    await framed.send(data)
                except (FrameError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return

    def _stream_failed(self, sid: StreamId, reason: str, *, permanent: bool = False) -> None:
        try:
            self.core.stream_failed(sid, self.now(), reason, permanent=permanent)
        except Exception:
            self._count("handler_errors")
            log.exception("gossipreg: error handling the end of a stream")
        self.flush()


def _connect_failure(exc: BaseException, timeout: float) -> str:
    """Why a stream could not be opened, in words that suggest the fix."""
    if isinstance(exc, trio.TooSlowError):
        return (f"connect failed: no answer within {timeout:g}s (a wrong address, or a firewall "
                "dropping the packets)")
    errors = [exc, exc.__cause__, *getattr(exc.__cause__, "exceptions", ())]
    if any(isinstance(e, ConnectionRefusedError) for e in errors):
        return ("connect failed: connection refused: nothing listens there; is the seed running, "
                "and is this its gossip port?")
    if isinstance(exc, ssl.SSLError):
        return f"connect failed: TLS handshake: {exc} (do both ends use TLS, with the same CA?)"
    return f"connect failed: {exc!r}"


def _at(deadline: float | None) -> float:
    return math.inf if deadline is None else deadline
