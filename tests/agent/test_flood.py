"""The HTTP API under connection floods: eviction, head timeout, the stream cap.

Real sockets on 127.0.0.1 port 0. Every test runs under ``trio.fail_after``
as a hang guard only; no assertion is about speed.
"""

from __future__ import annotations

import contextlib
import resource
import socket

import h11
import pytest
import trio

from gossipreg.agent import http
from gossipreg.agent.http import HTTPLimits, HTTPServer, Request, Response, StreamResponse, Writer, serve_http

from .helpers import read_reply, request, service, start_agent, status_of, visible, wait_until


class Blocking:
    """A handler: ``/block`` waits for :attr:`release`; ``/stream`` streams until released; else 200."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.handled: list[str] = []
        self.streams_closed = 0

    async def __call__(self, req: Request) -> Response | StreamResponse:
        self.handled.append(req.path)
        if req.path == "/block":
            await self.release.wait()
        if req.path == "/stream":

            async def produce(write: Writer) -> None:
                await write(b"start\n")
                await self.release.wait()

            def closed() -> None:
                self.streams_closed += 1

            return StreamResponse(produce, content_type="text/plain", on_close=closed)
        return Response.json({"path": req.path, "body": req.body.decode()})


async def serve(nursery: trio.Nursery, handler: Blocking, limits: HTTPLimits) -> tuple[HTTPServer, int]:
    server = HTTPServer(handler, limits)
    port: int = await nursery.start(serve_http, server, "127.0.0.1", 0)
    return server, port


async def wait_for(predicate: object, what: str) -> None:
    assert callable(predicate)
    await wait_until(predicate, what, limit=10.0)


async def closed_by_server(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    out = bytearray()
    try:
        while chunk := await stream.receive_some(65536):
            out += chunk
    except trio.BrokenResourceError:
        pass
    return bytes(out)


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def send_get(conn: h11.Connection, stream: trio.SocketStream, path: str) -> None:
    """A GET sent through the client-side ``conn``, so that it can be kept alive."""
    request = h11.Request(method="GET", target=path, headers=[("Host", "x")])
    await stream.send_all((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))


async def kept_alive(port: int, path: str) -> tuple[trio.SocketStream, h11.Connection]:
    """A connection that made one request and stays open, waiting for its next one."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    await send_get(conn, stream, path)
    assert (await read_reply(conn, stream)).status == 200
    conn.start_next_cycle()
    return stream, conn


async def test_a_newcomer_evicts_the_connection_waiting_longest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "_SILENT_GRACE", 0.0)  # no grace: plain age order
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            handler = Blocking()
            # defer_accept off: a connection that sends nothing must reach the server here.
            server, port = await serve(nursery, handler, HTTPLimits(max_connections=3, defer_accept=False))
            idle = await trio.open_tcp_stream("127.0.0.1", port)  # sends nothing
            await wait_for(lambda: server.connections == 1, "the first connection")
            partial = await trio.open_tcp_stream("127.0.0.1", port)
            await partial.send_all(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
            await wait_for(lambda: server.connections == 2, "the second connection")
            kept, kept_conn = await kept_alive(port, "/kept")
            assert server.connections == 3

            # Full: each newcomer evicts the connection waiting longest, oldest first.
            a, _ = await kept_alive(port, "/a")
            assert await closed_by_server(idle) == b""  # closed without an answer
            b, _ = await kept_alive(port, "/b")
            assert await closed_by_server(partial) == b""
            assert server.evictions == 2
            assert "/x" not in handler.handled  # the evicted request never reached the handler

            # The kept-alive connection is next in line; a request makes it the newest waiter.
            await send_get(kept_conn, kept, "/kept-again")
            assert (await read_reply(kept_conn, kept)).status == 200
            c, _ = await kept_alive(port, "/c")
            assert await closed_by_server(a) == b""
            assert server.evictions == 3
            assert server.connections == 3
            for stream in (idle, partial, a, kept, b, c):
                await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_a_new_silent_connection_is_evicted_after_those_that_sent_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "_SILENT_GRACE", 1000.0)  # every silent connection stays young here
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            handler = Blocking()
            server, port = await serve(nursery, handler, HTTPLimits(max_connections=3, defer_accept=False))
            silent = await trio.open_tcp_stream("127.0.0.1", port)  # its request may be on its way
            await wait_for(lambda: server.connections == 1, "the first connection")
            trickle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
            for stream in trickle:
                await stream.send_all(b"G")  # a slowloris's first byte
            await wait_for(lambda: server.connections == 3, "three connections")
            await wait_until(lambda: all(s.heard() for s in list(server._waiting)[1:]), "the bytes to arrive")

            # The trickling ones go first, although the silent one is older.
            a, _ = await kept_alive(port, "/a")
            assert await closed_by_server(trickle[0]) == b""
            b, _ = await kept_alive(port, "/b")
            assert await closed_by_server(trickle[1]) == b""
            # Only silent young connections left: the oldest goes.
            c, _ = await kept_alive(port, "/c")
            assert await closed_by_server(silent) == b""
            assert server.evictions == 3
            for stream in (silent, *trickle, a, b, c):
                await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_only_when_every_slot_runs_a_handler_is_a_newcomer_refused() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            handler = Blocking()
            server, port = await serve(nursery, handler, HTTPLimits(max_connections=2, defer_accept=False))
            busy = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
            for stream in busy:
                await stream.send_all(get("/block"))
            await wait_for(lambda: handler.handled.count("/block") == 2, "two running handlers")

            async with await trio.open_tcp_stream("127.0.0.1", port) as newcomer:
                raw = await closed_by_server(newcomer)
            assert status_of(raw) == 503
            assert b"too many connections" in raw
            assert server.refused == 1
            assert server.evictions == 0

            handler.release.set()
            for stream in busy:
                assert (await read_reply(h11.Connection(h11.CLIENT), stream)).status == 200
                await stream.aclose()
            assert (await request(port, "GET", "/after")).status == 200
            nursery.cancel_scope.cancel()


