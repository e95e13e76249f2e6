"""The core's latency histograms (gossipreg.core.observe, NodeCore.histograms).

The histogram type is tested on its own; the node's observations on a
:class:`~gossipreg.testing.CoreNetwork`, whose one-way latency is a fixed
1 ms and whose members share one fake wall clock, so every expected duration
is known: a probe's round trip is 2 ms, a push-pull 4 ms (four messages),
a record's spread 1 ms per hop.
"""

from __future__ import annotations

import math

import pytest

from gossipreg.core.codec import RecordMsg
from gossipreg.core.hlc import make_stamp
from gossipreg.core.node import NodeCore
from gossipreg.core.observe import (
    PROBE_RTT_BUCKETS,
    PUSH_PULL_BUCKETS,
    SPREAD_BUCKETS,
    Histogram,
    HistogramSnapshot,
    Observations,
)
from gossipreg.testing import CoreNetwork, decode_datagram

from .node_helpers import service

# ---------------------------------------------------------------- the histogram


def test_a_value_equal_to_a_bound_is_in_that_bucket_and_larger_ones_in_the_next() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.0, 0.1, 0.5, 1.0, 1.5, 100.0):
        h.observe(v)
    snap = h.snapshot()
    assert snap.counts == (2, 2, 2)
    assert snap.count == 6
    assert snap.sum == pytest.approx(103.1)
    assert snap.cumulative() == [(0.1, 2), (1.0, 4), (math.inf, 6)]


def test_a_snapshot_is_a_copy() -> None:
    h = Histogram((1.0,))
    snap = h.snapshot()
    h.observe(0.5)
    assert snap == HistogramSnapshot((1.0,), (0, 0), 0.0)
    assert h.snapshot().count == 1


