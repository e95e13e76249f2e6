"""Shared set-up of the agent tests: agents on 127.0.0.1 port 0 and a small h11 test client."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import trio

from gossipreg.agent import Agent, AgentSettings, HTTPLimits, prepare
from gossipreg.core.errors import NotFoundError
from gossipreg.core.model import Node, Service
from gossipreg.registry import AsyncRegistry
from gossipreg.testing import FAST_CHANGES
from gossipreg.testing import wait_until as wait_until

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
KEY1_B64 = base64.b64encode(KEY1).decode()
KEY2_B64 = base64.b64encode(KEY2).decode()

#: The protocol of the demo and the real-socket tests, as a [protocol] table.
FAST = dict(FAST_CHANGES)


def settings(**changes: Any) -> AgentSettings:
    """Agent settings for a test: loopback, port 0 everywhere, fast protocol, insecure by default."""
    base = AgentSettings(bind="127.0.0.1:0", http="127.0.0.1:0", protocol=FAST, join_timeout=10.0)
    if "keyring_file" not in changes:
        changes.setdefault("insecure", True)
    return base.replace(**changes)


def write_keyring(path: Path, *keys: bytes) -> Path:
    path.write_text("".join(base64.b64encode(k).decode() + "\n" for k in keys))
    return path


async def start_agent(
    nursery: trio.Nursery, *, limits: HTTPLimits | None = None, seed: int | None = None, **changes: Any
) -> Agent:
    """Start an agent in ``nursery``; it runs until ``agent.stop()`` or the nursery is cancelled."""
    agent = Agent(prepare(settings(**changes)), limits=limits, seed=seed)
    started: Agent = await nursery.start(agent.run)
    return started


def service(name: str, node_id: str, version: str = "1.0.0", address: str = "10.99.0.1:8080") -> Service:
    """A one-node service."""
    return Service(name, version, nodes=(Node(node_id, address),))


def visible(reg: AsyncRegistry, svc: Service) -> bool:
    """Whether ``reg``'s view holds every node of ``svc``."""
    try:
        versions = reg.get_service(svc.name)
    except NotFoundError:
        return False
    ids = {n.id for v in versions if v.version == svc.version for n in v.nodes}
    return all(n.id in ids for n in svc.nodes)




# ---------------------------------------------------------------- HTTP test client


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode().lower(): v.decode() for k, v in raw}


async def request(
    port: int,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
    host: str | None = None,
    token: str | None = None,
) -> Reply:
    """One request on a fresh connection, with h11 as the client."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        hdrs = [("Host", host or f"127.0.0.1:{port}")]
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.append(("Content-Type", "application/json"))
        if token is not None:
            hdrs.append(("Authorization", f"Bearer {token}"))
        hdrs.extend(headers or [])
        if body is not None:
            hdrs.append(("Content-Length", str(len(body))))
        out = conn.send(h11.Request(method=method, target=path, headers=hdrs)) or b""
        if body:
            out += conn.send(h11.Data(data=body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(out)
        return await read_reply(conn, stream)


async def read_reply(conn: h11.Connection, stream: trio.abc.Stream) -> Reply:
    """Read one whole answer from ``stream`` (skipping 1xx)."""
    status = 0
    headers: dict[str, str] = {}
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            status, headers = event.status_code, _headers(event.headers)
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return Reply(status, headers, bytes(body))
        elif isinstance(event, h11.ConnectionClosed):
            raise AssertionError("connection closed before the answer was complete")


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        out = bytearray()
        while chunk := await stream.receive_some(65536):
            out += chunk
        return bytes(out)


def status_of(raw: bytes) -> int:
    """The status code of the first answer in ``raw``."""
    return int(raw.split(b" ", 2)[1])


def json_of(raw: bytes) -> Any:
    """The JSON body of a raw answer with a Content-Length (the first one only)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return json.loads(rest[:length])


class LineStream:
    """A streamed answer (the watch) read line by line through h11."""

    def __init__(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        self.stream = stream
        self.conn = conn
        self.status = 0
        self.headers: dict[str, str] = {}
        self._buffer = b""
        self.ended = False

    @classmethod
    async def open(cls, port: int, path: str, token: str | None = None) -> LineStream:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        conn = h11.Connection(h11.CLIENT)
        hdrs = [("Host", f"127.0.0.1:{port}")]
        if token is not None:
            hdrs.append(("Authorization", f"Bearer {token}"))
        await stream.send_all(
            (conn.send(h11.Request(method="GET", target=path, headers=hdrs)) or b"")
            + (conn.send(h11.EndOfMessage()) or b"")
        )
        self = cls(stream, conn)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                self.status, self.headers = event.status_code, _headers(event.headers)
                return self

    async def line(self) -> Any:
        """The next JSON line, or ``None`` when the answer ended."""
        while b"\n" not in self._buffer:
            if self.ended:
                return None
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Data):
                self._buffer += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                self.ended = True
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    async def aclose(self) -> None:
        await self.stream.aclose()


# ---------------------------------------------------------------- an agent in a thread (for CliRunner)


@dataclass
class ThreadAgent:
    """An :class:`Agent` running ``trio.run`` in a daemon thread, for synchronous CLI tests."""

    changes: dict[str, Any] = field(default_factory=dict)
    agent: Agent | None = None
    url: str = ""
    error: BaseException | None = None
    _token: trio.lowlevel.TrioToken | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ThreadAgent:
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError("the agent did not start within 30 s")
        if self.error is not None:
            raise self.error
        return self

    def _main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    async def _run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self.agent = await start_agent(nursery, **self.changes)
            self.url = self.agent.http_url
            self._ready.set()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the agent's trio thread and return its result."""
        return trio.from_thread.run_sync(fn, trio_token=self._token)

    @property
    def address(self) -> str:
        assert self.agent is not None
        host, port = self.call(lambda: self.agent.registry.address)  # type: ignore[union-attr]
        return f"{host}:{port}"

    def stop(self) -> None:
        if self.agent is not None and self._thread is not None and self._thread.is_alive():
            self.call(self.agent.stop)
        if self._thread is not None:
            self._thread.join(15)
