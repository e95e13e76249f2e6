"""The one small hierarchy of gossipreg errors.

Every error gossipreg raises on purpose derives from :class:`RegistryError`.
Errors caused by a *remote* peer (bytes that do not decode, a datagram that
fails authentication) are distinct from errors caused by the *local* caller
(an invalid service, a bad configuration), so a driver can count and drop the
former and surface the latter.
"""

from __future__ import annotations

from typing import final

__all__ = [
    "AuthenticationError",
    "ClockDriftError",
    "ConfigError",
    "DecodeError",
    "InvalidServiceError",
    "NotFoundError",
    "RegistryError",
]


class RegistryError(Exception):
    """Base class of every error gossipreg raises on purpose."""


@final
class NotFoundError(RegistryError, LookupError):
    """No service of that name is in the local view (go-micro's ``ErrNotFound``)."""


@final
class InvalidServiceError(RegistryError, ValueError):
    """A service, node, endpoint or value is malformed; the message names the field."""


@final
class ConfigError(RegistryError, ValueError):
    """A configuration value is invalid; the message names the field."""


@final
class DecodeError(RegistryError):
    """Bytes received from a remote peer are not a valid gossipreg message.

    Decoders of untrusted input raise this and nothing else.
    """


@final
class AuthenticationError(RegistryError):
    """A sealed datagram or frame failed authentication with every key in the ring."""


@final
class ClockDriftError(RegistryError):
    """A remote hybrid-logical-clock stamp is too far ahead of the local clock.

    The stamp is rejected (not adopted), so one member with a wrong clock cannot
    drag every other member's clock, or win every last-writer-wins race, with it.
    """
