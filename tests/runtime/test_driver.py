"""The trio driver under hostile or unlucky input, on the in-memory network.

Every test runs real :class:`~gossipreg.core.node.NodeCore` members through
:func:`~gossipreg.registry.open_registry` on a :class:`MemoryNetwork`, under
``autojump_clock``: timeouts cost virtual time only. An "attacker" is a bare
transport on the same network that speaks raw bytes to a member.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
import trio.testing

from gossipreg.core import chunks
from gossipreg.core.codec import PROTOCOL_VERSION
from gossipreg.core.config import Config
from gossipreg.core.crypto import Keyring
from gossipreg.core.errors import ConfigError, NotFoundError
from gossipreg.core.membership import Address
from gossipreg.core.model import Node, Service
from gossipreg.core.node import NodeCore
from gossipreg.registry import AsyncRegistry, open_registry
from gossipreg.runtime.driver import DriverLimits, MemberDriver
from gossipreg.runtime.memory import MemoryNetwork
from gossipreg.testing import wait_until

KEY = bytes(range(32))
CONFIG = Config.local()  # probe_interval 1 s, stream_timeout 1 s, push_pull_interval 15 s
STREAM_TIMEOUT = CONFIG.stream_timeout


def addr(reg: AsyncRegistry) -> Address:
    return Address(*reg.address)


def seed_of(reg: AsyncRegistry) -> str:
    return f"{reg.address[0]}:{reg.address[1]}"


def svc(name: str, node_id: str) -> Service:
    return Service(name, "1", nodes=(Node(node_id, "10.9.9.9:80"),))


def sees(reg: AsyncRegistry, name: str, node_id: str) -> bool:
    try:
        return any(n.id == node_id for s in reg.get_service(name) for n in s.nodes)
    except NotFoundError:
        return False


def alive(reg: AsyncRegistry) -> set[str]:
    return {m.name for m in reg.members() if m.state == "alive"}




@contextlib.asynccontextmanager
async def members(
    net: MemoryNetwork, n: int, *, prefix: str = "m", seeds: list[str] | None = None, **kwargs: Any
) -> AsyncIterator[list[AsyncRegistry]]:
    """``n`` members on ``net``, each joining through the first (or ``seeds``), converged."""
    kwargs.setdefault("keyring", KEY)
    kwargs.setdefault("config", CONFIG)
    async with contextlib.AsyncExitStack() as stack:
        regs: list[AsyncRegistry] = []
        for i in range(n):
            join = seeds if seeds is not None else [seed_of(regs[0])] if regs else None
            regs.append(
                await stack.enter_async_context(
                    open_registry(
                        transport=net.transport(), seeds=join, name=f"{prefix}{i}", seed=i, **kwargs
                    )
                )
            )
        if seeds is None:
            names = {r.name for r in regs}
            await wait_until(lambda: all(alive(r) == names for r in regs), "the members to converge")
        yield regs


async def joins_and_shares(net: MemoryNetwork, reg: AsyncRegistry, tag: str, **kwargs: Any) -> None:
    """A new member can still join through ``reg`` and both see each other's registration."""
    async with members(net, 1, prefix=f"late-{tag}-", seeds=[seed_of(reg)], **kwargs) as [late]:
        await late.register(svc("late", tag))
        await reg.register(svc("early", tag))
        await wait_until(lambda: sees(reg, "late", tag) and sees(late, "early", tag), "a shared registration")


async def read_to_eof(stream: trio.abc.Stream) -> bytes:
    out = bytearray()
    while chunk := await stream.receive_some():
        out += chunk
    return bytes(out)


# ---------------------------------------------------------------- streams


async def test_garbage_on_a_stream_closes_it_counted_and_the_member_carries_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with members(net, 1) as [a]:
        attacker = net.transport()
        before = a.statistics()

        # A length prefix over max_frame: the driver's framing refuses it.
        oversized = await attacker.connect(addr(a))
        await oversized.send_all(b"\xff" * 64)
        # Well framed, but nothing the keyring opens: the core refuses it and closes the stream.
        junk = bytes([0xEE]) + random.Random(1).randbytes(199)
        unsealed = await attacker.connect(addr(a))
        await unsealed.send_all(len(junk).to_bytes(4, "big") + junk)

        # Both are closed at once (well within the stream timeout): the first with nothing
        # answered, the second after one refusal frame saying why (no key opened it).
        refusal = chunks.refusal(chunks.REFUSAL_CODES["auth_failures"])
        with trio.fail_after(STREAM_TIMEOUT / 2):
            assert await read_to_eof(oversized) == b""
            assert await read_to_eof(unsealed) == len(refusal).to_bytes(4, "big") + refusal
        after = a.statistics()
        assert after["driver_stream_errors"] - before["driver_stream_errors"] == 1
        assert after["auth_failures"] - before["auth_failures"] == 1
        assert after["driver_handler_errors"] == 0
        await trio.testing.wait_all_tasks_blocked()
        assert a._driver._inbound == 0

        await joins_and_shares(net, a, "after-garbage")


