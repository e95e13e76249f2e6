"""The default registry, like go-micro's ``DefaultRegistry``, configured from the environment.

``gossipreg.register``, ``deregister``, ``get_service``, ``list_services`` and
``watch`` act on :func:`default_registry`, a sync :class:`~gossipreg.Registry`
created on first use (once, thread-safely) from these variables:

============================ ====================================================
``GOSSIPREG_BIND``           ``host:port`` to bind (default ``127.0.0.1:7946``)
``GOSSIPREG_ADVERTISE``      ``host[:port]`` other members reach this one at
``GOSSIPREG_SEEDS``          comma-separated ``host[:port]`` (or ``srv:NAME``) of
                             members to join
``GOSSIPREG_NAME``           this member's unique name (at most 256 characters,
                             no control characters)
``GOSSIPREG_KEYRING``        comma-separated base64 keys, the first primary
``GOSSIPREG_KEYRING_FILE``   a file of base64 keys, one a line, the first primary
``GOSSIPREG_TLS_CA``         cluster CA certificate (PEM); with the next two
``GOSSIPREG_TLS_CERT``       this member's certificate (PEM)
``GOSSIPREG_TLS_KEY``        this member's private key (PEM)
``GOSSIPREG_INSECURE``       ``1``/``true``/``yes`` to run without encryption
``GOSSIPREG_RETRY_JOIN``     ``1``/``true``/``yes``: start at once and keep trying
                             the seeds until one answers (``retry_join=True``)
``GOSSIPREG_HANDLE_SIGNALS`` ``0``/``false``/``no``: do not leave on SIGTERM
                             (default on: ``handle_signals=True``)
``GOSSIPREG_METRICS_PORT``   serve Prometheus metrics on this port of the bind
                             host (``metrics_port``; the ``metrics`` extra)
============================ ====================================================

Set one of ``GOSSIPREG_KEYRING`` and ``GOSSIPREG_KEYRING_FILE``, or
``GOSSIPREG_INSECURE=1``. The TLS variables go together: all three or none.
An invalid value raises :class:`~gossipreg.ConfigError` naming the variable,
showing the value and stating the rule, before any thread starts or socket is
bound. The module functions check their own arguments (a ``ttl``, a watch's
``buffer``) before they create the default registry.
The default registry leaves the cluster at interpreter exit; a child process
made by ``os.fork`` starts its own on first use.

These functions block their thread, as :class:`~gossipreg.Registry` does:
called inside a trio program they raise :class:`~gossipreg.BlockingCallError`
(use :func:`~gossipreg.open_registry` there).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ._options import check_address, check_seed, check_watch
from .core.crypto import Keyring
from .core.errors import ConfigError
from .core.model import Service, check_ttl, name_problem
from .registry import WATCH_BUFFER
from .runtime.driver import TLSContexts
from .sync import Registry, SyncWatcher, _refuse_trio_thread
from .tls import TLSFiles, load_tls

__all__ = [
    "DEFAULT_BIND",
    "close_default_registry",
    "default_registry",
    "deregister",
    "get_service",
    "list_services",
    "load_keyring_file",
    "register",
    "registry_from_env",
    "watch",
]

#: Bind address of the default registry when ``GOSSIPREG_BIND`` is not set.
DEFAULT_BIND = "127.0.0.1:7946"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})

_lock = threading.Lock()
_default: Registry | None = None


@dataclass(frozen=True, slots=True)
class _Options:
    bind: str
    advertise: str | None
    seeds: list[str]
    name: str | None
    keyring: Keyring | None
    tls: TLSContexts | None
    insecure: bool
    retry_join: bool
    handle_signals: bool
    metrics_port: int | None


def load_keyring_file(path: str | os.PathLike[str]) -> Keyring:
    """Read a keyring file: one base64 key a line, the first the primary.

    Blank lines and ``#`` comments (whole lines or after a key) are ignored.

    Args:
        path: the file to read.

    Raises:
        ConfigError: the file cannot be read, holds no key, or a key is invalid;
            the message gives the path and line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"keyring file {os.fspath(path)!r}: cannot be read: {exc}") from None
    keys: list[str] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        key = line.split("#", 1)[0].strip()  # '#' is not in the base64 alphabet
        if key:
            keys.append(key)
            lines.append(number)
    if not keys:
        raise ConfigError(f"keyring file {os.fspath(path)!r}: holds no key")
    for key, number in zip(keys, lines, strict=True):
        try:
            Keyring.from_base64([key])
        except ConfigError as exc:
            reason = str(exc).split(": ", 1)[-1]
            raise ConfigError(f"keyring file {os.fspath(path)!r}, line {number}: {reason}") from None
    return Keyring.from_base64(keys)


