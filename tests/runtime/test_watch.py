"""Watch semantics across members, on the in-memory network under ``autojump_clock``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from gossipreg.core.config import Config
from gossipreg.core.errors import NotFoundError, WatcherStoppedError, WatchOverflowError
from gossipreg.core.membership import Address
from gossipreg.core.model import Node, Service
from gossipreg.registry import AsyncRegistry, Result, Watcher, open_registry
from gossipreg.runtime.memory import MemoryNetwork
from gossipreg.testing import wait_until

KEY = bytes(range(32))
CONFIG = Config.local()
#: Bound (virtual seconds) of any wait for a result; failure detection in Config.local
#: takes a few probe intervals plus the suspicion timeout (at most 6 x 3 s here).
WAIT = 60.0


def seed_of(reg: AsyncRegistry) -> str:
    return f"{reg.address[0]}:{reg.address[1]}"


def one(name: str, node_id: str, address: str = "10.9.0.1:80", version: str = "1") -> Service:
    return Service(name, version, nodes=(Node(node_id, address),))


def alive(reg: AsyncRegistry) -> set[str]:
    return {m.name for m in reg.members() if m.state == "alive"}




@contextlib.asynccontextmanager
async def members(net: MemoryNetwork, n: int, **kwargs: Any) -> AsyncIterator[list[AsyncRegistry]]:
    """``n`` members ``m0..`` on ``net``, each joining through the first, converged."""
    async with contextlib.AsyncExitStack() as stack:
        regs: list[AsyncRegistry] = []
        for i in range(n):
            regs.append(
                await stack.enter_async_context(
                    open_registry(transport=net.transport(), seeds=[seed_of(regs[0])] if regs else None,
                                  keyring=KEY, name=f"m{i}", config=CONFIG, seed=i, **kwargs)
                )
            )
        names = {r.name for r in regs}
        await wait_until(lambda: all(alive(r) == names for r in regs), "the members to converge")
        yield regs


async def take(w: Watcher, n: int) -> list[Result]:
    with trio.fail_after(WAIT):
        return [await w.next() for _ in range(n)]


def summary(r: Result) -> tuple[str, str, str, str]:
    [node] = r.service.nodes
    return (r.action, r.service.name, node.id, node.address)


async def test_changes_arrive_in_order_per_key(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with members(net, 3) as [a, b, c], c.watch("ordered") as w:
        # Two keys, owned by two members, changed in turns.
        steps = []
        for i in range(4):
            steps.append(("a", f"10.0.0.{i}:80"))
            await a.register(one("ordered", "from-a", f"10.0.0.{i}:80"))
            await trio.sleep(0.5)
            steps.append(("b", f"10.1.0.{i}:80"))
            await b.register(one("ordered", "from-b", f"10.1.0.{i}:80"))
            await trio.sleep(0.5)
        await a.deregister(one("ordered", "from-a", "10.0.0.3:80"))
        await b.deregister(one("ordered", "from-b", "10.1.0.3:80"))
        results = await take(w, 10)
        per_key: dict[str, list[tuple[str, str]]] = {"from-a": [], "from-b": []}
        for r in results:
            _, _, node_id, address = summary(r)
            per_key[node_id].append((r.action, address))
        for node_id, owner in (("from-a", "a"), ("from-b", "b")):
            addresses = [addr for who, addr in steps if who == owner]
            expected = [("create", addresses[0])] + [("update", x) for x in addresses[1:]]
            # The delete carries the removed node, as last registered.
            expected.append(("delete", addresses[-1]))
            assert per_key[node_id] == expected
        assert w.next_nowait() is None


async def test_delete_carries_the_removed_node(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with members(net, 2) as [a, b], b.watch("svc") as w:
        two = Service("svc", "2", metadata={"tier": "gold"},
                      nodes=(Node("n1", "10.0.0.1:1", metadata={"zone": "x"}), Node("n2", "10.0.0.2:2")))
        await a.register(two)
        created = await take(w, 2)
        assert sorted(summary(r) for r in created) == [("create", "svc", "n1", "10.0.0.1:1"),
                                                       ("create", "svc", "n2", "10.0.0.2:2")]
        await a.deregister(Service("svc", "2", nodes=(Node("n1"),)))
        [gone] = await take(w, 1)
        assert gone.action == "delete"
        assert gone.service.version == "2"
        assert gone.service.metadata == {"tier": "gold"}
        assert gone.service.nodes == (Node("n1", "10.0.0.1:1", metadata={"zone": "x"}),)
        assert [n.id for n in b.get_service("svc")[0].nodes] == ["n2"]


async def test_ttl_expiry_produces_a_delete_everywhere(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with members(net, 2) as [a, b], a.watch("leased") as wa, b.watch("leased") as wb:
        await a.register(one("leased", "l1"), ttl=2)
        for w in (wa, wb):
            assert [summary(r)[:3] for r in await take(w, 2)] == [("create", "leased", "l1"),
                                                                  ("delete", "leased", "l1")]
        assert alive(a) == alive(b) == {"m0", "m1"}  # the lease ended, not the owner


async def test_owner_death_produces_deletes_at_the_others(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with members(net, 3) as [a, b, c], b.watch() as wb, c.watch() as wc:
        await a.register(Service("doomed", "1", nodes=(Node("d1", "10.0.0.1:1"), Node("d2", "10.0.0.2:2"))))
        for w in (wb, wc):
            assert {summary(r)[0] for r in await take(w, 2)} == {"create"}
        net.drop(Address(*a.address))  # an abrupt stop: no leave, no more packets
        for w in (wb, wc):
            deletes = await take(w, 2)
            assert sorted(summary(r) for r in deletes) == [("delete", "doomed", "d1", "10.0.0.1:1"),
                                                           ("delete", "doomed", "d2", "10.0.0.2:2")]
        for r in (b, c):
            assert {m.name: m.state for m in r.members()}["m0"] == "dead"
            with pytest.raises(NotFoundError):
                r.get_service("doomed")


async def test_overflow_raises_then_the_watcher_goes_on(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with members(net, 2) as [a, b], b.watch("flood", buffer=3) as w:
        await a.register(Service("flood", "1", nodes=tuple(Node(f"f{i}", f"10.0.0.{i}:1") for i in range(5))))
        await wait_until(lambda: len(b.get_service("flood")[0].nodes) == 5 if b.list_services() else False,
                         "the five nodes at b")
        with pytest.raises(WatchOverflowError):
            await w.next()
        # Nothing stale is left behind the error ...
        assert w.next_nowait() is None
        # ... and the same watcher reports what happens next.
        await a.deregister(Service("flood", "1", nodes=(Node("f0"),)))
        assert summary((await take(w, 1))[0])[:3] == ("delete", "flood", "f0")
        # Re-listing by watching again with a snapshot gives the current state.
        async with b.watch("flood", snapshot=True) as again:
            [snap] = await take(again, 1)
            assert snap.action == "create"
            assert sorted(n.id for n in snap.service.nodes) == ["f1", "f2", "f3", "f4"]


async def test_watching_a_missing_service_sees_it_appear(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with members(net, 2) as [a, b]:
        with pytest.raises(NotFoundError):
            b.get_service("future")
        async with b.watch("future", snapshot=True) as w:
            assert w.next_nowait() is None  # nothing yet, and no error
            await a.register(one("other", "o1"))  # another service: filtered out
            await a.register(one("future", "f1"))
            [r] = await take(w, 1)
            assert summary(r) == ("create", "future", "f1", "10.9.0.1:80")
            assert w.next_nowait() is None


async def test_snapshot_yields_current_services_as_creates_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with members(net, 2) as [a, b]:
        await a.register(Service("snap", "1", nodes=(Node("s1", "10.0.0.1:1"), Node("s2", "10.0.0.2:1"))))
        await a.register(one("snap", "s3", version="2"))
        await a.register(one("other", "o1"))
        await wait_until(lambda: len(b.list_services()) == 3, "the services at b")

        async with b.watch("snap", snapshot=True) as w:
            first = await take(w, 2)
            assert {r.action for r in first} == {"create"}
            assert sorted((r.service.version, sorted(n.id for n in r.service.nodes)) for r in first) == [
                ("1", ["s1", "s2"]),
                ("2", ["s3"]),
            ]
            await a.register(one("snap", "s4"))
            assert summary((await take(w, 1))[0]) == ("create", "snap", "s4", "10.9.0.1:80")

        async with b.watch(snapshot=True) as everything:
            first = await take(everything, 3)
            assert {r.action for r in first} == {"create"}
            assert sorted((r.service.name, r.service.version) for r in first) == [
                ("other", "1"), ("snap", "1"), ("snap", "2")
            ]
            assert everything.next_nowait() is None


async def test_stop_ends_iteration_after_the_buffered_results(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with members(net, 2) as [a, b]:
        w = b.watch("stopped")
        await a.register(one("stopped", "s1"))
        await wait_until(lambda: bool(b.list_services()), "the service at b")
        w.stop()
        await a.register(one("stopped", "s2"))  # after stop: not delivered
        await wait_until(lambda: len(b.get_service("stopped")[0].nodes) == 2, "s2 at b")
        with trio.fail_after(WAIT):
            seen = [summary(r)[2] async for r in w]
        assert seen == ["s1"]
        with pytest.raises(WatcherStoppedError):
            await w.next()

        # A consumer blocked in `async for` is released by stop() from another task.
        blocked = b.watch("never")
        ended = trio.Event()

        async def consume() -> None:
            async for _ in blocked:
                raise AssertionError("no result expected")
            ended.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.sleep(1)
            assert not ended.is_set()
            blocked.stop()
            with trio.fail_after(WAIT):
                await ended.wait()


async def test_a_shared_node_id_is_logged_on_both_and_returns_when_its_shown_owner_goes(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    net = MemoryNetwork()
    async with members(net, 3) as (m0, m1, m2):
        await m0.register(one("svc", "dup", "10.9.0.1:80"))
        await wait_until(lambda: _address(m2) == "10.9.0.1:80", "m0's registration at m2")
        async with m2.watch("svc") as watcher:
            await m1.register(one("svc", "dup", "10.9.0.2:80"))  # the same node id: a copied config
            await wait_until(
                lambda: all(_address(r) == "10.9.0.2:80" for r in (m0, m1, m2)), "m1's shown everywhere"
            )
            warnings = [r.getMessage() for r in caplog.records if "registered by both" in r.getMessage()]
            assert len(warnings) == 2  # one on each owner, naming both
            assert all("m0" in w and "m1" in w for w in warnings)
            await m1.deregister(one("svc", "dup"))
            await wait_until(lambda: _address(m2) == "10.9.0.1:80", "m0's registration back at m2")
            # m2's watch results follow its view: m1's node replaced m0's; then m1's tombstone
            # and m0's re-assertion arrive (in that order at a third member: a brief gap).
            seen = [(await watcher.next()) for _ in range(3)]
            assert [(r.action, r.service.nodes[0].address) for r in seen] == [
                ("update", "10.9.0.2:80"),
                ("delete", "10.9.0.2:80"),
                ("create", "10.9.0.1:80"),
            ]


def _address(reg: AsyncRegistry) -> str | None:
    try:
        return reg.get_service("svc")[0].nodes[0].address
    except NotFoundError:
        return None


async def test_two_readers_of_one_watcher_are_both_woken(autojump_clock: trio.testing.MockClock) -> None:
    """Both wait on the same wakeup: the first result goes to one reader, the second to the
    other (before, the second reader's wait replaced the first's, which then slept forever)."""
    net = MemoryNetwork()
    async with members(net, 1) as [a], a.watch("svc") as w:
        got: list[str] = []

        async def read() -> None:
            got.append((await w.next()).service.nodes[0].id)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                nursery.start_soon(read)
                await trio.testing.wait_all_tasks_blocked()
                await a.register(one("svc", "n1"))
                await trio.testing.wait_all_tasks_blocked()
                await a.register(one("svc", "n2"))
        assert sorted(got) == ["n1", "n2"]
