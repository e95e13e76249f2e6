"""Whole-cluster scenarios on the discrete-event simulator.

Every test runs real NodeCores on a virtual clock (simulations.engine) and
asserts invariants of the protocol, never wall-clock timings.
"""

from __future__ import annotations

import random

import pytest

from gossipreg.core.config import Config
from gossipreg.core.membership import EventKind, MemberEvent, MemberState
from gossipreg.core.node import NodeEvent
from simulations.engine import SimMember, Simulation
from simulations.run_command import RunParams, run

from .helpers import cluster, key_of, records_equal, service, visible_at, wait


def detection_bound(config: Config, n: int) -> float:
    """Lifeguard: the longest suspicion (no confirmation) plus a few protocol periods
    for the crashed member to be probed and for the death to spread."""
    return config.suspicion_timeout_bounds(n)[1] + 3 * config.probe_interval


# ---------------------------------------------------------------- join and spread


def test_fifty_members_join_and_converge() -> None:
    sim, tracker = cluster(50)
    assert tracker.join_converged_at is not None
    assert tracker.all_alive_everywhere()
    for m in sim.live_members():
        states = [x.state for x in m.core.members()]
        assert states == [MemberState.ALIVE] * 50, m.name
    assert tracker.false_dead_events == 0


def test_registrations_reach_every_member() -> None:
    sim, tracker = cluster(30, seed=2)
    rng = random.Random(2)
    services = []
    for i in range(20):
        owner = rng.choice(list(sim.members))
        svc = service(f"svc-{i}", f"{owner}-{i}")
        services.append(svc)
        sim.register(owner, svc)
        tracker.watch_spread(key_of(svc))
        sim.run_for(0.05)
    # Gossip reaches almost everyone within a second; the rare member every copy missed
    # (infection-style dissemination has a tail) is repaired by push-pull anti-entropy.
    n = len(sim.members)
    wait(sim, lambda: tracker.pending_spreads() == 0, limit=3 * sim.config.push_pull_interval_for(n))
    for m in sim.live_members():
        for svc in services:
            assert visible_at(m, svc), (m.name, svc.name)
    sim.run_for(5.0)
    assert records_equal(sim)


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize("seed", [3, 4])
def test_crashed_member_declared_dead_by_all_within_the_lifeguard_bound(seed: int) -> None:
    n = 30
    sim, tracker = cluster(n, seed=seed)
    victims = ["m0007", "m0021"]
    svcs = {v: service(f"svc-{v}", f"{v}-node") for v in victims}
    for v, svc in svcs.items():
        sim.register(v, svc)
        tracker.watch_spread(key_of(svc))
    wait(sim, lambda: tracker.pending_spreads() == 0, limit=5.0)
    sim.run_for(2.0)
    crashes = [tracker.crash(v) for v in victims]
    bound = detection_bound(sim.config, n)
    wait(sim, lambda: tracker.pending_crashes() == 0, limit=bound + 1.0)
    for c in crashes:
        first, everywhere = c.first_seconds(), c.all_seconds()
        assert first is not None
        assert everywhere is not None
        assert first <= everywhere <= bound, (c, bound)
    for v, svc in svcs.items():
        assert tracker.nowhere(key_of(svc))
        for m in sim.live_members():
            assert not visible_at(m, svc), (m.name, v)
            assert m.core.membership.get(v) is not None
            assert m.core.membership.get(v).state is MemberState.DEAD  # type: ignore[union-attr]
    assert tracker.false_dead_events == 0


def _no_false_deaths(n: int, seconds: float, seed: int, loss: float, config: Config | None = None) -> int:
    """Run lossy; assert no false death stands; return the member-level suspicions."""
    sim, tracker = cluster(n, seed=seed, loss=loss, config=config)
    sim.run_for(seconds)
    assert tracker.false_dead == 0, tracker.unrefuted_false_deaths()
    assert tracker.all_live_everywhere()  # ALIVE, or SUSPECT for the moment: never DEAD
    assert tracker.suspicions > 0  # the loss did make members suspect each other
    return tracker.suspicions


def test_no_unrefuted_false_deaths_over_ten_minutes_at_5_percent_loss() -> None:
    # With one ping per probe (no re-pings) 5 % loss makes members suspect each other
    # now and then, and every suspicion must be refuted. With the re-pings (the
    # default) the same loss makes hardly any suspicion at all.
    single = _no_false_deaths(25, 600.0, seed=5, loss=0.05, config=Config.lan(probe_resends=0))
    sim, tracker = cluster(25, seed=5, loss=0.05)
    sim.run_for(600.0)
    assert tracker.false_dead == 0, tracker.unrefuted_false_deaths()
    assert tracker.suspicions <= single // 20


