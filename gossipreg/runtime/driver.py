"""The trio driver: runs one :class:`~gossipreg.core.node.NodeCore` on a transport.

The driver owns no protocol logic. It runs four kinds of task in one nursery:

* a **receive loop** feeding datagrams to the core;
* a **timer loop** sleeping until the core's ``next_deadline()`` and calling
  ``tick``. Every call into the core moves its wake-up to the new deadline,
  earlier or later, so an idle member wakes once per probe cycle (a probe
  answered in time cancels its timeout) and for little else;
* a **sender** draining a bounded queue of outgoing datagrams (a full queue
  drops, like a full socket buffer, and counts);
* **stream tasks**, one per open stream: outbound ones connect (with TLS if
  configured) and inbound ones are accepted by the transport, bounded to
  ``max_inbound_streams`` at once. Each stream carries length-prefixed
  frames (:mod:`gossipreg.runtime.framing`) with a size limit and timeouts.

Every call into the core is followed by :meth:`MemberDriver.flush`, which
moves the core's outbox to the sockets and its events to subscribers. An
exception while handling one packet or stream is logged and counted, and
the member carries on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..core.membership import Address
from ..core.node import CloseStream, NodeCore, NodeEvent, SendDatagram, SendStream, StreamId
from .framing import FramedStream, FrameError
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
        max_frame: largest stream frame accepted, in bytes (``Config.max_stream_frame``).
        stream_timeout: seconds to connect (and handshake), to receive one
            frame once it starts, and to wait for the next frame (``Config.stream_timeout``).
        max_inbound_streams: streams accepted at once; more are closed at once and counted.
        send_queue: outgoing datagrams queued at most; more are dropped and counted.
    """

    max_frame: int = 16 * 1024 * 1024
    stream_timeout: float = 10.0
    max_inbound_streams: int = 128
    send_queue: int = 4096


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
        self._streams: dict[StreamId, trio.MemorySendChannel[bytes | None]] = {}
        self._nursery: trio.Nursery | None = None
        self._sleep: trio.CancelScope | None = None  # the timer loop's sleep, while it sleeps
        self._idle = trio.Event()  # set while the datagram queue is empty
        self._idle.set()
        self._inbound = 0
        self._in_seq = 0
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
            await nursery.start(self.transport.serve, self._accept)
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
                try:
                    self._send_in.send_nowait((out.data, out.address))
                    if self._idle.is_set():
                        self._idle = trio.Event()
                except trio.WouldBlock:
                    self._count("datagrams_dropped_queue_full")
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
                self._count("send_errors")
                log.debug("gossipreg: send to %s failed: %s", addr, exc)
            if not self._send_out.statistics().current_buffer_used:
                self._idle.set()

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
        for data, addr in pending:
            try:
                await self.transport.send_datagram(data, addr)
            except OSError as exc:
                self._count("send_errors")
                log.debug("gossipreg: send to %s failed: %s", addr, exc)

    async def drain(self) -> None:
        """Wait until every queued datagram has been handed to the transport.

        Bound it with ``trio.move_on_after``: a clean shutdown gives the leave
        a bounded time to go out.
        """
        await self._idle.wait()

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
            self._stream_failed(sid, f"connect failed: {exc!r}")
            return
        await self._converse(sid, address, FramedStream(stream, limits.max_frame, limits.stream_timeout),
                             messages)

    async def _accept(self, stream: trio.abc.Stream, peer: Address) -> None:
        limits = self.limits
        if self._inbound >= limits.max_inbound_streams:
            self._count("streams_refused_limit")
            self._warn(
                "streams_refused_limit", "refusing streams: %d open (latest from %s)", self._inbound, peer
            )
            await trio.aclose_forcefully(stream)
            return
        self._inbound += 1
        try:
            try:
                with trio.fail_after(limits.stream_timeout):
                    stream = await self._wrap(stream, server=True)
            except (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as exc:
                self._count("stream_handshake_failures")
                self._warn("stream_handshake_failures", "TLS handshake with %s failed: %r", peer, exc)
                await trio.aclose_forcefully(stream)
                return
            self._in_seq += 1
            sid: StreamId = ("in", self._in_seq)
            send, recv = trio.open_memory_channel[bytes | None](64)
            self._streams[sid] = send
            await self._converse(sid, peer, FramedStream(stream, limits.max_frame, limits.stream_timeout),
                                 recv)
        finally:
            self._inbound -= 1

    async def _converse(
        self,
        sid: StreamId,
        peer: Address,
        framed: FramedStream,
        messages: trio.MemoryReceiveChannel[bytes | None],
    ) -> None:
        """Write what the core queues for ``sid`` and feed it what arrives, until either side ends."""
        failed: str | None = None

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
            nonlocal failed
            try:
                while True:
                    data = await framed.receive(idle_timeout=self.limits.stream_timeout)
                    if data is None:
                        break
                    try:
                        self.core.receive_stream(sid, peer, data, self.now())
                    except Exception:
                        self._count("handler_errors")
                        log.exception("gossipreg: error handling a stream message from %s", peer)
                    self.flush()
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
            self._stream_failed(sid, failed or "stream closed")

    def _stream_failed(self, sid: StreamId, reason: str) -> None:
        try:
            self.core.stream_failed(sid, self.now(), reason)
        except Exception:
            self._count("handler_errors")
            log.exception("gossipreg: error handling the end of a stream")
        self.flush()


def _at(deadline: float | None) -> float:
    return math.inf if deadline is None else deadline
