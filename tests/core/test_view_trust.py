"""The view never lies through a fault: returning members, accusations, healed partitions.

Each test drives real :class:`NodeCore` instances on the hand-driven network of
``node_helpers`` and checks what a client of one member would have been told
(catalog events and ``get_service`` answers), not only the end state.
"""

from __future__ import annotations

import pytest

from gossipreg.core import chunks, codec
from gossipreg.core.catalog import CatalogEvent, Record
from gossipreg.core.codec import Ping, RecordMsg
from gossipreg.core.config import Config
from gossipreg.core.errors import NotFoundError, RegistrationLimitError
from gossipreg.core.membership import MAX_INCARNATION, Alive, Dead, MemberState, Suspect
from gossipreg.core.model import Node, Service
from gossipreg.core.node import NodeCore, RegistrationConflict, SendDatagram, SendStream, _Resync
from gossipreg.testing import WALL0, CoreNetwork, decode_datagram

from .node_helpers import plain_stream_frame, read_stream, service, stat

ALIVE, SUSPECT, DEAD = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD


def plain(*msgs: codec.Message) -> bytes:
    return codec.pack_datagram([codec.encode_message(m) for m in msgs])


def deletes(net: CoreNetwork, observer: str, service_name: str) -> list[float]:
    """Indexes of ``delete`` catalog events about ``service_name`` at ``observer`` so far."""
    return [
        i
        for i, ev in enumerate(net.events[observer])
        if isinstance(ev, CatalogEvent) and ev.action == "delete" and ev.record.service == service_name
    ]


def creates_after(net: CoreNetwork, observer: str, service_name: str, index: int) -> list[CatalogEvent]:
    return [
        ev
        for ev in net.events[observer][index:]
        if isinstance(ev, CatalogEvent) and ev.action == "create" and ev.record.service == service_name
    ]


def visible(core: NodeCore, name: str) -> bool:
    return any(s.name == name for s in core.list_services())


# ----------------------------------------------------------------- accusations


def test_a_death_declared_elsewhere_is_refuted_before_it_deletes_anything() -> None:
    """A ``dead`` for a member this one does not suspect (a death from the far side of a
    healed partition) is a suspicion for ``death_grace``: the accused, reachable, refutes,
    and its registrations never leave the view."""
    net = CoreNetwork(insecure=True)
    a, _b, c, _d = net.cluster("a", "b", "c", "d")
    c.register(service("svc-c"), None, net.now)
    net.run(0.5)
    assert visible(a, "svc-c")
    before = len(net.events["a"])
    inc = net.member("a", "c").incarnation
    a.receive_datagram(plain(Suspect("c", inc, "x"), Dead("c", inc, "x")), net.cores["b"].address, net.now)
    assert net.state("a", "c") is SUSPECT  # not DEAD: c gets the grace
    assert visible(a, "svc-c")
    net.run(2.0)
    assert net.state("a", "c") is ALIVE
    assert net.member("a", "c").incarnation > inc  # c refuted
    assert [i for i in deletes(net, "a", "svc-c") if i >= before] == []
    assert stat(a, "members_deaths_deferred") == 1


def test_a_death_declared_elsewhere_is_believed_after_the_grace() -> None:
    net = CoreNetwork(insecure=True)
    a, _b, _c = net.cluster("a", "b", "c")
    net.isolate("c")  # c cannot refute
    t0 = net.now
    a.receive_datagram(plain(Dead("c", net.member("a", "c").incarnation, "b")), net.cores["b"].address, t0)
    assert net.state("a", "c") is SUSPECT
    net.wait_for(lambda: net.state("a", "c") is DEAD, timeout=5)
    # Declared at the end of the grace (1 s), not after a whole suspicion timeout.
    assert net.now - t0 <= a.config.death_grace + 0.05


