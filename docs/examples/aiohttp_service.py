"""An aiohttp service that registers itself in gossipreg and balances its calls to another service.

Each instance embeds a gossip member (``gossipreg.aio``). On startup it
registers itself as a node of its service, on shutdown it deregisters. If it
has an upstream, it watches that service and hands its nodes out in turn
(round robin), so ``GET /call`` spreads over every node it currently sees,
and a node that goes away leaves the rotation. ``GET /hello`` says who answered.

    gossipreg keygen > keyring
    python aiohttp_service.py --service echo --http 127.0.0.1:8081 --gossip 127.0.0.1:7946
    python aiohttp_service.py --service echo --http 127.0.0.1:8082 --gossip 127.0.0.1:7947 \\
        --seeds 127.0.0.1:7946
    python aiohttp_service.py --service gateway --upstream echo --http 127.0.0.1:8080 \\
        --gossip 127.0.0.1:7948 --seeds 127.0.0.1:7946
    curl http://127.0.0.1:8080/call     # answered by echo nodes in turn
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import aiohttp
from aiohttp import web

from gossipreg import Node, NotFoundError, RegistryClosedError, Service, WatchOverflowError, aio


class RoundRobin:
    """The nodes of one service as a watch sees them, handed out in turn."""

    def __init__(self, registry: aio.AsyncioRegistry, service: str) -> None:
        self.registry = registry
        self.service = service
        self.nodes: dict[str, Node] = {}  # node id -> node, as of the latest watch result
        self._turn = 0

    async def follow(self) -> None:
        """Keep :attr:`nodes` up to date until cancelled."""
        async with self.registry.watch(self.service, snapshot=True) as watcher:
            while True:
                try:
                    result = await watcher.next()
                except WatchOverflowError:  # results were lost: start again from a listing
                    self.nodes = self.listed()
                    continue
                for node in result.service.nodes:
                    if result.action == "delete":
                        self.nodes.pop(node.id, None)
                    else:
                        self.nodes[node.id] = node

    def listed(self) -> dict[str, Node]:
        """The nodes of the service in the registry's local view (no network round trip)."""
        try:
            versions = self.registry.get_service(self.service)
        except NotFoundError:
            return {}
        return {node.id: node for version in versions for node in version.nodes}

    def pick(self) -> Node:
        """The next node in turn.

        Raises:
            LookupError: no node of the service is known.
        """
        ids = sorted(self.nodes)
        if not ids:
            raise LookupError(f"no node of {self.service} is known")
        self._turn += 1
        return self.nodes[ids[self._turn % len(ids)]]


BALANCER = web.AppKey("balancer", RoundRobin)


def make_app(
    registry: aio.AsyncioRegistry, *, service: str, node_id: str, address: str, upstream: str | None = None
) -> web.Application:
    """The service's application: registered on startup as ``node_id`` at ``address``
    (``host:port``), deregistered on shutdown, calling ``upstream`` (if any) in turn."""
    me = Service(service, "1.0.0", nodes=(Node(node_id, address),))
    balancer = RoundRobin(registry, upstream) if upstream else None
    session: aiohttp.ClientSession | None = None

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        nonlocal session
        follower = asyncio.create_task(balancer.follow()) if balancer else None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await registry.register(me)  # startup: callers can find this node now
            try:
                yield
            finally:
                with contextlib.suppress(RegistryClosedError):  # closed: its leave removed `me`
                    await registry.deregister(me)  # shutdown: callers stop picking this node
                if follower is not None:
                    follower.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await follower

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"service": service, "node": node_id})

    async def call(request: web.Request) -> web.Response:
        assert balancer is not None
        assert session is not None
        # A node that just went away may still be picked: try the next one.
        for _ in range(max(1, len(balancer.nodes))):
            try:
                node = balancer.pick()
            except LookupError as exc:
                raise web.HTTPServiceUnavailable(text=str(exc)) from None
            try:
                async with session.get(f"http://{node.address}/hello") as response:
                    answer = await response.json()
            except aiohttp.ClientConnectionError:
                continue
            return web.json_response({"node": node_id, "upstream": answer})
        raise web.HTTPBadGateway(text=f"no node of {upstream} answered")

    app = web.Application()
    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/hello", hello)
    if balancer is not None:
        app[BALANCER] = balancer
        app.router.add_get("/call", call)
    return app


class Running(NamedTuple):
    """A service started by :func:`serve`."""

    address: str  # host:port of its HTTP server
    registry: aio.AsyncioRegistry
    app: web.Application


@contextlib.asynccontextmanager
async def serve(
    service: str,
    *,
    upstream: str | None = None,
    http: str = "127.0.0.1:0",
    gossip: str = "127.0.0.1:0",
    seeds: list[str] | None = None,
    keyring: bytes | str | None = None,
    name: str | None = None,
) -> AsyncIterator[Running]:
    """Run the service: join the cluster, serve HTTP on ``http`` (port 0: any), register.

    On exit it deregisters, stops serving and leaves the cluster.
    """
    host, port = http.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(128)  # connections wait in the backlog from now until the server runs
    address = f"{host}:{sock.getsockname()[1]}"
    try:
        async with aio.open_registry(gossip, seeds, name=name, keyring=keyring) as registry:
            app = make_app(
                registry, service=service, node_id=registry.name, address=address, upstream=upstream
            )
            runner = web.AppRunner(app)
            await runner.setup()  # runs the startup half of `lifecycle`: registers
            try:
                await web.SockSite(runner, sock).start()
                yield Running(address, registry, app)
            finally:
                await runner.cleanup()  # the shutdown half: deregisters
    finally:
        sock.close()


async def main(args: argparse.Namespace, keyring: str) -> None:
    """Serve until SIGINT or SIGTERM."""
    async with serve(
        args.service, upstream=args.upstream, http=args.http, gossip=args.gossip, seeds=args.seeds,
        keyring=keyring, name=args.name,
    ) as running:
        print(f"{running.registry.name}: {args.service} at http://{running.address}", flush=True)
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="An aiohttp service on gossipreg.")
    parser.add_argument("--service", required=True, help="the name this service registers under")
    parser.add_argument("--upstream", help="a service to call in turn on GET /call")
    parser.add_argument("--http", default="127.0.0.1:0", help="host:port to serve HTTP on")
    parser.add_argument("--gossip", default="127.0.0.1:0", help="host:port of the gossip member")
    parser.add_argument("--seeds", nargs="*", help="host:port of members to join through")
    parser.add_argument("--keyring-file", default="keyring", help="the cluster key (gossipreg keygen)")
    parser.add_argument("--name", help="this member's (and node's) name")
    arguments = parser.parse_args()
    asyncio.run(main(arguments, Path(arguments.keyring_file).read_text().strip()))
