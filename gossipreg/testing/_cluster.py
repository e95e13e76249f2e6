"""A cluster of real members on an in-memory network, for tests under trio's mock clock.

:func:`cluster` starts ``n`` members with :func:`~gossipreg.open_registry`,
each on a :class:`~gossipreg.runtime.memory.MemoryNetwork` transport instead
of sockets, every one joining through the first, and yields a
:class:`Cluster` once they all see each other alive. Everything else is the
real thing: the member core, the trio driver, sealing with the keyring,
streams, timers. Under ``autojump_clock`` (``trio.testing.MockClock``)
failure detection, ttl expiry and join retries take virtual seconds only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import trio

from ..core.config import Config
from ..core.crypto import Keyring
from ..core.errors import ConfigError
from ..core.membership import Address
from ..registry import AsyncRegistry, open_registry
from ..runtime.memory import MemoryNetwork, MemoryTransport

__all__ = ["TEST_KEY", "Cluster", "cluster", "wait_until"]

#: The cluster key of :func:`cluster` when none is given. Public, so for tests only.
TEST_KEY = bytes(range(32))
#: Default bound, in (virtual) seconds, of every wait of the harness.
WAIT = 60.0


async def wait_until(
    predicate: Callable[[], bool], what: str = "the condition", *, limit: float = WAIT, interval: float = 0.01
) -> None:
    """Wait until ``predicate()`` is true, checking every ``interval`` seconds.

    Meant for state that changes on the members' own timers (under
    ``autojump_clock`` the polling costs no real time).

    Args:
        predicate: checked at once, then after every ``interval``.
        what: what is waited for, for the error message.
        limit: seconds (trio's clock) before giving up: a bound, so a test that
            waits for what never comes fails with a message instead of hanging
            (under ``autojump_clock`` virtual time would run on for ever).
        interval: seconds between checks.

    Raises:
        TimeoutError: ``predicate()`` was still false after ``limit``; the message names ``what``.
    """
    with trio.move_on_after(limit):
        while not predicate():  # noqa: ASYNC110 - the state changes on the members' own timers
            await trio.sleep(interval)
        return
    raise TimeoutError(f"timed out after {limit:g}s waiting for {what}")


class _Running:
    """One member's task: its registry, and the event that ends it."""

    def __init__(self, registry: AsyncRegistry) -> None:
        self.registry = registry
        self.stop = trio.Event()
        self.done = trio.Event()


class Cluster:
    """Members running on one in-memory network; made by :func:`cluster`.

    A sequence of the running members (:class:`~gossipreg.AsyncRegistry`), in
    start order, so ``async with cluster(3) as [a, b, c]:`` unpacks it.
    Members started later (:meth:`start`) are appended; stopped ones
    (:meth:`stop`, :meth:`crash`) are removed.
    """

    def __init__(
        self, nursery: trio.Nursery, network: MemoryNetwork, options: dict[str, Any], limit: float
    ) -> None:
        self._nursery = nursery
        self._options = options
        self._running: list[_Running] = []
        self._count = 0
        #: The in-memory network: :meth:`MemoryNetwork.drop` and :meth:`MemoryNetwork.restore`
        #: cut a member off and back (see also :meth:`isolate` and :meth:`heal`).
        self.network = network
        #: Default bound, in seconds of trio's clock, of the waits of :meth:`start`,
        #: :meth:`wait_converged` and :meth:`wait_until`.
        self.limit = limit

    # ------------------------------------------------------------ a sequence

    @property
    def members(self) -> list[AsyncRegistry]:
        """The running members, in start order (a new list)."""
        return [r.registry for r in self._running]

    def __len__(self) -> int:
        return len(self._running)

    def __getitem__(self, index: int) -> AsyncRegistry:
        return self._running[index].registry

    def __iter__(self) -> Iterator[AsyncRegistry]:
        return iter(self.members)

    def __repr__(self) -> str:
        return f"<Cluster of {len(self)}: {', '.join(m.name for m in self)}>"

    # ------------------------------------------------------------ members

    async def start(self, name: str | None = None, *, wait: bool = True, **options: Any) -> AsyncRegistry:
        """Start one more member, joining through the first running one (unless ``seeds`` is given).

        Args:
            name: its name (default ``m<N>``, N counting every member started).
            wait: wait until every running member, the new one included, sees
                all of them alive (:meth:`wait_converged`).
            options: more options of :func:`~gossipreg.open_registry` for this
                member (they override the cluster's); not ``transport`` or ``bind``.

        Raises:
            ConfigError, JoinError: as :func:`~gossipreg.open_registry`.
            TimeoutError: ``wait`` and the members did not converge in time.
        """
        _check_member_options(options)
        index = self._count
        self._count += 1
        opts: dict[str, Any] = {"seed": index, **self._options, **options}
        opts["name"] = name if name is not None else f"m{index}"
        if "seeds" not in options and "seeds" not in self._options and self._running:
            host, port = self._running[0].registry.address
            opts["seeds"] = [f"{host}:{port}"]
        transport = self.network.transport()
        running: _Running = await self._nursery.start(self._run, transport, opts)
        self._running.append(running)
        if wait:
            await self.wait_converged()
        return running.registry

    @staticmethod
    async def _run(
        transport: MemoryTransport, options: dict[str, Any], *, task_status: trio.TaskStatus[_Running]
    ) -> None:
        running: _Running | None = None
        try:
            async with open_registry(transport=transport, **options) as registry:
                running = _Running(registry)
                task_status.started(running)
                await running.stop.wait()
        finally:
            if running is not None:
                running.done.set()

    def _find(self, member: AsyncRegistry) -> _Running:
        for r in self._running:
            if r.registry is member:
                return r
        raise ValueError(f"{member!r} is not a running member of this cluster")

    async def stop(self, member: AsyncRegistry) -> None:
        """Stop ``member`` gracefully: it leaves, and the others drop it at once.

        Raises:
            ValueError: ``member`` is not a running member of this cluster.
        """
        running = self._find(member)
        self._running.remove(running)
        running.stop.set()
        await running.done.wait()

    async def crash(self, member: AsyncRegistry) -> None:
        """Stop ``member`` abruptly: cut off first, so its leave reaches no one.

        The others find out by failure detection (probes, suspicion), as after
        a real crash; wait for it with :func:`wait_until` or :meth:`wait_converged`.

        Raises:
            ValueError: ``member`` is not a running member of this cluster.
        """
        self._find(member)
        where = Address(*member.address)
        self.network.drop(where)
        try:
            await self.stop(member)
        finally:
            self.network.restore(where)  # the address is free again (its transport is closed)

    def isolate(self, member: AsyncRegistry) -> None:
        """Cut ``member`` off the network (a partition of one): nothing it sends arrives,
        nothing reaches it; it keeps running. :meth:`heal` undoes it."""
        self.network.drop(Address(*member.address))

    def heal(self, member: AsyncRegistry) -> None:
        """Undo :meth:`isolate`."""
        self.network.restore(Address(*member.address))

    # ------------------------------------------------------------ waiting

    def converged(self) -> bool:
        """Whether every running member sees exactly the running members alive."""
        names = {m.name for m in self}
        return all({x.name for x in m.members() if x.state == "alive"} == names for m in self)

    async def wait_converged(self, limit: float | None = None) -> None:
        """Wait until every running member sees exactly the running members alive.

        Raises:
            TimeoutError: not within ``limit`` seconds (default :attr:`limit`).
        """
        await wait_until(
            self.converged,
            f"the members {sorted(m.name for m in self)} to see each other alive",
            limit=self.limit if limit is None else limit,
        )

    async def wait_until(
        self, predicate: Callable[[], bool], what: str = "the condition", limit: float | None = None
    ) -> None:
        """:func:`wait_until`, bounded by :attr:`limit` unless given.

        Raises:
            TimeoutError: ``predicate()`` was still false after the limit.
        """
        await wait_until(predicate, what, limit=self.limit if limit is None else limit)


def _check_member_options(options: dict[str, Any]) -> None:
    for taken in ("transport", "name", "bind"):
        if taken in options:
            raise ConfigError(f"{taken}: the cluster harness sets it for each member")


@contextlib.asynccontextmanager
async def cluster(
    n: int = 3,
    *,
    network: MemoryNetwork | None = None,
    config: Config | None = None,
    keyring: Keyring | bytes | str | None = TEST_KEY,
    limit: float = WAIT,
    **options: Any,
) -> AsyncIterator[Cluster]:
    """Run ``n`` real members on an in-memory network; yield them once they see each other.

    Each member is :func:`~gossipreg.open_registry` on a
    :class:`~gossipreg.runtime.memory.MemoryNetwork` transport (addresses
    ``10.0.0.N:7946``), named ``m0``, ``m1``, ..., with ``seed=N`` for its
    random generator, joining through ``m0``; each runs in a task of its own,
    so any one can be stopped or crashed. On exit the members still running
    leave, last started first. Use it under trio's ``autojump_clock``::

        def seen(member, name):
            return any(s.name == name for s in member.list_services())

        async def test_a_crashed_members_services_vanish(autojump_clock):
            async with gossipreg.testing.cluster(3) as members:
                a, b, c = members
                await a.register(Service("greeter", "1", nodes=[Node("g1", "10.9.0.1:80")]))
                await members.wait_until(lambda: seen(c, "greeter"), "c to see greeter")
                await members.crash(a)       # no leave: found out by failure detection
                await members.wait_until(lambda: not seen(c, "greeter"), "c to drop it")

    Args:
        n: members to start (0 is fine: start them with :meth:`Cluster.start`).
        network: the network to run on (default: a new one).
        config: protocol parameters (default ``Config.local()``: fast timers,
            for a test on one machine).
        keyring: the cluster keyring (default :data:`TEST_KEY`); ``None`` needs
            ``insecure=True``.
        limit: seconds (trio's clock) the harness waits for convergence
            (:attr:`Cluster.limit`).
        options: further options of :func:`~gossipreg.open_registry` for every
            member (``metadata``, ``limits``, ``insecure``, ...); not ``transport``,
            ``name`` or ``bind``.

    Raises:
        ConfigError: ``n`` is not a non-negative int, or an option is invalid.
        JoinError: a member could not join.
        TimeoutError: the members did not converge within ``limit``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"n: must be a non-negative int (members to start), not {n!r}")
    _check_member_options(options)
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
        raise ConfigError(f"limit: must be a positive number of seconds, not {limit!r}")
    opts: dict[str, Any] = {"config": config if config is not None else Config.local(), "keyring": keyring}
    opts.update(options)
    async with trio.open_nursery() as nursery:
        c = Cluster(nursery, network if network is not None else MemoryNetwork(), opts, float(limit))
        try:
            for _ in range(n):
                await c.start(wait=False)
            await c.wait_converged()
            yield c
        finally:
            with trio.CancelScope(shield=True):
                for running in reversed(list(c._running)):
                    running.stop.set()
                    await running.done.wait()
                c._running.clear()
