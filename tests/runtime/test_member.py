"""The runtime member on its own: joining, rejoining while alone, leaving, and what it logs.

:class:`~gossipreg.runtime.member.GossipMember` is driven here directly, with no
registry above it, on the in-memory network under trio's virtual clock.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from gossipreg import JoinError, Node, Service
from gossipreg.core.catalog import CatalogEvent
from gossipreg.core.crypto import Keyring
from gossipreg.core.membership import Address
from gossipreg.core.node import NodeCore
from gossipreg.registry import AsyncRegistry, open_registry
from gossipreg.runtime.member import REJOIN_INTERVAL, GossipMember
from gossipreg.runtime.memory import MemoryNetwork
from gossipreg.testing import FAST_CONFIG, TEST_KEY, wait_until


def make_member(
    net: MemoryNetwork,
    name: str,
    *,
    seeds: list[tuple[str, int]] | None = None,
    address: Address | None = None,
    key: bytes = TEST_KEY,
) -> GossipMember:
    transport = net.transport(address)
    core = NodeCore(
        name,
        transport.local_address,
        config=FAST_CONFIG,
        rng=random.Random(name),
        wall_clock=lambda: 1.7e9 + trio.current_time(),
        now=trio.current_time(),
        keyring=Keyring(key),
    )
    return GossipMember(core, transport, seeds=seeds or [])


@contextlib.asynccontextmanager
async def running(member: GossipMember, join_within: float = 5.0) -> AsyncIterator[GossipMember]:
    try:
        async with member.running(join_within):
            yield member
    finally:
        await member.driver.transport.aclose()


def seed_of(member: GossipMember) -> list[tuple[str, int]]:
    return [(member.core.address.host, member.core.address.port)]


def alive(member: GossipMember) -> set[str]:
    return {m.name for m in member.core.members() if m.state.value == "alive"}


async def test_a_member_joins_through_its_seed_and_its_catalog_events_reach_on_catalog(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    a = make_member(net, "a")
    seen: list[CatalogEvent] = []
    async with running(a):
        b = make_member(net, "b", seeds=seed_of(a))
        b.on_catalog = seen.append
        async with running(b):
            assert alive(b) == {"a", "b"}  # running() returns once joined
            a.core.register(Service("web", "1", nodes=(Node("w1", "10.1.1.1:80"),)), None, a.driver.now())
            a.driver.flush()
            await wait_until(lambda: bool(seen), "the registration's catalog event", limit=2)
    assert [(ev.action, ev.record.node_id) for ev in seen] == [("create", "w1")]


async def test_a_join_no_seed_answers_is_retried_until_the_deadline_then_a_join_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    b = make_member(net, "b", seeds=[("10.0.9.9", 7946)])  # nothing there: not certain, so retried
    start = trio.current_time()
    with pytest.raises(JoinError, match=r"could not join through any seed \(10\.0\.9\.9:7946\) within 3s"):
        async with running(b, join_within=3.0):
            pytest.fail("b joined nobody")
    assert 3.0 <= trio.current_time() - start < 4.0


async def test_a_join_a_seed_refuses_is_a_join_error_at_once_with_the_cause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    a = make_member(net, "a", key=bytes(32))  # another cluster's key: a refuses b's messages
    async with running(a):
        b = make_member(net, "b", seeds=seed_of(a))
        start = trio.current_time()
        with pytest.raises(JoinError, match=r"\(10\.0\.0\.1:7946\): 10\.0\.0\.1:7946: refused: the seed"):
            async with running(b, join_within=30.0):
                pytest.fail("b joined a cluster of another key")
        assert trio.current_time() - start < 1.0  # not at the 30 s deadline


async def test_a_member_left_alone_rejoins_through_its_seed_when_the_seed_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    a = make_member(net, "a")
    address = a.core.address

    async def run_a(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            async with running(a):
                task_status.started(scope)
                await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        crash_a = await nursery.start(run_a)
        b = make_member(net, "b", seeds=seed_of(a))
        async with running(b):
            await trio.sleep(0.5)
            net.drop(address)  # a crashes: its leave never arrives
            crash_a.cancel()
            await wait_until(lambda: alive(b) == {"b"}, "b to see a fail")
            net.restore(address)
            a2 = make_member(net, "a2", address=address)  # a restarts at its address, with no seeds
            async with running(a2):
                # Nobody tells a2 about b: b finds a2 by retrying its seed while alone.
                await wait_until(lambda: "a2" in alive(b), "b to rejoin", limit=REJOIN_INTERVAL + 5)
                assert "b" in alive(a2)


class _StepCounter(trio.abc.Instrument):
    """Counts the steps (wake-ups) of the tasks whose name ends with ``suffix``."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith(self.suffix):
            self.steps += 1


