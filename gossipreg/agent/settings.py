"""The agent's settings: defaults, the TOML configuration file, validation.

:class:`AgentSettings` holds the options of ``gossipreg agent`` as given;
:func:`load_config_file` reads a TOML file into the same fields; and
:func:`prepare` checks them all before anything is bound, turning them into
what the agent runs with (:class:`PreparedAgent`: the protocol
:class:`~gossipreg.core.config.Config`, the keyring, the TLS contexts, the
parsed service files). Every problem is a :class:`~gossipreg.ConfigError`
naming the option (as its command-line flag) or the file and key.

Configuration file (every key optional; the flags win over it)::

    bind = "0.0.0.0:7946"
    advertise = "10.0.0.7"
    join = ["10.0.0.5:7946", "seeds.example.internal"]
    name = "agent-1"
    keyring_file = "keyring"          # relative paths: to the file's directory
    tls_ca = "ca.crt"
    tls_cert = "member.crt"
    tls_key = "member.key"
    profile = "lan"                   # lan | wan | local
    insecure = false
    http = "127.0.0.1:8946"
    http_token = "..."
    service = ["web.json"]            # go-micro JSON, registered and kept alive
    service_ttl = 30
    join_timeout = 10
    log_json = false
    log_level = "info"

    [protocol]                        # any Config field, over the profile's values
    probe_interval = 0.5
    label = "prod"

Keys may be written with ``-`` or ``_``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import Config
from ..core.crypto import Keyring
from ..core.errors import ConfigError, InvalidServiceError
from ..core.model import Service
from ..default import DEFAULT_BIND, DEFAULT_PORT, load_keyring_file
from ..runtime.driver import TLSContexts
from ..runtime.transport import parse_address
from ..tls import TLSFiles, load_tls
from .api import is_loopback_host

__all__ = [
    "DEFAULT_HTTP",
    "LOG_LEVELS",
    "PROFILES",
    "AgentSettings",
    "PreparedAgent",
    "load_config_file",
    "prepare",
]

#: Default address of the HTTP API: loopback only.
DEFAULT_HTTP = "127.0.0.1:8946"
#: The protocol profiles, by name.
PROFILES: Mapping[str, Callable[..., Config]] = {"lan": Config.lan, "wan": Config.wan, "local": Config.local}
#: Accepted log levels.
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """The options of ``gossipreg agent`` (see ``gossipreg agent --help``), unvalidated."""

    bind: str = DEFAULT_BIND
    advertise: str | None = None
    join: tuple[str, ...] = ()
    name: str | None = None
    keyring_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    profile: str = "lan"
    protocol: Mapping[str, Any] = field(default_factory=dict)
    insecure: bool = False
    http: str = DEFAULT_HTTP
    http_token: str | None = None
    services: tuple[Path, ...] = ()
    service_ttl: float = 30.0
    join_timeout: float = 10.0
    log_json: bool = False
    log_level: str = "info"

    def replace(self, **changes: Any) -> AgentSettings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class PreparedAgent:
    """Validated settings, ready to run (made by :func:`prepare`)."""

    settings: AgentSettings
    config: Config
    keyring: Keyring | None
    tls: TLSContexts | None
    services: tuple[Service, ...]
    http_host: str
    http_port: int


# ---------------------------------------------------------------- the file


def _text(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, not {type(value).__name__}")
    return value


def _flag(where: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, not {type(value).__name__}")
    return value


def _seconds(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: must be a number of seconds, not {type(value).__name__}")
    return float(value)


def _texts(where: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a string or a list of strings, not {type(value).__name__}")
    return tuple(_text(f"{where}[{i}]", v) for i, v in enumerate(value))


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML configuration file into :class:`AgentSettings` field values.

    Only the keys present are returned, so that command-line flags can be
    laid over them. Relative paths are resolved against the file's directory.

    Raises:
        ConfigError: the file cannot be read or parsed, a key is unknown, or a
            value has the wrong type; the message names the file and the key.
    """
    where = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {where!r}: cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {where!r}: not valid TOML: {exc}") from None
    base = Path(path).resolve().parent

    def to_path(key: str, value: object) -> Path:
        p = Path(_text(key, value)).expanduser()
        return p if p.is_absolute() else base / p

    out: dict[str, Any] = {}
    try:
        for raw_key, value in data.items():
            key = raw_key.replace("-", "_")
            if key in ("bind", "advertise", "name", "profile", "http", "http_token", "log_level"):
                out[key] = _text(raw_key, value)
            elif key in ("keyring_file", "tls_ca", "tls_cert", "tls_key"):
                out[key] = to_path(raw_key, value)
            elif key in ("insecure", "log_json"):
                out[key] = _flag(raw_key, value)
            elif key in ("service_ttl", "join_timeout"):
                out[key] = _seconds(raw_key, value)
            elif key == "join":
                out["join"] = _texts(raw_key, value)
            elif key in ("service", "services"):
                out["services"] = tuple(to_path(raw_key, p) for p in _texts(raw_key, value))
            elif key == "protocol":
                if not isinstance(value, dict):
                    raise ConfigError("[protocol]: must be a table of Config fields")
                out["protocol"] = {str(k).replace("-", "_"): v for k, v in value.items()}
            else:
                raise ConfigError(f"{raw_key}: unknown key")
    except ConfigError as exc:
        raise ConfigError(f"config file {where!r}: {exc}") from None
    return out


