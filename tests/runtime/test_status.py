"""A member's status: joined, alone or isolated, and whether it is ready to serve.

Members on the in-memory network under trio's virtual clock (``autojump_clock``).
"""

from __future__ import annotations

import asyncio
import contextlib

import trio
import trio.testing

import gossipreg
import gossipreg.aio
from gossipreg import Status
from gossipreg.core.membership import Address
from gossipreg.registry import ISOLATION_PROBES, AsyncRegistry, open_registry
from gossipreg.runtime.memory import MemoryNetwork
from gossipreg.testing import FAST_CONFIG, TEST_KEY, wait_until


def states(*regs: AsyncRegistry) -> list[str]:
    return [r.status().state for r in regs]


async def test_a_member_without_seeds_is_alone_and_ready(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with open_registry(transport=net.transport(), keyring=TEST_KEY, config=FAST_CONFIG) as a:
        status = a.status()
        assert (status.state, status.members, status.seeds, status.ready) == ("alone", 0, 0, True)


async def test_a_member_waiting_for_its_seed_is_alone_and_not_ready_until_it_joins(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    seed = Address("10.0.9.9", 7946)
    async with contextlib.AsyncExitStack() as stack:
        b = await stack.enter_async_context(open_registry(
            transport=net.transport(), seeds=[f"{seed.host}:{seed.port}"], keyring=TEST_KEY,
            config=FAST_CONFIG, name="b", retry_join=True, timeout=1.0))
        await trio.sleep(5)
        status = b.status()
        assert (status.state, status.seeds, status.ready) == ("alone", 1, False)
        await stack.enter_async_context(open_registry(
            transport=net.transport(seed), keyring=TEST_KEY, config=FAST_CONFIG, name="a"))
        await wait_until(lambda: b.status().ready, "b to join")
        status = b.status()
        assert (status.state, status.members, status.awareness) == ("joined", 1, 0)
        assert status.silent_for < FAST_CONFIG.probe_interval * 2


async def test_a_member_cut_off_from_every_peer_is_isolated_then_joined_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(open_registry(
            transport=net.transport(), keyring=TEST_KEY, config=FAST_CONFIG, name="a"))
        seeds = [f"{a.address[0]}:{a.address[1]}"]
        b, c = [await stack.enter_async_context(open_registry(
            transport=net.transport(), seeds=seeds, keyring=TEST_KEY, config=FAST_CONFIG, name=n))
            for n in ("b", "c")]
        await wait_until(lambda: states(a, b, c) == ["joined"] * 3, "all three to join")
        net.drop(Address(*c.address))
        cut = trio.current_time()
        await wait_until(lambda: c.status().state == "isolated", "c to notice it hears nobody")
        # Not before ISOLATION_PROBES probe intervals of silence; and a and b still hear each other.
        assert trio.current_time() - cut > ISOLATION_PROBES * FAST_CONFIG.probe_interval
        assert not c.status().ready
        assert states(a, b) == ["joined", "joined"]
        net.restore(Address(*c.address))
        await wait_until(lambda: c.status().state == "joined", "c to hear its peers again", limit=120)


def test_the_sync_registry_reports_its_status() -> None:
    with gossipreg.Registry("127.0.0.1:0", insecure=True, handle_signals=False) as reg:
        status = reg.status()
    assert isinstance(status, Status)
    assert (status.state, status.ready) == ("alone", True)


def test_the_asyncio_registry_reports_its_status() -> None:
    async def main() -> Status:
        async with gossipreg.aio.open_registry("127.0.0.1:0", insecure=True) as reg:
            return reg.status()

    status = asyncio.run(main())
    assert (status.state, status.members, status.ready) == ("alone", 0, True)


async def test_a_seed_list_naming_only_this_member_is_a_cluster_of_one_and_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The headless Service of a single pod resolves to the pod itself.
    net = MemoryNetwork()
    own = Address("10.0.7.7", 7946)
    async with open_registry(transport=net.transport(own), seeds=[f"{own.host}:{own.port}"], keyring=TEST_KEY,
                             config=FAST_CONFIG, retry_join=True, timeout=1.0) as a:
        await wait_until(lambda: a.status().ready, "the seed list to resolve to this member alone")
        assert (a.status().state, a.status().seeds) == ("alone", 0)
