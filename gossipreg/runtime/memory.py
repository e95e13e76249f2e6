"""An in-memory network of transports, for driver tests under ``autojump_clock``.

``MemoryNetwork().transport()`` hands out :class:`MemoryTransport` objects at
addresses ``10.0.0.N:7946``; datagrams between them travel through bounded
memory channels (a full channel drops, like a full socket buffer) and streams
are ``trio.testing.memory_stream_pair`` pipes. :meth:`MemoryNetwork.drop`
lets a test cut a member off (its datagrams and new streams fail), to play
an abrupt crash or a partition. Nothing here touches a real socket.
"""

from __future__ import annotations

import contextlib

import trio
import trio.testing

from ..core.membership import Address
from .transport import Admit, StreamHandler, Transport

__all__ = ["MemoryNetwork", "MemoryTransport"]


class MemoryNetwork:
    """A set of in-memory transports that can reach each other."""

    def __init__(self, buffer: int = 1024) -> None:
        self._buffer = buffer
        self._transports: dict[Address, MemoryTransport] = {}
        self._cut: set[Address] = set()
        self._next = 1

    def transport(self, address: Address | None = None) -> MemoryTransport:
        """A new transport at ``address`` (or the next free ``10.0.0.N:7946``)."""
        if address is None:
            address = Address(f"10.0.{self._next // 256}.{self._next % 256}", 7946)
            self._next += 1
        if address in self._transports:
            raise OSError(f"address {address} in use")
        t = MemoryTransport(self, address, self._buffer)
        self._transports[address] = t
        return t

    def drop(self, address: Address) -> None:
        """Cut ``address`` off: nothing reaches it and nothing it sends arrives."""
        self._cut.add(address)

    def restore(self, address: Address) -> None:
        """Undo :meth:`drop`."""
        self._cut.discard(address)

    def _reachable(self, a: Address, b: Address) -> bool:
        return a not in self._cut and b not in self._cut and b in self._transports

    def _remove(self, address: Address) -> None:
        self._transports.pop(address, None)


class MemoryTransport(Transport):
    """One member's end of a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, address: Address, buffer: int) -> None:
        self._network = network
        self._address = address
        self._send, self._recv = trio.open_memory_channel[tuple[bytes, Address]](buffer)
        self._handler: StreamHandler | None = None
        self._admit: Admit | None = None
        self._nursery: trio.Nursery | None = None
        self._closed = False

    @property
    def local_address(self) -> Address:
        return self._address

    async def send_datagram(self, data: bytes, address: Address) -> None:
        await trio.lowlevel.checkpoint()
        net = self._network
        if not net._reachable(self._address, address):
            return
        peer = net._transports[address]
        # A full or closed socket buffer drops the datagram.
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            peer._send.send_nowait((bytes(data), self._address))

    async def receive_datagram(self) -> tuple[bytes, Address]:
        return await self._recv.receive()

    async def connect(self, address: Address) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        net = self._network
        peer = net._transports.get(address)
        if peer is None or not net._reachable(self._address, address) or peer._nursery is None:
            raise OSError(f"connection to {address} refused")
        ours, theirs = trio.testing.memory_stream_pair()
        handler = peer._handler
        assert handler is not None
        if peer._admit is not None and not peer._admit(self._address):
            await theirs.aclose()  # accepted and closed at once, like a refused TCP connection
            return ours
        try:
            peer._nursery.start_soon(_serve_one, handler, theirs, self._address)
        except RuntimeError:  # the peer is shutting down: its nursery takes no new stream
            await theirs.aclose()
            raise ConnectionRefusedError(f"connection to {address} refused: shutting down") from None
        return ours

    async def serve(
        self,
        handler: StreamHandler,
        *,
        admit: Admit | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            self._handler = handler
            self._admit = admit
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._network._remove(self._address)
        self._nursery = None
        await self._send.aclose()


async def _serve_one(handler: StreamHandler, stream: trio.abc.Stream, peer: Address) -> None:
    # Like trio.serve_listeners (NetTransport): the stream is closed once the handler returns.
    try:
        await handler(stream, peer)
    finally:
        await trio.aclose_forcefully(stream)
