"""The asyncio registry (gossipreg.aio), on real sockets bound to 127.0.0.1 port 0.

Each test is a sync function running its body with ``asyncio.run`` under an
``asyncio.timeout``; the member runs on trio in its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import trio

import gossipreg
from gossipreg import aio
from gossipreg.core.config import Config
from gossipreg.core.errors import (
    ConfigError,
    InvalidServiceError,
    JoinError,
    NotFoundError,
    RegistrationLimitError,
    RegistryClosedError,
    WatcherStoppedError,
    WatchOverflowError,
)
from gossipreg.core.model import Node, Service

pytestmark = pytest.mark.timeout(60)

KEY = bytes(range(32))
WAIT = 10.0  # upper bound of every wait for the cluster to converge
T = TypeVar("T")


def run(body: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """``asyncio.run(body())``, failing after ``timeout`` seconds."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await body()

    return asyncio.run(bounded())


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    """Every member's thread is joined by the end of the test."""
    yield
    left = [t.name for t in threading.enumerate() if t.name.startswith("gossipreg-aio")]
    assert not left, left


def service(name: str, node: str, version: str = "1") -> Service:
    return Service(name, version, nodes=(Node(node, "10.1.1.1:80"),))


@contextlib.asynccontextmanager
async def member(**options: Any) -> AsyncIterator[aio.AsyncioRegistry]:
    """An asyncio member on 127.0.0.1 port 0 with the test keyring."""
    options.setdefault("keyring", KEY)
    async with aio.open_registry("127.0.0.1:0", **options) as reg:
        yield reg


def seed_of(reg: aio.AsyncioRegistry | gossipreg.Registry) -> str:
    host, port = reg.address
    return f"{host}:{port}"


async def eventually(condition: Callable[[], bool], within: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.01)


def node_ids(reg: aio.AsyncioRegistry | gossipreg.Registry, name: str) -> set[str]:
    try:
        return {n.id for s in reg.get_service(name) for n in s.nodes}
    except NotFoundError:
        return set()


async def completed(call: Callable[[], object]) -> object:
    """``call()``, awaited if it returns an awaitable."""
    outcome = call()
    if inspect.isawaitable(outcome):
        return await outcome
    return outcome


async def block_member_thread(reg: aio.AsyncioRegistry, seconds: float) -> None:
    """Keep the member's trio thread busy for ``seconds`` from now (a white-box handle on
    the bridge); returns once it is busy, so every call made next waits for it."""
    token = reg._member.token
    assert token is not None
    busy = threading.Event()

    def block() -> None:
        busy.set()
        time.sleep(seconds)  # on purpose: the member's thread is what is made busy, not a wait

    token.run_sync_soon(block)
    await asyncio.to_thread(busy.wait, WAIT)


# ---------------------------------------------------------------- the API


def test_two_members_join_and_see_each_others_registrations() -> None:
    async def body() -> None:
        async with member(name="a") as a, member(name="b", seeds=[seed_of(a)]) as b:
            assert a.name == "a"
            assert a.address[0] == "127.0.0.1"
            assert a.address[1] > 0
            await a.register(service("greeter", "g-a"))
            await b.register(service("greeter", "g-b", version="2"))
            # A member reads its own registration as soon as register returns.
            assert node_ids(a, "greeter") >= {"g-a"}
            await eventually(lambda: node_ids(a, "greeter") == {"g-a", "g-b"})
            await eventually(lambda: node_ids(b, "greeter") == {"g-a", "g-b"})
            assert [s.version for s in b.get_service("greeter")] == ["1", "2"]
            assert [(s.name, s.version, s.nodes) for s in b.list_services()] == [
                ("greeter", "1", ()),
                ("greeter", "2", ()),
            ]
            await eventually(lambda: {m.name for m in a.members() if m.state == "alive"} == {"a", "b"})
            await eventually(lambda: {m.name for m in b.members() if m.state == "alive"} == {"a", "b"})
            await eventually(lambda: a.statistics()["datagrams_received"] > 0)
            assert isinstance(a, gossipreg.RegistryProtocol)
            assert isinstance(a.watch(), gossipreg.WatcherProtocol)
            assert str(a) == "gossip"
            assert "open" in repr(a)
            await b.deregister(service("greeter", "g-b", version="2"))
            assert node_ids(b, "greeter") == {"g-a"}
            await eventually(lambda: node_ids(a, "greeter") == {"g-a"})
            with pytest.raises(NotFoundError, match="'nothing' not found"):
                a.get_service("nothing")

    run(body)


