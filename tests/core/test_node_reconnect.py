"""Unit tests of the node core's reconnection paths (gossipreg.core.node), driven by hand.

What a member does about the members it holds dead and the suspects it hears from:
the serf-style draw of a member held dead to reconnect to or ping, the grace a
suspicion gets when its suspect speaks, when a member held dead speaks, or after this
member heard nothing for a while; the push-pull begun when a member held dead speaks
(at most one per address per probe interval); and the resync of an owner back from
down. Also the local calls around them: adopting a table, joining, leaving and
deregistering, as seen by the peers and the driver (datagrams, deadlines, counters).

Most tests drive one :class:`NodeCore` by hand: its member table adopted from a
snapshot, datagrams fed to it in plaintext (an insecure member) at chosen times, and
no tick unless the test says so, so that every timer is where the test put it.
"""

from __future__ import annotations

import random

from gossipreg.core import codec
from gossipreg.core.catalog import CatalogEvent, Record
from gossipreg.core.codec import Ack, Ping, RecordMsg, Tree
from gossipreg.core.config import Config
from gossipreg.core.membership import (
    Address,
    Dead,
    Leave,
    Member,
    MemberState,
    Suspect,
    TableSnapshot,
)
from gossipreg.core.model import Node
from gossipreg.core.node import JoinResult, NodeCore, Outgoing, SendDatagram, SendStream, _Resync
from gossipreg.testing import WALL0, CoreNetwork, decode_datagram

from .node_helpers import plain, read_stream, service, stat

ALIVE, SUSPECT, DEAD = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD
ME = Address("10.0.0.1", 7946)


def addr(name: str) -> Address:
    """The address of peer ``name`` (one lowercase letter) in the tables built here."""
    return Address(f"10.0.1.{ord(name) - ord('a') + 1}", 7946)


def table_core(*peers: str, config: Config, rng: random.Random | None = None, now: float = 0.0) -> NodeCore:
    """A lone insecure member ``me`` whose table holds ``peers`` ALIVE (adopted at ``now``)."""
    core = NodeCore("me", ME, config=config, rng=rng if rng is not None else random.Random(1),
                    wall_clock=lambda: WALL0, now=now, insecure=True)  # fmt: skip
    core.adopt(TableSnapshot(Member(p, addr(p), 0, ALIVE, b"", now) for p in peers), now)
    return core


def ping_from(core: NodeCore, name: str, now: float) -> None:
    """``name`` pings this member: an authenticated datagram from ``name``'s address."""
    core.receive_datagram(plain(Ping(1, "me", name, addr(name))), addr(name), now)


def deadline(core: NodeCore, name: str) -> float:
    """When ``core``'s running suspicion of ``name`` expires."""
    s = core.membership.suspicion(name)
    assert s is not None, f"no suspicion of {name}"
    return s.deadline()


def streams_to(core: NodeCore, name: str) -> list[SendStream]:
    return [o for o in core.take_outbox() if isinstance(o, SendStream) and o.address == addr(name)]


def pings_to(core: NodeCore, name: str) -> int:
    return sum(
        1
        for o in core.take_outbox()
        if isinstance(o, SendDatagram)
        and o.address == addr(name)
        and any(isinstance(m, Ping) and m.target == name for m in decode_datagram(o.data, None))
    )


# ---------------------------------------------------------------- drawing a member held dead


class _ScriptedRandom(random.Random):
    """A seeded generator whose ``random()`` returns ``value`` (the draw a test needs)."""

    value = 0.5

    def random(self) -> float:
        return self.value


def test_a_member_alone_with_its_one_dead_peer_pings_it_every_round() -> None:
    # failed / alive = 1 / 1 (this member counts itself): every round, not one in two.
    core = table_core("a", config=Config.lan(death_grace=0.0))
    core.receive_datagram(plain(Dead("a", 0, "x")), addr("a"), 0.1)
    assert core.membership.get("a").state is DEAD  # type: ignore[union-attr]
    core.take_outbox()
    for k in range(30):
        core._reconnect_ping(1.0 + k)
        assert pings_to(core, "a") == 1
    assert stat(core, "reconnect_pings") == 30


