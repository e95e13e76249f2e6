"""A small client of the agent's HTTP API, on the standard library only (:mod:`http.client`).

Used by the operator commands (``gossipreg members``, ``services``, ...);
usable from any script::

    client = AgentClient("http://127.0.0.1:8946", token=None)
    for svc in client.request("GET", "/v1/services")["services"]:
        print(svc["name"], svc["version"])

Every failure is an :class:`AgentError` whose message reads like a tool's:
``cannot reach the agent at http://127.0.0.1:8946: connection refused``, or
``the agent at ... answered 404: service 'x' not found``.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

__all__ = ["DEFAULT_AGENT", "AgentClient", "AgentError"]

#: The agent's API address when none is given.
DEFAULT_AGENT = "http://127.0.0.1:8946"


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