def test_a_death_after_a_long_suspicion_is_believed_at_once() -> None:
    net = CoreNetwork(insecure=True)
    a, _b, _c = net.cluster("a", "b", "c")
    inc = net.member("a", "c").incarnation
    net.isolate("c")
    a.receive_datagram(plain(Suspect("c", inc, "b")), net.cores["b"].address, net.now)
    net.run(a.config.death_grace + 0.1)
    assert net.state("a", "c") is SUSPECT
    a.receive_datagram(plain(Dead("c", inc, "b")), net.cores["b"].address, net.now)
    assert net.state("a", "c") is DEAD


def test_one_forged_dead_at_the_largest_incarnation_evicts_no_one() -> None:
    """The one-datagram eviction: ``dead c`` at 2**64 - 1 sent to every member."""
    net = CoreNetwork(insecure=True)
    cores = net.cluster("a", "b", "c", "d")
    c = net.cores["c"]
    c.register(service("svc-c"), None, net.now)
    net.run(0.5)
    forged = plain(Dead("c", MAX_INCARNATION, "x"))
    for core in cores:
        core.receive_datagram(forged, net.cores["d"].address, net.now)
    net.run(2.0)
    for name in "abd":
        assert net.state(name, "c") is ALIVE
        assert net.member(name, "c").incarnation < 10
        assert visible(net.cores[name], "svc-c")
        assert stat(net.cores[name], "members_accusations_out_of_range") == 1
    assert c.membership.local.incarnation < 10  # refuted in place, not pushed to the top
    assert stat(c, "incarnation_overflows") == 0


def test_an_accuser_that_missed_the_refutation_is_told_directly() -> None:
    """A suspicion at an incarnation this member has already refuted reaches it again (the
    accuser missed the refutation): the current alive goes straight back to the accuser,
    at most once per probe interval."""
    # Without eager push, so that a gossip round to the accuser cannot stand in for it.
    net = CoreNetwork(insecure=True, config=Config.lan(eager_push=False))
    a, b, _c = net.cluster("a", "b", "c")
    a.receive_datagram(plain(Suspect("a", 0, "c")), b.address, net.now)  # refuted: a is at 1
    net.run(1.0)
    assert a.membership.local.incarnation == 1
    a.take_outbox()
    a.receive_datagram(plain(Suspect("a", 0, "b")), b.address, net.now)  # b missed it
    sent = [o for o in a.take_outbox() if isinstance(o, SendDatagram) and o.address == b.address]
    assert any(
        isinstance(m, Alive) and m.name == "a" and m.incarnation == 1
        for o in sent
        for m in decode_datagram(o.data, None)
    )
    assert a.membership.local.incarnation == 1  # no new refutation: nothing to raise
    a.receive_datagram(plain(Suspect("a", 0, "b")), b.address, net.now)
    assert [o for o in a.take_outbox() if isinstance(o, SendDatagram) and o.address == b.address] == []
    assert stat(a, "members_reassertions") == 1


# ----------------------------------------------------------------- returning owners


def test_a_member_back_from_the_dead_never_shows_what_it_deregistered_while_away() -> None:
    net = CoreNetwork(insecure=True, config=Config.lan(gossip_to_the_dead=60.0))
    a, b, c = net.cluster("a", "b", "c")
    c.register(service("gone"), None, net.now)
    c.register(service("kept"), None, net.now)
    net.run(0.5)
    assert visible(a, "gone")
    assert visible(b, "gone")
    net.isolate("c")
    net.wait_for(lambda: net.state("a", "c") is DEAD and net.state("b", "c") is DEAD, timeout=60)
    c.deregister(service("gone"), net.now)  # nobody hears of it...
    net.run(5.0)  # ...and c's gossip of it is spent on the cut links: only a push-pull brings it
    marks = {n: len(net.events[n]) for n in "ab"}
    net.heal()
    net.wait_for(lambda: visible(a, "kept") and visible(b, "kept"), timeout=5)
    net.run(2.0)
    for name in "ab":
        assert creates_after(net, name, "gone", marks[name]) == []  # never shown again
        assert not visible(net.cores[name], "gone")
        assert visible(net.cores[name], "kept")
        assert stat(net.cores[name], "owner_resyncs") + stat(net.cores[name], "remerges_started") >= 1