def test_watch_with_snapshot_yields_create_then_delete() -> None:
    async def body() -> None:
        async with member(name="a") as a, member(name="b", seeds=[seed_of(a)]) as b:
            await a.register(service("web", "w1"))
            await a.register(service("db", "d1"))
            await eventually(lambda: node_ids(b, "web") == {"w1"} and node_ids(b, "db") == {"d1"})
            async with b.watch("web", snapshot=True) as watcher:
                first = await watcher.next()
                assert (first.action, [n.id for n in first.service.nodes]) == ("create", ["w1"])
                assert watcher.next_nowait() is None  # "db" is not watched
                await a.register(service("web", "w2"))
                created = await watcher.next()
                assert (created.action, [n.id for n in created.service.nodes]) == ("create", ["w2"])
                await a.deregister(service("web", "w1"))
                deleted = await watcher.next()
                assert (deleted.action, [n.id for n in deleted.service.nodes]) == ("delete", ["w1"])
            # Stopped: async for ends once the buffer is empty.
            assert [r async for r in watcher] == []
            with pytest.raises(WatcherStoppedError):
                await watcher.next()
            # A watch of everything, snapshot included, and a local change seen at once.
            async with a.watch(snapshot=True) as everything:
                seen = [await everything.next(), await everything.next()]
                assert sorted((r.action, r.service.name) for r in seen) == [
                    ("create", "db"),
                    ("create", "web"),
                ]
                await a.register(service("cache", "c1"))
                assert (await everything.next()).service.name == "cache"

    run(body)


def test_the_watch_starts_when_watch_is_called() -> None:
    """A registration made right after watch() (before the watcher is awaited) is seen."""

    async def body() -> None:
        async with member() as a:
            watcher = a.watch("web")
            await a.register(service("web", "w1"))
            async with watcher:
                assert (await watcher.next()).action == "create"

    run(body)


def test_inside_async_with_a_watch_sees_every_change_made_elsewhere() -> None:
    """Entering ``async with reg.watch()`` waits until the watch is in place in the member."""

    async def body() -> None:
        async with member() as a, member(seeds=[seed_of(a)]) as b:
            for i in range(20):
                async with b.watch(f"remote-{i}") as watcher:
                    await a.register(service(f"remote-{i}", "n"))
                    assert (await watcher.next()).action == "create"
            stopped = b.watch()
            stopped.stop()
            await stopped.wait_in_place()  # a stopped watcher does not keep anyone waiting

    run(body)


def test_overflow_raises_watch_overflow_error_then_the_watcher_goes_on() -> None:
    async def body() -> None:
        async with member() as a:
            async with a.watch(buffer=2) as watcher:
                for i in range(3):
                    await a.register(service(f"s{i}", f"n{i}"))
                with pytest.raises(WatchOverflowError, match="buffer of 2 results overflowed"):
                    await watcher.next()
                await a.register(service("after", "n"))
                assert (await watcher.next()).service.name == "after"
            # A snapshot bigger than the buffer overflows too, as with the trio API.
            async with a.watch(snapshot=True, buffer=3) as watcher:
                with pytest.raises(WatchOverflowError):
                    await watcher.next()
            # Results arriving while the consumer is slow overflow exactly at the bound.
            async with a.watch(buffer=4) as watcher:
                for i in range(4):
                    await a.register(service(f"t{i}", "n"))
                assert [(await watcher.next()).service.name for _ in range(4)] == [f"t{i}" for i in range(4)]

    run(body)


def test_reads_never_wait_for_a_busy_member_thread() -> None:
    async def body() -> None:
        async with member() as a:
            await a.register(service("web", "w1"))
            await block_member_thread(a, 1.0)
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            for _ in range(1000):
                a.get_service("web")
                a.list_services()
                a.members()
                a.statistics()
            assert time.perf_counter() - started < 0.5  # 1,000 rounds of reads, not a wait of 1 s
            # The loop runs on while the member's thread is busy.
            ticks = 0
            until = time.perf_counter() + 0.2
            while time.perf_counter() < until:
                await asyncio.sleep(0.001)
                ticks += 1
            assert ticks > 20

    run(body)


