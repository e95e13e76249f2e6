"""The asyncio-native registry: :func:`open_registry` and :class:`AsyncioRegistry`.

The same methods and semantics as :class:`~gossipreg.AsyncRegistry`, for
asyncio programs, on any event loop (it needs only ``call_soon_threadsafe``,
futures and events; uvloop is not required)::

    async with gossipreg.aio.open_registry("127.0.0.1:0", keyring=key) as reg:
        await reg.register(service, ttl=30)
        reg.get_service("greeter")          # local read: no await, never blocks the loop
        async with reg.watch("greeter", snapshot=True) as watcher:
            async for result in watcher:    # Result(action, service)
                ...

How it works. The member runs :func:`gossipreg.open_registry` on trio in a
background thread (as the sync :class:`gossipreg.Registry` does); nothing
here ever blocks the asyncio loop on that thread:

* Calls that act (``register``, ``deregister``, ``keep_alive``) are sent to
  the member's thread with ``TrioToken.run_sync_soon`` (which only queues) and
  run there as a task in a cancel scope; the result comes back through
  ``loop.call_soon_threadsafe`` into an ``asyncio.Future`` the caller awaits.
  Cancelling the awaiting task cancels that scope: an operation that has not
  started yet does not run at all, a ``keep_alive`` stops renewing.
* Reads (``get_service``, ``list_services``, ``members``, ``statistics``)
  never cross threads. The member's thread publishes immutable snapshots and
  the asyncio side reads the latest one, a single attribute load: the catalog
  view is republished on every change the member sees (so it is as fresh as
  the member's own view, and a ``register`` returns only once its
  registration is readable), ``members`` and ``statistics`` every
  :data:`REFRESH_INTERVAL` seconds.
* Watch results are taken in the member's thread from one watch of every
  service, filtered per watcher and handed over in batches with
  ``call_soon_threadsafe``; each :class:`AsyncioWatcher` keeps its own bounded
  buffer, with the overflow rule of :class:`~gossipreg.Watcher`.

Errors are gossipreg's, as :class:`~gossipreg.AsyncRegistry` raises them
(:class:`~gossipreg.InvalidServiceError`, :class:`~gossipreg.ConfigError`,
:class:`~gossipreg.NotFoundError`, ...); every call after the registry closed
raises :class:`~gossipreg.RegistryClosedError`, and closing wakes every
pending call with it (pending watchers end with
:class:`~gossipreg.WatcherStoppedError`, as in go-micro). trio's own
exceptions never reach the caller.

Every method must be called from the thread of the event loop that opened
the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar

import trio

from ._groups import single_exception
from ._options import RegistryOptions, check_options, check_watch
from ._results import ResultBuffer
from .core.config import Config
from .core.crypto import Keyring
from .core.errors import (
    InvalidServiceError,
    NotFoundError,
    RegistryClosedError,
    RegistryError,
    WatcherStoppedError,
    WatchOverflowError,
)
from .core.model import Service, check_ttl
from .core.observe import HistogramSnapshot
from .registry import (
    LEAVE_TIMEOUT,
    WATCH_BUFFER,
    AsyncRegistry,
    Member,
    Result,
    Status,
    Watcher,
    open_checked,
)
from .runtime.driver import DriverLimits, TLSContexts
from .tls import TLSFiles

if TYPE_CHECKING:
    from .interface import RegistryProtocol, WatcherProtocol

__all__ = ["AsyncioRegistry", "AsyncioWatcher", "open_registry"]

log = logging.getLogger("gossipreg")

T = TypeVar("T")

#: Seconds between two snapshots of :meth:`AsyncioRegistry.members` and
#: :meth:`AsyncioRegistry.statistics` (the catalog is republished on every change).
REFRESH_INTERVAL = 0.1
#: Seconds closing waits for the member's thread beyond the leave itself.
CLOSE_GRACE = 5.0
#: Results the member-side watch of every service holds between two hand-overs.
#: It is drained as soon as the member's thread runs again, so it never fills in
#: practice; if it did, every watcher would overflow (results were lost).
_FEED_BUFFER = 1 << 20

_CLOSED = "the registry is closed"


class _Catalog(NamedTuple):
    """An immutable snapshot of the member's catalog view."""

    services: Mapping[str, tuple[Service, ...]]
    """Name -> one :class:`Service` per version, with its live nodes."""
    listed: tuple[Service, ...]
    """:meth:`AsyncRegistry.list_services`, as it was."""


