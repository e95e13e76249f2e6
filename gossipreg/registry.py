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
import random
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NoReturn

import msgpack
import trio

from ._options import (
    RegistryOptions,
    check_member_name,
    check_options,
    check_watch,
    default_name,
    pick_advertise,
)
from ._results import ResultBuffer
from .core.catalog import CatalogEvent
from .core.config import Config
from .core.crypto import Keyring
from .core.errors import InvalidServiceError, NotFoundError, RegistryClosedError, WatcherStoppedError
from .core.membership import Member as _CoreMember
from .core.membership import MemberState
from .core.model import Service, check_ttl
from .core.node import NodeCore
from .runtime.driver import DriverLimits, TLSContexts
from .runtime.member import LEAVE_TIMEOUT, GossipMember
from .runtime.transport import NetTransport, Transport
from .tls import TLSFiles, load_identity, load_tls

__all__ = ["LEAVE_TIMEOUT", "AsyncRegistry", "Member", "Result", "Status", "Watcher", "open_registry"]

log = logging.getLogger("gossipreg")

#: Default bound of a watcher's buffer, in results.
WATCH_BUFFER = 1024
#: Probe intervals of hearing no member after which a member that has peers is ``isolated``.
ISOLATION_PROBES = 5


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


@dataclass(frozen=True, slots=True)
class Status:
    """Where this member stands in its cluster, for health and readiness checks.

    ``state`` is one of:

    * ``"joined"``: other members are alive and this one hears from them;
    * ``"alone"``: no other member is alive here (a new cluster; seeds that
      have not answered yet, with ``retry_join``; or every peer left);
    * ``"isolated"``: no datagram from any other member has arrived for
      ``ISOLATION_PROBES`` (5) probe intervals while members are listed alive,
      or after the last of them was declared dead (not left): this member's
      network is down or cut off, and its view is going stale.
    """

    state: Literal["joined", "alone", "isolated"]
    #: Other members alive or suspect in this member's view.
    members: int
    #: Seeds to wait for: the seed addresses other than this member's own at the
    #: last resolution (the configured seeds until one resolves). A seed list that
    #: names only this member (the headless Service of a single pod) counts 0.
    seeds: int
    #: Seconds since an authenticated datagram from another member last arrived
    #: (since the member started, if none has).
    silent_for: float
    #: Lifeguard local-health score: 0 is healthy; higher means this member's
    #: own probes have been failing (its probes slow down accordingly).
    awareness: int

    @property
    def ready(self) -> bool:
        """Whether this member's view is fit to serve: joined, or alone without seeds
        to wait for (a cluster of one). Alone with seeds, or isolated, is not."""
        return self.state == "joined" or (self.state == "alone" and self.seeds == 0)


