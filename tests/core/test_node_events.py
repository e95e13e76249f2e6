"""Unit tests of the node core's (gossipreg.core.node) housekeeping around its own sends.

What a receiver of the broadcast tree remembers of the tree datagrams it acked (and for
how long, and how many), how the tree repair re-sends and gives up, the hop count of a
member's own tree datagrams, the eager-push rate limits (per destination and the token
bucket), what the membership events do to the node's own bookkeeping, when an early
anti-entropy check follows a failure, and how a member with an identity signs its own
statements. Every test drives real :class:`NodeCore` instances by hand or on the test
kit's :class:`~gossipreg.testing.CoreNetwork`, on a fake clock.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from gossipreg import pki
from gossipreg.core import codec
from gossipreg.core.codec import Message, Tree
from gossipreg.core.config import Config
from gossipreg.core.crypto import Keyring
from gossipreg.core.identity import Identity, TrustStore
from gossipreg.core.membership import Address, Alive, Dead, Leave, Member, MemberState, Suspect, TableSnapshot
from gossipreg.core.node import JoinResult, NodeCore, SendDatagram, SendStream, _Resync
from gossipreg.core.tree import resend_span
from gossipreg.testing import WALL0, CoreNetwork, decode_datagram

from .node_helpers import KEY, plain, read_stream, service, stat

ALIVE, SUSPECT, DEAD = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD
ELSEWHERE = Address("10.0.0.9", 1)
#: The first copy of a tree datagram asking for an ack (the flag bit, counter 1, copy 0).
TREE_SEQ = (1 << 62) | (1 << 7)


def lone(config: Config | None = None, *, now: float = 0.0) -> NodeCore:
    """A plaintext member ``a`` outside any network: its inputs are fed by hand."""
    return NodeCore("a", ("10.0.0.1", 1), config=config or Config(), rng=random.Random(1),
                    wall_clock=lambda: WALL0, now=now, insecure=True)


def sent(core: NodeCore) -> list[tuple[Address, list[Message]]]:
    """The datagrams in ``core``'s outbox (taken), each with its messages."""
    return [
        (o.address, decode_datagram(o.data, core.keyring))
        for o in core.take_outbox()
        if isinstance(o, SendDatagram)
    ]


def tree_cluster(**config: Any) -> tuple[CoreNetwork, list[NodeCore]]:
    """Eight plaintext members with ``gossip_nodes=1``: in m0's tree, m0 sends to m1, m2 and m4."""
    net = CoreNetwork(config=Config.lan(gossip_nodes=1, **config), insecure=True)
    cores = net.cluster(*[f"m{i}" for i in range(8)])
    net.run(2)
    assert [c.name for c in cores[0]._tree_children("m0")] == ["m1", "m2", "m4"]
    return net, cores


# ====================================================================== the broadcast tree


def test_a_tree_datagram_is_a_duplicate_until_its_last_copy_could_have_come() -> None:
    """A receiver remembers a tree datagram it acked for the span of its copies' re-sends,
    up to and excluding its end: a copy then is news again, passed on, not a duplicate."""
    config = Config()
    a = lone(config)
    span = resend_span(config.tree_ack_timeout, config.tree_resends, config.probe_interval)
    a.receive_datagram(plain(Tree("m0", 1, TREE_SEQ)), ELSEWHERE, 0.0)
    assert stat(a, "tree_duplicates") == 0
    a.receive_datagram(plain(Tree("m0", 1, TREE_SEQ | 3)), ELSEWHERE, span / 2)  # its copy 3
    assert stat(a, "tree_duplicates") == 1
    a.receive_datagram(plain(Tree("m0", 1, TREE_SEQ | 4)), ELSEWHERE, span)
    assert stat(a, "tree_duplicates") == 1
    # ... and it is remembered afresh from then on.
    a.receive_datagram(plain(Tree("m0", 1, TREE_SEQ | 5)), ELSEWHERE, span)
    assert stat(a, "tree_duplicates") == 2
    acks = [m for _, msgs in sent(a) for m in msgs if isinstance(m, codec.Ack)]
    assert [m.seq for m in acks] == [TREE_SEQ, TREE_SEQ | 3, TREE_SEQ | 4, TREE_SEQ | 5]


