"""gossipreg.testing: the in-memory registries and the cluster harness, under ``autojump_clock``.

The memory registry's promise is "what a single member sees": the parity
tests run one script against a :class:`MemoryRegistry` and against a real
member (``open_registry`` on a memory transport) and compare every answer.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import gossipreg
from gossipreg import (
    ConfigError,
    InvalidServiceError,
    Node,
    NotFoundError,
    RegistrationLimitError,
    RegistryClosedError,
    RegistryProtocol,
    Service,
    WatcherStoppedError,
)
from gossipreg.core.config import Config
from gossipreg.testing import MemoryNetwork, MemoryRegistry, SyncMemoryRegistry, cluster, wait_until

CONFIG = Config.local()


def svc(name: str = "greeter", version: str = "1", *nodes: tuple[str, str], **metadata: str) -> Service:
    return Service(name, version, metadata=metadata, nodes=tuple(Node(i, a) for i, a in nodes))


def shown(value: object) -> object:
    """A comparable trace entry: results and services as tuples, errors by type."""
    if isinstance(value, gossipreg.Result):
        return ("result", value.action, shown(value.service))
    if isinstance(value, Service):
        return (value.name, value.version, dict(value.metadata), [(n.id, n.address) for n in value.nodes])
    if isinstance(value, list):
        return [shown(v) for v in value]
    if isinstance(value, BaseException):
        return ("error", type(value).__name__)
    return value


async def scenario(reg: RegistryProtocol) -> list[object]:
    """One script of registry calls; every answer (or error) goes into the trace."""
    trace: list[object] = []

    async def attempt(fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            result = fn(*args, **kwargs)
            if hasattr(result, "__await__"):
                result = await result
            trace.append(shown(result))
        except Exception as exc:
            trace.append(shown(exc))

    everything = reg.watch(buffer=64)
    small = reg.watch("greeter", buffer=2)
    await attempt(reg.get_service, "greeter")  # NotFoundError
    await attempt(reg.register, svc("greeter", "1", ("g1", "10.0.0.1:80")), ttl=10)
    await attempt(reg.register, svc("greeter", "1", ("g2", "10.0.0.2:80")))
    await attempt(reg.register, svc("greeter", "2", ("g1", "10.0.0.1:81"), tier="beta"))
    await attempt(reg.register, svc("other", "1", ("o1", "10.0.1.1:80")))
    await attempt(reg.get_service, "greeter")  # one Service per version
    await attempt(reg.list_services)
    await attempt(reg.register, svc("greeter", "1", ("g2", "10.0.0.3:80")))  # update
    await attempt(reg.deregister, svc("other", "1", ("o1", "10.0.1.1:80")))  # delete
    await attempt(reg.get_service, "other")
    snapshot = reg.watch("greeter", snapshot=True)
    # Errors, as a real member gives them.
    await attempt(reg.register, svc("greeter", "1"))  # no nodes
    await attempt(reg.register, svc("greeter", "1", ("g3", "10.0.0.9:80")), ttl=0)
    await attempt(reg.register, svc("greeter", "1", ("g3", "10.0.0.9:80")), ttl=1e9)
    await attempt(reg.register, "greeter")
    await attempt(reg.watch, buffer=0)
    await attempt(reg.watch, 42)
    # The ttl of g1 v1 runs out; the others have none.
    await trio.sleep(11)
    await attempt(reg.get_service, "greeter")
    await attempt(reg.deregister, svc("greeter", "2"))  # no nodes: every node of that version
    await attempt(reg.get_service, "greeter")
    await attempt(reg.list_services)
    for w in (everything, snapshot):
        w.stop()
        async for result in w:
            trace.append(shown(result))
    await attempt(small.next)  # overflowed at its third result
    await attempt(small.next_nowait)  # nothing since
    small.stop()
    await attempt(small.next)
    trace.append(len(reg.members()))
    return trace


async def test_memory_registry_answers_as_a_real_member_does(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(600):
        async with gossipreg.open_registry(
            transport=MemoryNetwork().transport(), name="real", insecure=True, config=CONFIG
        ) as real:
            expected = await scenario(real)
        got = await scenario(MemoryRegistry("fake", config=CONFIG))
    assert got == expected
    # The script did see what it is about.
    assert ("error", "NotFoundError") in got
    assert ("error", "InvalidServiceError") in got
    assert ("error", "ConfigError") in got
    assert ("error", "WatchOverflowError") in got
    actions = {entry[1] for entry in got if isinstance(entry, tuple) and entry[0] == "result"}
    assert actions == {"create", "update", "delete"}


async def test_ttl_expiry_runs_on_trios_clock(autojump_clock: trio.testing.MockClock) -> None:
    reg = MemoryRegistry()
    service = svc("greeter", "1", ("g1", "10.0.0.1:80"))
    async with reg.watch("greeter") as watcher:
        start = trio.current_time()
        await reg.register(service, ttl=30)
        assert (await watcher.next()).action == "create"
        result = await watcher.next()  # the lease runs out: no task, the watcher wakes for it
        assert result.action == "delete"
        assert result.service.nodes[0].id == "g1"
        assert trio.current_time() - start == pytest.approx(30, abs=0.01)
    with pytest.raises(NotFoundError):
        reg.get_service("greeter")
    assert reg.statistics()["catalog_expired"] == 1


async def test_keep_alive_renews_until_cancelled(autojump_clock: trio.testing.MockClock) -> None:
    reg = MemoryRegistry()
    service = svc("greeter", "1", ("g1", "10.0.0.1:80"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reg.keep_alive, service, 3.0)
        await trio.sleep(100)
        assert reg.get_service("greeter")[0].nodes[0].id == "g1"
        assert reg.statistics()["catalog_renewals"] > 30
        nursery.cancel_scope.cancel()
    await trio.sleep(3.1)
    with pytest.raises(NotFoundError):
        reg.get_service("greeter")
    with pytest.raises(InvalidServiceError, match="needs a ttl"):
        await reg.keep_alive(service, None)  # type: ignore[arg-type]


async def test_snapshot_then_changes_and_stop(autojump_clock: trio.testing.MockClock) -> None:
    reg = MemoryRegistry()
    await reg.register(svc("a", "1", ("a1", "10.0.0.1:80")))
    await reg.register(svc("b", "1", ("b1", "10.0.0.2:80")))
    async with reg.watch(snapshot=True) as watcher:
        assert [(r.action, r.service.name) for r in (await watcher.next(), await watcher.next())] == [
            ("create", "a"),
            ("create", "b"),
        ]
        assert watcher.next_nowait() is None
        await reg.deregister(svc("a", "1", ("a1", "10.0.0.1:80")))
        assert (await watcher.next()).action == "delete"
    with pytest.raises(WatcherStoppedError):
        await watcher.next()


async def test_a_waiting_watcher_is_woken_by_a_registration(autojump_clock: trio.testing.MockClock) -> None:
    reg = MemoryRegistry()
    got: list[str] = []

    async def consume() -> None:
        async with reg.watch() as watcher:
            async for result in watcher:
                got.append(result.action)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.sleep(5)
        await reg.register(svc("a", "1", ("a1", "10.0.0.1:80")))
        await wait_until(lambda: got == ["create"], "the create")
        reg.close()  # stops the watcher: the iteration ends
    assert got == ["create"]


async def test_limits_and_options_are_the_real_ones(autojump_clock: trio.testing.MockClock) -> None:
    reg = MemoryRegistry("limited", config=Config.local().replace(max_records_per_owner=2))
    await reg.register(svc("a", "1", ("a1", "10.0.0.1:80"), ("a2", "10.0.0.1:81")))
    with pytest.raises(RegistrationLimitError):
        await reg.register(svc("a", "1", ("a3", "10.0.0.1:82")))
    with pytest.raises(ConfigError, match="name"):
        MemoryRegistry("")
    with pytest.raises(ConfigError, match="address"):
        MemoryRegistry(address="nowhere:port")
    with pytest.raises(ConfigError, match="config"):
        MemoryRegistry(config="lan")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="metadata"):
        MemoryRegistry(metadata={"k": 1})  # type: ignore[dict-item]
    reg = MemoryRegistry("m", address="10.1.2.3:4000", metadata={"zone": "a"})
    [member] = reg.members()
    assert (member.name, member.address, member.state, dict(member.metadata)) == (
        "m",
        ("10.1.2.3", 4000),
        "alive",
        {"zone": "a"},
    )
    assert (reg.name, reg.address, reg.keyring, str(reg)) == ("m", ("10.1.2.3", 4000), None, "memory")
    assert repr(reg) == "<MemoryRegistry m at 10.1.2.3:4000>"


async def test_closing_a_memory_registry(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryRegistry() as reg:
        watcher = reg.watch()
        await reg.register(svc("a", "1", ("a1", "10.0.0.1:80")))
    assert reg.closed
    assert repr(reg).endswith("(closed)>")
    with pytest.raises(RegistryClosedError):
        reg.get_service("a")
    assert (await watcher.next()).action == "create"
    with pytest.raises(WatcherStoppedError):
        await watcher.next()
    reg.close()  # idempotent


def test_memory_registry_needs_a_trio_run() -> None:
    with pytest.raises(RuntimeError):
        MemoryRegistry()


# ------------------------------------------------------------------ the sync fake


def test_sync_memory_registry_runs_on_its_clock() -> None:
    now = [100.0]
    reg = SyncMemoryRegistry(clock=lambda: now[0])
    with reg.watch("greeter") as watcher:
        reg.register(svc("greeter", "1", ("g1", "10.0.0.1:80")), ttl=30)
        assert watcher.next(timeout=0).action == "create"
        with pytest.raises(TimeoutError):
            watcher.next(timeout=0.01)
        now[0] = 129.0
        assert reg.get_service("greeter")[0].nodes[0].id == "g1"
        now[0] = 130.5
        assert watcher.next(timeout=0).action == "delete"
    with pytest.raises(NotFoundError):
        reg.get_service("greeter")
    with pytest.raises(ConfigError, match="timeout"):
        watcher.next(timeout=-1)


def test_sync_memory_keep_alive_holds_until_stopped() -> None:
    now = [0.0]
    reg = SyncMemoryRegistry(clock=lambda: now[0])
    service = svc("greeter", "1", ("g1", "10.0.0.1:80"))
    with reg.keep_alive(service, ttl=30):
        for step in range(1, 20):
            now[0] = step * 25.0  # renewals due every 10 s, the registry used every 25 s
            assert reg.list_services() == [Service("greeter", "1")]
    now[0] += 29.0
    assert reg.get_service("greeter")
    now[0] += 2.0
    with pytest.raises(NotFoundError):
        reg.get_service("greeter")


def test_sync_memory_registry_wakes_a_blocked_watcher() -> None:
    import threading

    reg = SyncMemoryRegistry()
    watcher = reg.watch()
    results: list[str] = []

    def consume() -> None:
        results.extend(r.action for r in watcher)

    thread = threading.Thread(target=consume)
    thread.start()
    reg.register(svc("a", "1", ("a1", "10.0.0.1:80")))
    reg.deregister(svc("a", "1", ("a1", "10.0.0.1:80")))
    reg.close()
    thread.join(5)
    assert not thread.is_alive()
    assert results == ["create", "delete"]


async def test_sync_memory_registry_refuses_to_block_trio(autojump_clock: trio.testing.MockClock) -> None:
    reg = SyncMemoryRegistry()
    watcher = reg.watch()
    with pytest.raises(gossipreg.BlockingCallError, match="open_registry"):
        watcher.next(timeout=0)


# ------------------------------------------------------------------ the cluster harness


def sees(member: gossipreg.AsyncRegistry, name: str) -> bool:
    return any(s.name == name for s in member.list_services())


async def test_a_cluster_spreads_registrations_and_detects_a_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with cluster(3) as members:
        a, b, c = members
        assert [m.name for m in members] == ["m0", "m1", "m2"]
        assert len(members) == 3
        assert members.converged()
        await a.register(svc("greeter", "1", ("g1", "10.0.0.1:80")))
        await members.wait_until(lambda: sees(b, "greeter") and sees(c, "greeter"), "the registration")
        await members.crash(a)
        assert list(members) == [b, c]
        with pytest.raises(RegistryClosedError):
            a.list_services()
        await members.wait_until(lambda: not sees(c, "greeter"), "c to drop the crashed member's service")
        await members.wait_converged()
        d = await members.start("late")
        assert d.name == "late"
        assert {m.name for m in d.members() if m.state == "alive"} == {"m1", "m2", "late"}


async def test_a_cluster_member_that_stops_leaves_at_once(autojump_clock: trio.testing.MockClock) -> None:
    async with cluster(2) as [a, b]:
        pass
    async with cluster(2) as members:
        a, b = members
        start = trio.current_time()
        await members.stop(b)
        await members.wait_until(
            lambda: {m.name for m in a.members() if m.state == "alive"} == {"m0"}, "the leave"
        )
        assert trio.current_time() - start < 1.0  # a leave, not failure detection
        with pytest.raises(ValueError, match="not a running member"):
            await members.stop(b)


async def test_an_isolated_member_is_declared_dead_then_heals(autojump_clock: trio.testing.MockClock) -> None:
    async with cluster(3) as members:
        a, _, c = members
        members.isolate(c)
        await members.wait_until(
            lambda: {m.name for m in a.members() if m.state == "alive"} == {"m0", "m1"}, "c's death"
        )
        members.heal(c)
        await members.wait_converged()


async def test_cluster_options(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with cluster(0, network=network, keyring=None, insecure=True, metadata={"zone": "z"}) as members:
        assert len(members) == 0
        first = await members.start()
        second = await members.start(metadata={"zone": "y"})
        assert members.network is network
        assert first.keyring is None
        metadata = {m.name: dict(m.metadata) for m in second.members()}
        assert metadata == {"m0": {"zone": "z"}, "m1": {"zone": "y"}}
    for bad in ({"n": -1}, {"n": True}, {"limit": 0}, {"name": "x"}, {"transport": None}):
        with pytest.raises(ConfigError):
            async with cluster(**bad):
                pass


async def test_wait_until_names_what_it_waited_for(autojump_clock: trio.testing.MockClock) -> None:
    with pytest.raises(TimeoutError, match="godot"):
        await wait_until(lambda: False, "godot", limit=5)
