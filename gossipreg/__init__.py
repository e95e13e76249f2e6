"""gossipreg: a peer-to-peer service registry for Python.

Every process embeds a gossip member; members find each other, detect
failures and spread service registrations, and each answers registry queries
from its own merged local view. No central server.

The public surface is deliberately small, and this module is all of it:

* the registry: :func:`open_registry` and :class:`AsyncRegistry` (trio),
  :class:`Registry` with :class:`SyncWatcher` and :class:`KeepAlive`
  (sync, any thread), the default registry (:func:`default_registry`,
  :func:`register`, :func:`deregister`, :func:`get_service`,
  :func:`list_services`, :func:`watch`), and the interface both
  :class:`AsyncRegistry` and :class:`gossipreg.testing.MemoryRegistry` satisfy
  (:class:`RegistryProtocol`, :class:`WatcherProtocol`);
* the data: :class:`Service`, :class:`Node`, :class:`Endpoint`,
  :class:`Value`, :class:`Result`, :class:`Member`;
* the options: :class:`Config`, :class:`Keyring`, :class:`TLSFiles`,
  :class:`DriverLimits`;
* the errors a public call can raise, all under :class:`RegistryError`.

Everything else lives in ``core``, ``runtime`` and private modules; importing
from them is possible but not covered by any promise of stability.
:mod:`gossipreg.testing` (imported on its own) holds the test kit.

Two errors of :mod:`gossipreg.core.errors` are not exported here because no
public call raises them: ``DecodeError`` (bytes from a peer that do not
decode) and ``ClockDriftError`` (a peer's clock stamp too far ahead) are
caught and counted inside the member (``statistics()``) and never reach a
caller. They stay importable from :mod:`gossipreg.core.errors` for code that
drives the sans-IO core directly.

Every name here reports ``gossipreg`` as its ``__module__`` (so reprs,
tracebacks and pickles name ``gossipreg.Service``, not the module that
happens to define it).
"""

from __future__ import annotations

import inspect as _inspect
import typing as _typing
from typing import TYPE_CHECKING as _TYPE_CHECKING

from .core.config import Config as Config
from .core.crypto import Keyring as Keyring
from .core.errors import AuthenticationError as AuthenticationError
from .core.errors import BlockingCallError as BlockingCallError
from .core.errors import ConfigError as ConfigError
from .core.errors import InvalidServiceError as InvalidServiceError
from .core.errors import JoinError as JoinError
from .core.errors import NotFoundError as NotFoundError
from .core.errors import RegistrationLimitError as RegistrationLimitError
from .core.errors import RegistryClosedError as RegistryClosedError
from .core.errors import RegistryError as RegistryError
from .core.errors import WatcherStoppedError as WatcherStoppedError
from .core.errors import WatchOverflowError as WatchOverflowError
from .core.model import Endpoint as Endpoint
from .core.model import Node as Node
from .core.model import Service as Service
from .core.model import Value as Value
from .default import default_registry as default_registry
from .default import deregister as deregister
from .default import get_service as get_service
from .default import list_services as list_services
from .default import register as register
from .default import watch as watch
from .interface import RegistryProtocol as RegistryProtocol
from .interface import WatcherProtocol as WatcherProtocol
from .registry import AsyncRegistry as AsyncRegistry
from .registry import Member as Member
from .registry import Result as Result
from .registry import Status as Status
from .registry import Watcher as Watcher
from .registry import open_registry as open_registry
from .runtime.driver import DriverLimits as DriverLimits
from .sync import KeepAlive as KeepAlive
from .sync import Registry as Registry
from .sync import SyncWatcher as SyncWatcher
from .tls import TLSFiles as TLSFiles

__all__ = [
    "AsyncRegistry",
    "AuthenticationError",
    "BlockingCallError",
    "Config",
    "ConfigError",
    "DriverLimits",
    "Endpoint",
    "InvalidServiceError",
    "JoinError",
    "KeepAlive",
    "Keyring",
    "Member",
    "Node",
    "NotFoundError",
    "RegistrationLimitError",
    "Registry",
    "RegistryClosedError",
    "RegistryError",
    "RegistryProtocol",
    "Result",
    "Service",
    "Status",
    "SyncWatcher",
    "TLSFiles",
    "Value",
    "WatchOverflowError",
    "Watcher",
    "WatcherProtocol",
    "WatcherStoppedError",
    "default_registry",
    "deregister",
    "get_service",
    "list_services",
    "open_registry",
    "register",
    "watch",
]


def _version() -> str:
    """The installed distribution's version; a marker version when gossipreg runs from a
    source tree that was never installed (``pip install -e .`` installs it)."""
    import importlib.metadata  # read on first use: it costs an import of the email package

    try:
        return importlib.metadata.version("gossipreg")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


if _TYPE_CHECKING:
    __version__: str
    """The version of the installed ``gossipreg`` distribution (its package metadata)."""


def __getattr__(name: str) -> str:
    """``__version__``, read from the package metadata on first use."""
    if name == "__version__":
        version = _version()
        globals()["__version__"] = version
        return version
    raise AttributeError(f"module 'gossipreg' has no attribute {name!r}")


def _fixup_module_metadata(module_name: str, namespace: dict[str, object], names: list[str]) -> None:
    """Make the public objects ``names`` of ``namespace`` report ``module_name`` as their module.

    trio's ``fixup_module_metadata``: classes and functions, and the functions
    and classes defined in those classes, get ``__module__ = module_name``,
    so ``repr``, tracebacks, ``help`` and pickles show the public path
    (``gossipreg.Service``), which resolves, and not the private one. Only
    objects defined inside gossipreg (a ``gossipreg.`` module) are touched.

    The annotations of a class are resolved first (``typing.get_type_hints``
    looks names up in the module named by ``__module__``; under ``from
    __future__ import annotations`` they are strings, which would then no
    longer resolve), so ``get_type_hints`` and the dataclass tools built on
    it keep working.
    """
    seen: set[int] = set()

    def fix(obj: object, qualname: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str) or not module.startswith("gossipreg."):
            return
        if getattr(obj, "__qualname__", qualname) != qualname:
            return  # an alias of an object whose own name is elsewhere
        if isinstance(obj, type):
            own = _inspect.get_annotations(obj)
            if own:
                try:
                    hints = _typing.get_type_hints(obj, include_extras=True)
                except Exception:  # a name only imported for type checkers: leave them (a test checks)
                    hints = {}
                obj.__annotations__ = {k: hints.get(k, v) for k, v in own.items()}
        try:
            obj.__module__ = module_name
        except (AttributeError, TypeError):  # pragma: no cover - a builtin-like object
            return
        if isinstance(obj, type):
            for attr, value in list(obj.__dict__.items()):
                if not attr.startswith("__"):
                    fix(value, f"{qualname}.{attr}")

    for name in names:
        fix(namespace[name], name)


_fixup_module_metadata(__name__, globals(), __all__)
