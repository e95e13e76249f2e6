"""Simulation.bootstrap: the shared warm start (TableSnapshot + adopt) against the
O(N^2) one (merge_remote into every table).

Both must give the same protocol behaviour, delivery for delivery: the same
trace hash and network counters, the same node events after the bootstrap,
and the same member tables, catalogs and counters at the end, through datagram
loss, a registration, a crash, a restart, a leave and a pause. The only
intended difference is that the merge path emits a JOINED node event per
member at bootstrap time, and the shared one none.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import pytest

from gossipreg.core.layered import LayeredDict, SortedOverlay
from gossipreg.core.membership import MemberState
from gossipreg.core.model import Node, Service
from gossipreg.core.node import NodeEvent
from simulations.engine import SimMember, Simulation


@dataclass
class Run:
    sim: Simulation
    boot_events: int = 0
    events: list[tuple[float, str, NodeEvent]] = field(default_factory=list)


def web(node_id: str) -> Service:
    return Service("web", "1.0", nodes=(Node(node_id, "10.99.0.1:8080"),))


def scenario(
    shared: bool,
    *,
    n: int,
    seed: int,
    crypto: bool,
    loss: float = 0.05,
    duration: float = 30.0,
    bootstrap_at: float = 0.0,
    partial: int = 0,
) -> Run:
    """``n`` members started warm, then some churn; records every node event after the bootstrap.

    With ``partial``, only the first ``n - partial`` members are bootstrapped and the
    others join for real half a second later.
    """
    run: Run

    def on_event(sim: Simulation, member: SimMember, event: NodeEvent) -> None:
        run.events.append((sim.now, member.name, event))

    sim = Simulation(n, seed=seed, crypto=crypto, loss=loss, on_event=on_event)
    run = Run(sim)
    if bootstrap_at:
        sim.run_for(bootstrap_at)
    assert sim.stats["datagrams"] == sim.stats["stream_messages"] == 0  # nothing sent before it
    names = list(sim.members)
    warm = names[: n - partial]
    sim.bootstrap(warm if partial else None, shared=shared)
    run.boot_events, run.events = len(run.events), []
    t0 = sim.now
    for late in names[n - partial :]:
        sim.schedule(t0 + 0.5, functools.partial(sim.join, late, [names[0]]))
    sim.schedule(t0 + 1.0, lambda: sim.register(names[3], web("w3")))
    sim.schedule(t0 + 2.0, lambda: sim.register(names[7], web("w7"), ttl=60.0))
    sim.schedule(t0 + 3.0, lambda: sim.crash(names[5]))
    sim.schedule(t0 + 4.0, lambda: sim.pause(names[9], 3.0))
    sim.schedule(t0 + 6.0, lambda: sim.leave(names[11]))
    sim.schedule(t0 + 12.0, lambda: sim.deregister(names[3], web("w3")))
    sim.schedule(t0 + 15.0, lambda: sim.restart(names[5], [names[0]]))
    sim.schedule(t0 + 17.0, lambda: sim.register(names[5], web("w5")))
    sim.run_for(duration)
    return run


def final_state(sim: Simulation) -> dict[str, object]:
    state: dict[str, object] = {}
    for name, m in sim.members.items():
        if not m.up:
            continue
        core = m.core
        state[name] = (
            core.members(),
            core.list_services(),
            core.catalog.records(),
            core.catalog.digest(),
            core.membership.fingerprint(),
            core.membership.statistics(),
            core.statistics(),
            list(core.membership.live_names),
        )
    return state


def assert_same_runs(a: Run, b: Run) -> None:
    assert a.sim.trace_hash == b.sim.trace_hash
    assert a.sim.stats == b.sim.stats
    assert a.events == b.events
    sa, sb = final_state(a.sim), final_state(b.sim)
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name] == sb[name], name


CASES = [
    pytest.param(20, 1, True, id="20-crypto"),
    pytest.param(24, 2, False, id="24-plain"),
    pytest.param(40, 3, True, id="40-crypto"),
    pytest.param(40, 4, False, id="40-plain"),
]


@pytest.mark.parametrize(("n", "seed", "crypto"), CASES)
def test_shared_and_merged_bootstraps_behave_alike(n: int, seed: int, crypto: bool) -> None:
    shared = scenario(True, n=n, seed=seed, crypto=crypto)
    merged = scenario(False, n=n, seed=seed, crypto=crypto)
    assert_same_runs(shared, merged)
    # The run did something: traffic, losses, a failure detected and the restart back.
    stats = shared.sim.stats
    assert stats["datagrams"] > 1000
    assert stats["lost"] > 0
    survivor = shared.sim.members["m0000"].core
    leaver, restarted = survivor.membership.get("m0011"), survivor.membership.get("m0005")
    assert leaver is not None
    assert leaver.state is MemberState.LEFT
    assert restarted is not None
    assert restarted.state is MemberState.ALIVE
    assert restarted.incarnation > 0  # it refuted its old self's death
    assert {nd.id for s in survivor.get_service("web") for nd in s.nodes} == {"w5", "w7"}
    # The intended difference: only the merge path emits the bootstrap JOINED events.
    assert shared.boot_events == 0
    assert merged.boot_events >= n * (n - 1)


def test_partial_bootstrap_then_real_joins_behave_alike() -> None:
    shared = scenario(True, n=24, seed=5, crypto=False, partial=4)
    merged = scenario(False, n=24, seed=5, crypto=False, partial=4)
    assert_same_runs(shared, merged)
    late = shared.sim.members["m0023"].core
    assert late.membership.alive_count() >= 20  # it joined the warm ones


def test_same_seed_same_trace_and_other_seed_another() -> None:
    a = scenario(True, n=20, seed=6, crypto=False, duration=10.0)
    b = scenario(True, n=20, seed=6, crypto=False, duration=10.0)
    c = scenario(True, n=20, seed=7, crypto=False, duration=10.0)
    assert a.sim.trace_hash == b.sim.trace_hash
    assert a.sim.trace_hash != c.sim.trace_hash


def test_bootstrap_after_time_has_passed_gives_the_same_tables() -> None:
    """Bootstrap at ``sim.now > 0`` (members created at 0, nothing sent yet): the
    merge path stamps each record's ``state_changed_at`` with the bootstrap time,
    the shared path keeps each member's creation time (Membership.adopt ignores its
    ``now``), so the member tables differ though the traces agree."""
    shared = scenario(True, n=20, seed=8, crypto=False, duration=5.0, bootstrap_at=1.0)
    merged = scenario(False, n=20, seed=8, crypto=False, duration=5.0, bootstrap_at=1.0)
    assert shared.sim.trace_hash == merged.sim.trace_hash
    a, b = shared.sim.members["m0001"].core, merged.sim.members["m0001"].core
    assert a.membership.get("m0002") == b.membership.get("m0002")  # state_changed_at 0.0 != 1.0
    assert_same_runs(shared, merged)


def test_shared_bootstrap_of_2000_members_shares_one_table() -> None:
    sim = Simulation(2000, seed=1, crypto=False)
    sim.bootstrap()
    first = sim.members["m0000"].core.membership
    # This test reads private attributes on purpose: the point is the memory shape
    # (one shared table, small per-member deltas), which no public API exposes.
    base = first._members._base  # type: ignore[attr-defined]

    def check(max_delta: int) -> None:
        for m in sim.members.values():
            membership = m.core.membership
            table = membership._members
            assert isinstance(table, LayeredDict)
            assert table._base is base  # the very same mapping, not a copy
            assert table.delta_size <= max_delta, (m.name, table.delta_size)
            assert len(table) == 2000
            assert isinstance(membership._live, SortedOverlay)
            assert len(membership._live) == 1999
            owner_up = m.core.catalog._owner_up
            assert isinstance(owner_up, LayeredDict)
            assert owner_up.delta_size <= max_delta

    check(1)  # only its own record differs
    sim.run_for(1.0)  # a second of probes and gossip adds nothing to a converged table
    assert sim.stats["datagrams"] > 0
    check(1)
