"""Hostile input against the agent's API: never a 500, never a traceback, nothing changed.

A table of known-bad requests (each with the field and rule its error must
name), then a seeded, bounded fuzz: 2,000 random or mutated requests (bodies,
paths, methods, query strings, headers) against a live agent on 127.0.0.1:0.
Every body the fuzz sends is invalid by construction (the last mutation
always breaks it), so the registry view must be exactly what it was, and a
good registration must still work afterwards.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any
from urllib.parse import quote

import h11
import pytest
import trio

from gossipreg.agent import Agent
from gossipreg.core.errors import NotFoundError
from gossipreg.core.model import MAX_NAME_LENGTH

from .helpers import KEY2_B64, request, service, start_agent, visible

GOOD = {
    "name": "greeter",
    "version": "1.0.0",
    "metadata": {"team": "core"},
    "endpoints": [{"name": "Greeter.Hello", "request": {"name": "req", "type": "Req"}}],
    "nodes": [{"id": "greeter-9", "address": "10.0.0.9:8080", "metadata": {"zone": "a"}}],
}


def view(agent: Agent) -> list[dict[str, Any]]:
    """This agent's whole registry view, in a comparable form."""
    out = []
    for listed in agent.registry.list_services():
        try:
            versions = agent.registry.get_service(listed.name)
        except NotFoundError:
            versions = []
        out += [s.to_dict() for s in versions]
    return sorted(out, key=lambda s: json.dumps(s, sort_keys=True))


async def seeded_agent(nursery: trio.Nursery) -> Agent:
    agent = await start_agent(nursery)
    await agent.registry.register(service("greeter", "greeter-1"))
    await agent.registry.register(service("other", "other-1", version="2"), ttl=600)
    return agent


def assert_clean_error(status: int, body: bytes, allowed: set[int]) -> dict[str, Any]:
    assert status in allowed, (status, body)
    assert b"Traceback" not in body
    answer = json.loads(body)
    assert isinstance(answer, dict)
    assert isinstance(answer.get("error"), str)
    assert answer["error"]
    return answer


# ---------------------------------------------------------------- the table


def _nested(depth: int) -> Any:
    value: Any = {"name": "leaf"}
    for _ in range(depth):
        value = {"name": "v", "values": [value]}
    return value


BAD_TTLS = [
    "1e308",
    "1e999",
    "inf",
    "Infinity",
    "nan",
    "-1",
    "0",
    "0.0",
    "true",
    "abc",
    "",
    "1_0",
    "\uff11\uff12",  # full-width digits: float() would take them
    "0x10",
    " 5",
    "1e-9",  # rounds to no time at all
    "4294968",  # past the wire's longest lease
    "9" * 400,
]

BAD_BODIES: list[tuple[str, Any, str]] = [
    ("a list", [GOOD], "must be a JSON object"),
    ("a string", "greeter", "must be a JSON object"),
    ("a number", 42, "must be a JSON object"),
    ("null", None, "must be a JSON object"),
    ("true", True, "must be a JSON object"),
    ("name not a string", {**GOOD, "name": 5}, "service.name"),
    ("name empty", {**GOOD, "name": ""}, "service.name"),
    ("name with NUL", {**GOOD, "name": "gree\x00ter"}, "service.name"),
    ("name with a newline", {**GOOD, "name": "greeter\nX-Injected: 1"}, "service.name"),
    ("name with U+2028", {**GOOD, "name": "greeter\u2028"}, "service.name"),
    ("name too long", {**GOOD, "name": "g" * (MAX_NAME_LENGTH + 1)}, "service.name"),
    ("name a lone surrogate", {**GOOD, "name": "\ud800"}, "service.name"),
    ("version with a tab", {**GOOD, "version": "1\t0"}, "service.version"),
    ("nodes not a list", {**GOOD, "nodes": "greeter-9"}, "service.nodes"),
    ("node not an object", {**GOOD, "nodes": [7]}, "service.nodes[0]"),
    ("node id with ESC", {**GOOD, "nodes": [{"id": "g\x1b[31m", "address": "10.0.0.9:80"}]}, "nodes[0].id"),
    ("address with CR", {**GOOD, "nodes": [{"id": "g", "address": "10.0.0.9:80\r"}]}, "nodes[0].address"),
    ("port huge", {**GOOD, "nodes": [{"id": "g", "address": "10.0.0.9", "port": 10**40}]}, "nodes[0].port"),
    ("port a float", {**GOOD, "nodes": [{"id": "g", "address": "10.0.0.9", "port": 1e300}]}, "nodes[0].port"),
    ("port negative", {**GOOD, "nodes": [{"id": "g", "address": "10.0.0.9", "port": -1}]}, "nodes[0].port"),
    ("metadata a list", {**GOOD, "metadata": ["a"]}, "service.metadata"),
    ("metadata value a number", {**GOOD, "metadata": {"a": 1}}, "service.metadata"),
    ("endpoint name with NUL", {**GOOD, "endpoints": [{"name": "E\x00"}]}, "endpoints[0].name"),
    (
        "values nested too deep",
        {**GOOD, "endpoints": [{"name": "E", "request": _nested(40)}]},
        "nested deeper",
    ),
]


