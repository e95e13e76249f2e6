"""A small client of the agent's HTTP API, on the standard library only (:mod:`http.client`).

Used by the operator commands (``gossipreg members``, ``services``, ...);
usable from any script::

    client = AgentClient("http://127.0.0.1:8946", token=None)
    for svc in client.request("GET", "/v1/services")["services"]:
        print(svc["name"], svc["version"])

Every failure is an :class:`AgentError` whose message reads like a tool's:
``cannot reach the agent at http://127.0.0.1:8946: connection refused``, or
``the agent at ... answered 404: service 'x' not found``.

Writes (register, deregister, every keyring route) need the agent's token.
An agent without a configured token keeps a generated one in its token file;
:func:`find_token` finds it the way the ``gossipreg`` commands do (a given
token, ``GOSSIPREG_HTTP_TOKEN``, a given token file,
``GOSSIPREG_HTTP_TOKEN_FILE``, then the default token file of
:func:`default_token_file`, the last for a loopback agent only)::

    url = "http://127.0.0.1:8946"
    client = AgentClient(url, token=find_token(url))
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from ..core.errors import ConfigError

if TYPE_CHECKING:
    import http.client

# http.client (and the email package it imports) is imported by the methods that send
# requests: the agent imports this module for its token helpers and sends none.

__all__ = [
    "DEFAULT_AGENT",
    "TOKEN_FILE_NAME",
    "AgentClient",
    "AgentError",
    "check_token",
    "default_token_file",
    "find_token",
    "read_token_file",
]

#: The agent's API address when none is given.
DEFAULT_AGENT = "http://127.0.0.1:8946"
#: Name of the token file in its directory.
TOKEN_FILE_NAME = "http-token"
#: Largest token file read, in bytes.
_MAX_TOKEN_FILE = 4096


def default_token_file(environ: Mapping[str, str] | None = None, euid: int | None = None) -> Path:
    """Where an agent keeps its generated token, and where clients look for it.

    In order: ``$GOSSIPREG_STATE_DIR/http-token`` if that variable is set;
    ``/var/lib/gossipreg/http-token`` for root; ``$XDG_STATE_HOME/gossipreg/http-token``
    if that variable holds an absolute path; else
    ``~/.local/state/gossipreg/http-token``.

    Args:
        environ: the environment to read (default :data:`os.environ`).
        euid: the effective user id (default the process's).

    Raises:
        ConfigError: no home directory can be found for the last case.
    """
    env = os.environ if environ is None else environ
    if euid is None:
        geteuid = getattr(os, "geteuid", None)
        euid = geteuid() if geteuid is not None else -1
    state = env.get("GOSSIPREG_STATE_DIR", "")
    if state:
        return Path(state).expanduser() / TOKEN_FILE_NAME
    if euid == 0:
        return Path("/var/lib/gossipreg") / TOKEN_FILE_NAME
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "gossipreg" / TOKEN_FILE_NAME
    home = env.get("HOME", "")
    if not home:
        try:
            home = str(Path.home())
        except RuntimeError:
            raise ConfigError(
                "cannot find a home directory for the default token file; "
                "set GOSSIPREG_STATE_DIR or give a token file"
            ) from None
    return Path(home) / ".local" / "state" / "gossipreg" / TOKEN_FILE_NAME


def check_token(token: str, where: str = "--http-token") -> str:
    """``token`` if it is a valid bearer token (non-empty printable ASCII, no spaces, at most 1 KiB).

    Raises:
        ConfigError: it is not; the message starts with ``where``.
    """
    if not token or len(token) > 1024 or any(not (0x21 <= ord(c) <= 0x7E) for c in token):
        raise ConfigError(
            f"{where}: must be non-empty printable ASCII without spaces (at most 1024 characters)"
        )
    return token


def read_token_file(path: str | os.PathLike[str]) -> str | None:
    """The token in the file at ``path``, or ``None`` if there is no such file.

    The file must be a regular file owned by this user and neither readable
    nor writable by anyone else (mode ``0600`` or ``0400``): a token others
    can read is everyone's, and one others can write is theirs.

    Raises:
        ConfigError: the file cannot be read, is not private, or holds no
            valid token; the message names the file and the fix.
    """
    where = f"token file {os.fspath(path)!r}"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{where}: is not a regular file")
        if os.name == "posix":
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise ConfigError(
                    f"{where}: is accessible to other users (mode {mode:04o}); "
                    f"make it private with: chmod 600 {os.fspath(path)!r}"
                )
            euid = os.geteuid()
            if info.st_uid != euid:
                raise ConfigError(
                    f"{where}: belongs to uid {info.st_uid}, not to this user (uid {euid}); "
                    "use a token file of your own"
                )
        data = os.read(fd, _MAX_TOKEN_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > _MAX_TOKEN_FILE:
        raise ConfigError(f"{where}: is over {_MAX_TOKEN_FILE} bytes; it should hold one token")
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    if not text:
        raise ConfigError(f"{where}: holds no token; delete it to have the agent make a new one")
    return check_token(text, where)


def _is_loopback_url(url: str) -> bool:
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        host = (urlsplit(text).hostname or "").rstrip(".")
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_token(
    url: str = DEFAULT_AGENT,
    token: str | None = None,
    token_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The token to send to the agent at ``url``, or ``None`` if there is none to send.

    In order: ``token``; ``$GOSSIPREG_HTTP_TOKEN``; the file ``token_file``;
    the file ``$GOSSIPREG_HTTP_TOKEN_FILE``; and, for an agent on a
    loopback address only, the default token file
    (:func:`default_token_file`) if it exists. The default file holds the
    local agent's token, so it is never sent to another host.

    Raises:
        ConfigError: a token file given cannot be read, does not exist, or is
            not private; or the default one exists but is not private.
    """
    env = os.environ if environ is None else environ
    if token:
        return token
    if env.get("GOSSIPREG_HTTP_TOKEN"):
        return env["GOSSIPREG_HTTP_TOKEN"]
    given = token_file if token_file is not None else (env.get("GOSSIPREG_HTTP_TOKEN_FILE") or None)
    if given is not None:
        found = read_token_file(given)
        if found is None:
            raise ConfigError(f"token file {os.fspath(given)!r}: does not exist")
        return found
    if not _is_loopback_url(url):
        return None
    try:
        path = default_token_file(env)
    except ConfigError:
        return None
    return read_token_file(path)


class AgentError(Exception):
    """A request to the agent failed; the message says how.

    ``status`` is the HTTP status when the agent answered with an error.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AgentClient:
    """Requests to one agent's API.

    Args:
        url: the API's address, ``http://host:port`` (``host:port`` alone is
            taken as ``http://``); a path is used as a prefix.
        token: the bearer token, if the agent requires one.
        timeout: seconds for connecting and for each read (a watch waits for
            events without limit once connected).

    Raises:
        AgentError: the URL is not an ``http://`` URL.
    """

    def __init__(self, url: str = DEFAULT_AGENT, token: str | None = None, timeout: float = 10.0) -> None:
        text = url.strip()
        if "://" not in text:
            text = f"http://{text}"
        parts = urlsplit(text)
        if parts.scheme != "http":
            raise AgentError(f"agent URL {url!r}: only http:// is supported (the agent serves plain HTTP)")
        if not parts.hostname:
            raise AgentError(f"agent URL {url!r}: has no host")
        try:
            port = parts.port or 80
        except ValueError:
            raise AgentError(f"agent URL {url!r}: the port is not a number from 0 to 65535") from None
        self.url = f"http://{parts.netloc}{parts.path.rstrip('/')}"
        self._host = parts.hostname
        self._port = port
        self._prefix = parts.path.rstrip("/")
        self._token = token or None
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"<AgentClient {self.url}>"

    # ------------------------------------------------------------ requests

    def _open(
        self, method: str, path: str, body: object | None, query: Mapping[str, str] | None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        import http.client

        target = self._prefix + path
        if query:
            target += "?" + urlencode(query)
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
        except ConnectionRefusedError:
            conn.close()
            raise AgentError(f"cannot reach the agent at {self.url}: connection refused") from None
        except socket.gaierror as exc:
            conn.close()
            raise AgentError(
                f"cannot reach the agent at {self.url}: cannot resolve {self._host}: {exc.strerror or exc}"
            ) from None
        except TimeoutError:
            conn.close()
            raise AgentError(f"the agent at {self.url} did not answer within {self._timeout:g}s") from None
        except http.client.HTTPException as exc:
            conn.close()
            raise AgentError(f"the agent at {self.url} sent an invalid answer: {exc!r}") from None
        except OSError as exc:
            conn.close()
            reason = (exc.strerror or str(exc)).lower()
            raise AgentError(f"cannot reach the agent at {self.url}: {reason}") from None
        if response.status >= 400:
            try:
                raw = response.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                conn.close()
            raise AgentError(
                f"the agent at {self.url} answered {response.status}: {_error_message(raw, response.reason)}",
                response.status,
            )
        return conn, response

    def request(
        self, method: str, path: str, *, body: object | None = None, query: Mapping[str, str] | None = None
    ) -> Any:
        """Send one request and return the decoded JSON answer.

        Args:
            method: ``GET``, ``PUT``, ``POST`` or ``DELETE``.
            path: the API path, e.g. ``/v1/services``.
            body: a JSON-serialisable body (sent as ``application/json``).
            query: query parameters.

        Raises:
            AgentError: the agent cannot be reached, answered an error (with
                its message), or sent something that is not JSON.
        """
        raw = self.text(method, path, body=body, query=query)
        try:
            return json.loads(raw)
        except ValueError:
            raise AgentError(f"the agent at {self.url} sent an invalid answer: not JSON") from None

    def text(
        self, method: str, path: str, *, body: object | None = None, query: Mapping[str, str] | None = None
    ) -> str:
        """Like :meth:`request`, but return the answer's text undecoded (``/v1/metrics``)."""
        import http.client

        conn, response = self._open(method, path, body, query)
        try:
            return response.read().decode("utf-8", errors="replace")
        except TimeoutError:
            raise AgentError(f"the agent at {self.url} did not answer within {self._timeout:g}s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise AgentError(f"the agent at {self.url} broke off its answer: {exc!r}") from None
        finally:
            conn.close()

    def watch(self, service: str | None = None, *, snapshot: bool = False) -> Iterator[dict[str, Any]]:
        """Stream watch results (``{"action", "service"}``) until the agent ends the stream.

        Raises:
            AgentError: the agent cannot be reached, refused the request, broke
                off the stream, or reported an error (e.g. the watch overflowed).
        """
        import http.client

        query = {"snapshot": "1" if snapshot else "0"}
        if service:
            query["service"] = service
        conn, response = self._open("GET", "/v1/watch", None, query)
        try:
            if conn.sock is not None:
                conn.sock.settimeout(None)  # a quiet watch is not a dead agent
            while True:
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise AgentError(f"the agent at {self.url} broke off the watch: {exc!r}") from None
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    raise AgentError(
                        f"the agent at {self.url} sent an invalid watch line: {line[:80]!r}"
                    ) from None
                if isinstance(item, dict) and "error" in item:
                    raise AgentError(f"the agent at {self.url} ended the watch: {item['error']}")
                yield item
        finally:
            conn.close()

    # ------------------------------------------------------------ shortcuts

    def services(self) -> list[dict[str, Any]]:
        """``GET /v1/services``: every (name, version), without nodes."""
        out: list[dict[str, Any]] = self.request("GET", "/v1/services")["services"]
        return out

    def service(self, name: str) -> list[dict[str, Any]]:
        """``GET /v1/services/{name}``: one entry per version, with nodes."""
        out: list[dict[str, Any]] = self.request("GET", "/v1/services/" + quote(name, safe=""))["services"]
        return out

    def members(self) -> dict[str, Any]:
        """``GET /v1/members``: ``{"member": own name, "members": [...]}``."""
        out: dict[str, Any] = self.request("GET", "/v1/members")
        return out

    def keyring(self) -> dict[str, Any]:
        """``GET /v1/keyring``: fingerprints and the primary."""
        out: dict[str, Any] = self.request("GET", "/v1/keyring")
        return out

    def keyring_op(self, op: str, key: str) -> dict[str, Any]:
        """``POST /v1/keyring/{op}`` with ``{"key": key}`` (base64)."""
        out: dict[str, Any] = self.request("POST", f"/v1/keyring/{op}", body={"key": key})
        return out


def _error_message(raw: bytes, reason: str) -> str:
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("error"), str):
        return str(obj["error"])
    text = raw.decode("utf-8", errors="replace").strip()
    return text[:200] if text else reason
