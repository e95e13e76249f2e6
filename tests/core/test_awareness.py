"""Lifeguard local health (gossipreg.core.awareness)."""

from __future__ import annotations

import pytest

from gossipreg.core.awareness import (
    MISSING_NACK,
    PROBE_ACKED,
    PROBE_FAILED,
    REFUTED,
    Awareness,
    probe_delta,
)
from gossipreg.core.config import Config


def test_starts_healthy() -> None:
    a = Awareness(8)
    assert a.score == 0
    assert a.max_multiplier == 8
    assert a.scale(0.5) == 0.5


def test_apply_delta_clamps_at_both_ends() -> None:
    a = Awareness(8)
    assert a.apply_delta(-1) == 0
    assert a.apply_delta(3) == 3
    assert a.apply_delta(100) == 7
    assert a.score == 7
    assert a.apply_delta(1) == 7
    assert a.apply_delta(-2) == 5
    assert a.apply_delta(-100) == 0


@pytest.mark.parametrize(("score", "expected"), [(0, 1.0), (1, 2.0), (3, 4.0), (7, 8.0)])
def test_scale_multiplies_by_score_plus_one(score: int, expected: float) -> None:
    a = Awareness(8)
    a.apply_delta(score)
    assert a.scale(1.0) == expected
    assert a.scale(0.25) == pytest.approx(expected / 4)


def test_scale_agrees_with_config_scaled_probe() -> None:
    config = Config()
    a = Awareness(config.awareness_max_multiplier)
    a.apply_delta(5)
    interval, timeout = config.scaled_probe(a.score)
    assert a.scale(config.probe_interval) == interval
    assert a.scale(config.probe_timeout) == timeout


def test_max_multiplier_one_disables_scaling() -> None:
    a = Awareness(1)
    assert a.apply_delta(5) == 0
    assert a.scale(2.0) == 2.0


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_rejects_invalid_max(bad: object) -> None:
    with pytest.raises(ValueError, match="max_multiplier"):
        Awareness(bad)  # type: ignore[arg-type]


def test_delta_constants_are_memberlists() -> None:
    assert (PROBE_ACKED, PROBE_FAILED, MISSING_NACK, REFUTED) == (-1, 1, 1, 1)


@pytest.mark.parametrize(
    ("acked", "expected_nacks", "nacks", "delta"),
    [
        (True, 0, 0, -1),
        (True, 3, 0, -1),  # a direct ack wins, whatever the helpers did
        (False, 0, 0, 1),  # no helpers: +1 for the failed probe
        (False, 3, 3, 0),  # every helper nacked: the target is the problem, not us
        (False, 3, 1, 2),  # one per missing nack
        (False, 3, 0, 3),
        (False, 2, 5, 0),  # more nacks than expected never gives a negative delta
    ],
)
def test_probe_delta(acked: bool, expected_nacks: int, nacks: int, delta: int) -> None:
    assert probe_delta(acked=acked, expected_nacks=expected_nacks, nacks=nacks) == delta
