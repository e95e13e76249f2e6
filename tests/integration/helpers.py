"""Shared set-up of the integration tests: real members on 127.0.0.1 sockets."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import trio

from gossipreg.core.config import Config
from gossipreg.core.errors import NotFoundError
from gossipreg.core.model import Node, Service
from gossipreg.registry import AsyncRegistry, open_registry
from gossipreg.runtime.transport import KillableTransport, NetTransport
from gossipreg.testing import FAST_CONFIG
from gossipreg.testing import wait_until as wait_until

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))

#: Real sockets: the demo's protocol (gossipreg.testing.FAST_CONFIG): the LAN profile with
#: short periods; dead members stay listed for 60 s, so a test can see DEAD or LEFT.
FAST = FAST_CONFIG


def seed_of(reg: AsyncRegistry) -> str:
    host, port = reg.address
    return f"{host}:{port}"


def service(name: str, node_id: str, version: str = "1.0.0") -> Service:
    """A one-node service."""
    return Service(name, version, nodes=(Node(node_id, "10.99.0.1:8080"),))


def visible(reg: AsyncRegistry, svc: Service) -> bool:
    """Whether ``reg``'s local view holds every node of ``svc``."""
    try:
        versions = reg.get_service(svc.name)
    except NotFoundError:
        return False
    ids = {n.id for v in versions if v.version == svc.version for n in v.nodes}
    return all(n.id in ids for n in svc.nodes)


def states(reg: AsyncRegistry) -> dict[str, str]:
    """Member name -> state, as ``reg`` sees it."""
    return {m.name: m.state for m in reg.members()}


def alive(reg: AsyncRegistry) -> set[str]:
    return {m.name for m in reg.members() if m.state == "alive"}




@contextlib.asynccontextmanager
async def cluster(
    n: int,
    *,
    config: Config = FAST,
    prefix: str = "m",
    per_member: Callable[[int], dict[str, Any]] | None = None,
    **kwargs: Any,
) -> AsyncIterator[list[AsyncRegistry]]:
    """``n`` members on 127.0.0.1 (each through the first), converged: each sees ``n`` alive.

    ``kwargs`` go to every :func:`open_registry` (default ``keyring=KEY``),
    ``per_member(i)`` gives extra ones for member ``i``.
    """
    kwargs.setdefault("keyring", KEY)
    async with contextlib.AsyncExitStack() as stack:
        regs: list[AsyncRegistry] = []
        for i in range(n):
            extra = per_member(i) if per_member else {}
            seeds = [seed_of(regs[0])] if regs else None
            reg = await stack.enter_async_context(
                open_registry("127.0.0.1:0", seeds, name=f"{prefix}{i}", config=config, seed=i,
                              timeout=10.0, **kwargs, **extra)
            )
            regs.append(reg)
        names = {r.name for r in regs}
        await wait_until(lambda: all(alive(r) == names for r in regs), f"{n} members to see {n} alive")
        yield regs


class Crashable:
    """A member run by :func:`open_registry` in its own task, that can be stopped three ways.

    :meth:`close` leaves the ``async with`` block (graceful), :meth:`cancel`
    cancels the task running it, and :meth:`crash` kills the transport first
    (abrupt, like SIGKILL).
    """

    def __init__(self) -> None:
        self.registry: AsyncRegistry | None = None
        self.transport: KillableTransport | None = None
        self._scope = trio.CancelScope()
        self._stop = trio.Event()
        self._done = trio.Event()

    @property
    def reg(self) -> AsyncRegistry:
        assert self.registry is not None
        return self.registry

    async def run(self, seeds: Sequence[str], *, task_status: trio.TaskStatus[None], **kwargs: Any) -> None:
        """Run the member; start with ``nursery.start(functools.partial(m.run, seeds, **kwargs))``."""
        kwargs.setdefault("keyring", KEY)
        kwargs.setdefault("config", FAST)
        try:
            with self._scope:
                self.transport = KillableTransport(await NetTransport.bind("127.0.0.1", 0))
                async with open_registry(seeds=seeds, transport=self.transport, **kwargs) as reg:
                    self.registry = reg
                    task_status.started()
                    await self._stop.wait()
        finally:
            if self.transport is not None:
                with trio.CancelScope(shield=True):
                    await self.transport.aclose()
            self._done.set()

    async def crash(self) -> None:
        """Stop abruptly: no leave, no more packets, sockets closed."""
        assert self.transport is not None
        self.transport.kill()
        self._scope.cancel()
        await self._done.wait()

    async def cancel(self) -> None:
        """Cancel the task running the member (``open_registry`` is exited by cancellation)."""
        self._scope.cancel()
        await self._done.wait()

    async def close(self) -> None:
        """Leave the ``async with open_registry(...)`` block normally: a graceful leave."""
        self._stop.set()
        await self._done.wait()
