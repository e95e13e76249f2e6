"""gossipreg: a peer-to-peer service registry for Python.

Every process embeds a gossip member; members find each other, detect
failures and spread service registrations, and each answers registry queries
from its own merged local view. No central server.

The public surface is deliberately small; everything else lives in private
or ``core`` modules.
"""

from __future__ import annotations

from .core.errors import (
    ClockDriftError,
    ConfigError,
    DecodeError,
    InvalidServiceError,
    NotFoundError,
    RegistryError,
)
from .core.model import (
    Endpoint,
    Node,
    Service,
    Value,
)

__all__ = [
    "ClockDriftError",
    "ConfigError",
    "DecodeError",
    "Endpoint",
    "InvalidServiceError",
    "Node",
    "NotFoundError",
    "RegistryError",
    "Service",
    "Value",
]

__version__ = "0.1.0.dev0"