_EMPTY = _Catalog({}, ())

#: In a batch handed to a watcher: results were lost here (the feed overflowed).
_LOST = None




def _ours(exc: BaseException) -> BaseException:
    """``exc``, unless it is one of trio's: then the gossipreg error it stands for
    (:class:`RegistryClosedError` for ``ClosedResourceError``, else a
    :class:`RegistryError` caused by it), so trio's exceptions never reach a caller."""
    if type(exc).__module__.partition(".")[0] != "trio":
        return exc
    error = (
        RegistryClosedError(_CLOSED)
        if isinstance(exc, trio.ClosedResourceError)
        else RegistryError(f"the member failed: {exc!r}")
    )
    error.__cause__ = exc
    return error


class _Member:
    """The member's side of the bridge: everything here runs in the member's trio thread,
    except :meth:`post`, which may be called from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.token: trio.lowlevel.TrioToken | None = None
        self.main_scope = trio.CancelScope()
        self.stop = trio.Event()
        self.registry: AsyncRegistry | None = None
        self.nursery: trio.Nursery | None = None
        self.feed: Watcher | None = None
        self.waiting: trio.CancelScope | None = None  # follow()'s wait for the feed, while it waits
        self.watchers: set[AsyncioWatcher] = set()
        self.closing = False
        # Published for the asyncio side: replaced whole, never mutated.
        self.catalog: _Catalog = _EMPTY
        self.members: tuple[Member, ...] = ()
        self.statistics: Mapping[str, int] = {}
        self.status: Status | None = None
        self.histograms: Mapping[str, HistogramSnapshot] = {}

    # ------------------------------------------------------------ to the asyncio side

    def post(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` soon in the event loop's thread (dropped if the loop is closed)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(fn, *args)

    def settle(self, future: asyncio.Future[Any], value: object, error: BaseException | None) -> None:
        """Resolve ``future`` in the event loop's thread, unless it is done (cancelled) already."""
        self.post(_settle, future, value, error)

    # ------------------------------------------------------------ life

    async def run(
        self,
        options: RegistryOptions,
        on_started: Callable[[str, tuple[str, int]], None],
        abandoned: Callable[[], bool],
    ) -> None:
        """Run the member until :meth:`request_stop`; ``on_started`` is called in this thread."""
        self.token = trio.lowlevel.current_trio_token()
        if abandoned():  # the opener gave up before the token was there to tell us
            return
        with self.main_scope:
            async with open_checked(options) as registry, trio.open_nursery() as nursery:
                self.registry = registry
                self.nursery = nursery
                self.feed = registry.watch(None, buffer=_FEED_BUFFER)
                self.publish(None)
                self.refresh()
                nursery.start_soon(self.follow)
                nursery.start_soon(self.refresh_loop)
                on_started(registry.name, registry.address)
                await self.stop.wait()
                self.closing = True
                nursery.cancel_scope.cancel()  # pending calls end (RegistryClosedError); then the leave

    def request_stop(self) -> None:
        """Stop the member: a running one leaves gracefully, one still joining is cancelled."""
        if self.registry is None:
            self.main_scope.cancel()
        else:
            self.stop.set()

    # ------------------------------------------------------------ snapshots and watch results

    async def follow(self) -> None:
        """Hand every change to the snapshot and the watchers as soon as this thread runs."""
        assert self.feed is not None
        while True:
            lost = False
            first: Result | None = None
            # drain() may run in another task (or a callback) while this one waits in
            # next(): it cancels the wait first, and a cancelled next() consumes nothing.
            with trio.CancelScope() as scope:
                self.waiting = scope
                try:
                    first = await self.feed.next()
                except WatchOverflowError:
                    lost = True
            self.waiting = None
            if not scope.cancelled_caught:
                self.drain(first, lost=lost)

    async def refresh_loop(self) -> None:
        """Republish ``members`` and ``statistics`` every :data:`REFRESH_INTERVAL` seconds."""
        while True:
            await trio.sleep(REFRESH_INTERVAL)
            self.refresh()

    def refresh(self) -> None:
        """Publish the current members and statistics."""
        assert self.registry is not None
        self.members = tuple(self.registry.members())
        self.statistics = self.registry.statistics()
        self.status = self.registry.status()
        self.histograms = self.registry._core.histograms()

    def drain(self, first: Result | None = None, *, lost: bool = False) -> None:
        """Take every result the feed holds: republish the catalog, then hand them to the watchers.

        Synchronous, so a caller in this thread (a register, a new watcher) knows that
        every change so far is published and delivered, in order, when it returns.
        """
        assert self.feed is not None
        if self.waiting is not None:
            self.waiting.cancel()
        items: list[Result | None] = [] if first is None else [first]
        if lost:
            items.append(_LOST)
        while True:
            try:
                result = self.feed.next_nowait()
            except WatchOverflowError:
                items.append(_LOST)
                continue
            if result is None:
                break
            items.append(result)
        if not items:
            return
        if _LOST in items:
            self.publish(None)
        else:
            self.publish({r.service.name for r in items if r is not None})
        for watcher in self.watchers:
            wanted = watcher._service
            batch = [r for r in items if r is None or wanted is None or r.service.name == wanted]
            if batch:
                self.post(watcher._deliver, batch)

    def publish(self, names: set[str] | None) -> None:
        """Publish a new catalog snapshot, re-reading ``names`` (``None``: every service)."""
        registry = self.registry
        assert registry is not None
        listed = tuple(registry.list_services())
        if names is None:
            services: dict[str, tuple[Service, ...]] = {}
            names = {s.name for s in listed}
        else:
            services = dict(self.catalog.services)
        for name in names:
            try:
                services[name] = tuple(registry.get_service(name))
            except NotFoundError:
                services.pop(name, None)
        self.catalog = _Catalog(services, listed)

    def add_watcher(self, watcher: AsyncioWatcher) -> None:
        """Start feeding ``watcher``: first its snapshot (if asked), then every later change."""
        try:
            self._add_watcher(watcher)
        finally:
            self.post(watcher._started)  # after its snapshot: call_soon_threadsafe keeps the order

    def _add_watcher(self, watcher: AsyncioWatcher) -> None:
        registry = self.registry
        if registry is None or self.closing:
            return  # the asyncio side stops its watchers on close
        self.drain()  # earlier changes go to earlier watchers only
        batch: list[Result | None] = []
        if watcher._snapshot:  # as gossipreg.Watcher takes it
            service = watcher._service
            try:
                names = [service] if service is not None else sorted(
                    {s.name for s in registry.list_services()}
                )
                for name in names:
                    with contextlib.suppress(NotFoundError):
                        batch.extend(Result("create", svc) for svc in registry.get_service(name))
            except RegistryClosedError:
                return  # the member is stopping: the asyncio side stops its watchers
        self.watchers.add(watcher)
        if batch:
            self.post(watcher._deliver, batch)

    def remove_watcher(self, watcher: AsyncioWatcher) -> None:
        """Stop feeding ``watcher``."""
        self.watchers.discard(watcher)

    # ------------------------------------------------------------ calls

    def start_call(
        self,
        fn: Callable[[AsyncRegistry], Awaitable[Any]],
        future: asyncio.Future[Any],
        scope: trio.CancelScope,
    ) -> None:
        """Run ``fn(registry)`` as a task in ``scope``; its outcome settles ``future``."""
        try:
            if self.nursery is None or self.closing:
                raise RuntimeError("closing")
            self.nursery.start_soon(self._call, fn, future, scope)
        except RuntimeError:  # the nursery is closed: the member is stopping
            self.settle(future, None, RegistryClosedError(_CLOSED))

    async def _call(
        self,
        fn: Callable[[AsyncRegistry], Awaitable[Any]],
        future: asyncio.Future[Any],
        scope: trio.CancelScope,
    ) -> None:
        assert self.registry is not None
        try:
            with scope:
                await trio.lowlevel.checkpoint_if_cancelled()  # cancelled before it started: skip it
                value = await fn(self.registry)
                self.drain()  # a register returns once its records are readable
                self.settle(future, value, None)
            # The scope was cancelled: the asyncio side cancelled the call, its future is done.
        except trio.Cancelled:  # the member is closing
            self.settle(future, None, RegistryClosedError(_CLOSED))
            raise
        except Exception as exc:
            self.settle(future, None, _ours(single_exception(exc)))


