"""The SWIM + Lifeguard member table (gossipreg.core.membership).

Every test drives pure :class:`Membership` objects with a fake ``now`` and a
seeded :class:`random.Random`, and moves messages between them by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossipreg.core.config import Config
from gossipreg.core.membership import (
    MAX_INCARNATION,
    SELF_TRANSITIONS,
    TRANSITIONS,
    Action,
    Address,
    Alive,
    Dead,
    EventKind,
    Leave,
    Member,
    Membership,
    MemberState,
    MessageKind,
    Outcome,
    Suspect,
)

ALIVE, SUSPECT, DEAD, LEFT = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT
# The table tests exercise TRANSITIONS itself, where a death is believed at once; the grace a
# member gives a death declared elsewhere (Config.death_grace) has tests of its own.
LAN = Config.lan(death_grace=0.0)
LOCAL = "me"
LOCAL_ADDR = ("10.0.0.1", 7946)


def addr(i: int) -> tuple[str, int]:
    return (f"10.0.1.{i}", 7946)


def make(
    *, seed: int = 0, now: float = 0.0, config: Config = LAN, incarnation: int = 0, name: str = LOCAL
) -> Membership:
    return Membership(name, LOCAL_ADDR, config, Random(seed), now, incarnation=incarnation)


def put(
    m: Membership, name: str, state: MemberState, incarnation: int, *, address: int = 1, now: float = 0.0
) -> None:
    """Bring a remote member into ``state`` at ``incarnation`` through ordinary messages."""
    assert m.on_alive(name, incarnation, addr(address), b"", now).action is Action.APPLIED
    if state is SUSPECT:
        m.on_suspect(name, incarnation, "x", now)
    elif state is DEAD:
        m.on_dead(name, incarnation, "x", now)
    elif state is LEFT:
        m.on_leave(name, incarnation, now)
    rec = m.get(name)
    assert rec is not None
    assert (rec.state, rec.incarnation) == (state, incarnation)
    m.take_events()


def cluster(n: int, *, seed: int = 0, config: Config = LAN) -> Membership:
    """A membership with ``n`` members in all: this one and ``m1``..``m{n-1}``, all alive."""
    m = make(seed=seed, config=config)
    for i in range(1, n):
        put(m, f"m{i}", ALIVE, 0, address=i)
    return m


def message(
    kind: MessageKind, name: str, incarnation: int, *, frm: str = "y"
) -> Alive | Suspect | Dead | Leave:
    if kind is MessageKind.ALIVE:
        return Alive(name, incarnation, Address(*addr(1)), b"")
    if kind is MessageKind.SUSPECT:
        return Suspect(name, incarnation, frm)
    if kind is MessageKind.DEAD:
        return Dead(name, incarnation, frm)
    return Leave(name, incarnation)


# ------------------------------------------------------------ construction


def test_starts_with_only_the_local_member_alive() -> None:
    m = make(now=3.0, incarnation=4)
    assert m.members() == (Member(LOCAL, Address(*LOCAL_ADDR), 4, ALIVE, b"", 3.0),)
    assert m.local.incarnation == 4
    assert m.alive_count() == 1
    assert m.take_events() == []
    assert m.next_deadline() is None
    assert m.next_probe_target() is None
    assert m.local_alive() == Alive(LOCAL, 4, Address(*LOCAL_ADDR), b"")


def test_join_of_an_unknown_member() -> None:
    m = make()
    out = m.on_alive("b", 3, addr(1), b"meta", 1.0)
    assert out.action is Action.APPLIED
    assert out.regossip
    assert out.broadcast == (Alive("b", 3, Address(*addr(1)), b"meta"),)
    assert m.get("b") == Member("b", Address(*addr(1)), 3, ALIVE, b"meta", 1.0)
    [event] = m.take_events()
    assert (event.kind, event.previous_state, event.member) == (EventKind.JOINED, None, m.get("b"))
    assert m.alive_count() == 2


@pytest.mark.parametrize("kind", [MessageKind.SUSPECT, MessageKind.DEAD, MessageKind.LEAVE])
def test_accusations_about_unknown_members_are_ignored(kind: MessageKind) -> None:
    m = make()
    out = m.receive(message(kind, "ghost", 9), 1.0)
    assert out == Outcome(Action.IGNORED, None)
    assert m.get("ghost") is None
    assert m.take_events() == []


# ------------------------------------------------------------ the state table

R = 5  # the record's incarnation in the table tests
IGN = None
# (record state, message kind) -> result for (lower, equal, higher) incarnation:
# None = ignored, else (action, resulting state, event kind or None)
EXPECTED: dict[
    tuple[MemberState, MessageKind],
    tuple[tuple[Action, MemberState, EventKind | None] | None, ...],
] = {
    (ALIVE, MessageKind.ALIVE): (IGN, IGN, (Action.APPLIED, ALIVE, None)),
    (SUSPECT, MessageKind.ALIVE): (IGN, IGN, (Action.APPLIED, ALIVE, EventKind.UPDATED)),
    (DEAD, MessageKind.ALIVE): (IGN, IGN, (Action.APPLIED, ALIVE, EventKind.JOINED)),
    (LEFT, MessageKind.ALIVE): (IGN, IGN, (Action.APPLIED, ALIVE, EventKind.JOINED)),
    (ALIVE, MessageKind.SUSPECT): (
        IGN,
        (Action.APPLIED, SUSPECT, EventKind.SUSPECTED),
        (Action.APPLIED, SUSPECT, EventKind.SUSPECTED),
    ),
    (SUSPECT, MessageKind.SUSPECT): (IGN, (Action.CONFIRMED, SUSPECT, None), (Action.APPLIED, SUSPECT, None)),
    (DEAD, MessageKind.SUSPECT): (IGN, IGN, IGN),
    (LEFT, MessageKind.SUSPECT): (IGN, IGN, IGN),
    (ALIVE, MessageKind.DEAD): (
        IGN,
        (Action.APPLIED, DEAD, EventKind.FAILED),
        (Action.APPLIED, DEAD, EventKind.FAILED),
    ),
    (SUSPECT, MessageKind.DEAD): (
        IGN,
        (Action.APPLIED, DEAD, EventKind.FAILED),
        (Action.APPLIED, DEAD, EventKind.FAILED),
    ),
    (DEAD, MessageKind.DEAD): (IGN, IGN, IGN),
    (LEFT, MessageKind.DEAD): (IGN, IGN, IGN),
    (ALIVE, MessageKind.LEAVE): (
        IGN,
        (Action.APPLIED, LEFT, EventKind.LEFT),
        (Action.APPLIED, LEFT, EventKind.LEFT),
    ),
    (SUSPECT, MessageKind.LEAVE): (
        IGN,
        (Action.APPLIED, LEFT, EventKind.LEFT),
        (Action.APPLIED, LEFT, EventKind.LEFT),
    ),
    (DEAD, MessageKind.LEAVE): (
        IGN,
        (Action.APPLIED, LEFT, EventKind.LEFT),
        (Action.APPLIED, LEFT, EventKind.LEFT),
    ),
    (LEFT, MessageKind.LEAVE): (IGN, IGN, IGN),
}


def test_expected_table_is_complete_and_matches_the_modules_table() -> None:
    assert (
        set(EXPECTED)
        == {(s, k) for k, s in TRANSITIONS}
        == {(s, k) for s in MemberState for k in MessageKind}
    )


@pytest.mark.parametrize(("state", "kind"), [(s, k) for s in MemberState for k in MessageKind])
@pytest.mark.parametrize(
    ("position", "incarnation"), [(0, R - 1), (1, R), (2, R + 1)], ids=["lower", "equal", "higher"]
)
def test_transition(state: MemberState, kind: MessageKind, position: int, incarnation: int) -> None:
    m = cluster(6)  # enough members that suspicions want confirmations
    put(m, "b", state, R)
    before = m.get("b")
    msg = message(kind, "b", incarnation)
    out = m.receive(msg, 10.0)
    expected = EXPECTED[(state, kind)][position]
    after = m.get("b")
    assert after is not None
    events = m.take_events()
    if expected is None:
        assert out.action is Action.IGNORED
        assert not out.regossip
        assert out.broadcast == ()
        assert after == before
        assert events == []
        return
    action, new_state, event = expected
    assert out.action is action
    assert out.regossip
    assert out.broadcast == (msg,)
    assert after.state is new_state
    assert after.incarnation == max(R, incarnation)
    assert out.member == after
    assert [e.kind for e in events] == ([event] if event else [])
    assert (m.suspicion("b") is not None) == (new_state is SUSPECT)
    if event is not None:
        assert events[0].previous_state is state
        assert after.state_changed_at == 10.0


# ------------------------------------------------------------ about this member


@pytest.mark.parametrize("kind", list(MessageKind))
@pytest.mark.parametrize(("incarnation", "refuted"), [(R - 1, False), (R, None), (R + 1, True)])
def test_messages_about_self(kind: MessageKind, incarnation: int, refuted: bool | None) -> None:
    m = make(incarnation=R)
    msg = message(kind, LOCAL, incarnation)
    if isinstance(msg, Alive):
        msg = Alive(LOCAL, incarnation, Address(*LOCAL_ADDR), b"")
        if refuted is None:
            refuted = False  # same incarnation, same meta: nothing to refute
    elif refuted is None:
        refuted = True  # an accusation at our own incarnation must be refuted
    out = m.receive(msg, 1.0)
    assert m.local.state is ALIVE
    assert m.take_events() == []
    if not refuted:
        assert out.action is Action.IGNORED
        assert m.local.incarnation == R
        assert m.awareness.score == 0
        return
    assert out.action is Action.REFUTED
    assert not out.regossip
    assert m.local.incarnation == max(R, incarnation) + 1
    assert out.broadcast == (Alive(LOCAL, m.local.incarnation, Address(*LOCAL_ADDR), b""),)
    assert m.awareness.score == 1
    assert m.statistics().refutations == 1


def test_self_table_covers_every_kind() -> None:
    assert set(SELF_TRANSITIONS) == set(MessageKind)


def test_alive_about_self_with_other_meta_at_same_incarnation_is_refuted() -> None:
    m = make(incarnation=2)
    out = m.on_alive(LOCAL, 2, LOCAL_ADDR, b"stale meta", 1.0)
    assert out.action is Action.REFUTED
    assert m.local.incarnation == 3


def test_refuted_suspicion_clears_it_elsewhere() -> None:
    me, other = make(name="a"), make(name="b")
    me.on_alive("b", 0, addr(2), b"", 0.0)
    other.on_alive("a", 0, LOCAL_ADDR, b"", 0.0)
    put(other, "c", ALIVE, 0, address=3)
    suspect = other.probe_failed("a", 1.0).broadcast
    assert suspect == (Suspect("a", 0, "b"),)
    assert other.get("a").state is SUSPECT  # type: ignore[union-attr]
    other.take_events()

    refute = me.receive(suspect[0], 1.5)
    assert refute.action is Action.REFUTED
    [alive] = refute.broadcast
    assert isinstance(alive, Alive)
    assert alive.incarnation == 1

    out = other.receive(alive, 2.0)
    assert out.action is Action.APPLIED
    assert other.get("a").state is ALIVE  # type: ignore[union-attr]
    assert other.suspicion("a") is None
    assert [e.kind for e in other.take_events()] == [EventKind.UPDATED]
    assert other.statistics().suspicions_refuted == 1
    assert other.tick(1000.0) == ()  # the suspicion timer is gone


def test_refuted_death_revives_the_member_elsewhere() -> None:
    me, other = make(name="a", incarnation=3), make(name="b")
    other.on_alive("a", 3, LOCAL_ADDR, b"", 0.0)
    other.on_dead("a", 3, "c", 1.0)
    assert [e.kind for e in other.take_events()] == [EventKind.JOINED, EventKind.FAILED]

    refute = me.on_dead("a", 3, "c", 1.5)
    assert refute.action is Action.REFUTED
    assert me.local.incarnation == 4
    out = other.receive(refute.broadcast[0], 2.0)
    assert out.action is Action.APPLIED
    assert other.get("a").state is ALIVE  # type: ignore[union-attr]
    [event] = other.take_events()
    assert (event.kind, event.previous_state) == (EventKind.JOINED, DEAD)
    assert other.statistics().deaths_refuted == 1


# ------------------------------------------------------------ restarts


def test_restart_after_being_declared_dead() -> None:
    seed = make(name="s")
    seed.on_alive("b", 0, addr(2), b"", 0.0)
    # b refuted a few suspicions in its old life and ended at incarnation 3, then crashed.
    seed.on_alive("b", 3, addr(2), b"", 1.0)
    seed.probe_failed("b", 2.0)
    seed.tick(2.0 + 24.0)
    assert seed.get("b").state is DEAD  # type: ignore[union-attr]
    seed.take_events()

    reborn = Membership("b", addr(2), LAN, Random(1), 30.0)  # incarnation 0 again
    assert seed.receive(reborn.local_alive(), 30.0).action is Action.IGNORED  # 0 < 3: stale

    # the join's push/pull shows the reborn process its old self, which it refutes
    outcomes = reborn.merge_remote(seed.members(), 30.1)
    [refute] = [o for o in outcomes if o.action is Action.REFUTED]
    assert reborn.local.incarnation == 4
    assert seed.receive(refute.broadcast[0], 30.2).action is Action.APPLIED
    b = seed.get("b")
    assert b is not None
    assert (b.state, b.incarnation) == (ALIVE, 4)
    assert [e.kind for e in seed.take_events()] == [EventKind.JOINED]
    # and reborn learned the seed
    assert reborn.get("s") is not None


def test_restart_before_failure_was_noticed() -> None:
    seed = make(name="s")
    seed.on_alive("b", 7, addr(2), b"old", 0.0)
    seed.take_events()
    reborn = Membership("b", addr(2), LAN, Random(1), 5.0, meta=b"new")
    assert seed.receive(reborn.local_alive(), 5.0).action is Action.IGNORED
    # gossip about the old self reaches the new process
    out = reborn.on_alive("b", 7, addr(2), b"old", 5.1)
    assert out.action is Action.REFUTED
    assert reborn.local.incarnation == 8
    assert seed.receive(out.broadcast[0], 5.2).action is Action.APPLIED
    assert seed.get("b") == Member("b", Address(*addr(2)), 8, ALIVE, b"new", 0.0)
    assert [e.kind for e in seed.take_events()] == [EventKind.UPDATED]


def test_restart_after_graceful_leave_learns_through_memberlists_leave_convention() -> None:
    reborn = make(name="b")
    out = reborn.on_dead("b", 2, "b", 1.0)  # "b left at 2", memberlist-style, by gossip
    # Gossip beyond anything this process announced is refuted in place: no jump.
    assert out.action is Action.REFUTED
    assert reborn.local.incarnation == 1
    # The join's push-pull state is what teaches a restarted process its old incarnation.
    [out] = reborn.merge_remote([Member("b", Address(*addr(2)), 2, LEFT)], 1.1)
    assert out.action is Action.REFUTED
    assert reborn.local.incarnation == 3


@pytest.mark.parametrize("kind", [MessageKind.SUSPECT, MessageKind.DEAD, MessageKind.LEAVE])
@pytest.mark.parametrize("state", [ALIVE, SUSPECT])
def test_accusation_beyond_the_announced_incarnation_is_ignored(
    kind: MessageKind, state: MemberState
) -> None:
    """No accusation may move a member's incarnation more than one past what it announced,
    so a single forged ``dead`` at the largest incarnation cannot evict anyone."""
    m = make()
    m.on_alive("b", 3, addr(2), b"", 0.0)
    if state is SUSPECT:
        m.on_suspect("b", 3, "c", 0.5)
    m.take_events()
    before = m.get("b")
    for inc in (5, 1 << 40, MAX_INCARNATION):
        out = m.receive(message(kind, "b", inc), 1.0)
        assert out.action is Action.IGNORED
        assert out.broadcast == ()
    assert m.get("b") == before
    assert m.take_events() == []
    assert m.statistics().accusations_out_of_range == 3
    # One past is still honoured: an honest accuser may have seen one alive more.
    assert m.receive(message(kind, "b", 4), 2.0).action is not Action.IGNORED


@pytest.mark.parametrize("kind", [MessageKind.SUSPECT, MessageKind.DEAD, MessageKind.LEAVE])
def test_forged_accusation_about_self_at_the_largest_incarnation_is_refuted_in_place(
    kind: MessageKind,
) -> None:
    m = make(incarnation=2)
    out = m.receive(message(kind, LOCAL, MAX_INCARNATION), 1.0)
    assert out.action is Action.REFUTED
    assert m.local.incarnation == 3  # not the largest: it can refute again tomorrow
    assert out.broadcast == (m.local_alive(),)
    assert m.statistics().incarnation_overflows == 0


def test_push_pull_state_at_the_largest_incarnation_cannot_overflow() -> None:
    m = make(incarnation=2)
    [out] = m.merge_remote([Member(LOCAL, Address(*LOCAL_ADDR), MAX_INCARNATION, DEAD)], 1.0)
    assert out.action is Action.REFUTED
    assert m.local.incarnation == 3
    assert m.statistics().incarnation_overflows == 1
    top = make(incarnation=MAX_INCARNATION)
    assert top.on_dead(LOCAL, MAX_INCARNATION, "x", 1.0).action is Action.IGNORED
    assert top.local.incarnation == MAX_INCARNATION
    assert top.statistics().incarnation_overflows == 1


# ------------------------------------------------------------ leave


def test_local_leave_stops_refutation() -> None:
    m = make(incarnation=2)
    assert m.leave(5.0) == Leave(LOCAL, 2)
    assert m.local.state is LEFT
    assert m.on_suspect(LOCAL, 2, "x", 6.0).action is Action.IGNORED
    assert m.on_dead(LOCAL, 9, "x", 6.0).action is Action.IGNORED
    assert m.on_alive(LOCAL, 9, LOCAL_ADDR, b"", 6.0).action is Action.IGNORED
    assert m.local.incarnation == 2
    assert m.leave(7.0) == Leave(LOCAL, 2)  # idempotent
    assert m.tick(1e6) == ()
    assert m.get(LOCAL) is not None  # never reaps itself


def test_a_member_that_left_is_not_reported_as_failed() -> None:
    m = cluster(3)
    m.on_leave("m1", 0, 1.0)
    assert m.on_dead("m1", 0, "m2", 2.0).action is Action.IGNORED
    assert m.on_suspect("m1", 0, "m2", 2.0).action is Action.IGNORED
    assert [e.kind for e in m.take_events()] == [EventKind.LEFT]
    assert m.get("m1").state is LEFT  # type: ignore[union-attr]


def test_leave_heard_after_death_corrects_it() -> None:
    m = cluster(3)
    m.on_dead("m1", 0, "m2", 1.0)
    assert m.on_dead("m1", 0, "m1", 2.0).action is Action.APPLIED  # memberlist's form of leave
    assert [e.kind for e in m.take_events()] == [EventKind.FAILED, EventKind.LEFT]
    assert m.get("m1").state is LEFT  # type: ignore[union-attr]


# ------------------------------------------------------------ name conflicts


@pytest.mark.parametrize("state", [ALIVE, SUSPECT])
def test_live_name_at_another_address_is_a_conflict(state: MemberState) -> None:
    m = cluster(4)
    put(m, "b", state, 1, address=5)
    before = m.get("b")
    out = m.on_alive("b", 9, addr(6), b"x", 3.0)
    assert out.action is Action.CONFLICT
    assert out.broadcast == ()
    assert not out.regossip
    assert m.get("b") == before
    [event] = m.take_events()
    assert event.kind is EventKind.CONFLICT
    assert event.member == before
    assert event.conflicting == Member("b", Address(*addr(6)), 9, ALIVE, b"x", 3.0)
    assert m.statistics().conflicts == 1
    # the same claim again is counted again, and still does not flap the record
    m.on_alive("b", 10, addr(6), b"x", 4.0)
    assert m.get("b") == before
    assert m.statistics().conflicts == 2


def test_dead_name_is_not_reclaimed_when_reclaim_time_is_zero() -> None:
    m = cluster(3)
    put(m, "b", DEAD, 1, address=5)
    assert m.on_alive("b", 2, addr(6), b"", 1000.0).action is Action.CONFLICT
    assert m.get("b").address == Address(*addr(5))  # type: ignore[union-attr]


def test_dead_name_is_reclaimed_after_reclaim_time_with_a_higher_incarnation() -> None:
    config = LAN.replace(dead_node_reclaim_time=10.0, gossip_to_the_dead=60.0)
    m = cluster(3, config=config)
    put(m, "b", DEAD, 1, address=5, now=100.0)
    assert m.on_alive("b", 2, addr(6), b"", 109.0).action is Action.CONFLICT
    assert m.on_alive("b", 1, addr(6), b"", 110.0).action is Action.CONFLICT  # not higher
    out = m.on_alive("b", 2, addr(6), b"", 110.0)
    assert out.action is Action.APPLIED
    assert m.get("b") == Member("b", Address(*addr(6)), 2, ALIVE, b"", 110.0)
    assert [e.kind for e in m.take_events()] == [EventKind.CONFLICT, EventKind.CONFLICT, EventKind.JOINED]


def test_left_name_is_rebound_only_by_a_higher_incarnation() -> None:
    m = cluster(3)
    put(m, "b", LEFT, 4, address=5)
    assert m.on_alive("b", 4, addr(6), b"", 1.0).action is Action.CONFLICT
    assert m.on_alive("b", 5, addr(6), b"", 1.0).action is Action.APPLIED
    assert m.get("b").address == Address(*addr(6))  # type: ignore[union-attr]


def test_alive_about_self_from_another_address_is_a_conflict_not_refuted() -> None:
    m = make(incarnation=1)
    out = m.on_alive(LOCAL, 5, addr(9), b"", 1.0)
    assert out.action is Action.CONFLICT
    assert out.broadcast == ()
    assert m.local.incarnation == 1
    assert m.local.address == Address(*LOCAL_ADDR)
    [event] = m.take_events()
    assert event.kind is EventKind.CONFLICT
    assert m.awareness.score == 0


def test_meta_and_address_updates_of_an_alive_member() -> None:
    m = cluster(2)
    assert m.on_alive("m1", 1, addr(1), b"v2", 1.0).action is Action.APPLIED
    assert [e.kind for e in m.take_events()] == [EventKind.UPDATED]
    assert m.get("m1").meta == b"v2"  # type: ignore[union-attr]
    assert m.get("m1").state_changed_at == 0.0  # type: ignore[union-attr]


# ------------------------------------------------------------ suspicion timing


def suspicion_deadline(n: int) -> tuple[Membership, float]:
    m = cluster(n)
    out = m.probe_failed("m1", 100.0)
    assert out.action is Action.APPLIED
    assert out.broadcast == (Suspect("m1", 0, LOCAL),)
    assert [e.kind for e in m.take_events()] == [EventKind.SUSPECTED]
    deadline = m.next_deadline()
    assert deadline is not None
    return m, deadline - 100.0


@pytest.mark.parametrize(
    ("n", "timeout"),
    [
        (2, 4.0),  # k = 0: the minimum at once
        (3, 4.0),
        (4, 24.0),  # k = 2: starts at max = 6 * min
        (10, 24.0),
        (100, 48.0),  # min = 4 * log10(100) = 8
    ],
)
def test_suspicion_timeout_scales_with_cluster_size(n: int, timeout: float) -> None:
    _, got = suspicion_deadline(n)
    assert got == pytest.approx(timeout)


def test_n_counts_only_members_not_dead_or_left() -> None:
    m = cluster(5)  # 5 members, but two are gone: n = 3, so k = 0
    m.on_dead("m3", 0, "x", 0.0)
    m.on_leave("m4", 0, 0.0)
    m.probe_failed("m1", 100.0)
    s = m.suspicion("m1")
    assert s is not None
    assert s.k == 0
    assert s.deadline() == pytest.approx(104.0)


def test_unconfirmed_suspicion_expires_at_max() -> None:
    m, _ = suspicion_deadline(4)
    assert m.tick(123.9) == ()
    assert m.get("m1").state is SUSPECT  # type: ignore[union-attr]
    assert m.tick(124.0) == (Dead("m1", 0, LOCAL),)
    assert m.get("m1").state is DEAD  # type: ignore[union-attr]
    [event] = m.take_events()
    assert (event.kind, event.previous_state) == (EventKind.FAILED, SUSPECT)
    assert m.statistics().suspicion_timeouts == 1
    assert m.tick(125.0) == ()  # once only
    assert m.next_deadline() == pytest.approx(124.0 + LAN.gossip_to_the_dead)


def test_confirmations_shorten_the_suspicion() -> None:
    m, _ = suspicion_deadline(4)  # k = 2, min 4, max 24
    out = m.on_suspect("m1", 0, "m2", 101.0)
    assert out.action is Action.CONFIRMED
    assert out.regossip
    one = 24.0 - 20.0 * math.log(2) / math.log(3)
    assert m.next_deadline() == pytest.approx(100.0 + one)
    # the same confirmer again, and the original suspector, do not count
    assert m.on_suspect("m1", 0, "m2", 102.0).action is Action.IGNORED
    assert m.probe_failed("m1", 102.0).action is Action.IGNORED
    assert m.next_deadline() == pytest.approx(100.0 + one)
    assert m.on_suspect("m1", 0, "m3", 103.0).action is Action.CONFIRMED
    assert m.next_deadline() == pytest.approx(104.0)
    assert m.tick(104.0) == (Dead("m1", 0, LOCAL),)
    assert m.statistics().confirmations == 2


def test_local_probe_failure_confirms_a_remote_suspicion() -> None:
    m = cluster(4)
    m.on_suspect("m1", 0, "m2", 100.0)
    out = m.probe_failed("m1", 101.0)
    assert out.action is Action.CONFIRMED
    assert out.broadcast == (Suspect("m1", 0, LOCAL),)


def test_suspect_with_higher_incarnation_keeps_the_timer() -> None:
    m, _ = suspicion_deadline(4)
    out = m.on_suspect("m1", 1, "m2", 110.0)
    assert out.action is Action.APPLIED
    assert m.get("m1").incarnation == 1  # type: ignore[union-attr]
    s = m.suspicion("m1")
    assert s is not None
    assert s.started_at == 100.0
    assert s.confirmations == 1
    # an alive at the old refuting incarnation no longer clears it
    assert m.on_alive("m1", 1, addr(1), b"", 111.0).action is Action.IGNORED


def test_probe_failed_ignores_dead_and_unknown_and_rejects_self() -> None:
    m = cluster(3)
    m.on_dead("m1", 0, "x", 0.0)
    assert m.probe_failed("m1", 1.0).action is Action.IGNORED
    assert m.probe_failed("nobody", 1.0) == Outcome(Action.IGNORED, None)
    with pytest.raises(ValueError, match="itself"):
        m.probe_failed(LOCAL, 1.0)


def test_tick_expires_in_deadline_order() -> None:
    m = cluster(3)  # k = 0: every suspicion lasts the minimum, 4 s
    m.probe_failed("m2", 10.0)
    m.probe_failed("m1", 11.0)
    assert m.next_deadline() == pytest.approx(14.0)
    assert m.tick(20.0) == (Dead("m2", 0, LOCAL), Dead("m1", 0, LOCAL))


# ------------------------------------------------------------ dead members, reaping


def test_dead_members_are_gossip_targets_until_reaped() -> None:
    config = LAN.replace(gossip_to_the_dead=30.0)
    m = cluster(3, config=config)
    m.on_dead("m1", 0, "x", 100.0)
    m.take_events()
    assert {t.name for t in m.gossip_targets(10, 110.0)} == {"m1", "m2"}
    assert {t.name for t in m.random_members(10)} == {"m2"}
    assert m.next_deadline() == pytest.approx(130.0)
    m.tick(129.9)
    assert m.get("m1") is not None
    m.tick(130.0)
    assert m.get("m1") is None
    [event] = m.take_events()
    assert (event.kind, event.member.name, event.previous_state) == (EventKind.REAPED, "m1", DEAD)
    assert m.next_deadline() is None
    assert m.statistics().reaped == 1
    assert {t.name for t in m.gossip_targets(10, 130.0)} == {"m2"}


def test_left_members_are_reaped_too() -> None:
    m = cluster(2)
    m.on_leave("m1", 0, 5.0)
    m.tick(5.0 + LAN.gossip_to_the_dead)
    assert m.get("m1") is None
    assert [e.kind for e in m.take_events()] == [EventKind.LEFT, EventKind.REAPED]


def test_next_deadline_is_the_earliest_of_suspicion_and_reap() -> None:
    m = cluster(3)
    m.on_dead("m2", 0, "x", 0.0)  # reaped at 30
    m.probe_failed("m1", 20.0)  # n = 2, k = 0: dies at 24
    assert m.next_deadline() == pytest.approx(24.0)
    m.tick(24.0)
    assert m.next_deadline() == pytest.approx(30.0)


# ------------------------------------------------------------ replay safety


def test_replayed_accusations_an_hour_later_change_nothing() -> None:
    m = cluster(4)
    m.on_suspect("m1", 0, "m2", 10.0)
    m.on_alive("m1", 1, addr(1), b"", 11.0)  # refuted
    m.take_events()
    before = m.members()
    stats = m.statistics()
    for msg in (Suspect("m1", 0, "m2"), Dead("m1", 0, "m3"), Alive("m1", 0, Address(*addr(1)), b"")):
        out = m.receive(msg, 3611.0)
        assert out.action is Action.IGNORED
        assert out.broadcast == ()
    assert m.members() == before
    assert m.take_events() == []
    assert m.next_deadline() is None
    assert m.statistics().stale == stats.stale + 3


def test_replayed_accusation_about_self_is_not_refuted_again() -> None:
    m = make()
    m.on_suspect(LOCAL, 0, "x", 1.0)  # refuted: now at 1
    assert m.on_suspect(LOCAL, 0, "x", 3601.0).action is Action.IGNORED
    assert m.on_dead(LOCAL, 0, "x", 3601.0).action is Action.IGNORED
    assert m.local.incarnation == 1
    assert m.awareness.score == 1


def test_duplicate_alive_is_not_regossiped() -> None:
    m = cluster(2)
    out = m.on_alive("m1", 0, addr(1), b"", 5.0)
    assert out.action is Action.IGNORED
    assert not out.regossip


# ------------------------------------------------------------ probe order and random members


def test_round_robin_visits_every_member_once_per_pass_and_reshuffles() -> None:
    m = cluster(10, seed=7)
    others = {f"m{i}" for i in range(1, 10)}
    passes = []
    for _ in range(5):
        order = []
        for _ in range(9):
            t = m.next_probe_target()
            assert t is not None
            order.append(t.name)
        assert set(order) == others
        assert len(order) == 9
        passes.append(tuple(order))
    assert len(set(passes[1:])) > 1  # reshuffled at each new pass


def test_probe_order_skips_dead_and_left_but_keeps_suspects() -> None:
    m = cluster(5)
    m.on_dead("m1", 0, "x", 0.0)
    m.on_leave("m2", 0, 0.0)
    m.on_suspect("m3", 0, "x", 0.0)
    names = [m.next_probe_target().name for _ in range(6)]  # type: ignore[union-attr]
    assert set(names[:2]) == {"m3", "m4"}
    assert set(names[2:4]) == {"m3", "m4"}


def test_member_joining_mid_pass_is_probed_in_that_pass() -> None:
    m = cluster(4)
    first = m.next_probe_target()
    assert first is not None
    m.on_alive("late", 0, addr(50), b"", 1.0)
    rest = [m.next_probe_target().name for _ in range(3)]  # type: ignore[union-attr]
    assert {first.name, *rest} == {"m1", "m2", "m3", "late"}


def test_random_members_are_distinct_live_and_respect_exclude() -> None:
    m = cluster(8)
    m.on_dead("m7", 0, "x", 0.0)
    picked = m.random_members(3, exclude={"m1"})
    assert len(picked) == 3
    assert len({p.name for p in picked}) == 3
    assert not {p.name for p in picked} & {LOCAL, "m1", "m7"}
    assert len(m.random_members(100)) == 6
    assert m.random_members(0) == []
    with pytest.raises(ValueError, match="now"):
        m.random_members(3, include_dead_within=10.0)
    assert "m7" in {p.name for p in m.random_members(100, include_dead_within=10.0, now=5.0)}
    assert "m7" not in {p.name for p in m.random_members(100, include_dead_within=10.0, now=11.0)}


def run_script(seed: int) -> tuple[object, ...]:
    m = cluster(12, seed=seed)
    probes = [m.next_probe_target().name for _ in range(30)]  # type: ignore[union-attr]
    helpers = [tuple(x.name for x in m.random_members(3, exclude={"m1"})) for _ in range(10)]
    m.probe_failed("m2", 1.0)
    m.tick(100.0)
    return tuple(probes), tuple(helpers), m.members(), tuple(m.take_events())


def test_deterministic_for_a_seed() -> None:
    assert run_script(42) == run_script(42)
    assert run_script(42)[:2] != run_script(43)[:2]


# ------------------------------------------------------------ local changes, merge, statistics


def test_merge_remote_follows_memberlist() -> None:
    m = cluster(3)
    remote = [
        Member("new", Address(*addr(40)), 2, ALIVE, b"", 0.0),  # learned
        Member("m1", Address(*addr(1)), 0, DEAD, b"", 0.0),  # only suspected here
        Member("m2", Address(*addr(2)), 0, LEFT, b"", 0.0),  # left
        Member("dead-stranger", Address(*addr(41)), 0, DEAD, b"", 0.0),  # unknown: ignored
    ]
    outcomes = m.merge_remote(remote, 5.0)
    assert [o.action for o in outcomes] == [Action.APPLIED, Action.APPLIED, Action.APPLIED, Action.IGNORED]
    assert m.get("new").state is ALIVE  # type: ignore[union-attr]
    assert m.get("m1").state is SUSPECT  # type: ignore[union-attr]
    assert m.get("m2").state is LEFT  # type: ignore[union-attr]
    assert m.get("dead-stranger") is None
    assert outcomes[1].broadcast == (Suspect("m1", 0, LOCAL),)


def test_statistics_counts() -> None:
    m = cluster(4)
    m.on_suspect("m1", 0, "m2", 1.0)
    m.on_suspect("m1", 0, "m3", 1.0)
    m.on_alive("m1", 1, addr(1), b"", 2.0)
    m.on_dead("m2", 0, "m3", 3.0)
    m.on_alive("m2", 1, addr(2), b"", 4.0)
    m.on_leave("m3", 0, 5.0)
    m.on_suspect(LOCAL, 0, "m1", 6.0)
    m.on_alive("m1", 2, addr(99), b"", 7.0)
    s = m.statistics()
    assert (s.alive, s.suspect, s.dead, s.left) == (3, 0, 0, 1)
    assert (s.joins, s.suspicions, s.confirmations, s.suspicions_refuted) == (4, 1, 1, 1)
    assert (s.deaths, s.deaths_refuted, s.leaves, s.refutations, s.conflicts) == (1, 1, 1, 1, 1)
    assert (s.incarnation, s.awareness) == (1, 1)


# ------------------------------------------------------------ invariants under random traffic

NAMES = [LOCAL, "a", "b", "c"]
messages = st.one_of(
    st.builds(
        Alive,
        st.sampled_from(NAMES),
        st.integers(0, 4),
        st.sampled_from([Address(*addr(1)), Address(*LOCAL_ADDR)]),
        st.sampled_from([b"", b"m"]),
    ),
    st.builds(Suspect, st.sampled_from(NAMES), st.integers(0, 4), st.sampled_from(NAMES)),
    st.builds(Dead, st.sampled_from(NAMES), st.integers(0, 4), st.sampled_from(NAMES)),
    st.builds(Leave, st.sampled_from(NAMES), st.integers(0, 4)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(messages, st.floats(0, 50)), max_size=40))
def test_invariants_under_random_traffic(steps: list[tuple[Alive | Suspect | Dead | Leave, float]]) -> None:
    m = make()
    now = 0.0
    seen: dict[str, int] = {}
    for msg, dt in steps:
        now += dt
        m.receive(msg, now)
        m.tick(now)
        assert m.local.state is ALIVE
        for rec in m.members():
            assert (m.suspicion(rec.name) is not None) == (rec.state is SUSPECT)
            assert rec.incarnation >= seen.get(rec.name, 0) or rec.name not in seen
            seen[rec.name] = rec.incarnation
        for gone in set(seen) - {r.name for r in m.members()}:
            del seen[gone]
        deadline = m.next_deadline()
        assert deadline is None or deadline > now


def test_alive_is_stale_fast_path_agrees_with_on_alive() -> None:
    """The pre-decode check says stale only where on_alive would ignore the message."""
    import random as _random

    from gossipreg.core.config import Config as _Config
    from gossipreg.core.membership import Action as _Action
    from gossipreg.core.membership import Membership as _Membership

    m = _Membership("me", ("10.0.0.1", 1), _Config.lan(), _random.Random(0), 0.0)
    m.on_alive("b", 3, ("10.0.0.2", 1), b"", 0.0)
    stale_before = m.statistics().stale
    assert m.alive_is_stale("b", 3, "10.0.0.2", 1)
    assert m.alive_is_stale("b", 2, "10.0.0.2", 1)
    assert m.statistics().stale == stale_before + 2
    assert not m.alive_is_stale("b", 4, "10.0.0.2", 1)  # news: a higher incarnation
    assert not m.alive_is_stale("b", 3, "10.0.0.9", 1)  # another address: the conflict rule decides
    assert not m.alive_is_stale("c", 0, "10.0.0.3", 1)  # unknown: a join
    assert not m.alive_is_stale("me", 0, "10.0.0.1", 1)  # about this member: refutation rules
    # Wherever the fast path says stale, the full handler ignores the message too.
    for inc in (0, 1, 2, 3):
        assert m.alive_is_stale("b", inc, "10.0.0.2", 1)
        assert m.on_alive("b", inc, ("10.0.0.2", 1), b"", 1.0).action is _Action.IGNORED


ACCUSERS = ["a", "b", "c", "x", "y"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(messages, st.floats(0, 5)), max_size=30),
    st.sampled_from([*NAMES, "unknown"]),
    st.integers(0, 5),
    st.sampled_from(ACCUSERS + NAMES),
    st.booleans(),
    st.one_of(st.just(0.0), st.floats(0, 30)),
    st.one_of(st.none(), st.tuples(st.integers(0, 5), st.sampled_from(ACCUSERS), st.floats(0, 30))),
)
def test_accusation_is_stale_fast_path_agrees_with_the_full_handlers(
    steps: list[tuple[Alive | Suspect | Dead | Leave, float]],
    name: str,
    incarnation: int,
    accuser: str,
    dead: bool,
    dt: float,
    suspected: tuple[int, str, float] | None,
) -> None:
    """The pre-decode check of suspicions and deaths says stale exactly where
    on_suspect / on_dead would ignore the message, for another known member,
    and takes the full path everywhere else; it changes nothing but the stale count."""

    def build() -> tuple[Membership, float]:
        m = make()
        for i in range(6):  # enough live members that suspicions want confirmations (k > 0)
            m.on_alive(f"f{i}", 0, addr(10 + i), b"", 0.0)
        now = 0.0
        for msg, step in steps:
            now += step
            m.receive(msg, now)
            m.tick(now)
        if suspected is not None:  # make the interesting case common: ``name`` suspected
            inc, first, ago = suspected
            m.on_alive(name, inc, addr(50), b"", now)
            m.on_suspect(name, inc, first, now)
            now += ago
        return m, now + dt

    fast, now = build()
    full, _ = build()
    def ignored(m: Membership) -> int:
        st = m.statistics()
        return st.stale + st.accusations_out_of_range

    before = ignored(fast)
    stale = fast.accusation_is_stale(name, incarnation, accuser, dead, now)
    assert fast.members() == full.members()  # nothing changed...
    s_fast, s_full = fast.suspicion(name), full.suspicion(name)
    assert (s_fast and s_fast.confirmations) == (s_full and s_full.confirmations)
    assert ignored(fast) == before + stale  # ...but the count of ignored messages
    outcome = (full.on_dead if dead else full.on_suspect)(name, incarnation, accuser, now)
    judged = fast.get(name) is not None and name != LOCAL and not (dead and accuser == name)
    if judged:
        assert stale == (outcome.action is Action.IGNORED)
    else:
        assert not stale


def test_a_replayed_alive_of_a_reaped_member_is_ignored() -> None:
    """The graveyard: once reaped, a member's old alives stay old; only a refutation
    with a higher incarnation (a restart that learned its last one) brings it back."""
    import random as _random

    from gossipreg.core.config import Config as _Config
    from gossipreg.core.membership import Action as _Action
    from gossipreg.core.membership import Member as _Member
    from gossipreg.core.membership import Membership as _Membership
    from gossipreg.core.membership import MemberState as _State

    cfg = _Config.lan()
    m = _Membership("me", ("10.0.0.1", 1), cfg, _random.Random(0), 0.0)
    m.on_alive("x", 4, ("10.0.0.9", 1), b"", 0.0)
    m.on_leave("x", 4, 1.0)
    m.tick(1.0 + cfg.gossip_to_the_dead)
    assert m.get("x") is None
    assert [(g.name, g.incarnation, g.state) for g in m.graveyard()] == [("x", 4, _State.LEFT)]
    for inc in (0, 4):  # a replay from before the leave, and a restarted process at 0
        assert m.on_alive("x", inc, ("10.0.0.9", 1), b"", 100.0).action is _Action.IGNORED
        assert m.get("x") is None
    assert m.on_alive("x", 5, ("10.0.0.9", 1), b"", 101.0).action is _Action.APPLIED
    assert m.graveyard() == ()
    # A graveyard entry learned from a peer's push-pull protects a member that never knew x.
    fresh = _Membership("new", ("10.0.0.2", 1), cfg, _random.Random(0), 0.0)
    fresh.merge_remote([_Member("y", Address("10.0.0.8", 1), 7, _State.DEAD)], 0.0)
    assert fresh.on_alive("y", 3, ("10.0.0.8", 1), b"", 1.0).action is _Action.IGNORED
    # Forgotten after tombstone_ttl.
    fresh.tick(cfg.tombstone_ttl + 1)
    assert fresh.graveyard() == ()


# ------------------------------------------------ gaps found by mutation testing
# (scripts/mutation; each test names the behaviour it protects)


def test_merge_remote_applies_every_entry_after_an_unknown_dead_member() -> None:
    m = make()
    remote = [
        Member("ghost", Address(*addr(9)), 3, DEAD),  # never known here: only remembered
        Member("a", Address(*addr(1)), 1, ALIVE),
        Member("b", Address(*addr(2)), 2, ALIVE),
    ]
    outcomes = m.merge_remote(remote, 0.0)
    assert [o.action for o in outcomes] == [Action.IGNORED, Action.APPLIED, Action.APPLIED]
    assert m.get("a") is not None
    assert m.get("b") is not None
    assert [g.name for g in m.graveyard()] == ["ghost"]


def test_the_graveyard_keeps_the_highest_incarnation_it_heard() -> None:
    m = make()
    m.merge_remote([Member("ghost", Address(*addr(9)), 5, DEAD)], 0.0)
    m.merge_remote([Member("ghost", Address(*addr(9)), 2, LEFT)], 1.0)  # an older report
    ((g),) = m.graveyard()
    assert g.incarnation == 5
    # So an alive the removed member sent before its death stays a replay.
    assert m.on_alive("ghost", 4, addr(9), b"", 2.0).action is Action.IGNORED
    assert m.get("ghost") is None
    # A newer report replaces it.
    m.merge_remote([Member("ghost", Address(*addr(9)), 8, DEAD)], 3.0)
    assert [g.incarnation for g in m.graveyard()] == [8]


@pytest.mark.parametrize("bad", [-1, True, False, 1.0, "1", None])
def test_every_entry_point_refuses_an_invalid_incarnation(bad: object) -> None:
    m = make()
    put(m, "a", ALIVE, 1)
    calls: list[Callable[[], object]] = [
        lambda: m.on_alive("a", bad, addr(1), b"", 1.0),  # type: ignore[arg-type]
        lambda: m.on_alive("new", bad, addr(2), b"", 1.0),  # type: ignore[arg-type]
        lambda: m.on_suspect("a", bad, "x", 1.0),  # type: ignore[arg-type]
        lambda: m.on_dead("a", bad, "x", 1.0),  # type: ignore[arg-type]
        lambda: m.on_leave("a", bad, 1.0),  # type: ignore[arg-type]
        lambda: m.merge_remote([Member(LOCAL, Address(*LOCAL_ADDR), bad, SUSPECT)], 1.0),  # type: ignore[arg-type]
        lambda: Membership(LOCAL, LOCAL_ADDR, LAN, Random(0), 0.0, incarnation=bad),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(ValueError, match="incarnation"):
            call()
    assert m.get("a") == Member("a", Address(*addr(1)), 1, ALIVE, b"", 0.0)
    assert m.get("new") is None


def test_properties_name_the_member_and_its_config() -> None:
    m = make()
    assert m.local_name == LOCAL
    assert m.config is LAN


def test_the_table_fingerprint_is_stable_across_versions() -> None:
    """Members of different versions compare fingerprints in the push-pull check: the
    hash is part of the protocol, so its values are pinned."""
    m = make()
    assert m.fingerprint() == 5613207259579553961
    m.on_alive("a", 3, addr(1), b"", 0.0)
    m.on_alive("\ud800", 1, addr(2), b"", 0.0)  # lone surrogates hash too
    assert m.fingerprint() == 269684269037474363


def test_a_member_back_in_the_same_probe_pass_is_probed_again() -> None:
    m = make(seed=3)
    for i in range(1, 5):
        put(m, f"m{i}", ALIVE, 1, address=i)
    drawn = [m.next_probe_target()]  # a pass over m1..m4 begins
    m.on_alive("late", 1, addr(9), b"", 0.0)  # joins during the pass: visited in it
    while "late" not in [d.name for d in drawn if d is not None]:
        drawn.append(m.next_probe_target())
    m.on_dead("late", 1, "x", 1.0)
    m.on_alive("late", 2, addr(9), b"", 2.0)  # back after it was visited: visited again
    rest = [m.next_probe_target() for _ in range(6 - len(drawn))]
    names = [d.name for d in [*drawn, *rest] if d is not None]
    assert sorted(names) == ["late", "late", "m1", "m2", "m3", "m4"]


def test_receive_refuses_what_is_not_a_membership_message() -> None:
    m = make()
    with pytest.raises(TypeError, match="not a membership message"):
        m.receive(object(), 0.0)  # type: ignore[arg-type]


def test_alive_is_stale_answers_a_bool() -> None:
    m = make()
    put(m, "a", ALIVE, 2)
    assert m.alive_is_stale("new", 1, *addr(1)) is False
    assert m.alive_is_stale("a", 3, *addr(1)) is False
    assert m.alive_is_stale("a", 2, *addr(1)) is True


GRACE = Config.lan(death_grace=10.0)


def test_a_stale_accusation_is_counted_as_stale_not_as_out_of_range() -> None:
    m = make()
    put(m, "a", ALIVE, 5)
    assert m.accusation_is_stale("a", 3, "x", False, 0.0) is True  # older incarnation
    assert (m.statistics().stale, m.statistics().accusations_out_of_range) == (1, 0)
    assert m.accusation_is_stale("a", 9, "x", False, 0.0) is True  # far beyond the announced one
    assert (m.statistics().stale, m.statistics().accusations_out_of_range) == (1, 1)


def test_a_repeated_death_within_the_grace_is_stale_only_at_the_same_incarnation() -> None:
    m = make(config=GRACE, now=1000.0)
    put(m, "a", ALIVE, 1, now=1000.0)
    m.on_suspect("a", 1, "x", 1000.0)
    m.on_dead("a", 1, "x", 1001.0)  # within the grace: deferred, the suspicion doomed
    assert m.get("a").state is SUSPECT  # type: ignore[union-attr]
    assert m.accusation_is_stale("a", 1, "y", True, 1002.0) is True
    assert m.accusation_is_stale("a", 2, "y", True, 1002.0) is False  # a higher incarnation: full path
    # Once the grace is over, a death is believed: not stale.
    assert m.accusation_is_stale("a", 1, "y", True, 1010.0) is False
    assert m.on_dead("a", 1, "y", 1010.0).action is Action.APPLIED


def test_a_death_arriving_exactly_at_the_end_of_the_grace_is_believed() -> None:
    m = make(config=GRACE, now=1000.0)
    put(m, "a", ALIVE, 1, now=1000.0)
    m.on_suspect("a", 1, "x", 1000.0)
    assert m.on_dead("a", 1, "x", 1010.0).action is Action.APPLIED
    assert m.get("a").state is DEAD  # type: ignore[union-attr]


def test_a_member_heard_from_during_a_long_suspicion_gets_a_new_grace() -> None:
    m = make(config=GRACE, now=1000.0)
    put(m, "a", ALIVE, 1, now=1000.0)
    m.on_suspect("a", 1, "x", 1000.0)
    m.heard_from("a", 1995.0)  # a partition healed under the suspicion
    m.on_dead("a", 1, "x", 2000.0)  # declared on the far side: the grace runs from 1995
    assert m.get("a").state is SUSPECT  # type: ignore[union-attr]
    n = make(config=GRACE, now=1000.0)  # not heard from: the grace ran out long ago
    put(n, "a", ALIVE, 1, now=1000.0)
    n.on_suspect("a", 1, "x", 1000.0)
    n.on_dead("a", 1, "x", 2000.0)
    assert n.get("a").state is DEAD  # type: ignore[union-attr]


def test_held_suspicions_do_not_expire_before_the_hold() -> None:
    for hold_all in (True, False):
        m = make()
        put(m, "a", ALIVE, 1)
        put(m, "b", ALIVE, 1, address=2)
        m.on_suspect("a", 1, "x", 0.0)
        deadline = m.next_deadline()
        assert deadline is not None
        m.hold_suspicion("nobody", deadline + 100.0)  # no suspicion: nothing happens
        if hold_all:
            m.hold_suspicions(deadline + 100.0)
        else:
            m.hold_suspicion("a", deadline + 100.0)
        assert m.tick(deadline + 1.0) == ()
        assert m.get("a").state is SUSPECT  # type: ignore[union-attr]
        assert [d.name for d in m.tick(deadline + 100.0)] == ["a"]


def test_a_deferred_death_of_a_suspect_takes_its_incarnation_and_counts_once() -> None:
    m = make(config=GRACE, now=1000.0)
    put(m, "a", ALIVE, 1, now=1000.0)
    m.on_suspect("a", 1, "x", 1000.0)
    first = m.on_dead("a", 1, "x", 1001.0)  # the first death within the grace dooms the suspicion
    assert first.action is Action.CONFIRMED
    assert first.broadcast == (Dead("a", 1, "x"),)
    assert m.statistics().deaths_deferred == 1
    again = m.on_dead("a", 1, "y", 1002.0)  # the same again: nothing new
    assert again.action is Action.IGNORED
    assert again.member == m.get("a")
    higher = m.on_dead("a", 2, "y", 1003.0)  # a higher incarnation: taken, still a suspect
    assert higher.action is Action.APPLIED
    assert higher.member == m.get("a")
    assert (m.get("a").incarnation, m.get("a").state) == (2, SUSPECT)  # type: ignore[union-attr]
    assert m.statistics().deaths_deferred == 1


def test_the_graveyard_forgets_exactly_tombstone_ttl_after_the_last_burial() -> None:
    ttl = LAN.tombstone_ttl
    m = make()
    m.merge_remote([Member("ghost", Address(*addr(9)), 5, DEAD)], 0.0)
    m.merge_remote([Member("ghost", Address(*addr(9)), 5, DEAD)], 100.0)  # heard again: kept longer
    m.tick(ttl)
    assert [g.name for g in m.graveyard()] == ["ghost"]
    m.tick(100.0 + ttl)
    assert m.graveyard() == ()


def test_random_members_include_the_dead_up_to_the_limit() -> None:
    m = make()
    put(m, "gone", DEAD, 1, now=10.0)
    assert [x.name for x in m.random_members(5, include_dead_within=5.0, now=15.0)] == ["gone"]
    assert m.random_members(5, include_dead_within=5.0, now=15.5) == []


def test_refutations_reach_the_largest_incarnation_exactly() -> None:
    m = make(incarnation=MAX_INCARNATION - 2)
    assert m.on_suspect(LOCAL, MAX_INCARNATION - 1, "x", 1.0).action is Action.REFUTED
    assert m.local.incarnation == MAX_INCARNATION
    n = make(incarnation=MAX_INCARNATION - 1)
    [out] = n.merge_remote([Member(LOCAL, Address(*LOCAL_ADDR), MAX_INCARNATION, DEAD)], 1.0)
    assert out.action is Action.REFUTED  # past the message is impossible: one step is taken
    assert n.local.incarnation == MAX_INCARNATION


def test_an_old_accusation_is_answered_once_per_probe_interval_per_accuser() -> None:
    interval = LAN.probe_interval
    m = make(incarnation=3)
    out = m.on_suspect(LOCAL, 1, "x", 0.0)  # the accuser missed the refutation
    assert out.action is Action.IGNORED
    assert out.broadcast == (m.local_alive(),)
    assert (m.statistics().stale, m.statistics().reassertions) == (1, 1)
    assert m.on_suspect(LOCAL, 1, "x", interval / 2).broadcast == ()
    assert m.on_suspect(LOCAL, 1, "y", interval / 2).broadcast == (m.local_alive(),)  # another accuser
    assert m.on_suspect(LOCAL, 1, "x", interval).broadcast == (m.local_alive(),)
    assert m.statistics().stale == 4


def test_the_accusers_answered_are_remembered_however_many_there_are() -> None:
    m = make(incarnation=3)
    for i in range(1024):
        m.on_suspect(LOCAL, 1, f"a{i}", 0.0)
    assert m.on_suspect(LOCAL, 1, "new", 0.5).broadcast == (m.local_alive(),)  # the table is full
    assert m.on_suspect(LOCAL, 1, "a0", 0.6).broadcast == ()  # still remembered


def test_a_dead_member_may_come_back_at_another_address_after_the_reclaim_time() -> None:
    config = Config.lan(death_grace=0.0, dead_node_reclaim_time=0.5)
    m = make(config=config)
    put(m, "a", DEAD, 1)
    out = m.on_alive("a", 2, addr(2), b"", 1.0)
    assert out.action is Action.APPLIED
    assert m.get("a").address == Address(*addr(2))  # type: ignore[union-attr]


def test_a_member_heard_from_keeps_its_grace_through_a_new_suspicion_incarnation() -> None:
    m = make(config=GRACE, now=1000.0)
    put(m, "a", ALIVE, 1, now=1000.0)
    m.on_suspect("a", 1, "x", 1000.0)
    m.heard_from("a", 1995.0)
    m.on_suspect("a", 2, "x", 1996.0)  # still a suspect, at a new incarnation
    m.on_dead("a", 2, "x", 2000.0)
    assert m.get("a").state is SUSPECT  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", range(8))
def test_a_member_joining_twice_in_one_probe_pass_is_visited_once(seed: int) -> None:
    m = make(seed=seed)
    for i in range(1, 5):
        put(m, f"m{i}", ALIVE, 1, address=i)
    first = m.next_probe_target()  # a pass over m1..m4 begins
    assert first is not None
    m.on_alive("late", 1, addr(9), b"", 0.0)  # joins during the pass
    m.on_dead("late", 1, "x", 0.0)
    m.on_alive("late", 2, addr(9), b"", 0.0)  # and again, before it was visited
    rest = [m.next_probe_target() for _ in range(4)]
    assert sorted([first.name, *(r.name for r in rest if r is not None)]) == ["late", "m1", "m2", "m3", "m4"]


def test_member_states_and_record_defaults_are_part_of_the_protocol() -> None:
    # The state values travel in push-pull member lists (codec.encode_member).
    assert [s.value for s in MemberState] == ["alive", "suspect", "dead", "left"]
    m = Member("a", Address(*addr(1)), 1, ALIVE)
    assert (m.meta, m.state_changed_at, m.epoch) == (b"", 0.0, 0)


def test_a_short_death_grace_still_restarts_when_heard_from() -> None:
    m = make(config=Config.lan(death_grace=1.0), now=1000.0)
    put(m, "a", ALIVE, 1, now=1000.0)
    m.on_suspect("a", 1, "x", 1000.0)
    m.heard_from("a", 1999.5)
    m.on_dead("a", 1, "x", 2000.0)  # within a second of being heard from: deferred
    assert m.get("a").state is SUSPECT  # type: ignore[union-attr]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["suspect", "alive", "dead", "leave", "hold", "hold_all", "probe_failed", "tick"]
            ),
            st.integers(1, 5),  # which member
            st.integers(0, 3),  # incarnation (or how far to hold / advance)
            st.sampled_from(["m1", "m2", "m3", "x"]),  # accuser
        ),
        max_size=60,
    ),
    st.sampled_from([0.0, 1.0]),  # death_grace: deaths believed at once, or deferred
)
def test_kept_deadlines_match_a_full_scan(
    ops: list[tuple[str, int, int, str]], grace: float
) -> None:
    """next_deadline (kept up to date rather than rescanned) is always the least running
    suspicion deadline or reap time, and tick expires exactly what a full scan would."""
    m = cluster(6, config=Config.lan(death_grace=grace))
    now = 0.0
    for op, i, k, accuser in ops:
        now += 0.25
        name = f"m{i}"
        record = m.get(name)
        inc = (record.incarnation if record is not None else 0) + (k % 2)
        if op == "suspect":
            m.on_suspect(name, inc, accuser, now)
        elif op == "alive":
            m.on_alive(name, inc + k, addr(i), b"", now)
        elif op == "dead":
            m.on_dead(name, inc, accuser, now)
        elif op == "leave":
            m.on_leave(name, inc, now)
        elif op == "hold":
            m.hold_suspicion(name, now + k)
        elif op == "hold_all":
            m.hold_suspicions(now + k)
        elif op == "probe_failed":
            m.probe_failed(name, now)
        else:
            now += 10.0 * k
            due = [n for n in m._suspicions if m._suspicions[n].expired(now)]
            dead = m.tick(now)
            assert sorted(d.name for d in dead) == sorted(due)
        times = [s.deadline() for s in m._suspicions.values()] + list(m._gone.values())
        assert m.next_deadline() == min(times, default=None)
