"""The registry interface: what an application codes against.

go-micro applications take a ``registry.Registry`` (an interface) and are
handed Consul, mDNS or a memory registry. Here the interface is
:class:`RegistryProtocol`, a :class:`typing.Protocol`: any object with these
methods is a registry, with no base class to inherit. It is satisfied by

* :class:`gossipreg.AsyncRegistry`, the trio-native member (:func:`gossipreg.open_registry`);
* :class:`gossipreg.testing.MemoryRegistry`, the single-process fake for unit tests;

and by any other registry with awaitable writes and local (sync) reads, such
as an asyncio front end. A type checker (``mypy --strict``) checks that an
object passed where a ``RegistryProtocol`` is expected has every member with
a compatible signature; ``isinstance(obj, RegistryProtocol)`` checks at run
time that the members exist (not their signatures).

The thread-backed sync :class:`gossipreg.Registry` is *not* one: its writes
block instead of being awaited.

Example::

    async def announce(registry: gossipreg.RegistryProtocol, service: gossipreg.Service) -> None:
        await registry.register(service, ttl=30)

    async def first_address(registry: gossipreg.RegistryProtocol, name: str) -> str:
        return registry.get_service(name)[0].nodes[0].address
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NoReturn, Protocol, Self, runtime_checkable

from .core.model import Service
from .registry import Member, Result

__all__ = ["RegistryProtocol", "WatcherProtocol"]


@runtime_checkable
class WatcherProtocol(Protocol):
    """The results of one watch (go-micro's ``registry.Watcher``), as an async iterator.

    Satisfied by :class:`gossipreg.Watcher` and the watchers of
    :class:`gossipreg.testing.MemoryRegistry`. Use it as
    ``async with registry.watch() as watcher: async for result in watcher: ...``.
    """

    async def next(self) -> Result:
        """The next result, waiting for one.

        Raises:
            WatchOverflowError: results were lost to overflow; re-list and watch again.
            WatcherStoppedError: the watcher was stopped or its registry closed.
        """
        ...

    def next_nowait(self) -> Result | None:
        """The next buffered result, or ``None`` if there is none yet (same errors as :meth:`next`)."""
        ...

    def stop(self) -> None:
        """Stop watching; buffered results can still be read, then :meth:`next` raises."""
        ...

    async def __aenter__(self) -> Self:
        """The watcher itself."""
        ...

    async def __aexit__(self, *exc: object) -> None:
        """Stop the watcher."""
        ...

    def __aiter__(self) -> AsyncIterator[Result]:
        """Iterate the results until the watcher is stopped."""
        ...


@runtime_checkable
class RegistryProtocol(Protocol):
    """A service registry (go-micro's ``registry.Registry``): awaitable writes, local reads.

    Satisfied by :class:`gossipreg.AsyncRegistry` and
    :class:`gossipreg.testing.MemoryRegistry`; code an application against it
    and hand it either. The semantics each implementation keeps:

    * :meth:`get_service` returns one :class:`~gossipreg.Service` per version
      holding its live nodes, or raises :class:`~gossipreg.NotFoundError`;
    * registrations with a ``ttl`` expire unless renewed (:meth:`keep_alive`);
    * a watcher sees ``create``, ``update`` and ``delete`` results, the
      ``delete`` carrying the removed node(s);
    * once the registry is closed, every method raises
      :class:`~gossipreg.RegistryClosedError` (``name`` and ``address`` stay
      readable) and open watchers raise :class:`~gossipreg.WatcherStoppedError`
      after their buffered results.
    """

    async def register(self, service: Service, ttl: float | None = None) -> None:
        """Register ``service``'s nodes, for ``ttl`` seconds unless renewed (``None``: no expiry)."""
        ...

    async def deregister(self, service: Service) -> None:
        """Remove this member's registrations of ``service`` (its listed nodes, or all of that
        name and version if it lists none)."""
        ...

    def get_service(self, name: str) -> list[Service]:
        """One :class:`~gossipreg.Service` per version of ``name`` with its live nodes.

        Raises:
            NotFoundError: no live node of that service is known.
        """
        ...

    def list_services(self) -> list[Service]:
        """One :class:`~gossipreg.Service` per (name, version), without nodes."""
        ...

    def watch(
        self, service: str | None = None, *, snapshot: bool = False, buffer: int = ...
    ) -> WatcherProtocol:
        """Watch changes of ``service`` (or of every service); ``snapshot`` first yields the
        current services as ``create`` results; ``buffer`` bounds the results held."""
        ...

    async def keep_alive(self, service: Service, ttl: float) -> NoReturn:
        """Register ``service`` with ``ttl`` now and again every ``ttl / 3`` until cancelled."""
        ...

    def members(self) -> list[Member]:
        """Every member this one knows, itself included, sorted by name."""
        ...

    def statistics(self) -> dict[str, int]:
        """Counters of this registry's activity."""
        ...

    @property
    def name(self) -> str:
        """This member's name."""
        ...

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` other members reach this one at."""
        ...
