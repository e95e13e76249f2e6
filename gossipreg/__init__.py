"""gossipreg: a peer-to-peer service registry for Python.

Every process embeds a gossip member; members find each other, detect
failures and spread service registrations, and each answers registry queries
from its own merged local view. No central server.

The public surface is deliberately small; everything else lives in private
or ``core`` modules.
"""

from __future__ import annotations

from .core.config import Config
from .core.crypto import Keyring
from .core.errors import (
    ClockDriftError,
    ConfigError,
    DecodeError,
    InvalidServiceError,
    JoinError,
    NotFoundError,
    RegistrationLimitError,
    RegistryClosedError,
    RegistryError,
    WatcherStoppedError,
    WatchOverflowError,
)
from .core.model import (
    Endpoint,
    Node,
    Service,
    Value,
)
from .default import (
    default_registry,
    deregister,
    get_service,
    list_services,
    register,
    watch,
)
from .registry import AsyncRegistry, Member, Result, Watcher, open_registry
from .runtime.driver import DriverLimits
from .sync import KeepAlive, Registry, SyncWatcher
from .tls import TLSFiles

__all__ = [
    "AsyncRegistry",
    "ClockDriftError",
    "Config",
    "ConfigError",
    "DecodeError",
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
    "Result",
    "Service",
    "SyncWatcher",
    "TLSFiles",
    "Value",
    "WatchOverflowError",
    "Watcher",
    "WatcherStoppedError",
    "default_registry",
    "deregister",
    "get_service",
    "list_services",
    "open_registry",
    "register",
    "watch",
]

__version__ = "0.1.0.dev0"
