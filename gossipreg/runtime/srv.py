"""Seeds from DNS SRV records: ``seeds=["srv:_gossipreg._udp.example.internal"]``.

A seed written ``srv:NAME`` stands for the targets of ``NAME``'s SRV records
(host and port each), looked up again on every try of the seeds, so that
members registered in DNS (Consul's DNS interface, a Kubernetes headless
Service's named port, any zone) are found without listing them. Targets
are tried in order of priority, then weight (heaviest first), each resolved
to addresses like any other seed.

Needs the optional ``dns`` extra (dnspython); without it, an ``srv:`` seed
is a :class:`~gossipreg.ConfigError` when the registry is opened.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dns.asyncresolver

__all__ = ["SRV_PREFIX", "available", "lookup", "make_resolver"]

#: How a seed names an SRV record instead of a host.
SRV_PREFIX = "srv:"


def available() -> bool:
    """Whether dnspython (the ``dns`` extra) is installed."""
    return importlib.util.find_spec("dns") is not None


def make_resolver() -> dns.asyncresolver.Resolver:
    """The resolver of SRV lookups: the system's configuration (``/etc/resolv.conf``)."""
    import dns.asyncresolver

    return dns.asyncresolver.Resolver()


async def lookup(name: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` targets of ``name``'s SRV records, by priority, then weight.

    Raises:
        OSError: the lookup failed (no such name, no SRV record, no answer);
            the message names ``name`` and the cause.
    """
    import dns.exception

    try:
        answer = await make_resolver().resolve(name, "SRV")
    except dns.exception.DNSException as exc:
        raise OSError(f"SRV lookup of {name}: {exc}") from None
    records = sorted(answer, key=lambda r: (r.priority, -r.weight))
    return [(r.target.to_text(omit_final_dot=True), int(r.port)) for r in records]