def test_a_returning_owner_that_cannot_be_resynced_is_shown_again_after_a_while() -> None:
    """A member back from the dead has its records hidden until a push-pull with it
    brings its current ones; if no stream to it can be opened, they are shown after
    ``3 * stream_timeout`` anyway (better shown than lost: the member is alive)."""
    net = CoreNetwork(insecure=True, config=Config.lan(gossip_to_the_dead=60.0))
    a, _b, c = net.cluster("a", "b", "c")
    c.register(service("kept"), None, net.now)
    net.run(0.5)
    net.isolate("c")
    net.wait_for(lambda: net.state("a", "c") is DEAD and net.state("b", "c") is DEAD, timeout=60)
    assert not visible(a, "kept")
    net.unreachable_streams.add(c.address)  # streams to c cannot open (heal leaves that)
    net.heal()  # datagrams flow again
    net.wait_for(lambda: net.state("a", "c") is ALIVE, timeout=10)
    back = net.now
    give_up = 3 * a.config.stream_timeout
    net.run(give_up - 0.5)
    assert not visible(a, "kept")  # still in resync
    assert stat(a, "owner_resyncs_abandoned") == 0
    net.wait_for(lambda: visible(a, "kept"), timeout=2.0)
    assert net.now - back >= give_up - 0.01
    assert stat(a, "owner_resyncs_abandoned") == 1
    assert stat(a, "owner_resyncs") >= 1  # it did try


def _resyncing(net: CoreNetwork, core: NodeCore, owner: NodeCore, next_try: float) -> None:
    """Put ``owner`` in ``core``'s resync, as if it had just come back (next try at ``next_try``)."""
    core._resync[owner.name] = _Resync(owner.address, next_try, net.now + 100.0, core._stream_seq)
    core._resync_due = min(core._resync_due, next_try)


def _push_pulls_to(core: NodeCore, owner: NodeCore) -> list[object]:
    sent = [o for o in core.take_outbox() if isinstance(o, SendStream) and o.address == owner.address]
    return [read_stream([o.data])[0][0] for o in sent]


def test_an_owner_in_resync_is_tried_even_while_another_waits_for_its_next_try() -> None:
    net = CoreNetwork(insecure=True)
    a, c, d = net.cluster("a", "c", "d")
    _resyncing(net, a, c, next_try=net.now + 10.0)  # tried lately: not due yet
    _resyncing(net, a, d, next_try=net.now)  # due now
    a.take_outbox()
    a._drive_resyncs(net.now)
    assert _push_pulls_to(a, d) == [codec.PP_INIT]
    assert _push_pulls_to(a, c) == []
    assert stat(a, "owner_resyncs") == 1


def test_an_anti_entropy_check_under_way_does_not_stand_for_a_resync_push_pull() -> None:
    # Only a full push-pull exchanges the owner's records; a cheap check does not.
    net = CoreNetwork(insecure=True)
    a, d = net.cluster("a", "d")
    _resyncing(net, a, d, next_try=net.now)
    a._start_check(d.address, net.now)  # a check with d, begun after the resync
    a.take_outbox()
    a._drive_resyncs(net.now)
    assert _push_pulls_to(a, d) == [codec.PP_INIT]
    a._drive_resyncs(net.now + a.config.probe_interval)  # the full one is under way now
    assert _push_pulls_to(a, d) == []


def test_a_member_back_alive_is_no_longer_re_merged_whenever_it_speaks() -> None:
    """Speaking while held dead starts a push-pull at once; once the member is alive
    again its datagrams are ordinary traffic, not a reason for more push-pulls."""
    net = CoreNetwork(insecure=True)
    a, _b, _c = net.cluster("a", "b", "c")
    net.isolate("c")
    net.wait_for(lambda: net.state("a", "c") is DEAD, timeout=60)
    net.heal()
    net.wait_for(lambda: net.state("a", "c") is ALIVE, timeout=30)
    net.run(2.0)  # (a re-merge begun as c came back may still finish)
    remerges = stat(a, "remerges_started")
    net.run(10.0)  # c pings a and acks a's pings all along
    assert stat(a, "remerges_started") == remerges


