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
from gossipreg.core.codec import Message, Ping
from gossipreg.core.config import Config
from gossipreg.core.membership import (
    Address,
    Dead,
    Member,
    MemberState,
    Suspect,
    TableSnapshot,
)
from gossipreg.core.node import JoinResult, NodeCore, SendDatagram, SendStream
from gossipreg.testing import WALL0, decode_datagram

from .node_helpers import read_stream

ALIVE, SUSPECT, DEAD = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD
ME = Address("10.0.0.1", 7946)


def stat(core: NodeCore, name: str) -> int:
    return core.statistics()[name]


def plain(*msgs: Message) -> bytes:
    return codec.pack_datagram([codec.encode_message(m) for m in msgs])


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
