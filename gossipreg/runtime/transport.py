"""Transports: where a member's bytes go. A datagram path and a stream path.

Like memberlist's ``Transport``, a transport splits a best-effort packet path
(:meth:`Transport.send_datagram` / :meth:`Transport.receive_datagram`) from a
reliable stream path (:meth:`Transport.connect` / :meth:`Transport.serve`).
Framing, TLS and sealing are layered on top by the driver, so every
transport carries plain bytes:

* :class:`NetTransport`: real sockets, UDP for datagrams and TCP for streams,
  bound to one host and port (the same port number for both, like
  memberlist's 7946); IPv4 and IPv6;
* :class:`~gossipreg.runtime.memory.MemoryNetwork` transports: in-memory
  peers for driver tests under trio's ``autojump_clock``.
"""

from __future__ import annotations

import abc
import errno
import ipaddress
import socket
from collections.abc import Awaitable, Callable

import trio

from ..core.membership import Address

__all__ = [
    "MAX_DATAGRAM",
    "Admit",
    "KillableTransport",
    "NetTransport",
    "StreamHandler",
    "Transport",
    "parse_address",
]

#: Largest datagram read from the socket. Larger ones are truncated by the OS
#: and fail authentication.
MAX_DATAGRAM = 65535

StreamHandler = Callable[[trio.abc.Stream, Address], Awaitable[None]]
"""Called for each accepted stream with the peer's address; the stream is closed after it returns."""

Admit = Callable[[Address], bool]
"""Called for each accepted connection, before any task starts for it: False closes it at once.
Lets a member refuse a flood at the cost of an ``accept`` and a ``close``."""

#: accept() errors that mean "out of resources for now": wait, do not crash the listener.
_ACCEPT_PAUSE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EMFILE", "ENFILE", "ENOMEM", "ENOBUFS") if hasattr(errno, name)
)
#: Seconds the accept loop pauses after such an error.
_ACCEPT_PAUSE = 0.1


def parse_address(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """Parse ``host:port``, ``[v6]:port`` or (with ``default_port``) a bare host.

    Raises:
        ValueError: the text is not an address; the message says why.
    """
    text = text.strip()
    host: str
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':port' after ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        raise ValueError(f"{text!r}: write IPv6 addresses as [address]:port")
    else:
        host, port_text = text, None
    if not host:
        raise ValueError(f"{text!r}: missing host")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{text!r}: missing :port")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: port must be a number from 0 to 65535")
    return host, int(port_text)


