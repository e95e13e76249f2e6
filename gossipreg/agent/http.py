"""A small HTTP/1.1 server on trio, with h11 doing all the parsing.

The agent's API needs little from HTTP: JSON requests and answers, one
streaming answer (the watch), keep-alive. This module supplies exactly that
and the limits an exposed server needs; it knows nothing of the registry.

* One trio task per connection, at most :attr:`HTTPLimits.max_connections`
  at once. A connection that arrives when every slot is taken *evicts* the
  connection that has waited longest for (the rest of) a request: an idle
  keep-alive connection, or one whose request head or body is still
  arriving. Connections whose handler runs (or whose answer is being
  written) are never evicted; only when every slot is such a connection is
  the newcomer answered ``503``. So idle or trickling clients (slowloris)
  cannot starve the server: each new connection pushes the oldest waiting
  one out. Evictions are counted (:attr:`HTTPServer.evictions`) and logged
  at most every few seconds.
* The kernel's accept queue is short (:attr:`HTTPLimits.backlog`, 128): under
  a flood, a new connection waits behind every connection queued before it,
  so a short queue bounds that wait (excess SYNs are dropped by the kernel
  and retried by their senders). On Linux the listener also defers accepting
  a connection until its first bytes arrive (``TCP_DEFER_ACCEPT``,
  :attr:`HTTPLimits.defer_accept`), so connections that send nothing never
  reach the server at all within ``head_timeout``.
* Streamed answers (watches) are capped at :attr:`HTTPLimits.max_streams`
  (half the connections by default), so they cannot hold every slot; a
  stream over the cap is answered ``503`` instead.
* Request heads are bounded in bytes (h11's ``max_incomplete_event_size``)
  and in header count; bodies are bounded in bytes and read only after the
  head passed the checks (``413`` otherwise, before a byte of the body is
  read, answering ``Expect: 100-continue`` only then).
* Timeouts: a request head must arrive whole within ``head_timeout`` of the
  connection opening (or, on a kept-alive connection, of the next request's
  first byte), and the whole request within ``request_timeout``; an idle
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

import contextlib
import json
import logging
import math
import socket
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
    "json_line",
    "serve_http",
]

log = logging.getLogger("gossipreg.agent.http")

#: Bytes read from a socket at once.
_RECEIVE_SIZE = 64 * 1024
#: Most seconds and bytes spent draining a connection before closing it.
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 256 * 1024
#: Seconds a new connection that has sent nothing is evicted after the others.
_SILENT_GRACE = 1.0
#: Least seconds between two warnings about the connection limit.
_WARN_EVERY = 10.0
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
    """Most connections served at once. A connection beyond evicts the one waiting
    longest for a request; if every slot runs a handler, it gets ``503``."""
    max_streams: int | None = None
    """Most streamed answers (watches) at once; ``None``: half of ``max_connections``
    (at least 1). A stream beyond gets ``503``."""
    backlog: int = 128
    """Length of the kernel's queue of connections not yet accepted (the listen backlog).
    Short on purpose: under a flood, an answer waits behind every queued connection,
    and the kernel drops SYNs beyond it, which their senders retry."""
    defer_accept: bool = True
    """Where the system has it (Linux ``TCP_DEFER_ACCEPT``), have the kernel hand over a
    connection only once its first bytes have arrived, or after ``head_timeout``: a
    connection that sends nothing then takes no slot and no place in the accept queue."""
    head_timeout: float = 5.0
    """Seconds for a request head to arrive whole, from the connection's opening or,
    on a kept-alive connection, from the first byte of its next request: ``408`` after."""
    request_timeout: float = 10.0
    """Seconds for a whole request (head and body) to arrive once it started: ``408`` after."""
    idle_timeout: float = 30.0
    """Seconds a keep-alive connection may wait for its next request before it is closed."""
    write_timeout: float = 10.0
    """Seconds each write to the client may take before the connection is dropped."""

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_headers", "max_body_bytes", "max_connections", "backlog"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive int, got {value!r}")
        streams = self.max_streams
        if streams is not None and (
            isinstance(streams, bool)
            or not isinstance(streams, int)
            or not 1 <= streams <= self.max_connections
        ):
            raise ValueError(
                f"max_streams: must be None or an int from 1 to max_connections ({self.max_connections}), "
                f"got {streams!r}"
            )
        for name in ("head_timeout", "request_timeout", "idle_timeout", "write_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name}: must be a positive number of seconds, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name}: must be finite, got {value!r}")

    @property
    def stream_limit(self) -> int:
        """The effective cap on streamed answers: ``max_streams``, or half of ``max_connections``."""
        if self.max_streams is not None:
            return self.max_streams
        return max(1, self.max_connections // 2)


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
        return cls(status, json_line(obj), "application/json", headers)

    @classmethod
    def error(cls, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        """A ``{"error": message}`` answer."""
        return cls.json({"error": message}, status, headers)


def json_line(obj: Any) -> bytes:
    """``obj`` as one line of compact JSON in UTF-8, newline-terminated.

    Text that cannot be UTF-8 (a lone surrogate from a JSON ``\\ud800``
    escape, echoed in an error message) is written as a JSON escape instead
    of failing.
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


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
        #: The request was a HEAD: answer without a body.
        self.head_only = False


