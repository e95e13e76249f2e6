"""Copy-on-write containers layered over a shared, immutable base.

A simulated cluster of N members holds N member tables of N entries each:
10^8 entries at 10,000 members, far more than fits in memory as N separate
dicts. But in a converged cluster the tables are nearly identical, so they can
share one base (a :class:`~gossipreg.core.membership.TableSnapshot`) and keep
only their own differences. These two containers do that:

* :class:`LayeredDict`, a mutable mapping: reads fall through a small local
  *delta* to the shared base; writes and deletions only touch the delta.
* :class:`SortedOverlay`, a mutable sorted set of strings with list-style
  positional access (``len``, ``s[i]``, :meth:`SortedOverlay.bisect_left`):
  the shared sorted base minus the removed positions plus the added names.

The base is never modified through them; sharing it is safe as long as its
owner does not modify it either. With an empty base they are ordinary
containers (every entry is in the delta), so a member outside the simulator
pays nothing for the layering but a method call. Pure data structures: no IO,
no clock, no randomness.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import TypeVar, cast, overload

__all__ = ["LayeredDict", "SortedOverlay"]

K = TypeVar("K")
V = TypeVar("V")
_T = TypeVar("_T")


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


_ABSENT = _Sentinel("<absent>")  # not in the delta: look in the base
_DELETED = _Sentinel("<deleted>")  # deleted locally: hides the base's entry


class LayeredDict(MutableMapping[K, V]):
    """A mutable mapping whose reads fall through a local delta to a shared base.

    Args:
        base: the shared mapping (not copied, never modified); None for an
            empty one.

    Iteration yields the base's surviving keys first (in the base's order),
    then the keys added locally (in insertion order).
    """

    __slots__ = ("_base", "_delta", "_len")

    def __init__(self, base: Mapping[K, V] | None = None) -> None:
        self._base: Mapping[K, V] = base if base is not None else {}
        self._delta: dict[K, V | _Sentinel] = {}
        self._len = len(self._base)

    @property
    def delta_size(self) -> int:
        """Entries held locally (changed, added or deleted relative to the base)."""
        return len(self._delta)

    def __getitem__(self, key: K) -> V:
        v = self._delta.get(key, _ABSENT)
        if v is _ABSENT:
            return self._base[key]
        if v is _DELETED:
            raise KeyError(key)
        return cast(V, v)

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, /, default: V | _T) -> V | _T: ...
    def get(self, key: K, /, default: object = None) -> object:
        """The value of ``key``, or ``default``."""
        v = self._delta.get(key, _ABSENT)
        if v is _ABSENT:
            return self._base.get(key, default)
        return default if v is _DELETED else v

    def __contains__(self, key: object) -> bool:
        v = self._delta.get(key, _ABSENT)  # type: ignore[arg-type]
        if v is _ABSENT:
            return key in self._base
        return v is not _DELETED

    def __setitem__(self, key: K, value: V) -> None:
        if key not in self:
            self._len += 1
        self._delta[key] = value

    def __delitem__(self, key: K) -> None:
        if key not in self:
            raise KeyError(key)
        if key in self._base:
            self._delta[key] = _DELETED
        else:
            del self._delta[key]
        self._len -= 1

    def __iter__(self) -> Iterator[K]:
        delta = self._delta
        for k in self._base:
            if k not in delta:
                yield k
        for k, v in delta.items():
            if v is not _DELETED:
                yield k

    def __len__(self) -> int:
        return self._len


class SortedOverlay(Sequence[str]):
    """A sorted set of strings with positional access, over a shared sorted base.

    It holds the base's names minus those removed locally, plus those added
    locally, always in sorted order: ``s[i]`` is the ``i``-th smallest,
    :meth:`bisect_left` the position a name has or would have. Positional
    access costs ``O(log n)`` plus a term in the number of local changes, so
    it stays cheap while the changes are few.

    Args:
        base: sorted, duplicate-free names (not copied, never modified).
    """

    __slots__ = ("_added", "_base", "_removed")

    def __init__(self, base: Sequence[str] = ()) -> None:
        self._base = base
        self._removed: list[int] = []  # sorted positions in the base
        self._added: list[str] = []  # sorted names not in the base

    def copy(self) -> SortedOverlay:
        """A snapshot that shares the base and copies the local changes."""
        c = SortedOverlay(self._base)
        c._removed = self._removed.copy()
        c._added = self._added.copy()
        return c

    def _base_index(self, name: str) -> int | None:
        base = self._base
        i = bisect.bisect_left(base, name)
        return i if i < len(base) and base[i] == name else None

    def __len__(self) -> int:
        return len(self._base) - len(self._removed) + len(self._added)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        i = self._base_index(name)
        if i is not None:
            r = bisect.bisect_left(self._removed, i)
            return r == len(self._removed) or self._removed[r] != i
        a = bisect.bisect_left(self._added, name)
        return a < len(self._added) and self._added[a] == name

    def add(self, name: str) -> None:
        """Insert ``name`` (no-op if present)."""
        i = self._base_index(name)
        if i is not None:
            r = bisect.bisect_left(self._removed, i)
            if r < len(self._removed) and self._removed[r] == i:
                del self._removed[r]
            return
        added = self._added
        a = bisect.bisect_left(added, name)
        if a == len(added) or added[a] != name:
            added.insert(a, name)

    def discard(self, name: str) -> None:
        """Remove ``name`` (no-op if absent)."""
        i = self._base_index(name)
        if i is not None:
            r = bisect.bisect_left(self._removed, i)
            if r == len(self._removed) or self._removed[r] != i:
                self._removed.insert(r, i)
            return
        added = self._added
        a = bisect.bisect_left(added, name)
        if a < len(added) and added[a] == name:
            del added[a]

    def bisect_left(self, name: str) -> int:
        """The position of ``name`` if present, else where it would be inserted."""
        b = bisect.bisect_left(self._base, name)
        return b - bisect.bisect_left(self._removed, b) + bisect.bisect_left(self._added, name)

    def _surviving_before(self, name: str) -> int:
        b = bisect.bisect_left(self._base, name)
        return b - bisect.bisect_left(self._removed, b)

    def _kth_surviving(self, k: int) -> int:
        """The base position of the ``k``-th (from 0) base name not removed."""
        removed = self._removed
        b = k
        while True:  # the least fixed point of b = k + |{r in removed: r <= b}|
            nxt = k + bisect.bisect_right(removed, b)
            if nxt == b:
                return b
            b = nxt

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("SortedOverlay index out of range")
        added = self._added
        if not added:
            return self._base[self._kth_surviving(index) if self._removed else index]
        if not self._base:
            return added[index]
        # How many added names come before position ``index``: the first j whose
        # merged position (j + surviving base names below it) reaches ``index``.
        lo, hi = 0, len(added)
        while lo < hi:
            mid = (lo + hi) // 2
            if mid + self._surviving_before(added[mid]) < index:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(added) and lo + self._surviving_before(added[lo]) == index:
            return added[lo]
        return self._base[self._kth_surviving(index - lo)]

    def __iter__(self) -> Iterator[str]:
        base, added = self._base, self._added
        removed = set(self._removed)
        a = 0
        for i, name in enumerate(base):
            if i in removed:
                continue
            while a < len(added) and added[a] < name:
                yield added[a]
                a += 1
            yield name
        yield from added[a:]

    def __repr__(self) -> str:
        return f"SortedOverlay({list(self)!r})"
