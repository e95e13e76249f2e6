"""Health checks of the agent's ``--service`` files: what a check is, how it is parsed, how it runs.

A service file may carry a ``"check"`` object next to the go-micro fields
(:meth:`~gossipreg.core.model.Service.from_dict` ignores keys it does not
know, as Go's decoder does, so the file stays valid go-micro JSON)::

    {"name": "web", "version": "2.1",
     "nodes": [{"id": "web-1", "address": "10.1.0.1:8080"}],
     "check": {"http": "http://127.0.0.1:8080/healthz", "interval": 10, "timeout": 2}}

Kinds (exactly one):

* ``"tcp": "host:port"``: passes when a TCP connection is accepted;
* ``"http": "http://host[:port]/path"``: passes when a ``GET`` is answered
  with a 2xx status. Redirects are not followed (a 3xx fails), the body is
  not read, ``https`` is not supported.

``"interval"`` (seconds between checks, default :data:`DEFAULT_INTERVAL`) and
``"timeout"`` (seconds a check may take, default :data:`DEFAULT_TIMEOUT` or
the interval if shorter) are optional. Other keys are refused.

:func:`parse_check` validates the object (no IO); :func:`run_check` runs one
check on trio and returns why it failed, or ``None``; :class:`CheckStatus` is
what the agent knows of a check (:attr:`~gossipreg.agent.Agent.checks`).
The agent renews a checked registration only while its check passes
(:mod:`gossipreg.agent.agent`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import h11
import trio

from ..core.errors import ConfigError
from ..runtime.transport import parse_address

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "Check",
    "CheckStatus",
    "parse_check",
    "run_check",
]

#: Seconds between two runs of a check when the file gives no ``interval``.
DEFAULT_INTERVAL = 10.0
#: Seconds a check may take when the file gives no ``timeout`` (or the interval, if shorter).
DEFAULT_TIMEOUT = 2.0

_KINDS = ("tcp", "http")
_KEYS = (*_KINDS, "interval", "timeout")
#: The longest answer head an HTTP check reads (h11's limit on an incomplete event).
_MAX_HEAD = 16 * 1024


@dataclass(frozen=True, slots=True)
class Check:
    """One validated check (made by :func:`parse_check`).

    Attributes:
        kind: ``"tcp"`` or ``"http"``.
        target: the address or URL as the file gives it.
        host: the host to connect to.
        port: the port to connect to.
        path: the request target of an HTTP check (path and query), ``""`` for TCP.
        interval: seconds between two runs.
        timeout: seconds a run may take.
    """

    kind: Literal["tcp", "http"]
    target: str
    host: str
    port: int
    path: str
    interval: float
    timeout: float

    def describe(self) -> str:
        """``tcp HOST:PORT`` or ``http URL``, for logs."""
        return f"{self.kind} {self.target}"

    def to_dict(self) -> dict[str, Any]:
        """The check as its file gives it, with the defaults filled in."""
        return {self.kind: self.target, "interval": self.interval, "timeout": self.timeout}


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """What the agent knows of one service file's check.

    Attributes:
        file: the service file, as given.
        service: the service's name.
        version: the service's version.
        nodes: the ids of the nodes the file registers.
        check: the check.
        status: ``"unknown"`` (not run yet), ``"passing"`` (registered and
            renewed) or ``"failing"`` (not renewed: the registration expires
            after its TTL).
        reason: why the last run failed (``None`` unless failing).
        since: when ``status`` last changed (seconds since the epoch).
        runs: runs so far.
        failures: failed runs so far.
    """

    file: str
    service: str
    version: str
    nodes: tuple[str, ...]
    check: Check
    status: Literal["unknown", "passing", "failing"] = "unknown"
    reason: str | None = None
    since: float = 0.0
    runs: int = 0
    failures: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON object: every attribute, ``check`` as :meth:`Check.to_dict`."""
        return {
            "file": self.file,
            "service": self.service,
            "version": self.version,
            "nodes": list(self.nodes),
            "check": self.check.to_dict(),
            "status": self.status,
            "reason": self.reason,
            "since": self.since,
            "runs": self.runs,
            "failures": self.failures,
        }


# ---------------------------------------------------------------- parsing