def test_the_reconnect_draw_succeeds_only_below_failed_over_alive() -> None:
    # 1 failed among 2 alive: a draw u succeeds when u * 2 < 1, so with probability 1/2 exactly.
    rng = _ScriptedRandom(7)
    core = table_core("a", "b", config=Config.lan(death_grace=0.0), rng=rng)
    core.receive_datagram(plain(Dead("a", 0, "b")), addr("b"), 0.1)
    core.take_outbox()
    rng.value = 0.5
    core._reconnect_ping(1.0)
    assert pings_to(core, "a") == 0
    rng.value = 0.4999
    core._reconnect_ping(2.0)
    assert pings_to(core, "a") == 1


def test_a_member_dead_longer_than_reconnect_timeout_is_no_longer_tried() -> None:
    core = table_core("a", config=Config.lan(death_grace=0.0, reconnect_timeout=10.0))
    core.receive_datagram(plain(Dead("a", 0, "x")), addr("a"), 0.1)
    core.take_outbox()
    core._reconnect(5.0)  # dead for 4.9 s: tried (1 failed, 1 alive: every round)
    assert len(streams_to(core, "a")) == 1
    core._reconnect(20.0)  # dead for 19.9 s: forgotten
    assert streams_to(core, "a") == []
    core._reconnect_ping(21.0)
    assert pings_to(core, "a") == 0
    assert stat(core, "reconnect_attempts") == 1
    assert stat(core, "reconnect_pings") == 0


# ---------------------------------------------------------------- the grace of a suspicion


def test_after_twice_the_probe_interval_of_silence_every_suspicion_gets_the_grace() -> None:
    """This member's own link was down: suspicions it formed meanwhile get ``death_grace``
    from the first datagram after ``2 * probe_interval`` of silence, not sooner."""
    for interval in (0.5, 2.0):
        grace = 100.0 * interval  # longer than any suspicion here: a hold always shows
        core = table_core("b", "c", "d", config=Config.lan(
            probe_interval=interval, probe_timeout=interval / 2, death_grace=grace))  # fmt: skip
        core.receive_datagram(plain(Suspect("c", 0, "b")), addr("b"), 0.0)
        due = deadline(core, "c")
        quiet = 2 * interval
        ping_from(core, "d", quiet)  # silent for exactly twice the probe interval: no grace
        assert deadline(core, "c") == due
        heard = quiet + 2.5 * interval
        ping_from(core, "d", heard)  # silent for longer
        assert deadline(core, "c") == heard + grace


def test_only_the_suspect_that_speaks_gets_the_grace() -> None:
    core = table_core("b", "c", "d", config=Config.lan())  # death_grace 1 s
    grace = core.config.death_grace
    core.receive_datagram(plain(Suspect("c", 0, "b"), Suspect("d", 0, "b")), addr("b"), 0.0)
    due_c, due_d = deadline(core, "c"), deadline(core, "d")
    t = 0.0
    while t < due_c - 0.5:  # b speaks all along (this member is not deaf); the suspects do not
        t += 0.5
        ping_from(core, "b", t)
    assert (deadline(core, "c"), deadline(core, "d")) == (due_c, due_d)
    ping_from(core, "c", t)  # c, about to be declared dead, speaks
    assert deadline(core, "c") == t + grace
    assert deadline(core, "d") == due_d


def test_without_a_death_grace_nothing_puts_off_a_suspicion_that_is_due() -> None:
    """With ``death_grace = 0`` neither the suspect speaking, nor a silence, nor a member
    held dead speaking moves a suspicion: one already due is declared at the next tick."""
    core = table_core("b", "c", "e", config=Config.lan(death_grace=0.0))
    core.receive_datagram(plain(Suspect("c", 0, "b"), Dead("e", 0, "b")), addr("b"), 0.0)
    assert core.membership.get("e").state is DEAD  # type: ignore[union-attr]
    due = deadline(core, "c")
    late = due + 0.5  # the driver is late: datagrams are handled before the tick
    ping_from(core, "c", late)  # the suspect speaks, after a silence
    assert deadline(core, "c") == due
    ping_from(core, "e", late)  # a member held dead speaks: re-merged, no grace
    assert stat(core, "remerges_started") == 1
    assert deadline(core, "c") == due
    core.tick(late)
    assert core.membership.get("c").state is DEAD  # type: ignore[union-attr]