@pytest.mark.parametrize("ttl", BAD_TTLS)
async def test_a_bad_ttl_is_a_400_naming_ttl_and_registers_nothing(ttl: str) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await seeded_agent(nursery)
            assert agent.http_port is not None
            before = view(agent)
            reply = await request(
                agent.http_port,
                "PUT",
                f"/v1/services?ttl={quote(ttl)}",
                json_body=GOOD,
                token=agent.prepared.http_token,
            )
            answer = assert_clean_error(reply.status, reply.body, {400})
            assert answer["error"].startswith(
                "ttl: must be a decimal number of seconds from 0.001 to 4294967"
            )
            assert view(agent) == before
            agent.stop()


@pytest.mark.parametrize(("what", "body", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_a_bad_body_is_a_400_naming_the_field_and_changes_nothing(
    what: str, body: Any, field: str, method: str
) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await seeded_agent(nursery)
            assert agent.http_port is not None
            before = view(agent)
            reply = await request(
                agent.http_port,
                method,
                "/v1/services",
                body=json.dumps(body).encode(),
                headers=[("Content-Type", "application/json")],
                token=agent.prepared.http_token,
            )
            answer = assert_clean_error(reply.status, reply.body, {400})
            assert field in answer["error"], answer
            assert view(agent) == before
            agent.stop()


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"[" * 100_000, "not valid JSON"),
        (b'{"name": "x", "nodes": [' + b"9" * 5000 + b"]}", "not valid JSON"),  # past int() digit limit
        (b'{"name": "x"', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b'{"name": "\\ud800", "nodes": []}', "lone surrogate"),
        (b'{"name": NaN}', "service.name"),
    ],
    ids=["deep-nesting", "huge-int", "truncated", "not-utf8", "surrogate-escape", "nan-literal"],
)
async def test_malformed_json_is_a_400(raw: bytes, needle: str) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await seeded_agent(nursery)
            assert agent.http_port is not None
            before = view(agent)
            reply = await request(
                agent.http_port,
                "PUT",
                "/v1/services",
                body=raw,
                headers=[("Content-Type", "application/json")],
                token=agent.prepared.http_token,
            )
            answer = assert_clean_error(reply.status, reply.body, {400})
            assert needle in answer["error"], answer
            assert view(agent) == before
            agent.stop()


# ---------------------------------------------------------------- the fuzz