class Transport(abc.ABC):
    """A member's datagram and stream paths."""

    @property
    @abc.abstractmethod
    def local_address(self) -> Address:
        """The bound address (the real port if port 0 was asked for)."""

    @abc.abstractmethod
    async def send_datagram(self, data: bytes, address: Address) -> None:
        """Send one datagram, best effort. Errors are swallowed and counted by the caller's
        statistics only through the exception it raises (``OSError``)."""

    def send_datagram_nowait(self, data: bytes, address: Address) -> bool:
        """Send one datagram at once if that needs no waiting; ``False`` if the caller must
        use :meth:`send_datagram` instead (the default: never at once).

        Lets the driver send from where the core's outbox is taken, without
        waking a sender task for each datagram.

        Raises:
            OSError: as :meth:`send_datagram`.
        """
        return False

    @abc.abstractmethod
    async def receive_datagram(self) -> tuple[bytes, Address]:
        """Wait for the next datagram."""

    @abc.abstractmethod
    async def connect(self, address: Address) -> trio.abc.Stream:
        """Open a stream to ``address``.

        Raises:
            OSError: the peer cannot be reached.
        """

    @abc.abstractmethod
    async def serve(
        self,
        handler: StreamHandler,
        *,
        admit: Admit | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept streams forever, calling ``handler`` for each in a new task.

        ``admit``, if given, is asked first for each connection; one it refuses
        is closed without starting a task.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the sockets."""


class NetTransport(Transport):
    """UDP datagrams and TCP streams on one host and port.

    Use :meth:`bind` to create one.

    Datagrams go straight through the (non-blocking) socket: a send that would
    block, or to an address that is not numeric, falls back to trio's
    ``sendto``; a receive waits for the socket to be readable, then reads one
    datagram. Each costs one system call and one pass of trio's scheduler
    when the socket is idle, where trio's socket methods try first, fail with
    ``EAGAIN`` and yield once more after succeeding.
    """

    def __init__(self, udp: socket.socket, listeners: list[trio.SocketListener]) -> None:
        self._raw = udp
        self._udp = trio.socket.from_stdlib_socket(udp)
        self._family = udp.family
        self._listeners = listeners
        host, port = udp.getsockname()[:2]
        self._address = Address(host, port)

    @classmethod
    async def bind(cls, host: str, port: int) -> NetTransport:
        """Bind UDP and TCP on ``host:port``; port 0 picks a free port for both.

        Raises:
            OSError: the address cannot be bound (in use, not local).
        """
        family = socket.AF_INET6 if _is_v6(host) else socket.AF_INET
        attempts = 20 if port == 0 else 1
        for attempt in range(attempts):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                if family == socket.AF_INET6:
                    udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                await trio.socket.from_stdlib_socket(udp).bind((host, port))
                real_port = udp.getsockname()[1]
                listeners = await trio.open_tcp_listeners(real_port, host=host)
            except OSError as exc:
                udp.close()
                # With port 0 the UDP port may be taken for TCP: try another.
                if port == 0 and exc.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                    continue
                raise
            return cls(udp, listeners)
        raise OSError(errno.EADDRINUSE, "no free port for both UDP and TCP")  # pragma: no cover

    @property
    def local_address(self) -> Address:
        return self._address

    async def send_datagram(self, data: bytes, address: Address) -> None:
        await self._udp.sendto(data, (address.host, address.port))

    def send_datagram_nowait(self, data: bytes, address: Address) -> bool:
        try:
            socket.inet_pton(self._family, address.host)
        except OSError:
            return False  # e.g. a scoped IPv6 address: trio's sendto resolves it
        try:
            self._raw.sendto(data, (address.host, address.port))
        except BlockingIOError:
            return False
        return True

    async def receive_datagram(self) -> tuple[bytes, Address]:
        while True:
            await trio.lowlevel.wait_readable(self._raw)
            try:
                data, addr = self._raw.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:  # pragma: no cover - readable, yet nothing (a spurious wake-up)
                continue
            return data, Address(addr[0], addr[1])

    async def connect(self, address: Address) -> trio.abc.Stream:
        return await trio.open_tcp_stream(address.host, address.port)

    async def serve(
        self,
        handler: StreamHandler,
        *,
        admit: Admit | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async def run(stream: trio.SocketStream, peer: Address) -> None:
            try:
                await handler(stream, peer)
            finally:
                await trio.aclose_forcefully(stream)

        async def accept_loop(listener: trio.SocketListener) -> None:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _ACCEPT_PAUSE_ERRNOS:
                        raise
                    await trio.sleep(_ACCEPT_PAUSE)  # out of descriptors or memory: let some go
                    continue
                try:
                    host, port = stream.socket.getpeername()[:2]
                except OSError:
                    stream.socket.close()
                    continue
                peer = Address(host, port)
                if admit is not None and not admit(peer):
                    stream.socket.close()  # refused: no task, no buffer
                    continue
                nursery.start_soon(run, stream, peer)

        async with trio.open_nursery() as nursery:
            for listener in self._listeners:
                nursery.start_soon(accept_loop, listener)
            task_status.started()

    async def aclose(self) -> None:
        self._udp.close()
        for listener in self._listeners:
            await listener.aclose()


class KillableTransport(Transport):
    """A transport that can die abruptly, like a process killed with SIGKILL.

    After :meth:`kill` nothing goes out (datagrams vanish, connects fail) and
    nothing comes in (datagrams are dropped, accepted streams closed), so the
    member's graceful leave on shutdown never reaches anyone. For demos and
    tests of failure detection.
    """

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.killed = False
        self._closed = False

    def kill(self) -> None:
        """Drop every datagram and stream from now on, in both directions."""
        self.killed = True

    @property
    def local_address(self) -> Address:
        return self._inner.local_address

    async def send_datagram(self, data: bytes, address: Address) -> None:
        if self.killed:
            await trio.lowlevel.checkpoint()
            return
        await self._inner.send_datagram(data, address)

    def send_datagram_nowait(self, data: bytes, address: Address) -> bool:
        if self.killed:
            return True  # gone, like every datagram after kill()
        return self._inner.send_datagram_nowait(data, address)

    async def receive_datagram(self) -> tuple[bytes, Address]:
        while True:
            packet = await self._inner.receive_datagram()
            if not self.killed:
                return packet

    async def connect(self, address: Address) -> trio.abc.Stream:
        if self.killed:
            await trio.lowlevel.checkpoint()
            raise ConnectionRefusedError("transport killed")
        return await self._inner.connect(address)

    async def serve(
        self,
        handler: StreamHandler,
        *,
        admit: Admit | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        def admit_unless_killed(peer: Address) -> bool:
            return not self.killed and (admit is None or admit(peer))

        await self._inner.serve(handler, admit=admit_unless_killed, task_status=task_status)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._inner.aclose()


def _is_v6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False
