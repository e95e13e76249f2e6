"""The public registry API, trio-native: :func:`open_registry` and :class:`AsyncRegistry`.

go-micro's ``registry.Registry``, made Pythonic::

    async with gossipreg.open_registry(bind="127.0.0.1:0", seeds=["10.0.0.5:7946"],
                                       keyring=keyring) as reg:
        await reg.register(service, ttl=30)
        reg.get_service("greeter")          # local read: no await, no network
        async with reg.watch() as watcher:
            async for result in watcher:    # Result(action, service)
                ...

Option mapping from go-micro: ``Addrs`` -> ``seeds``, ``Timeout`` -> ``timeout``,
``RegisterTTL`` -> ``ttl``, ``Secure``/``TLSConfig`` -> ``keyring`` plus ``tls``.
The thread-backed :class:`gossipreg.Registry` wraps this for programs that are
not trio.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NoReturn

import msgpack
import trio

from .core.catalog import CatalogEvent
from .core.config import Config
from .core.crypto import Keyring
from .core.errors import (
    ConfigError,
    InvalidServiceError,
    JoinError,
    NotFoundError,
    WatcherStoppedError,
    WatchOverflowError,
)
from .core.membership import Address, MemberEvent
from .core.membership import Member as _CoreMember
from .core.model import Service
from .core.node import JoinResult, NodeCore, NodeEvent, RegistrationConflict
from .runtime.driver import DriverLimits, MemberDriver, TLSContexts
from .runtime.transport import NetTransport, Transport, parse_address
from .tls import TLSFiles, load_tls

__all__ = ["AsyncRegistry", "Member", "Result", "Watcher", "open_registry"]

log = logging.getLogger("gossipreg")

#: Seconds between re-joins through the seeds while a member has no peer at all
#: (go-micro issue #414: a member must never stay alone after its seeds restart).
REJOIN_INTERVAL = 10.0
#: Seconds a clean shutdown waits for its leave message to go out.
LEAVE_TIMEOUT = 1.0
#: Default bound of a watcher's buffer, in results.
WATCH_BUFFER = 1024


@dataclass(frozen=True, slots=True)
class Result:
    """One change seen by a watcher (go-micro's ``registry.Result``).

    ``service`` carries the changed node(s) only: for ``delete``, the removed
    node(s).
    """

    action: Literal["create", "update", "delete"]
    service: Service


@dataclass(frozen=True, slots=True)
class Member:
    """A member of the cluster as this member sees it."""

    name: str
    address: tuple[str, int]
    state: Literal["alive", "suspect", "dead", "left"]
    incarnation: int
    metadata: Mapping[str, str]


def _decode_meta(meta: bytes) -> Mapping[str, str]:
    if not meta:
        return {}
    try:
        obj = msgpack.unpackb(meta, raw=False)
    except Exception:
        return {}
    if not isinstance(obj, dict):
        return {}
    return {str(k): str(v) for k, v in obj.items()}


def _member(m: _CoreMember) -> Member:
    state: Literal["alive", "suspect", "dead", "left"] = m.state.value
    return Member(m.name, (m.address.host, m.address.port), state, m.incarnation, _decode_meta(m.meta))


class Watcher:
    """Results of one watch, in order per key, from a bounded buffer.

    Use as ``async with reg.watch() as w: async for result in w: ...`` or call
    :meth:`next`. When the buffer overflows, results are not dropped silently:
    the next :meth:`next` raises :class:`~gossipreg.WatchOverflowError`, and the
    consumer re-lists and watches again.
    """

    def __init__(self, registry: AsyncRegistry, service: str | None, snapshot: bool, buffer: int) -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        self._registry = registry
        self._service = service
        self._buffer: deque[Result] = deque()
        self._limit = buffer
        self._overflowed = False
        self._stopped = False
        self._wakeup = trio.Event()
        registry._watchers.add(self)
        if snapshot:
            names = [service] if service is not None else sorted({s.name for s in registry.list_services()})
            for name in names:
                with contextlib.suppress(NotFoundError):
                    for svc in registry.get_service(name):
                        self._push(Result("create", svc))

    def _offer(self, ev: CatalogEvent) -> None:
        if self._service is not None and ev.record.service != self._service:
            return
        self._push(Result(ev.action, ev.service))

    def _push(self, result: Result) -> None:
        if self._stopped or self._overflowed:
            return
        if len(self._buffer) >= self._limit:
            self._overflowed = True
            self._buffer.clear()
        else:
            self._buffer.append(result)
        self._wakeup.set()

    async def next(self) -> Result:
        """The next result, waiting for one.

        Raises:
            WatchOverflowError: results were lost to overflow; re-list and watch again.
            WatcherStoppedError: the watcher was stopped or the registry closed.
        """
        while True:
            if self._overflowed:
                self._overflowed = False
                raise WatchOverflowError(
                    f"watcher buffer of {self._limit} results overflowed; re-list and watch again"
                )
            if self._buffer:
                await trio.lowlevel.checkpoint()
                return self._buffer.popleft()
            if self._stopped:
                raise WatcherStoppedError("watcher stopped")
            self._wakeup = trio.Event()
            await self._wakeup.wait()

    def next_nowait(self) -> Result | None:
        """The next buffered result, or ``None`` if there is none yet (same errors as :meth:`next`)."""
        if self._overflowed:
            self._overflowed = False
            raise WatchOverflowError(f"watcher buffer of {self._limit} results overflowed")
        if self._buffer:
            return self._buffer.popleft()
        if self._stopped:
            raise WatcherStoppedError("watcher stopped")
        return None

    def stop(self) -> None:
        """Stop watching; buffered results can still be read, then :meth:`next` raises."""
        self._stopped = True
        self._registry._watchers.discard(self)
        self._wakeup.set()

    async def __aenter__(self) -> Watcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> Result:
        try:
            return await self.next()
        except WatcherStoppedError:
            raise StopAsyncIteration from None


class AsyncRegistry:
    """A running gossip member and its registry, inside a trio program.

    Made by :func:`open_registry`; every method must be called from the trio
    thread that opened it (the sync :class:`gossipreg.Registry` takes care of
    that for other programs).
    """

    def __init__(self, core: NodeCore, driver: MemberDriver, seeds: Sequence[tuple[str, int]]) -> None:
        self._core = core
        self._driver = driver
        self._seeds = list(seeds)
        self._watchers: set[Watcher] = set()
        self._join_waiters: list[trio.MemorySendChannel[JoinResult]] = []
        self._closed = False

    # ------------------------------------------------------------ go-micro API

    def __str__(self) -> str:
        return "gossip"

    def __repr__(self) -> str:
        return f"<AsyncRegistry {self._core.name} at {self.address[0]}:{self.address[1]}>"

    async def register(self, service: Service, ttl: float | None = None) -> None:
        """Register ``service``'s nodes as owned by this member.

        Returns once the records are in the local view and queued for gossip
        (eagerly pushed to ``gossip_nodes`` members). With ``ttl`` (seconds),
        the registration also expires unless re-registered within ``ttl``;
        see :meth:`keep_alive`. Without, it lives as long as this member.

        Raises:
            InvalidServiceError: the service has no nodes, or ``ttl`` is invalid.
            RegistrationLimitError: this member would own more than
                ``Config.max_records_per_owner`` registrations.
        """
        self._check_open()
        self._core.register(service, ttl, self._driver.now())
        self._driver.flush()
        await trio.lowlevel.checkpoint()

    async def deregister(self, service: Service) -> None:
        """Remove this member's registrations of ``service`` (its listed nodes, or all
        of that name and version if it lists none)."""
        self._check_open()
        self._core.deregister(service, self._driver.now())
        self._driver.flush()
        await trio.lowlevel.checkpoint()

    def get_service(self, name: str) -> list[Service]:
        """One :class:`Service` per version of ``name`` with its live nodes (local read).

        Raises:
            NotFoundError: no live node of that service is known.
        """
        return self._core.get_service(name)

    def list_services(self) -> list[Service]:
        """One :class:`Service` per (name, version), without nodes (local read)."""
        return self._core.list_services()

    def watch(
        self, service: str | None = None, *, snapshot: bool = False, buffer: int = WATCH_BUFFER
    ) -> Watcher:
        """Watch changes of ``service`` (or of all services).

        Args:
            service: a service name; ``None`` watches every service. A name not
                registered yet is fine.
            snapshot: first yield the current matching services as ``create``
                results, so nothing is lost between a list and a watch.
            buffer: results held before the watcher overflows.
        """
        self._check_open()
        return Watcher(self, service, snapshot, buffer)

    # ------------------------------------------------------------ beyond go-micro

    async def keep_alive(self, service: Service, ttl: float) -> NoReturn:
        """Register ``service`` with ``ttl`` now and again every ``ttl / 3`` until cancelled.

        Run it in a nursery; cancel it (or close the registry) to stop. The
        registration then expires ``ttl`` after the last renewal unless
        deregistered.
        """
        if not ttl > 0:
            raise InvalidServiceError(f"ttl: must be positive, not {ttl!r}")
        while True:
            await self.register(service, ttl)
            await trio.sleep(ttl / 3)

    def members(self) -> list[Member]:
        """Every member this one knows, itself included, sorted by name."""
        return [_member(m) for m in self._core.members()]

    @property
    def name(self) -> str:
        """This member's name."""
        return self._core.name

    @property
    def keyring(self) -> Keyring | None:
        """The live keyring this member seals and opens with (``None`` if insecure).

        Changes take effect at once: :meth:`Keyring.install`, :meth:`Keyring.use`
        and :meth:`Keyring.remove` rotate keys without a restart.
        """
        return self._core.keyring

    @property
    def address(self) -> tuple[str, int]:
        """The advertised ``(host, port)`` other members reach this one at."""
        a = self._core.address
        return (a.host, a.port)

    def statistics(self) -> dict[str, int]:
        """Counters: packets, bytes, decode and authentication failures, suspicions, ..."""
        out = self._core.statistics()
        for k, v in self._driver.counters.items():
            out[f"driver_{k}"] = v
        return out

    # ------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the registry is closed")

    def _on_event(self, ev: NodeEvent) -> None:
        if isinstance(ev, CatalogEvent):
            for w in list(self._watchers):
                w._offer(ev)
        elif isinstance(ev, JoinResult):
            for ch in self._join_waiters:
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    ch.send_nowait(ev)
        elif isinstance(ev, MemberEvent):
            log.debug("gossipreg: %s %s", ev.kind.value, ev.member.name)
        elif isinstance(ev, RegistrationConflict):
            service, version, node_id = ev.key
            log.warning(
                "gossipreg: node %r of %s %s is registered by both %s and %s; %s's registration "
                "is shown, the other's returns if it is deregistered or its member goes away",
                node_id, service, version or "-", self._core.name, ev.other,
                self._core.name if ev.ours_shown else ev.other,
            )

    async def _resolve(self) -> list[Address]:
        out: list[Address] = []
        family = socket.AF_INET6 if ":" in self._core.address.host else socket.AF_INET
        for host, port in self._seeds:
            try:
                infos = await trio.socket.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
            except OSError as exc:
                log.warning("gossipreg: cannot resolve seed %s:%s: %s", host, port, exc)
                continue
            for info in infos:
                addr = Address(str(info[4][0]), int(info[4][1]))
                if addr not in out and addr != self._core.address:
                    out.append(addr)
        return out

    async def _join(self, join_timeout: float) -> None:
        """Join through the seeds, retrying with backoff until ``join_timeout``.

        Raises:
            JoinError: seeds were given and none answered in time.
        """
        if not self._seeds:
            return
        deadline = trio.current_time() + join_timeout
        backoff = 0.1
        send, recv = trio.open_memory_channel[JoinResult](64)
        self._join_waiters.append(send)
        reasons: list[str] = []
        try:
            while True:
                addresses = await self._resolve()
                if addresses:
                    self._core.join(addresses, self._driver.now())
                    self._driver.flush()
                    pending = len(addresses)
                    with trio.move_on_at(deadline):
                        while pending:
                            result = await recv.receive()
                            if result.ok:
                                return
                            pending -= 1
                            reasons.append(f"{result.address.host}:{result.address.port}: {result.reason}")
                else:
                    reasons.append("no seed address could be resolved")
                left = deadline - trio.current_time()
                if left <= 0:
                    break
                # Retry with backoff, and once more right at the deadline.
                await trio.sleep(min(backoff, left))
                backoff = min(backoff * 2, 2.0)
        finally:
            self._join_waiters.remove(send)
        seeds = ", ".join(f"{h}:{p}" for h, p in self._seeds)
        detail = "; ".join(reasons[-len(self._seeds) :]) or "no answer"
        raise JoinError(f"could not join through any seed ({seeds}) within {join_timeout:g}s: {detail}")

    async def _rejoin_loop(self) -> None:
        """Retry the seeds while this member has no peer (re-resolving DNS names)."""
        while True:
            await trio.sleep(REJOIN_INTERVAL)
            if self._core.membership.alive_count() <= 1 and self._seeds:
                addresses = await self._resolve()
                if addresses:
                    log.info("gossipreg: no peers left; rejoining through %d seed(s)", len(addresses))
                    self._core.join(addresses, self._driver.now())
                    self._driver.flush()

    async def _security_monitor(self) -> None:
        """Log, loudly and at most once a minute per cause, traffic a misconfiguration explains."""
        causes = {
            "plaintext_rejected": "plaintext datagrams from a member running insecure=True; "
            "configure the cluster keyring on every member",
            "sealed_received_while_insecure": "sealed datagrams while this member runs insecure=True; "
            "configure the cluster keyring here",
            "auth_failures": "datagrams no key of the keyring opens: a wrong key, a different "
            "cluster label, or a key rotation in progress",
            "decode_errors": "malformed messages that authenticated: a buggy or hostile key holder, "
            "or members running incompatible versions",
            "catalog_rejected_drift": "registrations refused because their clock stamp is more than "
            "max_clock_drift ahead: a member's wall clock is wrong",
        }
        seen = dict.fromkeys(causes, 0)
        while True:
            await trio.sleep(5.0)
            stats = self._core.statistics()
            for name, text in causes.items():
                count = stats.get(name, 0)
                if count > seen[name]:
                    log.warning("gossipreg: %d new %s", count - seen[name], text)
                    seen[name] = count
            await trio.sleep(55.0)