_ODD_STRINGS = [
    "",
    "\x00",
    "a\nb",
    "\r\n",
    "\u2028",
    "\x7f",
    "\x9b",
    "\ud800",
    "\udfff",
    "é",
    "😀",
    "%00",
    "../..",
    "g" * (MAX_NAME_LENGTH + 1),
    "x" * 5000,
    "greeter",
]
_ODD_NUMBERS: list[Any] = [0, -1, 1, 65535, 65536, 70000, 2**31, 2**64, 10**30, -(10**30), 1e300, -1e300, 0.5]
_ODD_VALUES: list[Any] = [None, True, False, [], {}, [[[]]], {"a": {"b": {}}}, *_ODD_NUMBERS, *_ODD_STRINGS]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.1:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if depth < 3 and roll < 0.2:
        return {rng.choice(["name", "id", "x", "nodes", ""]): _random_value(rng, depth + 1)}
    return rng.choice(_ODD_VALUES)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in a JSON document (dict keys and list indices)."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = dict(obj) if isinstance(obj, dict) else list(obj)
    copy[head] = _set(copy[head], rest, value)
    return copy


def _noise(rng: random.Random, doc: Any) -> Any:
    """A random change that may or may not keep the document valid."""
    paths = [p for p in _paths(doc) if p]
    if not paths:
        return doc
    path = rng.choice(paths)
    roll = rng.random()
    if roll < 0.5:
        return _set(doc, path, _random_value(rng))
    if roll < 0.7 and isinstance(doc, dict) and len(path) == 1:
        return {k: v for k, v in doc.items() if k != path[0]}
    if roll < 0.85:
        return _set(doc, path, [_random_value(rng)])
    return _set(doc, path, {rng.choice(["name", "id", "port"]): _random_value(rng)})


#: Mutations that always make a service body invalid for both PUT and DELETE.
_BREAKERS: list[tuple[str, Any]] = [
    ("name", 5),
    ("name", ["greeter"]),
    ("name", "gree\x00ter"),
    ("name", "greeter\n"),
    ("name", "g" * (MAX_NAME_LENGTH + 1)),
    ("name", "\ud800"),
    ("version", {"v": 1}),
    ("version", "1\x1b"),
    ("nodes", "greeter-9"),
    ("nodes", [None]),
    ("nodes", [{"id": "n\x00", "address": "10.0.0.9:1"}]),
    ("nodes", [{"id": "n", "address": "10.0.0.9", "port": 70000}]),
    ("nodes", [{"id": 5, "address": "10.0.0.9:1"}]),
    ("metadata", ["a"]),
    ("metadata", {"k": 5}),
    ("endpoints", "E"),
    ("endpoints", [{"name": "E\n"}]),
]


def _bad_service_body(rng: random.Random) -> bytes:
    doc: Any = json.loads(json.dumps(GOOD))
    for _ in range(rng.randrange(3)):
        doc = _noise(rng, doc)
    roll = rng.random()
    if roll < 0.1:
        doc = rng.choice([[doc], "greeter", 42, None, True, 1e300])  # not an object at all
    elif roll < 0.2:
        text = json.dumps(doc)
        cut = rng.randrange(len(text))
        return text[:cut].encode("utf-8", "surrogatepass")  # truncated JSON
    elif roll < 0.25:
        return b"[" * rng.randrange(1000, 200_000)
    else:
        if not isinstance(doc, dict):
            doc = {}
        key, value = rng.choice(_BREAKERS)
        doc = {**doc, key: value}
    return json.dumps(doc).encode("utf-8", "surrogatepass")


def _bad_key_body(rng: random.Random) -> bytes:
    doc = rng.choice(
        [
            {"key": _random_value(rng)},
            {"secret": "a"},
            [1],
            "k",
            None,
            {"key": "A" * rng.randrange(200)},
            {"key": KEY2_B64},  # a good key: refused (409) by an agent without a keyring
        ]
    )
    return json.dumps(doc).encode("utf-8", "surrogatepass")


