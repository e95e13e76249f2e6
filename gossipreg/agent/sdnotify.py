"""systemd's readiness protocol (``sd_notify``), for units of ``Type=notify``.

systemd gives a service the address of a datagram socket in
``$NOTIFY_SOCKET``; the service sends it newline-separated ``KEY=value``
assignments: ``READY=1`` once it is ready (``systemctl start`` returns then,
and units ordered after it start), ``STOPPING=1`` when it begins to shut
down, ``STATUS=...`` a line for ``systemctl status``. An address starting
with ``/`` is a path; one starting with ``@`` is in Linux's abstract
namespace (the ``@`` stands for a leading NUL byte). Without the variable
(not under systemd, or another ``Type=``) :func:`notify` does nothing.

The protocol is one datagram per call, so it is implemented here rather than
taken from a dependency (see ``sd_notify(3)``)::

    notify("READY=1", "STATUS=serving")
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["notify", "notify_address"]

log = logging.getLogger("gossipreg.agent")


def notify_address(environ: Mapping[str, str] | None = None) -> str | None:
    """The socket address systemd named in ``NOTIFY_SOCKET``, ready for :meth:`socket.socket.connect`.

    Returns ``None`` without the variable, and for addresses other than a
    path or an abstract name (``vsock:``, which only virtual machines use).
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    return None


def notify(*assignments: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``assignments`` (``"READY=1"``, ``"STATUS=..."``) to systemd, if it asked for them.

    Never blocks and never raises: a failure is logged as a warning (the
    service then runs on, but systemd may time out its start).

    Args:
        assignments: ``KEY=value`` strings, each without a newline.
        environ: where to find ``NOTIFY_SOCKET`` (default :data:`os.environ`).

    Returns:
        Whether the datagram was sent.

    Raises:
        ValueError: an assignment contains a newline or no ``=``.
    """
    for a in assignments:
        if "\n" in a or "=" not in a:
            raise ValueError(f"sd_notify: {a!r} is not one KEY=value line")
    address = notify_address(environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.connect(address)
            sock.sendall("\n".join(assignments).encode("utf-8"))
    except OSError as exc:
        log.warning(
            "cannot notify systemd through NOTIFY_SOCKET %s: %s",
            address.replace("\0", "@"),
            exc.strerror or exc,
            extra={"event": "agent.notify_failed"},
        )
        return False
    return True
