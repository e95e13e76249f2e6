"""Unit tests of how the node core (gossipreg.core.node) takes in datagrams and answers them.

What a member counts and reports for a datagram it cannot use, what it skips before
decoding, what it passes on down a broadcast tree, how it answers pings, ping-reqs,
acks and nacks (and whom it then counts as heard from), what it gossips after a
refutation or an owner's correction, and when a probe's pings are sent again. Every
test drives real :class:`NodeCore` instances by hand or on the test kit's
:class:`~gossipreg.testing.CoreNetwork`, on a fake clock.
"""

from __future__ import annotations

import random

from gossipreg.core import codec
from gossipreg.core.catalog import Record
from gossipreg.core.codec import Ack, Message, Nack, Ping, PingReq, RecordMsg, Tree
from gossipreg.core.config import Config
from gossipreg.core.crypto import Keyring
from gossipreg.core.membership import Address, Alive, Dead, MemberState
from gossipreg.core.node import NodeCore, SendDatagram, TrafficRefused
from gossipreg.testing import WALL0, CoreNetwork, decode_datagram

from .node_helpers import KEY, plain, service, stat

ALIVE, SUSPECT, DEAD = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD
ELSEWHERE = Address("10.0.0.9", 1)


def sealed(*msgs: Message) -> bytes:
    return Keyring(KEY).seal(plain(*msgs), b"")


def lone(config: Config | None = None, *, now: float = 0.0) -> NodeCore:
    """A plaintext member ``a`` outside any network: its inputs are fed by hand."""
    return NodeCore("a", ("10.0.0.1", 1), config=config or Config(), rng=random.Random(1),
                    wall_clock=lambda: WALL0, now=now, insecure=True)


def refusals(core: NodeCore) -> list[TrafficRefused]:
    return [e for e in core.take_events() if isinstance(e, TrafficRefused)]


def sent(core: NodeCore) -> list[tuple[Address, list[Message]]]:
    """The datagrams in ``core``'s outbox (taken), each with its messages."""
    return [
        (o.address, decode_datagram(o.data, core.keyring))
        for o in core.take_outbox()
        if isinstance(o, SendDatagram)
    ]


def has_service(core: NodeCore, name: str) -> bool:
    return any(s.name == name for s in core.list_services())


# ====================================================================== refused datagrams


def test_a_plaintext_member_counts_and_reports_a_datagram_of_no_known_version() -> None:
    a = lone()
    a.receive_datagram(b"\x07" + bytes(20), ELSEWHERE, 5.0)
    assert stat(a, "decode_errors") == 1
    assert stat(a, "sealed_received_while_insecure") == 0
    assert [(e.cause, e.count, e.address) for e in refusals(a)] == [("decode_errors", 1, ELSEWHERE)]


def test_an_authentic_datagram_that_holds_no_array_of_messages_is_a_counted_decode_error() -> None:
    # It opens under the cluster key (no auth failure), but is no datagram the codec reads.
    net = CoreNetwork()
    a = net.add("a")
    not_an_array = bytes([codec.PROTOCOL_VERSION]) + codec.pack({"not": "a list"})
    a.receive_datagram(Keyring(KEY).seal(not_an_array, b""), ELSEWHERE, net.now)
    assert (stat(a, "decode_errors"), stat(a, "auth_failures")) == (1, 0)
    assert [(e.cause, e.count) for e in refusals(a)] == [("decode_errors", 1)]


def test_a_refusal_names_its_sender_as_an_address_when_the_driver_passes_a_plain_tuple() -> None:
    # Drivers hand over what their socket returned; the event's address is an Address
    # (with .host and .port) all the same.
    a = lone()
    a.receive_datagram(b"\x07", ("10.0.0.9", 1), 5.0)
    (event,) = refusals(a)
    assert type(event.address) is Address
    assert (event.address.host, event.address.port) == ("10.0.0.9", 1)


# ====================================================================== pings, ping-reqs, acks, nacks


def test_every_ping_received_is_counted_a_misdirected_one_too() -> None:
    a = lone()
    a.receive_datagram(plain(Ping(1, "a", "x", ELSEWHERE)), ELSEWHERE, 5.0)
    a.receive_datagram(plain(Ping(2, "somebody-else", "x", ELSEWHERE)), ELSEWHERE, 5.0)
    assert stat(a, "pings_received") == 2
    assert stat(a, "pings_misdirected") == 1
    assert [(to, [m for m in msgs if isinstance(m, Ack)]) for to, msgs in sent(a)] == [
        (ELSEWHERE, [Ack(1, "a")])
    ]