_PATHS = [
    "/v1/services",
    "/v1/services/",
    "/v1/services/greeter",
    "/v1/services/%00",
    "/v1/services/%0d%0aX:%201",
    "/v1/services/%ff",
    "/v1/services/" + "g" * 3000,
    "/v1/members",
    "/v1/health",
    "/v1/metrics",
    "/v1/keyring",
    "/v1/keyring/install",
    "/v1/keyring/use",
    "/v1/keyring/remove",
    "/v1/keyring/rotate",
    "/v1/nothing",
    "/",
    "//v1//services",
    "/v1/./services",
    "/V1/SERVICES",
    "/v1/services?ttl=1e308",
    "/v1/services?ttl=nan&ttl=5",
    "/v1/services?ttl=%00",
    "/v1/services?%ff=1",
    "/v1/services?" + "a=1&" * 500,
]
_METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST"]
_CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain", "", "application/JSON"]


async def _exchange(port: int, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> int:
    """One request; returns the status (the whole answer is checked here)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        hdrs = [("Host", f"127.0.0.1:{port}"), *headers, ("Content-Length", str(len(body)))]
        data = conn.send(h11.Request(method=method, target=target, headers=hdrs)) or b""
        data += (conn.send(h11.Data(data=body)) or b"") if body else b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)
        status, content_type, payload = 0, "", bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                content_type = dict(event.headers).get(b"content-type", b"").decode()
                if method == "HEAD" or content_type == "application/x-ndjson":
                    return status  # no body, or a watch stream that would never end
            elif isinstance(event, h11.Data):
                payload += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        assert status > 0, (method, target, "closed without an answer")
        text = bytes(payload)
        assert b"Traceback" not in text, (method, target, text[:300])
        if status >= 400:
            assert content_type == "application/json", (method, target, status, content_type)
            answer = json.loads(text)
            assert isinstance(answer["error"], str), (method, target, text[:300])
            assert answer["error"], (method, target, text[:300])
        return status


@pytest.mark.timeout(180)
async def test_two_thousand_hostile_requests_get_no_500_and_change_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rng = random.Random(13)
    statuses: dict[int, int] = {}
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            agent = await seeded_agent(nursery)
            port = agent.http_port
            assert port is not None
            token = agent.prepared.http_token
            before = view(agent)
            for _ in range(2000):
                method = rng.choice(_METHODS)
                target = rng.choice(_PATHS)
                if rng.random() < 0.3:
                    target += ("&" if "?" in target else "?") + "ttl=" + rng.choice(BAD_TTLS[:12])
                headers: list[tuple[str, str]] = []
                roll = rng.random()
                if roll < 0.7:
                    headers.append(("Authorization", f"Bearer {token}"))
                elif roll < 0.8:
                    headers.append(
                        ("Authorization", rng.choice(["Bearer wrong", "Basic eA==", "Bearer", "x"]))
                    )
                ctype = rng.choice(_CONTENT_TYPES)
                if ctype:
                    headers.append(("Content-Type", ctype))
                if "/keyring" in target:
                    body = _bad_key_body(rng)
                elif method in ("PUT", "DELETE", "POST") or rng.random() < 0.2:
                    body = _bad_service_body(rng)
                else:
                    body = b""
                if len(body) > 1024 * 1024:
                    body = body[: 1024 * 1024]
                status = await _exchange(port, method, target, headers, body)
                statuses[status] = statuses.get(status, 0) + 1
                assert status < 500, (method, target, status, body[:200])
                assert status not in (200, 201, 204) or method == "GET", (method, target, status, body[:200])
            assert view(agent) == before
            assert agent.api.server.requests.get(500, 0) == 0
            # The agent still works: a good registration goes through.
            good = await request(port, "PUT", "/v1/services?ttl=30", json_body=GOOD, token=token)
            assert good.status == 200, good.body
            assert visible(agent.registry, service("greeter", "greeter-9", address="10.0.0.9:8080"))
            agent.stop()
    # No connection failed on the server's side either (a logged traceback).
    errors = [r for r in caplog.records if r.name.startswith("gossipreg") and r.levelno >= logging.ERROR]
    assert errors == []
    # The fuzz reached every layer: authorisation, routing, validation and reads.
    for expected in (200, 400, 401, 404, 405, 409, 415):
        assert statuses.get(expected, 0) > 0, statuses
