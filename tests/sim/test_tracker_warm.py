"""``Tracker.warm_start`` answers every query exactly as the N*(N-1) JOINED events it stands for.

Two trackers follow two identical simulations (same seed; never run, events are
fed by hand): A receives the JOINED events, B is warm-started. Both then get the
same random sequence of member events, catalog events, crashes, restarts,
leaves and additions, and every query is compared after each step.
"""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace
from typing import Any, cast

import pytest

from gossipreg.core.catalog import Action, CatalogEvent, Key, Record
from gossipreg.core.membership import Address, EventKind, Member, MemberEvent, MemberState
from gossipreg.core.model import Node
from simulations.engine import Simulation
from simulations.metrics import Tracker

GHOSTS = ("ghost0", "ghost1")  # subjects that are never members
KEYS: list[Key] = [("svc", "1.0.0", f"node-{i}") for i in range(3)]
STATE_OF = {
    EventKind.JOINED: MemberState.ALIVE,
    EventKind.UPDATED: MemberState.ALIVE,
    EventKind.SUSPECTED: MemberState.SUSPECT,
    EventKind.FAILED: MemberState.DEAD,
    EventKind.LEFT: MemberState.LEFT,
    EventKind.CONFLICT: MemberState.ALIVE,
}


class Pair:
    """The cold tracker (A, fed JOINED events) and the warm one (B), each on its own simulation."""

    def __init__(self, n: int, seed: int) -> None:
        self.a = Tracker(n)
        self.b = Tracker(n)
        self.sim_a = Simulation(n, seed=seed, crypto=False)
        self.sim_b = Simulation(n, seed=seed, crypto=False)
        self.a.attach(self.sim_a)
        self.b.attach(self.sim_b)
        self.added = 0

    def both(self) -> list[tuple[Tracker, Simulation]]:
        """Both trackers with their simulations."""
        return [(self.a, self.sim_a), (self.b, self.sim_b)]

    def member_event(self, observer: str, ev: MemberEvent) -> None:
        """``observer`` emits ``ev`` in both simulations."""
        for tracker, sim in self.both():
            tracker.on_event(sim, sim.members[observer], ev)

    def catalog_event(self, observer: str, ev: CatalogEvent) -> None:
        """``observer`` emits ``ev`` in both simulations."""
        for tracker, sim in self.both():
            tracker.on_event(sim, sim.members[observer], ev)

    def warm(self, names: list[str]) -> None:
        """A gets every JOINED event among ``names``; B is warm-started with them."""
        for o in names:
            for s in names:
                if s != o:
                    member = Member(s, Address("10.0.0.1", 7946), 0, MemberState.ALIVE)
                    self.a.on_event(self.sim_a, self.sim_a.members[o], MemberEvent(EventKind.JOINED, member))
        self.b.warm_start(names)

    def advance(self, dt: float) -> None:
        """Move both virtual clocks."""
        self.sim_a.now += dt
        self.sim_b.now += dt


def _member_event(rng: random.Random, pair: Pair) -> tuple[str, MemberEvent] | None:
    sim = pair.sim_a
    observers = [m.name for m in sim.members.values() if m.up] or list(sim.members)
    if rng.random() < 0.05:  # the tracker does not care whether the emitter is up
        observers = list(sim.members)
    observer = rng.choice(observers)
    subjects = [s for s in [*sim.members, *GHOSTS] if s != observer]
    subject = rng.choice(subjects)
    kind = rng.choice(list(EventKind))
    if kind is EventKind.REAPED:
        state = rng.choice([MemberState.DEAD, MemberState.LEFT])
    elif rng.random() < 0.1:
        state = rng.choice(list(MemberState))  # odd pairs of kind and state
    else:
        state = STATE_OF[kind]
    member = Member(subject, Address("10.0.0.1", 7946), rng.randrange(3), state)
    return observer, MemberEvent(kind, member, pair.a.sees(observer, subject))


def _catalog_event(rng: random.Random, pair: Pair) -> tuple[str, CatalogEvent]:
    observer = rng.choice(list(pair.sim_a.members))
    key = rng.choice(KEYS)
    action: Action = rng.choice(["create", "update", "delete"])
    node = Node(key[2], "10.99.0.1:8080")
    record = Record(key[0], key[1], key[2], observer, rng.randrange(1000), node=node)
    return observer, CatalogEvent(action, record, node)