def test_a_helper_counts_each_ping_req_and_nacks_only_once_the_nack_delay_has_passed() -> None:
    # Config(): probe_interval 1 s, probe_timeout 0.5 s: the helper waits probe_timeout,
    # but at most 80 % of the requester's indirect window, 0.8 * 0.5 = 0.4 s.
    a = lone()
    requester, target = Address("10.0.0.2", 1), Address("10.0.0.3", 1)
    t = 10.0
    a.receive_datagram(plain(PingReq(7, "c", target, "b", requester, True)), requester, t)
    assert stat(a, "ping_reqs_received") == 1
    out = sent(a)
    assert [to for to, msgs in out if any(isinstance(m, Ping) and m.target == "c" for m in msgs)] == [target]
    for early in (t, t + 0.2, t + 0.4 - 1e-6):
        a.tick(early)
        assert not any(isinstance(m, Nack) for _, msgs in sent(a) for m in msgs)
    assert stat(a, "nacks_sent") == 0
    a.tick(t + 0.4)
    assert [(to, [m for m in msgs if isinstance(m, Nack)]) for to, msgs in sent(a)] == [
        (requester, [Nack(7, "a")])
    ]
    a.receive_datagram(plain(PingReq(8, "c", target, "b", requester, False)), requester, t + 1)
    assert stat(a, "ping_reqs_received") == 2


def test_a_nack_that_answers_no_running_probe_is_counted_and_changes_nothing() -> None:
    a = lone()
    assert a._probe is None
    a.receive_datagram(plain(Nack(5, "x")), ELSEWHERE, 5.0)
    assert stat(a, "nacks_received") == 1
    assert a._probe is None
    assert a.membership.awareness.score == 0


def test_a_ping_from_a_suspect_defers_a_death_declared_elsewhere() -> None:
    # Heard from directly: a death another member declares within death_grace of that is
    # taken as a suspicion first, however long this member has suspected it.
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c", settle=3)
    net.isolate("b")
    net.wait_for(lambda: net.state("a", "b") is SUSPECT, timeout=20)
    net.run(a.config.death_grace + 0.5)  # suspected for longer than the grace
    assert net.state("a", "b") is SUSPECT
    incarnation = net.member("a", "b").incarnation
    a.receive_datagram(sealed(Ping(77, "a", "b", b.address)), b.address, net.now)  # b pings a: b speaks
    a.receive_datagram(sealed(Dead("b", incarnation, "c")), c.address, net.now)
    assert net.state("a", "b") is SUSPECT  # deferred, not believed at once


def test_a_probe_acked_by_a_suspect_defers_a_death_declared_elsewhere() -> None:
    # The ack to a probe of the suspect is hearing from it directly, as a ping from it is.
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c", settle=3)
    net.isolate("b")
    suspected = net.wait_for(lambda: net.state("a", "b") is SUSPECT, timeout=20)
    grace = a.config.death_grace
    net.wait_for(
        lambda: net.now > suspected + grace + 0.1 and a._probe is not None and a._probe.target == "b",
        timeout=5,
    )
    assert net.state("a", "b") is SUSPECT  # suspected for longer than the grace
    probe = a._probe
    assert probe is not None
    acked = stat(a, "probes_acked")
    a.receive_datagram(sealed(Ack(min(probe.sent_at), "b")), b.address, net.now)  # b answers a ping
    assert stat(a, "probes_acked") == acked + 1
    a.receive_datagram(sealed(Dead("b", net.member("a", "b").incarnation, "c")), c.address, net.now)
    assert net.state("a", "b") is SUSPECT  # deferred, not believed at once


# ====================================================================== re-pings


def _probe_pings(config: Config, origin: float, start: float) -> tuple[list[float], float]:
    """A lone member that knows one silent member ``b`` probes it at ``origin + start``,
    woken at each of its deadlines: when (from the probe's start) each ping to ``b``
    went before the helpers were asked, and the probe's timeout (from its start)."""
    a = lone(config, now=origin)
    b = Address("10.0.0.2", 1)
    a.receive_datagram(plain(Alive("b", 0, b)), b, origin)
    a.take_outbox()
    a.tick(origin + start)
    p = a._probe
    assert p is not None
    assert p.target == "b"
    times: list[float] = []
    while True:
        for to, msgs in sent(a):
            times += [a._now - p.started for m in msgs if isinstance(m, Ping) and to == b]
        if p.indirect:
            return times, p.timeout_at - p.started
        deadline = a.next_deadline()
        assert deadline is not None
        a.tick(deadline)