# ---------------------------------------------------------------- validation


def _address(flag: str, text: str, default_port: int | None = None) -> tuple[str, int]:
    try:
        return parse_address(text, default_port=default_port)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def _read_service(path: Path) -> Service:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--service {os.fspath(path)!r}: cannot be read: {exc.strerror or exc}") from None
    try:
        service = Service.from_json(text)
    except InvalidServiceError as exc:
        raise ConfigError(f"--service {os.fspath(path)!r}: {exc}") from None
    if not service.nodes:
        raise ConfigError(f"--service {os.fspath(path)!r}: service.nodes: lists no node to register")
    return service


def _check_token(token: str) -> None:
    if not token or any(not (0x21 <= ord(c) <= 0x7E) for c in token):
        raise ConfigError("--http-token: must be non-empty printable ASCII without spaces")


def prepare(settings: AgentSettings) -> PreparedAgent:
    """Validate ``settings`` and load what they name (keyring, certificates, service files).

    Nothing is bound or contacted.

    Raises:
        ConfigError: an option is invalid or options contradict each other;
            the message names the option.
    """
    s = settings
    profile = PROFILES.get(s.profile)
    if profile is None:
        raise ConfigError(f"--profile: must be one of {', '.join(PROFILES)}, not {s.profile!r}")
    try:
        config = profile(**dict(s.protocol))
    except ConfigError as exc:
        raise ConfigError(f"[protocol] {exc}") from None
    except TypeError as exc:  # pragma: no cover - Config takes keyword arguments only
        raise ConfigError(f"[protocol] {exc}") from None

    _address("--bind", s.bind)
    if s.advertise is not None:
        _address("--advertise", s.advertise, default_port=0)
    for seed in s.join:
        _address("--join", seed, default_port=DEFAULT_PORT)

    keyring: Keyring | None = None
    if s.insecure and s.keyring_file is not None:
        raise ConfigError("--insecure: cannot be combined with --keyring-file")
    if s.keyring_file is not None:
        try:
            keyring = load_keyring_file(s.keyring_file)
        except ConfigError as exc:
            raise ConfigError(f"--keyring-file: {exc}") from None
    elif not s.insecure:
        raise ConfigError(
            "--keyring-file: a cluster keyring is required (gossipreg keygen makes a key); "
            "pass --insecure to run without encryption"
        )

    tls: TLSContexts | None = None
    tls_paths = {"--tls-ca": s.tls_ca, "--tls-cert": s.tls_cert, "--tls-key": s.tls_key}
    if any(p is not None for p in tls_paths.values()):
        missing = [flag for flag, p in tls_paths.items() if p is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: the TLS options go together; give all three or none")
        ca, cert, key = (p for p in tls_paths.values() if p is not None)
        try:
            tls = load_tls(TLSFiles(ca, cert, key))
        except ConfigError as exc:
            raise ConfigError(f"--tls-ca/--tls-cert/--tls-key: {exc}") from None

    http_host, http_port = _address("--http", s.http)
    if s.http_token is not None:
        _check_token(s.http_token)
    elif not is_loopback_host(http_host):
        raise ConfigError(
            f"--http-token: required when --http binds a non-loopback address ({http_host}); "
            "clients then send 'Authorization: Bearer TOKEN'"
        )

    if not (math.isfinite(s.service_ttl) and s.service_ttl > 0):
        raise ConfigError(f"--service-ttl: must be a positive number of seconds, not {s.service_ttl!r}")
    if not (math.isfinite(s.join_timeout) and s.join_timeout >= 0):
        raise ConfigError(f"--join-timeout: must be a non-negative number of seconds, not {s.join_timeout!r}")
    if s.log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"--log-level: must be one of {', '.join(LOG_LEVELS)}, not {s.log_level!r}")

    services = tuple(_read_service(p) for p in s.services)
    return PreparedAgent(s, config, keyring, tls, services, http_host, http_port)