def test_a_member_held_dead_that_speaks_is_re_merged_at_once() -> None:
    """Long after both sides declared each other dead (and stopped gossiping to them), a
    healed partition is noticed by a reconnect ping and merged within a couple of seconds,
    not after ``reconnect_interval`` (30 s)."""
    net = CoreNetwork(insecure=True, config=Config.lan(gossip_to_the_dead=5.0))
    a, b, c, d = net.cluster("a", "b", "c", "d")
    for x, y in (("a", "c"), ("a", "d"), ("b", "c"), ("b", "d")):
        net.blocked |= {(x, y), (y, x)}
    net.wait_for(lambda: all(net.state(x, y) in (DEAD, None) for x in "ab" for y in "cd"), timeout=60)
    net.run(10.0)  # past gossip_to_the_dead: nothing is sent across any more
    assert all(net.state(x, y) in (DEAD, None) for x in "ab" for y in "cd")
    net.heal()
    healed = net.now
    net.wait_for(lambda: all(net.state(x, y) is ALIVE for x in "abcd" for y in "abcd" if x != y), timeout=30)
    assert net.now - healed <= 3.0
    assert sum(stat(core, "reconnect_pings") for core in (a, b, c, d)) >= 1
    assert sum(stat(core, "remerges_started") for core in (a, b, c, d)) >= 1


def test_reconnect_pings_follow_serfs_failed_over_alive_probability() -> None:
    net = CoreNetwork(insecure=True, config=Config.lan(death_grace=0.0))
    cores = net.cluster(*(f"m{i}" for i in range(10)))
    me = cores[0]
    net.isolate("m9")
    me.receive_datagram(plain(Dead("m9", 0, "m1")), cores[1].address, net.now)
    assert net.state("m0", "m9") is DEAD
    me.take_outbox()
    pings = 0
    for k in range(900):  # 1 failed among 9 alive: about one round in 9
        me._reconnect_ping(net.now + k)
        for out in me.take_outbox():
            assert isinstance(out, SendDatagram)
            assert out.address == cores[9].address
            assert any(isinstance(m, Ping) and m.target == "m9" for m in decode_datagram(out.data, None))
            pings += 1
    assert 60 <= pings <= 140
    assert stat(me, "reconnect_pings") == pings


# ----------------------------------------------------------------- push-pull


def test_the_responder_returns_its_newer_version_of_every_pushed_key() -> None:
    """A record the initiator pushes that the responder has meanwhile superseded (here: an
    owner-authority correction, because the record names the responder as owner) comes
    back in the FETCH, so the initiator ends holding the responder's current state."""
    net = CoreNetwork(insecure=True)
    a, b = net.cluster("a", "b")
    stale = Record("old", "1.0", "old-1", "b", a.catalog.clock.now(), None, False,
                   service("old").nodes[0])  # fmt: skip
    # b's previous process registered it; a still holds it.
    a.receive_datagram(plain(RecordMsg(stale)), b.address, net.now)
    a.take_outbox()  # (b does not hear a's gossip of it)
    peer = ("10.0.0.99", 1)
    init = plain_stream_frame([codec.PP_INIT, False, [], {"b": [stale.stamp, 1]}])
    b.receive_stream(("in", 1), peer, init, net.now)
    [reconcile] = chunks.seal_chunks(
        None, b"", codec.pack_stream([codec.PP_RECONCILE, [codec.encode_transfer(stale, 0.0)], []]),
        initiator=True, seq=1,
    )
    b.take_outbox()
    b.receive_stream(("in", 1), peer, reconcile, net.now)
    out = b.take_outbox()
    [fetch] = read_stream([o.data for o in out if isinstance(o, SendStream) and o.stream[0] == "in"],
                          initiator=False, label=b"")
    assert fetch[0] == codec.PP_FETCH
    records = [r for r, _ in codec.decode_transfers(fetch[1])]
    assert [(r.key, r.deleted) for r in records] == [(stale.key, True)]
    assert records[0].stamp > stale.stamp


# ----------------------------------------------------------------- records per owner