def _single(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups, else ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _pick_advertise(bind_host: str, port: int, advertise: str | tuple[str, int] | None) -> Address:
    if advertise is not None:
        host, aport = parse_address(advertise, default_port=port) if isinstance(advertise, str) else advertise
        return Address(host, aport or port)
    if bind_host not in ("0.0.0.0", "::", ""):
        return Address(bind_host, port)
    # Find the address the default route would use; connect() on UDP sends nothing.
    family = socket.AF_INET6 if bind_host == "::" else socket.AF_INET
    probe = "2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1"
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((probe, 9))
            host = s.getsockname()[0]
        except OSError:
            host = ""
    if not host or host.startswith("127.") or host == "::1":
        raise ConfigError(
            f"advertise: bound to {bind_host} and no routable address was found; "
            "pass advertise='HOST:PORT' with the address other members should use"
        )
    return Address(host, port)


def _make_keyring(keyring: Keyring | bytes | str | Iterable[str] | None) -> Keyring | None:
    if keyring is None or isinstance(keyring, Keyring):
        return keyring
    if isinstance(keyring, bytes):
        return Keyring(keyring)
    if isinstance(keyring, str):
        return Keyring.from_base64([k for k in keyring.split(",") if k.strip()])
    return Keyring.from_base64(list(keyring))


def _parse_seeds(seeds: str | Iterable[str | tuple[str, int]] | None) -> list[tuple[str, int]]:
    if isinstance(seeds, str):  # "h1:p1,h2:p2", as in GOSSIPREG_SEEDS
        seeds = [part for part in seeds.split(",") if part.strip()]
    out = []
    for s in seeds or ():
        if isinstance(s, str):
            try:
                out.append(parse_address(s, default_port=7946))
            except ValueError as exc:
                raise ConfigError(f"seeds: {exc}") from None
        else:
            host, port = s
            out.append((str(host), int(port)))
    return out


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
    transport: Transport | None = None,
    seed: int | None = None,
) -> AsyncIterator[AsyncRegistry]:
    """Start a gossip member, join the cluster, and yield its :class:`AsyncRegistry`.

    On exit the member leaves gracefully (the leave gets up to one second to
    go out) and closes its sockets.

    Args:
        bind: ``host:port`` to bind UDP and TCP on (``[v6]:port`` for IPv6);
            port 0 picks a free one.
        seeds: ``host:port`` of members to join through (a list, or one
            comma-separated string); DNS names are re-resolved on every retry.
            None or empty starts a new cluster.
        name: this member's unique name (default: hostname plus a random suffix).
        keyring: the cluster keyring (a :class:`Keyring`, raw key bytes, or
            base64 keys, the first primary); required unless ``insecure``.
        tls: mutual TLS for streams: :class:`TLSContexts`, :class:`TLSFiles`
            (CA, certificate and key paths) or a ``(server, client)`` pair of
            ``ssl.SSLContext``.
        insecure: run without encryption. An explicit opt-in, never a fallback.
        secure: go-micro's ``Secure`` option: ``True`` demands a keyring or TLS.
        advertise: the address other members reach this one at, if not the
            bind address (containers, NAT). Required when binding 0.0.0.0 and
            no routable address can be found.
        config: protocol parameters (default ``Config.lan()``).
        timeout: seconds to try the seeds before :class:`JoinError`.
        metadata: this member's metadata, visible in :meth:`AsyncRegistry.members`.
        transport: a ready transport instead of real sockets (tests).
        seed: seed of the member's random generator (default: random).

    Raises:
        ConfigError: invalid or contradictory options.
        JoinError: seeds were given and none answered within ``timeout``.
        OSError: the address cannot be bound.
    """
    config = config or Config.lan()
    ring = _make_keyring(keyring)
    tls_contexts = load_tls(tls)
    if secure and ring is None and tls_contexts is None:
        raise ConfigError("secure: set a keyring or tls (secure=True with neither)")
    if ring is None and not insecure:
        raise ConfigError(
            "keyring: a cluster keyring is required (gossipreg keygen makes a key); "
            "pass insecure=True to run without encryption"
        )
    if not math.isfinite(timeout) or timeout < 0:
        raise ConfigError(f"timeout: must be a non-negative number of seconds, not {timeout!r}")
    seed_list = _parse_seeds(seeds)
    meta = msgpack.packb(dict(metadata), use_bin_type=True) if metadata else b""
    if transport is None:
        try:
            host, port = parse_address(bind)
        except ValueError as exc:
            raise ConfigError(f"bind: {exc}") from None
        transport = await NetTransport.bind(host, port)
        bound_host = host
    else:
        bound_host = transport.local_address.host
    try:
        local = transport.local_address
        adv = _pick_advertise(bound_host, local.port, advertise)
        member_name = name or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        rng = random.Random(seed)
        core = NodeCore(
            member_name,
            adv,
            config=config,
            rng=rng,
            wall_clock=time.time,
            now=trio.current_time(),
            keyring=ring,
            insecure=ring is None,
            meta=meta,
        )
        limits = DriverLimits(
            max_frame=config.max_stream_frame, stream_timeout=config.stream_timeout
        )
        registry: AsyncRegistry
        driver = MemberDriver(core, transport, limits=limits, tls=tls_contexts,
                              on_event=lambda ev: registry._on_event(ev))
        registry = AsyncRegistry(core, driver, seed_list)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(driver.run)
                await registry._join(timeout)
                nursery.start_soon(registry._rejoin_loop)
                nursery.start_soon(registry._security_monitor)
                try:
                    yield registry
                finally:
                    registry._closed = True
                    with trio.CancelScope(shield=True):
                        # Send the leave ourselves: when the block is being cancelled, the
                        # driver's sender task is cancelled with it.
                        core.leave(driver.now())
                        with trio.move_on_after(LEAVE_TIMEOUT):
                            await driver.send_remaining()
                    for w in list(registry._watchers):
                        w.stop()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The nursery wraps what it propagates (a JoinError, or the caller's own
            # exception) in an exception group; callers expect the exception itself.
            inner = _single(group)
            if inner is group:
                raise
            raise inner from None
    finally:
        with trio.CancelScope(shield=True):
            await transport.aclose()
