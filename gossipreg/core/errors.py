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
    "BlockingCallError",
    "ClockDriftError",
    "ConfigError",
    "DecodeError",
    "InvalidServiceError",
    "JoinError",
    "NotFoundError",
    "RegistrationLimitError",
    "RegistryClosedError",
    "RegistryError",
    "WatchOverflowError",
    "WatcherStoppedError",
]


class RegistryError(Exception):
    """Base class of every error gossipreg raises on purpose."""


@final
class RegistryClosedError(RegistryError):
    """The registry was closed; every call after close raises it.

    Raised by every call of a closed :class:`~gossipreg.AsyncRegistry` or
    :class:`~gossipreg.Registry` that needs the member (``register``,
    ``deregister``, ``get_service``, ``list_services``, ``watch``, ...).
    Watchers that were already open when the registry closed stop with
    :class:`WatcherStoppedError` instead, as in go-micro.
    """


@final
class BlockingCallError(RegistryError, RuntimeError):
    """A blocking (sync) gossipreg call was made inside a running trio program.

    :class:`~gossipreg.Registry`, its watchers and keep-alives, and the
    module-level default-registry functions (``gossipreg.register`` and
    friends) block their thread; in a trio thread that would stall every task
    (or deadlock). Inside trio use :func:`~gossipreg.open_registry`. A
    ``RuntimeError`` too, as this refusal was before it had its own class.
    """


@final
class NotFoundError(RegistryError, LookupError):
    """No service of that name is in the local view (go-micro's ``ErrNotFound``)."""


@final
class InvalidServiceError(RegistryError, ValueError):
    """A service, node, endpoint, value, service name or ``ttl`` is malformed.

    The message names the field, shows the offending value (a ``repr``, cut
    short if long) and states the rule it breaks.
    """


@final
class RegistrationLimitError(RegistryError, ValueError):
    """A registration would take this member past ``Config.max_records_per_owner``
    registrations; the message gives the limit and the count."""


@final
class ConfigError(RegistryError, ValueError):
    """A configuration value or an option of a call is invalid.

    Raised for the options of :func:`~gossipreg.open_registry` and
    :class:`~gossipreg.Registry` (``bind``, ``seeds``, ``advertise``, ``name``,
    ``keyring``, ``timeout``, ``metadata``, ...), for ``GOSSIPREG_*`` variables
    and for a watch's ``buffer`` and ``snapshot``. The message names the
    option (or variable), shows the offending value (a ``repr``, cut short if
    long; never key material) and states the rule it breaks.
    """


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


@final
class JoinError(RegistryError):
    """Seeds were given and none of them answered before the join timeout."""


@final
class WatchOverflowError(RegistryError):
    """A watcher's bounded buffer overflowed: results were lost.

    Re-list (``list_services``/``get_service``) and watch again, or watch
    with ``snapshot=True``, which does both.
    """


@final
class WatcherStoppedError(RegistryError):
    """The watcher was stopped, or its registry closed (go-micro's ``ErrWatcherStopped``)."""
