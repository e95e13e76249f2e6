"""The stream checks of :mod:`tests.netns.checks` on synthetic streams: they catch what they claim.

No namespaces or processes: these run everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .checks import (
    alive_settle_time,
    false_disappearances,
    render,
    settle_times,
    stale_reappearances,
    visible_during,
)
from .cluster import Key, ViewSample, WatchEvent

SVC: Key = ("own-5", "m5")
OTHER: Key = ("svc-m1", "m1")


@dataclass
class Fake:
    label: str = "m0"
    watch: list[WatchEvent] = field(default_factory=list)
    views: list[ViewSample] = field(default_factory=list)
    member_events: list[tuple[float, str, str]] = field(default_factory=list)


def fake(history: list[tuple[float, str, Key]], alive: tuple[str, ...] = ("m0", "m1", "m5")) -> Fake:
    """A member whose watch stream is ``history`` and whose polls saw every change 5 ms later."""
    f = Fake()
    visible: set[Key] = set()
    for t, action, key in history:
        f.watch.append(WatchEvent(t, action, key))
        if action == "delete":
            visible.discard(key)
        else:
            visible.add(key)
        states = dict.fromkeys(alive, "alive")
        f.views.append(ViewSample(t + 0.005, states, dict.fromkeys(alive, 0), frozenset(visible)))
    return f


def test_a_deleted_registration_that_comes_back_is_a_stale_reappearance() -> None:
    stale = fake([(1.0, "create", SVC), (2.0, "delete", SVC), (3.0, "create", SVC)])
    found = stale_reappearances([stale], [SVC], until=10.0, epoch=0.0)
    assert [a.kind for a in found] == ["stale reappearance (watch)", "stale reappearance (view)"]
    assert found[0].t == 3.0
    text = render(found, 0.0)
    assert "at m0, own-5 (node m5) at t=+3.000" in text
    assert "watch delete own-5/m5" in text  # the excerpt shows the stream around it

    clean = fake([(1.0, "create", SVC), (2.0, "update", SVC), (3.0, "delete", SVC)])
    assert stale_reappearances([clean], [SVC], until=10.0, epoch=0.0) == []
    # Only the analysed window counts.
    assert stale_reappearances([stale], [SVC], until=2.5, epoch=0.0) == []


def test_a_registration_visible_after_the_heal_is_caught_whether_it_stayed_or_came_back() -> None:
    stayed = fake([(1.0, "create", SVC)])
    came_back = fake([(1.0, "create", SVC), (2.0, "delete", SVC), (6.0, "create", SVC)])
    dropped_late = fake([(1.0, "create", SVC), (5.5, "delete", SVC)])
    gone_before = fake([(1.0, "create", SVC), (2.0, "delete", SVC)])
    for f in (stayed, came_back, dropped_late):
        found = visible_during([f], [SVC], since=5.0, until=10.0, epoch=0.0)
        assert {a.kind for a in found} == {
            "shown after it should be gone (watch)",
            "shown after it should be gone (view)",
        }, f
    assert visible_during([gone_before], [SVC], since=5.0, until=10.0, epoch=0.0) == []


def test_a_dropped_registration_is_a_false_disappearance_unless_before_the_window() -> None:
    flap = fake([(1.0, "create", OTHER), (4.0, "delete", OTHER), (4.1, "create", OTHER)])
    found = false_disappearances([flap], [OTHER], until=10.0, epoch=0.0)
    assert [a.kind for a in found] == ["false disappearance (watch)", "false disappearance (view)"]
    assert false_disappearances([flap], [OTHER], until=10.0, epoch=0.0, since=5.0) == []
    steady = fake([(1.0, "create", OTHER), (4.0, "update", OTHER)])
    assert false_disappearances([steady], [OTHER], until=10.0, epoch=0.0) == []
    # A registration that appears late and stays is no disappearance.
    late = fake([(6.0, "create", OTHER)])
    assert false_disappearances([late], [OTHER], until=10.0, epoch=0.0) == []


def test_settle_times_measure_the_last_change_to_the_expected_view() -> None:
    f = fake([(1.0, "create", OTHER), (5.2, "create", SVC), (5.7, "delete", SVC)])
    by_watch, by_poll = settle_times(f, frozenset({OTHER}), since=5.0, until=10.0)
    assert by_watch is not None
    assert by_poll is not None
    assert abs(by_watch - 0.7) < 1e-9
    assert abs(by_poll - 0.705) < 1e-9
    assert settle_times(f, frozenset({OTHER, SVC}), since=5.0, until=10.0) == (None, None)
    assert settle_times(f, frozenset({OTHER}), since=6.0, until=10.0) == (0.0, 0.0)
    assert alive_settle_time(f, ["m0", "m1", "m5"], since=6.0, until=10.0) == 0.0
    assert alive_settle_time(f, ["m0"], since=6.0, until=10.0) is None