class _Gone(Exception):
    """The client closed the connection or timed out between requests: close quietly."""


class _Slot:
    """One served connection, as the eviction bookkeeping sees it."""

    __slots__ = ("conn", "evicted", "peer", "scope", "since")

    def __init__(self, peer: str, conn: h11.Connection) -> None:
        self.peer = peer
        self.conn = conn
        self.scope = trio.CancelScope()
        self.evicted = False
        #: When it started waiting for its current request.
        self.since = trio.current_time()

    def heard(self) -> bool:
        """Whether any byte of its next request has arrived."""
        return bool(self.conn.trailing_data[0]) or self.conn.their_state is not h11.IDLE


class HTTPServer:
    """Serves ``handler`` over HTTP/1.1 on trio listeners (see the module docstring).

    Use :func:`serve_http` to bind and run one. The counters are for metrics:
    ``requests`` (answers by status code), ``evictions`` (connections closed
    to make room for a new one), ``refused`` (connections answered ``503``
    because every slot ran a handler), ``streams_refused`` (streams answered
    ``503`` over :attr:`HTTPLimits.stream_limit`) and ``timeouts`` (requests
    answered ``408``).
    """

    def __init__(self, handler: Handler, limits: HTTPLimits | None = None) -> None:
        self.handler = handler
        self.limits = limits or HTTPLimits()
        #: Streamed answers in progress.
        self.streams = 0
        #: Answers sent, by status code.
        self.requests: dict[int, int] = {}
        #: Connections closed to make room for a newer one.
        self.evictions = 0
        #: Connections answered 503 because every slot was running a handler.
        self.refused = 0
        #: Streamed answers refused (503) over the stream limit.
        self.streams_refused = 0
        #: Requests that did not arrive in time (408).
        self.timeouts = 0
        # Every served connection, and those of them waiting for a request (evictable),
        # the one waiting longest first (dicts keep insertion order).
        self._slots: dict[_Slot, None] = {}
        self._waiting: dict[_Slot, None] = {}
        # Connections being closed (lingering after a last answer, or refused): bounded too.
        self._closing = 0
        self._unlogged_evictions = 0
        self._unlogged_refusals = 0
        self._next_warning = -math.inf

    @property
    def connections(self) -> int:
        """Connections being served now (never more than ``max_connections``)."""
        return len(self._slots)

    @property
    def idle_connections(self) -> int:
        """Of :attr:`connections`, those waiting for a request (evictable)."""
        return len(self._waiting)

    @property
    def closing_connections(self) -> int:
        """Connections being closed: lingering after their last answer, or refused.

        Bounded by ``max_connections``; beyond, connections are closed at once.
        """
        return self._closing

    async def serve_stream(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection until it closes (the per-connection task)."""
        try:
            peer = _peer_name(stream)
        except OSError:
            peer = "?"
        if len(self._slots) >= self.limits.max_connections and not self._evict_oldest():
            await self._refuse(stream)
            return
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        slot = _Slot(peer, conn)
        self._slots[slot] = None
        self._waiting[slot] = None
        try:
            with slot.scope:
                await self._serve(conn, stream, slot)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, _Gone):
            pass
        except Exception:
            # A bug (ours, or a streaming producer's): drop this connection, keep serving.
            log.exception("http: %s: connection failed", peer)
        finally:
            self._slots.pop(slot, None)
            self._waiting.pop(slot, None)
            if slot.evicted or self._closing >= self.limits.max_connections:
                # Nothing to protect (no answer in flight), or too many closing already.
                await trio.aclose_forcefully(stream)
            else:
                self._closing += 1
                try:
                    await _linger_close(stream)
                finally:
                    self._closing -= 1

    def _evict_oldest(self) -> bool:
        """Close the connection waiting longest for a request; ``False`` if none waits.

        A connection accepted less than :data:`_SILENT_GRACE` ago that has not
        sent a byte yet goes after the others: its request may be on its way
        (a client whose first segment the kernel dropped under a flood
        retransmits it within a fraction of a second).
        """
        victim = None
        grace_over = trio.current_time() - _SILENT_GRACE
        for slot in self._waiting:  # the one waiting longest first
            if slot.since <= grace_over or slot.heard():
                victim = slot
                break
        if victim is None:
            victim = next(iter(self._waiting), None)
        if victim is None:
            return False
        del self._waiting[victim]
        del self._slots[victim]
        victim.evicted = True
        victim.scope.cancel()
        self.evictions += 1
        self._unlogged_evictions += 1
        self._warn_pressure()
        return True

    async def _refuse(self, stream: trio.SocketStream) -> None:
        """Answer ``503`` to a connection over the limit (every slot runs a handler), then close."""
        self.refused += 1
        self._unlogged_refusals += 1
        self._warn_pressure()
        if self._closing >= self.limits.max_connections:
            await trio.aclose_forcefully(stream)
            return
        self._closing += 1
        try:
            conn = h11.Connection(h11.SERVER)
            answer = Response.error(503, "too many connections", (("Retry-After", "1"),))
            self.requests[503] = self.requests.get(503, 0) + 1
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                await self._send_simple(conn, stream, answer, close=True)
            await _linger_close(stream)
        finally:
            self._closing -= 1

    def _warn_pressure(self) -> None:
        """Log evictions and refusals at most once every ``_WARN_EVERY`` seconds."""
        now = trio.current_time()
        if now < self._next_warning:
            return
        self._next_warning = now + _WARN_EVERY
        log.warning(
            "http: the connection limit (%d) is reached: %d waiting connection(s) evicted, "
            "%d refused with 503 (since the last such message)",
            self.limits.max_connections,
            self._unlogged_evictions,
            self._unlogged_refusals,
            extra={
                "event": "http.connection_limit",
                "evicted": self._unlogged_evictions,
                "refused": self._unlogged_refusals,
                "evicted_total": self.evictions,
                "refused_total": self.refused,
            },
        )
        self._unlogged_evictions = 0
        self._unlogged_refusals = 0

    async def _serve(self, conn: h11.Connection, stream: trio.SocketStream, slot: _Slot) -> None:
        first = True
        while True:
            try:
                request = await self._read_request(conn, stream, slot.peer, first)
            except _Reject as rej:
                if rej.status == 408:
                    self.timeouts += 1
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    self.requests[rej.status] = self.requests.get(rej.status, 0) + 1
                    answer = Response.error(rej.status, rej.message)
                    await self._send_simple(conn, stream, answer, close=True, head_only=rej.head_only)
                return
            if slot.evicted:
                # Evicted while its last bytes were arriving: handle nothing.
                return
            # From here until the answer is out, the connection is busy: not evictable.
            self._waiting.pop(slot, None)
            first = False
            started = time.perf_counter()
            status = await self._answer(conn, stream, request)
            log.debug(
                "http: %s %s %s -> %d (%.1f ms)",
                slot.peer,
                request.method,
                request.path,
                status,
                (time.perf_counter() - started) * 1000.0,
            )
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
                slot.since = trio.current_time()
                self._waiting[slot] = None  # waiting again, the newest of all
            else:
                # MUST_CLOSE on either side (Connection: close, HTTP/1.0, an unread body).
                return

    async def _receive(
        self, conn: h11.Connection, stream: trio.SocketStream, deadline: float, message: str
    ) -> None:
        with trio.move_on_at(deadline):
            data = await stream.receive_some(_RECEIVE_SIZE)
            conn.receive_data(data)
            return
        raise _Reject(408, message)

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream, peer: str, first: bool
    ) -> Request:
        limits = self.limits
        # A new connection must deliver its request head within head_timeout and the
        # whole request within request_timeout; a kept-alive one may first sit idle for
        # idle_timeout, then gets the same times from its next request's first byte.
        now = trio.current_time()
        idle_deadline = now + limits.idle_timeout
        waiting = not first and not conn.trailing_data[0]
        head_deadline = now + min(limits.head_timeout, limits.request_timeout)
        deadline = now + limits.request_timeout
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _Reject(exc.error_status_hint, f"bad request: {exc}") from None
            if event is h11.NEED_DATA:
                if waiting:
                    try:
                        await self._receive(conn, stream, idle_deadline, "idle")
                    except _Reject:
                        raise _Gone() from None  # idle keep-alive connection: just close it
                    waiting = False
                    now = trio.current_time()
                    head_deadline = now + min(limits.head_timeout, limits.request_timeout)
                    deadline = now + limits.request_timeout
                    continue
                await self._receive(
                    conn,
                    stream,
                    head_deadline,
                    f"request timed out: the request head did not arrive within {limits.head_timeout:g}s",
                )
                continue
            if isinstance(event, h11.ConnectionClosed):
                raise _Gone()
            if isinstance(event, h11.Request):
                try:
                    return await self._read_body(conn, stream, event, peer, deadline)
                except _Reject as rej:
                    rej.head_only = event.method == b"HEAD"
                    raise
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
                await self._receive(
                    conn,
                    stream,
                    deadline,
                    f"request timed out: the request did not arrive whole within {limits.request_timeout:g}s",
                )
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
        head_only = request.method == "HEAD"  # the answer's head, without its body (RFC 9110 9.3.2)
        if isinstance(response, StreamResponse) and head_only:
            if response.on_close is not None:
                response.on_close()
            response = Response(response.status, b"", response.content_type, response.headers)
        if isinstance(response, StreamResponse) and self.streams >= self.limits.stream_limit:
            if response.on_close is not None:
                response.on_close()
            self.streams_refused += 1
            response = Response.error(
                503,
                f"too many streamed answers (watches) at once; the limit is {self.limits.stream_limit}",
                (("Retry-After", "1"),),
            )
        self.requests[response.status] = self.requests.get(response.status, 0) + 1
        if isinstance(response, Response):
            await self._send_simple(conn, stream, response, head_only=head_only)
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
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        response: Response,
        *,
        close: bool = False,
        head_only: bool = False,
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
        if response.body and not head_only:
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
    limits = server.limits
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=limits.backlog)
    defer = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if limits.defer_accept and defer is not None:
        for listener in listeners:
            with contextlib.suppress(OSError):  # an optimisation: serving works without it
                listener.socket.setsockopt(socket.IPPROTO_TCP, defer, max(1, math.ceil(limits.head_timeout)))
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