@pytest.mark.parametrize("bounds", [(), (1.0, 1.0), (2.0, 1.0)])
def test_bounds_must_increase(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram(bounds)


def test_the_bucket_constants_are_valid_bounds() -> None:
    for bounds in (PROBE_RTT_BUCKETS, PUSH_PULL_BUCKETS, SPREAD_BUCKETS):
        Histogram(bounds)


def test_push_pulls_are_timed_only_when_started_here_and_completed() -> None:
    obs = Observations()
    obs.push_pull_started(("out", 1), 10.0)
    obs.push_pull_started(("out", 2), 10.0)
    obs.push_pull_ended(("out", 1), 10.25, completed=True)
    obs.push_pull_ended(("out", 2), 12.0, completed=False)  # failed: not a duration
    obs.push_pull_ended(("out", 2), 13.0, completed=True)  # already forgotten
    obs.push_pull_ended(("in", 1), 13.0, completed=True)  # a responder's stream
    snap = obs.snapshot()["push_pull"]
    assert snap.count == 1
    assert snap.sum == pytest.approx(0.25)


def test_spread_is_wall_time_since_the_stamp_and_never_negative() -> None:
    obs = Observations()
    wall = 1_800_000_000.0
    stamp_2s_ago = make_stamp(int((wall - 2.0) * 1000), 7)
    stamp_ahead = make_stamp(int((wall + 0.5) * 1000))  # the owner's clock runs ahead
    obs.records_merged([stamp_2s_ago, stamp_ahead], wall)
    snap = obs.snapshot()["spread"]
    assert snap.count == 2
    assert snap.sum == pytest.approx(2.0)
    assert snap.counts[0] == 1  # the 0 of the clamped one is in the first bucket


# ---------------------------------------------------------------- the node's observations


def hist(core: NodeCore, name: str) -> HistogramSnapshot:
    return core.histograms()[name]


def has_service(core: NodeCore, name: str) -> bool:
    return any(r.service == name and not r.deleted for r in core.catalog.records())


def test_a_new_core_has_every_histogram_empty() -> None:
    net = CoreNetwork()
    core = net.add("a")
    assert set(core.histograms()) == {"probe_rtt", "push_pull", "spread"}
    assert all(h.count == 0 and h.sum == 0 for h in core.histograms().values())


def test_every_acked_probe_is_one_round_trip_observation() -> None:
    net = CoreNetwork()
    a, _b, _c = net.cluster("a", "b", "c", settle=10.0)
    acked = a.statistics()["probes_acked"]
    h = hist(a, "probe_rtt")
    assert acked >= 5
    assert h.count == acked
    assert h.sum == pytest.approx(2 * net.latency * acked)
    assert dict(h.cumulative())[0.0025] == acked  # all in the bucket of 2 ms


def test_a_late_ack_through_helpers_is_observed_with_its_longer_time() -> None:
    net = CoreNetwork()
    a, _b, _c = net.cluster("a", "b", "c", settle=3.0)
    before = hist(a, "probe_rtt")
    # a's pings to c are lost, its ping-reqs to b (and b's pings to c) are not.
    net.blocked.add(("a", "c"))
    net.wait_for(lambda: a.statistics()["ping_reqs_sent"] > 0 and a._probe is None, 10.0)
    after = hist(a, "probe_rtt")
    assert after.count == before.count + 1
    timeout = net.config.probe_timeout
    assert after.sum - before.sum == pytest.approx(timeout + 4 * net.latency, abs=0.002)


def test_a_join_push_pull_is_timed_at_the_initiator_only() -> None:
    net = CoreNetwork()
    a = net.add("a")
    b = net.add("b")
    b.join([a.address], net.now)
    net.run(0.5)
    pp = hist(b, "push_pull")
    assert pp.count == 1
    assert pp.sum == pytest.approx(4 * net.latency)  # INIT, REPLY, RECONCILE, FETCH
    assert hist(a, "push_pull").count == 0  # the responder does not time it
    assert a.statistics()["push_pulls_completed"] == 1


def test_a_failed_push_pull_is_not_observed() -> None:
    net = CoreNetwork()
    a = net.add("a")
    b = net.add("b")
    net.unreachable_streams.add(a.address)
    b.join([a.address], net.now)
    net.run(0.5)
    assert b.statistics()["push_pulls_failed"] == 1
    assert hist(b, "push_pull").count == 0
    net.unreachable_streams.clear()
    b.join([a.address], net.now)
    net.run(0.5)
    assert hist(b, "push_pull").count == 1
    assert hist(b, "push_pull").sum == pytest.approx(4 * net.latency)


def test_spread_is_observed_once_per_new_record_by_every_receiver_not_the_owner() -> None:
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c", settle=3.0)
    a.register(service("greeter", "g1", "g2"), None, net.now)
    net.run(1.0)
    assert hist(a, "spread").count == 0  # its own records
    for core in (b, c):
        h = hist(core, "spread")
        assert h.count == 2  # two nodes, two records, each observed once despite repeats
        assert h.sum < 2 * 2 * net.latency + 0.002  # a hop or two (ms stamps round down)
        assert dict(h.cumulative())[0.005] == 2


def test_spread_of_a_record_gossip_missed_counts_until_anti_entropy_repairs_it() -> None:
    net = CoreNetwork()
    a, b, _c = net.cluster("a", "b", "c", settle=3.0)

    def carries_record(src: str, dst: str, data: bytes) -> bool:
        ring = net.cores[src].keyring
        return dst == "b" and any(isinstance(m, RecordMsg) for m in decode_datagram(data, ring))

    net.drop = carries_record  # kept: only anti-entropy (a stream) can bring it to b
    a.register(service("late"), None, net.now)
    registered = net.now
    net.run(5.0)
    assert not has_service(b, "late")
    net.wait_for(lambda: has_service(b, "late"), 120.0)
    h = hist(b, "spread")
    assert h.count == 1
    assert h.sum >= 5.0
    assert h.sum == pytest.approx(net.now - registered, abs=0.01)


def test_a_joiner_does_not_count_the_records_it_fetches_at_its_join() -> None:
    net = CoreNetwork()
    a = net.add("a")
    a.register(service("old"), None, net.now)
    net.run(60.0)
    b = net.add("b")
    b.join([a.address], net.now)
    net.run(1.0)
    assert has_service(b, "old")
    assert hist(b, "spread").count == 0


def test_histograms_read_no_state_a_core_sends() -> None:
    """Two identical runs, one of them asking for histograms all along, send the same bytes."""

    def run(ask: bool) -> list[bytes]:
        net = CoreNetwork(seed=3, insecure=True)  # sealing draws random nonces
        cores = [net.add(n) for n in ("a", "b", "c")]
        for c in cores[1:]:
            c.join([cores[0].address], net.now)
        for _ in range(20):
            net.run(0.25)
            if ask:
                for c in cores:
                    c.histograms()
        cores[0].register(service(), None, net.now)
        net.run(2.0)
        return [d.data for d in net.log]

    assert run(False) == run(True)

