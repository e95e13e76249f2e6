"""The options of a registry, checked once: :class:`RegistryOptions` and :func:`check_options`.

``gossipreg.open_registry``, ``gossipreg.Registry`` and ``gossipreg.aio.open_registry``
take the same keyword options; each checks them here, in the caller's thread and
before anything is bound or started, into one :class:`RegistryOptions` record, and
hands that record to :func:`gossipreg.registry.open_checked`. The helpers below
are also the rules of the test kit's and the default registry's options.
"""

from __future__ import annotations

import importlib.util
import math
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgpack

from .core.codec import MAX_META
from .core.config import Config
from .core.crypto import Keyring
from .core.errors import ConfigError, InvalidServiceError
from .core.membership import Address
from .core.model import MAX_NAME_LENGTH, name_problem, shown
from .runtime import srv
from .runtime.driver import DriverLimits, TLSContexts
from .runtime.transport import parse_address
from .tls import TLSFiles

__all__ = ["DEFAULT_PORT", "MAX_HOST_LENGTH", "RegistryOptions", "check_options"]

#: Port of a seed given without one.
DEFAULT_PORT = 7946
#: Longest host of a member's address, in characters (the wire's limit, ``codec``).
MAX_HOST_LENGTH = 255


def pick_advertise(bind_host: str, port: int, advertise: tuple[str, int] | None) -> Address:
    """The advertised address: ``advertise`` (checked by :func:`check_address`; port 0 is
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


def make_keyring(keyring: object) -> Keyring | None:
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


def described(value: object) -> str:
    """``"TYPE REPR"`` for an error message, the repr cut short if long."""
    return f"{type(value).__name__} {shown(value)}"


def check_address(what: str, value: object, *, default_port: int | None, min_port: int) -> tuple[str, int]:
    """``(host, port)`` from ``'host:port'``, ``'[v6]:port'`` (``'host'`` with a
    ``default_port``) or a ``(host, port)`` pair.

    The host follows the rule of names (non-empty, at most ``MAX_HOST_LENGTH``
    characters, no control character), the port is an int from ``min_port``
    to 65535.

    Raises:
        ConfigError: the message starts with ``what``, shows the value and states the rule.
    """
    form = "'host:port'" if default_port is None else "'host[:port]'"
    if isinstance(value, str) and "://" in value:
        raise ConfigError(f"{what}: {shown(value)} is a URL; give the address as {form}, no scheme or path")
    if isinstance(value, str) and " " in value.strip():
        raise ConfigError(
            f"{what}: {shown(value)} holds spaces; give one address as {form}, and separate several "
            "with commas"
        )
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
        raise ConfigError(f"{what}: must be {form} or a (host, port) pair, not {described(value)}")
    problem = name_problem(host, limit=MAX_HOST_LENGTH)
    if problem is not None:
        raise ConfigError(f"{what}: {shown(value)}: the host {problem}")
    if isinstance(port, bool) or not isinstance(port, int) or not min_port <= port <= 65535:
        raise ConfigError(
            f"{what}: {shown(value)}: the port must be an int from {min_port} to 65535, "
            f"not {described(port)}"
        )
    return host, port


def check_port(what: str, value: object) -> int:
    """A TCP or UDP port: an int from 0 to 65535.

    Raises:
        ConfigError: anything else; the message names ``what`` and shows the value.
    """
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return value
    raise ConfigError(f"{what}: must be an int from 0 to 65535, not {described(value)}")


def parse_seeds(seeds: object) -> tuple[list[tuple[str, int]], list[str]]:
    """The seeds option: ``(host, port)`` pairs (port 7946 when a str gives none),
    and the names of ``srv:NAME`` seeds (DNS SRV records, :mod:`gossipreg.runtime.srv`).

    Raises:
        ConfigError: not a str or a list, or a seed is not ``'host[:port]'``,
            ``'srv:NAME'`` nor a ``(host, port)`` pair with a port from 1 to
            65535, or an ``srv:`` seed without the ``dns`` extra; the message shows it.
    """
    if seeds is None:
        return [], []
    if isinstance(seeds, str):  # "h1:p1,h2:p2", as in GOSSIPREG_SEEDS
        seeds = [part for part in seeds.split(",") if part.strip()]
    elif isinstance(seeds, bytes | bytearray | memoryview | Mapping) or not isinstance(seeds, Iterable):
        raise ConfigError(
            "seeds: must be a list of 'host[:port]' or (host, port), or one comma-separated str; "
            f"not {type(seeds).__name__} {shown(seeds)}"
        )
    addresses: list[tuple[str, int]] = []
    names: list[str] = []
    for i, s in enumerate(seeds):
        seed = check_seed(f"seeds[{i}]", s)
        if isinstance(seed, str):
            names.append(seed)
        else:
            addresses.append(seed)
    return addresses, names


def check_seed(what: str, value: object) -> tuple[str, int] | str:
    """One seed: ``(host, port)`` of ``'host[:port]'`` or a pair (port 7946 when
    omitted), or the record name of ``'srv:NAME'``.

    Raises:
        ConfigError: as :func:`check_address` or :func:`check_srv_seed` (starting with ``what``).
    """
    if isinstance(value, str) and value.strip().startswith(srv.SRV_PREFIX):
        return check_srv_seed(what, value)
    return check_address(what, value, default_port=DEFAULT_PORT, min_port=1)


def check_srv_seed(what: str, value: str) -> str:
    """The record name of an ``srv:NAME`` seed.

    Raises:
        ConfigError: no name, a name that is not a host name, or no ``dns`` extra.
    """
    name = value.strip()[len(srv.SRV_PREFIX) :]
    problem = name_problem(name, limit=MAX_HOST_LENGTH)
    if problem is None and (" " in name or ":" in name or "/" in name):
        problem = "must be a DNS name such as _gossipreg._udp.example.internal"
    if problem is not None:
        raise ConfigError(f"{what}: {shown(value)}: the SRV name {problem}")
    if not srv.available():
        raise ConfigError(f"{what}: {shown(value)}: SRV seeds need dnspython (the dns extra)")
    return name


def check_member_name(name: object) -> str | None:
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


def default_name() -> str:
    """``hostname-xxxxxxxx``, within the limit of a member's name."""
    host = "".join(c for c in socket.gethostname() if name_problem(c) is None) or "member"
    return f"{host[: MAX_NAME_LENGTH - 9]}-{uuid.uuid4().hex[:8]}"