async def test_a_request_head_must_arrive_within_head_timeout() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            handler = Blocking()
            server, port = await serve(nursery, handler, HTTPLimits(head_timeout=0.3, request_timeout=30))
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                for byte in b"GET / HTTP/1.1\r\nHost":  # a slowloris: one byte at a time
                    try:
                        await stream.send_all(bytes([byte]))
                    except trio.BrokenResourceError:
                        break
                    await trio.sleep(0.05)
                raw = await closed_by_server(stream)
            assert status_of(raw) == 408
            assert b"request head did not arrive within 0.3s" in raw
            assert server.timeouts == 1
            assert handler.handled == []
            nursery.cancel_scope.cancel()


async def test_a_kept_alive_connection_may_idle_longer_than_head_timeout() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            handler = Blocking()
            _, port = await serve(nursery, handler, HTTPLimits(head_timeout=0.2, idle_timeout=30))
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                conn = h11.Connection(h11.CLIENT)
                await send_get(conn, stream, "/one")
                assert (await read_reply(conn, stream)).status == 200
                conn.start_next_cycle()
                await trio.sleep(0.5)  # idle for more than head_timeout
                await send_get(conn, stream, "/two")
                assert (await read_reply(conn, stream)).status == 200
            nursery.cancel_scope.cancel()


async def test_streams_are_capped_below_the_connection_limit() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            handler = Blocking()
            server, port = await serve(nursery, handler, HTTPLimits(max_connections=4))
            assert server.limits.stream_limit == 2
            streams = []
            for _ in range(2):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(get("/stream"))
                assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
                streams.append(stream)
            third = await trio.open_tcp_stream("127.0.0.1", port)
            async with third:
                await third.send_all(get("/stream"))
                reply = await read_reply(h11.Connection(h11.CLIENT), third)
            assert reply.status == 503
            assert "the limit is 2" in reply.json()["error"]
            assert handler.streams_closed == 1  # the refused stream's watcher was let go
            assert server.streams_refused == 1
            # Plain requests still get slots.
            assert (await request(port, "GET", "/plain")).status == 200
            for stream in streams:
                await stream.aclose()
            handler.release.set()
            nursery.cancel_scope.cancel()


@pytest.mark.skipif(
    not hasattr(socket, "TCP_DEFER_ACCEPT"),
    reason="the socket option under test, TCP_DEFER_ACCEPT, exists only on Linux",
)
async def test_a_connection_that_sends_nothing_never_reaches_the_server() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            handler = Blocking()
            server, port = await serve(nursery, handler, HTTPLimits(max_connections=2))
            silent = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(5)]
            await trio.sleep(0.5)  # time enough to be accepted, were they not deferred
            assert server.connections == 0
            # A client that talks is served at once, and so is a silent one once it talks.
            assert (await request(port, "GET", "/talks")).status == 200
            await silent[0].send_all(get("/late"))
            assert (await read_reply(h11.Connection(h11.CLIENT), silent[0])).status == 200
            assert server.evictions == 0
            for stream in silent:
                await stream.aclose()
            nursery.cancel_scope.cancel()


