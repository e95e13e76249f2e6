"""docs/examples/aiohttp_service.py, run for real: three echo backends and two gateways that
balance their calls over them, each with its own gossip member, on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from aiohttp import web

from docs.examples import aiohttp_service as example
from gossipreg import NotFoundError, aio

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))
WAIT = 10.0
T = TypeVar("T")


def run(body: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """``asyncio.run(body())``, failing after ``timeout`` seconds."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await body()

    return asyncio.run(bounded())


async def eventually(condition: Callable[[], bool], within: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.01)


def seed_of(running: example.Running) -> str:
    host, port = running.registry.address
    return f"{host}:{port}"


def rotation(gateway: example.Running) -> set[str]:
    """The backend node ids a gateway currently hands out."""
    return set(gateway.app[example.BALANCER].nodes)


def node_ids(registry: aio.AsyncioRegistry, service: str) -> set[str]:
    try:
        return {n.id for s in registry.get_service(service) for n in s.nodes}
    except NotFoundError:
        return set()


async def calls(session: aiohttp.ClientSession, gateway: example.Running, count: int) -> Counter[str]:
    """Backend node -> calls it answered, of ``count`` calls through ``gateway``."""
    answered: Counter[str] = Counter()
    for _ in range(count):
        async with session.get(f"http://{gateway.address}/call") as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        assert body["node"] == gateway.registry.name
        assert body["upstream"]["service"] == "echo"
        answered[body["upstream"]["node"]] += 1
    return answered


class Fleet:
    """Services started with :func:`example.serve`, each stopped on demand or at the end."""

    def __init__(self) -> None:
        self._running: dict[str, contextlib.AbstractAsyncContextManager[example.Running]] = {}

    async def start(self, service: str, **options: object) -> example.Running:
        manager = example.serve(service, keyring=KEY, **options)  # type: ignore[arg-type]
        running = await manager.__aenter__()
        self._running[running.registry.name] = manager
        return running

    async def stop(self, running: example.Running) -> None:
        """Shut ``running`` down as its process would on SIGTERM."""
        await self._running.pop(running.registry.name).__aexit__(None, None, None)

    async def aclose(self) -> None:
        while self._running:
            _, manager = self._running.popitem()
            await manager.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def fleet() -> AsyncIterator[Fleet]:
    started = Fleet()
    try:
        yield started
    finally:
        await started.aclose()


def test_two_gateways_balance_over_the_backends_and_follow_them() -> None:
    async def body() -> None:
        async with fleet() as services, aiohttp.ClientSession() as session:
            first = await services.start("echo", name="echo-0")
            seeds = [seed_of(first)]
            backends = [first] + [await services.start("echo", name=f"echo-{i}", seeds=seeds) for i in (1, 2)]
            gateways = [
                await services.start("gateway", upstream="echo", name=f"gateway-{i}", seeds=seeds)
                for i in (0, 1)
            ]
            everyone = {"echo-0", "echo-1", "echo-2"}
            for gateway in gateways:
                await eventually(lambda g=gateway: rotation(g) == everyone)  # type: ignore[misc]
            # Each backend registered itself at its own HTTP address.
            addresses = {n.id: n.address for s in gateways[0].registry.get_service("echo") for n in s.nodes}
            assert addresses == {b.registry.name: b.address for b in backends}
            # Round robin: each gateway spreads its calls evenly over the three backends.
            for gateway in gateways:
                assert await calls(session, gateway, 30) == dict.fromkeys(everyone, 10)
            # A backend that stops leaves the rotation of both gateways.
            await services.stop(backends[1])
            for gateway in gateways:
                await eventually(lambda g=gateway: rotation(g) == {"echo-0", "echo-2"})  # type: ignore[misc]
                assert await calls(session, gateway, 20) == {"echo-0": 10, "echo-2": 10}
            # A gateway that shuts down is gone from everyone's view.
            await eventually(lambda: node_ids(backends[0].registry, "gateway") == {"gateway-0", "gateway-1"})
            await services.stop(gateways[0])
            await eventually(lambda: node_ids(backends[0].registry, "gateway") == {"gateway-1"})
            await eventually(lambda: node_ids(gateways[1].registry, "gateway") == {"gateway-1"})
            assert await calls(session, gateways[1], 4) == {"echo-0": 2, "echo-2": 2}

    run(body)


def test_shutdown_deregisters_while_the_member_stays() -> None:
    """The application's own shutdown deregisters its node (not only its member's leave)."""

    async def body() -> None:
        async with aio.open_registry(keyring=KEY, name="host") as host:
            seed = f"{host.address[0]}:{host.address[1]}"
            async with aio.open_registry(keyring=KEY, name="other", seeds=[seed]) as other:
                app = example.make_app(host, service="echo", node_id="echo-x", address="127.0.0.1:9")
                runner = web.AppRunner(app)
                await runner.setup()  # startup registers
                assert node_ids(host, "echo") == {"echo-x"}
                await eventually(lambda: node_ids(other, "echo") == {"echo-x"})
                async with other.watch("echo") as watcher:
                    await runner.cleanup()  # shutdown deregisters
                    assert node_ids(host, "echo") == set()
                    result = await watcher.next()
                    assert (result.action, [n.id for n in result.service.nodes]) == ("delete", ["echo-x"])
                assert {m.name: m.state for m in other.members()}["host"] == "alive"

    run(body)


def test_a_gateway_without_backends_answers_503() -> None:
    async def body() -> None:
        async with fleet() as services, aiohttp.ClientSession() as session:
            gateway = await services.start("gateway", upstream="echo", name="lonely")
            async with session.get(f"http://{gateway.address}/call") as response:
                assert response.status == 503
                assert "no node of echo" in await response.text()

    run(body)


def test_getting_started_shows_the_example_as_it_is() -> None:
    """The asyncio section of docs/getting-started.md includes the example file verbatim."""
    text = (ROOT / "docs" / "getting-started.md").read_text()
    source = (ROOT / "docs" / "examples" / "aiohttp_service.py").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert source in blocks
