"""The agent's settings: defaults, the TOML configuration file, validation.

:class:`AgentSettings` holds the options of ``gossipreg agent`` as given;
:func:`load_config_file` reads a TOML file into the same fields; and
:func:`prepare` checks them all before anything is bound, turning them into
what the agent runs with (:class:`PreparedAgent`: the protocol
:class:`~gossipreg.core.config.Config`, the keyring, the TLS contexts, the
parsed service files). Every problem is a :class:`~gossipreg.ConfigError`
naming the option (as its command-line flag) or the file and key.

Sources, each over the ones before it: the defaults, the configuration file
(:func:`load_config_file`), the ``GOSSIPREG_*`` environment variables
(:func:`load_environment`, :data:`ENVIRONMENT`: the default registry's
variables plus the agent's own) and the command-line flags
(:func:`layered` lays them over each other).

Configuration file (every key optional; the environment and the flags win over it)::

    bind = "0.0.0.0:7946"
    advertise = "10.0.0.7"
    join = ["10.0.0.5:7946", "seeds.example.internal"]
    retry_join = false                # start at once and keep trying the seeds until one answers
    name = "agent-1"
    keyring_file = "keyring"          # relative paths: to the file's directory
    tls_ca = "ca.crt"
    tls_cert = "member.crt"
    tls_key = "member.key"
    identities = false                # sign with the tls_* certificate (member identities)
    profile = "lan"                   # lan | wan | local
    insecure = false
    http = "127.0.0.1:8946"
    http_token = "..."                # or:
    http_token_file = "http-token"    # made (0600) if missing; the default file if neither
    service = ["web.json"]            # go-micro JSON, registered and kept alive (while its "check" passes)
    service_ttl = 30
    join_timeout = 10
    log_json = false
    log_level = "info"

    [protocol]                        # any Config field, over the profile's values
    probe_interval = 0.5
    label = "prod"

    [limits]                          # any DriverLimits field (the member's resource limits)
    max_inbound_streams = 256
    max_pending_per_source = 8

Keys may be written with ``-`` or ``_``.

The HTTP API always has a token: every request that is not a plain read
needs it. Without ``http_token``, :func:`prepare` reads it from
``http_token_file`` (default :func:`~gossipreg.agent.client.default_token_file`:
``$GOSSIPREG_STATE_DIR/http-token``, ``/var/lib/gossipreg/http-token`` for
root, else ``$XDG_STATE_HOME/gossipreg/http-token`` or
``~/.local/state/gossipreg/http-token``), creating the file with a random
token (``secrets.token_urlsafe(32)``, mode ``0600``, new directories
``0700``) if it does not exist. A token file others can read or write is
refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._options import check_address, check_seed
from ..core.config import Config
from ..core.crypto import Keyring
from ..core.errors import ConfigError, InvalidServiceError
from ..core.model import Service, name_problem
from ..default import DEFAULT_BIND, load_keyring_file
from ..default import _flag as _env_flag
from ..runtime.driver import DriverLimits, TLSContexts
from ..runtime.transport import parse_address
from ..tls import TLSFiles, load_identity, load_tls
from .api import is_loopback_host
from .checks import Check, parse_check
from .client import check_token, default_token_file, read_token_file

__all__ = [
    "DEFAULT_HTTP",
    "ENVIRONMENT",
    "FLAGS",
    "LOG_LEVELS",
    "PROFILES",
    "AgentSettings",
    "PreparedAgent",
    "ensure_token_file",
    "layered",
    "load_config_file",
    "load_environment",
    "prepare",
]

#: Default address of the HTTP API: loopback only.
DEFAULT_HTTP = "127.0.0.1:8946"
#: The protocol profiles, by name.
PROFILES: Mapping[str, Callable[..., Config]] = {"lan": Config.lan, "wan": Config.wan, "local": Config.local}
#: Accepted log levels.
LOG_LEVELS = ("debug", "info", "warning", "error")

#: :class:`AgentSettings` field -> the command-line flag that sets it (how messages name an option
#: given there, in the configuration file or in code). ``keyring`` has no flag: keys on a command
#: line are visible to every user of the host.
FLAGS: Mapping[str, str] = {
    "bind": "--bind",
    "advertise": "--advertise",
    "join": "--join",
    "retry_join": "--retry-join",
    "name": "--name",
    "keyring": "GOSSIPREG_KEYRING",
    "keyring_file": "--keyring-file",
    "tls_ca": "--tls-ca",
    "tls_cert": "--tls-cert",
    "tls_key": "--tls-key",
    "identities": "--identities",
    "profile": "--profile",
    "insecure": "--insecure",
    "http": "--http",
    "http_token": "--http-token",
    "http_token_file": "--http-token-file",
    "services": "--service",
    "service_ttl": "--service-ttl",
    "join_timeout": "--join-timeout",
    "log_json": "--log-json",
    "log_level": "--log-level",
}

#: :class:`AgentSettings` field -> the environment variable that sets it. The first eleven are the
#: default registry's (:mod:`gossipreg.default`), read the same way; the rest are the agent's own.
#: ``GOSSIPREG_CONFIG`` (the file) and ``GOSSIPREG_STATE_DIR`` (where the token file is made) are
#: read by the command and by :func:`~gossipreg.agent.client.default_token_file`.
ENVIRONMENT: Mapping[str, str] = {
    "bind": "GOSSIPREG_BIND",
    "advertise": "GOSSIPREG_ADVERTISE",
    "join": "GOSSIPREG_SEEDS",
    "name": "GOSSIPREG_NAME",
    "keyring": "GOSSIPREG_KEYRING",
    "keyring_file": "GOSSIPREG_KEYRING_FILE",
    "tls_ca": "GOSSIPREG_TLS_CA",
    "tls_cert": "GOSSIPREG_TLS_CERT",
    "tls_key": "GOSSIPREG_TLS_KEY",
    "insecure": "GOSSIPREG_INSECURE",
    "retry_join": "GOSSIPREG_RETRY_JOIN",
    "identities": "GOSSIPREG_IDENTITIES",
    "profile": "GOSSIPREG_PROFILE",
    "http": "GOSSIPREG_HTTP",
    "http_token": "GOSSIPREG_HTTP_TOKEN",
    "http_token_file": "GOSSIPREG_HTTP_TOKEN_FILE",
    "services": "GOSSIPREG_SERVICE_FILES",
    "service_ttl": "GOSSIPREG_SERVICE_TTL",
    "join_timeout": "GOSSIPREG_JOIN_TIMEOUT",
    "log_json": "GOSSIPREG_LOG_JSON",
    "log_level": "GOSSIPREG_LOG_LEVEL",
}

#: Fields that are one setting given two ways: a source that gives either replaces both from the
#: sources below it (``--keyring-file`` on the command line wins over ``GOSSIPREG_KEYRING``).
_ALTERNATIVES = (frozenset({"keyring", "keyring_file"}),)


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """The options of ``gossipreg agent`` (see ``gossipreg agent --help``), unvalidated.

    ``http_token`` is the API's bearer token; without it the token is read
    from (or created in) ``http_token_file``, by default
    :func:`~gossipreg.agent.client.default_token_file`. ``keyring`` holds
    base64 keys given directly (``GOSSIPREG_KEYRING``), the first primary: an
    alternative to ``keyring_file``, whose changes through the API last until
    the agent stops.
    """

    bind: str = DEFAULT_BIND
    advertise: str | None = None
    join: tuple[str, ...] = ()
    retry_join: bool = False
    name: str | None = None
    keyring: tuple[str, ...] = ()
    keyring_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    identities: bool = False
    profile: str = "lan"
    protocol: Mapping[str, Any] = field(default_factory=dict)
    limits: Mapping[str, Any] = field(default_factory=dict)
    insecure: bool = False
    http: str = DEFAULT_HTTP
    http_token: str | None = None
    http_token_file: Path | None = None
    services: tuple[Path, ...] = ()
    service_ttl: float = 30.0
    join_timeout: float = 10.0
    log_json: bool = False
    log_level: str = "info"
    origins: Mapping[str, str] = field(default_factory=dict)
    """Field -> where it was given when not by its flag (an environment variable), for messages."""

    def name_of(self, fld: str) -> str:
        """How messages name the option ``fld``: its variable if the environment gave it, else its flag."""
        return self.origins.get(fld) or FLAGS[fld]

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
    http_token: str
    """The API's bearer token: ``settings.http_token``, or the token file's."""
    http_token_file: Path | None = None
    """The token file the token came from (``None`` when it was given directly)."""
    http_token_created: bool = False
    """Whether :func:`prepare` created that file (a first start)."""
    identity: TLSFiles | None = None
    """The certificate files members identities sign with (``--identities``), or ``None``."""
    limits: DriverLimits | None = None
    """The member's resource limits (the file's ``[limits]`` table), or ``None`` for the defaults."""
    checks: tuple[Check | None, ...] = ()
    """The check of each service file (``"check"``), in the order of ``services``; ``None`` for a
    file without one. An empty tuple means no file has a check."""


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
    import tomllib  # only an agent given a config file reads TOML

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
            elif key in ("keyring_file", "tls_ca", "tls_cert", "tls_key", "http_token_file"):
                out[key] = to_path(raw_key, value)
            elif key in ("insecure", "log_json", "identities", "retry_join"):
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
            elif key == "limits":
                if not isinstance(value, dict):
                    raise ConfigError("[limits]: must be a table of DriverLimits fields")
                out["limits"] = {str(k).replace("-", "_"): v for k, v in value.items()}
            else:
                raise ConfigError(f"{raw_key}: unknown key")
    except ConfigError as exc:
        raise ConfigError(f"config file {where!r}: {exc}") from None
    return out


# ---------------------------------------------------------------- the environment


def load_environment(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read the ``GOSSIPREG_*`` variables of :data:`ENVIRONMENT` into :class:`AgentSettings` field values.

    Only the variables set (and not blank) are returned, so that flags can be
    laid over them and they over the configuration file. The variables the
    default registry reads are read as it reads them
    (:mod:`gossipreg.default`): comma-separated seeds and keys, ``1``/``true``/
    ``yes``/``on`` or ``0``/``false``/``no``/``off`` for switches, the TLS
    variables all three or none, one of ``GOSSIPREG_KEYRING`` and
    ``GOSSIPREG_KEYRING_FILE``. ``GOSSIPREG_SERVICE_FILES`` is comma-separated
    too. What needs files or the other options (a keyring file's keys, a
    profile's name, a TTL's range) is checked by :func:`prepare`, whose
    messages name the variable.

    Args:
        env: the variables (default :data:`os.environ`).

    Raises:
        ConfigError: a variable is invalid; the message names it, shows the
            value and states the rule.
    """
    environ = os.environ if env is None else env

    def get(var: str) -> str | None:
        value = environ.get(var, "").strip()
        return value or None

    def items(var: str, text: str) -> list[str]:
        found = [item.strip() for item in text.split(",") if item.strip()]
        if not found:
            raise ConfigError(f"{var}: lists nothing ({text!r}); unset it instead")
        return found

    out: dict[str, Any] = {}
    for fld, var in ENVIRONMENT.items():
        text = get(var)
        if text is None:
            continue
        if fld in ("insecure", "retry_join", "identities", "log_json"):
            out[fld] = _env_flag(get, var)
        elif fld == "bind":
            check_address(var, text, default_port=None, min_port=0)
            out[fld] = text
        elif fld == "advertise":
            check_address(var, text, default_port=0, min_port=0)
            out[fld] = text
        elif fld == "join":
            seeds = items(var, text)
            for seed in seeds:
                check_seed(var, seed)
            out[fld] = tuple(seeds)
        elif fld == "name":
            problem = name_problem(text)
            if problem is not None:
                raise ConfigError(f"{var}: {problem} (a member's name travels in every message)")
            out[fld] = text
        elif fld == "keyring":
            keys = items(var, text)
            try:
                Keyring.from_base64(keys)
            except ConfigError as exc:
                raise ConfigError(f"{var}: {exc}") from None
            out[fld] = tuple(keys)
        elif fld in ("keyring_file", "tls_ca", "tls_cert", "tls_key", "http_token_file"):
            out[fld] = Path(text)
        elif fld == "services":
            out[fld] = tuple(Path(p) for p in items(var, text))
        elif fld in ("service_ttl", "join_timeout"):
            try:
                out[fld] = float(text)
            except ValueError:
                raise ConfigError(f"{var}: must be a number of seconds, not {text!r}") from None
        else:  # profile, http, http_token, log_level: checked by prepare()
            out[fld] = text
    if "keyring" in out and "keyring_file" in out:
        raise ConfigError("GOSSIPREG_KEYRING: set it or GOSSIPREG_KEYRING_FILE, not both")
    tls = [ENVIRONMENT[f] for f in ("tls_ca", "tls_cert", "tls_key")]
    missing = [var for var in tls if get(var) is None]
    if 0 < len(missing) < len(tls):
        raise ConfigError(f"{', '.join(missing)}: the TLS variables go together; set all three or none")
    return out


