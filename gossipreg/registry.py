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
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NoReturn

import msgpack
import trio

from ._groups import single_exception
from ._results import ResultBuffer
from .core.catalog import CatalogEvent
from .core.codec import MAX_META
from .core.config import Config
from .core.crypto import Keyring
from .core.errors import (
    ConfigError,
    InvalidServiceError,
    JoinError,
    NotFoundError,
    RegistryClosedError,
    WatcherStoppedError,
)
from .core.membership import Address, MemberEvent
from .core.membership import Member as _CoreMember
from .core.model import MAX_NAME_LENGTH, Service, check_ttl, name_problem, shown
from .core.node import JoinResult, NodeCore, NodeEvent, RegistrationConflict, TrafficRefused
from .runtime.driver import DriverLimits, MemberDriver, TLSContexts
from .runtime.transport import NetTransport, Transport, parse_address
from .tls import TLSFiles, load_identity, load_tls

__all__ = ["AsyncRegistry", "Member", "Result", "Watcher", "open_registry"]

log = logging.getLogger("gossipreg")

#: Seconds between re-joins through the seeds while a member has no peer at all
#: (go-micro issue #414: a member must never stay alone after its seeds restart).
REJOIN_INTERVAL = 10.0
#: Seconds a clean shutdown waits for its leave message to go out.
LEAVE_TIMEOUT = 1.0
#: Default bound of a watcher's buffer, in results.
WATCH_BUFFER = 1024
#: Port of a seed given without one.
DEFAULT_PORT = 7946
#: Longest host of a member's address, in characters (the wire's limit, ``codec``).
MAX_HOST_LENGTH = 255


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
        _check_watch(service, snapshot, buffer)
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
        elif isinstance(ev, TrafficRefused):
            log.warning("gossipreg: %d %s (latest from %s; next warning of this kind in a minute at the "
                        "soonest, the %s counter counts them all)", ev.count,
                        _REFUSED.get(ev.cause, ev.cause), _shown_address(ev.address), ev.cause)

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


#: What each cause of a TrafficRefused event most likely means, for the warning.
_REFUSED = {
    "plaintext_rejected": "plaintext datagram(s) or stream(s) from a member running insecure=True; "
    "configure the cluster keyring on every member",
    "sealed_received_while_insecure": "sealed datagram(s) while this member runs insecure=True; "
    "configure the cluster keyring here",
    "auth_failures": "datagram(s) or stream frame(s) no key of the keyring opens: a wrong key, a "
    "different cluster label, a key rotation in progress, or someone probing the port",
    "decode_errors": "malformed message(s) that authenticated: a buggy or hostile key holder, "
    "or members running incompatible versions",
    "records_rejected_drift": "registration(s) refused because their clock stamp is more than "
    "max_clock_drift ahead: a member's wall clock is wrong",
    "identity_unsigned": "unsigned statement(s) refused (member identities are on here): a member "
    "running without identity=, or a key holder forging",
    "identity_bad_signature": "statement(s) refused whose signature is not their member's: a key "
    "holder forging, or a member signing with another member's name",
    "identity_bad_certificate": "certificate(s) refused: not of this cluster's CA, expired, or not "
    "for the member name they came with",
}


def _shown_address(address: Address) -> str:
    return f"[{address.host}]:{address.port}" if ":" in address.host else f"{address.host}:{address.port}"




def _pick_advertise(bind_host: str, port: int, advertise: tuple[str, int] | None) -> Address:
    """The advertised address: ``advertise`` (checked by :func:`_check_address`; port 0 is
    the bound one), else the bind address, else the address of the default route."""
    if advertise is not None:
        host, aport = advertise
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


def _make_keyring(keyring: object) -> Keyring | None:
    """The keyring option as a :class:`Keyring` (``None`` stays ``None``).

    Raises:
        ConfigError: not a Keyring, key bytes, a str of comma-separated base64
            keys or a list of base64 str, or a key is invalid. The message names
            the type, never the key material.
    """
    if keyring is None or isinstance(keyring, Keyring):
        return keyring
    try:
        if isinstance(keyring, bytes | bytearray | memoryview):
            return Keyring(bytes(keyring))
        if isinstance(keyring, str):
            return Keyring.from_base64([k for k in keyring.split(",") if k.strip()])
        if isinstance(keyring, Iterable) and not isinstance(keyring, Mapping):
            return Keyring.from_base64(list(keyring))
    except ConfigError as exc:
        raise ConfigError(f"keyring: {exc}") from None
    raise ConfigError(
        "keyring: must be a Keyring, raw key bytes, or base64 keys (a comma-separated str "
        f"or a list of str), not {type(keyring).__name__}"
    )


def _described(value: object) -> str:
    """``"TYPE REPR"`` for an error message, the repr cut short if long."""
    return f"{type(value).__name__} {shown(value)}"


