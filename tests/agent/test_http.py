"""The h11-on-trio HTTP server alone: limits, timeouts, keep-alive, errors (no registry)."""

from __future__ import annotations

import h11
import pytest
import trio

from gossipreg.agent.http import HTTPLimits, HTTPServer, Request, Response, StreamResponse, Writer, serve_http

from .helpers import raw_exchange, read_reply, request, status_of


async def echo(req: Request) -> Response | StreamResponse:
    if req.path == "/boom":
        raise RuntimeError("a bug in a handler")
    if req.path == "/stream":

        async def produce(write: Writer) -> None:
            for i in range(3):
                await write(f"{i}\n".encode())

        return StreamResponse(produce, content_type="text/plain")
    return Response.json(
        {"method": req.method, "path": req.path, "query": dict(req.query), "body": req.body.decode()}
    )


async def serve(nursery: trio.Nursery, limits: HTTPLimits | None = None) -> tuple[HTTPServer, int]:
    server = HTTPServer(echo, limits)
    port: int = await nursery.start(serve_http, server, "127.0.0.1", 0)
    return server, port


async def test_a_request_reaches_the_handler_decoded() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await serve(nursery)
            reply = await request(port, "POST", "/a%20b/c?x=1&x=2&y=%C3%A9", body=b"hello")
            assert reply.status == 200
            assert reply.headers["content-type"] == "application/json"
            assert reply.json() == {
                "method": "POST",
                "path": "/a b/c",
                "query": {"x": ["1", "2"], "y": ["é"]},
                "body": "hello",
            }
            nursery.cancel_scope.cancel()


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await serve(nursery)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                conn = h11.Connection(h11.CLIENT)
                for i in range(3):
                    await stream.send_all(
                        (
                            conn.send(h11.Request(method="GET", target=f"/r{i}", headers=[("Host", "x")]))
                            or b""
                        )
                        + (conn.send(h11.EndOfMessage()) or b"")
                    )
                    reply = await read_reply(conn, stream)
                    assert reply.json()["path"] == f"/r{i}"
                    conn.start_next_cycle()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(80)) + b"\r\n", 431),
        (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413),
        (b"GET relative HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ],
    ids=["garbage", "no-host", "bad-length", "huge-header", "many-headers", "big-body", "relative-target"],
)
async def test_bad_requests_get_a_4xx_json_error_and_the_connection_closes(data: bytes, status: int) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await serve(nursery)
            raw = await raw_exchange(port, data)
            assert status_of(raw) == status
            head, _, body = raw.partition(b"\r\n\r\n")
            assert b"content-type: application/json" in head.lower()
            assert b'"error"' in body
            nursery.cancel_scope.cancel()


async def test_a_chunked_body_over_the_limit_is_refused() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await serve(nursery, HTTPLimits(max_body_bytes=1000))
            chunk = b"400\r\n" + b"x" * 0x400 + b"\r\n"
            raw = await raw_exchange(
                port,
                b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + b"0\r\n\r\n",
            )
            assert status_of(raw) == 413
            nursery.cancel_scope.cancel()


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await serve(nursery)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(
                    b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
                )
                first = await stream.receive_some(65536)
                assert first.startswith(b"HTTP/1.1 100 ")
                await stream.send_all(b"hello")
                conn = h11.Connection(h11.CLIENT)
                conn.send(
                    h11.Request(method="PUT", target="/x", headers=[("Host", "x"), ("Content-Length", "5")])
                )
                conn.send(h11.Data(data=b"hello"))
                conn.send(h11.EndOfMessage())
                reply = await read_reply(conn, stream)
                assert reply.json()["body"] == "hello"
            nursery.cancel_scope.cancel()


async def test_a_slow_request_times_out_with_408() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await serve(nursery, HTTPLimits(request_timeout=0.2))
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the head never ends
                raw = bytearray()
                while chunk := await stream.receive_some(65536):
                    raw += chunk
            assert status_of(bytes(raw)) == 408
            nursery.cancel_scope.cancel()


async def test_an_idle_keep_alive_connection_is_closed_quietly() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await serve(nursery, HTTPLimits(idle_timeout=0.2))
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                conn = h11.Connection(h11.CLIENT)
                await stream.send_all(
                    (conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")])) or b"")
                    + (conn.send(h11.EndOfMessage()) or b"")
                )
                assert (await read_reply(conn, stream)).status == 200
                assert await stream.receive_some(65536) == b""  # closed, with no answer
            nursery.cancel_scope.cancel()


async def test_a_failing_handler_gets_500_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await serve(nursery)
            reply = await request(port, "GET", "/boom")
            assert reply.status == 500
            assert "a bug" not in reply.body.decode()  # no details leak
            assert "error" in reply.json()
            assert (await request(port, "GET", "/fine")).status == 200
            assert "a bug in a handler" in caplog.text
            nursery.cancel_scope.cancel()


async def test_http_1_0_gets_an_answer_then_the_connection_closes() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await serve(nursery)
            raw = await raw_exchange(port, b"GET /old HTTP/1.0\r\n\r\n")
            assert status_of(raw) == 200
            assert b'"/old"' in raw
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("target", "status"),
    [("/fine", 200), ("/stream", 200), ("/%ff", 400)],
    ids=["simple", "stream", "reject"],
)
async def test_a_head_request_gets_the_head_without_a_body(
    target: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await serve(nursery)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                conn = h11.Connection(h11.CLIENT)
                await stream.send_all(
                    (conn.send(h11.Request(method="HEAD", target=target, headers=[("Host", "x")])) or b"")
                    + (conn.send(h11.EndOfMessage()) or b"")
                )
                reply = await read_reply(conn, stream)  # h11 knows a HEAD answer has no body
            assert reply.status == status
            assert reply.body == b""
            assert "connection failed" not in caplog.text
            nursery.cancel_scope.cancel()


async def test_a_streamed_answer_is_chunked() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port = await serve(nursery)
            reply = await request(port, "GET", "/stream")
            assert reply.status == 200
            assert reply.headers["transfer-encoding"] == "chunked"
            assert reply.body == b"0\n1\n2\n"
            nursery.cancel_scope.cancel()


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_headers"):
        HTTPLimits(max_headers=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        HTTPLimits(idle_timeout=float("inf"))