# ---------------------------------------------------------------- re-merging a member held dead


def _dead_peer_core(*peers: str, dead: str, config: Config | None = None) -> NodeCore:
    """A member with ``peers``, ``dead`` among them declared dead at t=1.5 (no tick so far).

    Suspected at 0, then declared dead by another member after the grace: believed at once.
    """
    core = table_core(*peers, config=config if config is not None else Config.lan())
    other = next(p for p in peers if p != dead)
    core.receive_datagram(plain(Suspect(dead, 0, other)), addr(other), 0.0)
    core.receive_datagram(plain(Dead(dead, 0, other)), addr(other), 1.5)
    assert core.membership.get(dead).state is DEAD  # type: ignore[union-attr]
    core.take_outbox()
    return core


def test_a_member_held_dead_that_speaks_is_re_merged_at_most_once_per_probe_interval() -> None:
    core = _dead_peer_core("b", "e", dead="e")
    interval = core.config.probe_interval
    ping_from(core, "e", 2.0)
    [init] = streams_to(core, "e")
    assert stat(core, "remerges_started") == 1
    kind, join = read_stream([init.data])[0][:2]
    assert (kind, join) == (codec.PP_INIT, False)  # a re-merge, not a join
    core.stream_failed(init.stream, 2.1)  # (e could not be reached after all)
    assert not any(isinstance(ev, JoinResult) for ev in core.take_events())
    ping_from(core, "e", 2.5)  # again within a probe interval: nothing more
    assert streams_to(core, "e") == []
    ping_from(core, "e", 2.0 + interval)  # a probe interval later: once more
    assert len(streams_to(core, "e")) == 1
    assert stat(core, "remerges_started") == 2


def test_a_re_merge_waits_only_for_a_push_pull_with_the_same_member() -> None:
    core = _dead_peer_core("b", "e", dead="e")
    core.join([addr("b")], 2.0)  # a push-pull with b under way
    core.take_outbox()
    ping_from(core, "e", 2.0)
    assert len(streams_to(core, "e")) == 1  # not held back by b's
    ping_from(core, "e", 2.0 + core.config.probe_interval)  # e's own is still under way
    assert streams_to(core, "e") == []
    assert stat(core, "remerges_started") == 1


def test_the_re_merge_rate_limit_holds_however_many_members_were_reached() -> None:
    # Past the bound on remembered addresses only those reached over a probe interval ago go.
    core = _dead_peer_core("b", "e", dead="e")
    core._reached.update({Address(f"10.2.{i // 250}.{i % 250}", 1): 2.0 for i in range(4096)})
    ping_from(core, "e", 2.0)
    [init] = streams_to(core, "e")
    core.stream_failed(init.stream, 2.1)
    ping_from(core, "e", 2.5)
    assert streams_to(core, "e") == []
    assert stat(core, "remerges_started") == 1


def test_a_re_merge_gives_every_running_suspicion_the_grace() -> None:
    """A member held dead spoke: a partition has likely healed, and the suspects beyond
    it get ``death_grace`` to refute."""
    core = _dead_peer_core("b", "c", "e", dead="e")  # death_grace 1 s
    grace = core.config.death_grace
    core.receive_datagram(plain(Suspect("c", 0, "b")), addr("b"), 1.5)
    due = deadline(core, "c")
    t = 1.5
    while t < due - 0.5:  # b speaks all along: this member is not deaf
        t += 0.5
        ping_from(core, "b", t)
    assert deadline(core, "c") == due
    ping_from(core, "e", t)
    assert stat(core, "remerges_started") == 1
    assert deadline(core, "c") == t + grace