def _options(env: Mapping[str, str]) -> _Options:
    def get(var: str) -> str | None:
        value = env.get(var, "").strip()
        return value or None

    bind = get("GOSSIPREG_BIND") or DEFAULT_BIND
    check_address("GOSSIPREG_BIND", bind, default_port=None, min_port=0)

    advertise = get("GOSSIPREG_ADVERTISE")
    if advertise is not None:
        check_address("GOSSIPREG_ADVERTISE", advertise, default_port=0, min_port=0)

    seeds = [s.strip() for s in (get("GOSSIPREG_SEEDS") or "").split(",") if s.strip()]
    for s in seeds:
        check_seed("GOSSIPREG_SEEDS", s)

    name = get("GOSSIPREG_NAME")
    if name is not None:
        problem = name_problem(name)
        if problem is not None:
            raise ConfigError(f"GOSSIPREG_NAME: {problem} (a member's name travels in every message)")

    insecure = _flag(get, "GOSSIPREG_INSECURE")
    retry_join = _flag(get, "GOSSIPREG_RETRY_JOIN")
    handle_signals = _flag(get, "GOSSIPREG_HANDLE_SIGNALS", default=True)
    metrics_text = get("GOSSIPREG_METRICS_PORT")
    metrics_port: int | None = None
    if metrics_text is not None:
        if not metrics_text.isdigit() or int(metrics_text) > 65535:
            raise ConfigError(f"GOSSIPREG_METRICS_PORT: expected a port (0 to 65535), not {metrics_text!r}")
        metrics_port = int(metrics_text)

    ring_text, ring_file = get("GOSSIPREG_KEYRING"), get("GOSSIPREG_KEYRING_FILE")
    keyring: Keyring | None = None
    if ring_text is not None and ring_file is not None:
        raise ConfigError("GOSSIPREG_KEYRING: set it or GOSSIPREG_KEYRING_FILE, not both")
    if ring_text is not None:
        try:
            keyring = Keyring.from_base64([k for k in ring_text.split(",") if k.strip()])
        except ConfigError as exc:
            raise ConfigError(f"GOSSIPREG_KEYRING: {exc}") from None
    elif ring_file is not None:
        try:
            keyring = load_keyring_file(ring_file)
        except ConfigError as exc:
            raise ConfigError(f"GOSSIPREG_KEYRING_FILE: {exc}") from None
    elif not insecure:
        raise ConfigError(
            "GOSSIPREG_KEYRING: a cluster keyring is required; set GOSSIPREG_KEYRING or "
            "GOSSIPREG_KEYRING_FILE, or GOSSIPREG_INSECURE=1 to run without encryption"
        )

    tls_vars = ("GOSSIPREG_TLS_CA", "GOSSIPREG_TLS_CERT", "GOSSIPREG_TLS_KEY")
    tls_paths = [get(var) for var in tls_vars]
    tls: TLSContexts | None = None
    if any(p is not None for p in tls_paths):
        missing = [var for var, p in zip(tls_vars, tls_paths, strict=True) if p is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: the TLS variables go together; set all three or none")
        ca, cert, key = (p for p in tls_paths if p is not None)
        try:
            tls = load_tls(TLSFiles(ca, cert, key))
        except ConfigError as exc:
            raise ConfigError(f"GOSSIPREG_TLS_CA/CERT/KEY: {exc}") from None

    return _Options(
        bind, advertise, seeds, name, keyring, tls, insecure, retry_join, handle_signals, metrics_port
    )


def _flag(get: Callable[[str], str | None], var: str, *, default: bool = False) -> bool:
    """A boolean variable: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``;
    unset is ``default``."""
    text = get(var)
    if text is None:
        return default
    text = text.lower()
    if text not in _TRUE | _FALSE:
        raise ConfigError(f"{var}: expected 1/true/yes or 0/false/no, not {text!r}")
    return text in _TRUE


def registry_from_env(env: Mapping[str, str] | None = None, *, timeout: float = 10.0) -> Registry:
    """A new :class:`~gossipreg.Registry` configured from ``GOSSIPREG_*`` variables.

    Args:
        env: the variables (default ``os.environ``).
        timeout: seconds to try the seeds before :class:`~gossipreg.JoinError`.

    Raises:
        ConfigError: a variable is invalid (the message names it), or the
            variables together are not a valid configuration.
        JoinError: seeds were given and none answered within ``timeout``.
        OSError: the bind address cannot be bound.
        BlockingCallError: called inside a trio program.
    """
    _refuse_trio_thread("gossipreg.default.registry_from_env()")
    o = _options(os.environ if env is None else env)
    return Registry(
        o.bind,
        o.seeds,
        name=o.name,
        keyring=o.keyring,
        tls=o.tls,
        insecure=o.insecure,
        advertise=o.advertise,
        timeout=timeout,
        retry_join=o.retry_join,
        handle_signals=o.handle_signals,
        metrics_port=o.metrics_port,
    )


def default_registry() -> Registry:
    """The process-wide default registry, created from the environment on first use.

    Creation happens once, under a lock; a failed creation is retried on the
    next call. See the module documentation for the variables.

    Raises:
        ConfigError: a ``GOSSIPREG_*`` variable is invalid; the message names it.
        JoinError: ``GOSSIPREG_SEEDS`` were given and none answered.
        OSError: ``GOSSIPREG_BIND`` cannot be bound.
        BlockingCallError: called inside a trio program.
    """
    global _default
    _refuse_trio_thread("gossipreg.default_registry()")
    registry = _default
    if registry is not None and not registry.closed:
        return registry
    with _lock:
        if _default is None or _default.closed:
            _default = registry_from_env()
        return _default


def close_default_registry() -> None:
    """Close the default registry, if one was created; the next use creates a new one.

    Registered with :mod:`atexit`, so the default registry leaves the cluster
    when the interpreter exits.

    Raises:
        BlockingCallError: called inside a trio program.
    """
    global _default
    _refuse_trio_thread("gossipreg.default.close_default_registry()")
    with _lock:
        registry, _default = _default, None
    if registry is not None:
        registry.close()


def _forget_default_in_child() -> None:
    global _default, _lock
    _default = None
    _lock = threading.Lock()


atexit.register(close_default_registry)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_default_in_child)