@pytest.mark.parametrize(
    "sent", [b"", b"\x00\x00", b"\x00\x00\x00\x10partial"], ids=["idle", "header", "body"]
)
async def test_a_stalled_unauthenticated_stream_is_closed_after_the_auth_timeout_and_counted(
    sent: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    net = MemoryNetwork()
    async with members(net, 1) as [a]:
        auth_timeout = a._driver.limits.auth_timeout
        assert auth_timeout == min(2.0, STREAM_TIMEOUT)
        attacker = net.transport()
        stream = await attacker.connect(addr(a))
        await stream.send_all(sent)
        start = trio.current_time()
        with trio.fail_after(10 * STREAM_TIMEOUT):
            assert await read_to_eof(stream) == b""
        # Virtual time: closed by the timeout, not before, and not much after.
        assert auth_timeout <= trio.current_time() - start < 2 * auth_timeout
        assert a.statistics()["driver_streams_auth_timeouts"] == 1
        await trio.testing.wait_all_tasks_blocked()
        assert a._driver._inbound == 0
        await joins_and_shares(net, a, "after-stall")


async def test_a_stalled_authenticated_stream_is_closed_after_the_stream_timeout_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with members(net, 1) as [a]:
        a._driver.limits = dataclasses.replace(a._driver.limits, auth_timeout=0.1)
        stream = await net.transport().connect(addr(a))
        await stream.send_all(_partial_chunk(a))  # authenticates; the message's rest never comes
        start = trio.current_time()
        with trio.fail_after(10 * STREAM_TIMEOUT):
            assert await read_to_eof(stream) == b""
        assert STREAM_TIMEOUT <= trio.current_time() - start < 2 * STREAM_TIMEOUT
        assert a.statistics()["driver_stream_errors"] == 1
        assert a.statistics()["driver_streams_auth_timeouts"] == 0
        await trio.testing.wait_all_tasks_blocked()
        assert a._driver._inbound == 0


async def test_a_stream_beyond_max_inbound_streams_evicts_the_oldest_unauthenticated_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit, extra = 4, 6
    net = MemoryNetwork()
    async with members(net, 1) as [a]:
        a._driver.limits = dataclasses.replace(a._driver.limits, max_inbound_streams=limit)
        attacker = net.transport()
        streams = []
        for _ in range(limit + extra):
            streams.append(await attacker.connect(addr(a)))
            await trio.testing.wait_all_tasks_blocked()
        # Bounded cost: `limit` streams wait for a first frame (no conversation exists for
        # them yet); each newcomer evicted the oldest.
        assert a._driver._inbound == limit
        assert [len(q) for q in a._driver._unauth.values()] == [limit]
        assert not a._driver._streams
        assert a.statistics()["driver_streams_evicted"] == extra
        assert a.statistics()["driver_streams_refused_limit"] == 0

        start = trio.current_time()
        closed_after: list[tuple[int, float]] = []

        async def watch(i: int, stream: trio.abc.Stream) -> None:
            assert await read_to_eof(stream) == b""
            closed_after.append((i, trio.current_time() - start))

        with trio.fail_after(10 * STREAM_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for i, s in enumerate(streams):
                    nursery.start_soon(watch, i, s)
        # The first `extra` were evicted (already closed); the last `limit` (silent) timed out.
        assert sorted(i for i, t in closed_after if t == 0) == list(range(extra))
        assert sorted(i for i, t in closed_after if t > 0) == list(range(extra, limit + extra))
        await trio.testing.wait_all_tasks_blocked()
        assert a._driver._inbound == 0
        assert not a._driver._unauth
        # The slots are free again: a normal join (an inbound push-pull stream) works.
        await joins_and_shares(net, a, "after-flood")


def _partial_chunk(reg: AsyncRegistry) -> bytes:
    """A framed, authenticated first chunk of a message whose rest never comes."""
    label = CONFIG.label_bytes + b"\x00gossipreg-stream"
    aad = chunks.chunk_label(label, initiator=True, seq=0)
    frame = Keyring(KEY).seal(bytes([chunks.MORE]) + b"\x47", aad)
    return len(frame).to_bytes(4, "big") + frame


async def test_authenticated_streams_are_not_evicted_and_the_next_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = 3
    net = MemoryNetwork()
    async with members(net, 1) as [a]:
        a._driver.limits = dataclasses.replace(a._driver.limits, max_inbound_streams=limit)
        holder = net.transport()
        held = []
        for _ in range(limit):
            s = await holder.connect(addr(a))
            await s.send_all(_partial_chunk(a))
            held.append(s)
        await trio.testing.wait_all_tasks_blocked()
        assert not a._driver._unauth  # all three proved the key
        late = await net.transport().connect(addr(a))
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(0.001):  # closed on arrival: no virtual time passes
            assert await read_to_eof(late) == b""
        assert a.statistics()["driver_streams_refused_limit"] == 1
        assert a.statistics()["driver_streams_evicted"] == 0
        assert a._driver._inbound == limit


async def test_one_source_holds_at_most_max_pending_per_source_unauthenticated_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    per_source = 3
    net = MemoryNetwork()
    async with members(net, 1) as [a]:
        a._driver.limits = dataclasses.replace(a._driver.limits, max_pending_per_source=per_source)
        flooder, other = net.transport(), net.transport()
        assert flooder.local_address.host != other.local_address.host
        flood = [await flooder.connect(addr(a)) for _ in range(per_source + 5)]
        await trio.testing.wait_all_tasks_blocked()
        others = [await other.connect(addr(a)) for _ in range(2)]
        await trio.testing.wait_all_tasks_blocked()
        pending = {src: len(q) for src, q in a._driver._unauth.items()}
        assert pending == {flooder.local_address.host: per_source, other.local_address.host: 2}
        # The flooder's newest were refused on arrival; nothing was evicted.
        assert a.statistics()["driver_streams_refused_source"] == 5
        assert a.statistics()["driver_streams_evicted"] == 0
        for s in flood[per_source:]:
            with trio.fail_after(0.001):
                assert await read_to_eof(s) == b""
        for s in (*flood, *others):
            await s.aclose()


async def test_an_unauthenticated_stream_gets_auth_timeout_even_when_it_trickles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with members(net, 1) as [a]:
        a._driver.limits = dataclasses.replace(a._driver.limits, auth_timeout=0.5)
        slow = await net.transport().connect(addr(a))
        start = trio.current_time()
        sent = 0
        with trio.fail_after(10 * STREAM_TIMEOUT):
            # A slowloris: one byte of a long frame every 0.1 s, never finishing it.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                header = (chunks.MAX_FRAME - 1).to_bytes(4, "big")
                for i in range(1000):
                    await slow.send_all((header + bytes(1000))[i : i + 1])
                    sent += 1
                    await trio.sleep(0.1)
        assert 0.5 <= trio.current_time() - start < 0.7
        assert a.statistics()["driver_streams_auth_timeouts"] == 1
        await trio.testing.wait_all_tasks_blocked()
        assert a._driver._inbound == 0


@pytest.mark.parametrize("per_source", [16, 100_000], ids=["per-source-limit", "slots-full"])
async def test_a_join_succeeds_through_a_member_flooded_with_idle_connections(
    per_source: int, autojump_clock: trio.testing.MockClock
) -> None:
    net = MemoryNetwork()
    async with members(net, 2) as [a, b]:
        a._driver.limits = dataclasses.replace(a._driver.limits, auth_timeout=0.5,
                                               max_pending_per_source=per_source)

        async def flood() -> None:
            attacker = net.transport()
            held = []
            while True:  # cancelled below; every connection ever opened stays open
                held.append(await attacker.connect(addr(a)))
                await trio.sleep(0.002)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            await trio.sleep(1.0)  # the slots are full of idle connections by now
            # One source holds its quota, or (without one) every slot.
            held = min(per_source, a._driver.limits.max_inbound_streams)
            assert [len(q) for q in a._driver._unauth.values()] == [held]
            with trio.fail_after(5):
                await joins_and_shares(net, a, "under-flood")
            # b's anti-entropy with a keeps working too.
            await b.register(svc("from-b", "b1"))
            await wait_until(lambda: sees(a, "from-b", "b1"), "b's registration at a")
            nursery.cancel_scope.cancel()
        stats = a.statistics()
        if per_source < a._driver.limits.max_inbound_streams:
            assert stats["driver_streams_refused_source"] > 0  # the flooder's excess, on arrival
        else:
            assert stats["driver_streams_evicted"] > 0  # every slot was the flooder's


# ---------------------------------------------------------------- datagrams


async def test_garbage_datagrams_are_counted_and_dropped(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(7)
    net = MemoryNetwork()
    async with members(net, 2) as [a, b]:
        attacker = net.transport()
        before = a.statistics()
        garbage = [rng.randbytes(rng.randrange(0, 1500)) for _ in range(200)]
        garbage += [b"", bytes([PROTOCOL_VERSION]) + rng.randbytes(100), b"\x01" + rng.randbytes(100)]
        for g in garbage:
            await attacker.send_datagram(g, addr(a))
        await trio.sleep(1)
        after = a.statistics()

        def delta(name: str) -> int:
            return after[name] - before[name]

        rejected = delta("auth_failures") + delta("plaintext_rejected") + delta("decode_errors")
        assert rejected == len(garbage)
        assert delta("plaintext_rejected") >= 1  # the one that looks like a plaintext datagram
        assert after["driver_handler_errors"] == 0
        assert alive(a) == {"m0", "m1"}
        await b.register(svc("still", "ok"))
        await wait_until(lambda: sees(a, "still", "ok"), "a registration after the garbage")


async def test_the_first_authentication_failure_is_logged_at_once_then_once_a_minute(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    net = MemoryNetwork()
    async with members(net, 1) as [a]:
        attacker = net.transport()
        wrong = Keyring(bytes(range(1, 33))).seal(bytes([PROTOCOL_VERSION]) + b"\x90", b"")

        def warnings() -> list[str]:
            return [r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING and "keyring opens" in r.getMessage()]

        with caplog.at_level(logging.WARNING, logger="gossipreg"):
            await attacker.send_datagram(wrong, addr(a))
            await trio.testing.wait_all_tasks_blocked()
            # At once: no virtual time has passed.
            [first] = warnings()
            assert first.startswith("gossipreg: 1 datagram(s) or stream frame(s) no key")
            assert str(attacker.local_address.host) in first
            for _ in range(5):
                await attacker.send_datagram(wrong, addr(a))
            await trio.sleep(59)
            assert len(warnings()) == 1  # rate-limited
            await trio.sleep(1.5)
            await attacker.send_datagram(wrong, addr(a))
            await trio.testing.wait_all_tasks_blocked()
            assert len(warnings()) == 2
            assert warnings()[1].startswith("gossipreg: 6 datagram(s)")  # the 5 held back, and this one
        assert a.statistics()["auth_failures"] == 7


async def test_garbage_datagrams_to_an_insecure_member_are_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(8)
    net = MemoryNetwork()
    async with members(net, 1, keyring=None, insecure=True) as [a]:
        attacker = net.transport()
        garbage = [rng.randbytes(rng.randrange(1, 1500)) for _ in range(100)]
        # Plaintext-looking ones reach the decoder, whose errors are counted too.
        garbage += [bytes([PROTOCOL_VERSION]) + rng.randbytes(rng.randrange(0, 300)) for _ in range(100)]
        for g in garbage:
            await attacker.send_datagram(g, addr(a))
        await trio.sleep(1)
        stats = a.statistics()
        assert stats["decode_errors"] + stats["sealed_received_while_insecure"] == len(garbage)
        assert stats["decode_errors"] >= 100
        assert stats["driver_handler_errors"] == 0
        await joins_and_shares(net, a, "insecure", keyring=None, insecure=True)


# ---------------------------------------------------------------- handler errors


async def test_exception_in_the_datagram_handler_is_logged_counted_and_survived(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    net = MemoryNetwork()
    async with members(net, 2) as [a, b]:
        real = a._core.receive_datagram
        raised = 0

        def flaky(data: bytes, address: tuple[str, int], now: float) -> None:
            nonlocal raised
            if not raised:
                raised += 1
                raise RuntimeError("injected handler bug")
            real(data, address, now)

        a._core.receive_datagram = flaky  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger="gossipreg"):
            await b.register(svc("after-bug", "1"))
            await wait_until(lambda: raised == 1, "the injected failure")
            # The member carries on: it receives the registration (retransmitted or pushed later).
            await wait_until(lambda: sees(a, "after-bug", "1"), "the registration after the failure")
        assert a.statistics()["driver_handler_errors"] == 1
        assert any("error handling a datagram" in r.getMessage() and r.exc_info for r in caplog.records)
        assert alive(a) == alive(b) == {"m0", "m1"}


async def test_exception_in_a_timer_is_logged_counted_and_survived(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    net = MemoryNetwork()
    async with members(net, 2) as [a, _b]:
        real = a._core.tick
        raised = 0

        def flaky(now: float) -> None:
            nonlocal raised
            if not raised:
                raised += 1
                raise RuntimeError("injected timer bug")
            real(now)

        a._core.tick = flaky  # type: ignore[method-assign]
        probes = a.statistics()["probes_sent"]
        with caplog.at_level(logging.ERROR, logger="gossipreg"):
            await trio.sleep(10 * CONFIG.probe_interval)
        assert raised == 1
        assert a.statistics()["driver_handler_errors"] == 1
        assert a.statistics()["probes_sent"] - probes >= 8  # the timers kept running
        assert any("protocol timer" in r.getMessage() and r.exc_info for r in caplog.records)
        await joins_and_shares(net, a, "after-timer-bug")


async def test_exception_in_the_stream_handler_is_counted_and_the_join_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with members(net, 1) as [a]:
        real = a._core.receive_stream
        raised = 0

        def flaky(stream: tuple[str, int], address: tuple[str, int], data: bytes, now: float) -> bool:
            nonlocal raised
            if not raised:
                raised += 1
                raise RuntimeError("injected stream bug")
            return real(stream, address, data, now)

        a._core.receive_stream = flaky  # type: ignore[method-assign]
        # The first join's INIT hits the bug; its stream times out and the joiner retries.
        await joins_and_shares(net, a, "after-stream-bug")
        assert raised == 1
        assert a.statistics()["driver_handler_errors"] == 1


async def test_exception_at_the_end_of_a_stream_is_counted_and_survived(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with members(net, 1) as [a]:
        real = a._core.stream_failed
        raised = 0

        def flaky(stream: tuple[str, int], now: float, reason: str = "stream failed", *,
                  permanent: bool = False) -> None:
            nonlocal raised
            if not raised:
                raised += 1
                raise RuntimeError("injected bug at stream end")
            real(stream, now, reason, permanent=permanent)

        a._core.stream_failed = flaky  # type: ignore[method-assign]
        stream = await net.transport().connect(addr(a))
        await stream.send_all(_partial_chunk(a))  # the core now knows the stream
        await trio.testing.wait_all_tasks_blocked()
        await stream.aclose()  # the member's side ends, and tells the core
        await wait_until(lambda: raised == 1, "the injected failure")
        assert a.statistics()["driver_handler_errors"] == 1
        await joins_and_shares(net, a, "after-close-bug")


async def test_driver_without_a_subscriber_still_drains_the_core_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Events are taken on every flush even with no ``on_event``: they would pile up forever."""
    net = MemoryNetwork()
    transport = net.transport()
    core = NodeCore(
        "solo", transport.local_address, config=CONFIG, rng=random.Random(1), wall_clock=lambda: 1e9,
        now=trio.current_time(), keyring=Keyring(KEY),
    )
    driver = MemberDriver(core, transport)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        for i in range(10):
            core.register(svc("quiet", str(i)), None, driver.now())
            driver.flush()
        await trio.sleep(5)
        assert core.take_events() == []
        nursery.cancel_scope.cancel()


async def test_memory_transport_closes_a_stream_once_its_handler_returns() -> None:
    """The StreamHandler contract, as NetTransport (trio.serve_listeners) keeps it."""
    net = MemoryNetwork()
    server, client = net.transport(), net.transport()

    async def handler(stream: trio.abc.Stream, peer: Address) -> None:
        await stream.send_all(b"bye")  # and return without closing

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, handler)
            stream = await client.connect(server.local_address)
            assert await read_to_eof(stream) == b"bye"
            nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- idle cost and shutdown


async def test_idle_members_wake_about_once_per_probe_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Idle cost: the timer loop wakes (one ``tick`` per wake) for each probe and little else.

    With nothing changing, a member's timers are: one probe per
    ``probe_interval`` (its timeout is cancelled by the ack, which moves the
    wake-up later), a push-pull every ``push_pull_interval`` (15 s here: its
    stream deadline is likewise cancelled when it completes), and no gossip
    rounds (the broadcast queue is empty). So about 60 + 4 wakes over 60 s.
    A driver that still woke at a cancelled deadline would wake twice per
    probe (at the probe and at its obsolete timeout), about 124; anything
    that busy-loops would be far above. The bound allows 1.5 per interval.
    """
    net = MemoryNetwork()
    async with members(net, 3) as regs:
        await trio.sleep(30)  # let the joins' broadcasts run out
        assert all(r.statistics()["broadcast_queue"] == 0 for r in regs)
        wakes = [0] * len(regs)
        for i, r in enumerate(regs):
            real = r._core.tick

            def counted(now: float, real: Callable[[float], None] = real, i: int = i) -> None:
                wakes[i] += 1
                real(now)

            r._core.tick = counted  # type: ignore[method-assign]
        span = 60.0
        await trio.sleep(span)
        intervals = span / CONFIG.probe_interval
        assert all(w >= 0.9 * intervals for w in wakes), wakes  # it does probe
        assert all(w < 1.5 * intervals for w in wakes), wakes
        assert all(r.statistics()["probes_failed"] == 0 for r in regs)


async def test_clean_shutdown_sends_a_leave(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with members(net, 2) as [a, b]:
        async with members(net, 1, prefix="leaver-", seeds=[seed_of(a)]) as [leaver]:
            await leaver.register(svc("leaving", "x"))
            await wait_until(
                lambda: all(alive(r) == {"m0", "m1", "leaver-0"} and sees(r, "leaving", "x") for r in (a, b)),
                "the leaver to join and register",
            )
        # Its leave went out on close: the others see LEFT (not a failure), and its service goes.
        await wait_until(
            lambda: all({m.name: m.state for m in r.members()}.get("leaver-0") == "left" for r in (a, b)),
            "the others to see the leaver LEFT",
        )
        assert not sees(a, "leaving", "x")
        assert not sees(b, "leaving", "x")
        assert a.statistics()["probes_failed"] == b.statistics()["probes_failed"] == 0


# ---------------------------------------------------------------- limits as options


async def test_driver_limits_are_an_option_of_open_registry(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    limits = DriverLimits(max_inbound_streams=2, max_pending_per_source=1, auth_timeout=0.25)
    async with members(net, 1, limits=limits) as [a]:
        assert a._driver.limits is limits
        first = await net.transport().connect(addr(a))
        second = await net.transport().connect(addr(a))
        await trio.testing.wait_all_tasks_blocked()
        assert a._driver._inbound == 2
        third = await net.transport().connect(addr(a))  # full: evicts the oldest
        await trio.testing.wait_all_tasks_blocked()
        assert a.statistics()["driver_streams_evicted"] == 1
        with trio.fail_after(0.001):
            assert await read_to_eof(first) == b""
        for s in (second, third):
            await s.aclose()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_inbound_streams": 0}, "max_inbound_streams: must be a positive int"),
        ({"max_pending_per_source": True}, "max_pending_per_source: must be a positive int"),
        ({"auth_timeout": 0}, "auth_timeout: must be a positive finite number"),
        ({"stream_timeout": math.inf}, "stream_timeout: must be a positive finite number"),
    ],
)
def test_bad_driver_limits_are_config_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        DriverLimits(**fields)


async def test_limits_of_a_wrong_type_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^limits: must be a DriverLimits, not dict"):
        async with open_registry(insecure=True, limits={"max_inbound_streams": 1}):  # type: ignore[arg-type]
            pass


async def test_a_periodic_check_is_answered_over_a_real_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The responder answers a check and closes at once, on the stream's first message: its
    answer must still be written (a regression: the driver closed before writing it, so
    every check failed and anti-entropy only ran at joins)."""
    net = MemoryNetwork()
    async with members(net, 2) as [a, b]:
        before = a.statistics()
        a._core._start_check(addr(b), a._driver.now())
        a._driver.flush()
        matched = before["push_pull_checks_matched"]
        await wait_until(lambda: a.statistics()["push_pull_checks_matched"] > matched, "the check's answer")
        assert a.statistics()["push_pulls_failed"] == before["push_pulls_failed"]
        # A mismatch goes on to a full push-pull that completes.
        await b.register(svc("late", "x"))
        b._core.catalog.deregister(svc("late", "x"), b._driver.now())  # b's catalog alone changes
        a._core._start_check(addr(b), a._driver.now())
        a._driver.flush()
        await wait_until(lambda: a.statistics()["push_pulls_completed"] > before["push_pulls_completed"],
                         "the full push-pull after a mismatched check")