def test_a_receiver_remembers_at_most_16384_tree_datagrams_the_oldest_forgotten_first() -> None:
    a = lone()
    limit = 16384
    for i in range(limit + 1):
        a.receive_datagram(plain(Tree("m0", 1, TREE_SEQ + (i << 7))), ELSEWHERE, 0.0)
        if i % 1024 == 0:
            a.take_outbox()
    assert stat(a, "tree_duplicates") == 0
    # Room for the next one is made first: of the 16385 seen, only the newest 16383 are
    # still remembered then, so the second one seen is news again ...
    a.receive_datagram(plain(Tree("m0", 1, TREE_SEQ + (1 << 7) + 1)), ELSEWHERE, 0.0)
    assert stat(a, "tree_duplicates") == 0
    # ... and the newest is a duplicate.
    a.receive_datagram(plain(Tree("m0", 1, TREE_SEQ + (limit << 7) + 1)), ELSEWHERE, 0.0)
    assert stat(a, "tree_duplicates") == 1


def drive_alone(core: NodeCore, until: float) -> None:
    """Tick ``core`` at each of its deadlines up to ``until``, delivering nothing it sends."""
    now = core._now
    while True:
        due = core.next_deadline()
        if due is None or due > until:
            break
        now = max(now, due)
        core.tick(now)
        core.take_outbox()


def test_an_unacked_tree_datagram_is_sent_again_exactly_tree_resends_times() -> None:
    net, cores = tree_cluster(tree_resends=2)
    m0 = cores[0]
    m0.take_outbox()
    resends, unacked = stat(m0, "tree_resends"), stat(m0, "tree_unacked")
    m0.register(service("svc"), None, net.now)
    assert len(m0._tree_sends) == 3  # (premise) one to each child, none delivered
    drive_alone(m0, net.now + 1.0)
    assert stat(m0, "tree_resends") - resends == 2 * 3
    assert stat(m0, "tree_unacked") - unacked == 3
    assert not m0._tree_sends


def test_a_tree_datagram_to_a_child_gone_is_given_up_and_the_others_are_still_sent_again() -> None:
    net, cores = tree_cluster()
    m0, m1 = cores[0], cores[1]
    m0.take_outbox()
    m0.register(service("svc"), None, net.now)
    first = next(iter(m0._tree_sends.values()))
    assert first.child == "m1"  # (premise) the first one waiting is m1's
    m0.receive_datagram(plain(Leave("m1", net.member("m0", "m1").incarnation)), m1.address, net.now)
    assert net.state("m0", "m1") is MemberState.LEFT
    resends, unacked = stat(m0, "tree_resends"), stat(m0, "tree_unacked")
    due = max(t.due for t in m0._tree_sends.values())
    m0.take_outbox()
    m0.tick(due)
    assert stat(m0, "tree_unacked") - unacked == 1
    assert stat(m0, "tree_resends") - resends == 2
    resent = {net.name_of(to) for to, msgs in sent(m0) if msgs and isinstance(msgs[0], Tree)}
    assert resent == {"m2", "m4"}


def test_a_members_own_tree_datagram_says_it_has_travelled_one_hop() -> None:
    net, cores = tree_cluster()
    m0 = cores[0]
    m0.take_outbox()
    m0.register(service("svc"), None, net.now)
    markers = {net.name_of(to): msgs[0] for to, msgs in sent(m0) if msgs and isinstance(msgs[0], Tree)}
    assert set(markers) == {"m1", "m2", "m4"}
    assert all(isinstance(m, Tree) and (m.root, m.hops) == ("m0", 1) for m in markers.values())


# ====================================================================== eager pushes


def core_with_peers(peers: int, config: Config) -> tuple[NodeCore, list[Member]]:
    core = NodeCore("me", ("10.0.0.1", 7946), config=config, rng=random.Random(3),
                    wall_clock=lambda: WALL0, now=0.0, insecure=True)  # fmt: skip
    table = [Member(f"p{i:03d}", Address(f"10.0.1.{i}", 7946), 0, ALIVE, b"", 0.0) for i in range(peers)]
    core.adopt(TableSnapshot(table), 0.0)
    core.take_outbox()
    return core, table


def test_no_member_gets_two_eager_pushes_within_the_eager_gap_while_many_members_die() -> None:
    """Once the node has pushed to more members than four times those alive, it forgets
    the old pushes, never those within ``1 / eager_push_rate``."""
    config = Config(death_grace=0.0, gossip_nodes=200, eager_round_rate=1000.0)
    core, table = core_with_peers(80, config)
    for m in table[:70]:
        core.receive_datagram(plain(Dead(m.name, 0, "p079")), table[-1].address, 0.0)
    pushed = Counter(to for to, _ in sent(core))
    assert len(pushed) > 64  # (premise) more pushed to than 4 * 16
    assert core.membership.alive_count() <= 16  # (premise)
    assert max(pushed.values()) == 1


