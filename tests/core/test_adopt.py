"""Warm starts from a shared table: TableSnapshot, Membership.adopt, Catalog.adopt_owners_up.

A table that adopts a snapshot must be indistinguishable from one that merged
the same records through :meth:`Membership.merge_remote` (bar the JOINED
events, which adopt does not queue): the same records, indexes, fingerprint and
counters at once, and the same answers, events and random choices through any
later sequence of messages, timers and local changes. The incrementally kept
fingerprint is also checked against a recomputation from scratch, and the
lazily shuffled probe order against its contract.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from random import Random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossipreg.core.catalog import Catalog, Key, Record
from gossipreg.core.config import Config
from gossipreg.core.errors import NotFoundError
from gossipreg.core.hlc import HybridClock, make_stamp
from gossipreg.core.membership import (
    Address,
    EventKind,
    Member,
    Membership,
    MemberState,
    TableSnapshot,
)
from gossipreg.core.model import Node, Service

ALIVE, SUSPECT, DEAD, LEFT = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT
# Short reap and tombstone times and a reclaim time, so that runs of a few dozen
# steps reach reaping, graveyard expiry and name rebinding too.
CONFIG = Config.lan(gossip_to_the_dead=4.0, tombstone_ttl=25.0, dead_node_reclaim_time=3.0, death_grace=0.0)
NOW = 100.0
LOCAL = "n05"
LOCAL_ADDR = ("10.0.0.1", 7946)
PEERS = tuple(f"n{i:02d}" for i in range(12) if f"n{i:02d}" != LOCAL)
UNKNOWN = ("a9", "n055", "zz")  # never in a snapshot: before, between and after the others
POOL = (LOCAL, *PEERS, *UNKNOWN)


def addr(name: str, variant: int = 0) -> Address:
    """The usual address of ``name`` (variant 0), or another one."""
    return Address(f"10.{variant}.1.{sum(map(ord, name)) % 250}", 7946)


def record(name: str, incarnation: int = 0, meta: bytes = b"", now: float = NOW) -> Member:
    return Member(name, addr(name), incarnation, ALIVE, meta, now)


def peer_records(names: tuple[str, ...] = PEERS, now: float = NOW) -> list[Member]:
    """ALIVE records with assorted incarnations and metas."""
    return [record(n, i % 3, b"m%d" % i if i % 2 else b"", now) for i, n in enumerate(names)]


def make(seed: int = 0, name: str = LOCAL, now: float = NOW, incarnation: int = 0) -> Membership:
    return Membership(name, LOCAL_ADDR, CONFIG, Random(seed), now, incarnation=incarnation)


def own_record(now: float = NOW) -> Member:
    return Member(LOCAL, Address(*LOCAL_ADDR), 0, ALIVE, b"", now)


def adopted_and_merged(
    seed: int, *, with_self: bool, records: list[Member] | None = None
) -> tuple[Membership, Membership, TableSnapshot]:
    """The same table reached by adopt (``a``) and by merge_remote (``b``), events drained."""
    records = peer_records() if records is None else records
    snapshot = TableSnapshot([*records, own_record()] if with_self else records)
    a = make(seed)
    a.adopt(snapshot, NOW)
    assert a.take_events() == []  # adopt queues nothing
    b = make(seed)
    outcomes = b.merge_remote(records, NOW)
    assert all(o.regossip for o in outcomes)
    assert [e.kind for e in b.take_events()] == [EventKind.JOINED] * len(records)
    return a, b, snapshot


def member_hash(m: Member) -> int:
    data = f"{m.name}\x00{m.incarnation}\x00{m.state.value}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def recomputed_fingerprint(m: Membership) -> int:
    fp = 0
    for r in m.members():
        fp ^= member_hash(r)
    return fp


def check_consistent(m: Membership) -> None:
    """The incrementally kept summaries agree with the records."""
    records = m.members()
    assert m.fingerprint() == recomputed_fingerprint(m)
    stats = m.statistics()
    counts = Counter(r.state for r in records)
    assert (stats.alive, stats.suspect, stats.dead, stats.left) == (
        counts[ALIVE],
        counts[SUSPECT],
        counts[DEAD],
        counts[LEFT],
    )
    live = [r.name for r in records if r.state in (ALIVE, SUSPECT) and r.name != LOCAL]
    assert list(m.live_names) == live
    assert len(m.live_names) == len(live)
    assert [m.live_names[i] for i in range(len(live))] == live
    assert m.alive_count() == len(live) + (m.local.state in (ALIVE, SUSPECT))
    assert [r.name for r in records] == sorted({r.name for r in records})


def check_same(a: Membership, b: Membership) -> None:
    """``a`` and ``b`` answer every query alike."""
    check_consistent(a)
    check_consistent(b)
    assert a.members() == b.members()
    for name in POOL:
        assert a.get(name) == b.get(name), name
        sa, sb = a.suspicion(name), b.suspicion(name)
        assert (sa is None) == (sb is None), name
        if sa is not None and sb is not None:
            assert sa.deadline() == sb.deadline(), name
    assert list(a.live_names) == list(b.live_names)
    assert a.alive_count() == b.alive_count()
    assert a.fingerprint() == b.fingerprint()
    assert a.statistics() == b.statistics()
    assert a.has_peers() == b.has_peers()
    assert a.graveyard() == b.graveyard()
    assert a.next_deadline() == b.next_deadline()
    assert a.local == b.local
    assert a.local_alive() == b.local_alive()


# ------------------------------------------------------------------ snapshot


def test_snapshot_attributes() -> None:
    records = peer_records()
    shuffled = records[::-1]
    snap = TableSnapshot(shuffled)
    assert len(snap) == len(records)
    assert snap.live == tuple(sorted(PEERS))
    assert dict(snap.members) == {r.name: r for r in records}
    assert list(snap.members) == sorted(PEERS)
    assert dict(snap.owners_up) == dict.fromkeys(PEERS, True)
    fp = 0
    for r in records:
        fp ^= member_hash(r)
    assert snap.fingerprint == fp
    assert dict(snap.counts) == {ALIVE: len(records), SUSPECT: 0, DEAD: 0, LEFT: 0}
    with pytest.raises(TypeError):
        snap.members["x"] = records[0]  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.owners_up["x"] = False  # type: ignore[index]
    empty = TableSnapshot([])
    assert len(empty) == 0
    assert empty.live == ()
    assert empty.fingerprint == 0


@pytest.mark.parametrize("state", [SUSPECT, DEAD, LEFT])
def test_snapshot_rejects_records_that_are_not_alive(state: MemberState) -> None:
    records = peer_records()
    records[3] = replace(records[3], state=state)
    with pytest.raises(ValueError, match="ALIVE"):
        TableSnapshot(records)


def test_snapshot_rejects_duplicate_names() -> None:
    records = peer_records()
    with pytest.raises(ValueError, match="duplicate"):
        TableSnapshot([*records, replace(records[2], incarnation=7)])
    with pytest.raises(ValueError, match="duplicate"):
        TableSnapshot([records[0], records[0]])


# --------------------------------------------------------------- adopt = merge


@pytest.mark.parametrize("with_self", [False, True])
def test_adopt_equals_merge_remote(with_self: bool) -> None:
    a, b, _ = adopted_and_merged(1, with_self=with_self)
    check_same(a, b)
    assert a.statistics().joins == len(PEERS)
    assert a.alive_count() == len(PEERS) + 1
    # Equal-seeded rngs: the same probe order and the same random picks.
    for _ in range(3 * len(PEERS)):
        assert a.next_probe_target() == b.next_probe_target()
    for k in range(0, 6):
        assert a.random_members(k, exclude=[PEERS[k]]) == b.random_members(k, exclude=[PEERS[k]])
    assert a.gossip_targets(3, NOW) == b.gossip_targets(3, NOW)


def test_adopt_replaces_the_snapshots_record_of_this_member() -> None:
    # This member restarted at incarnation 2; the snapshot still holds its old record.
    old = Member(LOCAL, Address("10.9.9.9", 1), 0, ALIVE, b"old", 0.0)
    snap = TableSnapshot([*peer_records(), old])
    m = make(incarnation=2)
    me = m.local
    m.adopt(snap, NOW)
    assert m.local == me
    assert m.get(LOCAL) == me
    assert LOCAL not in m.live_names
    check_consistent(m)
    assert m.statistics().alive == len(PEERS) + 1
    assert snap.members[LOCAL] == old


def test_adopt_of_an_empty_snapshot_or_of_only_this_member() -> None:
    for snap in (TableSnapshot([]), TableSnapshot([own_record()])):
        m = make()
        fresh = make()
        m.adopt(snap, NOW)
        check_same(m, fresh)
        assert not m.has_peers()
        assert m.next_probe_target() is None
        m.on_alive("zz", 0, addr("zz"), b"", NOW + 1)
        fresh.on_alive("zz", 0, addr("zz"), b"", NOW + 1)
        check_same(m, fresh)
        assert m.next_probe_target() == fresh.next_probe_target()


def test_adopt_keeps_the_snapshot_records_state_changed_at() -> None:
    """merge_remote stamps new members with ``now``; adopt takes the snapshot's records
    as they are (documented), so the two agree when the snapshot is stamped ``now``."""
    records = peer_records(now=0.0)
    a = make()
    a.adopt(TableSnapshot(records), NOW)
    assert a.get(PEERS[0]) == records[0]
    b = make()
    b.merge_remote(records, NOW)
    assert b.get(PEERS[0]) == replace(records[0], state_changed_at=NOW)
    c = make()
    c.adopt(TableSnapshot([replace(r, state_changed_at=NOW) for r in records]), NOW)
    assert c.members() == b.members()


# ------------------------------------------------- equivalence under any traffic

incarnations = st.integers(0, 4)
pool = st.sampled_from(POOL)
peers_or_unknown = st.sampled_from((*PEERS, *UNKNOWN))
metas = st.sampled_from([b"", b"m1", b"x"])
senders = st.sampled_from((LOCAL, "n00", "n01", "n02", "other"))

remote_records = st.builds(
    Member,
    pool,
    st.builds(addr, pool, st.integers(0, 1)),
    incarnations,
    st.sampled_from(MemberState),
    metas,
    st.just(0.0),
)

operations = st.one_of(
    st.tuples(st.just("alive"), pool, incarnations, st.integers(0, 1), metas),
    st.tuples(st.just("suspect"), pool, incarnations, senders),
    st.tuples(st.just("dead"), pool, incarnations, senders),
    st.tuples(st.just("dead_by_self"), pool, incarnations),  # memberlist's encoding of a leave
    st.tuples(st.just("leave"), pool, incarnations),
    st.tuples(st.just("probe_failed"), pool),
    st.tuples(st.just("alive_is_stale"), pool, incarnations, st.integers(0, 1)),
    st.tuples(st.just("merge"), st.lists(remote_records, max_size=4)),
    st.tuples(st.just("tick"), st.sampled_from([0.0, 0.3, 1.0, 2.5, 6.0, 30.0])),
    st.tuples(st.just("leave_local")),
    st.tuples(st.just("probe"), st.integers(1, 4)),
    st.tuples(st.just("random"), st.integers(0, 5), st.lists(pool, max_size=2), st.booleans()),
    st.tuples(st.just("gossip_targets"), st.integers(0, 5)),
)


def apply(m: Membership, op: tuple[Any, ...], now: float) -> object:
    """Apply one operation; return whatever it returned (or the exception type it raised)."""
    kind = op[0]
    call: Callable[[], object]
    if kind == "alive":
        _, name, inc, variant, meta = op
        address = LOCAL_ADDR if name == LOCAL and variant == 0 else addr(name, variant)
        call = lambda: m.on_alive(name, inc, address, meta, now)  # noqa: E731
    elif kind == "suspect":
        call = lambda: m.on_suspect(op[1], op[2], op[3], now)  # noqa: E731
    elif kind == "dead":
        call = lambda: m.on_dead(op[1], op[2], op[3], now)  # noqa: E731
    elif kind == "dead_by_self":
        call = lambda: m.on_dead(op[1], op[2], op[1], now)  # noqa: E731
    elif kind == "leave":
        call = lambda: m.on_leave(op[1], op[2], now)  # noqa: E731
    elif kind == "probe_failed":
        call = lambda: m.probe_failed(op[1], now)  # noqa: E731
    elif kind == "alive_is_stale":
        _, name, inc, variant = op
        host, port = addr(name, variant)
        call = lambda: m.alive_is_stale(name, inc, host, port)  # noqa: E731
    elif kind == "merge":
        call = lambda: m.merge_remote(op[1], now)  # noqa: E731
    elif kind == "tick":
        call = lambda: m.tick(now)  # noqa: E731
    elif kind == "leave_local":
        call = lambda: m.leave(now)  # noqa: E731
    elif kind == "probe":
        call = lambda: [m.next_probe_target() for _ in range(op[1])]  # noqa: E731
    elif kind == "random":
        _, k, exclude, dead_too = op
        if dead_too:
            call = lambda: m.random_members(k, exclude=exclude, include_dead_within=5.0, now=now)  # noqa: E731
        else:
            call = lambda: m.random_members(k, exclude=exclude)  # noqa: E731
    else:
        assert kind == "gossip_targets"
        call = lambda: m.gossip_targets(op[1], now)  # noqa: E731
    try:
        return call()
    except ValueError as e:
        return (ValueError, str(e))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    with_self=st.booleans(),
    ops=st.lists(operations, min_size=1, max_size=40),
)
def test_adopted_and_merged_tables_stay_equal(seed: int, with_self: bool, ops: list[tuple[Any, ...]]) -> None:
    a, b, snapshot = adopted_and_merged(seed, with_self=with_self)
    pristine = (dict(snapshot.members), snapshot.live, snapshot.fingerprint, dict(snapshot.counts))
    check_same(a, b)
    now = NOW
    for op in ops:
        if op[0] == "tick":
            now += op[1]
        ra, rb = apply(a, op, now), apply(b, op, now)
        assert ra == rb, op
        assert a.take_events() == b.take_events(), op
        check_same(a, b)
    # The shared snapshot took none of it.
    assert (dict(snapshot.members), snapshot.live, snapshot.fingerprint, dict(snapshot.counts)) == pristine


def test_a_long_random_run_stays_equal() -> None:
    """Hundreds of steps with a seeded rng (reaching graveyard expiry and rebinding), cheaply."""
    for seed in range(3):
        rng = Random(seed)
        a, b, _ = adopted_and_merged(seed, with_self=seed % 2 == 0)
        now = NOW
        for _ in range(400):
            name = rng.choice(POOL)
            inc = rng.randrange(5)
            kind = rng.choice(
                ["alive", "alive", "suspect", "dead", "leave", "probe_failed", "tick", "probe", "random"]
            )
            op: tuple[Any, ...]
            if kind == "alive":
                op = (kind, name, inc, rng.randrange(2), rng.choice([b"", b"m1"]))
            elif kind in ("suspect", "dead"):
                op = (kind, name, inc, rng.choice(POOL))
            elif kind == "leave":
                op = (kind, name, inc)
            elif kind == "probe_failed":
                op = (kind, name)
            elif kind == "tick":
                op = (kind, rng.choice([0.5, 2.0, 7.0]))
                now += op[1]
            elif kind == "probe":
                op = (kind, 2)
            else:
                op = (kind, 3, [name], True)
            assert apply(a, op, now) == apply(b, op, now), op
            assert a.take_events() == b.take_events(), op
            check_same(a, b)
        assert a.statistics().reaped > 0  # the run got that far


# ------------------------------------------------------------- isolation


def test_adopting_tables_do_not_see_each_others_changes() -> None:
    records = peer_records()
    snapshot = TableSnapshot(records)
    pristine = (dict(snapshot.members), snapshot.live, snapshot.fingerprint, dict(snapshot.counts))
    a, b = make(1), make(2)
    a.adopt(snapshot, NOW)
    b.adopt(snapshot, NOW)
    before_b = (b.members(), list(b.live_names), b.fingerprint(), b.statistics())

    victim, leaver, updated = PEERS[0], PEERS[1], PEERS[2]
    a.on_suspect(victim, 0, "x", NOW)
    a.on_leave(leaver, snapshot.members[leaver].incarnation, NOW)
    a.on_alive(updated, 9, addr(updated), b"new", NOW)
    a.on_alive("zz", 0, addr("zz"), b"", NOW)
    a.on_dead(PEERS[3], 5, "x", NOW)
    a.tick(NOW + 1000)  # expires the suspicion, reaps the dead and the left
    a.tick(NOW + 2000)  # reaps the suspect that has died meanwhile
    assert a.get(leaver) is None
    assert a.get(victim) is None
    up = a.get(updated)
    assert up is not None
    assert up.incarnation == 9
    check_consistent(a)

    assert (b.members(), list(b.live_names), b.fingerprint(), b.statistics()) == before_b
    assert (dict(snapshot.members), snapshot.live, snapshot.fingerprint, dict(snapshot.counts)) == pristine
    assert snapshot.owners_up == dict.fromkeys(PEERS, True)
    # A table adopting the snapshot now still starts from the original records.
    c = make(3)
    c.adopt(snapshot, NOW)
    assert c.members() == tuple(sorted([*records, c.local], key=lambda r: r.name))
    # And b's own changes stay b's.
    b.on_dead(victim, 0, "y", NOW)
    assert a.get(victim) is None
    assert c.get(victim) == snapshot.members[victim]


# ---------------------------------------------------------------- refusals


def test_adopt_refuses_a_table_that_knows_another_member() -> None:
    snapshot = TableSnapshot(peer_records())

    m = make()
    m.on_alive("zz", 0, addr("zz"), b"", NOW)
    with pytest.raises(ValueError, match="adopt"):
        m.adopt(snapshot, NOW)

    m = make()  # a dead member not yet reaped
    m.on_alive("zz", 0, addr("zz"), b"", NOW)
    m.on_dead("zz", 0, "x", NOW)
    with pytest.raises(ValueError, match="adopt"):
        m.adopt(snapshot, NOW)

    m = make()  # only a reaped one, in the graveyard
    m.on_alive("zz", 0, addr("zz"), b"", NOW)
    m.on_dead("zz", 0, "x", NOW)
    m.tick(NOW + 10)
    assert not m.has_peers()
    assert m.graveyard()
    with pytest.raises(ValueError, match="adopt"):
        m.adopt(snapshot, NOW)

    m = make()  # a remote death merged: graveyard only
    m.merge_remote([replace(record("zz"), state=DEAD)], NOW)
    with pytest.raises(ValueError, match="adopt"):
        m.adopt(snapshot, NOW)

    m = make()  # twice
    m.adopt(snapshot, NOW)
    with pytest.raises(ValueError, match="adopt"):
        m.adopt(snapshot, NOW)
    with pytest.raises(ValueError, match="adopt"):
        m.adopt(TableSnapshot([record("zz")]), NOW)


def test_a_refused_adopt_changes_nothing() -> None:
    m = make()
    m.on_alive("zz", 0, addr("zz"), b"", NOW)
    m.take_events()
    before = (m.members(), list(m.live_names), m.fingerprint(), m.statistics())
    with pytest.raises(ValueError, match="adopt"):
        m.adopt(TableSnapshot(peer_records()), NOW)
    assert (m.members(), list(m.live_names), m.fingerprint(), m.statistics()) == before


# ---------------------------------------------------------------- probe order


def known(m: Membership, name: str) -> Member:
    r = m.get(name)
    assert r is not None, name
    return r


def probes(m: Membership, count: int) -> list[str]:
    out = []
    for _ in range(count):
        t = m.next_probe_target()
        assert t is not None
        out.append(t.name)
    return out


def fifty(seed: int) -> tuple[Membership, list[str]]:
    names = tuple(f"p{i:03d}" for i in range(50))
    m = make(seed)
    m.adopt(TableSnapshot([*peer_records(names), own_record()]), NOW)
    return m, list(names)


@pytest.mark.parametrize("seed", range(5))
def test_each_pass_probes_every_live_member_once(seed: int) -> None:
    m, names = fifty(seed)
    passes = [probes(m, len(names)) for _ in range(3)]
    for p in passes:
        assert sorted(p) == names  # every one exactly once, never this member
    assert len({tuple(p) for p in passes}) == 3  # reshuffled each pass
    # The same holds for a table filled through merge_remote (and the order is the same).
    b = make(seed)
    b.merge_remote(peer_records(tuple(names)), NOW)
    assert [probes(b, len(names)) for _ in range(3)] == passes


@pytest.mark.parametrize(("seed", "after"), [(0, 0), (1, 1), (2, 25), (3, 48), (4, 49)])
def test_a_member_joining_mid_pass_is_probed_in_that_pass(seed: int, after: int) -> None:
    m, names = fifty(seed)
    first = probes(m, after)
    m.on_alive("joiner", 0, addr("joiner"), b"", NOW)
    rest = probes(m, len(names) + 1 - after)
    assert sorted(first + rest) == sorted([*names, "joiner"])
    assert sorted(probes(m, len(names) + 1)) == sorted([*names, "joiner"])  # and in the next one


def test_a_member_joining_after_a_finished_pass_waits_for_the_next() -> None:
    m, names = fifty(0)
    probes(m, len(names))  # the pass is over
    m.on_alive("joiner", 0, addr("joiner"), b"", NOW)
    assert sorted(probes(m, len(names) + 1)) == sorted([*names, "joiner"])


@pytest.mark.parametrize(("seed", "after"), [(0, 0), (1, 10), (2, 30), (3, 48)])
def test_a_member_dying_mid_pass_is_skipped(seed: int, after: int) -> None:
    m, names = fifty(seed)
    first = probes(m, after)
    pending = sorted(set(names) - set(first))
    victim = pending[seed % len(pending)]
    m.on_dead(victim, known(m, victim).incarnation, "x", NOW)
    rest = probes(m, len(names) - 1 - after)
    assert victim not in rest
    assert sorted(first + rest) == sorted(set(names) - {victim})
    nxt = probes(m, len(names) - 1)  # the next pass, without it
    assert sorted(nxt) == sorted(set(names) - {victim})


def test_a_suspect_is_still_probed_and_a_left_one_is_not() -> None:
    m, names = fifty(7)
    first = probes(m, 10)
    pending = sorted(set(names) - set(first))
    suspect, leaver = pending[0], pending[1]
    m.on_suspect(suspect, known(m, suspect).incarnation, "x", NOW)
    m.on_leave(leaver, known(m, leaver).incarnation, NOW)
    rest = probes(m, len(names) - 11)
    assert suspect in rest
    assert leaver not in rest
    assert sorted(first + rest) == sorted(set(names) - {leaver})


def test_a_member_visited_then_dead_and_back_is_probed_again_in_the_pass() -> None:
    m, names = fifty(3)
    first = probes(m, 5)
    back = first[0]
    inc = known(m, back).incarnation
    m.on_dead(back, inc, "x", NOW)
    m.on_alive(back, inc + 1, addr(back), b"", NOW)
    rest = probes(m, len(names) - 5 + 1)
    assert back in rest
    assert sorted(first + rest) == sorted([*names, back])


def test_a_member_dying_and_back_before_its_turn_is_probed_once() -> None:
    m, names = fifty(4)
    first = probes(m, 5)
    later = sorted(set(names) - set(first))[0]
    inc = known(m, later).incarnation
    m.on_dead(later, inc, "x", NOW)
    m.on_alive(later, inc + 1, addr(later), b"", NOW)
    rest = probes(m, len(names) - 5)
    assert sorted(first + rest) == names


def test_probe_order_is_a_uniform_shuffle_and_a_joiner_lands_anywhere() -> None:
    """Each of the 6 orders of 3 members is about equally likely, and a member that joins
    after the first probe comes first, second or third among the remaining ones alike."""
    trials = 3000
    orders: Counter[tuple[str, ...]] = Counter()
    joiner_at: Counter[int] = Counter()
    names = ("p0", "p1", "p2")
    snapshot = TableSnapshot(peer_records(names))
    for seed in range(trials):
        m = make(seed)
        m.adopt(snapshot, NOW)
        order = tuple(probes(m, 3))
        orders[order] += 1
        j = make(seed + trials)
        j.adopt(snapshot, NOW)
        probes(j, 1)
        j.on_alive("p9", 0, addr("p9"), b"", NOW)
        rest = probes(j, 3)
        joiner_at[rest.index("p9")] += 1
    assert set(orders) == set(itertools.permutations(names))
    expected = trials / 6  # sd about 20
    assert all(abs(c - expected) < 100 for c in orders.values()), orders
    assert set(joiner_at) == {0, 1, 2}
    assert all(abs(c - trials / 3) < 130 for c in joiner_at.values()), joiner_at  # sd about 26


# --------------------------------------------------------- catalog liveness

WALL = 1_000_000.0
WALL_MS = int(WALL * 1000)
OWNERS = ("o1", "o2", "o3", "o4", "o5")
SERVICES = ("alpha", "beta")


def catalog(default_up: bool) -> Catalog:
    return Catalog("me", HybridClock(lambda: WALL), owners_up_by_default=default_up)


def remote(owner: str, service: str, nid: str, c: int = 0, *, deleted: bool = False) -> Record:
    return Record(
        service,
        "1",
        nid,
        owner,
        make_stamp(WALL_MS, c),
        None,
        deleted,
        None if deleted else Node(nid, "10.0.0.9:80"),
    )


def before_records() -> list[Record]:
    return [
        remote("o1", "alpha", "a1"),
        remote("o2", "alpha", "a2"),
        remote("o3", "beta", "b3"),
        remote("o5", "beta", "b5"),  # an owner the shared table does not mention
        remote("o4", "alpha", "a4", deleted=True),
    ]


def after_records() -> list[Record]:
    return [
        remote("o1", "beta", "b1", 1),
        remote("o2", "beta", "b2", 1),
        remote("o3", "alpha", "a3", 1),
        remote("o4", "alpha", "a4b", 1),
        remote("o5", "alpha", "a5", 1),
        remote("o2", "alpha", "a2", 2),  # replaces
    ]


def catalog_state(cat: Catalog) -> tuple[object, ...]:
    views: dict[str, object] = {}
    for name in SERVICES:
        try:
            views[name] = cat.get_service(name)
        except NotFoundError:
            views[name] = None
    keys: list[Key] = sorted(r.key for r in cat.records())
    return (
        cat.records(),
        {k: cat.is_visible(k) for k in keys},
        views,
        cat.list_services(),
        cat.digest(),
        cat.root(),
    )


SHARED = {"o1": True, "o2": False, "o3": True, "o4": True, "me": True}


@pytest.mark.parametrize("default_up", [False, True])
def test_adopt_owners_up_equals_owner_up_and_down_per_owner(default_up: bool) -> None:
    shared = dict(SHARED)
    pristine = dict(shared)
    a, b = catalog(default_up), catalog(default_up)
    for cat in (a, b):
        cat.register(Service("alpha", "1", nodes=(Node("mine", "10.0.0.1:80"),)), None, 0.0)
        cat.merge(before_records(), 0.0)
    assert a.take_events() == b.take_events()

    a.adopt_owners_up(shared)
    for owner in sorted(shared):
        (b.owner_up if shared[owner] else b.owner_down)(owner)
    assert catalog_state(a) == catalog_state(b)
    assert a.take_events() == b.take_events()

    # Later records, and later liveness changes, behave alike too.
    steps: list[Callable[[Catalog], object]] = [
        lambda c: c.merge(after_records(), 1.0),
        lambda c: c.owner_down("o1"),
        lambda c: c.owner_up("o2"),
        lambda c: c.merge([remote("o1", "alpha", "a1x", 3)], 2.0),
        lambda c: c.owner_synced("o1"),
        lambda c: c.purge_owner("o4"),
        lambda c: c.owner_up("o1"),
        lambda c: c.owner_down("o5"),
        lambda c: c.merge([remote("o4", "beta", "b4", 5)], 3.0),
    ]
    for step in steps:
        ra, rb = step(a), step(b)
        assert ra == rb
        assert catalog_state(a) == catalog_state(b)
        assert a.take_events() == b.take_events()
    assert shared == pristine  # the shared mapping is never written to


def test_adopt_owners_up_with_no_records_yet() -> None:
    a, b = catalog(False), catalog(False)
    a.adopt_owners_up(SHARED)
    for owner in sorted(SHARED):
        (b.owner_up if SHARED[owner] else b.owner_down)(owner)
    assert catalog_state(a) == catalog_state(b)
    for cat in (a, b):
        cat.merge(before_records() + after_records(), 0.0)
    assert catalog_state(a) == catalog_state(b)
    assert a.take_events() == b.take_events()
    assert a.is_visible(("alpha", "1", "a1"))
    assert not a.is_visible(("alpha", "1", "a2"))
    assert not a.is_visible(("beta", "1", "b5"))  # o5 unknown: hidden by default
    assert "o2" not in a.digest()  # down owners take no part in anti-entropy


@pytest.mark.parametrize("report", ["owner_up", "owner_down"])
def test_adopt_owners_up_refuses_once_liveness_was_reported(report: str) -> None:
    cat = catalog(False)
    getattr(cat, report)("o9")
    with pytest.raises(ValueError, match="already"):
        cat.adopt_owners_up(SHARED)
    cat = catalog(False)
    cat.adopt_owners_up(SHARED)
    with pytest.raises(ValueError, match="already"):
        cat.adopt_owners_up(SHARED)