def test_no_ping_is_sent_again_at_the_probe_timeout_when_the_waits_add_up_to_it() -> None:
    """Four waits of 0.1 s add up to the 0.4 s probe timeout, and in floats end a hair
    before it: the fifth ping would go at the timeout itself, when the helpers are
    asked; it is not sent."""
    config = Config(probe_timeout=0.4, tree_ack_timeout=0.1)
    times, timeout = _probe_pings(config, 0.0, 4.0)
    assert len(times) == 4
    assert [round(t, 9) for t in times] == [0.0, 0.1, 0.2, 0.3]
    # (premise: the fourth wait ends within float rounding below the timeout)
    assert 0 < timeout - (times[-1] + 0.1) < 1e-12
    assert times[-1] + 0.1 != timeout


def test_a_probes_ping_schedule_does_not_depend_on_the_clocks_origin() -> None:
    # `now` is any monotonic clock: its origin is arbitrary (trio's has an offset, the
    # simulator's starts at 0, another may read negative). The first three re-pings wait
    # 10 ms each, later ones twice as long as the one before, capped at probe_timeout.
    config = Config()
    reference, _ = _probe_pings(config, 0.0, 1.0)
    assert [round(t, 6) for t in reference] == [0.0, 0.01, 0.02, 0.03, 0.04, 0.06, 0.1, 0.18, 0.34]
    for origin in (-1000.0, 1000.0, 123456.5):
        times, _ = _probe_pings(config, origin, 1.0)
        assert [round(t, 6) for t in times] == [round(t, 6) for t in reference], origin


# ====================================================================== what is gossiped


def test_a_member_gossips_its_refutation_not_the_alive_about_it_that_it_refutes() -> None:
    net = CoreNetwork(insecure=True)
    a, b = net.cluster("a", "b")
    before = a.membership.local.incarnation
    t0 = net.now
    forged = Alive("a", before + 5, a.address, b"forged")
    a.receive_datagram(plain(forged), b.address, net.now)
    refuted = a.membership.local
    assert refuted.incarnation > before + 5
    net.run(1.0)
    alives = [m for d in net.sent_by("a", since=t0) for m in net.messages(d) if isinstance(m, Alive)]
    assert [m for m in alives if m.name == "a" and m.incarnation == refuted.incarnation]
    assert not [m for m in alives if m.meta == b"forged"]
    seen = net.member("b", "a")
    assert (seen.incarnation, seen.meta) == (refuted.incarnation, refuted.meta)


def test_a_record_new_here_is_gossiped_on_to_a_member_its_owner_cannot_reach() -> None:
    # c's datagrams to b are lost; b learns c's registration from a, which passes on what
    # is news to it (long before a push-pull could bring it).
    net = CoreNetwork(insecure=True)
    a, b, c = net.cluster("a", "b", "c")
    net.blocked.add(("c", "b"))
    (rec,) = c.register(service("svc-c"), None, net.now)
    net.run(0.5)
    assert a.catalog.get(rec.key) == rec
    assert b.catalog.get(rec.key) == rec
    assert has_service(b, "svc-c")
    assert net.datagrams_with(lambda m: isinstance(m, RecordMsg) and m.record == rec, src=["a"])


def test_an_owners_correction_of_a_forged_record_is_gossiped_and_restores_the_view() -> None:
    net = CoreNetwork(insecure=True)
    a, b, c = net.cluster("a", "b", "c")
    (rec,) = a.register(service("svc"), None, net.now)
    net.run(1.0)
    assert has_service(c, "svc")
    forged = Record(rec.service, rec.version, rec.node_id, "a", rec.stamp + 1, deleted=True)
    c.receive_datagram(plain(RecordMsg(forged)), b.address, net.now)  # c takes the forgery
    assert not has_service(c, "svc")
    a.receive_datagram(plain(RecordMsg(forged)), b.address, net.now)  # the owner corrects it
    assert stat(a, "catalog_corrections") == 1
    net.run(0.5)  # far less than a push-pull interval: gossip carries the correction
    for core in (a, b, c):
        held = core.catalog.get(rec.key)
        assert held is not None, core.name
        assert not held.deleted, core.name
        assert held.stamp > forged.stamp, core.name
        assert has_service(core, "svc")


# ====================================================================== stale updates


def test_alives_and_records_a_member_already_holds_are_skipped_before_decoding() -> None:
    net = CoreNetwork(insecure=True)
    a, b = net.cluster("a", "b")
    (rec,) = a.register(service("svc"), None, net.now)
    net.run(1.0)
    held = b.catalog.get(rec.key)
    assert held is not None
    skipped = stat(b, "stale_skipped")
    b.receive_datagram(plain(a.membership.local_alive()), a.address, net.now)
    assert stat(b, "stale_skipped") == skipped + 1
    b.receive_datagram(plain(RecordMsg(held)), a.address, net.now)
    assert stat(b, "stale_skipped") == skipped + 2
    assert net.member("b", "a").state is ALIVE
    assert has_service(b, "svc")


# ====================================================================== the broadcast tree