def test_an_eager_round_may_spend_the_buckets_last_whole_token() -> None:
    core, table = core_with_peers(4, Config(eager_round_rate=1.0))
    core.receive_datagram(plain(Dead("p000", 0, "p003")), table[-1].address, 0.0)
    assert stat(core, "eager_rounds_deferred") == 0
    assert stat(core, "eager_pushes") >= 1
    pushes = stat(core, "eager_pushes")
    core.receive_datagram(plain(Dead("p001", 0, "p003")), table[-1].address, 0.0)
    assert stat(core, "eager_rounds_deferred") == 1
    assert stat(core, "eager_pushes") == pushes


# ====================================================================== membership events


def test_a_member_that_fails_loses_its_round_trip_times() -> None:
    """Its tree acks and probe acks timed it slow; once dead, a member that comes back
    under that name is timed like a member not measured yet (from all members' times)."""
    core, table = core_with_peers(3, Config(death_grace=0.0))
    p0, p1 = table[0], table[1]
    slow = {p0.name: 0.25}
    core.register(service("svc"), None, 0.0)
    for seq, t in list(core._tree_sends.items()):
        at = slow.get(t.child, 0.001)
        core.receive_datagram(plain(codec.Ack(seq, t.child)), Address("10.0.1.9", 1), at)
    now, probed = 0.25, list[str]()
    while len(probed) < 6:
        due = core.next_deadline()
        assert due is not None
        now = max(now, due)
        core.tick(now)
        p = core._probe
        if p is not None and len(p.sent_at) == 1 and p.started == now:
            [ping_seq] = p.sent_at
            now += slow.get(p.target, 0.001)
            core.receive_datagram(plain(codec.Ack(ping_seq, p.target)), Address("10.0.1.9", 1), now)
            probed.append(p.target)
    assert p0.name in probed
    unmeasured = core._tree_rtts.timeout("nobody"), core._probe_rtts.timeout("nobody")
    # (premise) its own times differ from all members' ones
    assert core._tree_rtts.timeout(p0.name) != unmeasured[0]
    assert core._probe_rtts.timeout(p0.name) != unmeasured[1]
    core.receive_datagram(plain(Dead(p0.name, 0, p1.name)), p1.address, now)
    assert core.membership.get(p0.name).state is DEAD  # type: ignore[union-attr]
    assert core._tree_rtts.timeout(p0.name) == unmeasured[0]
    assert core._probe_rtts.timeout(p0.name) == unmeasured[1]


def test_a_member_that_fails_while_in_resync_is_no_longer_pushed_pulled_nor_shown() -> None:
    net = CoreNetwork(config=Config(death_grace=0.0), insecure=True)
    a, b, c = net.cluster("a", "b", "c")
    now = net.now
    a._resync["c"] = _Resync(c.address, now + 1.0, now + 5.0, a._stream_seq)
    a._resync_due = now + 1.0
    a.receive_datagram(plain(Dead("c", net.member("a", "c").incarnation, "b")), b.address, now)
    assert net.state("a", "c") is DEAD
    tried, abandoned = stat(a, "owner_resyncs"), stat(a, "owner_resyncs_abandoned")
    for t in (now + 1.0, now + 2.0, now + 5.0, now + 6.0):
        a.tick(t)
    assert not [o for o in a.take_outbox() if isinstance(o, SendStream) and o.address == c.address]
    assert (stat(a, "owner_resyncs"), stat(a, "owner_resyncs_abandoned")) == (tried, abandoned)


def test_a_member_held_dead_that_then_left_is_no_longer_re_merged_with() -> None:
    core, table = core_with_peers(3, Config(death_grace=0.0))
    p0, p1 = table[0], table[1]
    core.receive_datagram(plain(Dead(p0.name, 0, p1.name)), p1.address, 1.0)
    core.receive_datagram(plain(Leave(p0.name, 0)), p1.address, 1.0)
    assert core.membership.get(p0.name).state is MemberState.LEFT  # type: ignore[union-attr]
    remerges = stat(core, "remerges_started")
    core.receive_datagram(plain(codec.Ping(1, "me", p0.name, p0.address)), p0.address, 2.0)
    assert stat(core, "remerges_started") == remerges


