"""Unit tests of the node core (gossipreg.core.node), driven by hand.

A few :class:`NodeCore` instances exchange their outboxes through the tiny
network of :mod:`tests.core.node_helpers` on a fake clock: every byte goes
through the real codec and, unless a test says ``insecure``, the real keyring.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossipreg.core import chunks, codec
from gossipreg.core.catalog import CatalogEvent, Record
from gossipreg.core.codec import Ack, Message, Nack, Ping, PingReq, RecordMsg, Tree
from gossipreg.core.config import Config
from gossipreg.core.crypto import Keyring
from gossipreg.core.errors import AuthenticationError, ConfigError, DecodeError, NotFoundError
from gossipreg.core.hlc import make_stamp, physical_ms
from gossipreg.core.membership import (
    Address,
    Alive,
    Dead,
    EventKind,
    Leave,
    MemberEvent,
    MemberState,
    Suspect,
)
from gossipreg.core.model import Endpoint, Node, Service, Value
from gossipreg.core.node import (
    NOTICE_INTERVAL,
    REFUSALS_PER_SECOND,
    CloseStream,
    JoinResult,
    NodeCore,
    SendDatagram,
    SendStream,
    TrafficRefused,
)
from gossipreg.core.tree import next_wait
from gossipreg.testing import WALL0, CoreNetwork, Datagram, decode_datagram

from .node_helpers import (
    KEY,
    OTHER_KEY,
    STREAM_LABEL,
    plain,
    plain_stream_frame,
    read_stream,
    service,
    stat,
    stream_frame,
)

ALIVE, SUSPECT, DEAD, LEFT = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT


def sealed(*msgs: Message, key: bytes = KEY, label: bytes = b"") -> bytes:
    return Keyring(key).seal(plain(*msgs), label)


def sealed_core(name: str, host: str) -> NodeCore:
    """A lone member with the test keyring at ``host``, outside any network: inputs are fed by hand."""
    return NodeCore(name, (host, 1), config=Config(), rng=random.Random(1), wall_clock=lambda: WALL0,
                    now=0.0, keyring=Keyring(KEY))


def carries(net: CoreNetwork, src: str, data: bytes, kind: type) -> bool:
    return any(isinstance(m, kind) for m in decode_datagram(data, net.cores[src].keyring))


def member_events(net: CoreNetwork, name: str, kind: EventKind, about: str) -> list[MemberEvent]:
    return [
        e for e in net.events[name]
        if isinstance(e, MemberEvent) and e.kind is kind and e.member.name == about
    ]


def catalog_events(net: CoreNetwork, name: str, action: str, service_name: str) -> list[CatalogEvent]:
    return [
        e for e in net.events[name]
        if isinstance(e, CatalogEvent) and e.action == action and e.record.service == service_name
    ]


def has_service(core: NodeCore, name: str) -> bool:
    try:
        return bool(core.get_service(name))
    except NotFoundError:
        return False


def is_(kind: type, **fields: object) -> Callable[[Message], bool]:
    def check(m: Message) -> bool:
        return isinstance(m, kind) and all(getattr(m, k) == v for k, v in fields.items())

    return check


def snapshot(core: NodeCore) -> tuple[object, ...]:
    """Everything but the counters: members, catalog records and the view."""
    return (core.members(), core.catalog.records(), core.list_services(), core.left)


# ====================================================================== construction


def test_a_keyring_is_required_unless_insecure() -> None:
    with pytest.raises(ConfigError, match="keyring"):
        NodeCore("a", ("10.0.0.1", 1), config=Config(), rng=random.Random(0), wall_clock=lambda: WALL0,
                 now=0.0)


def test_a_keyring_and_insecure_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="insecure"):
        NodeCore("a", ("10.0.0.1", 1), config=Config(), rng=random.Random(0), wall_clock=lambda: WALL0,
                 now=0.0, keyring=Keyring(KEY), insecure=True)


def test_meta_is_bounded() -> None:
    with pytest.raises(ConfigError, match="meta"):
        NodeCore("a", ("10.0.0.1", 1), config=Config(), rng=random.Random(0), wall_clock=lambda: WALL0,
                 now=0.0, insecure=True, meta=bytes(codec.MAX_META + 1))


# ====================================================================== probing


def test_direct_probe_is_acked() -> None:
    net = CoreNetwork()
    a, b = net.cluster("a", "b")
    before = stat(a, "probes_acked")
    t0 = net.now
    net.run(10)
    pings = net.datagrams_with(is_(Ping, source="a", target="b"), since=t0, src=["a"])
    acks = net.datagrams_with(is_(Ack, source="b"), since=t0, src=["b"])
    assert len(pings) >= 8
    assert len(acks) >= len(pings) - 1  # the last ping may still be in flight
    assert all(d.dst == a.address for d in acks)
    assert stat(a, "probes_acked") - before >= 8
    assert stat(a, "probes_failed") == 0
    assert stat(a, "ping_reqs_sent") == 0
    assert a.membership.awareness.score == 0
    assert b.membership.awareness.score == 0


def test_indirect_probe_through_a_helper() -> None:
    net = CoreNetwork()
    a, _b, _c = net.cluster("a", "b", "c")
    net.blocked |= {("a", "c"), ("c", "a")}  # a and c cannot talk directly; b reaches both
    t0 = net.now
    net.wait_for(lambda: stat(a, "ping_reqs_sent") >= 1 and a._probe is None, timeout=10)
    net.run(3)
    # b carried a's ping-req: it pinged c and relayed c's ack to a under a's sequence number.
    assert net.datagrams_with(is_(PingReq, source="a", target="c"), since=t0, src=["a"])
    assert net.datagrams_with(is_(Ping, source="b", target="c"), since=t0, src=["b"])
    relayed = net.datagrams_with(is_(Ack, source="c"), since=t0, src=["b"])
    assert relayed
    assert {d.dst for d in relayed} >= {a.address}
    for name in "abc":
        assert stat(net.cores[name], "members_suspicions") == 0
        assert all(m.state is ALIVE for m in net.cores[name].members())
    assert stat(a, "probes_failed") == 0
    assert not net.datagrams_with(is_(Suspect), since=t0)


def _fail_probe_of(net: CoreNetwork, prober: str, target: str, timeout: float = 20) -> None:
    """Run until ``prober`` concludes a failed probe of ``target`` (stops right after that tick)."""
    core = net.cores[prober]
    start = stat(core, "probes_failed")
    net.wait_for(lambda: stat(core, "probes_failed") > start, timeout=timeout)
    assert net.state(prober, target) is SUSPECT


@pytest.mark.parametrize("profile", ["lan", "wan", "local"])
@pytest.mark.parametrize("latency", [0.001, 0.03])
def test_unreachable_member_is_suspected_and_helpers_nack(profile: str, latency: float) -> None:
    config = getattr(Config, profile)()
    net = CoreNetwork(config=config, latency=latency)
    a, _b, _c, _d = net.cluster("a", "b", "c", "d", settle=3 * config.probe_interval)
    assert a.membership.awareness.score == 0
    net.isolate("d")
    t0 = net.now
    nacks_before = {h: stat(net.cores[h], "nacks_sent") for h in "bc"}
    _fail_probe_of(net, "a", "d", timeout=20 * config.probe_interval)
    # The helpers asked (b and c, or one of them) answered with a nack in time, so
    # local health rises by exactly one: the target, not this member, is at fault.
    helpers = min(2, config.indirect_checks)
    assert stat(a, "ping_reqs_sent") == helpers
    nacks = net.datagrams_with(is_(Nack), since=t0, src=["b", "c"])
    # (b and c count every nack they send, for a's probe and for each other's)
    assert sum(stat(net.cores[h], "nacks_sent") - nacks_before[h] for h in "bc") == len(nacks)
    assert len({d.src for d in nacks if d.dst == a.address}) == helpers
    assert stat(a, "nacks_received") == helpers
    assert a.membership.awareness.score == 1
    net.run(2 * latency)
    # Broadcast by a, unless a had heard the suspicion from b or c first (then its own
    # failed probe is only a confirmation, which with 4 members is not counted).
    assert net.datagrams_with(is_(Suspect, name="d"), since=t0, src=["a", "b", "c"])
    if not net.datagrams_with(is_(Suspect, name="d"), since=t0, src=["b", "c"]):
        assert net.datagrams_with(is_(Suspect, name="d", from_member="a"), since=t0, src=["a"])
    assert member_events(net, "a", EventKind.SUSPECTED, "d")


def test_a_missing_nack_raises_local_health_further() -> None:
    net = CoreNetwork()
    a, _b, _c, _d = net.cluster("a", "b", "c", "d")
    net.isolate("d")

    def drop_nacks_from_b(src: str, dst: str, data: bytes) -> bool:
        return src == "b" and carries(net, src, data, Nack)

    net.drop = drop_nacks_from_b
    _fail_probe_of(net, "a", "d")
    assert a.membership.awareness.score == 2  # 1 for the failed probe + 1 missing nack


def test_failed_probe_without_helpers_counts_one() -> None:
    net = CoreNetwork()
    a, _b = net.cluster("a", "b")
    net.isolate("b")
    _fail_probe_of(net, "a", "b")
    assert stat(a, "ping_reqs_sent") == 0
    assert a.membership.awareness.score == 1


def test_duplicated_nacks_count_once() -> None:
    net = CoreNetwork()
    a, _b, _c, _d = net.cluster("a", "b", "c", "d")
    net.isolate("d")

    def duplicate_nacks(src: str, dst: str, data: bytes) -> bool:
        if src == "c" and carries(net, src, data, Nack):
            return True  # c's nack is lost ...
        if src == "b" and carries(net, src, data, Nack):
            net._push(net.now + net.latency, 0, ("dgram", dst, src, data))  # ... and b's arrives twice
        return False

    net.drop = duplicate_nacks
    _fail_probe_of(net, "a", "d")
    assert a.membership.awareness.score == 2  # one nack is still missing


def test_suspect_refutes_and_ends_alive_everywhere() -> None:
    net = CoreNetwork(config=Config.lan(suspicion_mult=8))
    _a, _b, c = net.cluster("a", "b", "c")
    net.isolate("c")
    _fail_probe_of(net, "a", "c")
    assert c.membership.local.incarnation == 0
    net.heal()
    net.wait_for(lambda: all(net.member(n, "c").state is ALIVE for n in "ab"), timeout=10)
    assert c.membership.local.incarnation >= 1
    assert stat(c, "members_refutations") >= 1
    for name in "ab":
        m = net.member(name, "c")
        assert m.incarnation == c.membership.local.incarnation
        assert not member_events(net, name, EventKind.FAILED, "c")
    net.run(5)
    for name in "abc":
        assert all(m.state is ALIVE for m in net.cores[name].members())


def test_probe_of_a_suspect_carries_the_suspicion() -> None:
    """The buddy system: the suspect learns it is suspected from the probe itself."""
    net = CoreNetwork(config=Config.lan(suspicion_mult=8))
    a, _b, _c = net.cluster("a", "b", "c")
    net.isolate("c")
    _fail_probe_of(net, "a", "c")
    t1 = net.now
    probes_sent = stat(a, "probes_sent")
    net.wait_for(lambda: stat(a, "probes_sent") > probes_sent and a._probe is not None
                 and a._probe.target == "c", timeout=10)
    assert a._probe is not None
    first_ping = next(iter(a._probe.sent_at))
    own = is_(Ping, target="c", source="a", seq=first_ping)  # not a ping a relays for b
    probe = [d for d in net.sent_by("a", since=t1 + 1e-9) if own(net.messages(d)[0])]
    assert len(probe) == 1
    assert probe[0].dst == net.cores["c"].address
    assert any(is_(Suspect, name="c", from_member="a")(m) for m in net.messages(probe[0]))


def _pings(net: CoreNetwork, prober: str, target: str, since: float) -> list[Datagram]:
    """The pings ``prober`` sent to ``target`` from ``since`` (its probes' pings, in a
    cluster where no ping-req asks it to relay)."""
    own = is_(Ping, source=prober, target=target)
    return [d for d in net.sent_by(prober, since=since) if any(map(own, net.messages(d)))]


def test_a_lost_ping_is_sent_again_and_the_probe_needs_no_helpers() -> None:
    net = CoreNetwork()
    a, _b, _c = net.cluster("a", "b", "c", settle=5)
    lost: list[float] = []  # when a's ping was lost

    def lose_one_ping_of_a(src: str, dst: str, data: bytes) -> bool:
        if not lost and src == "a" and carries(net, src, data, Ping):
            lost.append(net.now)
            return True
        return False

    net.drop = lose_one_ping_of_a
    acked, resends = stat(a, "probes_acked"), stat(a, "probe_resends")
    net.wait_for(lambda: bool(lost), timeout=5)
    target = a._probe.target if a._probe is not None else ""
    wait = a._probe_rtts.timeout(target)
    net.wait_for(lambda: a._probe is None, timeout=5)
    assert stat(a, "probe_resends") == resends + 1
    assert stat(a, "probes_acked") == acked + 1
    assert stat(a, "probes_failed") == 0
    assert stat(a, "ping_reqs_sent") == 0  # the direct path was repaired before the timeout
    pings = _pings(net, "a", target, since=lost[0])
    assert len(pings) == 2
    assert pings[1].at - pings[0].at == pytest.approx(wait)  # the target's retransmission timeout
    assert a.membership.awareness.score == 0


@pytest.mark.parametrize(("resends", "latency", "waits"), [
    (0, 0.001, []),
    (3, 0.001, [1, 1, 1]),
    (5, 0.001, [1, 1, 1, 1, 2]),  # the first three re-pings wait one timeout each, then doubling
    (3, 0.2, [1]),  # a 0.4 s round trip: a second re-ping would go after probe_timeout (0.5 s)
])
def test_a_silent_target_gets_at_most_probe_resends_more_pings_before_probe_timeout(
    resends: int, latency: float, waits: list[int],
) -> None:
    config = Config.lan(probe_resends=resends)
    net = CoreNetwork(config=config, latency=latency)
    a, _b = net.cluster("a", "b", settle=40)
    wait = a._probe_rtts.timeout("b")  # learnt from the acks: the round trip, at least the floor
    assert wait == pytest.approx(max(config.tree_ack_timeout, 2 * latency), abs=0.001)
    net.isolate("b")
    t0, resent = net.now, stat(a, "probe_resends")
    _fail_probe_of(net, "a", "b")
    # (the next probe may start in the tick that ended this one)
    pings = [d for d in _pings(net, "a", "b", since=t0) if d.at < net.now]
    assert len(pings) == 1 + len(waits)
    assert stat(a, "probe_resends") - resent == len(waits)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(pings)]
    assert gaps == pytest.approx([w * wait for w in waits])
    assert pings[-1].at - pings[0].at < config.probe_timeout
    assert stat(a, "ping_reqs_sent") == 0  # (no other member to ask)


def test_an_ack_to_any_ping_of_the_probe_answers_it_and_gives_the_round_trip() -> None:
    # a's first ping to b is lost; b acks the re-ping 60 ms later (30 ms each way), and
    # a times that ack from the re-ping, not from the first ping.
    net = CoreNetwork(latency=0.03)
    a, _b = net.cluster("a", "b", settle=5)
    lost = [False]

    def lose_first_ping(src: str, dst: str, data: bytes) -> bool:
        if not lost[0] and src == "a" and carries(net, src, data, Ping):
            lost[0] = True
            return True
        return False

    net.drop = lose_first_ping
    rtt = a.histograms()["probe_rtt"]
    net.wait_for(lambda: lost[0], timeout=5)
    net.wait_for(lambda: a._probe is None, timeout=5)
    assert stat(a, "probes_failed") == 0
    after = a.histograms()["probe_rtt"]
    assert after.count == rtt.count + 1
    assert after.sum - rtt.sum == pytest.approx(0.06)


def test_an_acked_probe_lowers_local_health_by_one() -> None:
    net = CoreNetwork()
    a, _b, _c = net.cluster("a", "b", "c")
    a.membership.awareness.apply_delta(3)
    acked = stat(a, "probes_acked")
    net.wait_for(lambda: stat(a, "probes_acked") > acked, timeout=20)
    assert stat(a, "probes_acked") == acked + 1
    assert a.membership.awareness.score == 2


def test_suspicion_timeout_kills_and_hides_registrations_until_refuted() -> None:
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c")
    c.register(service("svc-c"), None, net.now)
    net.run(1)
    assert has_service(a, "svc-c")
    assert has_service(b, "svc-c")
    net.isolate("c")
    net.wait_for(lambda: net.state("a", "c") is DEAD and net.state("b", "c") is DEAD, timeout=60)
    for name, core in (("a", a), ("b", b)):
        assert member_events(net, name, EventKind.FAILED, "c")
        assert catalog_events(net, name, "delete", "svc-c")
        assert not has_service(core, "svc-c")
        assert core.catalog.get(("svc-c", "1.0", "svc-c-1")) is not None  # hidden, not forgotten
    net.heal()  # well within gossip_to_the_dead: c hears of its death and refutes
    net.wait_for(lambda: all(net.state(o, m) is ALIVE for o in "abc" for m in "abc"), timeout=20)
    assert c.membership.local.incarnation >= 1
    # Back from the dead, c's records return once a push-pull with c brought its current ones.
    net.wait_for(lambda: has_service(a, "svc-c") and has_service(b, "svc-c"), timeout=5)
    for name, core in (("a", a), ("b", b)):
        assert stat(core, "owner_resyncs") + stat(core, "remerges_started") >= 1
        assert member_events(net, name, EventKind.JOINED, "c")
        assert catalog_events(net, name, "create", "svc-c")
        assert has_service(core, "svc-c")


def test_a_late_ack_through_a_helper_still_counts() -> None:
    """A helper that has already nacked still relays an ack that arrives before its relay expires."""
    net = CoreNetwork()
    a, _b, _c = net.cluster("a", "b", "c")
    net.blocked |= {("a", "c"), ("c", "a")}
    slow = 0.42  # c answers b's pings after 0.42 s: later than b's nack, within probe_timeout

    def delay_c_acks(src: str, dst: str, data: bytes) -> bool:
        if src == "c" and dst == "b" and carries(net, src, data, Ack):
            net._push(net.now + slow, 0, ("dgram", dst, src, data))
            return True
        return False

    net.drop = delay_c_acks
    net.wait_for(lambda: stat(a, "ping_reqs_sent") >= 1 and a._probe is None, timeout=10)
    assert stat(a, "probes_failed") == 0
    assert stat(a, "nacks_received") >= 1
    assert net.state("a", "c") is ALIVE


# ====================================================================== join


def test_join_through_a_seed_learns_members_and_registrations() -> None:
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c")
    a.register(service("svc-a"), None, net.now)
    b.register(service("svc-b", "b1", "b2"), 60.0, net.now)
    net.run(2)
    d = net.add("d")
    d.register(service("svc-d"), None, net.now)
    (sid,) = d.join([a.address], net.now)
    assert sid[0] == "out"
    net.run(0.05)  # a few round trips; no gossip round needed
    assert [e for e in net.events["d"] if isinstance(e, JoinResult)] == [JoinResult(a.address, True)]
    assert [m.name for m in d.members()] == ["a", "b", "c", "d"]
    assert all(m.state is ALIVE for m in d.members())
    assert [n.id for n in d.get_service("svc-b")[0].nodes] == ["b1", "b2"]
    assert has_service(d, "svc-a")
    assert has_service(a, "svc-d")  # the exchange is both ways
    # The four-message exchange on d's stream: INIT, REPLY, RECONCILE, FETCH.
    on_stream = [t for sender, s, t in net.stream_messages if (sender, s) == ("d", sid)]
    from_seed = [t for sender, _, t in net.stream_messages if sender == "a"]
    assert on_stream == [codec.PP_INIT, codec.PP_RECONCILE]
    assert from_seed[-2:] == [codec.PP_REPLY, codec.PP_FETCH]
    net.run(2)
    for core in (a, b, c):
        assert net.state(core.name, "d") is ALIVE
        assert has_service(core, "svc-d")


def test_push_pull_repairs_what_gossip_missed() -> None:
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c")
    c.register(service("svc1"), None, net.now)
    net.run(1)
    assert has_service(b, "svc1")
    net.drop = lambda src, dst, data: dst == "b" and carries(net, src, data, RecordMsg)
    c.register(service("svc2"), None, net.now)
    c.register(service("svc1", "svc1-1", "svc1-2"), None, net.now)
    net.run(3)  # gossip gives up: every broadcast queue is empty
    assert all(len(x._queue) == 0 for x in (a, b, c))
    assert not has_service(b, "svc2")
    net.heal()
    # b knows owner c but its summary differs: the exchange works out exactly what b
    # lacks (offer of key versions -> wanted hashes -> FETCH).
    b.join([a.address], net.now)
    net.run(0.05)
    assert has_service(b, "svc2")
    assert [n.id for n in b.get_service("svc1")[0].nodes] == ["svc1-1", "svc1-2"]
    net.run(2 * net.config.probe_interval + 0.1)  # the extra push-pull a joiner makes soon after
    # The periodic exchange repairs too, within a push-pull interval.
    net.drop = lambda src, dst, data: dst == "b" and carries(net, src, data, RecordMsg)
    c.deregister(service("svc2"), net.now)
    net.run(3)
    assert has_service(b, "svc2")
    net.heal()
    net.run(net.config.push_pull_interval * 1.5)
    assert not has_service(b, "svc2")


def test_a_joiner_does_not_see_the_registrations_of_a_dead_member() -> None:
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c")
    c.register(service("svc-c"), None, net.now)
    net.run(1)
    net.isolate("c")
    net.down.add("c")  # c is gone for good: reconnect attempts fail too
    net.wait_for(lambda: net.state("a", "c") is DEAD and net.state("b", "c") is DEAD, timeout=60)
    assert not has_service(a, "svc-c")
    d = net.add("d")
    d.join([a.address], net.now)  # a still stores c's (hidden) records: c is not reaped yet
    net.run(1)
    assert net.state("d", "a") is ALIVE
    assert not has_service(d, "svc-c")
    net.run(net.config.gossip_to_the_dead + 5)  # c is reaped everywhere; its records purged
    assert a.membership.get("c") is None
    assert b.catalog.get(("svc-c", "1.0", "svc-c-1")) is None
    assert not has_service(d, "svc-c")


def test_join_to_an_unreachable_seed_fails() -> None:
    net = CoreNetwork()
    a = net.add("a")
    d = net.add("d")
    net.unreachable_streams.add(a.address)
    d.join([a.address], net.now)
    net.run(1)
    results = [e for e in net.events["d"] if isinstance(e, JoinResult)]
    assert results == [JoinResult(a.address, False, "connect failed")]
    assert stat(d, "push_pulls_failed") == 1
    assert [m.name for m in d.members()] == ["d"]


def test_a_bad_reply_fails_the_join_and_closes_the_stream_once() -> None:
    net = CoreNetwork()
    a = net.add("a")
    d = net.add("d")
    (sid,) = d.join([a.address], net.now)
    d.take_outbox()
    d.receive_stream(sid, a.address, b"\x01" + bytes(40), net.now)
    assert d.take_outbox() == [CloseStream(sid)]
    assert [e for e in d.take_events() if isinstance(e, JoinResult)] == [
        JoinResult(a.address, False, "authentication failed")
    ]
    (sid2,) = d.join([a.address], net.now)
    d.take_outbox()
    garbage = stream_frame([codec.PP_FETCH, []], initiator=False)
    d.receive_stream(sid2, a.address, garbage, net.now)
    assert d.take_outbox() == [CloseStream(sid2)]
    assert stat(d, "decode_errors") == 1
    assert stat(d, "push_pulls_failed") == 2


def test_a_stream_message_with_too_few_or_too_many_items_is_a_decode_error() -> None:
    # Every push-pull step checks its message's length before unpacking it: a wrong
    # count is a counted decode error and a closed stream, never an exception.
    net = CoreNetwork()
    a = net.add("a")
    for n, bad in enumerate(([codec.PP_INIT, False, []], [codec.PP_INIT, False, [], {}, 1])):
        sid = ("in", 100 + n)
        a.receive_stream(sid, Address("10.0.0.9", 1), stream_frame(bad), net.now)
        assert CloseStream(sid) in a.take_outbox()
        assert stat(a, "decode_errors") == n + 1
    assert [m.name for m in a.members()] == ["a"]


def test_every_stream_frame_received_counts_its_bytes_even_a_refused_one() -> None:
    net = CoreNetwork()
    a = net.add("a")
    source = Address("10.0.0.9", 1)
    good = stream_frame([codec.PP_INIT, False, [], {}])
    bogus = stream_frame([codec.PP_INIT, False, [], {}], ring=Keyring(OTHER_KEY))
    a.receive_stream(("in", 1), source, good, net.now)
    assert stat(a, "stream_bytes_received") == len(good)
    a.receive_stream(("in", 2), source, bogus, net.now)
    assert stat(a, "auth_failures") == 1
    assert stat(a, "stream_bytes_received") == len(good) + len(bogus)


def test_a_member_that_left_takes_no_stream_frame_as_authentic() -> None:
    # The driver keeps a stream whose first frame authenticated; after leaving, the
    # member answers none, so it says no and the driver drops the stream.
    net = CoreNetwork()
    a, b = net.cluster("a", "b")
    a.leave(net.now)
    a.take_outbox()
    answered = stat(a, "push_pulls_answered")
    init = stream_frame([codec.PP_INIT, False, [], {}])
    assert a.receive_stream(("in", 99), b.address, init, net.now) is False
    assert a.take_outbox() == []
    assert stat(a, "push_pulls_answered") == answered


def test_a_frame_that_authenticates_but_is_no_chunk_is_authentic_and_closes_the_stream() -> None:
    # Sealed under the right key and place, with an unknown flag: a key holder's bad
    # chunk, a decode error. The frame did authenticate, so the answer is still True
    # (the driver lifts its budget for unauthenticated streams); a plaintext member
    # authenticates nothing, so it answers False for the same kind of frame.
    net = CoreNetwork()
    a = net.add("a")
    source = Address("10.0.0.9", 1)
    label = chunks.chunk_label(STREAM_LABEL, initiator=True, seq=0)
    no_chunk = Keyring(KEY).seal(b"\x07" + bytes(30), label)
    assert a.receive_stream(("in", 1), source, no_chunk, net.now) is True
    assert a.take_outbox() == [CloseStream(("in", 1))]
    assert (stat(a, "decode_errors"), stat(a, "auth_failures")) == (1, 0)
    plain_net = CoreNetwork(insecure=True)
    p = plain_net.add("p")
    assert p.receive_stream(("in", 1), source, b"\x07" + bytes(30), plain_net.now) is False
    assert p.take_outbox() == [CloseStream(("in", 1))]
    assert stat(p, "decode_errors") == 1


def test_a_stream_message_over_the_size_limit_aborts_the_stream() -> None:
    # The limit is checked chunk by chunk: a message's first chunk past it fails the
    # join at once, with the reason, before the rest of the message is read.
    net = CoreNetwork()
    limit = 1400
    a = net.add("a")
    d = net.add("d", config=Config(max_stream_frame=limit))
    (sid,) = d.join([a.address], net.now)
    d.take_outbox()
    first, _rest = chunks.seal_chunks(Keyring(KEY), STREAM_LABEL, bytes(chunks.CHUNK + 1),
                                      initiator=False, seq=0)
    assert d.receive_stream(sid, a.address, first, net.now) is True  # authentic, but too large
    assert d.take_outbox() == [CloseStream(sid)]
    assert [e for e in d.take_events() if isinstance(e, JoinResult)] == [
        JoinResult(a.address, False, "stream message too large")
    ]
    assert stat(d, "stream_messages_too_large") == 1
    assert stat(d, "push_pulls_failed") == 1


def test_a_check_reply_that_is_not_a_bool_is_a_decode_error_and_fails_the_check() -> None:
    net = CoreNetwork()
    a = net.add("a")
    peer = Address("10.0.0.9", 1)
    a._start_check(peer, net.now)
    [sent] = a.take_outbox()
    assert isinstance(sent, SendStream)
    sid = sent.stream
    started = stat(a, "push_pulls_started")
    a.receive_stream(sid, peer, stream_frame([codec.PP_CHECK_REPLY, 1], initiator=False), net.now)
    assert a.take_outbox() == [CloseStream(sid)]  # no full push-pull follows
    assert stat(a, "decode_errors") == 1
    assert stat(a, "push_pulls_failed") == 1
    assert stat(a, "push_pull_checks_matched") == 0  # 1 is not "the same"
    assert stat(a, "push_pulls_started") == started


def test_a_push_pull_init_whose_join_flag_is_not_a_bool_is_a_decode_error() -> None:
    net = CoreNetwork()
    a = net.add("a")
    b = net.add("b")
    sid = ("in", 7)
    a.receive_stream(sid, b.address, stream_frame([codec.PP_INIT, 1, [], {}]), net.now)
    assert a.take_outbox() == [CloseStream(sid)]  # no reply
    assert stat(a, "decode_errors") == 1
    assert stat(a, "push_pulls_answered") == 0


def test_refused_traffic_is_reported_at_once_then_once_per_notice_interval() -> None:
    net = CoreNetwork()
    a = net.add("a")
    other = Keyring(OTHER_KEY)
    ping = codec.encode_message(Ping(1, "a", "x", Address("10.0.0.9", 1)))
    sealed = other.seal(codec.pack_datagram([ping]), b"")
    source = ("10.0.0.9", 1)

    def refused() -> list[TrafficRefused]:
        return [e for e in a.take_events() if isinstance(e, TrafficRefused)]

    a.receive_datagram(sealed, source, 100.0)
    assert [(e.cause, e.count) for e in refused()] == [("auth_failures", 1)]  # the first: at once
    for k in range(5):
        a.receive_datagram(sealed, source, 100.0 + k)
    assert refused() == []  # within the interval: counted, not reported
    a.receive_datagram(sealed, source, 100.0 + NOTICE_INTERVAL)
    assert [(e.cause, e.count) for e in refused()] == [("auth_failures", 6)]
    assert stat(a, "auth_failures") == 7


def test_a_plaintext_member_closes_a_stream_that_is_not_plaintext() -> None:
    # A sealed first frame is refused with its cause and closed; any other frame that
    # is not a plaintext message is a decode error, closed too: no stream stays open.
    net = CoreNetwork(insecure=True)
    a = net.add("a")
    source = Address("10.0.0.9", 1)
    sealed_frame = stream_frame([codec.PP_INIT, False, [], {}])
    a.receive_stream(("in", 1), source, sealed_frame, net.now)
    out = a.take_outbox()
    assert out[-1] == CloseStream(("in", 1))
    assert stat(a, "sealed_received_while_insecure") == 1
    a.receive_stream(("in", 2), source, b"\x07" + bytes(30), net.now)
    assert a.take_outbox() == [CloseStream(("in", 2))]
    assert stat(a, "decode_errors") == 1


def test_a_helper_that_cannot_reach_the_target_nacks_the_requester() -> None:
    # Lifeguard's nack: b, asked by a to probe c (which is down), tells a it heard
    # nothing, so a does not blame its own health for b's silence.
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c")
    net.down.add("c")
    before = stat(b, "nacks_sent")
    b.receive_datagram(
        Keyring(KEY).seal(codec.pack_datagram([codec.encode_message(
            PingReq(78, "c", c.address, "a", a.address, True)
        )]), b""),
        a.address, net.now,
    )
    net.run(net.config.probe_timeout)  # b waits at most a probe timeout before it nacks
    assert stat(b, "nacks_sent") >= before + 1
    assert stat(a, "nacks_received") >= 1


def test_join_times_out_when_the_driver_never_answers() -> None:
    net = CoreNetwork()
    d = net.add("d")
    nowhere = Address("10.255.0.1", 7946)
    (sid,) = d.join([nowhere], net.now)
    out = d.take_outbox()
    assert [type(o) for o in out] == [SendStream]
    d.tick(net.config.stream_timeout - 0.001)
    assert not [e for e in d.take_events() if isinstance(e, JoinResult)]
    d.tick(net.config.stream_timeout)
    results = [e for e in d.take_events() if isinstance(e, JoinResult)]
    assert results == [JoinResult(nowhere, False, "timed out")]
    assert CloseStream(sid) in d.take_outbox()


def test_a_joiner_checks_again_two_probe_intervals_after_its_join() -> None:
    # Members that joined at the same time through other seeds may not have reached its
    # seed yet: the joiner's next anti-entropy check comes soon, not a push_pull_interval later.
    net = CoreNetwork()
    a = net.add("a")
    net.run(1.0)
    b = net.add("b")
    b.join([a.address], net.now)
    net.wait_for(lambda: any(isinstance(e, JoinResult) and e.ok for e in net.events["b"]), timeout=5)
    joined, checks = net.now, stat(b, "push_pull_checks")
    soon = 2 * b.config.probe_interval
    net.run(soon - 0.05)
    assert stat(b, "push_pull_checks") == checks
    net.run(0.1)
    assert stat(b, "push_pull_checks") == checks + 1
    assert net.now - joined < soon + 0.1


def test_a_record_is_hidden_until_its_owner_is_known_alive() -> None:
    # A joiner must not show the stored records of a member that died before it came, so
    # records of an owner this member has never seen alive stay hidden until it has.
    net = CoreNetwork()
    a, b = net.cluster("a", "b")
    c = net.add("c")
    rec = c.register(service("early"), None, net.now)[0]
    ring = c.keyring
    assert ring is not None
    a.receive_datagram(ring.seal(codec.pack_datagram([codec.encode_message(RecordMsg(rec))]), b""),
                       c.address, net.now)
    assert a.catalog.get(rec.key) == rec  # stored...
    assert not has_service(a, "early")  # ...not shown
    c.join([b.address], net.now)
    net.wait_for(lambda: net.state("a", "c") is ALIVE, timeout=5)
    assert has_service(a, "early")


def test_a_record_stamped_beyond_the_clock_drift_bound_is_refused_and_reported() -> None:
    net = CoreNetwork()
    a, b = net.cluster("a", "b")
    a.take_events()
    ahead_ms = int((a.config.max_clock_drift + 10) * 1000)
    stamp = make_stamp(physical_ms(b.catalog.clock.now()) + ahead_ms)
    rec = Record("far", "1.0", "f-1", "b", stamp, None, False, Node("f-1", "10.9.9.9:1"))
    ring = b.keyring
    assert ring is not None
    a.receive_datagram(ring.seal(codec.pack_datagram([codec.encode_message(RecordMsg(rec))]), b""),
                       b.address, net.now)
    assert a.catalog.get(rec.key) is None
    assert stat(a, "records_rejected_drift") == 1
    refused = [e for e in a.take_events() if isinstance(e, TrafficRefused)]
    assert [(e.cause, e.count, e.address) for e in refused] == [("records_rejected_drift", 1, b.address)]


# ====================================================================== dissemination


def test_registration_spreads_by_eager_push_within_one_hop() -> None:
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c")
    net.run(2)
    t0 = net.now
    a.register(service("svc"), None, net.now)
    net.run(3 * net.latency)  # far less than gossip_interval
    assert has_service(b, "svc")
    assert has_service(c, "svc")
    assert [e.action for e in catalog_events(net, "b", "create", "svc")] == ["create"]
    assert stat(a, "eager_pushes") >= 2
    first = net.datagrams_with(is_(RecordMsg), since=t0, src=["a"])
    assert {d.dst for d in first if d.at == t0} == {b.address, c.address}


def test_registration_waits_for_a_gossip_round_without_eager_push() -> None:
    net = CoreNetwork(config=Config.lan(eager_push=False))
    a, b, c = net.cluster("a", "b", "c")
    net.run(2)
    # Register right after one of a's gossip rounds (the round that carries "warm").
    a.register(service("warm"), None, net.now)
    rounds = stat(a, "gossip_datagrams")
    net.wait_for(lambda: stat(a, "gossip_datagrams") > rounds, timeout=1)
    a.register(service("svc"), None, net.now)
    net.run(3 * net.latency)
    assert not has_service(b, "svc") or not has_service(c, "svc")
    net.run(net.config.gossip_interval)
    assert has_service(b, "svc")
    assert has_service(c, "svc")
    assert stat(a, "eager_pushes") == 0


def is_tree(net: CoreNetwork, out: object) -> bool:
    """Whether ``out`` is a datagram of the broadcast tree (its first message is a Tree marker)."""
    if not isinstance(out, SendDatagram):
        return False
    core = net.cores["a"]
    return isinstance(decode_datagram(out.data, core.keyring, core.config.label_bytes)[0], Tree)


def test_eager_push_is_rate_limited_per_destination() -> None:
    net = CoreNetwork()
    a, b, _c = net.cluster("a", "b", "c")
    net.run(2)
    a.register(service("s1"), None, net.now)
    out = a.take_outbox()
    assert {o.address for o in out if isinstance(o, SendDatagram)} == {b.address, net.cores["c"].address}
    pushes = stat(a, "eager_pushes")
    a.register(service("s2"), None, net.now + 0.001)  # within 1 / eager_push_rate of the last push
    # Only the broadcast tree (one datagram per child, not rate-limited) goes out.
    assert [o for o in a.take_outbox() if not is_tree(net, o)] == []
    assert stat(a, "eager_pushes") == pushes
    gap = 1.5 / net.config.eager_push_rate
    a.register(service("s3"), None, net.now + gap)  # later than 1 / eager_push_rate: pushed at once
    assert len([o for o in a.take_outbox() if isinstance(o, SendDatagram) and not is_tree(net, o)]) == 2
    # s2 was not lost: it waits in the queue for the next gossip round.
    net.now += gap
    net.run(net.config.gossip_interval + 0.01)
    assert has_service(b, "s2")


def test_eager_rounds_are_bounded_per_second_whatever_the_news_rate() -> None:
    # A member hearing news faster than eager_round_rate (a storm of suspicions and
    # refutations under heavy loss) sends at most a bucket's worth of eager rounds at
    # once, then eager_round_rate a second; the rest waits for the gossip rounds.
    config = Config.lan(eager_push_rate=1e6, eager_round_rate=4.0)
    net = CoreNetwork(config=config)
    a, b, c = net.cluster("a", "b", "c")
    net.run(2)
    a.take_outbox()
    start = stat(a, "eager_pushes")
    for i in range(10):  # 1 ms apart (the per-destination limit is out of the way)
        net.run(0.001)
        a.register(service(f"s{i}"), None, net.now)
    rounds = (stat(a, "eager_pushes") - start) // 2  # two destinations per round
    assert rounds == 4  # the full bucket: one second's worth
    assert stat(a, "eager_rounds_deferred") == 6
    # A quarter of a second refills exactly one round.
    net.run(0.25)
    a.register(service("late"), None, net.now)
    assert (stat(a, "eager_pushes") - start) // 2 == 5
    # Nothing deferred is lost: the broadcast tree and the gossip rounds carry it.
    net.run(3 * config.gossip_interval)
    assert all(has_service(x, name) for x in (b, c) for name in [f"s{i}" for i in range(10)] + ["late"])


def test_news_of_a_member_never_seen_before_is_pushed_at_once_with_no_eager_round_left() -> None:
    # Members joining at once are news of members nobody knew: each is passed on
    # eagerly even when the bucket of eager rounds is empty (a burst of joins would
    # otherwise wait for gossip rounds). Suspicions, refutations and other repeats of
    # known members stay bounded by the bucket.
    config = Config.lan(eager_push_rate=1e6, eager_round_rate=1.0)
    net = CoreNetwork(config=config)
    a, b, _ = net.cluster("a", "b", "c")
    net.run(2)
    for i in range(3):  # 1 ms apart: the bucket (one round) is empty after the first
        net.run(0.001)
        a.register(service(f"s{i}"), None, net.now)
    deferred = stat(a, "eager_rounds_deferred")
    assert deferred >= 2
    pushes = stat(a, "eager_pushes")
    d = net.add("d")
    d.join([b.address], net.now)
    net.wait_for(lambda: net.state("a", "d") is MemberState.ALIVE, 0.05)
    net.run(0.01)  # well within one gossip round
    assert stat(a, "eager_pushes") > pushes
    assert stat(a, "eager_rounds_deferred") == deferred
    # News of a member a already knows (b's registration) waits with the bucket empty.
    net.run(0.001)
    a.register(service("s3"), None, net.now)
    assert stat(a, "eager_rounds_deferred") == deferred + 1


def test_a_datagram_never_carries_more_messages_than_a_receiver_accepts() -> None:
    """With large packets and many small updates, a datagram is split at codec.MAX_MESSAGES."""
    # A retransmit budget large enough that the ghosts' alives are still queued at a
    # when b's probe of a arrives (a spends most of its gossip on the ghosts).
    net = CoreNetwork(config=Config.lan(max_packet_size=65000, retransmit_mult=1000), insecure=True)
    a, b = net.cluster("a", "b")
    ghosts = [Alive(f"g{i:04d}", 0, Address("10.200.0.1", 10000 + i)) for i in range(1500)]
    for chunk in (ghosts[:750], ghosts[750:]):
        a.receive_datagram(plain(*chunk), ("10.200.0.1", 1), net.now)
    # b probes a every probe interval; a's ack carries the queued alives, split in two.
    net.run(1.5 * net.config.probe_interval)
    assert stat(b, "decode_errors") == 0
    assert len(b.members()) == 1502
    for d in net.log:
        assert len(codec.unpack_datagram(d.data)) <= codec.MAX_MESSAGES


def test_deregister_spreads_a_tombstone() -> None:
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c")
    a.register(service("svc"), None, net.now)
    net.run(1)
    tombs = a.deregister(service("svc"), net.now)
    assert [t.deleted for t in tombs] == [True]
    net.run(3 * net.latency)
    for name, core in (("b", b), ("c", c)):
        assert not has_service(core, "svc")
        assert catalog_events(net, name, "delete", "svc")
        rec = core.catalog.get(("svc", "1.0", "svc-1"))
        assert rec is not None
        assert rec.deleted


def test_renewals_send_nothing_and_an_unrenewed_lease_ends_everywhere() -> None:
    """A renewal restarts the lease at its owner only: no datagram, no watch result
    anywhere. When the owner stops renewing, it deregisters, and the tombstone spreads."""
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c")
    a.register(service("svc"), 5.0, net.now)
    net.run(3)  # spread, and the broadcast queues drain
    assert all(has_service(x, "svc") for x in (a, b, c))
    assert all(len(x._queue) == 0 for x in (a, b, c))
    t1 = net.now
    marks = {name: len(net.events[name]) for name in "abc"}
    for _ in range(4):  # renewed every 2.5 s for 10 s: it outlives its 5 s lease
        assert a.register(service("svc"), 5.0, net.now) == []
        net.run(2.5)
    assert all(has_service(x, "svc") for x in (a, b, c))
    assert not net.datagrams_with(is_(RecordMsg), since=t1)
    for name in "abc":
        assert [e for e in net.events[name][marks[name]:] if isinstance(e, CatalogEvent)] == []
    assert stat(a, "catalog_renewals") == 4
    net.run(5)  # not renewed: a's lease runs out, a deregisters
    for name, core in (("a", a), ("b", b), ("c", c)):
        assert not has_service(core, "svc")
        assert catalog_events(net, name, "delete", "svc")
    assert stat(a, "catalog_expired") == 1
    assert net.datagrams_with(is_(RecordMsg), since=t1, src=["a"])


# ====================================================================== leave


def test_leave_is_left_not_dead_and_silences_the_member() -> None:
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c")
    c.register(service("svc-c"), None, net.now)
    net.run(1)
    c.leave(net.now)
    assert c.left
    t1 = net.now
    net.run(0.01)
    assert net.datagrams_with(is_(Leave, name="c"), since=t1, src=["c"])
    net.run(10)
    for name, core in (("a", a), ("b", b)):
        assert net.state(name, "c") is LEFT
        assert member_events(net, name, EventKind.LEFT, "c")
        assert not member_events(net, name, EventKind.FAILED, "c")
        assert not has_service(core, "svc-c")
        assert catalog_events(net, name, "delete", "svc-c")
    assert net.sent_by("c", since=t1 + 1e-9) == []
    assert c.next_deadline() is None
    # A ping to the departed member gets no answer, and nothing it receives changes it.
    before = snapshot(c)
    c.receive_datagram(sealed(Ping(7, "c", "a", a.address)), a.address, net.now)
    c.tick(net.now + 100)
    assert c.take_outbox() == []
    assert snapshot(c) == before


# ====================================================================== security


@pytest.fixture
def pair() -> tuple[CoreNetwork, NodeCore, NodeCore]:
    net = CoreNetwork()
    a, b = net.cluster("a", "b")
    return net, a, b


def _intruder_alive() -> Alive:
    return Alive("x", 5, Address("10.6.6.6", 7946))


def test_datagram_sealed_with_another_key_is_dropped(pair: tuple[CoreNetwork, NodeCore, NodeCore]) -> None:
    net, a, b = pair
    before = snapshot(a)
    a.receive_datagram(sealed(_intruder_alive(), Ping(1, "a", "x", Address("10.6.6.6", 1)), key=OTHER_KEY),
                       b.address, net.now)
    assert stat(a, "auth_failures") == 1
    assert snapshot(a) == before
    assert a.take_outbox() == []


def test_datagram_with_another_cluster_label_is_dropped(pair: tuple[CoreNetwork, NodeCore, NodeCore]) -> None:
    net, a, b = pair
    before = snapshot(a)
    a.receive_datagram(sealed(_intruder_alive(), label=b"other-cluster"), b.address, net.now)
    assert stat(a, "auth_failures") == 1
    assert snapshot(a) == before


def test_labelled_clusters_talk_among_themselves() -> None:
    net = CoreNetwork(config=Config.lan(label="prod-eu"))
    a, b = net.cluster("a", "b")
    assert net.state("a", "b") is ALIVE
    a.receive_datagram(sealed(_intruder_alive()), b.address, net.now)  # no label
    assert stat(a, "auth_failures") == 1
    a.receive_datagram(sealed(_intruder_alive(), label=b"prod-eu"), b.address, net.now)
    assert net.state("a", "x") is ALIVE


def test_plaintext_to_a_sealed_member_is_rejected(pair: tuple[CoreNetwork, NodeCore, NodeCore]) -> None:
    net, a, b = pair
    before = snapshot(a)
    a.receive_datagram(plain(_intruder_alive()), b.address, net.now)
    assert stat(a, "plaintext_rejected") == 1
    assert stat(a, "auth_failures") == 0
    assert snapshot(a) == before


def test_sealed_datagram_to_an_insecure_member_is_rejected() -> None:
    net = CoreNetwork(insecure=True)
    a, b = net.cluster("a", "b")
    before = snapshot(a)
    a.receive_datagram(sealed(_intruder_alive()), b.address, net.now)
    assert stat(a, "sealed_received_while_insecure") == 1
    assert snapshot(a) == before
    a.receive_datagram(plain(_intruder_alive()), b.address, net.now)
    assert net.state("a", "x") is ALIVE


def test_a_wrong_key_frame_whose_nonce_starts_like_plaintext_is_still_an_auth_failure() -> None:
    # A sealed frame is [key version 1][12-byte nonce]...; its nonce comes from a random
    # start, so one frame in 256 has the protocol version as its second byte, the way a
    # plaintext chunk does. Such a frame must still count (and be refused) as another key.
    ring = Keyring(OTHER_KEY, nonce_start=codec.PROTOCOL_VERSION << 88)
    bogus = stream_frame([codec.PP_INIT, False, [], {}], ring=ring)
    assert bogus[1] == codec.PROTOCOL_VERSION
    core = sealed_core("a", "10.0.0.9")
    core.receive_stream(("in", 1), ("10.0.0.8", 1), bogus, 0.0)
    assert core.take_outbox() == [
        SendStream(("in", 1), Address("10.0.0.8", 1), chunks.refusal(1)), CloseStream(("in", 1))
    ]
    assert (stat(core, "auth_failures"), stat(core, "plaintext_rejected")) == (1, 0)
    # A real plaintext chunk is still told apart: refused as plaintext.
    plain_core = sealed_core("b", "10.0.0.10")
    plain = plain_stream_frame([codec.PP_INIT, False, [], {}])
    plain_core.receive_stream(("in", 1), ("10.0.0.8", 1), plain, 0.0)
    assert (stat(plain_core, "auth_failures"), stat(plain_core, "plaintext_rejected")) == (0, 1)


def test_stream_message_with_the_wrong_key_closes_the_stream() -> None:
    net = CoreNetwork()
    a = net.add("a")
    x = net.add("x", keyring=Keyring(OTHER_KEY))
    x.join([a.address], net.now)
    net.run(1)
    assert stat(a, "auth_failures") == 1
    assert stat(a, "push_pulls_answered") == 0
    assert [m.name for m in a.members()] == ["a"]
    # a said why before closing: x's join fails at once, with the cause, for good.
    assert [e for e in net.events["x"] if isinstance(e, JoinResult)] == [
        JoinResult(a.address, False, f"refused: {chunks.REFUSALS[1]}", permanent=True)
    ]
    assert (stat(a, "stream_refusals_sent"), stat(x, "stream_refusals_received")) == (1, 1)
    # a's answer to the bad message: the refusal, unsealed, then the close of its end.
    direct = sealed_core("a2", "10.0.0.9")
    bogus = stream_frame([codec.PP_INIT, False, [], {}], ring=Keyring(OTHER_KEY))
    direct.receive_stream(("in", 1), ("10.0.0.8", 1), bogus, 0.0)
    assert direct.take_outbox() == [
        SendStream(("in", 1), Address("10.0.0.8", 1), chunks.refusal(1)), CloseStream(("in", 1))
    ]
    assert stat(direct, "auth_failures") == 1


@pytest.mark.parametrize(
    ("joiner_insecure", "seed_insecure", "code"), [(True, False, 2), (False, True, 3)]
)
def test_a_join_across_sealed_and_plaintext_is_refused_with_the_cause(
    joiner_insecure: bool, seed_insecure: bool, code: int
) -> None:
    net = CoreNetwork()
    a = net.add("a", insecure=seed_insecure)
    x = net.add("x", insecure=joiner_insecure)
    x.join([a.address], net.now)
    net.run(1)
    [result] = [e for e in net.events["x"] if isinstance(e, JoinResult)]
    assert (result.ok, result.permanent, result.reason) == (False, True, f"refused: {chunks.REFUSALS[code]}")
    assert [m.name for m in a.members()] == ["a"]


def test_refusals_are_rate_limited_and_only_answer_a_streams_first_frame() -> None:
    core = sealed_core("a", "10.0.0.9")
    bogus = stream_frame([codec.PP_INIT, False, [], {}], ring=Keyring(OTHER_KEY))
    burst = 3 * int(REFUSALS_PER_SECOND)
    for n in range(burst):  # all at one instant: the bucket holds REFUSALS_PER_SECOND
        core.receive_stream(("in", n), ("10.0.0.8", 1), bogus, 0.0)
    refusals = [o for o in core.take_outbox() if isinstance(o, SendStream)]
    assert len(refusals) == REFUSALS_PER_SECOND
    assert stat(core, "stream_refusals_sent") == REFUSALS_PER_SECOND
    core.receive_stream(("in", burst), ("10.0.0.8", 1), bogus, 0.5)  # half a second refills half
    assert len([o for o in core.take_outbox() if isinstance(o, SendStream)]) == 1
    # An outbound stream's bad frame, or a later frame of an inbound one, gets no refusal.
    core.receive_stream(("out", 1), ("10.0.0.8", 1), bogus, 10.0)
    assert not [o for o in core.take_outbox() if isinstance(o, SendStream)]
    first, _ = chunks.seal_chunks(Keyring(KEY), STREAM_LABEL, bytes(chunks.CHUNK + 1), initiator=True, seq=0)
    assert core.receive_stream(("in", 99), ("10.0.0.8", 1), first, 10.0)  # a message's first chunk
    core.receive_stream(("in", 99), ("10.0.0.8", 1), bogus, 10.0)
    assert not [o for o in core.take_outbox() if isinstance(o, SendStream)]


def test_stream_messages_are_not_datagrams() -> None:
    """Datagram and stream labels differ: one cannot be replayed as the other."""
    net = CoreNetwork()
    a, b = net.cluster("a", "b")
    answered = stat(a, "push_pulls_answered")
    datagram = Keyring(KEY).seal(codec.pack_stream([codec.PP_INIT, False, [], {}]), b"")
    a.receive_stream(("in", 99), b.address, datagram, net.now)
    assert stat(a, "auth_failures") == 1
    assert stat(a, "push_pulls_answered") == answered
    assert a.take_outbox() == [SendStream(("in", 99), b.address, chunks.refusal(1)), CloseStream(("in", 99))]


# ====================================================================== replay


def _datagrams_carrying(net: CoreNetwork, predicate: Callable[[Message], bool]) -> list[bytes]:
    return [d.data for d in net.log if d.delivered and any(map(predicate, net.messages(d)))]


def test_replayed_suspect_and_dead_an_hour_later_change_nothing() -> None:
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c")
    net.isolate("c")
    net.wait_for(lambda: net.state("a", "c") is DEAD and net.state("b", "c") is DEAD, timeout=60)
    net.heal()
    net.wait_for(lambda: all(net.state(o, m) is ALIVE for o in "abc" for m in "abc"), timeout=20)
    net.run(10)
    captured = _datagrams_carrying(net, is_(Suspect, name="c"))
    captured += _datagrams_carrying(net, is_(Dead, name="c"))
    assert any(any(isinstance(m, Dead) for m in decode_datagram(d, Keyring(KEY))) for d in captured)
    assert any(any(isinstance(m, Suspect) for m in decode_datagram(d, Keyring(KEY))) for d in captured)

    net.run(3600)  # an hour of (virtual) normal operation
    cores = {"a": a, "b": b, "c": c}
    incarnations = {n: core.membership.local.incarnation for n, core in cores.items()}
    suspicions = {n: stat(core, "members_suspicions") for n, core in cores.items()}
    for core in cores.values():
        net.take_events(core.name)
    for data in captured:
        for target in cores.values():
            net.deliver_now(target.name, data, a.address)
    for name, core in cores.items():
        assert all(m.state is ALIVE for m in core.members()), name
        assert core.membership.local.incarnation == incarnations[name]
        assert stat(core, "members_suspicions") == suspicions[name]
        assert not [e for e in net.events[name] if isinstance(e, MemberEvent)]
    net.run(30)
    for name, core in cores.items():
        assert all(m.state is ALIVE for m in core.members()), name
        assert stat(core, "members_suspicions") == suspicions[name]


def test_replayed_registration_does_not_come_back_after_deregistration() -> None:
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c")
    a.register(service("svc"), None, net.now)
    net.run(1)
    captured = _datagrams_carrying(net, is_(RecordMsg))
    assert captured
    a.deregister(service("svc"), net.now)
    net.run(1800)
    for core in (a, b, c):
        net.take_events(core.name)
        assert not has_service(core, "svc")
    for data in captured:
        for core in (a, b, c):
            net.deliver_now(core.name, data, a.address)
    net.run(5)
    for core in (a, b, c):
        assert not has_service(core, "svc")
        assert not catalog_events(net, core.name, "create", "svc")
        rec = core.catalog.get(("svc", "1.0", "svc-1"))
        assert rec is not None
        assert rec.deleted


# ====================================================================== hostile input


def _ping_is_acked(core: NodeCore, now: float) -> bool:
    src = Address("10.0.0.200", 7946)
    msg = Ping(10**9, core.name, "prober", src)
    data = plain(msg) if core.keyring is None else sealed(msg)
    core.take_outbox()
    core.receive_datagram(data, src, now)
    return any(
        isinstance(o, SendDatagram) and o.address == src
        and any(is_(Ack, seq=10**9, source=core.name)(m) for m in decode_datagram(o.data, core.keyring))
        for o in core.take_outbox()
    )


def _samples(insecure: bool) -> tuple[CoreNetwork, list[bytes], list[bytes]]:
    """A settled cluster with registrations and a member joined late, and what its wire carried."""
    net = CoreNetwork(insecure=insecure)
    a, b, _c = net.cluster("a", "b", "c")
    a.register(service("svc", "n1", "n2"), 30.0, net.now)
    b.register(api_service(), None, net.now)
    net.run(1)
    d = net.add("d")
    captured_streams: list[bytes] = []
    original = net._route_stream

    def capture(src: str, out: SendStream) -> None:
        captured_streams.append(out.data)
        original(src, out)

    net._route_stream = capture  # type: ignore[method-assign]
    d.join([a.address], net.now)
    net.run(2)
    assert len(captured_streams) >= 4
    dgrams = [x.data for x in net.log[-200:]]
    return net, dgrams, captured_streams


def api_service() -> Service:
    req = Value("Request", "struct", (Value("name", "string"),))
    return Service("api", "2", {"team": "x"}, (Endpoint("Say.Hello", req, None, {"m": "1"}),),
                   (Node("api-1", "10.1.1.1", 8080, {"zone": "a"}),))


_SAMPLES: dict[bool, tuple[CoreNetwork, list[bytes], list[bytes]]] = {}


def samples(insecure: bool) -> tuple[CoreNetwork, list[bytes], list[bytes]]:
    if insecure not in _SAMPLES:
        _SAMPLES[insecure] = _samples(insecure)
    return _SAMPLES[insecure]


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0xC0, 0xC1, 0xCF, 0xD3, 0xDC, 0x47]))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i : i + draw(st.integers(1, 8))]
    return bytes(data)


def _fresh_core(net: CoreNetwork, insecure: bool) -> NodeCore:
    core = NodeCore("a", net.cores["a"].address, config=net.config, rng=random.Random(5),
                    wall_clock=lambda: WALL0 + net.now, now=net.now,
                    keyring=None if insecure else Keyring(KEY), insecure=insecure)
    core.take_outbox()
    return core


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _authentic(data: bytes, label: bytes) -> bool:
    """Whether ``data`` opens with the cluster key: a replay (a "mutation" may give back
    the original, and Hypothesis' database replays examples sealed in earlier runs)."""
    try:
        Keyring(KEY).open(data, label)
    except AuthenticationError:
        return False
    return True


def _authentic_chunk(data: bytes) -> bool:
    """Whether ``data`` opens as one of the first chunks of either direction of a stream."""
    for initiator in (True, False):
        for seq in range(8):
            if _authentic(data, chunks.chunk_label(STREAM_LABEL, initiator=initiator, seq=seq)):
                return True
    return False


def _hostile_datagram(insecure: bool, data: bytes) -> None:
    net, _, _ = samples(insecure)
    core = _fresh_core(net, insecure)
    before = snapshot(core)
    core.receive_datagram(data, ("10.0.0.77", 7946), net.now)
    core.tick(net.now + 1)
    if not insecure and not _authentic(data, b""):
        assert snapshot(core) == before
    assert _ping_is_acked(core, net.now + 1)


def _hostile_stream(insecure: bool, messages: list[bytes]) -> None:
    net, _, _ = samples(insecure)
    core = _fresh_core(net, insecure)
    before = snapshot(core)
    for i, data in enumerate(messages):
        core.receive_stream(("in", i % 2), ("10.0.0.77", 7946), data, net.now)
    core.receive_stream(("out", 1), ("10.0.0.77", 7946), messages[0], net.now)
    core.tick(net.now + 100)
    if not insecure and not any(_authentic_chunk(m) for m in messages):
        assert snapshot(core) == before
    assert _ping_is_acked(core, net.now + 100)


@pytest.mark.parametrize("insecure", [True, False], ids=["insecure", "sealed"])
@_FUZZ
@given(data=st.binary(max_size=300))
def test_random_datagrams_are_counted_and_dropped(insecure: bool, data: bytes) -> None:
    _hostile_datagram(insecure, data)


@pytest.mark.parametrize("insecure", [True, False], ids=["insecure", "sealed"])
@_FUZZ
@given(data=st.data())
def test_mutated_datagrams_never_raise(insecure: bool, data: st.DataObject) -> None:
    _, dgrams, _ = samples(insecure)
    _hostile_datagram(insecure, data.draw(mutated(dgrams)))


@pytest.mark.parametrize("insecure", [True, False], ids=["insecure", "sealed"])
@_FUZZ
@given(data=st.data())
def test_hostile_stream_messages_never_raise(insecure: bool, data: st.DataObject) -> None:
    _, _, streams = samples(insecure)
    one = st.one_of(st.binary(max_size=200), mutated(streams))
    messages = data.draw(st.lists(one, min_size=1, max_size=4))
    _hostile_stream(insecure, messages)


def test_valid_captured_input_replays_cleanly() -> None:
    """The fuzz corpora themselves go through without error (and are accepted)."""
    for insecure in (True, False):
        net, dgrams, _ = samples(insecure)
        core = _fresh_core(net, insecure)
        for d in dgrams:
            core.receive_datagram(d, ("10.0.0.2", 7946), net.now)
        assert stat(core, "decode_errors") == 0
        assert stat(core, "auth_failures") == 0
        assert _ping_is_acked(core, net.now)


def test_decode_errors_are_counted_per_message() -> None:
    net = CoreNetwork(insecure=True)
    a, b = net.cluster("a", "b")
    good = codec.encode_message(Alive("x", 1, Address("10.6.6.6", 7946)))
    bad = codec.pack([codec.ALIVE, "y", -1, "h", 1, b"", 0])
    a.receive_datagram(codec.pack_datagram([bad, good, codec.pack([99])]), b.address, net.now)
    assert stat(a, "decode_errors") == 2
    assert net.state("a", "x") is ALIVE


def test_repeated_accusations_are_skipped_before_decoding_and_bad_ones_still_fail() -> None:
    """A suspicion or death this member already holds is skipped (``stale_skipped``)
    without changing anything; a malformed one is still a decode error, not stale."""
    net = CoreNetwork(insecure=True, config=Config.lan(death_grace=0.0))  # deaths believed at once
    a, b, _c, _d = net.cluster("a", "b", "c", "d")
    a.receive_datagram(plain(Suspect("c", 0, "b")), b.address, net.now)
    assert net.state("a", "c") is SUSPECT
    deadline = a.membership.suspicion("c").deadline()  # type: ignore[union-attr]
    skipped = stat(a, "stale_skipped")
    a.receive_datagram(plain(Suspect("c", 0, "b")), b.address, net.now)  # the same suspicion again
    assert stat(a, "stale_skipped") == skipped + 1
    assert a.membership.suspicion("c").deadline() == deadline  # type: ignore[union-attr]
    a.receive_datagram(plain(Suspect("c", 0, "d")), b.address, net.now)  # an independent confirmation
    assert stat(a, "stale_skipped") == skipped + 1
    assert a.membership.suspicion("c").deadline() < deadline  # type: ignore[union-attr]
    a.receive_datagram(plain(Dead("c", 0, "d")), b.address, net.now)
    assert net.state("a", "c") is DEAD
    a.receive_datagram(plain(Dead("c", 0, "b"), Suspect("c", 0, "b")), b.address, net.now)
    assert stat(a, "stale_skipped") == skipped + 3
    errors = stat(a, "decode_errors")
    for bad in ([codec.SUSPECT, "c", 0, "x" * 300], [codec.DEAD, "c", -1, "b"], [codec.SUSPECT, "c", 0, ""]):
        a.receive_datagram(codec.pack_datagram([codec.pack(bad)]), b.address, net.now)
    assert stat(a, "decode_errors") == errors + 3
    assert stat(a, "stale_skipped") == skipped + 3
    assert net.state("a", "c") is DEAD


def test_accusation_at_the_largest_incarnation_does_not_crash() -> None:
    """A refutation cannot go past the largest encodable incarnation: the core must not raise."""
    net = CoreNetwork(insecure=True)
    a, b = net.cluster("a", "b")
    top = codec.MAX_STAMP
    for msg in (Suspect("a", top, "b"), Dead("a", top, "b"), Alive("a", top, a.address, b"m")):
        a.receive_datagram(plain(msg), b.address, net.now)
    member = [codec.encode_member(m) for m in b.members()]
    member.append(["a", top, "10.0.0.1", 7946, b"", "dead", 0])
    init = plain_stream_frame([codec.PP_INIT, False, member, {}])
    a.receive_stream(("in", 5), b.address, init, net.now)
    assert [type(o) for o in a.take_outbox() if not isinstance(o, SendDatagram)] == [SendStream]
    # The two gossiped accusations are refuted in place; the alive and the push-pull state
    # would need a refutation past the largest incarnation, so they are refuted in place too.
    assert stat(a, "incarnation_overflows") == 2
    assert a.membership.local.incarnation == 4
    net.run(5)
    assert a.membership.local.incarnation <= top
    assert _ping_is_acked(a, net.now)


def test_ping_for_another_name_is_not_acked(pair: tuple[CoreNetwork, NodeCore, NodeCore]) -> None:
    net, a, b = pair
    a.take_outbox()
    a.receive_datagram(sealed(Ping(42, "somebody-else", "b", b.address)), b.address, net.now)
    assert stat(a, "pings_misdirected") == 1
    assert a.take_outbox() == []


# ====================================================================== cost


def test_an_idle_member_wakes_only_for_its_probes() -> None:
    net = CoreNetwork()
    cores = net.cluster("a", "b", "c", settle=10)
    assert all(len(c._queue) == 0 for c in cores)
    ticks = dict(net.ticks)
    sent = {c.name: stat(c, "datagrams_sent") for c in cores}
    net.run(60)
    for c in cores:
        n_ticks = net.ticks[c.name] - ticks[c.name]
        # 60 probe periods, 2 push-pulls (30 s), and a spare for the phase.
        assert 58 <= n_ticks <= 64, (c.name, n_ticks)
        rate = (stat(c, "datagrams_sent") - sent[c.name]) / 60
        assert 1.8 <= rate <= 2.2, (c.name, rate)  # its pings and acks to others' pings
        assert stat(c, "gossip_datagrams") <= 3  # the join's broadcasts only
        assert c.membership.awareness.score == 0


def test_an_eager_round_carrying_the_whole_queue_stands_for_the_next_periodic_round() -> None:
    net = CoreNetwork(config=Config.lan(retransmit_mult=10))  # a record outlasts a few rounds
    a, *_ = net.cluster("a", "b", "c", "d", settle=10)
    gossiped = stat(a, "gossip_datagrams")
    a.register(service("svc"), None, net.now)  # one record: an eager round takes all of it
    t0 = net.now
    assert len(a._queue) == 1  # still to be sent more times
    net.run(net.config.gossip_interval - 0.001)
    assert stat(a, "gossip_datagrams") == gossiped  # no periodic round on top of it
    net.run(0.002)
    assert stat(a, "gossip_datagrams") > gossiped  # one gossip interval after it
    assert net.now - t0 >= net.config.gossip_interval


def test_periodic_rounds_keep_their_pace_when_the_news_is_more_than_a_datagram() -> None:
    net = CoreNetwork(config=Config.lan(retransmit_mult=10))
    a, *_ = net.cluster("a", "b", "c", "d", settle=10)
    due = a._gossip_due()  # the next round on a's schedule
    assert due < net.now + net.config.gossip_interval - 0.01  # (premise)
    gossiped = stat(a, "gossip_datagrams")
    many = service("svc", *(f"node-{i:03d}" for i in range(60)))  # 60 records
    a.register(many, None, net.now)
    assert not a._queue.fits(a._budget())
    net.run(due - net.now + 0.001)
    assert stat(a, "gossip_datagrams") > gossiped  # on schedule, not deferred


def test_next_deadline_ignores_the_gossip_timer_when_nothing_is_queued() -> None:
    net = CoreNetwork()
    a, _b = net.cluster("a", "b", settle=10)
    assert len(a._queue) == 0
    deadline = a.next_deadline()
    assert deadline is not None
    assert deadline in (a._next_probe, a._next_push_pull) or a._probe is not None
    a.register(service("svc"), None, net.now)  # queued: now the gossip timer matters
    assert len(a._queue) > 0
    d2 = a.next_deadline()
    assert d2 is not None
    # The next round on the gossip schedule, not an immediate one.
    assert net.now < d2 <= net.now + net.config.gossip_interval + 1e-9


# ====================================================================== statistics


DOCUMENTED_COUNTERS = (
    "datagrams_sent", "datagrams_received", "bytes_sent", "bytes_received",
    "auth_failures", "plaintext_rejected", "sealed_received_while_insecure", "decode_errors",
    "pings_received", "pings_misdirected", "ping_reqs_received", "ping_reqs_sent",
    "probes_sent", "probes_acked", "probes_failed", "nacks_sent", "nacks_received",
    "eager_pushes", "gossip_datagrams", "records_rejected_drift", "records_too_large_for_gossip",
    "stream_messages_sent", "stream_messages_received", "stream_bytes_sent", "stream_bytes_received",
    "push_pulls_started", "push_pulls_answered", "push_pulls_completed", "push_pulls_failed",
    "members_alive", "members_suspect", "members_dead", "members_left", "members_incarnation",
    "members_awareness", "members_suspicions", "members_refutations",
    "catalog_merged", "catalog_expired", "catalog_rejected_drift",
    "broadcast_queue", "broadcast_dropped", "broadcast_invalidated", "tree_datagrams",
    "reconnect_attempts", "eager_pushes", "eager_rounds_deferred", "gossip_datagrams",
)


def test_statistics_has_every_documented_counter_from_the_start() -> None:
    core = NodeCore("a", ("10.0.0.1", 1), config=Config(), rng=random.Random(0), wall_clock=lambda: WALL0,
                    now=0.0, insecure=True)
    stats = core.statistics()
    missing = [k for k in DOCUMENTED_COUNTERS if k not in stats]
    assert not missing
    assert all(isinstance(v, int) for v in stats.values())
    assert stats["members_alive"] == 1
    assert stats["datagrams_sent"] == 0
    doc = NodeCore.statistics.__doc__ or ""
    prefixes = ("members", "catalog", "broadcast")
    undocumented = [k for k in stats if k.split("_")[0] not in prefixes and k not in doc]
    assert not undocumented


def test_every_counter_the_core_increments_is_declared() -> None:
    """A counter that only appears once it is first incremented would surprise monitoring."""
    import ast
    import inspect

    from gossipreg.core import node

    tree = ast.parse(inspect.getsource(node))
    used = {
        c.value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "inc"
        for c in ast.walk(call.args[0])
        if isinstance(c, ast.Constant) and isinstance(c.value, str)
    }
    assert len(used) > 20
    assert used <= set(node._COUNTER_NAMES)


def test_statistics_count_traffic(pair: tuple[CoreNetwork, NodeCore, NodeCore]) -> None:
    net, a, b = pair
    net.run(5)
    sa, sb = a.statistics(), b.statistics()
    assert sa["datagrams_sent"] == sum(1 for d in net.log if d.src == "a")
    assert sa["bytes_sent"] == sum(len(d.data) for d in net.log if d.src == "a")
    in_flight = sum(1 for item in net._heap if item[3][0] == "dgram" and item[3][1] == "b")
    delivered = sum(1 for d in net.log if d.dst == b.address and d.delivered)
    assert sb["datagrams_received"] == delivered - in_flight
    assert sa["probes_sent"] >= 4
    assert sa["members_alive"] == 2
    assert sa["push_pulls_started"] + sb["push_pulls_started"] >= 1


def test_periodic_anti_entropy_stops_at_the_check_when_views_agree() -> None:
    """An idle exchange is two small messages; a difference brings the full push-pull."""
    net = CoreNetwork(config=Config.lan(push_pull_interval=5.0))
    a, b = net.cluster("a", "b", settle=10)
    before = len(net.stream_messages)
    checks = stat(a, "push_pull_checks") + stat(b, "push_pull_checks")
    net.run(12)  # at least one periodic exchange each
    kinds = [kind for _, _, kind in net.stream_messages[before:]]
    assert stat(a, "push_pull_checks") + stat(b, "push_pull_checks") > checks
    assert set(kinds) == {codec.PP_CHECK, codec.PP_CHECK_REPLY}
    assert stat(a, "push_pull_checks_matched") + stat(b, "push_pull_checks_matched") > 0
    # Now a difference gossip never carries: a record put straight into a's catalog.
    rec = Record("hidden", "1.0", "h-1", "z", a.catalog.clock.now(), None, False, Node("h-1", "10.9.9.9:1"))
    a.catalog.merge([rec], net.now)
    assert b.catalog.get(rec.key) is None
    before = len(net.stream_messages)
    net.wait_for(lambda: b.catalog.get(rec.key) == rec, timeout=12)
    kinds = [kind for _, _, kind in net.stream_messages[before:]]
    assert codec.PP_CHECK in kinds
    assert codec.PP_INIT in kinds  # the check found a difference: the full exchange followed


@pytest.mark.parametrize("gossip_nodes", [1, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 5, 40, 130])
def test_broadcast_tree_reaches_every_member_exactly_once(n: int, gossip_nodes: int) -> None:
    """With agreeing views, following the tree from any root visits every member once,
    in at most ceil(log_b n) hops, b = gossip_nodes + 1."""

    from gossipreg.core.membership import Member, MemberState

    config = Config.lan(gossip_nodes=gossip_nodes)
    names = [f"m{i:03d}" for i in range(n)]
    table = [Member(name, Address(f"10.1.{i // 256}.{i % 256}", 7946), 0, MemberState.ALIVE)
             for i, name in enumerate(names)]
    cores = {}
    for m in table:
        core = NodeCore(m.name, m.address, config=config, rng=random.Random(0), wall_clock=lambda: WALL0,
                        now=0.0, insecure=True)
        core.membership.merge_remote(table, 0.0)
        cores[m.name] = core
    for root in (names[0], names[-1], names[n // 2]):
        depth = {root: 0}
        frontier = [root]
        while frontier:
            nxt = []
            for name in frontier:
                for child in cores[name]._tree_children(root):
                    assert child.name not in depth, f"{child.name} reached twice"
                    depth[child.name] = depth[name] + 1
                    nxt.append(child.name)
            frontier = nxt
        assert set(depth) == set(names)
        assert max(depth.values()) <= max(0, math.ceil(math.log(n, gossip_nodes + 1) - 1e-9))


# ---------------------------------------------------------------- broadcast tree repair


def tree_cluster(**changes: object) -> tuple[CoreNetwork, list[NodeCore]]:
    """Eight members with ``gossip_nodes=1``: m0's tree (rank = index) is 0 -> 1, 2, 4;
    1 -> 3, 5; 2 -> 6; 3 -> 7, so m1's subtree is m1, m3, m5, m7."""
    net = CoreNetwork(config=Config.lan(gossip_nodes=1, **changes), insecure=True)
    cores = net.cluster(*[f"m{i}" for i in range(8)])
    net.run(2)
    assert [c.name for c in cores[0]._tree_children("m0")] == ["m1", "m2", "m4"]
    assert [c.name for c in cores[1]._tree_children("m0")] == ["m3", "m5"]
    return net, cores


def messages(data: bytes) -> list[Message]:
    return decode_datagram(data, None)


def tree_marker(data: bytes) -> Tree | None:
    msgs = messages(data)
    return msgs[0] if msgs and isinstance(msgs[0], Tree) else None


def gossip_of_records(data: bytes) -> bool:
    """A datagram carrying a record other than down a tree (eager push, gossip, piggyback)."""
    return tree_marker(data) is None and any(isinstance(m, RecordMsg) for m in messages(data))


SUBTREE = ("m1", "m3", "m5", "m7")


def lose_first_tree_datagram(net: CoreNetwork, *, records_by_tree_only: bool = False) -> list[Tree]:
    """Lose m0's first tree datagram to m1 (its marker is returned in the list once lost);
    with ``records_by_tree_only``, every datagram carrying a record other than down a
    tree is lost too, so that only the tree (and its repair) can deliver one."""
    lost: list[Tree] = []

    def drop(src: str, dst: str, data: bytes) -> bool:
        if records_by_tree_only and gossip_of_records(data):
            return True
        marker = tree_marker(data)
        if (src, dst) == ("m0", "m1") and marker is not None and not lost:
            lost.append(marker)
            return True
        return False

    net.drop = drop
    return lost


def test_a_lost_tree_datagram_is_sent_again_and_its_subtree_gets_the_update_without_gossip() -> None:
    net, cores = tree_cluster()
    # Only the tree carries records; m0's first tree datagram to m1 is lost.
    lost = lose_first_tree_datagram(net, records_by_tree_only=True)
    t0 = net.now
    cores[0].register(service("svc"), None, net.now)
    config = net.config
    done = net.wait_for(lambda: all(has_service(net.cores[n], "svc") for n in SUBTREE), 1.0)
    assert lost
    assert lost[0].seq is not None
    # One ack timeout late, plus the hops down (m1, then m3 and m5, then m7); long before
    # the first gossip round could have helped (and gossip carries no record here).
    assert done - t0 <= config.tree_ack_timeout + 3 * net.latency + 1e-9
    assert done - t0 < config.gossip_interval
    assert stat(cores[0], "tree_resends") == 1
    assert all(has_service(c, "svc") for c in cores)


def test_without_the_repair_a_lost_tree_datagram_leaves_its_subtree_to_gossip() -> None:
    net, cores = tree_cluster(tree_resends=0)
    lost = lose_first_tree_datagram(net, records_by_tree_only=True)
    cores[0].register(service("svc"), None, net.now)
    net.run(net.config.gossip_interval)
    assert lost
    assert not any(has_service(net.cores[n], "svc") for n in SUBTREE)
    assert all(has_service(c, "svc") for c in cores if c.name not in SUBTREE)
    # And no marker asks for an ack.
    assert all(m.seq is None for d in net.log if (m := tree_marker(d.data)) is not None)


def test_a_repeated_tree_datagram_is_acked_again_but_passed_on_once() -> None:
    net, cores = tree_cluster()
    seqs: set[int] = set()
    dropped: list[int] = []

    def drop(src: str, dst: str, data: bytes) -> bool:
        marker = tree_marker(data)
        if (src, dst) == ("m0", "m1") and marker is not None and marker.seq is not None:
            seqs.add(marker.seq)
        if (src, dst) == ("m1", "m0") and not dropped:
            acks = [m.seq for m in messages(data) if isinstance(m, Ack) and m.seq in seqs]
            if acks:
                dropped.extend(acks)  # m1's ack is lost: m0 sends the datagram again
                return True
        return False

    net.drop = drop
    start = len(net.log)
    cores[0].register(service("svc"), None, net.now)
    net.run(0.1)
    assert dropped
    assert stat(cores[0], "tree_resends") == 1
    assert stat(net.cores["m1"], "tree_duplicates") == 1
    # m1 passed the updates on to its children once, not once per copy it received.
    from_m1 = [d for d in net.log[start:] if d.src == "m1" and tree_marker(d.data) is not None]
    assert sorted(net.name_of(d.dst) or "" for d in from_m1) == ["m3", "m5"]
    assert all(has_service(c, "svc") for c in cores)
    assert not cores[0]._tree_sends  # the second ack arrived


def test_without_loss_the_repair_costs_one_ack_per_tree_datagram_and_no_resend() -> None:
    net, cores = tree_cluster()

    def total(name: str) -> int:
        return sum(stat(c, f"tree_{name}") for c in cores)

    before = {name: total(name) for name in ("resends", "duplicates", "acks_received")}
    start = len(net.log)
    cores[0].register(service("svc"), None, net.now)
    net.run(0.1)
    window = net.log[start:]
    tree = [d for d in window if tree_marker(d.data) is not None]
    # (sender, child, seq) of each tree datagram; an ack goes back from child to sender.
    sent = {(d.src, net.name_of(d.dst), m.seq) for d in tree if (m := tree_marker(d.data)) is not None}
    acks = [
        d for d in window
        if any(isinstance(m, Ack) and (net.name_of(d.dst), d.src, m.seq) in sent for m in messages(d.data))
    ]
    assert len(tree) == len(acks) == len(cores) - 1  # every member once, each acked once
    assert total("resends") == before["resends"]
    assert total("duplicates") == before["duplicates"]
    assert total("acks_received") - before["acks_received"] == len(cores) - 1
    assert all(not c._tree_sends for c in cores)


def test_tree_resends_are_bounded_and_back_off_when_a_child_never_answers() -> None:
    # m1 is down (its peers do not know yet): m0 sends its tree datagram to m1 once and
    # again, first one ack timeout apart, then each wait twice the last (up to a probe
    # interval), until tree_resends copies went unanswered or m1 is declared dead;
    # nothing else repeats.
    net, cores = tree_cluster()
    config = net.config
    net.down.add("m1")
    resends = sum(stat(c, "tree_resends") for c in cores)
    unacked = stat(cores[0], "tree_unacked")
    start = len(net.log)
    cores[0].register(service("svc"), None, net.now)
    wait, expected = config.tree_ack_timeout, [config.tree_ack_timeout]
    for resend in range(1, config.tree_resends):
        wait = next_wait(wait, resend, config.probe_interval)
        expected.append(wait)
    net.run(sum(expected) + 1.0)
    window = net.log[start:]
    to_m1 = [d for d in window if net.name_of(d.dst) == "m1" and tree_marker(d.data) is not None]
    gaps = [b.at - a.at for a, b in itertools.pairwise(to_m1)]
    assert expected[:5] == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.02])
    assert 8 <= len(gaps) <= config.tree_resends  # backed off to the cap, or m1 declared dead
    assert gaps == pytest.approx(expected[: len(gaps)], abs=1e-6)
    assert stat(cores[0], "tree_unacked") == unacked + 1
    assert not cores[0]._tree_sends
    # The other members' tree datagrams were acked at once: no other re-send at all.
    assert sum(stat(c, "tree_resends") for c in cores) - resends == len(gaps)
    net.run(1.0)
    later = [d for d in net.log[start + len(window):] if tree_marker(d.data) is not None]
    assert later == []


def test_a_slow_child_gets_a_handful_of_copies_once_then_each_datagram_once() -> None:
    # Every datagram now takes 60 ms each way (a loaded host): an ack comes back 120 ms
    # after its datagram, twelve ack timeouts, where a fixed timeout sent 11 copies of
    # every tree datagram. Here the first datagram to each child is sent at 0, 10, 20,
    # 30, 40, 60 and 100 ms (the waits double after three re-sends) before the first
    # copy's ack arrives; that ack names its copy, so the child's round trip is known
    # from then on and every later datagram is sent once.
    net, cores = tree_cluster()
    net.latency = 0.06
    edges = len(cores) - 1  # one tree edge per member but the root

    def resends() -> int:
        return sum(stat(c, "tree_resends") for c in cores)

    per_registration = []
    for i in range(3):
        before = resends()
        cores[0].register(service(f"svc{i}"), None, net.now)
        net.run(2.0)
        assert all(has_service(c, f"svc{i}") for c in cores)
        per_registration.append(resends() - before)
    assert per_registration == [6 * edges, 0, 0]
    assert all(not c._tree_sends for c in cores)
    # A member joining now is a child no one has measured: its parents start from the
    # round trip they measured to their other children, not from the ack timeout.
    newcomer = net.add("m8")
    newcomer.join([cores[0].address], net.now)
    net.run(3.0)
    assert all(net.state(c.name, "m8") is MemberState.ALIVE for c in cores)
    before = resends()
    cores[0].register(service("after-join"), None, net.now)
    net.run(2.0)
    assert has_service(newcomer, "after-join")
    assert resends() == before


def test_each_copy_of_a_tree_datagram_names_itself_and_its_ack_gives_the_round_trip() -> None:
    # The ack of a re-sent datagram answers a known copy, so m0 learns m1's round trip
    # from it: 30 ms each way, m0's first copy to m1 lost, copies at 0, 10, 20, 30, 40
    # and 60 ms; the ack of copy 1 (sent at 10 ms) arrives at 70 ms: a 60 ms round trip.
    net, cores = tree_cluster()
    net.latency = 0.03
    lost = lose_first_tree_datagram(net)
    start = len(net.log)
    cores[0].register(service("svc"), None, net.now)
    net.run(0.5)
    copies = [
        m.seq for d in net.log[start:]
        if d.src == "m0" and net.name_of(d.dst) == "m1" and (m := tree_marker(d.data)) is not None
    ]
    first = lost[0].seq
    assert first is not None
    assert copies == [first + i for i in range(6)]  # the lost datagram's copies 0 to 5
    assert stat(net.cores["m1"], "tree_duplicates") == 4  # copies 2 to 5 repeat copy 1
    assert cores[0]._tree_rtts.timeout("m1") == pytest.approx(0.06 + 4 * 0.03)


def test_a_tree_marker_with_a_seq_round_trips_and_is_decoded_strictly() -> None:
    for marker in (Tree("m0", 1), Tree("m0", 2, 7), Tree("m0", 3, 2**64 - 1)):
        assert codec.decode_message(msgpack_unpack(codec.encode_message(marker))) == marker
    for bad in ([codec.TREE, "m0", 1, -1], [codec.TREE, "m0", 1, 2**64], [codec.TREE, "m0", 1, "7"],
                [codec.TREE, "m0", 1, 7, 8], [codec.TREE, "m0"]):
        with pytest.raises(DecodeError):
            codec.decode_message(bad)


def msgpack_unpack(data: bytes) -> object:
    return msgpack.unpackb(data)


# ---------------------------------------------------------------- reconnect


def _core_with_dead_peers(peers: int, dead: int, seed: int) -> tuple[NodeCore, set[Address]]:
    """A core holding ``peers`` members ALIVE, then told that the first ``dead`` of them are dead."""
    from gossipreg.core.membership import Member, TableSnapshot

    core = NodeCore("me", ("10.0.0.1", 7946), config=Config.lan(death_grace=0.0), rng=random.Random(seed),
                    wall_clock=lambda: WALL0, now=0.0, insecure=True)  # fmt: skip
    table = [Member(f"p{i:03d}", Address(f"10.0.1.{i}", 7946), 0, ALIVE, b"", 0.0) for i in range(peers)]
    core.adopt(TableSnapshot(table), 0.0)
    for m in table[:dead]:
        core.receive_datagram(plain(Dead(m.name, 0, "p999")), table[-1].address, 0.1)
        got = core.membership.get(m.name)
        assert got is not None
        assert got.state is DEAD
    core.take_outbox()
    return core, {m.address for m in table[:dead]}


def _reconnect_attempts(core: NodeCore, rounds: int) -> list[SendStream]:
    sent: list[SendStream] = []
    for k in range(rounds):
        core._reconnect(1.0 + k)
        sent.extend(o for o in core.take_outbox() if isinstance(o, SendStream))
    return sent


def test_reconnect_is_tried_with_probability_failed_over_alive() -> None:
    # Serf's rule: with 1 failed member among 100 alive (this one included), a member tries
    # about once per 100 intervals, so the cluster makes about one attempt per interval in
    # all instead of one per member.
    core, dead = _core_with_dead_peers(100, 1, seed=3)
    sent = _reconnect_attempts(core, 2000)
    assert 5 <= len(sent) <= 60  # expected 2000 / 100 = 20
    assert stat(core, "reconnect_attempts") == len(sent)
    for out in sent:
        assert out.address in dead
        # An attempt starts with the cheap anti-entropy check, not the whole member list.
        assert read_stream([out.data])[0][0] == codec.PP_CHECK


def test_reconnect_tries_every_interval_when_as_many_are_failed_as_alive() -> None:
    core, dead = _core_with_dead_peers(2, 2, seed=4)  # alive: this one; failed: p000, p001
    sent = _reconnect_attempts(core, 40)
    assert len(sent) == 40
    assert {out.address for out in sent} == dead  # a random one of them each time


def test_the_first_reconnect_attempt_comes_within_one_reconnect_interval() -> None:
    # Started at a random point of the first interval (members started together do not
    # try in step), never later than the interval itself.
    interval = Config.lan().reconnect_interval
    for seed in range(10):
        core, _dead = _core_with_dead_peers(2, 2, seed=seed)  # every due attempt is made
        first = core._next_reconnect
        assert 0.5 * interval <= first <= interval
        core.tick(first)
        assert stat(core, "reconnect_attempts") == 1


def test_early_checks_are_at_least_a_probe_interval_after_the_last_check() -> None:
    net = CoreNetwork(config=Config.lan(push_pull_interval=5.0))
    a, _b = net.cluster("a", "b", settle=1)
    checks = stat(a, "push_pull_checks")
    net.wait_for(lambda: stat(a, "push_pull_checks") > checks, timeout=20)
    began = net.now
    for k in range(10):  # failures just after the check began bring the next one forward...
        a._now = began + 0.01 * k
        a._check_soon()
        # ...but not to within a probe interval of it
        assert a._next_push_pull >= began + a.config.probe_interval - 1e-9


def test_a_datagram_from_a_suspect_holds_its_suspicion_for_the_death_grace() -> None:
    net = CoreNetwork()  # the LAN profile's death_grace: 1 s
    a, c = net.cluster("a", "c")
    grace = a.config.death_grace
    assert grace == 1.0
    net.isolate("c")
    net.wait_for(lambda: net.state("a", "c") is SUSPECT, timeout=10)
    expires = a.membership.next_deadline()  # the suspicion's timeout
    assert expires is not None
    net.run(expires - net.now - 0.2)
    assert net.state("a", "c") is SUSPECT
    heard = net.now
    a.receive_datagram(sealed(Ping(999, "a", "c", c.address)), c.address, heard)  # c still speaks
    net.run(expires - net.now + 0.1)
    assert net.state("a", "c") is SUSPECT  # past its timeout: held
    net.wait_for(lambda: net.state("a", "c") is DEAD, timeout=5)
    assert net.now >= heard + grace - 1e-6


def _send_tree_outbox(updates: list[bytes], **changes: object) -> tuple[NodeCore, list[list[object]]]:
    """A root with one child sends ``updates`` down its tree: the datagrams' raw messages."""
    net = CoreNetwork(insecure=True, config=Config.lan(**changes))
    a, _b = net.cluster("a", "b")
    a.take_outbox()
    a._send_tree(a.name, 0, updates)
    sent = [o for o in a.take_outbox() if isinstance(o, SendDatagram)]
    return a, [codec.unpack_datagram(o.data) for o in sent]


def test_a_tree_batch_fills_the_whole_budget_of_a_datagram() -> None:
    probe = codec.encode_message(RecordMsg(Record("s", "1.0", "n", "a", 1, None, False, Node("n", "h:1"))))
    for resends in (0, 16):
        core, _ = _send_tree_outbox([], tree_resends=resends)
        marker = codec.encode_message(Tree("a", 1))
        budget = core._budget() - len(marker) - (9 if resends else 0)
        # Updates summing to the budget exactly: one datagram; one byte more: two.
        n = budget // len(probe)
        pad = budget - n * len(probe)
        filler = b"\xc0" if pad == 1 else b"\xc4" + bytes([pad - 2]) + bytes(pad - 2)  # msgpack of pad bytes
        updates = [probe] * n + ([filler] if pad else [])
        assert sum(map(len, updates)) == budget
        _, datagrams = _send_tree_outbox(updates, tree_resends=resends)
        assert len(datagrams) == 1
        _, datagrams = _send_tree_outbox([*updates, b"\xc0"], tree_resends=resends)
        assert len(datagrams) == 2


def test_every_tree_datagram_starts_with_its_marker_however_many_updates() -> None:
    updates = [b"\xc0"] * 1500  # tiny updates: the message count binds before the bytes do
    _, datagrams = _send_tree_outbox(updates, max_packet_size=8192)
    assert len(datagrams) == 2
    for d in datagrams:
        assert len(d) <= codec.MAX_MESSAGES
        marker = codec.decode_message(d[0])
        assert isinstance(marker, Tree)
        assert (marker.root, marker.hops) == ("a", 1)
    assert sum(len(d) - 1 for d in datagrams) == len(updates)


def test_the_root_marks_its_tree_datagrams_as_the_first_hop() -> None:
    for resends in (0, 16):
        _, datagrams = _send_tree_outbox([b"\xc0"], tree_resends=resends)
        (d,) = datagrams
        marker = codec.decode_message(d[0])
        assert isinstance(marker, Tree)
        assert (marker.root, marker.hops) == ("a", 1)
        assert (marker.seq is None) == (resends == 0)


def test_the_first_anti_entropy_check_comes_within_one_push_pull_interval() -> None:
    interval = Config.lan().push_pull_interval
    for seed in range(10):
        core, _ = _core_with_dead_peers(3, 0, seed=seed)
        first = core._next_push_pull
        assert 0.5 * interval <= first <= interval
        core.tick(first)
        sent = [o for o in core.take_outbox() if isinstance(o, SendStream)]
        assert [read_stream([o.data])[0][0] for o in sent] == [codec.PP_CHECK]


def test_a_failure_brings_the_next_check_forward_to_within_a_probe_interval() -> None:
    net = CoreNetwork()  # push-pull every 30 s
    a, _b, _c = net.cluster("a", "b", "c", settle=5)
    assert a._next_push_pull > net.now + 5  # (premise: no check due soon anyway)
    net.isolate("c")
    net.wait_for(lambda: net.state("a", "c") is DEAD, timeout=30)
    declared, checks = net.now, stat(a, "push_pull_checks")
    net.wait_for(lambda: stat(a, "push_pull_checks") > checks, timeout=30)
    assert net.now - declared <= a.config.probe_interval + 1e-6


def test_only_a_member_held_dead_is_re_merged_when_it_speaks() -> None:
    net = CoreNetwork()
    a, _b, _c, _d = net.cluster("a", "b", "c", "d", settle=5)
    net.isolate("d")
    net.wait_for(lambda: net.state("a", "d") is DEAD, timeout=30)
    net.run(2.0)
    remerges = stat(a, "remerges_started")
    net.run(10.0)  # b and c speak to a all along; d, held dead, does not
    assert stat(a, "remerges_started") == remerges


def test_a_leave_goes_at_once_to_gossip_nodes_members_besides_its_tree() -> None:
    net = CoreNetwork()
    cores = net.cluster("a", "b", "c", "d", "e", "f", settle=5)
    a = cores[0]
    a.take_outbox()
    a.leave(net.now)
    sent = [
        (o, decode_datagram(o.data, a.keyring)) for o in a.take_outbox() if isinstance(o, SendDatagram)
    ]
    direct = [
        o for o, msgs in sent if not isinstance(msgs[0], Tree) and any(isinstance(m, Leave) for m in msgs)
    ]
    assert len(direct) == max(a.config.gossip_nodes, 3)
    assert len({o.address for o in direct}) == len(direct)


def test_a_leave_goes_down_the_members_own_broadcast_tree() -> None:
    """Besides the few direct datagrams, a leave goes down the leaving member's tree
    (as its registrations do): every member hears it within a few hops, before the
    member stops sending."""
    net = CoreNetwork()
    cores = net.cluster(*"abcdefghij", settle=5)
    a = cores[0]
    a.take_outbox()
    a.leave(net.now)
    tree = [
        msgs for o in a.take_outbox() if isinstance(o, SendDatagram)
        for msgs in [decode_datagram(o.data, a.keyring)] if isinstance(msgs[0], Tree)
    ]
    assert tree, "no tree datagram carried the leave"
    assert all(any(isinstance(m, Leave) and m.name == "a" for m in msgs[1:]) for msgs in tree)
    assert all(isinstance(msgs[0], Tree) and msgs[0].root == "a" for msgs in tree)
    assert len(tree) == len(a._tree_children("a"))  # one to each of its children


def test_bytes_received_counts_every_datagram_received() -> None:
    net = CoreNetwork()
    a, _b, _c = net.cluster("a", "b", "c", settle=1)
    before, start = stat(a, "bytes_received"), len(net.log)
    net.run(5.0)
    delivered = sum(len(d.data) for d in net.log[start:] if d.delivered and d.dst == a.address)
    assert delivered > 0
    in_flight = sum(  # sent just before the end, not yet arrived
        len(d.data) for d in net.log[start:]
        if d.delivered and d.dst == a.address and d.at > net.now - net.latency
    )
    assert stat(a, "bytes_received") - before == delivered - in_flight


def test_a_ping_req_from_a_suspect_defers_a_death_declared_elsewhere() -> None:
    # Heard from directly: a death another member declares within death_grace of that is
    # taken as a suspicion first, however long this member has suspected it.
    net = CoreNetwork()
    a, b, c = net.cluster("a", "b", "c", settle=3)
    net.isolate("b")
    net.wait_for(lambda: net.state("a", "b") is SUSPECT, timeout=20)
    net.run(a.config.death_grace + 0.5)  # suspected for longer than the grace
    assert net.state("a", "b") is SUSPECT
    incarnation = a.membership.get("b").incarnation  # type: ignore[union-attr]
    req = PingReq(77, "c", c.address, "b", b.address, True)
    a.receive_datagram(sealed(req), b.address, net.now)  # b asks a to probe c: b speaks
    a.receive_datagram(sealed(Dead("b", incarnation, "c")), c.address, net.now)
    assert net.state("a", "b") is SUSPECT  # deferred, not believed at once


def test_no_datagram_is_larger_than_max_packet_size() -> None:
    net = CoreNetwork(config=Config.lan(max_packet_size=600))
    a, _b, _c = net.cluster("a", "b", "c", settle=1)
    start = len(net.log)
    for i in range(40):  # far more news than fits one datagram
        a.register(service(f"svc-{i:02d}", f"node-{i:02d}-a", f"node-{i:02d}-b"), None, net.now)
    net.run(3.0)
    sizes = [len(d.data) for d in net.log[start:]]
    assert max(sizes) <= 600
    assert max(sizes) > 500  # (premise: datagrams were filled near the limit)


def test_a_record_that_fills_a_datagram_exactly_is_gossiped_one_byte_more_is_not() -> None:
    net = CoreNetwork()
    a, _b = net.cluster("a", "b", settle=1)
    budget = a._budget()

    def sized(pad: int, name: str) -> Service:
        return Service(name, "1.0", nodes=[Node(f"{name}-1", "10.9.0.1:80", metadata={"pad": "x" * pad})])

    sizes = iter("vwxyz")  # probe members named as short as "a", the records' owner

    def encoded_size(svc: Service) -> int:
        (rec,) = net.add(next(sizes)).register(svc, None, net.now)
        return len(codec.encode_message(RecordMsg(rec)))

    pad = budget - (encoded_size(sized(300, "fits")) - 300)  # (a byte per character at that length)
    assert encoded_size(sized(pad, "fits")) == budget
    (fits,) = a.register(sized(pad, "fits"), None, net.now)
    assert ("r", *fits.key) in a._queue
    assert stat(a, "records_too_large_for_gossip") == 0
    assert encoded_size(sized(pad + 1, "over")) == budget + 1
    (over,) = a.register(sized(pad + 1, "over"), None, net.now)
    assert ("r", *over.key) not in a._queue
    assert stat(a, "records_too_large_for_gossip") == 1