def tree_cluster() -> tuple[CoreNetwork, list[NodeCore]]:
    """Eight plaintext members with ``gossip_nodes=1``: in m0's tree, m0 sends to m1, m2
    and m4, and m1 to m3 and m5."""
    net = CoreNetwork(config=Config.lan(gossip_nodes=1), insecure=True)
    cores = net.cluster(*[f"m{i}" for i in range(8)])
    net.run(2)
    assert [c.name for c in cores[0]._tree_children("m0")] == ["m1", "m2", "m4"]
    assert [c.name for c in cores[1]._tree_children("m0")] == ["m3", "m5"]
    return net, cores


def passed_on(net: CoreNetwork, core: NodeCore) -> dict[str, list[Message]]:
    """The tree datagrams in ``core``'s outbox (taken), by receiver: their messages after the marker."""
    out: dict[str, list[Message]] = {}
    for to, msgs in sent(core):
        if msgs and isinstance(msgs[0], Tree):
            out.setdefault(net.name_of(to) or "?", []).extend(msgs[1:])
    return out


def test_a_tree_datagram_is_passed_on_with_updates_already_known_here() -> None:
    # The subtree below m1 hears them only from m1, whether or not they are news to m1.
    net, cores = tree_cluster()
    m0, m1 = cores[0], cores[1]
    alive = m0.membership.local_alive()
    m1.take_outbox()
    skipped = stat(m1, "stale_skipped")
    m1.receive_datagram(plain(Tree("m0", 1), alive), m0.address, net.now)
    assert stat(m1, "stale_skipped") == skipped + 1  # (premise: old news here)
    assert passed_on(net, m1) == {"m3": [alive], "m5": [alive]}


def test_only_the_updates_of_a_tree_datagram_are_passed_on() -> None:
    net, cores = tree_cluster()
    m0, m1 = cores[0], cores[1]
    news = Alive("x", 1, Address("10.9.9.9", 7946))
    m1.take_outbox()
    m1.receive_datagram(plain(Tree("m0", 1), news, Ping(99, "m1", "m0", m0.address)), m0.address, net.now)
    assert passed_on(net, m1) == {"m3": [news], "m5": [news]}
    assert net.state("m1", "x") is ALIVE
    assert stat(m1, "pings_received") >= 1


def test_an_ack_naming_a_copy_of_a_tree_datagram_not_sent_yet_is_ignored() -> None:
    net, cores = tree_cluster()
    m0, m1 = cores[0], cores[1]
    m0.register(service("svc"), None, net.now)
    (seq,) = [s for s, t in m0._tree_sends.items() if t.child == "m1"]
    acks = stat(m0, "tree_acks_received")
    m0.receive_datagram(plain(Ack(seq | 1, "m1")), m1.address, net.now)  # copy 1: never sent
    assert stat(m0, "tree_acks_received") == acks
    assert seq in m0._tree_sends
    net.run(0.1)  # the real acks of copy 0
    assert stat(m0, "tree_acks_received") == acks + 3
    assert stat(m0, "tree_resends") == 0
    assert not m0._tree_sends


def test_a_late_ack_to_an_earlier_probes_ping_does_not_answer_a_later_probe() -> None:
    """An ack names the ping it answers. A late copy of the ack to the member's first
    ping, arriving while a later probe waits for its own target, answers nothing: that
    probe is not acked (a relayed ack carries the probe's own ping-req seq, which no
    probe has before its indirect phase)."""
    a = NodeCore("a", Address("10.0.0.1", 7946), config=Config(probe_interval=1.0), rng=random.Random(3),
                 wall_clock=lambda: WALL0, now=0.0, insecure=True)
    peers = {"b": Address("10.0.0.2", 7946), "c": Address("10.0.0.3", 7946)}
    a.receive_datagram(plain(*(Alive(n, 1, addr) for n, addr in peers.items())), peers["b"], 0.0)
    a.take_outbox()
    pings: list[tuple[str, int]] = []
    now = 0.0
    while len(pings) < 2:
        due = a.next_deadline()
        assert due is not None
        now = due
        a.tick(now)
        for out in a.take_outbox():
            assert isinstance(out, SendDatagram)
            pings += [(m.target, m.seq) for m in decode_datagram(out.data, None) if isinstance(m, Ping)]
        if len(pings) == 1:  # the first probe's target acks at once
            target, seq = pings[0]
            a.receive_datagram(plain(Ack(seq, target)), peers[target], now)
            a.take_outbox()
    first, later = pings
    assert later[0] != first[0]
    assert later[1] != first[1]
    acked = stat(a, "probes_acked")
    a.receive_datagram(plain(Ack(first[1], first[0])), peers[first[0]], now + 0.001)
    assert stat(a, "probes_acked") == acked