def test_keep_alive_renews_until_cancelled() -> None:
    async def body() -> None:
        async with member() as a, member(seeds=[seed_of(a)]) as b:
            svc = service("lease", "l1")
            renewer = asyncio.create_task(a.keep_alive(svc, 0.3))
            await eventually(lambda: node_ids(b, "lease") == {"l1"})
            await asyncio.sleep(1.0)  # three leases long: renewed meanwhile
            assert node_ids(a, "lease") == {"l1"}
            assert node_ids(b, "lease") == {"l1"}
            renewer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await renewer
            # The renewals stopped with the task: the lease runs out everywhere.
            await eventually(lambda: node_ids(a, "lease") == set(), within=3.0)
            await eventually(lambda: node_ids(b, "lease") == set(), within=3.0)
            assert not a._pending

    run(body)


# ---------------------------------------------------------------- cancellation


def test_a_register_cancelled_before_it_started_does_not_run() -> None:
    async def body() -> None:
        async with member() as a:
            await block_member_thread(a, 1.0)
            task = asyncio.create_task(a.register(service("never", "n")))
            await asyncio.sleep(0.05)
            assert not task.done()  # pending: the member's thread is busy
            started = time.perf_counter()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.perf_counter() - started < 0.5  # cancelled at once, not after the member
            await a.register(service("later", "n"))  # runs after the cancelled one would have
            assert node_ids(a, "later") == {"n"}
            assert node_ids(a, "never") == set()
            assert not a._pending
            # Cancelled while it runs (or after): no stuck state either way.
            for delay in (0, 0.0005, 0.002):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(a.register(service("racy", "n")), delay)
            await a.register(service("last", "n"))
            assert not a._pending

    run(body)


def test_a_cancelled_watch_next_leaves_the_watcher_usable() -> None:
    async def body() -> None:
        async with member() as a, a.watch("web") as watcher:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(watcher.next(), 0.05)
            waiting = asyncio.create_task(watcher.next())
            await asyncio.sleep(0.01)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            # Two tasks waiting on one watcher: a result wakes them, one gets it.
            one, two = asyncio.create_task(watcher.next()), asyncio.create_task(watcher.next())
            await asyncio.sleep(0.01)
            await a.register(service("web", "w1"))
            done, _pending = await asyncio.wait({one, two}, return_when=asyncio.FIRST_COMPLETED)
            assert [t.result().action for t in done] == ["create"]
            await a.register(service("web", "w2"))
            await asyncio.wait({one, two})
            assert sorted(n.id for t in (one, two) for n in t.result().service.nodes) == ["w1", "w2"]

    run(body)


def test_cancelling_open_registry_while_it_joins_stops_the_member() -> None:
    async def body() -> None:
        with socket_nobody_answers() as seed:
            task = asyncio.create_task(aio.open_registry(seeds=[seed], keyring=KEY, timeout=30).__aenter__())
            await asyncio.sleep(0.2)
            assert not task.done()
            started = time.perf_counter()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.perf_counter() - started < 2.0

    run(body)


