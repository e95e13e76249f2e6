"""Leaving the cluster when the process stops: SIGTERM and interpreter exit.

Docker, Kubernetes and systemd stop a process with SIGTERM, whose default
action kills it at once: no ``finally``, no :mod:`atexit`, so a member that
does not handle it never says it leaves, and its peers list it (and its
registrations) until failure detection removes it, seconds later. The sync
:class:`gossipreg.Registry` therefore closes itself on the way out:

* **SIGTERM**, when the registry is made in the main thread (the only one
  Python lets set signal handlers) and ``handle_signals`` is on: a handler
  closes every such open registry (each leaves, in parallel, within about
  ``LEAVE_TIMEOUT``), then does what the signal did before: it calls the
  handler the program had installed, or for the default action it restores
  that action and sends itself the signal again, so the process still dies
  of SIGTERM as it would have. A handler installed later by the program
  replaces this one (then the program closes its registries itself).
* **Interpreter exit** (the end of the main module, ``sys.exit``, an
  uncaught exception or ``KeyboardInterrupt`` from Ctrl-C): an :mod:`atexit`
  hook closes every registry still open. SIGINT needs no handler of ours:
  its default turns it into ``KeyboardInterrupt``, which a ``with`` block or
  this hook already turns into a leave, while a program (or a REPL) that
  catches it keeps its registry.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sync import Registry

__all__ = ["close_all", "forget", "track"]

log = logging.getLogger("gossipreg")

#: Every open sync registry, closed at interpreter exit.
_open: weakref.WeakSet[Registry] = weakref.WeakSet()
#: The open registries made in the main thread with ``handle_signals``.
_on_signal: weakref.WeakSet[Registry] = weakref.WeakSet()
#: The SIGTERM handler before ours, while ours is installed.
_previous: Any = None
_installed = False
_mutex = threading.RLock()  # reentrant: the SIGTERM handler may interrupt its holder


def track(registry: Registry, *, handle_signals: bool) -> None:
    """Close ``registry`` at interpreter exit, and on SIGTERM if ``handle_signals``
    and this is the main thread (elsewhere the signal part is skipped, with a debug log)."""
    global _installed, _previous
    with _mutex:
        _open.add(registry)
        if not handle_signals:
            return
        if threading.current_thread() is not threading.main_thread():
            log.debug("gossipreg: %s made outside the main thread; SIGTERM is not handled for it", registry)
            return
        _on_signal.add(registry)
        if not _installed:
            _previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _on_sigterm)
            _installed = True


def forget(registry: Registry) -> None:
    """``registry`` is closed: stop tracking it; restore the previous SIGTERM handler
    when no registry needs ours any more (unless the program replaced ours since)."""
    global _installed, _previous
    with _mutex:
        _open.discard(registry)
        _on_signal.discard(registry)
        if not _installed or _on_signal or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, _previous)
        _installed, _previous = False, None


def close_all(registries: list[Registry]) -> None:
    """Close ``registries``: every leave is requested first, then each is waited for."""
    for registry in registries:
        registry._shutdown(wait=False)
    for registry in registries:
        registry._shutdown(wait=True)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    previous = _previous
    registries = list(_on_signal)
    if registries:
        log.info("gossipreg: SIGTERM: leaving the cluster (%d registr%s)", len(registries),
                 "y" if len(registries) == 1 else "ies")
        close_all(registries)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL (or None: set from outside Python): die of the signal, as before
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _at_exit() -> None:
    close_all([r for r in list(_open) if not r.closed])


atexit.register(_at_exit)