def _action(rng: random.Random, pair: Pair) -> None:
    sim = pair.sim_a
    live = sorted(pair.a.live)
    crashed = [m.name for m in sim.members.values() if not m.up]
    roll = rng.random()
    if roll < 0.35 and len(live) > 2:
        victim = rng.choice(live)
        for tracker, _ in pair.both():
            tracker.crash(victim)
    elif roll < 0.7 and crashed and live:
        name, seed = rng.choice(crashed), rng.choice(live)
        for tracker, _ in pair.both():
            tracker.restart(name, [seed])
    elif roll < 0.85 and len(live) > 2:
        victim = rng.choice(live)
        for tracker, _ in pair.both():
            tracker.leave(victim)
    elif live:
        name, seed = f"new{pair.added}", rng.choice(live)
        pair.added += 1
        for tracker, _ in pair.both():
            tracker.add(name, [seed])


def _crash_facts(t: Tracker) -> list[tuple[Any, ...]]:
    return [(c.member, c.at, c.first_suspected, c.all_dead, sorted(c.declared)) for c in t.crashes]


def _false_facts(t: Tracker) -> list[tuple[Any, ...]]:
    return [(f.observer, f.observer_generation, f.subject, f.at, f.refuted_at) for f in t.false_deaths]


def assert_same(pair: Pair, context: str) -> None:
    """Every query of the two trackers agrees."""
    a, b = pair.a, pair.b
    names = list(pair.sim_a.members)
    subjects = [*names, *GHOSTS]
    assert list(pair.sim_b.members) == names
    for o in [*names, "nobody"]:
        for s in subjects:
            assert a.sees(o, s) == b.sees(o, s), f"{context}: sees({o}, {s})"
        assert a.view(o) == b.view(o), f"{context}: view({o})"
        assert a.alive_view(o) == b.alive_view(o), f"{context}: alive_view({o})"
        if o in a.observers:
            # A is cold: its explicit states are its whole view, with no reaped sentinel.
            assert a.view(o) == a.observers[o].states
            assert a.observers[o].alive == b.observers[o].alive, f"{context}: alive count of {o}"
            assert a.observers[o].alive == len(a.alive_view(o))
    for s in subjects:
        for state in MemberState:
            assert a.holding(s, state) == b.holding(s, state), f"{context}: holding({s}, {state})"
            assert a.all_hold(s, state) == b.all_hold(s, state), f"{context}: all_hold({s}, {state})"
    assert a.live == b.live
    assert a._full == b._full, context
    assert a.all_alive_everywhere() == b.all_alive_everywhere(), context
    assert a.all_live_everywhere() == b.all_live_everywhere(), context
    assert a.join_converged_at == b.join_converged_at, context
    assert (a.suspicions, a.false_suspicions, a.deaths) == (b.suspicions, b.false_suspicions, b.deaths)
    assert (a.false_dead, a.false_dead_events) == (b.false_dead, b.false_dead_events), context
    assert _false_facts(a) == _false_facts(b), context
    assert a.pending_crashes() == b.pending_crashes(), context
    assert _crash_facts(a) == _crash_facts(b), context
    assert [c.as_dict() for c in a.crashes] == [c.as_dict() for c in b.crashes]
    for key in KEYS:
        assert a.key_holders(key) == b.key_holders(key), context
        assert a.everywhere(key) == b.everywhere(key), context
        assert a.nowhere(key) == b.nowhere(key), context
    assert a.pending_spreads() == b.pending_spreads(), context
    assert a.spread_times() == b.spread_times(), context
    assert a.live_member_seconds() == b.live_member_seconds(), context


def _step(rng: random.Random, pair: Pair) -> str:
    roll = rng.random()
    if roll < 0.2:
        pair.advance(rng.choice([0.0, 0.001, 0.5, 2.0]))
        return "advance"
    if roll < 0.8:
        picked = _member_event(rng, pair)
        if picked is not None:
            pair.member_event(*picked)
            return f"{picked[0]} <- {picked[1].kind.name} {picked[1].member.name} {picked[1].member.state}"
        return "nothing"
    if roll < 0.9:
        observer, cev = _catalog_event(rng, pair)
        pair.catalog_event(observer, cev)
        return f"{observer} <- catalog {cev.action}"
    if roll < 0.93:
        key = rng.choice(KEYS)
        for tracker, _ in pair.both():
            tracker.watch_spread(key)
        return "watch"
    _action(rng, pair)
    return "action"


@pytest.mark.parametrize("seed", range(60))
def test_warm_start_equals_joined_events(seed: int) -> None:
    rng = random.Random(f"warm/{seed}")
    n = rng.randint(2, 7)
    pair = Pair(n, seed)
    names = list(pair.sim_a.members)
    # Sometimes the warm set is a subset; sometimes events and actions come first.
    warm = names if rng.random() < 0.6 else rng.sample(names, rng.randint(1, n))
    for i in range(rng.choice([0, 0, 5, 20])):
        _step(rng, pair)
        assert_same(pair, f"seed {seed}, before the warm start, step {i}")
    pair.advance(1.0)
    pair.warm(warm)
    assert_same(pair, f"seed {seed}, warm start of {warm}")
    for i in range(250):
        what = _step(rng, pair)
        assert_same(pair, f"seed {seed}, step {i}: {what}")


