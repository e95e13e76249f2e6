"""Lifeguard suspicion timer (gossipreg.core.suspicion)."""

from __future__ import annotations

import math

import pytest

from gossipreg.core.config import Config
from gossipreg.core.suspicion import Suspicion, suspicion_for


def test_no_confirmation_gives_max_timeout() -> None:
    s = Suspicion("a", 3, 10.0, 60.0, started_at=100.0)
    assert s.confirmations == 0
    assert s.timeout() == 60.0
    assert s.deadline() == 160.0
    assert s.remaining(130.0) == 30.0
    assert not s.expired(159.9)
    assert s.expired(160.0)
    assert s.remaining(200.0) == 0.0


def test_k_zero_gives_min_timeout() -> None:
    s = Suspicion("a", 0, 10.0, 60.0, started_at=0.0)
    assert s.deadline() == 10.0
    assert not s.confirm("b", 1.0)  # nothing to count


def test_confirmations_shrink_logarithmically_to_min() -> None:
    k, low, high = 3, 10.0, 60.0
    s = Suspicion("a", k, low, high, started_at=0.0)
    deadlines = [s.deadline()]
    for i, who in enumerate(["b", "c", "d"], start=1):
        assert s.confirm(who, 1.0)
        expected = max(low, high - (high - low) * math.log(i + 1) / math.log(k + 1))
        assert s.deadline() == pytest.approx(expected)
        deadlines.append(s.deadline())
    assert deadlines == sorted(deadlines, reverse=True)
    assert s.deadline() == pytest.approx(low)


def test_original_suspector_is_not_a_confirmation() -> None:
    s = Suspicion("a", 2, 10.0, 60.0, started_at=0.0)
    assert not s.confirm("a", 1.0)
    assert s.confirmations == 0
    assert s.deadline() == 60.0


def test_duplicate_confirmer_counts_once() -> None:
    s = Suspicion("a", 2, 10.0, 60.0, started_at=0.0)
    assert s.confirm("b", 1.0)
    after_one = s.deadline()
    assert not s.confirm("b", 2.0)
    assert s.confirmations == 1
    assert s.deadline() == after_one


def test_at_most_k_confirmations_count() -> None:
    s = Suspicion("a", 2, 10.0, 60.0, started_at=0.0)
    assert s.confirm("b", 1.0)
    assert s.confirm("c", 1.0)
    assert not s.confirm("d", 1.0)
    assert s.confirmations == 2
    assert s.deadline() == 10.0


def test_confirmation_after_expiry_is_not_counted() -> None:
    s = Suspicion("a", 2, 10.0, 60.0, started_at=0.0)
    assert not s.confirm("b", 60.0)
    assert s.confirmations == 0


def test_confirmation_can_make_it_already_expired() -> None:
    s = Suspicion("a", 1, 10.0, 60.0, started_at=0.0)
    assert not s.expired(30.0)
    assert s.confirm("b", 30.0)
    assert s.expired(30.0)


@pytest.mark.parametrize(("k", "low", "high"), [(-1, 1.0, 2.0), (1, 3.0, 2.0), (1, -1.0, 2.0)])
def test_rejects_bad_parameters(k: int, low: float, high: float) -> None:
    with pytest.raises(ValueError, match=r"k must|min_timeout"):
        Suspicion("a", k, low, high, 0.0)


@pytest.mark.parametrize(
    ("n", "k", "low"),
    [
        (1, 0, 4.0),  # too small to supply confirmations
        (3, 0, 4.0),
        (4, 2, 4.0),
        (10, 2, 4.0),
        (100, 2, 8.0),
        (1000, 2, 12.0),
    ],
)
def test_suspicion_for_uses_the_config_formulas(n: int, k: int, low: float) -> None:
    s = suspicion_for(Config.lan(), n, "a", started_at=5.0)
    assert s.k == k
    assert s.min_timeout == pytest.approx(low)
    assert s.max_timeout == pytest.approx(6 * low)
    expected = low if k == 0 else 6 * low
    assert s.deadline() == pytest.approx(5.0 + expected)


def test_would_count_predicts_confirm_and_the_deadline_follows_confirmations() -> None:
    s = Suspicion("a", k=2, min_timeout=2.0, max_timeout=10.0, started_at=0.0)
    assert s.deadline() == 10.0
    assert not s.would_count("a", 1.0)  # the originator
    assert s.would_count("b", 1.0)
    assert s.deadline() == 10.0  # asking changes nothing
    assert s.confirm("b", 1.0)
    assert not s.would_count("b", 1.0)  # already counted
    one = s.deadline()
    assert 2.0 < one < 10.0
    assert one == s.started_at + s.timeout()
    assert not s.would_count("c", one)  # expired by then
    assert s.would_count("c", 1.0)
    assert s.confirm("c", 1.0)
    assert s.deadline() == 2.0
    assert not s.would_count("d", 1.0)  # k reached
