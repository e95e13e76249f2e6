"""Transient view anomalies through partitions and churn, counted by :class:`ViewAudit`.

A stale reappearance (a member shows again a registration its owner had
deregistered) or a false disappearance (a member drops a live registration of
an owner it can reach) is what a client of that member would have been told
wrongly, even if every view is right in the end.
"""

from __future__ import annotations

import pytest

from gossipreg.core.config import Config
from gossipreg.core.model import Node, Service
from simulations import scenarios
from simulations.audit import ViewAudit
from simulations.engine import Simulation


def _svc(name: str, node_id: str) -> Service:
    return Service(name, "1.0.0", nodes=(Node(node_id, "10.99.0.1:8080"),))


@pytest.mark.parametrize("seed", range(6))
def test_six_members_partition_heal_without_anomalies(seed: int) -> None:
    """The issue's six-agent experiment in the simulator: {0,1,2} | {3,4,5} for 30 s, with a
    deregistration and a registration on each side; after the heal every view is the truth
    within 3 s, and no member showed anything stale or lost anything live on the way."""
    r = scenarios.partition(nodes=6, split_seconds=30, registrations=6, changes=1, limit=60,
                            seed=seed, crypto=False)  # fmt: skip
    assert r["anomalies"]["stale_reappearance"] == 0, r["anomalies"]
    assert r["anomalies"]["false_disappearance"] == 0, r["anomalies"]
    assert r["lost"] == []
    assert r["resurrected"] == []
    assert r["views_identical"]
    assert r["converged_after_heal_s"] <= 3.0
    assert r["views_settled_after_heal_s"]["max"] <= 3.0
    per_member = r["views_settled_after_heal_s"]["per_member"]
    assert sorted(per_member) == [f"m{i:04d}" for i in range(6)]
    assert max(per_member.values()) == pytest.approx(r["views_settled_after_heal_s"]["max"], abs=1e-6)


def test_churn_without_anomalies() -> None:
    r = scenarios.churn(nodes=40, seconds=60, seed=0, crypto=False)
    assert r["events"]["restart"] + r["events"]["crash"] > 0
    assert r["anomalies"]["stale_reappearance"] == 0, r["anomalies"]
    assert r["anomalies"]["false_disappearance"] == 0, r["anomalies"]


def test_the_audit_sees_a_stale_reappearance_and_a_false_disappearance() -> None:
    """The audit itself: forced anomalies are counted (so a zero above means something)."""
    sim = Simulation(3, seed=1, config=Config.lan(), crypto=False)
    audit = ViewAudit(sim)
    sim.on_event = audit.on_event
    sim.bootstrap()
    audit.seed_views()
    owner, observer = "m0001", "m0002"
    svc = _svc("s", "s-1")
    sim.register(owner, svc)
    sim.run_for(1.0)
    # A false disappearance: the observer is told the reachable owner is down.
    obs = sim.members[observer].core
    obs.catalog.owner_down(owner)
    obs._collect_events()
    sim._drain(sim.members[observer])
    assert audit.counts()["false_disappearance"] == 1
    # A stale reappearance: the owner deregisters, the observer (not told) shows the old
    # record again.
    sim.partition([owner], ["m0000", observer])
    sim.deregister(owner, svc)
    obs.catalog.owner_up(owner)
    obs.catalog.owner_synced(owner)
    obs._collect_events()
    sim._drain(sim.members[observer])
    assert audit.counts()["stale_reappearance"] == 1
    [stale] = [a for a in audit.anomalies if a.kind == "stale_reappearance"]
    assert (stale.observer, stale.owner, stale.key) == (observer, owner, ("s", "1.0.0", "s-1"))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_partition_at_200_members_with_10_percent_loss_has_no_anomalies() -> None:
    r = scenarios.partition(nodes=200, split_seconds=30, loss=0.1, limit=120, seed=0, crypto=False)
    assert r["anomalies"]["stale_reappearance"] == 0, r["anomalies"]
    assert r["anomalies"]["false_disappearance"] == 0, r["anomalies"]
    assert r["views_identical"]
    assert r["lost"] == []
    assert r["resurrected"] == []


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_churn_at_200_members_with_10_percent_loss_has_no_anomalies() -> None:
    r = scenarios.churn(nodes=200, seconds=120, loss=0.1, seed=0, crypto=False)
    assert r["anomalies"]["stale_reappearance"] == 0, r["anomalies"]
    assert r["anomalies"]["false_disappearance"] == 0, r["anomalies"]