def check_timeout(timeout: object) -> float:
    if not isinstance(timeout, bool) and isinstance(timeout, int | float):
        try:
            seconds = float(timeout)
        except OverflowError:
            seconds = math.inf
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    raise ConfigError(
        f"timeout: must be a finite, non-negative number of seconds, not {described(timeout)}"
    )


def pack_metadata(metadata: object) -> bytes:
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
            raise ConfigError(f"metadata[{shown(key)}]: must be a str, not {described(value)}")
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


def check_bool(what: str, value: object, *, none_ok: bool = False) -> None:
    if not (isinstance(value, bool) or (none_ok and value is None)):
        raise ConfigError(f"{what}: must be True or False, not {type(value).__name__} {shown(value)}")


def check_watch(service: object, snapshot: object, buffer: object) -> None:
    """Check the arguments of a watch.

    Raises:
        InvalidServiceError: ``service`` is not a str or ``None``.
        ConfigError: ``snapshot`` is not a bool, or ``buffer`` not an int of at least 1.
    """
    if service is not None and not isinstance(service, str):
        raise InvalidServiceError(
            f"service: must be a service name (str) or None, not {type(service).__name__} {shown(service)}"
        )
    check_bool("snapshot", snapshot)
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise ConfigError(
            f"buffer: must be an int of at least 1 (the results a watcher holds), "
            f"not {type(buffer).__name__} {shown(buffer)}"
        )


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """The options of a registry, checked; nothing is read, bound or started yet.

    ``tls`` and ``identity`` are kept as given: loading them reads files, which
    :func:`gossipreg.registry.open_checked` does when the member starts.
    """

    config: Config
    keyring: Keyring | None
    seeds: list[tuple[str, int]]
    srv_seeds: list[str]
    bind: tuple[str, int]
    advertise: tuple[str, int] | None
    name: str | None
    timeout: float
    meta: bytes
    tls: TLSContexts | TLSFiles | tuple[object, object] | None
    identity: TLSFiles | None
    seed: int | None
    limits: DriverLimits
    retry_join: bool
    metrics_port: int | None


def check_options(
    bind: object = "127.0.0.1:0",
    seeds: object = None,
    *,
    name: object = None,
    keyring: object = None,
    tls: object = None,
    insecure: object = False,
    secure: object = None,
    advertise: object = None,
    config: object = None,
    timeout: object = 10.0,
    metadata: object = None,
    seed: object = None,
    limits: object = None,
    identity: object = None,
    retry_join: object = False,
    metrics_port: object = None,
) -> RegistryOptions:
    """Check every option of :func:`gossipreg.open_registry` that needs no IO (all
    but reading TLS and identity files); the defaults are that function's.

    Raises:
        ConfigError: an option is invalid or options contradict each other; the
            message names the option, shows the value (never key material) and
            states the rule.
    """
    if config is None:
        config = Config.lan()
    elif not isinstance(config, Config):
        raise ConfigError(f"config: must be a Config, not {type(config).__name__}")
    check_bool("insecure", insecure)
    check_bool("secure", secure, none_ok=True)
    check_bool("retry_join", retry_join)
    port = None if metrics_port is None else check_port("metrics_port", metrics_port)
    if port is not None and importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError("metrics_port: serving metrics needs prometheus_client (the metrics extra)")
    ring = make_keyring(keyring)
    if secure and ring is None and tls is None:
        raise ConfigError("secure: set a keyring or tls (secure=True with neither)")
    if ring is None and not insecure:
        raise ConfigError(
            "keyring: a cluster keyring is required (gossipreg keygen makes a key); "
            "pass insecure=True to run without encryption"
        )
    if not isinstance(bind, str):
        raise ConfigError(f"bind: must be a 'host:port' str, not {type(bind).__name__} {shown(bind)}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed: must be an int or None, not {described(seed)}")
    if identity is not None and not isinstance(identity, TLSFiles):
        kind = type(identity).__name__
        raise ConfigError(f"identity: must be a TLSFiles (ca, cert, key paths), not {kind}")
    if limits is None:
        limits = DriverLimits(
            stream_timeout=config.stream_timeout, auth_timeout=min(2.0, config.stream_timeout)
        )
    elif not isinstance(limits, DriverLimits):
        raise ConfigError(f"limits: must be a DriverLimits, not {type(limits).__name__}")
    addresses, srv_names = parse_seeds(seeds)
    return RegistryOptions(
        config=config,
        keyring=ring,
        seeds=addresses,
        srv_seeds=srv_names,
        bind=check_address("bind", bind, default_port=None, min_port=0),
        advertise=None
        if advertise is None
        else check_address("advertise", advertise, default_port=0, min_port=0),
        name=check_member_name(name),
        timeout=check_timeout(timeout),
        meta=pack_metadata(metadata),
        tls=tls,  # type: ignore[arg-type]  # load_tls checks it when the member starts
        identity=identity,
        seed=seed,
        limits=limits,
        retry_join=bool(retry_join),
        metrics_port=port,
    )
