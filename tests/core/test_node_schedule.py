"""The node core's construction and timers, driven by hand on one member.

What a new :class:`NodeCore` starts with (its limits, its announcement, its
eager-round budget, ``last_heard``) and when its timers fire: the staggered
first probe, gossip round, anti-entropy check, reconnect ping and reconnect
attempt, the fixed gossip schedule that news arriving after a quiet spell
waits for, and ``next_deadline()`` while a push-pull is in flight.

Each member here is alone and insecure; what its peers would send is fed to it
as plaintext datagrams. Its generator draws every ``uniform(a, b)`` at a fixed
fraction of the range (:class:`FixedDraws`), so the staggered timers land at
known points and a test can say exactly when each fires.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from gossipreg.core import codec
from gossipreg.core.codec import Ack, Message, Ping
from gossipreg.core.config import Config
from gossipreg.core.errors import InvalidServiceError
from gossipreg.core.membership import Address, Alive, Dead, MemberState
from gossipreg.core.node import JoinResult, NodeCore, Outgoing, SendDatagram, SendStream
from gossipreg.testing import WALL0, decode_datagram

from .node_helpers import plain, service, stat

A = Address("10.0.0.1", 7946)
B = Address("10.0.0.2", 7946)
C = Address("10.0.0.3", 7946)


class FixedDraws(random.Random):
    """A seeded generator whose ``uniform(a, b)`` is always ``a + fraction * (b - a)``."""

    def __init__(self, fraction: float) -> None:
        super().__init__(7)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + self.fraction * (b - a)


def lone(fraction: float = 0.25, *, now: float = 0.0, **changes: Any) -> NodeCore:
    """Member ``a`` alone at ``A``, created at ``now``, with :class:`FixedDraws` and ``Config(**changes)``."""
    return NodeCore("a", A, config=Config(**changes), rng=FixedDraws(fraction),
                    wall_clock=lambda: WALL0 + now, now=now, insecure=True)


def run(
    core: NodeCore, now: float, until: float, *, acking: Address | None = None
) -> list[tuple[float, Outgoing]]:
    """Tick ``core`` at each of its deadlines from ``now`` up to ``until``, as a driver would;
    return what it sent, with when. The member at ``acking`` acks every ping at once."""
    sent: list[tuple[float, Outgoing]] = []
    for _ in range(10_000):
        due = core.next_deadline()
        if due is None or due > until:
            return sent
        now = max(now, due)
        core.tick(now)
        out = core.take_outbox()
        sent += [(now, o) for o in out]
        pings = [m for o in out if isinstance(o, SendDatagram) and o.address == acking
                 for m in messages(o) if isinstance(m, Ping)]
        if acking is not None and pings:
            core.receive_datagram(plain(*(Ack(p.seq, p.target) for p in pings)), acking, now)
            sent += [(now, o) for o in core.take_outbox()]
    raise AssertionError("the member's deadline does not move")


def gossip_rounds(core: NodeCore, now: float, until: float) -> list[float]:
    """When ``core`` sends periodic gossip datagrams, ticking it from ``now`` up to ``until``."""
    times: list[float] = []
    for _ in range(10_000):
        due = core.next_deadline()
        if due is None or due > until:
            return times
        now = max(now, due)
        before = stat(core, "gossip_datagrams")
        core.tick(now)
        core.take_outbox()
        if stat(core, "gossip_datagrams") > before:
            times.append(now)
    raise AssertionError("the member's deadline does not move")


def state(core: NodeCore, name: str) -> MemberState | None:
    m = core.membership.get(name)
    return None if m is None else m.state


def messages(out: Outgoing) -> list[Message]:
    assert isinstance(out, SendDatagram)
    return decode_datagram(out.data, None)


# ====================================================================== construction


def test_meta_of_exactly_the_largest_size_is_accepted() -> None:
    meta = bytes(range(256)) * (codec.MAX_META // 256)
    assert len(meta) == codec.MAX_META
    core = NodeCore("a", A, config=Config(), rng=random.Random(0), wall_clock=lambda: WALL0, now=0.0,
                    insecure=True, meta=meta)
    [me] = core.members()
    assert me.meta == meta


@pytest.mark.parametrize(("tombstone_ttl", "longest"), [(3600.0, 3300.0), (200.0, 100.0)])
def test_the_longest_lease_leaves_the_convergence_bound_before_tombstones_are_collected(
    tombstone_ttl: float, longest: float
) -> None:
    """The bound is 300 s, or half of ``tombstone_ttl`` when that is shorter: a lease may
    last ``tombstone_ttl`` minus it, and not a millisecond more."""
    core = lone(tombstone_ttl=tombstone_ttl)
    [rec] = core.register(service("longest"), longest, 0.0)
    assert rec.ttl == longest
    with pytest.raises(InvalidServiceError, match="ttl"):
        core.register(service("too-long"), longest + 0.001, 0.0)
    assert [s.name for s in core.list_services()] == ["longest"]


def test_a_new_member_announces_itself_in_its_first_datagrams() -> None:
    a = lone()
    a.receive_datagram(plain(Alive("b", 1, B)), B, 0.0)
    to_b = [m for out in a.take_outbox() if isinstance(out, SendDatagram) and out.address == B
            for m in messages(out)]
    assert Alive("a", 0, A, b"", a.members()[0].epoch) in to_b


def test_last_heard_is_the_creation_time_until_a_datagram_arrives() -> None:
    a = lone(now=5.0)
    assert a.last_heard == 5.0
    a.tick(6.0)
    assert a.last_heard == 5.0  # timers are not news from anyone
    a.receive_datagram(plain(Alive("b", 1, B)), B, 7.5)
    assert a.last_heard == 7.5


def test_a_new_members_first_news_spends_an_eager_round_like_any_other() -> None:
    """Its announcement and first registration take the one eager round a budget of
    ``eager_round_rate=1`` holds: a second registration at the same instant waits."""
    a = lone(eager_round_rate=1.0)
    a.register(service("first"), None, 0.0)
    assert stat(a, "eager_rounds_deferred") == 0
    a.register(service("second"), None, 0.0)
    assert stat(a, "eager_rounds_deferred") == 1
    a.register(service("third"), None, 1.0)  # a second later the bucket holds one round again
    assert stat(a, "eager_rounds_deferred") == 1


# ====================================================================== staggered timers


def test_the_first_gossip_round_comes_at_a_drawn_point_of_the_first_gossip_interval() -> None:
    """Rounds then follow every ``gossip_interval`` (0.2 s) while there is news to send."""
    a = lone(eager_push=False, probe_interval=60.0)  # no pings to carry the news instead
    a.receive_datagram(plain(Alive("b", 1, B)), B, 0.0)
    assert gossip_rounds(a, 0.0, 0.5) == pytest.approx([0.05, 0.25, 0.45])


def test_news_after_a_quiet_spell_waits_for_the_next_round_of_the_gossip_schedule() -> None:
    """With nothing to send the member does not wake for gossip, but its schedule (0.05 s,
    then every 0.2 s) stands: news at 2.01 s goes out at 2.05 s, not at once nor later."""
    a = lone(eager_push=False, probe_interval=60.0)  # first probe at 15 s: no suspicion news meanwhile
    a.receive_datagram(plain(Alive("b", 1, B)), B, 0.0)
    earlier = gossip_rounds(a, 0.0, 2.0)
    assert earlier[0] == pytest.approx(0.05)
    assert stat(a, "broadcast_queue") == 0  # every update sent as often as it goes: quiet
    a.register(service("late-news"), None, 2.01)
    assert a.next_deadline() == pytest.approx(2.05)
    assert gossip_rounds(a, 2.01, 2.3) == pytest.approx([2.05, 2.25])


@pytest.mark.parametrize("late", [5e-10, 1e-9])
def test_a_gossip_round_overdue_by_no_more_than_the_float_tolerance_runs_now(late: float) -> None:
    """Times computed along different paths differ by rounding: a round due at most 1 ns
    ago is on time, not moved to the next gossip interval."""
    a = lone(0.0, eager_push=False)  # every draw at the low end: the first round is due at 0
    a.receive_datagram(plain(Alive("b", 1, B)), B, 0.0)
    a.tick(late)
    assert stat(a, "gossip_datagrams") == 1


def _with_news(**changes: Any) -> NodeCore:
    """Member ``a`` at 0 s told of 20 members at once: news to gossip for several rounds."""
    a = lone(0.5, eager_push=False, probe_interval=60.0, **changes)  # first probe at 30 s
    alives = [Alive(f"m{i:02d}", 1, Address("10.0.1.1", 7000 + i)) for i in range(20)]
    a.receive_datagram(plain(*alives), B, 0.0)
    return a


@pytest.mark.parametrize("late", [1e-4, 1e-3, 0.05])
def test_gossip_rounds_run_when_the_driver_wakes_late_for_them(late: float) -> None:
    """A real driver wakes a little after the deadline it asked for (trio's clock, a
    busy host). The round it woke for runs then; it is not moved to the next gossip
    interval and skipped again at the next late wake-up, which lost every periodic
    round (the retransmissions of all news) on real clocks."""
    a = _with_news()
    times: list[float] = []
    now = 0.0
    for _ in range(100):
        due = a.next_deadline()
        assert due is not None
        if due > 5.0:
            break
        now = max(now, due + late)
        before = stat(a, "gossip_datagrams")
        a.tick(now)
        a.take_outbox()
        if stat(a, "gossip_datagrams") > before:
            times.append(now)
    # The news goes out in as many rounds as an on-time driver sends, each as late
    # as its wake-up, until every update reached its transmit limit.
    on_time = _with_news()
    expected = gossip_rounds(on_time, 0.0, 5.0)
    assert len(expected) >= 3
    assert len(times) == len(expected)
    assert times[0] == pytest.approx(expected[0] + late)
    assert stat(a, "broadcast_queue") == stat(on_time, "broadcast_queue") == 0


def test_a_gossip_round_stays_due_when_input_comes_between_its_deadline_and_the_late_tick() -> None:
    """Any input (here a junk datagram) handled after a round's deadline but before the
    driver's late tick, and the next_deadline asked after it, must not move that round
    on: the tick still sends it."""
    a = _with_news()
    due = a.next_deadline()
    assert due is not None
    g = a._next_gossip
    assert due == g
    a.receive_datagram(b"junk", B, g + 0.0005)
    assert a.next_deadline() == pytest.approx(g)
    before = stat(a, "gossip_datagrams")
    a.tick(g + 0.001)
    assert stat(a, "gossip_datagrams") > before


def test_the_first_anti_entropy_check_comes_between_half_and_all_of_push_pull_interval() -> None:
    a = lone()  # 0.5 + 0.25 * 0.5 of 30 s: 18.75 s
    a.receive_datagram(plain(Alive("b", 1, B)), B, 0.0)
    sent = run(a, 0.0, 31.0, acking=B)  # b stays alive: the member to check with
    assert state(a, "b") is MemberState.ALIVE
    assert [(t, out.address) for t, out in sent if isinstance(out, SendStream)] == [(18.75, B)]
    assert stat(a, "push_pull_checks") == 1


def with_a_dead_member() -> NodeCore:
    """Member ``a`` at 0 s, told by ``c`` (without ``death_grace``) that ``b`` died."""
    a = lone(death_grace=0.0)
    a.receive_datagram(plain(Alive("b", 1, B), Dead("b", 1, "c")), C, 0.0)
    assert state(a, "b") is MemberState.DEAD
    a.take_outbox()
    return a


def test_reconnect_pings_start_at_a_drawn_point_of_the_first_probe_interval() -> None:
    """One member held dead, none alive: a reconnect ping every probe interval, the first
    at 0.25 s (a quarter of the first one), not at once."""
    a = with_a_dead_member()
    pings = [t for t, out in run(a, 0.0, 3.0) if isinstance(out, SendDatagram) and out.address == B
             and any(isinstance(m, Ping) and m.target == "b" for m in messages(out))]
    assert pings == pytest.approx([0.25, 1.25, 2.25])
    assert stat(a, "reconnect_pings") == 3


def test_reconnect_attempts_start_between_half_and_all_of_reconnect_interval() -> None:
    a = with_a_dead_member()  # 0.5 + 0.25 * 0.5 of 30 s: 18.75 s, then every 30 s
    attempts = [(t, out.address) for t, out in run(a, 0.0, 50.0) if isinstance(out, SendStream)]
    assert attempts == [(18.75, B), (48.75, B)]
    assert stat(a, "reconnect_attempts") == 2


# ====================================================================== next_deadline


def test_a_push_pull_in_flight_does_not_hold_back_the_members_other_timers() -> None:
    """A join waiting up to ``stream_timeout`` (10 s) for its seed: the member still wakes
    for its first probe at 0.25 s, and gives the join up at 10 s."""
    a = lone()
    a.join([B], 0.0)
    assert a.next_deadline() == 0.25
    run(a, 0.0, 9.99)
    assert not [e for e in a.take_events() if isinstance(e, JoinResult)]
    run(a, 9.99, 10.0)
    [result] = [e for e in a.take_events() if isinstance(e, JoinResult)]
    assert (result.address, result.ok) == (B, False)
