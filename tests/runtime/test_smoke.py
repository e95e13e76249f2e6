"""Smoke test of the trio runtime on the in-memory network."""

from __future__ import annotations

import contextlib

import trio

from gossipreg import Node, Service
from gossipreg.core.config import Config
from gossipreg.core.crypto import Keyring
from gossipreg.registry import open_registry
from gossipreg.runtime.memory import MemoryNetwork

KEY = bytes(range(32))


async def test_three_members_share_a_registration(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_registry(transport=net.transport(), keyring=KEY, name="a", config=Config.local(), seed=1)
        )
        regs = [a]
        for n in ("b", "c"):
            regs.append(
                await stack.enter_async_context(
                    open_registry(
                        transport=net.transport(),
                        seeds=[f"{a.address[0]}:{a.address[1]}"],
                        keyring=Keyring(KEY),
                        name=n,
                        config=Config.local(),
                        seed=2,
                    )
                )
            )
        await trio.sleep(1)
        assert all(len([m for m in r.members() if m.state == "alive"]) == 3 for r in regs)
        async with regs[2].watch("greeter") as w:
            await a.register(Service("greeter", "1", nodes=(Node("g1", "10.1.1.1:80"),)))
            with trio.fail_after(1):
                result = await w.next()
        assert result.action == "create"
        assert result.service.nodes[0].id == "g1"
        assert all(r.get_service("greeter")[0].nodes[0].id == "g1" for r in regs)


async def test_periodic_gossip_rounds_run_on_a_real_clock() -> None:
    """On trio's real clock the driver wakes a little after each deadline it asked for.
    The periodic gossip rounds (the retransmissions of news) must run all the same:
    the virtual clocks of the other tests wake exactly on time and hid that the core
    skipped every round it was woken for late. Eager push off: only rounds and
    piggybacking carry the news."""
    net = MemoryNetwork()
    config = Config.local(eager_push=False)
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_registry(transport=net.transport(), keyring=KEY, name="a", config=config, seed=1)
        )
        b = await stack.enter_async_context(
            open_registry(transport=net.transport(), seeds=[f"{a.address[0]}:{a.address[1]}"],
                          keyring=KEY, name="b", config=config, seed=2)
        )
        await a.register(Service("greeter", "1", nodes=(Node("g1", "10.1.1.1:80"),)))
        with trio.fail_after(10):
            while a.statistics()["gossip_datagrams"] == 0:  # noqa: ASYNC110 - the driver's own timers
                await trio.sleep(0.01)
            while not b.list_services():  # noqa: ASYNC110
                await trio.sleep(0.01)
