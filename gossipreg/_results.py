"""A watcher's bounded buffer of results, with the rules every watcher shares.

:class:`gossipreg.Watcher`, :class:`gossipreg.aio.AsyncioWatcher` and the
test kit's watchers differ in how a reader waits (trio, asyncio, a thread);
what they hold and when they raise is this class: results in order; on
overflow the buffer is emptied and the next read raises
:class:`~gossipreg.WatchOverflowError` once; once stopped, buffered results
are still read, then every read raises :class:`~gossipreg.WatcherStoppedError`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .core.errors import WatcherStoppedError, WatchOverflowError

if TYPE_CHECKING:
    from .registry import Result

__all__ = ["ResultBuffer"]


class ResultBuffer:
    """At most ``limit`` results waiting to be read (see the module docstring)."""

    __slots__ = ("_limit", "_overflowed", "_results", "_stopped")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._results: deque[Result] = deque()
        self._overflowed = False
        self._stopped = False

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopped

    def push(self, result: Result) -> bool:
        """Add ``result`` (or overflow); False if nothing changed (stopped, or already overflowed)."""
        if self._stopped or self._overflowed:
            return False
        if len(self._results) >= self._limit:
            self.lose()
        else:
            self._results.append(result)
        return True

    def lose(self) -> bool:
        """Results were lost (upstream, or here): the next read raises overflow once.
        False if nothing changed."""
        if self._stopped or self._overflowed:
            return False
        self._overflowed = True
        self._results.clear()
        return True

    def ready(self) -> bool:
        """Whether :meth:`take` would return a result or raise (a reader need not wait)."""
        return self._overflowed or bool(self._results) or self._stopped

    def take(self) -> Result | None:
        """The next result, or ``None`` if there is none yet.

        Raises:
            WatchOverflowError: results were lost to overflow (once).
            WatcherStoppedError: stopped, and every buffered result was read.
        """
        if self._overflowed:
            self._overflowed = False
            raise WatchOverflowError(
                f"watcher buffer of {self._limit} results overflowed; re-list and watch again"
            )
        if self._results:
            return self._results.popleft()
        if self._stopped:
            raise WatcherStoppedError("watcher stopped")
        return None

    def stop(self) -> bool:
        """Stop taking results; False if already stopped."""
        if self._stopped:
            return False
        self._stopped = True
        return True
