"""NetTransport's datagram path on real loopback sockets, and the driver's direct sends.

An idle member's probe and ack go straight to the socket from where the
core's outbox is taken: no sender task wakes for them, and only a datagram
queued behind another (or one the socket would block on) goes through the
sender.
"""

from __future__ import annotations

import random

import trio

from gossipreg.core.config import Config
from gossipreg.core.crypto import Keyring
from gossipreg.core.membership import Address
from gossipreg.core.node import NodeCore
from gossipreg.registry import open_registry
from gossipreg.runtime.driver import MemberDriver
from gossipreg.runtime.memory import MemoryNetwork, MemoryTransport
from gossipreg.runtime.transport import KillableTransport, NetTransport

LIMIT = 10.0  # seconds any one test may take


def test_send_datagram_nowait_sends_at_once_and_receive_gets_it() -> None:
    async def main() -> None:
        with trio.fail_after(LIMIT):
            a = await NetTransport.bind("127.0.0.1", 0)
            b = await NetTransport.bind("127.0.0.1", 0)
            try:
                assert a.send_datagram_nowait(b"one", b.local_address) is True
                await a.send_datagram(b"two", b.local_address)
                assert await b.receive_datagram() == (b"one", a.local_address)
                assert await b.receive_datagram() == (b"two", a.local_address)
            finally:
                await a.aclose()
                await b.aclose()

    trio.run(main)


def test_a_name_instead_of_an_address_is_left_to_trios_sendto() -> None:
    async def main() -> None:
        with trio.fail_after(LIMIT):
            a = await NetTransport.bind("127.0.0.1", 0)
            try:
                assert a.send_datagram_nowait(b"x", Address("localhost", 9)) is False
            finally:
                await a.aclose()

    trio.run(main)


class _WouldBlock:
    """A socket whose buffer is full."""

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        raise BlockingIOError


def test_a_full_socket_buffer_is_left_to_trios_sendto() -> None:
    async def main() -> None:
        with trio.fail_after(LIMIT):
            a = await NetTransport.bind("127.0.0.1", 0)
            raw = a._raw
            try:
                a._raw = _WouldBlock()  # type: ignore[assignment]
                assert a.send_datagram_nowait(b"x", Address("127.0.0.1", 9)) is False
            finally:
                a._raw = raw
                await a.aclose()

    trio.run(main)


class _Blocking(MemoryTransport):
    """An in-memory transport whose socket takes datagrams at once until ``blocked``."""

    def __init__(self, network: MemoryNetwork, address: Address) -> None:
        super().__init__(network, address, 1024)
        self.blocked = False
        self.direct: list[bytes] = []
        self.awaited: list[bytes] = []

    def send_datagram_nowait(self, data: bytes, address: Address) -> bool:
        if self.blocked:
            return False
        self.direct.append(data)
        return True

    async def send_datagram(self, data: bytes, address: Address) -> None:
        self.awaited.append(data)
        await super().send_datagram(data, address)


def test_once_a_datagram_waits_in_the_queue_the_next_ones_queue_behind_it() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        transport = _Blocking(network, Address("10.0.0.1", 7946))
        core = NodeCore("solo", transport.local_address, config=Config.local(), rng=random.Random(1),
                        wall_clock=lambda: 1e9, now=trio.current_time(), keyring=Keyring(bytes(range(32))))
        driver = MemberDriver(core, transport)
        peer = Address("10.0.0.2", 7946)
        driver._send_datagram(b"1", peer)
        transport.blocked = True
        driver._send_datagram(b"2", peer)  # the socket would block: queued
        transport.blocked = False
        driver._send_datagram(b"3", peer)  # behind "2", so queued too, to keep the order
        assert transport.direct == [b"1"]
        assert driver._queued == 2
        await driver.send_remaining()
        assert transport.awaited == [b"2", b"3"]
        assert driver._queued == 0
        driver._send_datagram(b"4", peer)
        assert transport.direct == [b"1", b"4"]

    trio.run(main)


def test_a_killed_transport_drops_direct_sends_and_the_memory_one_never_sends_directly() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        inner = network.transport(Address("10.0.0.1", 7946))
        assert inner.send_datagram_nowait(b"x", Address("10.0.0.2", 7946)) is False
        killable = KillableTransport(inner)
        assert killable.send_datagram_nowait(b"x", Address("10.0.0.2", 7946)) is False
        killable.kill()
        assert killable.send_datagram_nowait(b"x", Address("10.0.0.2", 7946)) is True

    trio.run(main)


def test_an_idle_member_sends_its_datagrams_without_the_sender_task() -> None:
    """Two real members on loopback: every probe and ack goes out through the direct path."""
    key = bytes(range(32))
    queued: list[bytes] = []

    class Counting(NetTransport):
        async def send_datagram(self, data: bytes, address: Address) -> None:
            queued.append(data)
            await super().send_datagram(data, address)

    async def main() -> None:
        with trio.fail_after(LIMIT):
            raw_a = await NetTransport.bind("127.0.0.1", 0)
            raw_b = await NetTransport.bind("127.0.0.1", 0)
            a = Counting(raw_a._raw, raw_a._listeners)
            b = Counting(raw_b._raw, raw_b._listeners)
            config = Config.local()
            async with open_registry("127.0.0.1:0", name="a", keyring=key, config=config, transport=a) as ra:
                seed = f"{ra.address[0]}:{ra.address[1]}"
                async with open_registry("127.0.0.1:0", seed, name="b", keyring=key, config=config,
                                         transport=b) as rb:
                    sent = rb.statistics()["datagrams_sent"]
                    await trio.sleep(3 * config.probe_interval)
                    assert len(rb.members()) == 2
                    assert len(ra.members()) == 2
                    assert rb.statistics()["datagrams_sent"] > sent  # probes and acks went out
            # Only the leaves, sent while the members stop, take the awaited path.
            assert len(queued) <= 2
            await a.aclose()
            await b.aclose()

    trio.run(main)
