"""Exception groups: trio's nurseries wrap what they propagate; callers expect the exception."""

from __future__ import annotations

__all__ = ["single_exception"]


def single_exception(exc: BaseException) -> BaseException:
    """The one exception inside nested one-member exception groups, or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