def test_no_unrefuted_false_deaths_at_20_percent_loss() -> None:
    # Heavy loss, one ping per probe: many suspicions (the default's re-pings make
    # none at this loss), every one refuted.
    _no_false_deaths(20, 120.0, seed=6, loss=0.20, config=Config.lan(probe_resends=0))


def test_no_unrefuted_false_deaths_at_50_percent_loss() -> None:
    # Half of all datagrams lost, default configuration: suspicions despite the
    # re-pings, and deaths declared (and refuted); none may stand.
    _no_false_deaths(20, 120.0, seed=6, loss=0.50)


@pytest.mark.slow
def test_no_unrefuted_false_deaths_large_cluster() -> None:
    # One ping per probe, so that 5 % loss raises suspicions to refute (see above).
    _no_false_deaths(100, 600.0, seed=7, loss=0.05, config=Config.lan(probe_resends=0))


# ---------------------------------------------------------------- partitions


def _halves(sim: Simulation) -> tuple[list[str], list[str]]:
    names = list(sim.members)
    return names[: len(names) // 2], names[len(names) // 2 :]


@pytest.mark.parametrize(
    "duration", [3.0, 20.0, 60.0], ids=["before-suspicions-expire", "after-deaths", "after-reaping"]
)
def test_partition_then_heal_gives_identical_views(duration: float) -> None:
    config = Config.lan(push_pull_interval=5.0)
    sim, tracker = cluster(20, seed=6, config=config)
    left, right = _halves(sim)
    sim.partition(left, right)
    svcs = []
    for side in (left, right):
        for i, owner in enumerate(side[:3]):
            svc = service(f"svc-{owner}", f"{owner}-{i}")
            sim.register(owner, svc)
            svcs.append(svc)
    sim.run_for(duration)
    pairs = [(a, b) for a in left for b in right]
    cross = [tracker.sees(a, b) for a, b in pairs] + [tracker.sees(b, a) for a, b in pairs]
    if duration > 10:
        # Members of the other side have been declared dead. (Not necessarily all: with
        # half its probes failing, a member's Lifeguard awareness slows its probing.)
        assert MemberState.DEAD in cross or None in cross
    if duration > 50:
        # Some were reaped: only the reconnect attempts to failed members (serf's
        # reconnect) can merge the two sides now.
        assert None in cross
    sim.heal()
    wait(sim, tracker.all_alive_everywhere, limit=3 * sim.config.reconnect_interval)
    wait(sim, lambda: records_equal(sim), limit=6 * config.push_pull_interval, step=0.5)

    def all_visible() -> bool:
        return all(visible_at(m, svc) for m in sim.live_members() for svc in svcs)

    # An owner back from the dead is shown once a push-pull with it has completed.
    wait(sim, all_visible, limit=3.0, step=0.05)
    for m in sim.live_members():
        for svc in svcs:
            assert visible_at(m, svc), (m.name, svc.name)
    assert tracker.false_dead == 0


@pytest.mark.parametrize("owner_side", ["majority", "minority"])
def test_deleted_registration_never_resurrects(owner_side: str) -> None:
    """Deregister while part of the cluster is cut off (and so still holds the live
    record); after the heal, anti-entropy must spread the tombstone, not the record."""
    config = Config.lan(push_pull_interval=5.0)
    sim, tracker = cluster(20, seed=7, config=config)
    names = list(sim.members)
    away = names[12:]
    owner = "m0003" if owner_side == "majority" else "m0015"
    svc = service("doomed", "doomed-1")
    key = key_of(svc)
    sim.register(owner, svc)
    wait(sim, lambda: tracker.everywhere(key), limit=5.0)
    sim.partition(away)
    sim.run_for(0.5)
    sim.deregister(owner, svc)
    sim.run_for(3.0)  # heal before the suspicions started by the split expire
    near = set(away) if owner in away else set(names) - set(away)
    assert tracker.key_holders(key) >= set(names) - near  # the far side still has it
    tombstoned: set[str] = set()
    resurrections: list[tuple[float, str]] = []

    def scan() -> None:
        for m in sim.live_members():
            rec = m.core.catalog.get(key)
            if rec is not None and rec.deleted:
                tombstoned.add(m.name)
            elif m.name in tombstoned:
                resurrections.append((sim.now, m.name))

    scan()
    assert owner in tombstoned
    assert tombstoned <= near
    sim.heal()
    end = sim.now + 10 * config.push_pull_interval
    while sim.now < end:
        sim.run_for(0.25)
        scan()
    assert resurrections == []
    assert tombstoned == set(names)  # everyone holds the death certificate
    assert tracker.nowhere(key)
    assert tracker.all_alive_everywhere()
    for m in sim.live_members():
        assert not visible_at(m, svc)
    assert records_equal(sim)
    # A suspicion started during the split may still expire after the heal if the suspect
    # is not probed in time; the death must then be refuted.
    assert tracker.false_dead == 0


# ---------------------------------------------------------------- restarts and leaves


@pytest.mark.parametrize(
    ("detected", "reaped"),
    [(True, False), (False, False), (True, True)],
    ids=["after-detection", "before-detection", "after-reaping"],
)
def test_restarted_member_wins_over_its_old_incarnation(detected: bool, reaped: bool) -> None:
    config = Config.lan(push_pull_interval=5.0)
    sim, tracker = cluster(20, seed=8, config=config)
    name = "m0009"
    old = [service("old-a", f"{name}-a"), service("old-b", f"{name}-b")]
    kept = service("kept", f"{name}-k")
    for svc in [*old, kept]:
        sim.register(name, svc)
    wait(sim, lambda: all(tracker.everywhere(key_of(s)) for s in [*old, kept]), limit=5.0)
    # Raise its incarnation first: have it refute a suspicion, so "higher" means something.
    sim.partition([name])
    wait(sim, lambda: len(tracker.holding(name, MemberState.SUSPECT)) > 0, limit=20.0)
    sim.heal()
    wait(sim, lambda: tracker.all_hold(name, MemberState.ALIVE), limit=20.0)
    old_inc = max(m.core.membership.get(name).incarnation for m in sim.live_members() if m.name != name)  # type: ignore[union-attr]
    assert old_inc >= 1

    tracker.crash(name)
    if detected:
        wait(sim, lambda: tracker.pending_crashes() == 0, limit=detection_bound(config, 20) + 1)
        if reaped:
            # Forgotten by every table; only the graveyard remembers its incarnation.
            sim.run_for(config.gossip_to_the_dead + 1)
            for m in sim.live_members():
                if m.name != name:
                    assert m.core.membership.get(name) is None
                    assert [g.name for g in m.core.membership.graveyard()] == [name]
    else:
        sim.run_for(0.5)
    tracker.restart(name, ["m0000"])
    sim.register(name, kept)

    def settled() -> bool:
        return (
            tracker.all_hold(name, MemberState.ALIVE)
            and all(tracker.nowhere(key_of(s)) for s in old)
            and tracker.everywhere(key_of(kept))
        )

    wait(sim, settled, limit=60.0)
    sim.run_for(3 * config.push_pull_interval)
    assert settled()
    new_inc = sim.members[name].core.membership.local.incarnation
    assert new_inc > old_inc
    for m in sim.live_members():
        if m.name != name:
            rec = m.core.membership.get(name)
            assert rec is not None
            assert rec.state is MemberState.ALIVE
            assert rec.incarnation == new_inc
        for s in old:
            assert not visible_at(m, s), (m.name, s.name)
            stored = m.core.catalog.get(key_of(s))
            assert stored is None or stored.deleted
        assert visible_at(m, kept)
    assert records_equal(sim)
    assert tracker.false_dead == 0


def test_graceful_leave_is_not_a_failure() -> None:
    failed: list[tuple[str, str]] = []

    def on_event(sim: Simulation, member: SimMember, event: NodeEvent) -> None:
        if isinstance(event, MemberEvent) and event.kind is EventKind.FAILED:
            failed.append((member.name, event.member.name))

    sim, tracker = cluster(20, seed=9, listeners=[on_event])
    name = "m0004"
    svc = service("leaving", f"{name}-1")
    sim.register(name, svc)
    wait(sim, lambda: tracker.everywhere(key_of(svc)), limit=5.0)
    tracker.leave(name)
    wait(sim, lambda: tracker.all_hold(name, MemberState.LEFT), limit=5.0)
    for m in sim.live_members():
        assert not visible_at(m, svc), m.name
    # And it stays that way (no suspicion of the silent member turns into a death)
    # until it is reaped.
    sim.run_for(sim.config.gossip_to_the_dead - 1.0)
    assert tracker.all_hold(name, MemberState.LEFT)
    sim.run_for(5.0)
    assert all(tracker.sees(m.name, name) is None for m in sim.live_members())
    assert failed == []
    assert tracker.nowhere(key_of(svc))


def test_a_death_costs_gossip_only_not_a_broadcast_tree_per_declarer() -> None:
    # Many members' suspicion timers run out at about the same time, and each declares the
    # death; a tree per declarer would cost every member a datagram per declarer. Deaths
    # spread by gossip, while a registration, made by one member about itself, goes down
    # its tree.
    sim = Simulation(300, seed=5, crypto=False)
    sim.bootstrap()
    sim.run_until(1.0)

    def tree_datagrams() -> int:
        return sum(m.core.statistics()["tree_datagrams"] for m in sim.live_members())

    def dead_everywhere() -> bool:
        return all(
            (x := m.core.membership.get("m0042")) is not None and x.state is MemberState.DEAD
            for m in sim.live_members()
        )

    sim.crash("m0042")
    before = tree_datagrams()
    sim.run_while(lambda: not dead_everywhere(), limit=60.0, step=0.1)
    assert dead_everywhere()
    declarers = sum(m.core.membership.statistics().suspicion_timeouts for m in sim.live_members())
    assert declarers > 1  # the situation that made per-declarer trees costly
    assert tree_datagrams() == before
    sim.register("m0001", service("after-the-crash", "n1"))
    sim.run_for(1.0)
    assert tree_datagrams() - before >= 299 - 1  # every other live member, once


def test_a_refutation_spreads_by_gossip_not_down_a_broadcast_tree() -> None:
    # Under heavy loss every member refutes again and again; a tree per refutation would
    # cost every member a datagram per refutation anywhere in the cluster.
    sim = Simulation(200, seed=3, crypto=False)
    sim.bootstrap()
    sim.run_until(1.0)

    def tree_datagrams() -> int:
        return sum(m.core.statistics()["tree_datagrams"] for m in sim.live_members())

    def held_suspect() -> int:
        return sum(
            1 for m in sim.live_members()
            if (x := m.core.membership.get("m0042")) is not None and x.state is MemberState.SUSPECT
        )

    before = tree_datagrams()
    refuted_before = sim.members["m0042"].core.membership.statistics().refutations
    seen = [0]

    def suspected_somewhere() -> bool:
        seen[0] = max(seen[0], held_suspect())
        return seen[0] == 0

    sim.pause("m0042", 3.0)  # misses its acks: suspected
    sim.run_while(suspected_somewhere, limit=10.0, step=0.05)
    assert seen[0] > 0
    sim.run_while(lambda: held_suspect() > 0, limit=10.0, step=0.05)
    assert held_suspect() == 0
    assert sim.members["m0042"].core.membership.statistics().refutations > refuted_before
    assert tree_datagrams() == before
    assert all(
        (x := m.core.membership.get("m0042")) is not None and x.state is MemberState.ALIVE
        for m in sim.live_members()
    )


# ---------------------------------------------------------------- determinism


def test_same_seed_same_trace_different_seed_different_trace() -> None:
    params = RunParams(nodes=12, seconds=15.0, seed=11, crash=1, registrations=5, loss=0.02)
    a, b = run(params), run(params)
    c = run(RunParams(**{**params.__dict__, "seed": 12}))
    assert a["trace_hash"] == b["trace_hash"]
    assert a["trace_hash"] != c["trace_hash"]
    strip = ("wall_seconds", "max_rss_mb")
    assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}


# ---------------------------------------------------------------- full size (slow)


@pytest.mark.slow
def test_full_size_run_meets_every_invariant() -> None:
    n = 200
    report = run(RunParams(nodes=n, seconds=90.0, seed=21, crash=3, registrations=20, loss=0.01))
    config = Config.lan()
    assert report["join_converged_s"] is not None
    spread = report["registration_spread_s"]
    assert spread["complete"] == spread["n"] == 20
    bound = detection_bound(config, n)
    for c in report["detection_s"]["crashes"]:
        assert c["first"] is not None
        assert c["all"] is not None
        assert c["first"] <= c["all"] <= bound
    assert report["false_dead"] == 0
    assert report["views_equal"] is True
    assert report["live_members"] == n - 3