def layered(
    file: Mapping[str, Any], env: Mapping[str, Any], flags: Mapping[str, Any] | None = None
) -> AgentSettings:
    """Settings from the three sources, each over the ones before it: flags > environment > file > defaults.

    Args:
        file: field values of the configuration file (:func:`load_config_file`).
        env: field values of the environment (:func:`load_environment`); their
            variables become the settings' ``origins``, so that messages name them.
        flags: field values given on the command line.
    """
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for source, names in ((file, None), (env, ENVIRONMENT), (flags or {}, None)):
        for group in _ALTERNATIVES:
            if group & source.keys():
                for fld in group:
                    values.pop(fld, None)
                    origins.pop(fld, None)
        for fld, value in source.items():
            values[fld] = value
            if names is not None and fld in names:
                origins[fld] = names[fld]
            else:
                origins.pop(fld, None)
    return AgentSettings(**values, origins=origins)


# ---------------------------------------------------------------- validation


def _address(flag: str, text: str, default_port: int | None = None) -> tuple[str, int]:
    try:
        return parse_address(text, default_port=default_port)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def _read_service(path: Path, where: str = "--service") -> tuple[Service, Check | None]:
    """The service of a go-micro JSON file, and its ``"check"`` (:mod:`~gossipreg.agent.checks`) if any."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where} {os.fspath(path)!r}: cannot be read: {exc.strerror or exc}") from None
    try:
        service = Service.from_json(text)  # ignores "check", as it ignores every key it does not know
    except InvalidServiceError as exc:
        raise ConfigError(f"{where} {os.fspath(path)!r}: {exc}") from None
    if not service.nodes:
        raise ConfigError(f"{where} {os.fspath(path)!r}: service.nodes: lists no node to register")
    data = json.loads(text)  # valid JSON: from_json has parsed it
    if "check" not in data:
        return service, None
    try:
        return service, parse_check(data["check"])
    except ConfigError as exc:
        raise ConfigError(f"{where} {os.fspath(path)!r}: {exc}") from None


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parent, each new one with mode ``0700``."""
    missing: list[Path] = []
    d = directory
    while not d.exists():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # exactly 0700, whatever the umask


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` (``O_CREAT | O_EXCL``, mode ``0600``) holding ``data``; never overwrites."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def ensure_token_file(path: str | os.PathLike[str]) -> tuple[str, bool]:
    """The token in the file at ``path``, created first with a random token if absent.

    A new file gets ``secrets.token_urlsafe(32)`` and a newline, mode
    ``0600``, and its missing directories mode ``0700``. It is written to a
    temporary file in the same directory (``O_CREAT | O_EXCL``) and then
    hard-linked to ``path``, which fails if ``path`` exists: an existing file
    is never overwritten, and concurrent first starts never see a half-written
    one (they all use the token of the one that won). An existing file is
    read with the checks of :func:`~gossipreg.agent.client.read_token_file`.

    Returns:
        ``(token, created)``.

    Raises:
        ConfigError: the file (or its directory) cannot be read or created, or
            it is not private, or holds no valid token; the message names the
            file and the fix.
    """
    where = f"token file {os.fspath(path)!r}"
    found = read_token_file(path)
    if found is not None:
        return found, False
    target = Path(path)
    token = secrets.token_urlsafe(32)
    data = (token + "\n").encode("ascii")
    try:
        _make_private_dirs(target.parent)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
        _write_private(temporary, data)
        try:
            os.link(temporary, target)
            created = True
        except FileExistsError:
            created = False  # another start made it meanwhile: use its token
        except OSError:
            # No hard links on this file system: create the file itself.
            try:
                _write_private(target, data)
                created = True
            except FileExistsError:
                created = False
        finally:
            os.unlink(temporary)
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot be created: {exc.strerror or exc}; give another with --http-token-file"
        ) from None
    if created:
        return token, True
    found = read_token_file(target)
    if found is None:
        raise ConfigError(f"{where}: exists but cannot be read (a dangling symbolic link?)")
    return found, False


def prepare(settings: AgentSettings) -> PreparedAgent:
    """Validate ``settings`` and load what they name (keyring, certificates, service files, token).

    Nothing is bound or contacted. The one side effect: without
    ``http_token``, the token file (``http_token_file`` or the default one)
    is created with a random token if it does not exist, after every other
    option has been checked (:func:`ensure_token_file`).

    Raises:
        ConfigError: an option is invalid or options contradict each other;
            the message names the option.
    """
    s = settings
    n = s.name_of
    profile = PROFILES.get(s.profile)
    if profile is None:
        raise ConfigError(f"{n('profile')}: must be one of {', '.join(PROFILES)}, not {s.profile!r}")
    try:
        config = profile(**dict(s.protocol))
    except ConfigError as exc:
        raise ConfigError(f"[protocol] {exc}") from None
    except TypeError as exc:  # pragma: no cover - Config takes keyword arguments only
        raise ConfigError(f"[protocol] {exc}") from None

    limits: DriverLimits | None = None
    if s.limits:
        known = {f.name for f in dataclasses.fields(DriverLimits)}
        unknown = sorted(set(s.limits) - known)
        if unknown:
            raise ConfigError(f"[limits] {unknown[0]}: unknown; the fields are {', '.join(sorted(known))}")
        fields = {"stream_timeout": config.stream_timeout,
                  "auth_timeout": min(2.0, config.stream_timeout), **s.limits}
        try:
            limits = DriverLimits(**fields)
        except ConfigError as exc:
            raise ConfigError(f"[limits] {exc}") from None

    _address(n("bind"), s.bind)
    if s.advertise is not None:
        _address(n("advertise"), s.advertise, default_port=0)
    for seed in s.join:
        check_seed(n("join"), seed)

    keyring: Keyring | None = None
    if s.keyring and s.keyring_file is not None:
        raise ConfigError(f"{n('keyring')}: cannot be combined with {n('keyring_file')}; give one keyring")
    if s.insecure and (s.keyring_file is not None or s.keyring):
        other = n("keyring_file") if s.keyring_file is not None else n("keyring")
        raise ConfigError(f"{n('insecure')}: cannot be combined with {other}")
    if s.keyring_file is not None:
        try:
            keyring = load_keyring_file(s.keyring_file)
        except ConfigError as exc:
            raise ConfigError(f"{n('keyring_file')}: {exc}") from None
    elif s.keyring:
        try:
            keyring = Keyring.from_base64(list(s.keyring))
        except ConfigError as exc:
            raise ConfigError(f"{n('keyring')}: {exc}") from None
    elif not s.insecure:
        raise ConfigError(
            f"{n('keyring_file')}: a cluster keyring is required (gossipreg keygen makes a key); "
            "pass --insecure to run without encryption (or set GOSSIPREG_KEYRING_FILE, "
            "GOSSIPREG_KEYRING or GOSSIPREG_INSECURE=1)"
        )

    tls: TLSContexts | None = None
    identity: TLSFiles | None = None
    tls_paths = {n("tls_ca"): s.tls_ca, n("tls_cert"): s.tls_cert, n("tls_key"): s.tls_key}
    if any(p is not None for p in tls_paths.values()):
        missing = [flag for flag, p in tls_paths.items() if p is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: the TLS options go together; give all three or none")
        ca, cert, key = (p for p in tls_paths.values() if p is not None)
        try:
            tls = load_tls(TLSFiles(ca, cert, key))
            if s.identities:
                identity = TLSFiles(ca, cert, key)
                load_identity(identity, s.name)  # checked now: a member certificate for this name
        except ConfigError as exc:
            raise ConfigError(f"{'/'.join(tls_paths)}: {exc}") from None
    elif s.identities:
        raise ConfigError(f"{n('identities')}: needs --tls-ca, --tls-cert and --tls-key (the member's "
                          "certificate of the cluster CA signs its statements)")

    http_host, http_port = _address(n("http"), s.http)
    if s.http_token is not None:
        check_token(s.http_token, n("http_token"))  # and it wins over http_token_file: that file is not read
    elif s.http_token_file is None and not is_loopback_host(http_host):
        raise ConfigError(
            f"--http-token: required when {n('http')} binds a non-loopback address ({http_host}), "
            "or --http-token-file naming a token file (or GOSSIPREG_HTTP_TOKEN, GOSSIPREG_HTTP_TOKEN_FILE); "
            "clients then send 'Authorization: Bearer TOKEN'"
        )

    if not (math.isfinite(s.service_ttl) and s.service_ttl > 0):
        raise ConfigError(f"{n('service_ttl')}: must be a positive number of seconds, not {s.service_ttl!r}")
    if not (math.isfinite(s.join_timeout) and s.join_timeout >= 0):
        raise ConfigError(
            f"{n('join_timeout')}: must be a non-negative number of seconds, not {s.join_timeout!r}"
        )
    if s.log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"{n('log_level')}: must be one of {', '.join(LOG_LEVELS)}, not {s.log_level!r}")

    read = [_read_service(p, n("services")) for p in s.services]
    services = tuple(service for service, _ in read)
    checks = tuple(check for _, check in read)

    # Last, once everything else is known to be valid: the token file may be created.
    token_file: Path | None = None
    created = False
    if s.http_token is not None:
        token = s.http_token
    else:
        try:
            token_file = s.http_token_file if s.http_token_file is not None else default_token_file()
            token, created = ensure_token_file(token_file)
        except ConfigError as exc:
            raise ConfigError(f"{n('http_token_file')}: {exc}") from None
    return PreparedAgent(s, config, keyring, tls, services, http_host, http_port, token, token_file, created,
                         identity, limits, checks)