# ---------------------------------------------------------------- owners in resync


def resyncing(core: NodeCore, owner: NodeCore, *, next_try: float, give_up_at: float) -> None:
    """Put ``owner`` in ``core``'s resync, as if it had just come back from down."""
    core._resync[owner.name] = _Resync(owner.address, next_try, give_up_at, core._stream_seq)
    core._resync_due = min(core._resync_due, next_try)


def push_pulls_to(outbox: list[Outgoing], owner: NodeCore) -> list[list[object]]:
    """The first message of each push-pull begun with ``owner`` in ``outbox``."""
    sent = [o for o in outbox if isinstance(o, SendStream) and o.address == owner.address]
    return [read_stream([o.data])[0] for o in sent]


def test_an_owner_whose_resync_runs_out_is_given_up_once_and_the_others_are_still_tried() -> None:
    net = CoreNetwork(insecure=True)
    a, c, d = net.cluster("a", "c", "d")
    now = net.now
    resyncing(a, c, next_try=now, give_up_at=now)  # its time is up now, exactly
    resyncing(a, d, next_try=now, give_up_at=now + 100.0)
    a.take_outbox()
    a._drive_resyncs(now)
    out = a.take_outbox()
    assert stat(a, "owner_resyncs_abandoned") == 1
    assert push_pulls_to(out, c) == []  # given up on, not tried again
    [init] = push_pulls_to(out, d)  # the next owner in resync is still tried
    assert init[:2] == [codec.PP_INIT, False]  # a full push-pull, not a join
    assert stat(a, "owner_resyncs") == 1
    a._drive_resyncs(now + a.config.probe_interval)
    assert stat(a, "owner_resyncs_abandoned") == 1  # once
    assert push_pulls_to(a.take_outbox(), d) == []  # (its push-pull is under way)


def test_a_push_pull_begun_before_the_resync_does_not_stand_for_it() -> None:
    # It may not have exchanged the owner's current records: the resync starts its own.
    net = CoreNetwork(insecure=True)
    a, d = net.cluster("a", "d")
    a.join([d.address], net.now)  # a full push-pull with d, begun before d came back
    assert [m[0] for m in push_pulls_to(a.take_outbox(), d)] == [codec.PP_INIT]
    resyncing(a, d, next_try=net.now, give_up_at=net.now + 100.0)
    a._drive_resyncs(net.now)
    assert [m[0] for m in push_pulls_to(a.take_outbox(), d)] == [codec.PP_INIT]
    assert stat(a, "owner_resyncs") == 1


def test_only_a_later_push_pull_with_the_owner_ends_its_resync() -> None:
    """Neither a push-pull with another member nor one with the owner begun before the
    resync ends it: the owner is still tried at its next try, and once that completes,
    no more."""
    net = CoreNetwork(insecure=True)
    a, b, d = net.cluster("a", "b", "d")
    a.join([d.address], net.now)  # with the owner, begun before the resync
    resyncing(a, d, next_try=net.now + 2.0, give_up_at=net.now + 100.0)
    a.join([b.address], net.now)  # with another member, begun after
    completed = stat(a, "push_pulls_completed")
    net.run(1.0)
    assert stat(a, "push_pulls_completed") == completed + 2
    assert stat(a, "owner_resyncs") == 0
    net.run(1.5)  # the next try
    assert stat(a, "owner_resyncs") == 1
    assert stat(a, "push_pulls_completed") == completed + 3
    net.run(5.0)  # that one ended it
    assert stat(a, "owner_resyncs") == 1
    assert stat(a, "owner_resyncs_abandoned") == 0


# ---------------------------------------------------------------- local calls


