"""The thread-backed sync facade: :class:`Registry`, for programs that are not trio.

A :class:`Registry` runs one gossip member (:func:`gossipreg.open_registry`)
with ``trio.run`` in a daemon thread and calls into it with
``trio.from_thread``, so every method blocks the calling thread, never the
member, and may be called from any number of threads at once::

    with gossipreg.Registry(bind="0.0.0.0:7946", seeds=["10.0.0.5:7946"],
                            keyring=key, advertise="10.0.0.7") as reg:
        reg.register(service)
        reg.get_service("greeter")
        with reg.watch("greeter") as watcher:
            result = watcher.next(timeout=5.0)     # TimeoutError after 5 s

Errors are the trio API's, re-raised in the calling thread with their
original type; no trio exception reaches the caller. Invalid arguments
(options, a ``ttl``, a watch's ``buffer``) are refused in the calling thread,
before the member's thread is started or called. After
:meth:`Registry.close` (or if the member's thread stopped on an error) every
call that needs the member raises :class:`~gossipreg.RegistryClosedError`, as
:class:`~gossipreg.AsyncRegistry` does once closed; :attr:`Registry.name` and
:attr:`Registry.address` stay readable, and watchers raise
:class:`~gossipreg.WatcherStoppedError` once their buffered results are read.
Inside a trio program use :func:`gossipreg.open_registry` instead: every
blocking call here (the constructor, the methods, :meth:`SyncWatcher.next`,
:meth:`Registry.close`) refuses to run in a trio thread with
:class:`~gossipreg.BlockingCallError`.

A registry does not survive ``os.fork``: in a child process, create a new one
(calls on the parent's raise ``RuntimeError``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TypeVar

import trio

from . import _signals
from ._groups import single_exception
from ._options import check_bool, check_options, check_watch
from .core.config import Config
from .core.crypto import Keyring
from .core.errors import (
    BlockingCallError,
    ConfigError,
    InvalidServiceError,
    RegistryClosedError,
    WatcherStoppedError,
)
from .core.model import Service, check_ttl, shown
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

__all__ = ["KeepAlive", "Registry", "SyncWatcher"]

log = logging.getLogger("gossipreg")

T = TypeVar("T")

#: Seconds :meth:`Registry.close` waits for the member's thread beyond the leave itself.
CLOSE_GRACE = 5.0




class Registry:
    """A gossip member and its registry, driven from ordinary (non-trio) threads.

    The constructor starts the member in a background thread and blocks until
    it has bound its sockets and joined the cluster. Every argument is the one
    of :func:`gossipreg.open_registry`. Use it as a context manager, or call
    :meth:`close`; :meth:`close` is idempotent.

    Args:
        bind: ``host:port`` to bind UDP and TCP on; port 0 picks a free one.
        seeds: ``host:port`` of members to join through; none starts a new cluster.
        name: this member's unique name (default: hostname plus a random suffix).
        keyring: the cluster keyring (a :class:`~gossipreg.Keyring`, raw key
            bytes, or base64 keys, the first primary); required unless ``insecure``.
        tls: mutual TLS for streams (:class:`~gossipreg.tls.TLSFiles`,
            ``TLSContexts`` or a ``(server, client)`` ``SSLContext`` pair).
        insecure: run without encryption; an explicit opt-in.
        secure: go-micro's ``Secure`` option: ``True`` demands a keyring or TLS.
        advertise: the address other members reach this one at, if not the bind address.
        config: protocol parameters (default ``Config.lan()``).
        timeout: seconds to try the seeds before :class:`~gossipreg.JoinError`.
        metadata: this member's metadata, visible in :meth:`members`.
        seed: seed of the member's random generator (default: random).
        limits: the driver's resource limits (see :func:`gossipreg.open_registry`).
        identity: member identities: CA, certificate and key files (see
            :func:`gossipreg.open_registry`).
        retry_join: start at once and keep trying the seeds until one answers
            instead of raising :class:`~gossipreg.JoinError` (see
            :func:`gossipreg.open_registry`).
        metrics_port: serve Prometheus metrics on this port of the bind host
            (see :func:`gossipreg.open_registry`; the ``metrics`` extra).
        handle_signals: leave the cluster on SIGTERM (the stop signal of
            Docker, Kubernetes and systemd, which otherwise kills the process
            before it can say it leaves): when made in the main thread, the
            registry installs a SIGTERM handler that closes it, then calls the
            handler the program had installed, or dies of the signal as the
            default would. ``False`` leaves SIGTERM alone. Whatever this
            option, an open registry also closes at interpreter exit
            (:mod:`atexit`: the end of the program, ``sys.exit``, an uncaught
            exception or Ctrl-C's ``KeyboardInterrupt``).

    Raises:
        ConfigError: invalid or contradictory options, refused in the calling
            thread before any thread starts or socket is bound; the message
            names the option, shows the value and states the rule (see
            :func:`gossipreg.open_registry`).
        JoinError: seeds were given and none answered within ``timeout``.
        OSError: the address cannot be bound.
        BlockingCallError: called from inside a trio program (use
            :func:`gossipreg.open_registry`).

    Every method below raises :class:`~gossipreg.BlockingCallError` when called
    from inside a trio program, and :class:`~gossipreg.RegistryClosedError`
    once the registry is closed.
    """

    def __init__(
        self,
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
        timeout: float = 10.0,
        metadata: Mapping[str, str] | None = None,
        seed: int | None = None,
        limits: DriverLimits | None = None,
        identity: TLSFiles | None = None,
        retry_join: bool = False,
        metrics_port: int | None = None,
        handle_signals: bool = True,
    ) -> None:
        _refuse_trio_thread("gossipreg.Registry()")
        # Checked here, in the caller's thread, before any thread or socket exists.
        opts = check_options(
            bind, seeds, name=name, keyring=keyring, tls=tls, insecure=insecure, secure=secure,
            advertise=advertise, config=config, timeout=timeout, metadata=metadata, seed=seed,
            limits=limits, identity=identity, retry_join=retry_join, metrics_port=metrics_port,
        )
        check_bool("handle_signals", handle_signals)
        self._pid = os.getpid()
        self._lock = threading.RLock()  # reentrant: a SIGTERM handler may close while it is held
        self._closed = False
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self._crash: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._main_scope = trio.CancelScope()
        self._stop = trio.Event()
        self._registry: AsyncRegistry | None = None
        self._nursery: trio.Nursery | None = None
        self._address: tuple[str, int] = ("", 0)
        self._name = ""

        async def start() -> None:
            async with open_checked(opts) as registry, trio.open_nursery() as nursery:
                self._registry = registry
                self._nursery = nursery
                self._address = registry.address
                self._name = registry.name
                self._started.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()  # end keep-alives; then open_registry leaves

        self._thread = threading.Thread(
            target=self._run, args=(start,), name=f"gossipreg-{name or 'member'}", daemon=True
        )
        self._thread.start()
        try:
            self._started.wait()
        except BaseException:  # KeyboardInterrupt while joining: stop the member, then re-raise
            self._shutdown(wait=True)
            raise
        error = self._take_startup_error()
        if error is not None:
            self._thread.join()
            raise error
        _signals.track(self, handle_signals=handle_signals)

    # ------------------------------------------------------------ the trio thread

    def _request_stop(self) -> None:
        # In the trio thread. A running member stops by returning from its body, not by
        # cancellation, so its driver is still running to send the leave; a member still
        # starting (interrupted constructor) is cancelled.
        if self._registry is None:
            self._main_scope.cancel()
        else:
            self._stop.set()

    def _take_startup_error(self) -> BaseException | None:
        error, self._startup_error = self._startup_error, None
        return error

    def _run(self, start: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            if self._closed:  # closed (KeyboardInterrupt) before the token was set
                return
            with self._main_scope:
                await start()

        try:
            trio.run(main)
        except BaseException as exc:
            error = single_exception(exc)
            if not self._started.is_set():
                self._startup_error = error
            else:
                self._crash = error
                log.error("gossipreg: the member's thread stopped on an error", exc_info=error)
        finally:
            self._closed = True
            self._started.set()
            _signals.forget(self)

    # ------------------------------------------------------------ calling in

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError("this registry belongs to the parent process; create a new one after fork")

    def _check(self) -> None:
        self._check_fork()
        _refuse_trio_thread("gossipreg.Registry's methods")
        if self._closed:
            raise self._closed_error() from self._crash

    def _closed_error(self) -> RegistryClosedError:
        if self._crash is not None:
            return RegistryClosedError(
                f"the registry of member {self._name} is closed: its thread stopped on an error"
            )
        return RegistryClosedError(f"the registry of member {self._name} is closed")

    def _token_or_closed(self) -> trio.lowlevel.TrioToken:
        self._check()
        assert self._token is not None
        return self._token

    def _sync(self, fn: Callable[[AsyncRegistry], T]) -> T:
        token = self._token_or_closed()
        try:
            return trio.from_thread.run_sync(self._in_trio, fn, trio_token=token)
        except trio.RunFinishedError:
            raise self._closed_error() from self._crash

    def _async(self, fn: Callable[[AsyncRegistry], Awaitable[T]]) -> T:
        token = self._token_or_closed()

        async def call() -> T:
            return await self._in_trio(fn)

        try:
            return trio.from_thread.run(call, trio_token=token)
        except (trio.RunFinishedError, trio.Cancelled):
            raise self._closed_error() from self._crash
        except BaseExceptionGroup as group:  # an error of a task started in a nursery
            error = single_exception(group)
            if error is group:
                raise
            raise error from None

    def _in_trio(self, fn: Callable[[AsyncRegistry], T]) -> T:
        # Runs in the trio thread, where ``_closed`` may have turned since the check.
        if self._closed or self._registry is None:
            raise self._closed_error()
        return fn(self._registry)

    # ------------------------------------------------------------ the API

    def __str__(self) -> str:
        return "gossip"

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Registry {self._name} at {self._address[0]}:{self._address[1]} ({state})>"

    def register(self, service: Service, ttl: float | None = None) -> None:
        """Register ``service``'s nodes as owned by this member.

        Returns once the records are in the local view and queued for gossip.
        With ``ttl`` (seconds) the registration expires unless renewed within
        ``ttl`` (see :meth:`keep_alive`); without, it lives as long as this member.

        Args:
            service: the service and the nodes to register.
            ttl: seconds the registration lives without renewal; ``None`` for no expiry.

        Raises:
            InvalidServiceError: the service has no nodes, or ``ttl`` is not
                ``None`` nor a number of seconds from ``MIN_TTL`` (0.001) to
                ``MAX_TTL`` (4,294,967) and at most the configuration's
                ``tombstone_ttl - convergence_bound`` (3300 s by default).
            RegistrationLimitError: this member would own more than
                ``Config.max_records_per_owner`` registrations.
            RegistryClosedError: the registry is closed.
            BlockingCallError: called inside a trio program.
        """
        checked = check_ttl(ttl)
        self._async(lambda reg: reg.register(service, checked))

    def deregister(self, service: Service) -> None:
        """Remove this member's registrations of ``service``.

        Args:
            service: its listed nodes are removed, or every node of that name
                and version if it lists none.

        Raises:
            RegistryClosedError: the registry is closed.
            BlockingCallError: called inside a trio program.
        """
        self._async(lambda reg: reg.deregister(service))

    def get_service(self, name: str) -> list[Service]:
        """One :class:`~gossipreg.Service` per version of ``name`` with its live nodes (local view).

        Args:
            name: the service name.

        Raises:
            NotFoundError: no live node of that service is known.
            RegistryClosedError: the registry is closed.
            BlockingCallError: called inside a trio program.
        """
        return self._sync(lambda reg: reg.get_service(name))

    def list_services(self) -> list[Service]:
        """One :class:`~gossipreg.Service` per (name, version), without nodes (local view).

        Raises:
            RegistryClosedError: the registry is closed.
            BlockingCallError: called inside a trio program.
        """
        return self._sync(lambda reg: reg.list_services())

    def watch(
        self, service: str | None = None, *, snapshot: bool = False, buffer: int = WATCH_BUFFER
    ) -> SyncWatcher:
        """Watch changes of ``service`` (or of every service).

        Args:
            service: a service name; ``None`` watches every service.
            snapshot: first yield the current matching services as ``create`` results.
            buffer: results held before the watcher overflows; an int of at least 1.

        Raises:
            InvalidServiceError: ``service`` is not a str or ``None``.
            ConfigError: ``snapshot`` is not a bool, or ``buffer`` not an int of at least 1.
            RegistryClosedError: the registry is closed.
            BlockingCallError: called inside a trio program.
        """
        check_watch(service, snapshot, buffer)
        watcher = self._sync(lambda reg: reg.watch(service, snapshot=snapshot, buffer=buffer))
        return SyncWatcher(self, watcher)

    def keep_alive(self, service: Service, ttl: float) -> KeepAlive:
        """Register ``service`` with ``ttl`` now, and again every ``ttl / 3`` until stopped.

        The renewals run in the member's thread. Stopping (or closing the
        registry) leaves the registration to expire ``ttl`` after the last
        renewal unless it is deregistered.

        Args:
            service: the service and the nodes to keep registered.
            ttl: seconds each registration lives, from ``MIN_TTL`` to ``MAX_TTL``.

        Returns:
            A handle whose :meth:`KeepAlive.stop` ends the renewals; also a context manager.

        Raises:
            InvalidServiceError: the service is invalid, or ``ttl`` is ``None`` or
                invalid (as for :meth:`register`).
            RegistrationLimitError: as for :meth:`register`.
            RegistryClosedError: the registry is closed.
            BlockingCallError: called inside a trio program.
        """
        checked = check_ttl(ttl)
        if checked is None:
            raise InvalidServiceError("ttl: keep_alive renews a lease and needs a ttl in seconds, not None")
        ttl = checked
        scope = trio.CancelScope()

        async def renew(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            registry = self._registry
            assert registry is not None
            with scope:
                await registry.register(service, ttl)
                task_status.started()
                try:
                    while True:
                        await trio.sleep(ttl / 3)
                        await registry.register(service, ttl)
                except RegistryClosedError:
                    return
                except Exception:
                    log.exception("gossipreg: keep_alive of %s stopped on an error", service.name)

        async def start(reg: AsyncRegistry) -> None:
            assert self._nursery is not None
            await self._nursery.start(renew)

        self._async(start)
        return KeepAlive(self, scope)

    def members(self) -> list[Member]:
        """Every member this one knows, itself included, sorted by name.

        Raises:
            RegistryClosedError: the registry is closed.
            BlockingCallError: called inside a trio program.
        """
        return self._sync(lambda reg: reg.members())

    def status(self) -> Status:
        """Where this member stands: joined, alone or isolated (see :class:`~gossipreg.Status`);
        ``status().ready`` is the readiness to report to a platform.

        Raises:
            RegistryClosedError: the registry is closed.
            BlockingCallError: called inside a trio program.
        """
        return self._sync(lambda reg: reg.status())

    @property
    def name(self) -> str:
        """This member's name (still readable after :meth:`close`)."""
        return self._name

    @property
    def address(self) -> tuple[str, int]:
        """The advertised ``(host, port)`` other members reach this one at (readable after close)."""
        return self._address

    def statistics(self) -> dict[str, int]:
        """Counters: packets, bytes, decode and authentication failures, suspicions, ...

        Raises:
            RegistryClosedError: the registry is closed.
            BlockingCallError: called inside a trio program.
        """
        return self._sync(lambda reg: reg.statistics())

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called or the member stopped."""
        return self._closed

    def close(self) -> None:
        """Leave the cluster gracefully, stop the member and its thread. Idempotent.

        Watchers are stopped (a blocked :meth:`SyncWatcher.next` raises
        :class:`~gossipreg.WatcherStoppedError`) and keep-alives end; every
        later call raises :class:`~gossipreg.RegistryClosedError`. Safe to
        call from any thread but a trio program's, and after a fork (the child
        then just forgets the parent's member).

        Raises:
            BlockingCallError: called inside a trio program (other than the
                member's own thread); nothing is closed.
        """
        if os.getpid() == self._pid and threading.current_thread() is not self._thread:
            _refuse_trio_thread("gossipreg.Registry.close()")
        self._shutdown(wait=True)

    def _shutdown(self, *, wait: bool) -> None:
        if os.getpid() != self._pid:
            self._closed = True
            return
        _signals.forget(self)
        with self._lock:
            self._closed = True  # before reading the token: see main() in _run
            token = self._token
            if token is not None:
                try:
                    trio.from_thread.run_sync(self._request_stop, trio_token=token)
                except trio.RunFinishedError:
                    pass
                except RuntimeError:
                    # Called in the member's own thread (say, from a logging handler).
                    self._request_stop()
                    return
        if wait and threading.current_thread() is not self._thread:
            self._thread.join(LEAVE_TIMEOUT + CLOSE_GRACE)
            if self._thread.is_alive():
                log.warning("gossipreg: the member's thread did not stop in %gs", LEAVE_TIMEOUT + CLOSE_GRACE)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncWatcher:
    """The results of one watch of a :class:`Registry`, read from any thread.

    Use :meth:`next` with a timeout, or iterate (``for result in watcher``,
    which ends once the watcher is stopped). Also a context manager that stops
    the watcher on exit. Made by :meth:`Registry.watch`.
    """

    def __init__(self, registry: Registry, watcher: Watcher) -> None:
        self._registry = registry
        self._watcher = watcher

    def next(self, timeout: float | None = None) -> Result:
        """The next result, waiting up to ``timeout`` seconds (``None``: forever) for one.

        A result already buffered is returned even with ``timeout=0``.

        Args:
            timeout: seconds to wait; ``None`` waits until a result arrives or
                the watcher is stopped.

        Raises:
            TimeoutError: no result arrived within ``timeout``; the watcher
                stays usable.
            WatchOverflowError: results were lost to overflow; re-list and watch again.
            WatcherStoppedError: the watcher was stopped or the registry closed.
            ConfigError: ``timeout`` is not ``None`` nor a non-negative number
                (NaN included); a ``ValueError``.
            BlockingCallError: called inside a trio program.
        """
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0
        ):
            raise ConfigError(
                "timeout: must be a non-negative number of seconds or None, "
                f"not {type(timeout).__name__} {shown(timeout)}"
            )
        if timeout is not None:
            timeout = float(timeout) if timeout < 1e18 else math.inf  # float() of a huge int overflows
        watcher = self._watcher

        async def wait() -> Result:
            result = watcher.next_nowait()
            if result is not None:
                return result
            if timeout is None:
                return await watcher.next()
            with trio.move_on_after(timeout):
                return await watcher.next()
            raise TimeoutError(f"no watch result within {timeout:g}s")

        registry = self._registry
        registry._check_fork()
        _refuse_trio_thread("gossipreg.SyncWatcher.next()")
        if registry._thread.is_alive():
            assert registry._token is not None
            try:
                return trio.from_thread.run(wait, trio_token=registry._token)
            except (trio.RunFinishedError, trio.Cancelled):
                registry._thread.join(CLOSE_GRACE)  # the run is over: its thread ends at once
        # The member's thread is gone: read what the buffer still holds, here.
        with registry._lock:
            result = watcher.next_nowait()
        if result is None:
            raise WatcherStoppedError("watcher stopped: the registry is closed")
        return result

    def stop(self) -> None:
        """Stop watching; buffered results can still be read, then :meth:`next` raises. Idempotent.

        Raises:
            BlockingCallError: called inside a trio program.
        """
        with contextlib.suppress(RegistryClosedError):  # closing the registry stopped every watcher
            self._registry._sync(lambda reg: self._watcher.stop())

    def __iter__(self) -> Iterator[Result]:
        return self

    def __next__(self) -> Result:
        try:
            return self.next()
        except WatcherStoppedError:
            raise StopIteration from None

    def __enter__(self) -> SyncWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class KeepAlive:
    """The renewals of one :meth:`Registry.keep_alive`; :meth:`stop` ends them.

    Also a context manager that stops the renewals on exit.
    """

    def __init__(self, registry: Registry, scope: trio.CancelScope) -> None:
        self._registry = registry
        self._scope = scope

    def stop(self) -> None:
        """Stop renewing; the registration expires ``ttl`` after the last renewal. Idempotent.

        Raises:
            BlockingCallError: called inside a trio program.
        """
        with contextlib.suppress(RegistryClosedError):  # closing the registry ended every renewal
            self._registry._sync(lambda reg: self._scope.cancel())

    def __enter__(self) -> KeepAlive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _refuse_trio_thread(what: str) -> None:
    """Refuse a blocking call in a trio thread, where it would stall every task (or deadlock).

    Raises:
        BlockingCallError: this thread is running trio; the message says to use
            :func:`~gossipreg.open_registry`.
    """
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return
    raise BlockingCallError(
        f"{what} blocks its thread and this is a trio program: inside trio, use "
        "`async with gossipreg.open_registry(...) as reg` (an AsyncRegistry) instead"
    )
