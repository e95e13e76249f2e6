"""In-memory registries: one real member's view, with no network and no thread.

A :class:`MemoryRegistry` (trio) or :class:`SyncMemoryRegistry` (any thread)
holds a real :class:`~gossipreg.core.node.NodeCore`, the sans-IO member every
:class:`~gossipreg.AsyncRegistry` runs, and nothing around it: no transport,
no driver task, no peer. What a single member sees is therefore decided by
the very code a real member runs: validation and its errors, one
:class:`~gossipreg.Service` per version, :class:`~gossipreg.NotFoundError`,
leases, renewals, and the ``create``/``update``/``delete`` results of watches.

Time is read when it matters instead of by a timer task: every call first
runs the core's timers due at the current time (``trio.current_time()``, or
the sync registry's ``clock``), and a waiting watcher sleeps until the next
lease expiry. So a ``ttl`` runs out on trio's clock, and under
``autojump_clock`` a test that waits for a ``delete`` takes no real time.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import NoReturn

import trio

from .._options import check_address, check_member_name, check_watch, pack_metadata
from .._results import ResultBuffer
from ..core.catalog import CatalogEvent
from ..core.config import Config
from ..core.errors import (
    ConfigError,
    InvalidServiceError,
    NotFoundError,
    RegistryClosedError,
    WatcherStoppedError,
)
from ..core.membership import Address
from ..core.model import Service, check_ttl, shown
from ..core.node import NodeCore
from ..registry import (
    WATCH_BUFFER,
    Member,
    Result,
    Status,
    _member,
)
from ..sync import _refuse_trio_thread

__all__ = [
    "MemoryRegistry",
    "MemoryWatcher",
    "SyncMemoryKeepAlive",
    "SyncMemoryRegistry",
    "SyncMemoryWatcher",
]

#: The address a memory registry reports when given none.
DEFAULT_ADDRESS = ("127.0.0.1", 7946)


class _Member:
    """One NodeCore on its own, with lazily run timers and the watchers to feed.

    Not thread-safe: the sync registry holds its lock around every call.
    """

    def __init__(
        self,
        name: object,
        address: object,
        config: object,
        metadata: object,
        clock: Callable[[], float],
        kind: str,
    ) -> None:
        if config is None:
            config = Config.lan()
        elif not isinstance(config, Config):
            raise ConfigError(f"config: must be a Config, not {type(config).__name__}")
        member_name = check_member_name(name) or "memory"
        if isinstance(address, str):
            host, port = check_address("address", address, default_port=DEFAULT_ADDRESS[1], min_port=1)
        else:
            host, port = check_address("address", address, default_port=None, min_port=1)
        self.clock = clock
        self.kind = kind
        self.core = NodeCore(
            member_name,
            Address(host, port),
            config=config,
            rng=random.Random(0),
            wall_clock=time.time,
            now=clock(),
            keyring=None,
            insecure=True,
            meta=pack_metadata(metadata),
        )
        self.watchers: set[_Buffer] = set()
        self.closed = False

    def check_open(self) -> None:
        if self.closed:
            raise RegistryClosedError(f"the {self.kind} {self.core.name} is closed")

    def advance(self) -> None:
        """Run the timers due now (lease expiries above all) and hand out their results."""
        if self.closed:
            return
        now = self.clock()
        deadline = self.core.next_deadline()
        if deadline is not None and deadline <= now:
            self.core.tick(now)
        self.flush()

    def flush(self) -> None:
        self.core.take_outbox()  # no peer to send to
        for ev in self.core.take_events():
            if isinstance(ev, CatalogEvent):
                for w in list(self.watchers):
                    w._offer(ev)

    def next_expiry(self) -> float:
        """When the view may next change by itself (a lease running out), or ``inf``."""
        if self.closed:
            return math.inf
        deadline = self.core.catalog.next_deadline()
        return math.inf if deadline is None else deadline

    def register(self, service: Service, ttl: float | None, *, renewal: bool = False) -> None:
        """Register; a ``renewal`` (a keep-alive's, due already) goes in before the timers
        run, as it would have gone in on time had anything been running then."""
        self.check_open()
        checked = check_ttl(ttl)
        if not renewal:
            self.advance()
        self.core.register(service, checked, self.clock())
        self.flush()

    def deregister(self, service: Service) -> None:
        self.check_open()
        self.advance()
        self.core.deregister(service, self.clock())
        self.flush()

    def get_service(self, name: str) -> list[Service]:
        self.check_open()
        self.advance()
        return self.core.get_service(name)

    def list_services(self) -> list[Service]:
        self.check_open()
        self.advance()
        return self.core.list_services()

    def members(self) -> list[Member]:
        self.check_open()
        self.advance()
        return [_member(m) for m in self.core.members()]

    def statistics(self) -> dict[str, int]:
        self.check_open()
        self.advance()
        return self.core.statistics()

    def status(self) -> Status:
        self.check_open()
        return Status("alone", 0, 0, 0.0, 0)

    def snapshot(self, watcher: _Buffer, service: str | None) -> None:
        names = [service] if service is not None else sorted({s.name for s in self.core.list_services()})
        for name in names:
            try:
                services = self.core.get_service(name)
            except NotFoundError:
                continue
            for svc in services:
                watcher._push(Result("create", svc))

    def close(self) -> None:
        if self.closed:
            return
        self.advance()
        self.closed = True
        for w in list(self.watchers):
            w._stop()


class _Buffer:
    """A watcher of the member: its results in a :class:`~gossipreg._results.ResultBuffer`
    (:class:`~gossipreg.Watcher`'s rules); subclasses say how a reader is woken."""

    def __init__(self, member: _Member, service: str | None, buffer: int) -> None:
        self._member = member
        self._service = service
        self._results = ResultBuffer(buffer)

    def _offer(self, ev: CatalogEvent) -> None:
        if self._service is not None and ev.record.service != self._service:
            return
        self._push(Result(ev.action, ev.service))

    def _push(self, result: Result) -> None:
        if self._results.push(result):
            self._wake()

    def _take(self) -> Result | None:
        """The next result, ``None`` if none yet; raises overflow, then stopped."""
        return self._results.take()

    def _stop(self) -> None:
        self._results.stop()
        self._member.watchers.discard(self)
        self._wake()

    def _wake(self) -> None:
        raise NotImplementedError


class MemoryWatcher(_Buffer):
    """The results of one watch of a :class:`MemoryRegistry`.

    The same rules as :class:`gossipreg.Watcher` (it satisfies
    :class:`gossipreg.WatcherProtocol`): results in order, a bounded buffer
    whose overflow raises :class:`~gossipreg.WatchOverflowError` once, and
    :class:`~gossipreg.WatcherStoppedError` after the buffered results once
    stopped or once the registry is closed. Made by :meth:`MemoryRegistry.watch`.
    """

    def __init__(self, registry: MemoryRegistry, service: str | None, snapshot: bool, buffer: int) -> None:
        super().__init__(registry._member, service, buffer)
        self._wakeup = trio.Event()
        registry._member.watchers.add(self)
        if snapshot:
            registry._member.snapshot(self, service)

    def _wake(self) -> None:
        self._wakeup.set()

    async def next(self) -> Result:
        """The next result, waiting for one (a lease running out meanwhile is one).

        Raises:
            WatchOverflowError: results were lost to overflow; re-list and watch again.
            WatcherStoppedError: the watcher was stopped or the registry closed.
        """
        member = self._member
        while True:
            member.advance()
            result = self._take()
            if result is not None:
                await trio.lowlevel.checkpoint()
                return result
            self._wakeup = trio.Event()
            with trio.move_on_at(member.next_expiry()):
                await self._wakeup.wait()

    def next_nowait(self) -> Result | None:
        """The next buffered result, or ``None`` if there is none yet (same errors as :meth:`next`)."""
        self._member.advance()
        return self._take()

    def stop(self) -> None:
        """Stop watching; buffered results can still be read, then :meth:`next` raises."""
        self._stop()

    async def __aenter__(self) -> MemoryWatcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def __aiter__(self) -> MemoryWatcher:
        return self

    async def __anext__(self) -> Result:
        try:
            return await self.next()
        except WatcherStoppedError:
            raise StopAsyncIteration from None


class MemoryRegistry:
    """An in-memory registry for unit tests: :class:`~gossipreg.AsyncRegistry`'s interface, no network.

    A fake to hand to code written against :class:`gossipreg.RegistryProtocol`
    (which it satisfies) in place of a real member. It runs the real member's
    core alone, so what it answers is what a member with no peers would
    answer: the same validation and errors, one :class:`~gossipreg.Service`
    per version, :class:`~gossipreg.NotFoundError`, ``ttl`` leases that run
    out on trio's clock (so ``autojump_clock`` skips the wait), and watches
    with the same ``create``/``update``/``delete`` results, snapshots,
    buffers and overflow. Nothing is sent anywhere and no task runs: create it
    anywhere inside a trio run and use it at once::

        async def test_announces(autojump_clock):
            registry = gossipreg.testing.MemoryRegistry()
            await app.announce(registry)            # code taking a RegistryProtocol
            [service] = registry.get_service("greeter")
            await trio.sleep(31)                    # its ttl of 30 s runs out
            with pytest.raises(gossipreg.NotFoundError):
                registry.get_service("greeter")

    :meth:`close` (or leaving ``async with MemoryRegistry() as registry:``)
    closes it as leaving ``open_registry`` closes a member: every method then
    raises :class:`~gossipreg.RegistryClosedError` and open watchers stop.

    Args:
        name: the member's name (default ``"memory"``), under the rule of
            :func:`~gossipreg.open_registry`.
        address: the ``(host, port)`` (or ``"host:port"``) it reports as its address.
        config: protocol parameters (default ``Config.lan()``): the longest
            ``ttl`` and ``max_records_per_owner`` come from it.
        metadata: the member's metadata, as shown by :meth:`members`.

    Raises:
        ConfigError: an invalid option (as for :func:`~gossipreg.open_registry`).
        RuntimeError: created outside a trio run (it reads trio's clock).
    """

    def __init__(
        self,
        name: str = "memory",
        *,
        address: str | tuple[str, int] = DEFAULT_ADDRESS,
        config: Config | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self._member = _Member(name, address, config, metadata, trio.current_time, "MemoryRegistry")

    def __str__(self) -> str:
        return "memory"

    def __repr__(self) -> str:
        host, port = self.address
        state = " (closed)" if self._member.closed else ""
        return f"<MemoryRegistry {self.name} at {host}:{port}{state}>"

    async def register(self, service: Service, ttl: float | None = None) -> None:
        """Register ``service``'s nodes (see :meth:`gossipreg.AsyncRegistry.register`).

        Raises:
            InvalidServiceError: as :meth:`gossipreg.AsyncRegistry.register`.
            RegistrationLimitError: more than ``Config.max_records_per_owner`` registrations.
            RegistryClosedError: the registry is closed.
        """
        self._member.register(service, ttl)
        await trio.lowlevel.checkpoint()

    async def deregister(self, service: Service) -> None:
        """Remove the registrations of ``service`` (its listed nodes, or all of that name and
        version if it lists none).

        Raises:
            InvalidServiceError: ``service`` is not a :class:`~gossipreg.Service`.
            RegistryClosedError: the registry is closed.
        """
        self._member.deregister(service)
        await trio.lowlevel.checkpoint()

    def get_service(self, name: str) -> list[Service]:
        """One :class:`~gossipreg.Service` per version of ``name`` with its live nodes.

        Raises:
            NotFoundError: no live node of that service is registered.
            RegistryClosedError: the registry is closed.
        """
        return self._member.get_service(name)

    def list_services(self) -> list[Service]:
        """One :class:`~gossipreg.Service` per (name, version), without nodes.

        Raises:
            RegistryClosedError: the registry is closed.
        """
        return self._member.list_services()

    def watch(
        self, service: str | None = None, *, snapshot: bool = False, buffer: int = WATCH_BUFFER
    ) -> MemoryWatcher:
        """Watch changes of ``service`` (or of every service); see :meth:`gossipreg.AsyncRegistry.watch`.

        Raises:
            InvalidServiceError: ``service`` is not a str or ``None``.
            ConfigError: ``snapshot`` is not a bool, or ``buffer`` not an int of at least 1.
            RegistryClosedError: the registry is closed.
        """
        self._member.check_open()
        check_watch(service, snapshot, buffer)
        self._member.advance()
        return MemoryWatcher(self, service, snapshot, buffer)

    async def keep_alive(self, service: Service, ttl: float) -> NoReturn:
        """Register ``service`` with ``ttl`` now and again every ``ttl / 3`` until cancelled.

        Raises:
            InvalidServiceError: as :meth:`register`; ``ttl`` must not be ``None``.
            RegistrationLimitError: as :meth:`register`.
            RegistryClosedError: the registry is closed (at once, or at a renewal).
        """
        self._member.check_open()
        checked = check_ttl(ttl)
        if checked is None:
            raise InvalidServiceError("ttl: keep_alive renews a lease and needs a ttl in seconds, not None")
        while True:
            await self.register(service, checked)
            await trio.sleep(checked / 3)

    def members(self) -> list[Member]:
        """This member alone (a memory registry has no peers).

        Raises:
            RegistryClosedError: the registry is closed.
        """
        return self._member.members()

    def status(self) -> Status:
        """``alone`` and ready, as a real member without seeds (a memory registry has no peers).

        Raises:
            RegistryClosedError: the registry is closed.
        """
        return self._member.status()

    def statistics(self) -> dict[str, int]:
        """The member core's counters (registrations, expiries, renewals, ...; no traffic).

        Raises:
            RegistryClosedError: the registry is closed.
        """
        return self._member.statistics()

    @property
    def name(self) -> str:
        """This member's name."""
        return self._member.core.name

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` given as ``address``: reported, never bound."""
        a = self._member.core.address
        return (a.host, a.port)

    @property
    def keyring(self) -> None:
        """Always ``None``: nothing is sealed (as :attr:`gossipreg.AsyncRegistry.keyring` when insecure)."""
        return None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._member.closed

    def close(self) -> None:
        """Close the registry: open watchers stop, every later call raises
        :class:`~gossipreg.RegistryClosedError`. Idempotent."""
        self._member.close()

    async def __aenter__(self) -> MemoryRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class SyncMemoryWatcher(_Buffer):
    """The results of one watch of a :class:`SyncMemoryRegistry`, read from any thread.

    :class:`gossipreg.SyncWatcher`'s interface and rules: :meth:`next` with a
    timeout, iteration until stopped, a context manager that stops it.
    """

    def __init__(
        self, registry: SyncMemoryRegistry, service: str | None, snapshot: bool, buffer: int
    ) -> None:
        super().__init__(registry._member, service, buffer)
        self._registry = registry
        registry._member.watchers.add(self)
        if snapshot:
            registry._member.snapshot(self, service)

    def _wake(self) -> None:
        self._registry._changed.notify_all()  # called with the registry's lock held

    def next(self, timeout: float | None = None) -> Result:
        """The next result, waiting up to ``timeout`` seconds (``None``: forever) for one.

        The wait is in real time; a lease running out on the registry's
        ``clock`` meanwhile is a result. A result already buffered is returned
        even with ``timeout=0``.

        Raises:
            TimeoutError: no result arrived within ``timeout``; the watcher stays usable.
            WatchOverflowError: results were lost to overflow; re-list and watch again.
            WatcherStoppedError: the watcher was stopped or the registry closed.
            ConfigError: ``timeout`` is not ``None`` nor a non-negative number.
            BlockingCallError: called inside a trio program.
        """
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0
        ):
            raise ConfigError(
                "timeout: must be a non-negative number of seconds or None, "
                f"not {type(timeout).__name__} {shown(timeout)}"
            )
        _refuse_trio_thread("gossipreg.testing.SyncMemoryWatcher.next()")
        registry = self._registry
        member = self._member
        end = math.inf if timeout is None else time.monotonic() + float(timeout)
        with registry._changed:
            while True:
                registry._renew()
                member.advance()
                result = self._take()
                if result is not None:
                    return result
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no watch result within {timeout:g}s")
                # A lease may run out meanwhile: wake up by then (on the registry's clock).
                expiry = member.next_expiry() - member.clock()
                wait = min(left, max(expiry, 0.001))
                registry._changed.wait(None if math.isinf(wait) else wait)

    def stop(self) -> None:
        """Stop watching; buffered results can still be read, then :meth:`next` raises. Idempotent."""
        with self._registry._changed:
            self._stop()

    def __iter__(self) -> SyncMemoryWatcher:
        return self

    def __next__(self) -> Result:
        try:
            return self.next()
        except WatcherStoppedError:
            raise StopIteration from None

    def __enter__(self) -> SyncMemoryWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SyncMemoryKeepAlive:
    """The renewals of one :meth:`SyncMemoryRegistry.keep_alive`; :meth:`stop` ends them.

    Like :class:`gossipreg.KeepAlive`; also a context manager.
    """

    def __init__(self, registry: SyncMemoryRegistry, key: int) -> None:
        self._registry = registry
        self._key = key

    def stop(self) -> None:
        """Stop renewing: the registration expires ``ttl`` from now unless renewed. Idempotent."""
        self._registry._stop_keep_alive(self._key)

    def __enter__(self) -> SyncMemoryKeepAlive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SyncMemoryRegistry:
    """An in-memory registry with the sync :class:`gossipreg.Registry`'s interface, for unit tests.

    :class:`MemoryRegistry`'s semantics (one real member core, alone, no
    network), with blocking-free sync methods usable from any thread and no
    thread of its own. Leases run on ``clock`` (default ``time.monotonic``);
    pass a callable returning seconds to drive them by hand::

        now = [0.0]
        registry = gossipreg.testing.SyncMemoryRegistry(clock=lambda: now[0])
        registry.register(service, ttl=30)
        now[0] = 31.0
        registry.get_service(service.name)   # NotFoundError: the lease ran out

    :meth:`keep_alive` renews on the same clock, whenever the registry is
    used: a kept-alive registration does not expire until the handle is
    stopped. After :meth:`close` every call raises
    :class:`~gossipreg.RegistryClosedError` and watchers stop.

    Args:
        name: the member's name (default ``"memory"``).
        address: the ``(host, port)`` (or ``"host:port"``) it reports.
        config: protocol parameters (default ``Config.lan()``).
        metadata: the member's metadata, as shown by :meth:`members`.
        clock: monotonic seconds for leases (default ``time.monotonic``).

    Raises:
        ConfigError: an invalid option.
    """

    def __init__(
        self,
        name: str = "memory",
        *,
        address: str | tuple[str, int] = DEFAULT_ADDRESS,
        config: Config | None = None,
        metadata: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._changed = threading.Condition(threading.RLock())
        self._keep_alives: dict[int, tuple[Service, float, float]] = {}
        self._next_key = 0
        self._clock = clock
        self._member = _Member(name, address, config, metadata, self._now, "SyncMemoryRegistry")

    def _now(self) -> float:
        return float(self._clock())

    def _renew(self) -> None:
        """Renew the kept-alive registrations whose renewal is due, before any timer runs
        (lock held; nothing to do once closed)."""
        if self._member.closed:
            return
        now = self._now()
        for key, (service, ttl, due) in list(self._keep_alives.items()):
            if due <= now:
                self._member.register(service, ttl, renewal=True)
                self._keep_alives[key] = (service, ttl, now + ttl / 3)

    def __str__(self) -> str:
        return "memory"

    def __repr__(self) -> str:
        host, port = self.address
        state = "closed" if self._member.closed else "open"
        return f"<SyncMemoryRegistry {self.name} at {host}:{port} ({state})>"

    def register(self, service: Service, ttl: float | None = None) -> None:
        """Register ``service``'s nodes (see :meth:`gossipreg.Registry.register`).

        Raises:
            InvalidServiceError: as :meth:`gossipreg.Registry.register`.
            RegistrationLimitError: more than ``Config.max_records_per_owner`` registrations.
            RegistryClosedError: the registry is closed.
        """
        with self._changed:
            self._renew()
            self._member.register(service, ttl)

    def deregister(self, service: Service) -> None:
        """Remove the registrations of ``service`` (see :meth:`gossipreg.Registry.deregister`).

        Raises:
            InvalidServiceError: ``service`` is not a :class:`~gossipreg.Service`.
            RegistryClosedError: the registry is closed.
        """
        with self._changed:
            self._renew()
            self._member.deregister(service)

    def get_service(self, name: str) -> list[Service]:
        """One :class:`~gossipreg.Service` per version of ``name`` with its live nodes.

        Raises:
            NotFoundError: no live node of that service is registered.
            RegistryClosedError: the registry is closed.
        """
        with self._changed:
            self._renew()
            return self._member.get_service(name)

    def list_services(self) -> list[Service]:
        """One :class:`~gossipreg.Service` per (name, version), without nodes.

        Raises:
            RegistryClosedError: the registry is closed.
        """
        with self._changed:
            self._renew()
            return self._member.list_services()

    def watch(
        self, service: str | None = None, *, snapshot: bool = False, buffer: int = WATCH_BUFFER
    ) -> SyncMemoryWatcher:
        """Watch changes of ``service`` (or of every service); see :meth:`gossipreg.Registry.watch`.

        Raises:
            InvalidServiceError: ``service`` is not a str or ``None``.
            ConfigError: ``snapshot`` is not a bool, or ``buffer`` not an int of at least 1.
            RegistryClosedError: the registry is closed.
        """
        check_watch(service, snapshot, buffer)
        with self._changed:
            self._member.check_open()
            self._renew()
            self._member.advance()
            return SyncMemoryWatcher(self, service, snapshot, buffer)

    def keep_alive(self, service: Service, ttl: float) -> SyncMemoryKeepAlive:
        """Register ``service`` with ``ttl`` now and keep it registered until the handle is stopped.

        Renewals are due every ``ttl / 3`` on ``clock`` and happen whenever
        the registry is next used, so the registration never runs out while
        kept alive; once stopped it expires ``ttl`` after the last renewal.

        Raises:
            InvalidServiceError: as :meth:`register`; ``ttl`` must not be ``None``.
            RegistrationLimitError: as :meth:`register`.
            RegistryClosedError: the registry is closed.
        """
        checked = check_ttl(ttl)
        if checked is None:
            raise InvalidServiceError("ttl: keep_alive renews a lease and needs a ttl in seconds, not None")
        with self._changed:
            self._member.check_open()
            self._renew()
            self._member.register(service, checked)
            key = self._next_key
            self._next_key += 1
            self._keep_alives[key] = (service, checked, self._now() + checked / 3)
            return SyncMemoryKeepAlive(self, key)

    def _stop_keep_alive(self, key: int) -> None:
        with self._changed:
            if key in self._keep_alives:
                self._renew()  # the renewals due before the stop
            self._keep_alives.pop(key, None)

    def members(self) -> list[Member]:
        """This member alone (a memory registry has no peers).

        Raises:
            RegistryClosedError: the registry is closed.
        """
        with self._changed:
            self._renew()
            return self._member.members()

    def status(self) -> Status:
        """``alone`` and ready, as a real member without seeds (a memory registry has no peers).

        Raises:
            RegistryClosedError: the registry is closed.
        """
        with self._changed:
            return self._member.status()

    def statistics(self) -> dict[str, int]:
        """The member core's counters (registrations, expiries, renewals, ...; no traffic).

        Raises:
            RegistryClosedError: the registry is closed.
        """
        with self._changed:
            self._renew()
            return self._member.statistics()

    @property
    def name(self) -> str:
        """This member's name (readable after :meth:`close`)."""
        return self._member.core.name

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` given as ``address`` (readable after :meth:`close`)."""
        a = self._member.core.address
        return (a.host, a.port)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._member.closed

    def close(self) -> None:
        """Close the registry: watchers stop, keep-alives end, every later call raises
        :class:`~gossipreg.RegistryClosedError`. Idempotent."""
        with self._changed:
            self._keep_alives.clear()
            self._member.close()

    def __enter__(self) -> SyncMemoryRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
