"""The copy-on-write containers of gossipreg.core.layered, against plain models.

* :class:`LayeredDict` behaves like a ``dict`` built from a copy of its base
  plus the same operations, and never writes to the base;
* :class:`SortedOverlay` behaves like ``sorted(set)`` (positions, negative
  indexes, slices, ``bisect_left``, ``in``, iteration), its copies are
  independent of the original and of each other, and the base stays intact.

Keys and names come from small alphabets, so operations hit base entries,
added entries and absent ones alike, and added names interleave with base names.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from gossipreg.core.layered import LayeredDict, SortedOverlay

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STATEFUL = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# ------------------------------------------------------------------ LayeredDict

KEYS = ("a", "b", "c", "d", "e", "f", "g", "h")
keys = st.sampled_from(KEYS)
values = st.integers(-3, 3) | st.none()  # None too: get() must not confuse a stored None with absence
bases = st.dictionaries(keys, values, max_size=len(KEYS))
MISSING = object()


def check_dict(d: LayeredDict[str, int | None], model: dict[str, int | None]) -> None:
    """Every read of ``d`` agrees with ``model``."""
    assert len(d) == len(model)
    listed = list(d)
    assert len(listed) == len(set(listed)), f"iteration repeats a key: {listed}"
    assert set(listed) == set(model)
    assert dict(d.items()) == model
    assert sorted(d.keys()) == sorted(model)
    assert sorted(map(repr, d.values())) == sorted(map(repr, model.values()))
    assert d == model  # Mapping.__eq__
    for k in (*KEYS, "zz"):
        assert (k in d) == (k in model)
        assert d.get(k, MISSING) == model.get(k, MISSING)
        assert d.get(k) == model.get(k)
        if k in model:
            assert d[k] == model[k]
        else:
            with pytest.raises(KeyError):
                d[k]
    assert d.delta_size >= 0


class LayeredDictMachine(RuleBasedStateMachine):
    """A LayeredDict over a random base, beside a dict copied from the base."""

    def __init__(self) -> None:
        super().__init__()
        self.base: Mapping[str, int | None] = {}
        self.pristine: dict[str, int | None] = {}
        self.d: LayeredDict[str, int | None] = LayeredDict()
        self.model: dict[str, int | None] = {}

    @initialize(base=bases, proxy=st.booleans())
    def start(self, base: dict[str, int | None], proxy: bool) -> None:
        self.pristine = dict(base)
        self.base = MappingProxyType(base) if proxy else base
        self.d = LayeredDict(self.base)
        self.model = dict(base)

    @rule(key=keys, value=values)
    def set(self, key: str, value: int | None) -> None:
        self.d[key] = value
        self.model[key] = value

    @rule(key=keys)
    def delete(self, key: str) -> None:
        if key in self.model:
            del self.d[key]
            del self.model[key]
        else:
            with pytest.raises(KeyError):
                del self.d[key]

    @rule(key=keys)
    def pop(self, key: str) -> None:
        if key in self.model:
            assert self.d.pop(key) == self.model.pop(key)
        else:
            with pytest.raises(KeyError):
                self.d.pop(key)

    @rule(key=keys, default=values)
    def pop_with_default(self, key: str, default: int | None) -> None:
        assert self.d.pop(key, default) == self.model.pop(key, default)

    @rule(key=keys, default=values)
    def setdefault(self, key: str, default: int | None) -> None:
        assert self.d.setdefault(key, default) == self.model.setdefault(key, default)

    @rule(items=st.dictionaries(keys, values, max_size=3))
    def update(self, items: dict[str, int | None]) -> None:
        self.d.update(items)
        self.model.update(items)

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def popitem(self) -> None:
        k, v = self.d.popitem()
        assert k in self.model
        assert self.model.pop(k) == v

    @rule()
    def clear(self) -> None:
        self.d.clear()
        self.model.clear()
        assert self.d.delta_size <= len(self.pristine)  # only the masks of the base's keys

    @rule(key=keys, default=values)
    def get_with_default(self, key: str, default: int | None) -> None:
        assert self.d.get(key, default) == self.model.get(key, default)

    @invariant()
    def agrees_with_the_model(self) -> None:
        check_dict(self.d, self.model)

    @invariant()
    def base_is_never_modified(self) -> None:
        assert dict(self.base) == self.pristine
        assert list(self.base) == list(self.pristine)  # not even reordered


LayeredDictMachine.TestCase.settings = STATEFUL
test_layered_dict_state_machine = LayeredDictMachine.TestCase


def test_layered_dict_without_base_is_a_plain_dict() -> None:
    d: LayeredDict[str, int] = LayeredDict()
    assert len(d) == 0
    assert list(d) == []
    assert d.delta_size == 0
    d["x"] = 1
    d["y"] = 2
    del d["x"]
    assert dict(d) == {"y": 2}
    assert d.delta_size == 1  # a key never in the base leaves no mask behind


def test_layered_dict_masks_deleted_base_keys_and_shares_the_base() -> None:
    base = {"a": 1, "b": 2, "c": 3}
    d = LayeredDict(base)
    assert d.delta_size == 0
    assert dict(d) == base
    del d["a"]
    d["b"] = 20
    d["z"] = 26
    assert dict(d) == {"b": 20, "c": 3, "z": 26}
    assert "a" not in d
    assert d.get("a") is None
    assert d.get("a", 0) == 0
    assert d.delta_size == 3
    d["a"] = 10  # re-adding a masked key
    assert d["a"] == 10
    assert len(d) == 4
    assert base == {"a": 1, "b": 2, "c": 3}
    # Two layers over one base do not see each other's changes.
    e = LayeredDict(base)
    assert dict(e) == base
    e.clear()
    assert len(e) == 0
    assert dict(d) == {"a": 10, "b": 20, "c": 3, "z": 26}
    assert base == {"a": 1, "b": 2, "c": 3}


def test_layered_dict_value_none_is_not_absence() -> None:
    d: LayeredDict[str, int | None] = LayeredDict({"a": None})
    assert "a" in d
    assert d["a"] is None
    assert d.get("a", 5) is None
    d["b"] = None
    assert d.get("b", 5) is None
    assert len(d) == 2
    assert d.pop("b", 7) is None
    assert d.get("b", 5) == 5


# ---------------------------------------------------------------- SortedOverlay

# Short strings over a tiny alphabet: added names fall between, before and after
# base names ("" < "a" < "aa" < "ab" < "b" ...).
names = st.text(alphabet="abc", max_size=3)
PROBES = ["", *("".join(p) for n in range(1, 4) for p in itertools.product("abc", repeat=n)), "c~", "~"]
sorted_bases = st.lists(names, unique=True, max_size=12).map(lambda xs: tuple(sorted(xs)))


def check_overlay(s: SortedOverlay, ref: list[str]) -> None:
    """Every read of ``s`` agrees with the sorted list ``ref``."""
    n = len(ref)
    assert len(s) == n
    assert list(s) == ref
    assert list(reversed(s)) == ref[::-1]
    assert bool(s) == bool(ref)
    for i in range(-n, n):
        assert s[i] == ref[i], (i, ref)
    for i in (n, n + 1, -n - 1, -n - 2):
        with pytest.raises(IndexError):
            s[i]
    for probe in PROBES:
        assert s.bisect_left(probe) == bisect.bisect_left(ref, probe), (probe, ref)
        assert (probe in s) == (probe in ref), (probe, ref)
    for name in ref:
        assert s.bisect_left(name) == ref.index(name)
        assert name in s
    assert 1 not in s  # type: ignore[comparison-overlap]
    assert None not in s


def check_slices(s: SortedOverlay, ref: list[str]) -> None:
    n = len(ref)
    bounds = sorted({None, -n - 2, -n, -1, 0, 1, n // 2, n - 1, n, n + 2}, key=lambda b: (b is not None, b))
    for start, stop, step in itertools.product(bounds, bounds, (None, 1, 2, 3, -1, -2)):
        sl = slice(start, stop, step)
        assert list(s[sl]) == ref[sl], (sl, ref)


class SortedOverlayMachine(RuleBasedStateMachine):
    """A SortedOverlay over a random sorted base, plus copies of it, each beside its sorted-set model."""

    overlays = Bundle("overlays")

    def __init__(self) -> None:
        super().__init__()
        self.base: Sequence[str] = ()
        self.pristine: tuple[str, ...] = ()
        self.pairs: list[tuple[SortedOverlay, set[str]]] = []

    @initialize(target=overlays, base=sorted_bases, as_list=st.booleans())
    def start(self, base: tuple[str, ...], as_list: bool) -> int:
        self.pristine = base
        self.base = list(base) if as_list else base
        self.pairs.append((SortedOverlay(self.base), set(base)))
        return 0

    @rule(index=overlays, name=names)
    def add(self, index: int, name: str) -> None:
        s, model = self.pairs[index]
        s.add(name)
        model.add(name)

    @rule(index=overlays, name=names)
    def discard(self, index: int, name: str) -> None:
        s, model = self.pairs[index]
        s.discard(name)
        model.discard(name)

    @rule(index=overlays, data=st.data())
    def discard_a_present_one(self, index: int, data: st.DataObject) -> None:
        s, model = self.pairs[index]
        if model:
            name = data.draw(st.sampled_from(sorted(model)))
            s.discard(name)
            model.discard(name)

    @rule(index=overlays)
    def discard_the_whole_base(self, index: int) -> None:
        s, model = self.pairs[index]
        for name in self.pristine:
            s.discard(name)
            model.discard(name)

    @precondition(lambda self: len(self.pairs) < 5)
    @rule(target=overlays, index=overlays)
    def copy(self, index: int) -> int:
        s, model = self.pairs[index]
        self.pairs.append((s.copy(), set(model)))
        return len(self.pairs) - 1

    @rule(index=overlays)
    def slices(self, index: int) -> None:
        s, model = self.pairs[index]
        check_slices(s, sorted(model))

    @invariant()
    def every_overlay_agrees_with_its_model(self) -> None:
        for s, model in self.pairs:
            check_overlay(s, sorted(model))

    @invariant()
    def base_is_never_modified(self) -> None:
        assert tuple(self.base) == self.pristine


SortedOverlayMachine.TestCase.settings = STATEFUL
test_sorted_overlay_state_machine = SortedOverlayMachine.TestCase


@st.composite
def base_and_ops(draw: st.DrawFn) -> tuple[tuple[str, ...], list[tuple[bool, str]]]:
    """A sorted base and add/discard operations, half of them about base names."""
    base = draw(sorted_bases)
    touched = st.sampled_from(base) | names if base else names
    return base, draw(st.lists(st.tuples(st.booleans(), touched), max_size=30))


@PROPS
@given(case=base_and_ops())
def test_sorted_overlay_matches_sorted_set(case: tuple[tuple[str, ...], list[tuple[bool, str]]]) -> None:
    base, ops = case
    s = SortedOverlay(base)
    model = set(base)
    for add, name in ops:
        if add:
            s.add(name)
            model.add(name)
        else:
            s.discard(name)
            model.discard(name)
    ref = sorted(model)
    check_overlay(s, ref)
    check_slices(s, ref)
    assert tuple(base) == tuple(sorted(set(base)))  # untouched (still the sorted input)


def test_sorted_overlay_empty_base() -> None:
    s = SortedOverlay()
    check_overlay(s, [])
    check_slices(s, [])
    for name in ("m", "c", "x", "a", "c"):
        s.add(name)
    check_overlay(s, ["a", "c", "m", "x"])
    s.discard("c")
    s.discard("nope")
    check_overlay(s, ["a", "m", "x"])
    check_slices(s, ["a", "m", "x"])


def test_sorted_overlay_all_removed_base() -> None:
    base = ("b", "d", "f", "h")
    s = SortedOverlay(base)
    for name in base:
        s.discard(name)
    check_overlay(s, [])
    with pytest.raises(IndexError):
        s[0]
    s.add("e")
    check_overlay(s, ["e"])
    s.add("a")
    s.add("z")
    check_overlay(s, ["a", "e", "z"])
    s.add("d")  # a base name comes back
    check_overlay(s, ["a", "d", "e", "z"])
    check_slices(s, ["a", "d", "e", "z"])
    assert base == ("b", "d", "f", "h")


def test_sorted_overlay_interleaved_additions_and_removals() -> None:
    base = tuple(f"n{i:02d}" for i in range(0, 40, 2))  # n00, n02, ..., n38
    s = SortedOverlay(base)
    model = set(base)
    for i in range(1, 40, 4):  # n01, n05, ... between base names
        s.add(f"n{i:02d}")
        model.add(f"n{i:02d}")
    for i in range(0, 40, 6):  # n00, n06, ... removed from the base
        s.discard(f"n{i:02d}")
        model.discard(f"n{i:02d}")
    for extra in ("a", "n", "n000", "n385", "z"):  # before, inside and after everything
        s.add(extra)
        model.add(extra)
    ref = sorted(model)
    check_overlay(s, ref)
    check_slices(s, ref)
    for name in ref:
        assert s[s.bisect_left(name)] == name
    assert base == tuple(f"n{i:02d}" for i in range(0, 40, 2))


def test_sorted_overlay_copies_are_independent() -> None:
    base = ("b", "d", "f")
    s = SortedOverlay(base)
    s.add("c")
    s.discard("d")
    c = s.copy()
    check_overlay(c, ["b", "c", "f"])
    s.add("a")
    s.discard("b")
    s.discard("c")
    check_overlay(c, ["b", "c", "f"])  # the copy did not follow the original
    c.add("e")
    c.add("d")
    c.discard("f")
    check_overlay(s, ["a", "f"])  # nor the original the copy
    check_overlay(c, ["b", "c", "d", "e"])
    assert base == ("b", "d", "f")
    check_overlay(SortedOverlay(base), ["b", "d", "f"])


def test_sorted_overlay_add_and_discard_are_idempotent() -> None:
    s = SortedOverlay(("a", "c"))
    s.add("a")
    s.add("b")
    s.add("b")
    check_overlay(s, ["a", "b", "c"])
    s.discard("c")
    s.discard("c")
    s.discard("x")
    check_overlay(s, ["a", "b"])