def _in_member(fn: Callable[..., object], args: tuple[object, ...]) -> None:
    """Run ``fn(*args)``: a ``run_sync_soon`` callback in the member's thread, where an
    exception would crash trio itself, so one is logged instead."""
    try:
        fn(*args)
    except Exception:
        log.exception("gossipreg: the asyncio bridge failed in the member's thread")


def _settle(future: asyncio.Future[Any], value: object, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


class AsyncioRegistry:
    """A running gossip member and its registry, inside an asyncio program.

    Made by :func:`open_registry`, which runs the member on trio in a
    background thread. Every method must be called from the thread of the
    event loop that opened it; none of them blocks that loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, options: RegistryOptions) -> None:
        self._loop = loop
        self._member = _Member(loop)
        self._options = options
        self._closed = False
        self._abandoned = False
        self._started = False
        self._name = ""
        self._address: tuple[str, int] = ("", 0)
        self._pending: set[asyncio.Future[Any]] = set()
        self._watchers: set[AsyncioWatcher] = set()
        self._startup_error: BaseException | None = None
        self._crash: BaseException | None = None
        self._ready: asyncio.Future[None] = loop.create_future()
        self._ended: asyncio.Future[None] = loop.create_future()
        name = options.name
        self._thread = threading.Thread(
            target=self._thread_main, name=f"gossipreg-aio-{name or 'member'}", daemon=True
        )

    # ------------------------------------------------------------ the go-micro API

    def __str__(self) -> str:
        """``"gossip"``, the registry's kind (go-micro's ``String()``)."""
        return "gossip"

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncioRegistry {self._name} at {self._address[0]}:{self._address[1]} ({state})>"

    async def register(self, service: Service, ttl: float | None = None) -> None:
        """Register ``service``'s nodes as owned by this member.

        Returns once the records are in the local view (readable at once with
        :meth:`get_service`) and queued for gossip. With ``ttl`` (seconds),
        the registration also expires unless re-registered within ``ttl``;
        see :meth:`keep_alive`. Without, it lives as long as this member.
        Cancelled before the member's thread started it, it does not run.

        Raises:
            InvalidServiceError: ``service`` is not a :class:`~gossipreg.Service`
                or has no nodes, or ``ttl`` is not ``None`` nor a number of
                seconds from ``MIN_TTL`` (0.001) to ``MAX_TTL`` (4,294,967) and
                at most the configuration's ``tombstone_ttl - convergence_bound``.
            RegistrationLimitError: this member would own more than
                ``Config.max_records_per_owner`` registrations.
            RegistryClosedError: the registry is closed, or closed meanwhile.
        """
        self._check_open()
        checked = check_ttl(ttl)
        await self._call(lambda reg: reg.register(service, checked))

    async def deregister(self, service: Service) -> None:
        """Remove this member's registrations of ``service`` (its listed nodes, or all
        of that name and version if it lists none).

        Returns once the removal is in the local view.

        Raises:
            RegistryClosedError: the registry is closed, or closed meanwhile.
        """
        self._check_open()
        await self._call(lambda reg: reg.deregister(service))

    def get_service(self, name: str) -> list[Service]:
        """One :class:`~gossipreg.Service` per version of ``name`` with its live nodes.

        A local read of the member's latest published view: no await, no
        network, and it never waits for the member's thread.

        Raises:
            NotFoundError: no live node of that service is known.
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
        versions = self._member.catalog.services.get(name)
        if versions is None:
            raise NotFoundError(f"service {name!r} not found")
        return list(versions)

    def list_services(self) -> list[Service]:
        """One :class:`~gossipreg.Service` per (name, version), without nodes (local read).

        Raises:
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
        return list(self._member.catalog.listed)

    def watch(
        self, service: str | None = None, *, snapshot: bool = False, buffer: int = WATCH_BUFFER
    ) -> AsyncioWatcher:
        """Watch changes of ``service`` (or of all services).

        Use as ``async with reg.watch() as w: async for result in w: ...``.
        Entering the ``async with`` waits until the watch is in place in the
        member's thread, so every change the member sees from then on, local
        or from elsewhere in the cluster, is delivered. Changes made through
        this registry after ``watch()`` returns are seen in any case (calls
        run in order), ``async with`` or not.

        Args:
            service: a service name; ``None`` watches every service. A name not
                registered yet is fine.
            snapshot: first yield the current matching services as ``create``
                results, so nothing is lost between a list and a watch.
            buffer: results held before the watcher overflows; an int of at least 1.

        Raises:
            InvalidServiceError: ``service`` is not a str or ``None``.
            ConfigError: ``snapshot`` is not a bool, or ``buffer`` not an int of at least 1.
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
        check_watch(service, snapshot, buffer)
        watcher = AsyncioWatcher(self, service, snapshot, buffer)
        self._send(self._member.add_watcher, watcher)
        self._watchers.add(watcher)
        return watcher

    # ------------------------------------------------------------ beyond go-micro

    async def keep_alive(self, service: Service, ttl: float) -> NoReturn:
        """Register ``service`` with ``ttl`` now and again every ``ttl / 3`` until cancelled.

        Run it as a task; cancel the task to stop (the renewals, which run in
        the member's thread, stop with it). The registration then expires
        ``ttl`` after the last renewal unless deregistered.

        Raises:
            InvalidServiceError: as :meth:`register`; ``ttl`` must not be ``None``.
            RegistrationLimitError: as :meth:`register`.
            RegistryClosedError: the registry is closed, or closed meanwhile.
        """
        checked = check_ttl(ttl)
        if checked is None:
            raise InvalidServiceError("ttl: keep_alive renews a lease and needs a ttl in seconds, not None")
        self._check_open()
        member = self._member
        lease = checked

        async def renew(reg: AsyncRegistry) -> NoReturn:
            while True:
                await reg.register(service, lease)
                member.drain()
                await trio.sleep(lease / 3)

        await self._call(renew)
        raise AssertionError("unreachable: keep_alive only ends on an error")  # pragma: no cover

    def members(self) -> list[Member]:
        """Every member this one knows, itself included, sorted by name.

        A snapshot at most :data:`REFRESH_INTERVAL` seconds old; never waits
        for the member's thread.

        Raises:
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
        return list(self._member.members)

    def _histograms(self) -> Mapping[str, HistogramSnapshot]:
        """The member's latency histograms (for :mod:`gossipreg.metrics`), a snapshot at most
        :data:`REFRESH_INTERVAL` seconds old."""
        return self._member.histograms

    def status(self) -> Status:
        """Where this member stands: joined, alone or isolated (see :class:`~gossipreg.Status`).

        A snapshot at most :data:`REFRESH_INTERVAL` seconds old; never waits
        for the member's thread.

        Raises:
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
        assert self._member.status is not None  # published before the registry is handed out
        return self._member.status

    def statistics(self) -> dict[str, int]:
        """Counters: packets, bytes, decode and authentication failures, suspicions, ...

        A snapshot at most :data:`REFRESH_INTERVAL` seconds old (see
        :meth:`gossipreg.AsyncRegistry.statistics`); never waits for the member's thread.

        Raises:
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
        return dict(self._member.statistics)

    @property
    def name(self) -> str:
        """This member's name (still readable after close)."""
        return self._name

    @property
    def address(self) -> tuple[str, int]:
        """The advertised ``(host, port)`` other members reach this one at (readable after close)."""
        return self._address

    @property
    def closed(self) -> bool:
        """Whether the registry was closed, or its member stopped."""
        return self._closed

    async def aclose(self) -> None:
        """Leave the cluster gracefully, stop the member and join its thread. Idempotent.

        Every pending call raises :class:`~gossipreg.RegistryClosedError` at
        once, and every watcher stops (buffered results can still be read, then
        it raises :class:`~gossipreg.WatcherStoppedError`, and ``async for``
        ends). Cancelled while it waits for the member's thread, it still
        waits (at most ``CLOSE_GRACE`` seconds beyond the leave), then re-raises.
        """
        if not self._closed:
            self._closed = True
            self._stop_everything(None)
            self._send_quietly(self._member.request_stop)
        await self._join_thread()

    # ------------------------------------------------------------ internals: calling in

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosedError(_CLOSED) from self._crash

    def _send(self, fn: Callable[..., object], *args: object) -> None:
        """Queue ``fn(*args)`` in the member's thread; never blocks."""
        token = self._member.token
        assert token is not None
        try:
            token.run_sync_soon(_in_member, fn, args)
        except trio.RunFinishedError:
            raise RegistryClosedError(_CLOSED) from self._crash

    def _send_quietly(self, fn: Callable[..., object], *args: object) -> None:
        """Queue ``fn(*args)`` in the member's thread if it still runs; never blocks."""
        token = self._member.token
        if token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(_in_member, fn, args)

    async def _call(self, fn: Callable[[AsyncRegistry], Awaitable[T]]) -> T:
        """Run ``fn(registry)`` in the member's thread and wait for its outcome, without blocking."""
        future: asyncio.Future[T] = self._loop.create_future()
        scope = trio.CancelScope()
        self._send(self._member.start_call, fn, future, scope)
        self._pending.add(future)
        try:
            return await future
        except asyncio.CancelledError:
            # Cancel the member-side task too: not started, it never runs; a keep_alive stops.
            self._send_quietly(scope.cancel)
            raise
        finally:
            self._pending.discard(future)

    def _stop_everything(self, cause: BaseException | None) -> None:
        """Wake every pending call with RegistryClosedError and stop every watcher (loop thread)."""
        for future in list(self._pending):
            if not future.done():
                error = RegistryClosedError(_CLOSED)
                error.__cause__ = cause
                future.set_exception(error)
        self._pending.clear()
        for watcher in list(self._watchers):
            watcher.stop()

    # ------------------------------------------------------------ internals: the member's thread

    async def _start(self) -> None:
        """Start the member's thread and wait, without blocking the loop, until it joined."""
        self._thread.start()
        try:
            await asyncio.shield(self._ready)
        except asyncio.CancelledError:
            # Give up: stop the member (cancel a join in progress), wait for its thread.
            self._abandoned = True
            self._closed = True
            self._send_quietly(self._member.request_stop)
            await self._join_thread()
            raise
        except BaseException:  # it could not start (JoinError, OSError, ...): its thread is over
            await self._join_thread()
            raise

    def _thread_main(self) -> None:
        try:
            trio.run(self._member.run, self._options, self._on_started_in_thread, lambda: self._abandoned)
        except BaseException as exc:
            error = _ours(single_exception(exc))
            if not self._started:
                self._startup_error = error
            else:
                self._crash = error
                log.error("gossipreg: the member's thread stopped on an error", exc_info=error)
        finally:
            self._member.post(self._on_thread_end)

    def _on_started_in_thread(self, name: str, address: tuple[str, int]) -> None:
        self._name = name
        self._address = address
        self._started = True
        self._member.post(_settle, self._ready, None, None)

    def _on_thread_end(self) -> None:
        """In the loop's thread, once the member's thread is over."""
        self._closed = True
        if not self._ready.done():
            error = self._startup_error or RegistryClosedError("the member stopped while starting")
            if self._abandoned:
                self._ready.cancel()
            else:
                self._ready.set_exception(error)
        self._stop_everything(self._crash)
        if not self._ended.done():
            self._ended.set_result(None)

    async def _join_thread(self) -> None:
        """Wait for the member's thread to end, then join it; never blocks the loop."""
        if not self._thread.is_alive() and self._ended.done():
            self._thread.join()
            return
        cancelled = False
        deadline = time.monotonic() + LEAVE_TIMEOUT + CLOSE_GRACE
        while not self._ended.done():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait({self._ended}, timeout=left)
            except asyncio.CancelledError:
                if cancelled:
                    raise  # cancelled twice: give up waiting
                cancelled = True
        # The thread posted its end from its last frame: it is returning. A thread's end
        # has no event to await, so poll (briefly) rather than block the loop in join().
        while self._thread.is_alive() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        if self._thread.is_alive():
            log.warning("gossipreg: the member's thread did not stop in %gs", LEAVE_TIMEOUT + CLOSE_GRACE)
        else:
            self._thread.join()
        if cancelled:
            raise asyncio.CancelledError