def _status(core: NodeCore, seeds: int, now: float) -> Status:
    awareness = core.membership.awareness.score
    others = core.membership.alive_count() - 1
    silent = max(0.0, now - core.last_heard)
    interval, _ = core.config.scaled_probe(awareness)
    # Peers lost to failure detection (not to a leave) while hearing nothing: cut off, not alone.
    failed = others <= 0 and any(m.state is MemberState.DEAD for m in core.members())
    state: Literal["joined", "alone", "isolated"]
    if silent > ISOLATION_PROBES * interval and (others > 0 or failed):
        state = "isolated"
    elif others <= 0:
        state = "alone"
    else:
        state = "joined"
    return Status(state, max(others, 0), seeds, silent, awareness)


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
        self._results = ResultBuffer(buffer)
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
        if self._results.push(result):
            self._wakeup.set()

    async def next(self) -> Result:
        """The next result, waiting for one.

        Raises:
            WatchOverflowError: results were lost to overflow; re-list and watch again.
            WatcherStoppedError: the watcher was stopped or the registry closed.
        """
        while True:
            if self._results.ready():
                await trio.lowlevel.checkpoint()
                result = self._results.take()  # another reader may have taken it meanwhile
                if result is not None:
                    return result
                continue
            if self._wakeup.is_set():  # shared by every waiting reader: none misses a wakeup
                self._wakeup = trio.Event()
            await self._wakeup.wait()

    def next_nowait(self) -> Result | None:
        """The next buffered result, or ``None`` if there is none yet (same errors as :meth:`next`)."""
        return self._results.take()

    def stop(self) -> None:
        """Stop watching; buffered results can still be read, then :meth:`next` raises."""
        self._results.stop()
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
    that for other programs). It satisfies :class:`gossipreg.RegistryProtocol`.

    Once the ``open_registry`` block has exited, the registry is closed: every
    method that needs the member (:meth:`register`, :meth:`deregister`,
    :meth:`get_service`, :meth:`list_services`, :meth:`watch`,
    :meth:`keep_alive`, :meth:`members`, :meth:`statistics`) raises
    :class:`~gossipreg.RegistryClosedError`; :attr:`name`, :attr:`address` and
    :attr:`keyring` stay readable. Watchers open at the close are stopped: their
    buffered results can still be read, then they raise
    :class:`~gossipreg.WatcherStoppedError` (go-micro's ``ErrWatcherStopped``).
    """

    def __init__(self, member: GossipMember) -> None:
        self._member = member
        self._core = member.core
        self._driver = member.driver
        self._watchers: set[Watcher] = set()
        self._closed = False
        member.on_catalog = self._offer

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
            InvalidServiceError: ``service`` is not a :class:`Service` or has no
                nodes, or ``ttl`` is not ``None`` nor a number of seconds from
                ``MIN_TTL`` (0.001) to ``MAX_TTL`` (4,294,967) and at most the
                configuration's ``tombstone_ttl - convergence_bound`` (3300 s by default).
            RegistrationLimitError: this member would own more than
                ``Config.max_records_per_owner`` registrations.
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
        ttl = check_ttl(ttl)
        self._core.register(service, ttl, self._driver.now())
        self._driver.flush()
        await trio.lowlevel.checkpoint()

    async def deregister(self, service: Service) -> None:
        """Remove this member's registrations of ``service`` (its listed nodes, or all
        of that name and version if it lists none).

        Raises:
            InvalidServiceError: ``service`` is not a :class:`Service`.
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
        self._core.deregister(service, self._driver.now())
        self._driver.flush()
        await trio.lowlevel.checkpoint()

    def get_service(self, name: str) -> list[Service]:
        """One :class:`Service` per version of ``name`` with its live nodes (local read).

        Raises:
            NotFoundError: no live node of that service is known.
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
        return self._core.get_service(name)

    def list_services(self) -> list[Service]:
        """One :class:`Service` per (name, version), without nodes (local read).

        Raises:
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
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
            buffer: results held before the watcher overflows; an int of at least 1.

        Raises:
            InvalidServiceError: ``service`` is not a str or ``None``.
            ConfigError: ``snapshot`` is not a bool, or ``buffer`` not an int of at least 1.
            RegistryClosedError: the registry is closed (a watcher open when the
                registry closes stops instead: its :meth:`Watcher.next` raises
                :class:`~gossipreg.WatcherStoppedError`).
        """
        self._check_open()
        check_watch(service, snapshot, buffer)
        return Watcher(self, service, snapshot, buffer)

    # ------------------------------------------------------------ beyond go-micro

    async def keep_alive(self, service: Service, ttl: float) -> NoReturn:
        """Register ``service`` with ``ttl`` now and again every ``ttl / 3`` until cancelled.

        Run it in a nursery; cancel it to stop. The registration then expires
        ``ttl`` after the last renewal unless deregistered. If the registry
        closes first, the next renewal raises :class:`~gossipreg.RegistryClosedError`
        (run it in a nursery inside the ``open_registry`` block to avoid that).

        Raises:
            InvalidServiceError: as :meth:`register`; ``ttl`` must not be ``None``.
            RegistrationLimitError: as :meth:`register`.
            RegistryClosedError: the registry is closed (at once, or at a renewal).
        """
        self._check_open()
        checked = check_ttl(ttl)
        if checked is None:
            raise InvalidServiceError("ttl: keep_alive renews a lease and needs a ttl in seconds, not None")
        ttl = checked
        while True:
            await self.register(service, ttl)
            await trio.sleep(ttl / 3)

    def members(self) -> list[Member]:
        """Every member this one knows, itself included, sorted by name.

        Raises:
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
        return [_member(m) for m in self._core.members()]

    def status(self) -> Status:
        """Where this member stands: joined, alone or isolated (see :class:`Status`);
        ``status().ready`` is the readiness to report to a platform.

        Raises:
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
        member = self._member
        seeds = len(member.shown_seeds()) if member.seed_peers is None else member.seed_peers
        return _status(self._core, seeds, self._driver.now())

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
        """Counters: packets, bytes, decode and authentication failures, suspicions, ...

        Raises:
            RegistryClosedError: the registry is closed.
        """
        self._check_open()
        out = self._core.statistics()
        for k, v in self._driver.counters.items():
            out[f"driver_{k}"] = v
        return out

    # ------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosedError(
                f"the registry of member {self._core.name} is closed (its open_registry block has exited)"
            )

    def _offer(self, ev: CatalogEvent) -> None:
        for w in list(self._watchers):
            w._offer(ev)

    def _close(self) -> None:
        """Mark the registry closed (the member is about to leave)."""
        self._closed = True

    def _stop_watchers(self) -> None:
        for w in list(self._watchers):
            w.stop()


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
    limits: DriverLimits | None = None,
    identity: TLSFiles | None = None,
    retry_join: bool = False,
    metrics_port: int | None = None,
) -> AsyncIterator[AsyncRegistry]:
    """Start a gossip member, join the cluster, and yield its :class:`AsyncRegistry`.

    On exit the member leaves gracefully (the leave gets up to one second to
    go out) and closes its sockets.

    Args:
        bind: ``host:port`` to bind UDP and TCP on (``[v6]:port`` for IPv6);
            port 0 picks a free one.
        seeds: ``host:port`` of members to join through (a list, or one
            comma-separated string); DNS names are re-resolved on every retry.
            ``srv:NAME`` stands for the targets of DNS SRV record ``NAME``,
            looked up on every retry (the ``dns`` extra).
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
        limits: the driver's resource limits (:class:`~gossipreg.runtime.driver.DriverLimits`:
            inbound streams at once, unauthenticated streams per source, the
            authentication deadline, the datagram send queue). Default: the
            defaults, with ``stream_timeout`` from ``config`` and ``auth_timeout``
            at most that.
        identity: member identities (opt-in; every member of the cluster must
            use them): the cluster CA certificate and this member's certificate
            and key (:class:`TLSFiles`, typically the files given to ``tls``;
            ``gossipreg tls ca`` / ``gossipreg tls cert`` make them). This member
            signs its registrations, deregistrations, alives and leave, and
            accepts such statements only signed by the member they are about, so
            a holder of the cluster key alone cannot add, hide, move or delete
            another member's registrations. ``name`` defaults to the
            certificate's common name and must equal it.
        retry_join: start at once instead of waiting for a seed to answer:
            the member serves alone (its own registrations, an empty view
            otherwise) while it keeps resolving and trying the seeds with
            backoff (at most 2 s apart), and joins as soon as one answers;
            failed rounds are logged. For platforms that start every member at
            once (a Kubernetes Deployment joining its own headless Service).
        metrics_port: serve this member's Prometheus metrics over HTTP on this
            port of the bind host (``GET /metrics``), for as long as the
            registry is open; needs the ``metrics`` extra (``prometheus_client``).
            Or add :class:`gossipreg.metrics.RegistryCollector` to the program's
            own metrics registry instead.

    Raises:
        ConfigError: invalid or contradictory options (raised before anything
            is bound or started): the message names the option, shows the
            value and states the rule. Among them: ``name`` empty, over 256
            characters or holding a control character; ``seeds``, ``bind`` or
            ``advertise`` not ``'host:port'`` nor a ``(host, port)`` pair;
            ``keyring`` of a wrong type; ``metadata`` over 512 bytes packed.
        JoinError: seeds were given and none answered within ``timeout``
            (never with ``retry_join``).
        OSError: the address cannot be bound.
    """
    opts = check_options(
        bind, seeds, name=name, keyring=keyring, tls=tls, insecure=insecure, secure=secure,
        advertise=advertise, config=config, timeout=timeout, metadata=metadata, seed=seed,
        limits=limits, identity=identity, retry_join=retry_join, metrics_port=metrics_port,
    )
    async with open_checked(opts, transport=transport) as registry:
        yield registry


@contextlib.asynccontextmanager
async def open_checked(
    opts: RegistryOptions, *, transport: Transport | None = None
) -> AsyncIterator[AsyncRegistry]:
    """:func:`open_registry` with options already checked (by :func:`gossipreg._options.check_options`).

    Reads the TLS and identity files, binds ``opts.bind`` (unless given a
    ``transport``), builds the member's core and runs it as a
    :class:`~gossipreg.runtime.member.GossipMember` for the block.
    """
    config = opts.config
    identities = load_identity(opts.identity, opts.name, config.label_bytes)
    name = opts.name
    if identities is not None and name is None:
        name = check_member_name(identities[0].name)  # the certificate's, under the same rule
    tls_contexts = load_tls(opts.tls)
    if transport is None:
        host, port = opts.bind
        transport = await NetTransport.bind(host, port)
        bound_host = host
    else:
        bound_host = transport.local_address.host
    try:
        adv = pick_advertise(bound_host, transport.local_address.port, opts.advertise)
        core = NodeCore(
            name or default_name(),
            adv,
            config=config,
            rng=random.Random(opts.seed),
            wall_clock=time.time,
            now=trio.current_time(),
            keyring=opts.keyring,
            insecure=opts.keyring is None,
            meta=opts.meta,
            identity=identities[0] if identities else None,
            trust=identities[1] if identities else None,
        )
        member = GossipMember(
            core, transport, seeds=opts.seeds, srv_seeds=opts.srv_seeds, limits=opts.limits, tls=tls_contexts
        )
        registry = AsyncRegistry(member)
        try:
            async with member.running(opts.timeout, retry_join=opts.retry_join):
                server = None
                if opts.metrics_port is not None:
                    from . import metrics  # the metrics extra, checked by check_options

                    server = metrics.serve_metrics(registry, opts.metrics_port, opts.bind[0])
                    log.info("gossipreg: serving metrics on %s:%d", opts.bind[0], server.port)
                try:
                    yield registry
                finally:
                    registry._close()
                    if server is not None:
                        with trio.CancelScope(shield=True):
                            await server.aclose()
        finally:
            registry._stop_watchers()
    finally:
        with trio.CancelScope(shield=True):
            await transport.aclose()