def test_a_member_that_adopts_a_table_or_joins_after_it_started_does_not_wake_in_the_past() -> None:
    # The gossip round a queued update waits for is the next one on the schedule from
    # the call on, not one that went by while the member had no peers.
    for call in ("adopt", "join"):
        core = NodeCore("me", ME, config=Config.lan(), rng=random.Random(1), wall_clock=lambda: WALL0,
                        now=0.0, insecure=True)  # fmt: skip
        first = core.next_deadline()  # no peers yet: its first probe
        assert first is not None
        assert first > 0.5  # (premise: gossip rounds went by before it)
        later = first - 0.2
        table = TableSnapshot([Member("b", addr("b"), 0, ALIVE, b"", 0.0)])
        if call == "adopt":
            core.adopt(table, later)
        else:
            core.adopt(table, 0.0)
            core.join([addr("b")], later)
        due = core.next_deadline()
        assert due is not None
        assert due >= later - 1e-9, call


def test_the_members_of_an_adopted_table_are_owners_up() -> None:
    core = table_core("a", "b", config=Config.lan())
    node = Node("svc-1", "10.9.0.1:1")
    rec = Record("svc", "1.0", "svc-1", "a", core.catalog.clock.now(), None, False, node)
    core.receive_datagram(plain(RecordMsg(rec)), addr("a"), 0.1)
    [svc] = core.get_service("svc")
    assert [n.id for n in svc.nodes] == ["svc-1"]


def test_a_leave_goes_at_once_to_at_least_three_members() -> None:
    net = CoreNetwork(insecure=True, config=Config.lan(gossip_nodes=1))
    a, *_ = net.cluster("a", "b", "c", "d", "e", settle=5)
    a.take_outbox()
    a.leave(net.now)
    direct = [
        o.address for o in a.take_outbox() if isinstance(o, SendDatagram)
        for msgs in [decode_datagram(o.data, None)]
        if not isinstance(msgs[0], Tree) and any(isinstance(m, Leave) for m in msgs)
    ]  # fmt: skip  (the tree datagrams to a's children come besides these)
    assert len(direct) == len(set(direct)) == 3


def test_a_leave_is_counted_in_the_broadcast_queue() -> None:
    net = CoreNetwork(insecure=True)
    a, _b, _c = net.cluster("a", "b", "c", settle=10)
    assert stat(a, "broadcast_queue") == 0  # (premise: everything older was spent)
    a.leave(net.now)
    assert stat(a, "broadcast_queue") == 1


def test_a_deregistration_is_shown_and_pushed_at_once() -> None:
    net = CoreNetwork(insecure=True)
    a, _b, _c = net.cluster("a", "b", "c")
    a.register(service("svc"), None, net.now)
    net.run(1.0)
    a.take_events()
    [tomb] = a.deregister(service("svc"), net.now)
    assert [(e.action, e.record.key) for e in a.take_events() if isinstance(e, CatalogEvent)] == [
        ("delete", tomb.key)
    ]
    pushed = [
        o for o in a.take_outbox()
        if isinstance(o, SendDatagram)
        and any(isinstance(m, RecordMsg) and m.record == tomb for m in decode_datagram(o.data, None))
    ]  # fmt: skip
    assert pushed  # eagerly, not at the next gossip round


def test_a_tombstone_sent_down_the_tree_waits_for_its_ack_from_when_it_was_sent() -> None:
    core = table_core("b", "c", "d", config=Config.lan())
    names = {addr(n): n for n in "bcd"}

    def ack_tree_datagrams(now: float) -> int:
        acked = 0
        for o in core.take_outbox():
            if isinstance(o, SendDatagram):
                first = decode_datagram(o.data, None)[0]
                if isinstance(first, Tree) and first.seq is not None:
                    core.receive_datagram(plain(Ack(first.seq, names[o.address])), o.address, now)
                    acked += 1
        return acked

    core.register(service("svc"), None, 0.0)
    assert ack_tree_datagrams(0.002) >= 1  # acked: nothing of the registration to re-send
    core.deregister(service("svc"), 0.5)  # the first call since
    core.take_outbox()
    core.tick(0.501)
    assert stat(core, "tree_resends") == 0  # its ack is not overdue yet
    core.tick(1.5)
    assert stat(core, "tree_resends") >= 1  # (premise: unacked, it is re-sent)