class AsyncioWatcher:
    """Results of one watch of an :class:`AsyncioRegistry`, in order, from a bounded buffer.

    Use as ``async with reg.watch() as w: async for result in w: ...`` or call
    :meth:`next`. The semantics are those of :class:`gossipreg.Watcher`: when
    the buffer overflows, results are not dropped silently: the next
    :meth:`next` raises :class:`~gossipreg.WatchOverflowError`, and the
    consumer re-lists and watches on. Made by :meth:`AsyncioRegistry.watch`.
    """

    def __init__(self, registry: AsyncioRegistry, service: str | None, snapshot: bool, buffer: int) -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        self._registry = registry
        self._service = service
        self._snapshot = snapshot
        self._results = ResultBuffer(buffer)
        self._wakeup = asyncio.Event()
        self._in_place = asyncio.Event()  # set once the member's thread feeds this watcher

    def _started(self) -> None:
        """The member's thread feeds this watcher from now on (called in the loop's thread)."""
        self._in_place.set()

    def _deliver(self, batch: Iterable[Result | None]) -> None:
        """Take results handed over by the member's thread (in the loop's thread)."""
        for item in batch:
            if item is _LOST:
                if self._results.lose():
                    self._wakeup.set()
            else:
                self._push(item)

    def _push(self, result: Result) -> None:
        if self._results.push(result):
            self._wakeup.set()

    async def next(self) -> Result:
        """The next result, waiting for one without blocking the loop.

        Cancelling the wait leaves the watcher as it was.

        Raises:
            WatchOverflowError: results were lost to overflow; re-list and watch again.
            WatcherStoppedError: the watcher was stopped or the registry closed.
        """
        while True:
            result = self.next_nowait()
            if result is not None:
                return result
            if self._wakeup.is_set():
                self._wakeup = asyncio.Event()
            await self._wakeup.wait()

    def next_nowait(self) -> Result | None:
        """The next buffered result, or ``None`` if there is none yet (same errors as :meth:`next`)."""
        return self._results.take()

    def stop(self) -> None:
        """Stop watching; buffered results can still be read, then :meth:`next` raises. Idempotent."""
        if not self._results.stop():
            return
        self._wakeup.set()
        self._in_place.set()
        registry = self._registry
        registry._watchers.discard(self)
        registry._send_quietly(registry._member.remove_watcher, self)

    async def wait_in_place(self) -> None:
        """Wait until the watch is in place in the member's thread (or the watcher stopped).

        :meth:`AsyncioRegistry.watch` returns at once; changes made through the
        same registry after it are seen in any case (calls run in order), but a
        change elsewhere in the cluster is seen only once the watch is in place.
        ``async with reg.watch() as watcher`` waits for this on entry.
        """
        await self._in_place.wait()

    async def __aenter__(self) -> AsyncioWatcher:
        """Wait until the watch is in place (:meth:`wait_in_place`); stop it if cancelled meanwhile."""
        try:
            await self.wait_in_place()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the watcher."""
        self.stop()

    def __aiter__(self) -> AsyncioWatcher:
        """Iterate the results until the watcher is stopped (overflow raises, as in :meth:`next`)."""
        return self

    async def __anext__(self) -> Result:
        """The next result; ends the iteration once the watcher is stopped and drained."""
        try:
            return await self.next()
        except WatcherStoppedError:
            raise StopAsyncIteration from None


@contextlib.asynccontextmanager
async def open_registry(
    bind: str = "127.0.0.1:0",
    seeds: str | Iterable[str | tuple[str, int]] | None = None,
    *,
    name: str | None = None,
    keyring: Keyring | bytes | str | Iterable[str] | None = None,
    tls: TLSContexts | TLSFiles | tuple[object, object] | None = None,
    insecure: bool = False,
    secure: bool | None = None,
    advertise: str | tuple[str, int] | None = None,
    config: Config | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 - go-micro's Timeout option: the join deadline
    metadata: Mapping[str, str] | None = None,
    seed: int | None = None,
    limits: DriverLimits | None = None,
    identity: TLSFiles | None = None,
    retry_join: bool = False,
    metrics_port: int | None = None,
) -> AsyncIterator[AsyncioRegistry]:
    """Start a gossip member, join the cluster, and yield its :class:`AsyncioRegistry`.

    The arguments are those of :func:`gossipreg.open_registry`. The member
    runs on trio in a background thread; this waits for it to bind and join
    without blocking the event loop (cancelled meanwhile, it stops the member
    and its thread). On exit the member leaves gracefully (the leave gets up
    to one second to go out), closes its sockets and its thread is joined;
    see :meth:`AsyncioRegistry.aclose`.

    Args:
        bind: ``host:port`` to bind UDP and TCP on; port 0 picks a free one.
        seeds: ``host:port`` of members to join through; none starts a new cluster.
        name: this member's unique name (default: hostname plus a random suffix).
        keyring: the cluster keyring (a :class:`~gossipreg.Keyring`, raw key
            bytes, or base64 keys, the first primary); required unless ``insecure``.
        tls: mutual TLS for streams (:class:`~gossipreg.TLSFiles`,
            ``TLSContexts`` or a ``(server, client)`` ``SSLContext`` pair).
        insecure: run without encryption; an explicit opt-in.
        secure: go-micro's ``Secure`` option: ``True`` demands a keyring or TLS.
        advertise: the address other members reach this one at, if not the bind address.
        config: protocol parameters (default ``Config.lan()``).
        timeout: seconds to try the seeds before :class:`~gossipreg.JoinError`.
        metadata: this member's metadata, visible in :meth:`AsyncioRegistry.members`.
        seed: seed of the member's random generator (default: random).
        limits: the driver's resource limits (see :func:`gossipreg.open_registry`).
        identity: member identities: CA, certificate and key files (see
            :func:`gossipreg.open_registry`).
        retry_join: start at once and keep trying the seeds until one answers
            instead of raising :class:`~gossipreg.JoinError` (see
            :func:`gossipreg.open_registry`).
        metrics_port: serve Prometheus metrics on this port of the bind host
            (see :func:`gossipreg.open_registry`; the ``metrics`` extra).

    Raises:
        ConfigError: invalid or contradictory options, refused before any
            thread starts or socket is bound (see :func:`gossipreg.open_registry`).
        JoinError: seeds were given and none answered within ``timeout``.
        OSError: the address cannot be bound.
    """
    # Checked here, in the loop's thread, before any thread or socket exists.
    opts = check_options(
        bind, seeds, name=name, keyring=keyring, tls=tls, insecure=insecure, secure=secure,
        advertise=advertise, config=config, timeout=timeout, metadata=metadata, seed=seed,
        limits=limits, identity=identity, retry_join=retry_join, metrics_port=metrics_port,
    )
    registry = AsyncioRegistry(asyncio.get_running_loop(), opts)
    await registry._start()
    try:
        yield registry
    finally:
        await registry.aclose()


if TYPE_CHECKING:  # mypy checks that the asyncio registry is a RegistryProtocol

    def _conforms(
        registry: AsyncioRegistry, watcher: AsyncioWatcher
    ) -> tuple[RegistryProtocol, WatcherProtocol]:
        return registry, watcher