def test_registering_past_the_per_owner_limit_raises_with_the_limit() -> None:
    net = CoreNetwork(insecure=True, config=Config.lan(max_records_per_owner=3))
    a, b = net.cluster("a", "b")
    a.register(service("s", "n1", "n2"), None, net.now)
    a.register(service("s", "n1", "n2"), None, net.now)  # renewing what it has adds nothing
    with pytest.raises(RegistrationLimitError, match=r"max_records_per_owner is 3") as info:
        a.register(service("t", "t1", "t2"), None, net.now)
    assert "4 registrations" in str(info.value)
    assert not visible(a, "t")  # nothing of the refused service was registered
    a.register(service("t", "t1"), None, net.now)  # up to the limit is fine
    a.deregister(service("s", "n1"), net.now)
    a.register(service("u", "u1"), None, net.now)  # tombstones do not count
    net.run(1.0)
    assert visible(b, "u")


def test_a_peers_records_past_the_limit_are_refused_and_counted() -> None:
    net = CoreNetwork(insecure=True, config=Config.lan(max_records_per_owner=2))
    a, b = net.cluster("a", "b")
    records = [
        Record("s", "1.0", f"n{i}", "b", b.catalog.clock.now(), None, False, Node(f"n{i}", "10.9.0.1:1"))
        for i in range(4)
    ]
    a.receive_datagram(plain(*(RecordMsg(r) for r in records)), b.address, net.now)
    assert [a.catalog.get(r.key) is not None for r in records] == [True, True, False, False]
    assert stat(a, "catalog_over_owner_limit") == 2
    # A newer version of a record it already has, and a tombstone, are still taken.
    newer = Record("s", "1.0", "n0", "b", b.catalog.clock.now(), None, False, Node("n0", "10.9.0.2:1"))
    tomb = Record("s", "1.0", "n1", "b", b.catalog.clock.now(), None, True)
    a.receive_datagram(plain(RecordMsg(newer), RecordMsg(tomb)), b.address, net.now)
    assert a.catalog.get(newer.key) == newer
    assert a.catalog.get(tomb.key) == tomb
    # With one live record left, one more fits.
    a.receive_datagram(plain(RecordMsg(records[2])), b.address, net.now)
    assert a.catalog.get(records[2].key) == records[2]
    assert stat(a, "catalog_over_owner_limit") == 2


# ----------------------------------------------------------------- restarts


def test_a_restarted_owners_old_records_leave_every_view_and_stay_out() -> None:
    """A process restarted under the same name announces a newer epoch: every member
    drops what the previous process registered at once, and refuses the copies still
    travelling, instead of showing them until the owner's corrections arrive."""
    net = CoreNetwork(insecure=True)
    a, b, c = net.cluster("a", "b", "c")
    c.register(service("old"), None, net.now)
    net.run(0.5)
    assert visible(a, "old")
    stale = a.catalog.get(("old", "1.0", "old-1"))
    assert stale is not None
    # c restarts at once (before anyone notices it died): a new process, same name and address.
    reborn = net.restart("c")
    assert reborn.membership.local.epoch > stale.stamp
    mark = len(net.events["a"])
    reborn.join([a.address], net.now)
    net.wait_for(lambda: not visible(a, "old") and not visible(b, "old"), timeout=3)
    # A lagging copy of the old record (age 0, as gossip carries it) changes nothing, and one
    # of the previous process's records this member never had is refused.
    a.receive_datagram(plain(RecordMsg(stale)), b.address, net.now)
    assert not visible(a, "old")
    unseen = Record("older", "1.0", "x-1", "c", stale.stamp, None, False, Node("x-1", "10.9.0.1:1"))
    refused = stat(a, "catalog_previous_process")
    a.receive_datagram(plain(RecordMsg(unseen)), b.address, net.now)
    assert stat(a, "catalog_previous_process") == refused + 1
    assert a.catalog.get(unseen.key) is None
    net.run(2.0)
    assert creates_after(net, "a", "old", mark) == []
    assert net.member("a", "c").epoch == reborn.membership.local.epoch