@contextlib.contextmanager
def socket_nobody_answers() -> Iterator[str]:
    """A bound UDP and TCP port on 127.0.0.1 where no member answers."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{udp.getsockname()[1]}"


# ---------------------------------------------------------------- closing


def test_closing_wakes_every_pending_call_and_watcher() -> None:
    async def body() -> None:
        async with member() as a, member(seeds=[seed_of(a)]) as b:
            watcher = a.watch("web")
            iterated: list[gossipreg.Result] = []

            async def iterate() -> None:
                async for result in a.watch():
                    iterated.append(result)

            waiting = asyncio.create_task(watcher.next())
            looping = asyncio.create_task(iterate())
            renewing = asyncio.create_task(a.keep_alive(service("lease", "l"), 30))
            await eventually(lambda: node_ids(b, "lease") == {"l"})
            await block_member_thread(a, 1.0)  # so the next call is surely pending
            registering = asyncio.create_task(a.register(service("web", "w")))
            await asyncio.sleep(0.05)
            assert not any(t.done() for t in (waiting, looping, renewing, registering))
            started = time.perf_counter()
            closing = asyncio.create_task(a.aclose())
            await asyncio.wait({waiting, looping, renewing, registering}, timeout=0.5)
            assert time.perf_counter() - started < 0.5  # woken at once, not after the member
            with pytest.raises(WatcherStoppedError):
                waiting.result()
            assert looping.result() is None  # async for ended
            with pytest.raises(RegistryClosedError):
                renewing.result()
            with pytest.raises(RegistryClosedError):
                registering.result()
            await closing
            assert a.closed
            assert "closed" in repr(a)
            # The member left gracefully: b sees it leave (not die), and its lease go.
            await eventually(lambda: {m.name: m.state for m in b.members()}.get(a.name) == "left", within=3)
            await eventually(lambda: node_ids(b, "lease") == set(), within=3)

    run(body)


def test_every_call_after_close_raises_registry_closed_error() -> None:
    async def body() -> None:
        async with member() as a:
            watcher = a.watch()
            await a.register(service("web", "w1"))
            name, address = a.name, a.address
        assert a.closed
        svc = service("web", "w2")
        calls: list[Callable[[], object]] = [
            lambda: a.register(svc),
            lambda: a.register(svc, ttl=5),
            lambda: a.deregister(svc),
            lambda: a.keep_alive(svc, 5),
            lambda: a.get_service("web"),
            a.list_services,
            a.members,
            a.statistics,
            a.watch,
            lambda: a.watch("web", snapshot=True),
        ]
        for call in calls:
            with pytest.raises(RegistryClosedError):
                await completed(call)
        assert (a.name, a.address) == (name, address)
        await a.aclose()  # idempotent
        # The watcher open at close still yields what it held, then stops.
        assert (await watcher.next()).action == "create"
        with pytest.raises(WatcherStoppedError):
            await watcher.next()

    run(body)


def test_trio_exceptions_never_reach_the_caller() -> None:
    """Whatever a call raises in the member's thread, the caller gets gossipreg's errors."""

    async def broken(reg: gossipreg.AsyncRegistry) -> None:
        raise trio.BrokenResourceError("a stream broke")

    async def closed(reg: gossipreg.AsyncRegistry) -> None:
        raise trio.ClosedResourceError("a channel closed")

    async def body() -> None:
        async with member() as a:
            with pytest.raises(gossipreg.RegistryError, match="the member failed") as info:
                await a._call(broken)
            assert not isinstance(info.value, trio.BrokenResourceError)
            assert isinstance(info.value.__cause__, trio.BrokenResourceError)
            with pytest.raises(RegistryClosedError):
                await a._call(closed)
            await a.register(service("still", "fine"))  # the member is unharmed

    run(body)


def test_startup_errors_are_gossipregs_and_leave_no_thread() -> None:
    async def body() -> None:
        before = threading.active_count()
        with pytest.raises(ConfigError, match="keyring"):
            async with aio.open_registry():
                pass
        with pytest.raises(ConfigError, match="bind"):
            async with aio.open_registry(bind=5, keyring=KEY):  # type: ignore[arg-type]
                pass
        with pytest.raises(ConfigError, match="limits"):
            async with aio.open_registry(keyring=KEY, limits=3):  # type: ignore[arg-type]
                pass
        assert threading.active_count() == before  # refused before any thread started
        with socket_nobody_answers() as seed, pytest.raises(JoinError, match="could not join"):
            async with aio.open_registry(seeds=[seed], keyring=KEY, timeout=0.3):
                pass
        async with member() as a:
            with pytest.raises(OSError, match="in use"):
                async with aio.open_registry(seed_of(a), keyring=KEY):
                    pass

    run(body)


# ---------------------------------------------------------------- the same errors as the trio API

SVC = service("web", "w1")
BAD_CALLS: list[tuple[str, Callable[[Any], object]]] = [
    ("ttl 1e308", lambda reg: reg.register(SVC, ttl=1e308)),
    ("ttl 0", lambda reg: reg.register(SVC, ttl=0)),
    ("ttl nan", lambda reg: reg.register(SVC, ttl=float("nan"))),
    ("ttl str", lambda reg: reg.register(SVC, ttl="5")),
    ("ttl over the config's bound", lambda reg: reg.register(SVC, ttl=4000)),
    ("no nodes", lambda reg: reg.register(Service("web", "1"))),
    ("not a service", lambda reg: reg.register("web")),
    ("deregister not a service", lambda reg: reg.deregister("web")),
    ("keep_alive ttl None", lambda reg: reg.keep_alive(SVC, None)),
    ("keep_alive ttl -1", lambda reg: reg.keep_alive(SVC, -1)),
    ("keep_alive no nodes", lambda reg: reg.keep_alive(Service("web", "1"), 5)),
    ("watch buffer 0", lambda reg: reg.watch(buffer=0)),
    ("watch buffer True", lambda reg: reg.watch(buffer=True)),
    ("watch snapshot str", lambda reg: reg.watch(snapshot="yes")),
    ("watch service int", lambda reg: reg.watch(5)),
    ("get_service unknown", lambda reg: reg.get_service("unknown")),
    ("over the registration limit", lambda reg: reg.register(Service("many", "1", nodes=(
        Node("m1", "10.0.0.1:1"), Node("m2", "10.0.0.1:2"), Node("m3", "10.0.0.1:3"))))),
]
LIMITED = Config.lan(max_records_per_owner=2)


def test_bad_arguments_raise_the_same_typed_errors_as_the_trio_api() -> None:
    async def attempt(reg: Any, call: Callable[[Any], object]) -> tuple[str, str]:
        try:
            await completed(lambda: call(reg))
        except Exception as exc:
            return type(exc).__name__, str(exc)
        return "no error", ""

    async def with_trio() -> list[tuple[str, str]]:
        async with gossipreg.open_registry("127.0.0.1:0", keyring=KEY, config=LIMITED) as reg:
            return [await attempt(reg, call) for _, call in BAD_CALLS]

    async def with_asyncio() -> list[tuple[str, str]]:
        async with member(config=LIMITED) as reg:
            return [await attempt(reg, call) for _, call in BAD_CALLS]

    expected = trio.run(with_trio)
    got = run(with_asyncio)
    for (what, _), want, have in zip(BAD_CALLS, expected, got, strict=True):
        assert have == want, what
        assert want[0] in {
            InvalidServiceError.__name__,
            ConfigError.__name__,
            NotFoundError.__name__,
            RegistrationLimitError.__name__,
        }, what


# ---------------------------------------------------------------- with the trio API


def test_an_asyncio_member_and_a_trio_member_interoperate() -> None:
    """The trio member is a sync Registry: gossipreg.open_registry in its own thread."""

    async def body() -> None:
        with gossipreg.Registry("127.0.0.1:0", keyring=KEY, name="trio") as other:
            async with member(name="asyncio", seeds=[seed_of(other)]) as mine:
                with other.watch("from-asyncio") as seen_there:
                    async with mine.watch("from-trio") as seen_here:
                        await mine.register(service("from-asyncio", "a1"))
                        result = await asyncio.to_thread(seen_there.next, WAIT)
                        assert (result.action, result.service.nodes[0].id) == ("create", "a1")
                        await asyncio.to_thread(other.register, service("from-trio", "t1"))
                        result = await seen_here.next()
                        assert (result.action, result.service.nodes[0].id) == ("create", "t1")
                await eventually(lambda: {m.name for m in mine.members()} == {"trio", "asyncio"})
                assert node_ids(other, "from-asyncio") == {"a1"}
            # The asyncio member left gracefully, its registration with it.
            states = await asyncio.to_thread(lambda: {m.name: m.state for m in other.members()})
            await eventually(
                lambda: {m.name: m.state for m in other.members()}.get("asyncio") == "left", within=3
            )
            assert states.get("asyncio") in {"alive", "left"}
            await eventually(lambda: node_ids(other, "from-asyncio") == set(), within=3)

    run(body)


def test_any_asyncio_loop_will_do() -> None:
    """A plain selector loop made by hand (uvloop and friends work the same way)."""

    async def body() -> None:
        async with member() as a:
            await a.register(service("web", "w1"))
            assert node_ids(a, "web") == {"w1"}

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        runner.run(asyncio.wait_for(body(), 20))


def test_gossipreg_aio_needs_only_asyncio_and_trio() -> None:
    code = (
        "import sys, gossipreg.aio\n"
        "print(sorted({'aiohttp', 'uvloop', 'anyio', 'click', 'rich', 'h11'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
