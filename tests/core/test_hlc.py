"""Unit tests of the hybrid logical clock (gossipreg.core.hlc).

Every test drives the clock with a fake wall clock it controls, never the real time.
"""

from __future__ import annotations

import pytest

from gossipreg.core.errors import ClockDriftError, RegistryError
from gossipreg.core.hlc import DEFAULT_MAX_DRIFT, HybridClock, logical, make_stamp, physical_ms

LOGICAL_LIMIT = 1 << 16


class FakeWall:
    """A wall clock in seconds that the test sets by hand."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def clock_at(t: float, max_drift: float = DEFAULT_MAX_DRIFT) -> tuple[HybridClock, FakeWall]:
    wall = FakeWall(t)
    return HybridClock(wall, max_drift=max_drift), wall


# ------------------------------------------------------------------ packing


@pytest.mark.parametrize(
    ("phys", "log"),
    [(0, 0), (0, 1), (1, 0), (1_700_000_000_000, 0), (1_700_000_000_000, 12345), ((1 << 48) - 1, 0xFFFF)],
)
def test_make_stamp_round_trips(phys: int, log: int) -> None:
    s = make_stamp(phys, log)
    assert physical_ms(s) == phys
    assert logical(s) == log
    assert make_stamp(physical_ms(s), logical(s)) == s


def test_make_stamp_default_logical_is_zero() -> None:
    assert make_stamp(5) == make_stamp(5, 0) == 5 << 16


def test_stamps_order_by_physical_then_logical() -> None:
    assert make_stamp(1, 0xFFFF) < make_stamp(2, 0)
    assert make_stamp(2, 0) < make_stamp(2, 1)


def test_max_drift_must_be_positive() -> None:
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_drift"):
            HybridClock(lambda: 0.0, max_drift=bad)


# ------------------------------------------------------------------- now()


def test_now_follows_the_wall_clock_when_it_advances() -> None:
    clock, wall = clock_at(1000.0)
    s = clock.now()
    assert physical_ms(s) == 1_000_000
    assert logical(s) == 0
    wall.t = 1000.5
    s2 = clock.now()
    assert physical_ms(s2) == 1_000_500
    assert logical(s2) == 0
    assert clock.last == s2


def test_now_resets_logical_when_the_wall_clock_advances() -> None:
    clock, wall = clock_at(1000.0)
    for _ in range(5):
        clock.now()
    assert logical(clock.last) == 4
    wall.t = 1000.001
    s = clock.now()
    assert (physical_ms(s), logical(s)) == (1_000_001, 0)


def test_now_strictly_increases_when_the_wall_clock_stands_still() -> None:
    clock, _ = clock_at(1000.0)
    stamps = [clock.now() for _ in range(100)]
    assert stamps == sorted(set(stamps))
    assert all(physical_ms(s) == 1_000_000 for s in stamps)
    assert [logical(s) for s in stamps] == list(range(100))


def test_now_strictly_increases_when_the_wall_clock_goes_backwards() -> None:
    clock, wall = clock_at(1000.0)
    a = clock.now()
    wall.t = 990.0
    b = clock.now()
    wall.t = 0.0
    c = clock.now()
    assert a < b < c
    # The physical part never follows the wall clock backwards.
    assert physical_ms(b) == physical_ms(c) == 1_000_000
    assert (logical(b), logical(c)) == (1, 2)
    # Once the wall clock passes the stamp again, it is followed again.
    wall.t = 1001.0
    d = clock.now()
    assert (physical_ms(d), logical(d)) == (1_001_000, 0)


def test_logical_overflow_carries_into_physical_and_keeps_order() -> None:
    clock, _ = clock_at(1000.0)
    prev = clock.now()
    for _ in range(LOGICAL_LIMIT + 10):
        s = clock.now()
        assert s > prev
        prev = s
    # 65,536 events in one millisecond moved the physical part one ms ahead.
    assert physical_ms(prev) == 1_000_001
    assert logical(prev) == 10
    assert make_stamp(physical_ms(prev), logical(prev)) == prev


def test_logical_overflow_through_update() -> None:
    clock, _ = clock_at(1000.0)
    remote = make_stamp(1_000_000, 0xFFFF)
    s = clock.update(remote)
    assert s > remote
    assert (physical_ms(s), logical(s)) == (1_000_001, 0)
    assert clock.now() > s


# ---------------------------------------------------------------- update()


def test_update_remote_ahead_adopts_remote_physical() -> None:
    # l' = l_m > l and > pt: c' = c_m + 1.
    clock, _ = clock_at(1000.0)
    last = clock.now()
    remote = make_stamp(1_005_000, 7)
    s = clock.update(remote)
    assert s == make_stamp(1_005_000, 8)
    assert s > last
    assert s > remote
    assert clock.last == s


def test_update_local_ahead_keeps_local_physical() -> None:
    # l' = l > l_m and > pt: c' = c + 1.
    clock, wall = clock_at(1005.0)
    for _ in range(3):
        clock.now()
    last = clock.last
    assert last == make_stamp(1_005_000, 2)
    wall.t = 1001.0  # wall clock went back: l stays ahead of pt
    remote = make_stamp(1_003_000, 40)
    s = clock.update(remote)
    assert s == make_stamp(1_005_000, 3)
    assert s > last
    assert s > remote


def test_update_equal_physical_takes_max_logical_plus_one() -> None:
    # l' = l = l_m >= pt: c' = max(c, c_m) + 1, whichever side has the larger counter.
    clock, _ = clock_at(1000.0)
    clock.update(make_stamp(1_002_000, 3))
    assert clock.last == make_stamp(1_002_000, 4)
    assert clock.update(make_stamp(1_002_000, 9)) == make_stamp(1_002_000, 10)
    assert clock.update(make_stamp(1_002_000, 2)) == make_stamp(1_002_000, 11)


def test_update_wall_clock_ahead_of_both_takes_physical_time() -> None:
    # pt > l and pt > l_m: l' = pt, c' = 0.
    clock, wall = clock_at(1000.0)
    last = clock.now()
    wall.t = 1010.0
    remote = make_stamp(1_005_000, 99)
    s = clock.update(remote)
    assert s == make_stamp(1_010_000, 0)
    assert s > last
    assert s > remote


def test_update_equal_to_wall_clock_increments_logical() -> None:
    # l = l_m = pt exactly (all c = 0): c' = 1, never pt itself (which would not exceed them).
    clock, _ = clock_at(1000.0)
    s = clock.update(make_stamp(1_000_000, 0))
    assert s == make_stamp(1_000_000, 1)


def test_update_result_exceeds_both_last_and_remote_in_many_cases() -> None:
    clock, wall = clock_at(1000.0)
    remotes = [
        make_stamp(999_000, 5),
        make_stamp(1_000_000, 0),
        make_stamp(1_030_000, 0xFFFE),
        make_stamp(1_030_000, 0xFFFF),
        make_stamp(1_000_000, 3),
        make_stamp(1_040_000, 0),
    ]
    walls = [1000.0, 1000.0, 1001.0, 999.0, 1050.0, 1045.0]
    for remote, t in zip(remotes, walls, strict=True):
        wall.t = t
        last = clock.last
        s = clock.update(remote)
        assert s > last
        assert s > remote
        assert clock.last == s
        assert clock.now() > s


# ------------------------------------------------------------------- drift


def test_update_rejects_remote_beyond_max_drift_without_adopting_it() -> None:
    clock, _ = clock_at(1000.0, max_drift=60.0)
    last = clock.now()
    remote = make_stamp(1_000_000 + 60_001)
    with pytest.raises(ClockDriftError):
        clock.update(remote)
    assert clock.rejected == 1
    assert clock.last == last
    with pytest.raises(ClockDriftError, match="ahead"):
        clock.update(make_stamp(2_000_000))
    assert clock.rejected == 2
    assert clock.last == last
    # The next local stamp is unaffected by the rejected remote.
    assert physical_ms(clock.now()) == 1_000_000


def test_clock_drift_error_is_a_registry_error() -> None:
    assert issubclass(ClockDriftError, RegistryError)


def test_update_adopts_remote_within_max_drift() -> None:
    clock, _ = clock_at(1000.0, max_drift=60.0)
    remote = make_stamp(1_000_000 + 60_000, 5)  # exactly at the limit
    s = clock.update(remote)
    assert s == remote + 1
    assert clock.rejected == 0
    assert clock.last == s


def test_drift_is_measured_against_the_current_wall_clock() -> None:
    clock, wall = clock_at(1000.0, max_drift=10.0)
    remote = make_stamp(1_020_000)
    with pytest.raises(ClockDriftError):
        clock.update(remote)
    wall.t = 1015.0
    assert clock.update(remote) == remote + 1
    assert clock.rejected == 1


def test_check_counts_but_never_changes_the_clock() -> None:
    clock, _ = clock_at(1000.0, max_drift=1.0)
    last = clock.now()
    clock.check(make_stamp(1_001_000))  # within drift: no error
    assert clock.last == last
    with pytest.raises(ClockDriftError):
        clock.check(make_stamp(1_001_001))
    assert clock.rejected == 1
    assert clock.last == last


def test_default_max_drift_is_sixty_seconds() -> None:
    clock, _ = clock_at(1000.0)
    clock.update(make_stamp(1_060_000))
    with pytest.raises(ClockDriftError):
        clock.update(make_stamp(1_060_001))


def test_observe_only_advances() -> None:
    clock, _ = clock_at(1000.0)
    clock.observe(make_stamp(1_010_000, 3))
    assert clock.last == make_stamp(1_010_000, 3)
    clock.observe(make_stamp(1_005_000))
    assert clock.last == make_stamp(1_010_000, 3)
    assert clock.now() == make_stamp(1_010_000, 4)
    assert clock.rejected == 0