async def test_the_rejoin_loop_sleeps_while_the_member_has_peers_and_checks_on_schedule_once_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    a = make_member(net, "a")
    address = a.core.address
    counter = _StepCounter("._rejoin_loop")
    async with trio.open_nursery() as nursery:

        async def run_a(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                async with running(a):
                    task_status.started(scope)
                    await trio.sleep_forever()

        crash_a = await nursery.start(run_a)
        b = make_member(net, "b", seeds=seed_of(a))
        async with running(b):
            start = trio.current_time()  # b's rejoin schedule starts about here
            # Its first check may come before b has merged a's view; from then on it has a peer.
            await trio.sleep(REJOIN_INTERVAL + 0.5)
            trio.lowlevel.add_instrument(counter)
            try:
                await trio.sleep(6 * REJOIN_INTERVAL)
                assert counter.steps == 0  # six checks slept through: b has a peer
                net.drop(address)  # a crashes
                crash_a.cancel()
                await wait_until(lambda: alive(b) == {"b"}, "b to see a fail")
                assert counter.steps > 0  # woken by a's failure
                net.restore(address)
                a2 = make_member(net, "a2", address=address)
                async with running(a2):
                    await wait_until(lambda: "a2" in alive(b), "b to rejoin", limit=REJOIN_INTERVAL + 5)
                    # at a check of the schedule (plus the join's round trip)
                    assert (trio.current_time() - start) % REJOIN_INTERVAL < 1.0
            finally:
                trio.lowlevel.remove_instrument(counter)


async def test_a_member_that_stops_leaves_and_its_peers_see_it_left_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    a = make_member(net, "a")
    async with running(a):
        b = make_member(net, "b", seeds=seed_of(a))
        async with running(b):
            await trio.sleep(0.5)
        start = trio.current_time()
        await wait_until(lambda: "b" not in alive(a), "a to see b leave", limit=1)
        assert trio.current_time() - start < 0.5
        assert {m.name: m.state.value for m in a.core.members()}["b"] == "left"


async def test_refused_traffic_is_logged_once_with_its_likely_cause(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    net = MemoryNetwork()
    a = make_member(net, "a")
    async with running(a):
        stranger = make_member(net, "stranger", key=bytes(32))
        async with running(stranger):
            caplog.set_level(logging.WARNING, logger="gossipreg")
            for _ in range(5):
                stranger.core.join([a.core.address], stranger.driver.now())
                stranger.driver.flush()
                await trio.sleep(0.2)
    warnings = [r.getMessage() for r in caplog.records if "no key of the keyring opens" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "latest from 10.0.0.2:7946" in warnings[0]
    assert a.core.statistics()["auth_failures"] >= 5


async def test_with_retry_join_members_start_alone_and_join_a_seed_that_appears_20s_later(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    net = MemoryNetwork()
    seed_address = Address("10.0.9.9", 7946)
    seeds = [(seed_address.host, seed_address.port)]
    web = Service("web", "1", nodes=(Node("w1", "10.1.1.1:80"),))
    caplog.set_level(logging.INFO, logger="gossipreg")
    async with contextlib.AsyncExitStack() as stack:
        start = trio.current_time()
        b = await stack.enter_async_context(
            open_registry(transport=net.transport(), seeds=seeds, keyring=TEST_KEY, name="b",
                          config=FAST_CONFIG, seed=2, timeout=1.0, retry_join=True)
        )
        c = await stack.enter_async_context(
            open_registry(transport=net.transport(), seeds=seeds, keyring=TEST_KEY, name="c",
                          config=FAST_CONFIG, seed=3, timeout=1.0, retry_join=True)
        )
        assert trio.current_time() == start  # both serve at once, no seed answering
        await b.register(web)
        assert [s.nodes[0].id for s in b.get_service("web")] == ["w1"]  # alone, it serves its own
        await trio.sleep(20)
        assert {m.name for m in b.members()} == {"b"}
        a = await stack.enter_async_context(
            open_registry(transport=net.transport(seed_address), keyring=TEST_KEY, name="a",
                          config=FAST_CONFIG, seed=1)
        )
        appeared = trio.current_time()
        names = {"a", "b", "c"}
        await wait_until(lambda: all(alive_names(r) == names for r in (a, b, c)), "all to see each other")
        # Joined within one backoff of the seed appearing, plus gossip to spread the news.
        assert trio.current_time() - appeared <= 3.0
        await wait_until(lambda: any(s.name == "web" for s in c.list_services()), "c to learn web")
    failed = [r.getMessage() for r in caplog.records if "not joined yet after" in r.getMessage()]
    assert len(failed) == 2, failed  # b and c warned once each after their first round (1 s) ...
    joined = [r.getMessage() for r in caplog.records if "joined the cluster after" in r.getMessage()]
    assert len(joined) == 2, joined  # ... and said when they joined


async def test_without_retry_join_an_unanswered_seed_is_a_join_error() -> None:
    net = MemoryNetwork()
    with trio.fail_after(5), pytest.raises(JoinError, match="could not join through any seed"):
        async with open_registry(transport=net.transport(), seeds=["10.0.9.9:7946"], keyring=TEST_KEY,
                                 name="b", config=FAST_CONFIG, seed=2, timeout=0.5):
            pytest.fail("b started without a seed")


def alive_names(reg: AsyncRegistry) -> set[str]:
    return {m.name for m in reg.members() if m.state == "alive"}
