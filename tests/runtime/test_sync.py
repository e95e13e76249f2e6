"""The thread-backed sync facade, on real sockets bound to 127.0.0.1 port 0."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from gossipreg import (
    BlockingCallError,
    ConfigError,
    JoinError,
    Node,
    NotFoundError,
    Registry,
    RegistryClosedError,
    Service,
    WatcherStoppedError,
    WatchOverflowError,
)
from gossipreg.core.crypto import Keyring

pytestmark = pytest.mark.timeout(30)

KEY = bytes(range(32))
WAIT = 10.0  # upper bound of every wait for the cluster to converge

RegistryFactory = Callable[..., Registry]


@pytest.fixture
def make_registry() -> Iterator[RegistryFactory]:
    """Registries on 127.0.0.1 port 0 with the test keyring, closed after the test."""
    made: list[Registry] = []

    def make(**options: object) -> Registry:
        options.setdefault("bind", "127.0.0.1:0")
        options.setdefault("keyring", KEY)
        reg = Registry(**options)  # type: ignore[arg-type]
        made.append(reg)
        return reg

    yield make
    for reg in made:
        reg.close()


def service(name: str, node: str, version: str = "1") -> Service:
    return Service(name, version, nodes=(Node(node, "10.1.1.1:80"),))


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.02)


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` in ``count`` threads started together; re-raise the first error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=WAIT)
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if errors:
        raise errors[0]


def test_many_threads_register_and_read_at_once(make_registry: RegistryFactory) -> None:
    reg = make_registry(name="solo")
    assert str(reg) == "gossip"
    assert reg.name == "solo"
    assert reg.address[0] == "127.0.0.1"
    assert reg.address[1] > 0

    def worker(i: int) -> None:
        for j in range(20):
            reg.register(service("svc", f"n{i}-{j}"))
            assert any(s.name == "svc" for s in reg.list_services())
            ids = {n.id for s in reg.get_service("svc") for n in s.nodes}
            assert f"n{i}-{j}" in ids
            reg.register(service(f"own{i}", f"m{j}"))

    run_threads(8, worker)
    nodes = {n.id for s in reg.get_service("svc") for n in s.nodes}
    assert nodes == {f"n{i}-{j}" for i in range(8) for j in range(20)}
    assert {s.name for s in reg.list_services()} == {"svc"} | {f"own{i}" for i in range(8)}

    def remove(i: int) -> None:
        reg.deregister(Service(f"own{i}", "1"))

    run_threads(8, remove)
    for i in range(8):
        with pytest.raises(NotFoundError):
            reg.get_service(f"own{i}")
    assert reg.statistics()  # counters are reachable from a plain thread


def test_two_registries_join_and_watch_each_other(make_registry: RegistryFactory) -> None:
    a = make_registry(name="a", keyring=Keyring(KEY))
    seeds = [f"{a.address[0]}:{a.address[1]}"]
    b = make_registry(name="b", seeds=seeds, timeout=WAIT, metadata={"zone": "z1"})
    assert {m.name for m in b.members()} == {"a", "b"}  # joined before the constructor returned

    with a.watch("greeter") as on_a, b.watch("greeter") as on_b:
        b.register(service("greeter", "g-b"))
        result = on_a.next(timeout=WAIT)
        assert (result.action, [n.id for n in result.service.nodes]) == ("create", ["g-b"])
        a.register(service("greeter", "g-a"))
        result = on_a.next(timeout=WAIT)  # a's own registration
        assert (result.action, result.service.nodes[0].id) == ("create", "g-a")
        seen = [on_b.next(timeout=WAIT) for _ in range(2)]  # b's own create, then a's
        assert {(r.action, r.service.nodes[0].id) for r in seen} == {("create", "g-b"), ("create", "g-a")}
        for reg in (a, b):
            assert {n.id for s in reg.get_service("greeter") for n in s.nodes} == {"g-a", "g-b"}

        b.deregister(service("greeter", "g-b"))
        result = on_a.next(timeout=WAIT)
        assert (result.action, result.service.nodes[0].id) == ("delete", "g-b")

    wait_until(lambda: {m.name: m.metadata for m in a.members()}.get("b") == {"zone": "z1"})
    b.close()
    wait_until(lambda: {m.name: m.state for m in a.members()}["b"] == "left")


def test_seeds_may_be_one_comma_separated_str(make_registry: RegistryFactory) -> None:
    # As open_registry takes them (and GOSSIPREG_SEEDS); Registry used to split the str into characters.
    a = make_registry(name="a")
    b = make_registry(name="b", seeds=f"{a.address[0]}:{a.address[1]}, ", timeout=WAIT)
    assert {m.name for m in b.members()} == {"a", "b"}


def test_close_is_idempotent_and_later_calls_raise(make_registry: RegistryFactory) -> None:
    reg = make_registry()
    address = reg.address
    watcher = reg.watch()
    reg.register(service("x", "x1"))
    handle = reg.keep_alive(service("y", "y1"), ttl=30)
    reg.close()
    reg.close()
    assert reg.closed
    with reg:  # exiting closes again: still fine
        pass
    assert reg.address == address  # still readable
    for call in (
        lambda: reg.register(service("x", "x2")),
        lambda: reg.deregister(service("x", "x1")),
        lambda: reg.get_service("x"),
        reg.list_services,
        reg.members,
        reg.statistics,
        lambda: reg.watch(),
        lambda: reg.keep_alive(service("y", "y1"), ttl=30),
    ):
        with pytest.raises(RegistryClosedError):
            call()
    handle.stop()
    watcher.stop()
    # Results buffered before the close can still be read, then the watcher is over.
    assert watcher.next(timeout=0).service.nodes[0].id == "x1"
    assert watcher.next(timeout=0).service.nodes[0].id == "y1"
    with pytest.raises(WatcherStoppedError):
        watcher.next(timeout=1)
    assert list(watcher) == []


def test_close_wakes_a_thread_blocked_in_next(make_registry: RegistryFactory) -> None:
    reg = make_registry()
    watcher = reg.watch("nothing")
    outcome: list[BaseException] = []
    waiting = threading.Event()

    def consume() -> None:
        waiting.set()
        try:
            watcher.next()  # no timeout: only the close can end it
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=consume)
    thread.start()
    assert waiting.wait(WAIT)
    reg.close()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], WatcherStoppedError)


def test_watcher_timeout_overflow_stop_and_iteration(make_registry: RegistryFactory) -> None:
    reg = make_registry()
    watcher = reg.watch("w")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        watcher.next(timeout=0.2)
    assert time.monotonic() - started >= 0.2
    with pytest.raises(TimeoutError):
        watcher.next(timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        watcher.next(timeout=-1)

    reg.register(service("other", "o1"))  # filtered out
    reg.register(service("w", "w1"))
    assert watcher.next(timeout=0).service.nodes[0].id == "w1"  # buffered: no wait needed

    small = reg.watch("w", buffer=2)
    for i in range(3):
        reg.register(service("w", f"w{i + 2}"))
    with pytest.raises(WatchOverflowError):
        small.next(timeout=WAIT)
    small.stop()

    snap = reg.watch("w", snapshot=True)
    reg.register(service("w", "late"))
    snap.stop()
    snap.stop()
    results = list(snap)  # the snapshot and what arrived before stop, then the end
    assert [r.action for r in results] == ["create", "create"]
    assert {n.id for n in results[0].service.nodes} == {"w1", "w2", "w3", "w4"}
    assert results[1].service.nodes[0].id == "late"
    with pytest.raises(WatcherStoppedError):
        snap.next(timeout=0)
    watcher.stop()


def test_keep_alive_renews_until_stopped(make_registry: RegistryFactory) -> None:
    reg = make_registry()
    with pytest.raises(ValueError, match="ttl"):
        reg.keep_alive(service("k", "k1"), ttl=0)
    with pytest.raises(ValueError, match="nodes"):
        reg.keep_alive(Service("k", "1"), ttl=1)

    ttl = 1.5
    handle = reg.keep_alive(service("k", "k1"), ttl=ttl)
    assert reg.get_service("k")[0].nodes[0].id == "k1"  # registered before keep_alive returned
    # Without renewals the registration would expire after ttl. Wait on the renewals
    # themselves, not on the clock: four of them, every ttl / 3, span more than one ttl,
    # and the registration is there at every check. (A renewal may come up to 2/3 ttl
    # late on a loaded machine before the lease runs out.)
    renewals = reg.statistics()["catalog_renewals"]

    def renewed_four_times() -> bool:
        assert reg.get_service("k")[0].nodes[0].id == "k1"
        return reg.statistics()["catalog_renewals"] >= renewals + 4

    wait_until(renewed_four_times, timeout=4 * ttl + WAIT)
    handle.stop()
    handle.stop()

    def expired() -> bool:
        try:
            reg.get_service("k")
        except NotFoundError:
            return True
        return False

    wait_until(expired, timeout=ttl + WAIT)


def test_startup_errors_keep_their_type(make_registry: RegistryFactory) -> None:
    with pytest.raises(ConfigError, match="keyring"):
        Registry(bind="127.0.0.1:0")
    with pytest.raises(ConfigError, match="bind"):
        Registry(bind="not an address", keyring=KEY)
    with pytest.raises(ConfigError, match="primary"):
        Registry(bind="127.0.0.1:0", keyring=b"short")

    taken = make_registry()
    with pytest.raises(OSError, match="in use"):
        Registry(bind=f"127.0.0.1:{taken.address[1]}", keyring=KEY)

    # A seed that never answers: a UDP socket nobody reads, and no TCP listener.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(JoinError, match=f"127.0.0.1:{port}"):
            Registry(bind="127.0.0.1:0", keyring=KEY, seeds=[f"127.0.0.1:{port}"], timeout=0.5)
        assert time.monotonic() - started < WAIT


def test_wrong_key_cannot_join(make_registry: RegistryFactory) -> None:
    a = make_registry()
    with pytest.raises(JoinError):
        Registry(bind="127.0.0.1:0", keyring=bytes(32), seeds=[a.address], timeout=0.5)


async def test_refuses_to_block_a_trio_thread() -> None:
    with pytest.raises(BlockingCallError, match="open_registry"):
        Registry(bind="127.0.0.1:0", keyring=KEY)
