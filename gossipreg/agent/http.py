"""A small HTTP/1.1 server on trio, with h11 doing all the parsing.

The agent's API needs little from HTTP: JSON requests and answers, one
streaming answer (the watch), keep-alive. This module supplies exactly that
and the limits an exposed server needs; it knows nothing of the registry.

* One trio task per connection, at most :attr:`HTTPLimits.max_connections`
  at once (the next ones get ``503`` and are closed).
* Request heads are bounded in bytes (h11's ``max_incomplete_event_size``)
  and in header count; bodies are bounded in bytes and read only after the
  head passed the checks (``413`` otherwise, before a byte of the body is
  read, answering ``Expect: 100-continue`` only then).
* Timeouts: a request must arrive whole within ``request_timeout``; an idle
  keep-alive connection is closed after ``idle_timeout``; every write must
  finish within ``write_timeout``.
* Protocol errors get the status h11 suggests (``400``, ``431``, ...) with a
  JSON ``{"error": ...}`` body, then the connection is closed.
* A handler returns a :class:`Response`, or a :class:`StreamResponse` whose
  producer writes the body piece by piece (chunked on HTTP/1.1); the
  producer is cancelled when the client goes away.
* An exception in a handler is logged and answered ``500`` without details.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import trio

__all__ = [
    "Handler",
    "HTTPLimits",
    "HTTPServer",
    "Request",
    "Response",
    "StreamResponse",
    "Writer",
    "serve_http",
]

log = logging.getLogger("gossipreg.agent.http")

#: Bytes read from a socket at once.
_RECEIVE_SIZE = 64 * 1024
#: Most seconds and bytes spent draining a connection before closing it.
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 256 * 1024
#: ``Server`` header of every answer.
_SERVER = b"gossipreg-agent"


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """Bounds of the HTTP server; every one is enforced per connection or request."""

    max_header_bytes: int = 16 * 1024
    """Largest request head (request line plus headers), in bytes: ``431`` above."""
    max_headers: int = 64
    """Most header fields in a request: ``431`` above."""
    max_body_bytes: int = 1024 * 1024
    """Largest request body, in bytes: ``413`` above."""
    max_connections: int = 128
    """Most connections served at once; the next ones get ``503``."""
    request_timeout: float = 10.0
    """Seconds for a whole request (head and body) to arrive once it started: ``408`` after."""
    idle_timeout: float = 30.0
    """Seconds a keep-alive connection may wait for its next request before it is closed."""
    write_timeout: float = 10.0
    """Seconds each write to the client may take before the connection is dropped."""

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_headers", "max_body_bytes", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive int, got {value!r}")
        for name in ("request_timeout", "idle_timeout", "write_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name}: must be a positive number of seconds, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name}: must be finite, got {value!r}")


@dataclass(frozen=True, slots=True)
class Request:
    """One complete HTTP request, as handed to a handler."""

    method: str
    """Upper-case method, e.g. ``"GET"``."""
    path: str
    """The target's path, percent-decoded, e.g. ``"/v1/services/greeter"``."""
    query: Mapping[str, list[str]]
    """Query parameters (percent-decoded), each name with all its values."""
    headers: Mapping[str, str]
    """Header fields by lower-case name; repeated fields joined with ``", "``."""
    body: bytes
    """The request body (``b""`` for none)."""
    peer: str = ""
    """The client's address, for logs."""

    def param(self, name: str) -> str | None:
        """The last value of query parameter ``name``, or ``None`` if absent."""
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass(frozen=True, slots=True)
class Response:
    """A complete answer: status, body and headers (``Content-Length`` is added)."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        """A JSON answer (UTF-8, one line, newline-terminated)."""
        body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
        return cls(status, body, "application/json", headers)

    @classmethod
    def error(cls, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        """A ``{"error": message}`` answer."""
        return cls.json({"error": message}, status, headers)


#: Writes one piece of a streamed body; raises if the client is gone.
Writer = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StreamResponse:
    """An answer whose body is written by ``producer`` until it returns.

    The body is chunked on HTTP/1.1 (close-delimited on HTTP/1.0). The
    producer is cancelled if the client disconnects or the server stops.
    """

    producer: Callable[[Writer], Awaitable[None]]
    status: int = 200
    content_type: str = "application/x-ndjson"
    headers: tuple[tuple[str, str], ...] = field(default=())
    on_close: Callable[[], None] | None = None
    """Called once the answer is over, however it ended (even if the producer never ran)."""


#: What serves requests: one request in, one answer out.
Handler = Callable[[Request], Awaitable[Response | StreamResponse]]


class _Reject(Exception):
    """Answer ``status`` with ``message`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Gone(Exception):
    """The client closed the connection or timed out between requests: close quietly."""


class HTTPServer:
    """Serves ``handler`` over HTTP/1.1 on trio listeners (see the module docstring).

    Use :func:`serve_http` to bind and run one; ``requests`` counts answers by
    status code (for metrics).
    """

    def __init__(self, handler: Handler, limits: HTTPLimits | None = None) -> None:
        self.handler = handler
        self.limits = limits or HTTPLimits()
        self.connections = 0
        #: Streamed answers in progress.
        self.streams = 0
        #: Answers sent, by status code.
        self.requests: dict[int, int] = {}

    async def serve_stream(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection until it closes (the per-connection task)."""
        try:
            peer = _peer_name(stream)
        except OSError:
            peer = "?"
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        self.connections += 1
        try:
            if self.connections > self.limits.max_connections:
                await self._send_simple(conn, stream, Response.error(503, "too many connections"), close=True)
                return
            await self._serve(conn, stream, peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, _Gone):
            pass
        except Exception:
            # A bug (ours, or a streaming producer's): drop this connection, keep serving.
            log.exception("http: %s: connection failed", peer)
        finally:
            try:
                await _linger_close(stream)
            finally:
                self.connections -= 1

    async def _serve(self, conn: h11.Connection, stream: trio.SocketStream, peer: str) -> None:
        first = True
        while True:
            try:
                request = await self._read_request(conn, stream, peer, first)
            except _Reject as rej:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send_simple(conn, stream, Response.error(rej.status, rej.message), close=True)
                return
            first = False
            started = time.perf_counter()
            status = await self._answer(conn, stream, request)
            log.debug(
                "http: %s %s %s -> %d (%.1f ms)",
                peer,
                request.method,
                request.path,
                status,
                (time.perf_counter() - started) * 1000.0,
            )
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
            else:
                # MUST_CLOSE on either side (Connection: close, HTTP/1.0, an unread body).
                return

    async def _receive(self, conn: h11.Connection, stream: trio.SocketStream, deadline: float) -> None:
        with trio.move_on_at(deadline):
            data = await stream.receive_some(_RECEIVE_SIZE)
            conn.receive_data(data)
            return
        raise _Reject(408, "request timed out")

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream, peer: str, first: bool
    ) -> Request:
        limits = self.limits
        # A new connection must deliver its request within request_timeout; a kept-alive
        # one may first sit idle for idle_timeout, then gets request_timeout from its
        # first byte.
        deadline = trio.current_time() + (limits.request_timeout if first else limits.idle_timeout)
        waiting = not first
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _Reject(exc.error_status_hint, f"bad request: {exc}") from None
            if event is h11.NEED_DATA:
                if waiting and conn.trailing_data[0]:
                    waiting = False
                    deadline = trio.current_time() + limits.request_timeout
                try:
                    await self._receive(conn, stream, deadline)
                except _Reject:
                    if waiting:
                        raise _Gone() from None  # idle keep-alive connection: just close it
                    raise
                if waiting:
                    waiting = False
                    deadline = trio.current_time() + limits.request_timeout
                continue
            if isinstance(event, h11.ConnectionClosed):
                raise _Gone()
            if isinstance(event, h11.Request):
                return await self._read_body(conn, stream, event, peer, deadline)
            raise _Reject(400, "bad request: unexpected data")  # pragma: no cover - h11 gives a Request first

    async def _read_body(
        self, conn: h11.Connection, stream: trio.SocketStream, head: h11.Request, peer: str, deadline: float
    ) -> Request:
        limits = self.limits
        if len(head.headers) > limits.max_headers:
            raise _Reject(
                431, f"too many header fields: {len(head.headers)}, the limit is {limits.max_headers}"
            )
        # h11 bounds only heads that arrive in pieces; one that arrived whole is measured here.
        size = len(head.target) + sum(len(n) + len(v) + 4 for n, v in head.headers)
        if size > limits.max_header_bytes:
            raise _Reject(431, f"request head is over the limit of {limits.max_header_bytes} bytes")
        headers: dict[str, str] = {}
        for raw_name, raw_value in head.headers:
            name = raw_name.decode("ascii").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        length = headers.get("content-length")
        if length is not None and int(length) > limits.max_body_bytes:
            raise _Reject(413, f"request body of {length} bytes is over the limit of {limits.max_body_bytes}")
        try:
            target = head.target.decode("ascii")
        except UnicodeDecodeError:  # pragma: no cover - h11 accepts only visible ASCII targets
            raise _Reject(400, "bad request: the target is not ASCII") from None
        parts = urlsplit(target)
        if not parts.path.startswith("/"):
            raise _Reject(400, f"bad request: target {target!r} is not an absolute path")
        try:
            path = unquote(parts.path, errors="strict")
            query = parse_qs(parts.query, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise _Reject(400, "bad request: the target is not valid UTF-8 once percent-decoded") from None
        if conn.they_are_waiting_for_100_continue:
            await self._write(stream, conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _Reject(exc.error_status_hint, f"bad request: {exc}") from None
            if event is h11.NEED_DATA:
                await self._receive(conn, stream, deadline)
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > limits.max_body_bytes:
                    raise _Reject(413, f"request body is over the limit of {limits.max_body_bytes} bytes")
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # pragma: no cover - h11 gives Data then EndOfMessage
                raise _Reject(400, "bad request: unexpected event")
        return Request(
            method=head.method.decode("ascii").upper(),
            path=path,
            query=query,
            headers=headers,
            body=bytes(body),
            peer=peer,
        )

    async def _answer(self, conn: h11.Connection, stream: trio.SocketStream, request: Request) -> int:
        try:
            response = await self.handler(request)
        except Exception:
            log.exception("http: %s %s failed", request.method, request.path)
            response = Response.error(500, "internal error; see the agent's log")
        self.requests[response.status] = self.requests.get(response.status, 0) + 1
        if isinstance(response, Response):
            await self._send_simple(conn, stream, response)
        else:
            self.streams += 1
            try:
                await self._send_stream(conn, stream, response)
            finally:
                self.streams -= 1
                if response.on_close is not None:
                    response.on_close()
        return response.status

    async def _send_simple(
        self, conn: h11.Connection, stream: trio.SocketStream, response: Response, *, close: bool = False
    ) -> None:
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Server", _SERVER.decode()),
            *response.headers,
        ]
        if close:
            headers.append(("Connection", "close"))
        head = h11.Response(status_code=response.status, headers=headers, reason=_reason(response.status))
        data = conn.send(head)
        if response.body:
            data = (data or b"") + (conn.send(h11.Data(data=response.body)) or b"")
        data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
        await self._write(stream, data)

    async def _send_stream(
        self, conn: h11.Connection, stream: trio.SocketStream, response: StreamResponse
    ) -> None:
        headers = [
            ("Content-Type", response.content_type),
            ("Cache-Control", "no-store"),
            ("Server", _SERVER.decode()),
            *response.headers,
        ]
        head = h11.Response(status_code=response.status, headers=headers, reason=_reason(response.status))
        await self._write(stream, conn.send(head))

        async def write(chunk: bytes) -> None:
            if chunk:
                await self._write(stream, conn.send(h11.Data(data=chunk)))

        gone = False

        async def watch_eof(scope: trio.CancelScope) -> None:
            # The client sends nothing while it reads a stream: EOF (or an error) means it left.
            nonlocal gone
            try:
                while data := await stream.receive_some(_RECEIVE_SIZE):
                    conn.receive_data(data)  # a pipelined request: kept for the next cycle
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            gone = True
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_eof, nursery.cancel_scope)
            try:
                await response.producer(write)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                gone = True
            nursery.cancel_scope.cancel()
        if gone:
            raise _Gone()
        await self._write(stream, conn.send(h11.EndOfMessage()))

    async def _write(self, stream: trio.SocketStream, data: bytes | None) -> None:
        if data:
            with trio.fail_after(self.limits.write_timeout):
                await stream.send_all(data)


async def _linger_close(stream: trio.SocketStream) -> None:
    """Close after our last answer without losing it to a reset.

    Closing a socket with unread input makes the kernel send a reset, which
    can destroy an answer the client has not read yet (a 413 sent before the
    body, a 503 sent before the request). So: shut our side, read and discard
    what the client still sends, for a moment, then close.
    """
    try:
        with trio.move_on_after(_LINGER_SECONDS):
            await stream.send_eof()
            drained = 0
            while drained < _LINGER_BYTES and (data := await stream.receive_some(_RECEIVE_SIZE)):
                drained += len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def _peer_name(stream: trio.SocketStream) -> str:
    addr = stream.socket.getpeername()
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)  # pragma: no cover - only TCP sockets are served


async def serve_http(
    server: HTTPServer,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Bind ``host:port`` and serve ``server`` until cancelled.

    Start it with ``port = await nursery.start(serve_http, server, host, port)``:
    the bound port (the real one when ``port`` is 0) is reported once the
    listener accepts connections.

    Raises:
        OSError: the address cannot be bound.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0 and len(listeners) > 1:
        # A name resolving to several addresses would get a different free port on
        # each; serve the first only, so the reported port is the one to use.
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    bound = int(listeners[0].socket.getsockname()[1])
    async with trio.open_nursery() as nursery:
        task_status.started(bound)
        await trio.serve_listeners(server.serve_stream, listeners, handler_nursery=nursery)