def test_the_new_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="head_timeout"):
        HTTPLimits(head_timeout=0)
    with pytest.raises(ValueError, match="max_streams"):
        HTTPLimits(max_connections=4, max_streams=5)
    with pytest.raises(ValueError, match="max_streams"):
        HTTPLimits(max_streams=0)
    with pytest.raises(ValueError, match="backlog"):
        HTTPLimits(backlog=0)
    assert HTTPLimits(max_connections=1).stream_limit == 1
    assert HTTPLimits(max_connections=10, max_streams=3).stream_limit == 3
    assert HTTPLimits().stream_limit == 64


def _fd_budget() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft


@pytest.mark.timeout(120)
async def test_health_and_register_keep_answering_through_a_flood() -> None:
    """Idle connections reopened whenever closed (silent ones, and ones that send one byte
    then nothing), plus a slowloris opening new connections continuously, against the
    agent's API: health and an authorised register still answer, and the server never
    tracks more connections than its limit."""
    limits = HTTPLimits()  # the defaults: 128 connections, 5 s head timeout, backlog 128
    idle_flood = min(300, max(100, (_fd_budget() - 700) // 2))  # each kind over twice the limit
    slowloris = 50
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery, limits=limits)
            port = agent.http_port
            assert port is not None
            server = agent.api.server
            token = agent.prepared.http_token
            peak = {"connections": 0, "closing": 0}
            reopened = [0]

            async def monitor() -> None:
                while True:
                    peak["connections"] = max(peak["connections"], server.connections)
                    peak["closing"] = max(peak["closing"], server.closing_connections)
                    await trio.sleep(0.005)

            async def idle_client(first: bytes) -> None:
                while True:  # reopened whenever closed, until the flood is cancelled
                    try:
                        stream = await trio.open_tcp_stream("127.0.0.1", port)
                    except OSError:
                        await trio.sleep(0.05)
                        continue
                    async with stream:
                        with contextlib.suppress(trio.BrokenResourceError):
                            await stream.send_all(first)
                        await closed_by_server(stream)
                    reopened[0] += 1

            async def slow_client() -> None:
                head = get("/v1/health")
                while True:  # new connections continuously, each trickling its head
                    try:
                        stream = await trio.open_tcp_stream("127.0.0.1", port)
                    except OSError:
                        await trio.sleep(0.05)
                        continue
                    async with stream:
                        try:
                            for byte in head[:-1]:
                                await stream.send_all(bytes([byte]))
                                await trio.sleep(1.0)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass

            async with trio.open_nursery() as flood:
                flood.start_soon(monitor)
                for _ in range(idle_flood):
                    flood.start_soon(idle_client, b"")  # silent: deferred by the kernel
                    flood.start_soon(idle_client, b"G")  # past the kernel, then silent
                for _ in range(slowloris):
                    flood.start_soon(slow_client)
                await wait_until(
                    lambda: server.connections == limits.max_connections, "the flood to fill every slot"
                )

                healthy = 0
                for i in range(12):
                    reply = await request(port, "GET", "/v1/health")
                    assert reply.status == 200, reply.body
                    assert reply.json()["status"] == "ok"
                    healthy += 1
                    if i % 4 == 0:
                        svc = service("flooded", f"f{i}")
                        done = await request(
                            port, "PUT", "/v1/services", json_body=svc.to_dict(), token=token
                        )
                        assert done.status == 200, done.body
                        assert visible(agent.registry, svc)
                assert healthy == 12
                flood.cancel_scope.cancel()

            # The flood filled every slot, and the probes got in by evicting its connections.
            assert server.evictions > 0
            assert reopened[0] > 0
            assert peak["connections"] == limits.max_connections
            assert peak["closing"] <= limits.max_connections
            assert server.refused == 0  # never every slot busy: newcomers always found a slot
            metrics = (await request(port, "GET", "/v1/metrics")).body.decode()
            assert f"gossipreg_http_evictions_total {server.evictions}" in metrics
            agent.stop()