def first_stream_after(core: NodeCore, now: float, until: float) -> tuple[float, SendStream] | None:
    """Tick ``core`` at its deadlines from ``now``; when and what it first sends on a stream."""
    while True:
        due = core.next_deadline()
        if due is None or due > until:
            return None
        now = max(now, due)
        core.tick(now)
        streams = [o for o in core.take_outbox() if isinstance(o, SendStream)]
        if streams:
            return now, streams[0]


def test_a_failure_brings_the_next_anti_entropy_check_within_a_probe_interval() -> None:
    config = Config(death_grace=0.0)
    core, table = core_with_peers(4, config)
    core.take_outbox()
    failed_at = 5.0
    core.receive_datagram(plain(Dead(table[0].name, 0, table[1].name)), table[1].address, failed_at)
    core.take_outbox()
    first = first_stream_after(core, failed_at, failed_at + config.push_pull_interval)
    assert first is not None
    at, _ = first
    assert failed_at + 0.5 * config.probe_interval <= at < failed_at + config.probe_interval


def test_a_member_remembers_at_most_4096_members_held_dead_the_longest_dead_forgotten_first() -> None:
    """Only a remembered member held dead is re-merged with when it speaks."""
    core, table = core_with_peers(4098, Config(death_grace=0.0, eager_push=False))
    witness = table[-1]
    for m in table[:4097]:
        core.receive_datagram(plain(Dead(m.name, 0, witness.name)), witness.address, 1.0)
    core.take_outbox()
    remerges = stat(core, "remerges_started")
    core.receive_datagram(plain(codec.Ping(1, "me", table[0].name, table[0].address)), table[0].address, 2.0)
    assert stat(core, "remerges_started") == remerges  # the longest dead: forgotten
    core.receive_datagram(plain(codec.Ping(2, "me", table[1].name, table[1].address)), table[1].address, 2.0)
    assert stat(core, "remerges_started") == remerges + 1


def test_an_anti_entropy_check_that_fails_is_not_reported_as_a_join() -> None:
    core, _ = core_with_peers(2, Config())
    first = first_stream_after(core, 0.0, 100.0)
    assert first is not None
    at, out = first
    assert read_stream([out.data], ring=None, label=b"")[0][0] == codec.PP_CHECK  # (premise)
    core.take_events()
    core.stream_failed(out.stream, at + 0.1)
    assert not [e for e in core.take_events() if isinstance(e, JoinResult)]
    assert stat(core, "push_pulls_failed") == 1


# ====================================================================== member identities

CA, CA_KEY = pki.create_ca("gossipreg test CA")


def identity_cluster(*names: str) -> tuple[CoreNetwork, list[NodeCore]]:
    """Members with identities (certificates of one CA), joined through the first."""
    net = CoreNetwork(wall0=time.time())
    cores = []
    for n in names:
        cert, key = pki.create_member_cert(CA, CA_KEY, n)
        cores.append(net.add(n, identity=Identity(cert, key, name=n), trust=TrustStore(CA)))
    for core in cores[1:]:
        core.join([cores[0].address], net.now)
    net.run(3)
    return net, cores


def test_a_member_with_an_identity_signs_its_refutation_anew() -> None:
    """Its alive signed earlier (for the join) is not what it sends once its alive changed:
    the refutation of a suspicion goes out at its new incarnation, and is believed."""
    net, (a, _b, c) = identity_cluster("a", "b", "c")
    inc = net.member("b", "a").incarnation
    assert a._signed_alive(a.membership.local_alive()).incarnation == inc  # (premise) signed, held
    since = net.now
    net.deliver_now("a", Keyring(KEY).seal(plain(Suspect("a", inc, "c")), b""), c.address)
    assert a.membership.local_alive().incarnation == inc + 1
    net.run(0.5)
    sent_alives = [
        m for d in net.sent_by("a", since) for m in net.messages(d) if isinstance(m, Alive) and m.name == "a"
    ]
    assert sent_alives
    assert {m.incarnation for m in sent_alives} == {inc + 1}
    for observer in ("b", "c"):
        assert (net.state(observer, "a"), net.member(observer, "a").incarnation) == (ALIVE, inc + 1)
        assert stat(net.cores[observer], "identity_bad_signature") == 0