def test_warm_start_converges_the_join_and_stores_nothing_per_pair() -> None:
    pair = Pair(6, 3)
    pair.advance(2.5)
    names = list(pair.sim_a.members)
    pair.warm(names)
    assert_same(pair, "warm")
    b = pair.b
    assert b.join_converged_at == 2.5
    assert b.all_alive_everywhere()
    assert all(not ob.states for ob in b.observers.values())
    assert not any(holders for by_state in b.held.values() for holders in by_state.values())
    # A suspicion refuted, and a member reaped then rejoined: back to no entry at all.
    addr = Address("10.0.0.1", 7946)
    for kind, state in [
        (EventKind.SUSPECTED, MemberState.SUSPECT),
        (EventKind.UPDATED, MemberState.ALIVE),
        (EventKind.FAILED, MemberState.DEAD),
        (EventKind.REAPED, MemberState.DEAD),
    ]:
        pair.member_event("m0000", MemberEvent(kind, Member("m0001", addr, 1, state)))
        assert_same(pair, kind.name)
    assert b.sees("m0000", "m0001") is None
    assert b.observers["m0000"].states == {"m0001": None}
    pair.member_event("m0000", MemberEvent(EventKind.JOINED, Member("m0001", addr, 2, MemberState.ALIVE)))
    assert_same(pair, "rejoined")
    assert all(not ob.states for ob in b.observers.values())


def test_a_restarted_process_loses_the_warm_baseline() -> None:
    pair = Pair(4, 5)
    pair.warm(list(pair.sim_a.members))
    for tracker, _ in pair.both():
        tracker.crash("m0002")
    pair.advance(1.0)
    for tracker, _ in pair.both():
        tracker.restart("m0002", ["m0000"])
    assert_same(pair, "restarted")
    assert pair.b.view("m0002") == {}
    assert pair.b.sees("m0000", "m0002") is MemberState.ALIVE  # the others' view is unchanged
    assert not pair.b.all_alive_everywhere()
    assert pair.b.holding("m0001", MemberState.ALIVE) == {"m0000", "m0003"}


def test_warm_start_is_called_once() -> None:
    pair = Pair(3, 1)
    pair.b.warm_start(["m0000", "m0001"])
    with pytest.raises(RuntimeError):
        pair.b.warm_start(["m0002"])


def test_warm_start_of_ten_thousand_members_is_linear() -> None:
    """No per-pair state: 10,000 warm members, then 20,000 events, with state linear in both."""
    n = 10_000
    members = {
        name: SimpleNamespace(name=name, up=True, generation=0, core=SimpleNamespace(left=False))
        for name in (f"m{i:05d}" for i in range(n))
    }
    sim = cast(Simulation, SimpleNamespace(now=0.0, members=members))
    tracker = Tracker(n)
    tracker.attach(sim)
    tracker.warm_start(members)
    assert tracker.join_converged_at == 0.0
    assert tracker.all_alive_everywhere()
    assert tracker.all_live_everywhere()
    assert tracker.all_hold("m00042", MemberState.ALIVE)
    assert len(tracker.holding("m00042", MemberState.ALIVE)) == n - 1
    assert sum(len(ob.states) for ob in tracker.observers.values()) == 0
    addr = Address("10.0.0.1", 7946)
    names = list(members)
    rng = random.Random(0)
    for i in range(20_000):
        o, s = rng.sample(names, 2)
        kind = rng.choice([EventKind.SUSPECTED, EventKind.UPDATED])
        sim.now = i * 0.001
        member = Member(s, addr, 1, STATE_OF[kind])
        tracker.on_event(sim, cast(Any, members[o]), MemberEvent(kind, member))
    assert sum(len(ob.states) for ob in tracker.observers.values()) <= 20_000
    # Linear, counted rather than timed: every container the tracker holds has
    # entries in proportion to members plus events (per-pair state would be 10^8).
    assert _entries(tracker) <= 10 * (n + 20_000)


def _entries(obj: object, depth: int = 0) -> int:
    """Entries of the containers reachable from ``obj`` through attributes and containers."""
    if depth > 4:
        return 0
    if isinstance(obj, dict):
        return len(obj) + sum(_entries(v, depth + 1) for v in obj.values())
    if isinstance(obj, (set, frozenset)):
        return len(obj)
    if isinstance(obj, (list, tuple)):
        return len(obj) + sum(_entries(v, depth + 1) for v in obj)
    if dataclasses.is_dataclass(obj):
        return sum(_entries(getattr(obj, f.name), depth + 1) for f in dataclasses.fields(obj))
    if type(obj) is Tracker:
        return sum(_entries(v, depth + 1) for v in vars(obj).values())
    return 0