def _check_address(what: str, value: object, *, default_port: int | None, min_port: int) -> tuple[str, int]:
    """``(host, port)`` from ``'host:port'``, ``'[v6]:port'`` (``'host'`` with a
    ``default_port``) or a ``(host, port)`` pair.

    The host follows the rule of names (non-empty, at most ``MAX_HOST_LENGTH``
    characters, no control character), the port is an int from ``min_port``
    to 65535.

    Raises:
        ConfigError: the message starts with ``what``, shows the value and states the rule.
    """
    form = "'host:port'" if default_port is None else "'host[:port]'"
    if isinstance(value, str):
        if len(value) > MAX_HOST_LENGTH + 8:  # '[' host ']:' port
            raise ConfigError(f"{what}: {shown(value)} is {len(value)} characters, too long for an address")
        try:
            host, port = parse_address(value, default_port=default_port)
        except ValueError as exc:
            raise ConfigError(f"{what}: {exc}") from None
    elif isinstance(value, tuple | list) and len(value) == 2:
        host, port = value
    else:
        raise ConfigError(f"{what}: must be {form} or a (host, port) pair, not {_described(value)}")
    problem = name_problem(host, limit=MAX_HOST_LENGTH)
    if problem is not None:
        raise ConfigError(f"{what}: {shown(value)}: the host {problem}")
    if isinstance(port, bool) or not isinstance(port, int) or not min_port <= port <= 65535:
        raise ConfigError(
            f"{what}: {shown(value)}: the port must be an int from {min_port} to 65535, "
            f"not {_described(port)}"
        )
    return host, port


def _parse_seeds(seeds: object) -> list[tuple[str, int]]:
    """The seeds option as ``(host, port)`` pairs (port 7946 when a str gives none).

    Raises:
        ConfigError: not a str or a list, or a seed is not ``'host[:port]'`` nor a
            ``(host, port)`` pair with a port from 1 to 65535; the message shows it.
    """
    if seeds is None:
        return []
    if isinstance(seeds, str):  # "h1:p1,h2:p2", as in GOSSIPREG_SEEDS
        seeds = [part for part in seeds.split(",") if part.strip()]
    elif isinstance(seeds, bytes | bytearray | memoryview | Mapping) or not isinstance(seeds, Iterable):
        raise ConfigError(
            "seeds: must be a list of 'host[:port]' or (host, port), or one comma-separated str; "
            f"not {type(seeds).__name__} {shown(seeds)}"
        )
    return [
        _check_address(f"seeds[{i}]", s, default_port=DEFAULT_PORT, min_port=1) for i, s in enumerate(seeds)
    ]


def _check_member_name(name: object) -> str | None:
    """The name option: ``None`` (a generated name) or a name the wire carries.

    Raises:
        ConfigError: empty, over ``MAX_NAME_LENGTH`` characters, not valid Unicode,
            or holding a control character; the message shows it.
    """
    if name is None:
        return None
    problem = name_problem(name, limit=MAX_NAME_LENGTH)
    if problem is not None:
        raise ConfigError(f"name: {problem}")
    assert isinstance(name, str)
    return name


def _default_name() -> str:
    """``hostname-xxxxxxxx``, within the limit of a member's name."""
    host = "".join(c for c in socket.gethostname() if name_problem(c) is None) or "member"
    return f"{host[: MAX_NAME_LENGTH - 9]}-{uuid.uuid4().hex[:8]}"


def _check_timeout(timeout: object) -> float:
    if not isinstance(timeout, bool) and isinstance(timeout, int | float):
        try:
            seconds = float(timeout)
        except OverflowError:
            seconds = math.inf
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    raise ConfigError(
        f"timeout: must be a finite, non-negative number of seconds, not {_described(timeout)}"
    )


def _pack_metadata(metadata: object) -> bytes:
    """This member's metadata, packed as it travels (at most ``codec.MAX_META`` bytes).

    Raises:
        ConfigError: not a mapping of str to str, a key that is not a valid name
            (control characters), a value that is not valid Unicode, or too big.
    """
    if metadata is None:
        return b""
    if not isinstance(metadata, Mapping):
        raise ConfigError(
            f"metadata: must be a mapping of str to str, not {type(metadata).__name__} {shown(metadata)}"
        )
    chars = 0
    for key, value in metadata.items():
        problem = name_problem(key, limit=MAX_META, empty_ok=True)
        if problem is not None:
            raise ConfigError(f"metadata: a key {problem}")
        if not isinstance(value, str):
            raise ConfigError(f"metadata[{shown(key)}]: must be a str, not {_described(value)}")
        chars += len(key) + len(value)
        if chars > MAX_META:  # a str of n characters packs to at least n bytes
            break
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"metadata[{shown(key)}]: {shown(value)} is not valid Unicode") from None
    packed = msgpack.packb(dict(metadata), use_bin_type=True) if chars <= MAX_META and metadata else b""
    if chars > MAX_META or len(packed) > MAX_META:
        raise ConfigError(
            f"metadata: {shown(metadata)} is over the limit of {MAX_META} bytes (packed), "
            "the most a member's record carries"
        )
    return packed