def _seconds(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: must be a number of seconds, not {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{where}: must be a positive number of seconds, not {value!r}")
    return float(value)


def _tcp_target(text: str) -> tuple[str, int, str]:
    try:
        host, port = parse_address(text)
    except ValueError as exc:
        raise ConfigError(f"check.tcp: {exc} (give host:port, [v6]:port for IPv6)") from None
    if port == 0:
        raise ConfigError(f"check.tcp: {text!r}: port must be a number from 1 to 65535")
    return host, port, ""


def _http_target(text: str) -> tuple[str, int, str]:
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError as exc:
        raise ConfigError(f"check.http: {text!r}: not a URL: {exc}") from None
    if url.scheme != "http":
        rule = "https is not supported" if url.scheme == "https" else "the URL must begin with http://"
        raise ConfigError(f"check.http: {text!r}: {rule}")
    if not url.hostname:
        raise ConfigError(f"check.http: {text!r}: missing host")
    if url.username is not None or url.password is not None:
        raise ConfigError(f"check.http: {text!r}: credentials in the URL are not supported")
    if url.fragment:
        raise ConfigError(f"check.http: {text!r}: a fragment (#...) means nothing to the server; remove it")
    if port == 0:
        raise ConfigError(f"check.http: {text!r}: port must be a number from 1 to 65535")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ConfigError(f"check.http: {text!r}: spaces and control characters are not allowed")
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    return url.hostname, port or 80, path


def parse_check(data: object) -> Check:
    """Validate a service file's ``"check"`` object.

    Raises:
        ConfigError: the object is invalid; the message begins with the field
            (``check``, ``check.tcp``, ``check.interval``, ...) and states the rule.
    """
    if not isinstance(data, Mapping):
        given = type(data).__name__
        raise ConfigError(f'check: must be an object such as {{"tcp": "host:port"}}, not {given}')
    for key in data:
        if key not in _KEYS:
            raise ConfigError(f"check.{key}: unknown key; the keys are {', '.join(_KEYS)}")
    kinds = [k for k in _KINDS if k in data]
    if not kinds:
        raise ConfigError('check: names no kind; give "tcp": "host:port" or "http": "http://host:port/path"')
    if len(kinds) > 1:
        raise ConfigError('check: give one of "tcp" and "http", not both')
    kind: Literal["tcp", "http"] = "tcp" if kinds[0] == "tcp" else "http"
    target = data[kind]
    if not isinstance(target, str):
        raise ConfigError(f"check.{kind}: must be a string, not {type(target).__name__}")
    host, port, path = _tcp_target(target) if kind == "tcp" else _http_target(target)
    interval = _seconds("check.interval", data["interval"]) if "interval" in data else DEFAULT_INTERVAL
    if "timeout" in data:
        timeout = _seconds("check.timeout", data["timeout"])
        if timeout > interval:
            raise ConfigError(f"check.timeout: {timeout:g} is longer than check.interval ({interval:g})")
    else:
        timeout = min(DEFAULT_TIMEOUT, interval)
    return Check(kind, target, host, port, path, interval, timeout)


# ---------------------------------------------------------------- running


def _host_header(check: Check) -> str:
    host = f"[{check.host}]" if ":" in check.host else check.host
    return host if check.port == 80 else f"{host}:{check.port}"


async def _http_status(stream: trio.SocketStream, check: Check) -> int | str:
    """Send ``GET`` and read the answer's head: its status code, or why there is none."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
    request = h11.Request(
        method="GET",
        target=check.path,
        headers=[
            ("Host", _host_header(check)),
            ("User-Agent", "gossipreg-agent-check"),
            ("Accept", "*/*"),
            ("Connection", "close"),
        ],
    )
    await stream.send_all((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
    received = 0
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if received == 0:  # end of stream before a byte of an answer
                return "the connection was closed without an answer"
            return f"not an HTTP answer: {exc}"
        if event is h11.NEED_DATA:
            data = bytes(await stream.receive_some(65536))
            received += len(data)
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            return event.status_code
        elif isinstance(event, h11.ConnectionClosed):  # pragma: no cover - h11 raises instead
            return "the connection was closed without an answer"
        # h11.InformationalResponse (1xx): the real answer follows.


def _os_reason(exc: OSError) -> str:
    """``connection refused``, ``name or service not known``, ...: the cause, short."""
    cause = exc.__cause__
    if exc.errno is None and isinstance(cause, BaseExceptionGroup):
        # trio.open_tcp_stream: "all attempts to connect to ... failed", the attempts' errors as the cause.
        found = [e for e in cause.exceptions if isinstance(e, OSError) and e.errno is not None]
        if found:
            exc = found[-1]
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    return (exc.strerror or str(exc)).lower()


async def run_check(check: Check) -> str | None:
    """Run ``check`` once, within its timeout.

    Returns:
        ``None`` if it passed, else why it failed (``connection refused``,
        ``HTTP 500``, ``no answer within 2s``, ...).
    """
    try:
        with trio.fail_after(check.timeout):
            stream = await trio.open_tcp_stream(check.host, check.port)
            async with stream:
                if check.kind == "tcp":
                    return None
                status = await _http_status(stream, check)
    except trio.TooSlowError:
        return f"no answer within {check.timeout:g}s"
    except OSError as exc:
        return _os_reason(exc)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return "the connection broke"
    if isinstance(status, str):
        return status
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"HTTP {status} (redirects are not followed)"
    return f"HTTP {status}"