def register(service: Service, ttl: float | None = None) -> None:
    """Register ``service`` on the default registry (see :meth:`Registry.register`).

    Args:
        service: the service and the nodes to register.
        ttl: seconds the registration lives without renewal; ``None`` for no expiry.

    Raises:
        InvalidServiceError: the service has no nodes, or ``ttl`` is not ``None``
            nor a number of seconds from ``MIN_TTL`` to ``MAX_TTL`` (checked before
            the default registry is created) and within the configuration's maximum.
        RegistrationLimitError: this member would own more than
            ``Config.max_records_per_owner`` registrations.
        ConfigError: the default registry cannot be created from the environment.
        BlockingCallError: called inside a trio program.
    """
    _refuse_trio_thread("gossipreg.register()")
    checked = check_ttl(ttl)
    default_registry().register(service, checked)


def deregister(service: Service) -> None:
    """Deregister ``service`` from the default registry (see :meth:`Registry.deregister`).

    Args:
        service: its listed nodes are removed, or all of that name and version if none.

    Raises:
        ConfigError: the default registry cannot be created from the environment.
        BlockingCallError: called inside a trio program.
    """
    _refuse_trio_thread("gossipreg.deregister()")
    default_registry().deregister(service)


def get_service(name: str) -> list[Service]:
    """One service per version of ``name``, from the default registry's view.

    Args:
        name: the service name.

    Raises:
        NotFoundError: no live node of that service is known.
        ConfigError: the default registry cannot be created from the environment.
        BlockingCallError: called inside a trio program.
    """
    _refuse_trio_thread("gossipreg.get_service()")
    return default_registry().get_service(name)


def list_services() -> list[Service]:
    """Every (name, version) known to the default registry, without nodes.

    Raises:
        ConfigError: the default registry cannot be created from the environment.
        BlockingCallError: called inside a trio program.
    """
    _refuse_trio_thread("gossipreg.list_services()")
    return default_registry().list_services()


def watch(service: str | None = None, *, snapshot: bool = False, buffer: int = WATCH_BUFFER) -> SyncWatcher:
    """Watch changes on the default registry (see :meth:`Registry.watch`).

    Args:
        service: a service name; ``None`` watches every service.
        snapshot: first yield the current matching services as ``create`` results.
        buffer: results held before the watcher overflows; an int of at least 1.

    Raises:
        InvalidServiceError: ``service`` is not a str or ``None`` (checked first).
        ConfigError: ``snapshot`` is not a bool or ``buffer`` not an int of at
            least 1 (checked first), or the default registry cannot be created
            from the environment.
        BlockingCallError: called inside a trio program.
    """
    _refuse_trio_thread("gossipreg.watch()")
    check_watch(service, snapshot, buffer)
    return default_registry().watch(service, snapshot=snapshot, buffer=buffer)