def _check_bool(what: str, value: object, *, none_ok: bool = False) -> None:
    if not (isinstance(value, bool) or (none_ok and value is None)):
        raise ConfigError(f"{what}: must be True or False, not {type(value).__name__} {shown(value)}")


def _check_watch(service: object, snapshot: object, buffer: object) -> None:
    """Check the arguments of a watch.

    Raises:
        InvalidServiceError: ``service`` is not a str or ``None``.
        ConfigError: ``snapshot`` is not a bool, or ``buffer`` not an int of at least 1.
    """
    if service is not None and not isinstance(service, str):
        raise InvalidServiceError(
            f"service: must be a service name (str) or None, not {type(service).__name__} {shown(service)}"
        )
    _check_bool("snapshot", snapshot)
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise ConfigError(
            f"buffer: must be an int of at least 1 (the results a watcher holds), "
            f"not {type(buffer).__name__} {shown(buffer)}"
        )


@dataclass(frozen=True, slots=True)
class _Options:
    """The options of :func:`open_registry`, checked; nothing is bound or started."""

    config: Config
    keyring: Keyring | None
    seeds: list[tuple[str, int]]
    bind: tuple[str, int]
    advertise: tuple[str, int] | None
    name: str | None
    timeout: float
    meta: bytes


def _check_options(
    bind: object,
    seeds: object,
    *,
    name: object,
    keyring: object,
    tls: object,
    insecure: object,
    secure: object,
    advertise: object,
    config: object,
    timeout: object,
    metadata: object,
) -> _Options:
    """Check every option of :func:`open_registry` that needs no IO (all but reading TLS files).

    Raises:
        ConfigError: an option is invalid or options contradict each other; the
            message names the option, shows the value (never key material) and
            states the rule.
    """
    if config is None:
        config = Config.lan()
    elif not isinstance(config, Config):
        raise ConfigError(f"config: must be a Config, not {type(config).__name__}")
    _check_bool("insecure", insecure)
    _check_bool("secure", secure, none_ok=True)
    ring = _make_keyring(keyring)
    if secure and ring is None and tls is None:
        raise ConfigError("secure: set a keyring or tls (secure=True with neither)")
    if ring is None and not insecure:
        raise ConfigError(
            "keyring: a cluster keyring is required (gossipreg keygen makes a key); "
            "pass insecure=True to run without encryption"
        )
    if not isinstance(bind, str):
        raise ConfigError(f"bind: must be a 'host:port' str, not {type(bind).__name__} {shown(bind)}")
    return _Options(
        config=config,
        keyring=ring,
        seeds=_parse_seeds(seeds),
        bind=_check_address("bind", bind, default_port=None, min_port=0),
        advertise=None
        if advertise is None
        else _check_address("advertise", advertise, default_port=0, min_port=0),
        name=_check_member_name(name),
        timeout=_check_timeout(timeout),
        meta=_pack_metadata(metadata),
    )


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

    Raises:
        ConfigError: invalid or contradictory options (raised before anything
            is bound or started): the message names the option, shows the
            value and states the rule. Among them: ``name`` empty, over 256
            characters or holding a control character; ``seeds``, ``bind`` or
            ``advertise`` not ``'host:port'`` nor a ``(host, port)`` pair;
            ``keyring`` of a wrong type; ``metadata`` over 512 bytes packed.
        JoinError: seeds were given and none answered within ``timeout``.
        OSError: the address cannot be bound.
    """
    if limits is not None and not isinstance(limits, DriverLimits):
        raise ConfigError(f"limits: must be a DriverLimits, not {type(limits).__name__}")
    opts = _check_options(
        bind,
        seeds,
        name=name,
        keyring=keyring,
        tls=tls,
        insecure=insecure,
        secure=secure,
        advertise=advertise,
        config=config,
        timeout=timeout,
        metadata=metadata,
    )
    config, ring, seed_list, meta, timeout = opts.config, opts.keyring, opts.seeds, opts.meta, opts.timeout
    identities = load_identity(identity, name, config.label_bytes)
    if identities is not None and name is None:
        name = _check_member_name(identities[0].name)  # the certificate's, under the same rule
    tls_contexts = load_tls(tls)
    if transport is None:
        host, port = opts.bind
        transport = await NetTransport.bind(host, port)
        bound_host = host
    else:
        bound_host = transport.local_address.host
    try:
        local = transport.local_address
        adv = _pick_advertise(bound_host, local.port, opts.advertise)
        member_name = opts.name or name or _default_name()
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
            identity=identities[0] if identities else None,
            trust=identities[1] if identities else None,
        )
        if limits is None:
            limits = DriverLimits(
                stream_timeout=config.stream_timeout, auth_timeout=min(2.0, config.stream_timeout)
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
            inner = single_exception(group)
            if inner is group:
                raise
            raise inner from None
    finally:
        with trio.CancelScope(shield=True):
            await transport.aclose()