def test_owner_epoch_hides_older_records_and_refuses_their_copies() -> None:
    from gossipreg.core.catalog import Catalog
    from gossipreg.core.hlc import HybridClock

    clock = HybridClock(lambda: WALL0, 60.0)
    cat = Catalog("me", clock)
    old = Record("s", "1", "n1", "x", clock.now(), None, False, Node("n1", "10.0.0.1:1"))
    cat.merge([old], 0.0)
    epoch = clock.now()
    new = Record("s", "1", "n2", "x", clock.now(), None, False, Node("n2", "10.0.0.1:1"))
    cat.merge([new], 0.0)
    cat.take_events()
    cat.owner_epoch("x", epoch)
    assert [(e.action, e.record.node_id) for e in cat.take_events()] == [("delete", "n1")]
    assert cat.is_visible(new.key)
    assert not cat.is_visible(old.key)
    cat.owner_epoch("x", epoch - 1)  # an older epoch changes nothing
    assert cat.take_events() == []
    replay = Record("s", "1", "n3", "x", epoch - 1, None, False, Node("n3", "10.0.0.1:1"))
    assert cat.merge([replay], 0.0).accepted == []
    assert cat.counters["previous_process"] == 1
    tomb = Record("s", "1", "n1", "x", epoch - 1, None, True)  # tombstones are still taken
    assert cat.merge([tomb], 0.0).accepted == [tomb]


# ----------------------------------------------------------------- shared node ids


def test_a_node_id_registered_by_two_members_is_lost_by_neither() -> None:
    """A copy-pasted config: two live members register the same (service, version, node
    id). One deterministic winner is shown everywhere, both keep their registrations, the
    conflict is reported on both, and when the winner leaves the other's comes back."""
    net = CoreNetwork(insecure=True)
    a, b, c, d = net.cluster("a", "b", "c", "d")
    first = Service("svc", "1.0", nodes=(Node("dup", "10.9.0.1:1"),))
    second = Service("svc", "1.0", nodes=(Node("dup", "10.9.0.2:2"),))
    a.register(first, None, net.now)
    net.run(0.5)
    b.register(second, None, net.now)
    net.run(1.0)

    def shown(core: NodeCore) -> str | None:
        try:
            return core.get_service("svc")[0].nodes[0].address
        except NotFoundError:
            return None

    assert {shown(x) for x in (a, b, c, d)} == {"10.9.0.2:2"}  # the newer one, everywhere
    for name, ours in (("a", False), ("b", True)):
        conflicts = [e for e in net.events[name] if isinstance(e, RegistrationConflict)]
        assert [(e.key, e.ours_shown) for e in conflicts] == [(("svc", "1.0", "dup"), ours)]
        assert stat(net.cores[name], "catalog_conflicts") == 1
    assert [r.key for r in a.catalog.local_records()] == [("svc", "1.0", "dup")]  # a keeps it
    mark = len(net.events["c"])
    b.leave(net.now)
    net.run(3.0)
    assert {shown(x) for x in (a, c, d)} == {"10.9.0.1:1"}  # a's is back everywhere
    # c's watch results follow its view: b's node went away, a's came (back).
    kinds = [(e.action, e.node.address) for e in net.events["c"][mark:] if isinstance(e, CatalogEvent)]
    assert kinds[-1] in (("create", "10.9.0.1:1"), ("update", "10.9.0.1:1"))


def test_a_shared_node_id_returns_when_the_shown_owner_deregisters_it() -> None:
    net = CoreNetwork(insecure=True)
    a, b, c = net.cluster("a", "b", "c")
    a.register(Service("svc", "1.0", nodes=(Node("dup", "10.9.0.1:1"),)), None, net.now)
    net.run(0.5)
    b.register(Service("svc", "1.0", nodes=(Node("dup", "10.9.0.2:2"),)), None, net.now)
    net.run(0.5)
    b.deregister(Service("svc", "1.0", nodes=(Node("dup"),)), net.now)
    net.run(1.0)
    for core in (a, b, c):
        assert core.get_service("svc")[0].nodes[0].address == "10.9.0.1:1"
