"""Config: profiles, validation and the scaling formulas (memberlist's)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossipreg.core.config import (
    MAX_LABEL_BYTES,
    Config,
    remaining_suspicion_time,
)
from gossipreg.core.errors import ConfigError

# -- profiles -------------------------------------------------------------------

PROFILE_TABLE: dict[str, tuple[Any, Any, Any]] = {
    # field: (lan, wan, local)
    "probe_interval": (1.0, 5.0, 1.0),
    "probe_timeout": (0.5, 3.0, 0.2),
    "gossip_interval": (0.2, 0.5, 0.1),
    "gossip_nodes": (3, 4, 3),
    "suspicion_mult": (4, 6, 3),
    "probe_resends": (8, 8, 8),
    "indirect_checks": (3, 3, 1),
    "push_pull_interval": (30.0, 60.0, 15.0),
    "gossip_to_the_dead": (30.0, 60.0, 15.0),
    "stream_timeout": (10.0, 30.0, 1.0),
    "retransmit_mult": (4, 4, 2),
    "suspicion_max_timeout_mult": (6, 6, 6),
    "awareness_max_multiplier": (8, 8, 8),
    "max_packet_size": (1400, 1400, 1400),
    "eager_push": (True, True, True),
    "eager_push_rate": (50.0, 50.0, 50.0),
    "eager_round_rate": (10.0, 10.0, 10.0),
    "broadcast_queue_limit": (4096, 4096, 4096),
    "tree_resends": (16, 16, 16),
    "tree_ack_timeout": (0.01, 0.3, 0.005),
    "tombstone_ttl": (3600.0, 3600.0, 3600.0),
    "max_clock_drift": (60.0, 60.0, 60.0),
    "max_stream_frame": (16 * 1024 * 1024,) * 3,
    "label": ("", "", ""),
    "dead_node_reclaim_time": (0.0, 0.0, 0.0),
    "death_grace": (1.0, 5.0, 1.0),
    "max_records_per_owner": (10_000, 10_000, 10_000),
    "reconnect_interval": (30.0, 30.0, 15.0),
    "reconnect_timeout": (86400.0, 86400.0, 86400.0),
}


def test_profile_table_covers_every_field() -> None:
    assert set(PROFILE_TABLE) == {f.name for f in dataclasses.fields(Config)}


@pytest.mark.parametrize("field", sorted(PROFILE_TABLE))
def test_profile_defaults(field: str) -> None:
    lan, wan, local = PROFILE_TABLE[field]
    assert getattr(Config.lan(), field) == lan
    assert getattr(Config.wan(), field) == wan
    assert getattr(Config.local(), field) == local


def test_plain_config_is_the_lan_profile() -> None:
    assert Config() == Config.lan()


def test_max_clock_drift_default_matches_the_hybrid_clock() -> None:
    from gossipreg.core.hlc import DEFAULT_MAX_DRIFT

    assert Config().max_clock_drift == DEFAULT_MAX_DRIFT


def test_every_field_has_an_attribute_docstring() -> None:
    import ast
    import inspect

    from gossipreg.core import config as module

    tree = ast.parse(inspect.getsource(module))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config")
    documented = set()
    for stmt, following in zip(cls.body, cls.body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
            and following.value.value.strip()
        ):
            documented.add(stmt.target.id)
    assert documented == {f.name for f in dataclasses.fields(Config)}


def test_profile_overrides_are_applied_on_top_of_the_profile() -> None:
    config = Config.wan(gossip_nodes=7, label="prod")
    assert config.gossip_nodes == 7
    assert config.label == "prod"
    assert config.probe_interval == 5.0  # the rest stays WAN
    assert Config.local(retransmit_mult=3).probe_timeout == 0.2


def test_overrides_are_validated_as_a_whole() -> None:
    # Raising both together is valid even though each alone would not be.
    config = Config.lan(probe_interval=0.1, probe_timeout=0.05)
    assert (config.probe_interval, config.probe_timeout) == (0.1, 0.05)
    with pytest.raises(ConfigError, match=r"^probe_timeout: must be less than probe_interval"):
        Config.wan(probe_interval=2.0)  # WAN's probe_timeout is 3 s


def test_config_is_frozen_and_hashable() -> None:
    config = Config.lan()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.probe_interval = 2.0  # type: ignore[misc]
    assert hash(config) == hash(Config.lan())
    assert not hasattr(config, "__dict__")  # slotted


def test_int_seconds_are_stored_as_float() -> None:
    config = Config.lan(probe_interval=2, push_pull_interval=45)
    assert config.probe_interval == 2.0
    assert type(config.probe_interval) is float
    assert type(config.push_pull_interval) is float
    assert config == Config.lan(probe_interval=2.0, push_pull_interval=45.0)


def test_replace_returns_a_validated_copy() -> None:
    base = Config.lan()
    changed = base.replace(gossip_nodes=5)
    assert changed.gossip_nodes == 5
    assert base.gossip_nodes == 3
    with pytest.raises(ConfigError, match=r"^gossip_nodes: must be at least 1, got 0$"):
        base.replace(gossip_nodes=0)


@pytest.mark.parametrize("build", [Config.lan, Config.wan, Config.local, Config().replace])
def test_unknown_field_is_a_config_error(build: Any) -> None:
    with pytest.raises(ConfigError, match=r"^probe_intervall: not a Config field$"):
        build(probe_intervall=1.0)


# -- validation -----------------------------------------------------------------

INVALID: list[tuple[dict[str, Any], str]] = [
    ({"probe_interval": 0}, r"^probe_interval: must be positive, got 0$"),
    ({"probe_interval": -1.0}, r"^probe_interval: must be positive"),
    ({"probe_timeout": 0.0}, r"^probe_timeout: must be positive"),
    (
        {"probe_timeout": 2.0},
        r"^probe_timeout: must be less than probe_interval \(1\.0 s\), got 2\.0$",
    ),
    ({"probe_timeout": 1.0}, r"^probe_timeout: must be less than probe_interval"),
    ({"gossip_interval": 0.0}, r"^gossip_interval: must be positive"),
    ({"push_pull_interval": -5}, r"^push_pull_interval: must be positive"),
    ({"stream_timeout": 0}, r"^stream_timeout: must be positive"),
    ({"tombstone_ttl": 0}, r"^tombstone_ttl: must be positive"),
    ({"max_clock_drift": -1}, r"^max_clock_drift: must be positive"),
    ({"eager_push_rate": 0}, r"^eager_push_rate: must be positive"),
    ({"eager_round_rate": -1.0}, r"^eager_round_rate: must be positive"),
    ({"gossip_to_the_dead": -1.0}, r"^gossip_to_the_dead: must not be negative"),
    ({"dead_node_reclaim_time": -0.5}, r"^dead_node_reclaim_time: must not be negative"),
    ({"probe_interval": math.nan}, r"^probe_interval: must be finite"),
    ({"tombstone_ttl": math.inf}, r"^tombstone_ttl: must be finite"),
    ({"tombstone_ttl": 10**400}, r"^tombstone_ttl: must be finite"),
    ({"probe_interval": "1"}, r"^probe_interval: must be a number, got str '1'$"),
    ({"probe_interval": True}, r"^probe_interval: must be a number, got bool True$"),
    ({"gossip_nodes": 0}, r"^gossip_nodes: must be at least 1, got 0$"),
    ({"gossip_nodes": 3.0}, r"^gossip_nodes: must be an int, got float 3\.0$"),
    ({"gossip_nodes": True}, r"^gossip_nodes: must be an int, got bool True$"),
    ({"suspicion_mult": 0}, r"^suspicion_mult: must be at least 1"),
    ({"suspicion_max_timeout_mult": 0}, r"^suspicion_max_timeout_mult: must be at least 1"),
    ({"indirect_checks": -1}, r"^indirect_checks: must be at least 0"),
    ({"retransmit_mult": 0}, r"^retransmit_mult: must be at least 1"),
    ({"awareness_max_multiplier": 0}, r"^awareness_max_multiplier: must be at least 1"),
    ({"broadcast_queue_limit": 0}, r"^broadcast_queue_limit: must be at least 1"),
    ({"probe_resends": -1}, r"^probe_resends: must be at least 0, got -1$"),
    ({"probe_resends": 17}, r"^probe_resends: must be at most 16, got 17$"),
    ({"tree_resends": -1}, r"^tree_resends: must be at least 0, got -1$"),
    ({"tree_resends": 65}, r"^tree_resends: must be at most 64, got 65$"),
    ({"tree_resends": True}, r"^tree_resends: must be an int, got bool True$"),
    ({"tree_ack_timeout": 0}, r"^tree_ack_timeout: must be positive"),
    ({"max_packet_size": 511}, r"^max_packet_size: must be at least 512, got 511$"),
    ({"max_packet_size": 65001}, r"^max_packet_size: must be at most 65000, got 65001$"),
    (
        {"max_packet_size": 4000, "max_stream_frame": 3999},
        r"^max_stream_frame: must be at least 4000, got 3999$",
    ),
    ({"max_stream_frame": 2**32}, r"^max_stream_frame: must be at most 4294967295"),
    ({"eager_push": 1}, r"^eager_push: must be a bool, got int 1$"),
    ({"eager_push": "yes"}, r"^eager_push: must be a bool"),
    ({"label": b"prod"}, r"^label: must be a str, got bytes"),
    ({"label": "x" * 256}, r"^label: must be at most 255 UTF-8 bytes, got 256$"),
    ({"label": "é" * 128}, r"^label: must be at most 255 UTF-8 bytes, got 256$"),
    ({"label": "\udc80"}, r"^label: is not encodable as UTF-8$"),
]


@pytest.mark.parametrize(("changes", "message"), INVALID)
def test_invalid_values_raise_config_error_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.lan(**changes)
    with pytest.raises(ConfigError, match=message):
        Config().replace(**changes)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="gossip_nodes"):
        Config(gossip_nodes=-3)


def test_boundary_values_are_accepted() -> None:
    config = Config.lan(
        max_packet_size=512,
        max_stream_frame=512,
        indirect_checks=0,
        awareness_max_multiplier=1,
        gossip_to_the_dead=0,
        dead_node_reclaim_time=0,
        eager_push=False,
        label="é" * 127 + "x",  # 255 bytes
    )
    assert config.label_bytes == ("é" * 127 + "x").encode()
    assert len(config.label_bytes) == MAX_LABEL_BYTES
    assert Config.lan(max_packet_size=65000).max_packet_size == 65000
    assert Config.lan(max_stream_frame=2**32 - 1).max_stream_frame == 2**32 - 1


def test_label_bytes() -> None:
    assert Config().label_bytes == b""
    assert Config(label="prod-eu").label_bytes == b"prod-eu"


# -- suspicion timeout bounds ---------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, (4.0, 24.0)),
        (1, (4.0, 24.0)),
        (10, (4.0, 24.0)),  # log10 10 = 1: still the floor
        (100, (8.0, 48.0)),  # memberlist LAN, n = 100: 8-48 s
        (1000, (12.0, 72.0)),
    ],
)
def test_suspicion_timeout_bounds_lan(n: int, expected: tuple[float, float]) -> None:
    low, high = Config.lan().suspicion_timeout_bounds(n)
    assert low == pytest.approx(expected[0])
    assert high == pytest.approx(expected[1])


def test_suspicion_timeout_bounds_between_powers_of_ten() -> None:
    low, high = Config.wan().suspicion_timeout_bounds(50)
    assert low == pytest.approx(6 * math.log10(50) * 5.0)
    assert high == pytest.approx(6 * low)


@given(n=st.integers(0, 10**6), interval=st.floats(0.01, 100.0))
def test_suspicion_timeout_bounds_formula(n: int, interval: float) -> None:
    config = Config.lan(probe_interval=interval, probe_timeout=interval / 2)
    low, high = config.suspicion_timeout_bounds(n)
    assert low == pytest.approx(4 * max(1.0, math.log10(max(n, 1))) * interval)
    assert high == pytest.approx(6 * low)
    assert low >= 4 * interval


def test_negative_member_count_is_rejected() -> None:
    config = Config()
    for method in (
        config.suspicion_timeout_bounds,
        config.suspicion_confirmations,
        config.retransmit_limit,
        config.push_pull_interval_for,
    ):
        with pytest.raises(ValueError, match="member count"):
            method(-1)


# -- suspicion confirmations ----------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "n", "k"),
    [
        (Config.lan(), 100, 2),
        (Config.lan(), 4, 2),  # n - 2 = 2 = k: enough members
        (Config.lan(), 3, 0),  # n - 2 = 1 < 2: no confirmations possible
        (Config.lan(), 0, 0),
        (Config.wan(), 6, 4),
        (Config.wan(), 5, 0),
        (Config.local(), 3, 1),
        (Config.local(), 2, 0),
        (Config.lan(suspicion_mult=2), 100, 0),
        (Config.lan(suspicion_mult=1), 100, 0),  # never negative
    ],
)
def test_suspicion_confirmations(profile: Config, n: int, k: int) -> None:
    assert profile.suspicion_confirmations(n) == k


# -- remaining suspicion time ---------------------------------------------------


def test_remaining_suspicion_time_without_confirmations_is_the_maximum() -> None:
    assert remaining_suspicion_time(0, 3, 0.0, 2.0, 30.0) == 30.0
    assert remaining_suspicion_time(0, 3, 10.0, 2.0, 30.0) == 20.0


def test_remaining_suspicion_time_with_all_confirmations_is_the_minimum() -> None:
    assert remaining_suspicion_time(3, 3, 0.0, 2.0, 30.0) == pytest.approx(2.0)
    assert remaining_suspicion_time(3, 3, 1.5, 2.0, 30.0) == pytest.approx(0.5)


def test_remaining_suspicion_time_shrinks_logarithmically() -> None:
    # k = 3, min 2 s, max 30 s: each confirmation cuts the remaining span by log.
    low, high, k = 2.0, 30.0, 3
    expected = [high - (high - low) * math.log(c + 1) / math.log(k + 1) for c in range(4)]
    got = [remaining_suspicion_time(c, k, 0.0, low, high) for c in range(4)]
    assert got == pytest.approx(expected)
    assert got[1] == pytest.approx(16.0)  # log 2 / log 4 = 1/2: halfway
    assert got == sorted(got, reverse=True)


def test_remaining_suspicion_time_never_goes_below_min_or_zero() -> None:
    # More confirmations than expected: clamped at min.
    assert remaining_suspicion_time(10, 3, 0.0, 2.0, 30.0) == pytest.approx(2.0)
    # Already overdue: 0, never negative.
    assert remaining_suspicion_time(0, 3, 100.0, 2.0, 30.0) == 0.0
    assert remaining_suspicion_time(3, 3, 2.5, 2.0, 30.0) == 0.0


def test_remaining_suspicion_time_with_k_zero_is_the_minimum() -> None:
    assert remaining_suspicion_time(0, 0, 0.0, 4.0, 24.0) == 4.0
    assert remaining_suspicion_time(5, 0, 1.0, 4.0, 24.0) == 3.0


def test_remaining_suspicion_time_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        remaining_suspicion_time(-1, 3, 0.0, 2.0, 30.0)
    with pytest.raises(ValueError, match="must not be negative"):
        remaining_suspicion_time(0, -1, 0.0, 2.0, 30.0)


@given(
    c=st.integers(0, 20),
    k=st.integers(0, 10),
    elapsed=st.floats(0, 1000),
    low=st.floats(0.1, 100),
    ratio=st.integers(1, 10),
)
def test_remaining_suspicion_time_is_within_bounds(
    c: int, k: int, elapsed: float, low: float, ratio: int
) -> None:
    high = low * ratio
    left = remaining_suspicion_time(c, k, elapsed, low, high)
    assert 0.0 <= left <= high
    assert left >= min(low, high) - elapsed - 1e-9
    # One more confirmation never lengthens the suspicion.
    assert remaining_suspicion_time(c + 1, k, elapsed, low, high) <= left + 1e-9


def test_remaining_suspicion_time_with_config_bounds() -> None:
    config = Config.lan()
    n = 100
    low, high = config.suspicion_timeout_bounds(n)
    k = config.suspicion_confirmations(n)
    assert remaining_suspicion_time(0, k, 0.0, low, high) == pytest.approx(48.0)
    assert remaining_suspicion_time(k, k, 0.0, low, high) == pytest.approx(8.0)


# -- retransmit limit -----------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "limit"),
    [(0, 0), (1, 4), (9, 4), (10, 8), (99, 8), (100, 12), (999, 12), (1000, 16), (10**6, 28)],
)
def test_retransmit_limit_lan(n: int, limit: int) -> None:
    assert Config.lan().retransmit_limit(n) == limit


def test_retransmit_limit_local() -> None:
    assert Config.local().retransmit_limit(100) == 6


@given(n=st.integers(0, 10**9), mult=st.integers(1, 10))
def test_retransmit_limit_matches_the_float_formula(n: int, mult: int) -> None:
    expected = mult * math.ceil(math.log10(n + 1))
    assert Config.lan(retransmit_mult=mult).retransmit_limit(n) == expected


# -- push/pull interval ---------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "multiplier"),
    [(0, 1), (1, 1), (32, 1), (33, 2), (64, 2), (65, 3), (128, 3), (129, 4), (256, 4), (4096, 8)],
)
def test_push_pull_interval_scaling(n: int, multiplier: int) -> None:
    assert Config.lan().push_pull_interval_for(n) == 30.0 * multiplier
    assert Config.wan().push_pull_interval_for(n) == 60.0 * multiplier


@given(n=st.integers(33, 10**7))
def test_push_pull_interval_matches_the_float_formula(n: int) -> None:
    expected = 30.0 * (math.ceil(math.log2(n) - 5) + 1)
    assert Config.lan().push_pull_interval_for(n) == expected


# -- awareness-scaled probes ----------------------------------------------------


def test_scaled_probe() -> None:
    config = Config.lan()
    assert config.scaled_probe(0) == (1.0, 0.5)
    assert config.scaled_probe(1) == (2.0, 1.0)
    assert config.scaled_probe(7) == (8.0, 4.0)
    assert Config.wan().scaled_probe(2) == (15.0, 9.0)


def test_scaled_probe_rejects_awareness_out_of_range() -> None:
    config = Config.lan()
    with pytest.raises(ValueError, match=r"awareness must be in 0\.\.7, got 8"):
        config.scaled_probe(8)
    with pytest.raises(ValueError, match="awareness must be in"):
        config.scaled_probe(-1)
    with pytest.raises(TypeError, match="awareness must be an int"):
        config.scaled_probe(1.5)  # type: ignore[arg-type]
    assert Config.lan(awareness_max_multiplier=1).scaled_probe(0) == (1.0, 0.5)


def test_integer_formulas_match_float_formulas_exhaustively() -> None:
    config = Config.lan()
    for n in range(0, 20_000):
        assert config.retransmit_limit(n) == 4 * math.ceil(math.log10(n + 1)), n
    for n in range(33, 20_000):
        assert config.push_pull_interval_for(n) == 30.0 * (math.ceil(math.log2(n) - 5) + 1), n
