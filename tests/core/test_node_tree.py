"""Unit tests of the node core's dissemination: the broadcast tree, datagram budgets,
eager and periodic gossip rounds, and the end of a probe.

Covers what a member sends down a broadcast tree and what it passes on (hop
bound, unknown roots, empty datagrams), how it splits updates into tree
datagrams, how tree datagrams are numbered, re-sent and given up; how much a
datagram carries (``max_packet_size``, sealed or not, a protocol message
topped up with queued news); when an eager round skips a member or stands for
the next periodic round; and how a probe ends when its timeout comes.
Every test drives real :class:`NodeCore` instances by hand, directly or on the
test kit's :class:`~gossipreg.testing.CoreNetwork`.
"""

from __future__ import annotations

import random

import pytest

from gossipreg.core import codec, crypto
from gossipreg.core.catalog import Record
from gossipreg.core.codec import Ack, Message, Ping, RecordMsg, Tree
from gossipreg.core.config import Config
from gossipreg.core.crypto import Keyring
from gossipreg.core.membership import Address, Alive, Leave, Member, MemberState
from gossipreg.core.model import Node
from gossipreg.core.node import _MAX_TREE_UNACKED, NodeCore, SendDatagram
from gossipreg.testing import WALL0, CoreNetwork, decode_datagram

from .node_helpers import KEY, plain, service, stat

_TREE_SEQ_FLAG = 1 << 62  # docs/protocol.md: a tree seq is 2^62 | counter << 7 | copy
_COPY_BITS = 7


def messages(data: bytes, keyring: Keyring | None = None) -> list[Message]:
    return decode_datagram(data, keyring)


def tree_marker(data: bytes) -> Tree | None:
    msgs = messages(data)
    return msgs[0] if msgs and isinstance(msgs[0], Tree) else None


def datagrams(core: NodeCore) -> list[SendDatagram]:
    """``core``'s outbox (taken), datagrams only."""
    return [o for o in core.take_outbox() if isinstance(o, SendDatagram)]


def tree_datagrams(core: NodeCore) -> list[SendDatagram]:
    """The tree datagrams in ``core``'s outbox (taken; an insecure member's)."""
    return [o for o in datagrams(core) if tree_marker(o.data) is not None]


def alive_of(member: Member) -> Alive:
    """The alive a member with this view of ``member`` already has (stale there)."""
    return Alive(member.name, member.incarnation, member.address, member.meta, member.epoch)


def tree_cluster(**changes: object) -> tuple[CoreNetwork, list[NodeCore]]:
    """Eight insecure members with ``gossip_nodes=1``: m0's tree (rank = index) is
    0 -> 1, 2, 4; 1 -> 3, 5; 2 -> 6; 3 -> 7."""
    net = CoreNetwork(config=Config.lan(gossip_nodes=1, **changes), insecure=True)
    cores = net.cluster(*[f"m{i}" for i in range(8)])
    net.run(2)
    assert [c.name for c in cores[0]._tree_children("m0")] == ["m1", "m2", "m4"]
    assert [c.name for c in cores[1]._tree_children("m0")] == ["m3", "m5"]
    return net, cores


def names(net: CoreNetwork, sent: list[SendDatagram]) -> list[str]:
    return sorted(net.name_of(o.address) or "?" for o in sent)


# ---------------------------------------------------------------- passing on


def test_a_tree_datagram_is_passed_on_to_the_children_with_one_more_hop_and_counted() -> None:
    net, cores = tree_cluster(tree_resends=0)
    m1 = cores[1]
    update = alive_of(net.member("m1", "m2"))
    before = stat(m1, "tree_datagrams")
    m1.receive_datagram(plain(Tree("m0", 1), update), cores[0].address, net.now)
    sent = tree_datagrams(m1)
    assert names(net, sent) == ["m3", "m5"]
    assert all(messages(o.data) == [Tree("m0", 2), update] for o in sent)
    assert stat(m1, "tree_datagrams") == before + 2


def test_a_tree_datagram_at_the_hop_bound_is_applied_but_not_passed_on() -> None:
    net, cores = tree_cluster(tree_resends=0)
    m1 = cores[1]
    rec = Record("far", "1.0", "f-1", "m0", m1.catalog.clock.now(), None, False, Node("f-1", "10.9.9.9:1"))
    before = stat(m1, "tree_datagrams")
    m1.receive_datagram(plain(Tree("m0", codec.MAX_TREE_HOPS), RecordMsg(rec)), cores[0].address, net.now)
    assert m1.catalog.get(rec.key) == rec
    assert tree_datagrams(m1) == []
    assert stat(m1, "tree_datagrams") == before
    # One hop less is still passed on.
    m1.receive_datagram(plain(Tree("m0", codec.MAX_TREE_HOPS - 1), RecordMsg(rec)), cores[0].address, net.now)
    assert [tree_marker(o.data) for o in tree_datagrams(m1)] == [Tree("m0", codec.MAX_TREE_HOPS)] * 2


def test_a_tree_datagram_without_updates_is_not_passed_on() -> None:
    net, cores = tree_cluster(tree_resends=0)
    m1 = cores[1]
    before = stat(m1, "tree_datagrams")
    m1.receive_datagram(plain(Tree("m0", 1)), cores[0].address, net.now)
    ping = Ping(99, "m9", "m0", cores[0].address)  # not an update: nothing to pass on
    m1.receive_datagram(plain(Tree("m0", 1), ping), cores[0].address, net.now)
    assert tree_datagrams(m1) == []
    assert stat(m1, "tree_datagrams") == before


@pytest.mark.parametrize("root", ["a-gone", "zz"])
def test_a_tree_rooted_at_a_member_not_known_live_is_not_passed_on(root: str) -> None:
    """A root this member does not know (sorting before every member, or after all
    of them) gives it no place in the tree: the updates are applied, not passed on."""
    net, cores = tree_cluster(tree_resends=0)
    m1 = cores[1]
    rec = Record("far", "1.0", "f-1", "m0", m1.catalog.clock.now(), None, False, Node("f-1", "10.9.9.9:1"))
    m1.receive_datagram(plain(Tree(root, 1), RecordMsg(rec)), cores[0].address, net.now)
    assert m1.catalog.get(rec.key) == rec
    assert tree_datagrams(m1) == []


# ---------------------------------------------------------------- tree datagrams


def test_as_many_updates_as_a_datagram_holds_are_passed_on_in_one_datagram_per_child() -> None:
    net, cores = tree_cluster(tree_resends=0, max_packet_size=65000)
    m1 = cores[1]
    update = alive_of(net.member("m1", "m2"))
    # The marker and MAX_MESSAGES - 1 updates: a full datagram, received and passed on whole.
    m1.receive_datagram(plain(Tree("m0", 1), *[update] * (codec.MAX_MESSAGES - 1)), cores[0].address, net.now)
    sent = tree_datagrams(m1)
    assert names(net, sent) == ["m3", "m5"]
    assert all(len(messages(o.data)) == codec.MAX_MESSAGES for o in sent)


def big_record(owner: str, node_id: str, stamp: int, size: int) -> Record:
    """A record of ``owner`` whose message encodes to exactly ``size`` bytes (padded metadata)."""
    for pad in range(size):
        node = Node(node_id, "10.9.9.9:1")
        rec = Record("big", "1.0", node_id, owner, stamp, None, False, node, {"p": "x" * pad})
        if len(codec.encode_message(RecordMsg(rec))) == size:
            return rec
    raise AssertionError(f"no record of {size} bytes")


def test_each_tree_datagram_is_filled_up_to_max_packet_size() -> None:
    """Updates are split into as few datagrams as fit ``max_packet_size``, the second
    as full as the first: [a], then [b, c] whose sizes just fill a datagram."""
    net, cores = tree_cluster(tree_resends=0)
    m1 = cores[1]
    room = net.config.max_packet_size - codec.DATAGRAM_OVERHEAD - len(codec.encode_message(Tree("m0", 2)))
    stamp = m1.catalog.clock.now()
    a = big_record("m0", "a", stamp, 800)
    b = big_record("m0", "b", stamp, 700)
    c = big_record("m0", "c", stamp, room - 700)
    datagram = plain(Tree("m0", 1), RecordMsg(a), RecordMsg(b), RecordMsg(c))
    m1.receive_datagram(datagram, cores[0].address, net.now)
    sent = tree_datagrams(m1)
    to_m3 = [messages(o.data)[1:] for o in sent if net.name_of(o.address) == "m3"]
    assert to_m3 == [[RecordMsg(a)], [RecordMsg(b), RecordMsg(c)]]
    assert all(len(o.data) <= net.config.max_packet_size for o in sent)


def test_one_tree_resend_is_enough_to_turn_the_repair_on() -> None:
    net, cores = tree_cluster(tree_resends=1)
    lost: list[Tree] = []

    def drop(src: str, dst: str, data: bytes) -> bool:
        marker = tree_marker(data)
        if (src, dst) == ("m0", "m1") and marker is not None and not lost:
            lost.append(marker)
            return True
        return False

    net.drop = drop
    resends = stat(cores[0], "tree_resends")
    cores[0].register(service("svc"), None, net.now)
    net.run(0.1)
    assert lost
    first = lost[0].seq
    assert first is not None  # the marker asks for an ack
    assert stat(cores[0], "tree_resends") == resends + 1
    copies = [
        m for d in net.log if d.src == "m0" and net.name_of(d.dst) == "m1"
        if (m := tree_marker(d.data)) is not None and (m.seq or 0) >> _COPY_BITS == first >> _COPY_BITS
    ]
    # The re-send names the same root and hops as the lost copy, and the next copy.
    root, hops = lost[0].root, lost[0].hops
    assert [(m.root, m.hops, m.seq) for m in copies] == [(root, hops, first), (root, hops, first | 1)]


def test_a_resent_tree_datagram_keeps_the_hops_of_the_first_copy() -> None:
    net, cores = tree_cluster()
    m1 = cores[1]
    net.down.update({"m3", "m5"})  # m1's children never ack
    update = alive_of(net.member("m1", "m2"))
    m1.receive_datagram(plain(Tree("m0", 3), update), cores[0].address, net.now)
    first = [tree_marker(o.data) for o in tree_datagrams(m1)]
    assert [(m.root, m.hops) for m in first if m is not None] == [("m0", 4)] * 2
    m1.tick(m1.next_deadline() or 0.0)
    again = [tree_marker(o.data) for o in tree_datagrams(m1)]
    assert [(m.root, m.hops) for m in again if m is not None] == [("m0", 4)] * 2


def test_tree_datagrams_are_numbered_by_a_per_sender_count() -> None:
    """docs/protocol.md: a tree seq is ``2^62 | counter << 7 | copy``, ``counter`` the
    sender's count of tree datagrams: one more for each datagram, copy 0 when first sent."""
    net, cores = tree_cluster()
    start = len(net.log)
    cores[0].register(service("svc"), None, net.now)
    net.flush()
    seqs = [m.seq for d in net.log[start:] if d.src == "m0" if (m := tree_marker(d.data)) is not None]
    assert len(seqs) == 3  # m1, m2, m4
    assert all(s is not None and s & _TREE_SEQ_FLAG and s & ((1 << _COPY_BITS) - 1) == 0 for s in seqs)
    counters = [(s or 0) >> _COPY_BITS & ~(_TREE_SEQ_FLAG >> _COPY_BITS) for s in seqs]
    assert counters == list(range(counters[0], counters[0] + 3))


def test_at_most_max_tree_unacked_datagrams_await_an_ack_and_the_oldest_is_given_up() -> None:
    net = CoreNetwork(insecure=True)
    a, _b = net.cluster("a", "b")
    net.down.add("b")  # b never acks; a's timers are not run
    unacked = stat(a, "tree_unacked")
    acked = stat(a, "tree_acks_received")
    seqs: list[int] = []
    svc = service("svc")
    for i in range(_MAX_TREE_UNACKED + 1):
        if i % 2:
            a.deregister(svc, net.now)
        else:
            a.register(svc, None, net.now)
        [marker] = [m for o in datagrams(a) if (m := tree_marker(o.data)) is not None]
        assert marker.seq is not None
        seqs.append(marker.seq)
        assert stat(a, "tree_unacked") == unacked + (i == _MAX_TREE_UNACKED)
    # The oldest was given up: its ack, late, counts for nothing; the second's still does.
    b_address = net.cores["b"].address
    a.receive_datagram(plain(Ack(seqs[0], "b")), b_address, net.now)
    assert stat(a, "tree_acks_received") == acked
    a.receive_datagram(plain(Ack(seqs[1], "b")), b_address, net.now)
    assert stat(a, "tree_acks_received") == acked + 1


# ---------------------------------------------------------------- datagram budgets


def lone_core(name: str = "a", *, sealed: bool = False, **changes: object) -> NodeCore:
    """A member outside any network at 10.0.0.1: its inputs are fed by hand."""
    return NodeCore(name, ("10.0.0.1", 7946), config=Config.lan(**changes), rng=random.Random(1),
                    wall_clock=lambda: WALL0, now=0.0, keyring=Keyring(KEY) if sealed else None,
                    insecure=not sealed)


def datagram_to(core: NodeCore, *msgs: Message) -> bytes:
    data = plain(*msgs)
    return core.keyring.seal(data, b"") if core.keyring is not None else data


@pytest.mark.parametrize("sealed", [False, True])
def test_a_record_gossips_only_if_it_fits_a_datagram_of_max_packet_size(sealed: bool) -> None:
    """The largest record that gossips fills a datagram of ``max_packet_size`` exactly,
    sealed or not; one byte more and it is left to anti-entropy."""
    a = lone_core(sealed=sealed)
    room = a.config.max_packet_size - codec.DATAGRAM_OVERHEAD - (crypto.OVERHEAD if sealed else 0)
    stamp = a.catalog.clock.now()
    fits, too_large = big_record("b", "fits", stamp, room), big_record("b", "over", stamp, room + 1)
    b = ("10.0.0.2", 7946)
    a.receive_datagram(datagram_to(a, RecordMsg(fits)), b, 0.0)
    assert stat(a, "records_too_large_for_gossip") == 0
    a.receive_datagram(datagram_to(a, RecordMsg(too_large)), b, 0.0)
    assert stat(a, "records_too_large_for_gossip") == 1
    assert a.catalog.get(fits.key) == fits
    assert a.catalog.get(too_large.key) == too_large


def alives(count: int, metas: list[int] | None = None) -> list[Alive]:
    """Alives of ``count`` new members; the first ones with ``metas`` bytes of meta."""
    sizes = (metas or []) + [0] * count
    return [Alive(f"n{i}", 0, Address(f"10.1.0.{i + 2}", 7946), b"x" * sizes[i]) for i in range(count)]


def padded_alives(count: int, total: int) -> list[Alive]:
    """``count`` alives of new members whose messages add up to exactly ``total`` bytes."""
    extra = total - sum(len(codec.encode_message(m)) for m in alives(count))
    metas = [255] * (extra // 255) + [extra % 255]  # up to 255 bytes, a meta costs its length
    out = alives(count, metas)
    assert sum(len(codec.encode_message(m)) for m in out) == total
    return out


@pytest.mark.parametrize("sealed", [False, True])
def test_an_ack_topped_up_with_queued_news_stays_within_max_packet_size(sealed: bool) -> None:
    # A long name makes the ack itself large: the news must fit in what it leaves.
    a = lone_core("a" * 200, sealed=sealed, eager_push=False)
    src = Address("10.1.0.2", 7946)
    a.receive_datagram(datagram_to(a, *alives(100)), src, 0.0)  # far more news than a datagram holds
    assert datagrams(a) == []
    a.receive_datagram(datagram_to(a, Ping(7, a.name, "n0", src)), src, 0.0)
    [ack] = datagrams(a)
    got = messages(ack.data, a.keyring)
    assert got[0] == Ack(7, a.name)
    assert len(got) > 10
    assert len(ack.data) <= a.config.max_packet_size


def test_an_ack_carries_all_the_queued_news_that_exactly_fills_the_datagram() -> None:
    a = lone_core(eager_push=False)
    src = Address("10.1.0.2", 7946)
    own = codec.encode_message(a.membership.local_alive())  # queued since its creation
    ack = codec.encode_message(Ack(7, a.name))
    room = a.config.max_packet_size - codec.DATAGRAM_OVERHEAD
    news = padded_alives(20, room - len(ack) - len(own))
    a.receive_datagram(plain(*news), src, 0.0)
    a.receive_datagram(plain(Ping(7, a.name, "n0", src)), src, 0.0)
    [out] = datagrams(a)
    got = messages(out.data)
    assert got[0] == Ack(7, a.name)
    carried = sorted(m.name for m in got[1:] if isinstance(m, Alive))
    assert carried == sorted([a.name, *(m.name for m in news)])
    assert len(out.data) == a.config.max_packet_size


def test_an_eager_push_carries_all_the_queued_news_that_exactly_fills_the_datagram() -> None:
    a = lone_core()
    own = codec.encode_message(a.membership.local_alive())
    room = a.config.max_packet_size - codec.DATAGRAM_OVERHEAD
    news = padded_alives(20, room - len(own))
    a.receive_datagram(plain(*news), Address("10.1.0.2", 7946), 0.0)  # new members: pushed at once
    first = datagrams(a)[0]
    assert len(messages(first.data)) == len(news) + 1
    assert len(first.data) == a.config.max_packet_size


# ---------------------------------------------------------------- eager and periodic rounds


def test_an_eager_round_that_sent_nothing_leaves_the_periodic_round_on_schedule() -> None:
    """An eager round whose only target was pushed to just before sends nothing, so it
    does not stand for the next periodic round: that one goes when it was due."""
    net = CoreNetwork(insecure=True)
    a, _b = net.cluster("a", "b")
    pushes, rounds = stat(a, "eager_pushes"), stat(a, "gossip_datagrams")
    a.register(service("one"), None, net.now)
    t1 = net.now
    assert stat(a, "eager_pushes") == pushes + 1  # stands for the periodic round due then
    net.run(0.5 / net.config.eager_push_rate)
    a.register(service("two"), None, net.now)  # b was pushed to too recently: nothing sent
    assert stat(a, "eager_pushes") == pushes + 1
    net.run_until(t1 + net.config.gossip_interval + 0.25 / net.config.eager_push_rate)
    assert stat(a, "gossip_datagrams") == rounds + 1


def test_an_eager_push_goes_again_to_a_member_once_the_rate_limit_gap_has_passed() -> None:
    net = CoreNetwork(config=Config.lan(eager_push_rate=4.0), insecure=True)  # a gap of 0.25 s
    a, _b = net.cluster("a", "b")
    net.run_until(8.0)
    pushes = stat(a, "eager_pushes")
    a.register(service("one"), None, 8.0)
    assert stat(a, "eager_pushes") == pushes + 1
    net.run_until(8.25)
    a.register(service("two"), None, 8.25)
    assert stat(a, "eager_pushes") == pushes + 2


def test_an_eager_round_skips_members_pushed_to_lately_and_still_pushes_to_the_others() -> None:
    # a pushes news to its 9 members, then learns a tenth member at once: the round that
    # follows skips the 9 (rate-limited) but pushes to the newcomer, wherever it is drawn.
    a = lone_core(gossip_nodes=10, retransmit_mult=5)  # each update goes to all 10
    src = Address("10.1.0.2", 7946)
    a.receive_datagram(plain(*alives(9)), src, 0.0)
    assert len(datagrams(a)) == 9
    late = Alive("z", 0, Address("10.2.0.1", 7946))
    a.receive_datagram(plain(late), src, 0.001)
    [out] = datagrams(a)
    assert out.address == late.address
    assert late in messages(out.data)


def test_members_left_without_news_in_an_eager_round_are_not_rate_limited() -> None:
    # Each update is sent once (retransmit_mult=1): the first target of an eager round
    # takes everything. Of the others, only the one found empty-handed counts as pushed
    # to; so news a moment later is still pushed to the third member.
    net = CoreNetwork(config=Config.lan(retransmit_mult=1), insecure=True)
    a, *_ = net.cluster("a", "b", "c", "d")
    pushes = stat(a, "eager_pushes")
    a.register(service("one"), None, net.now)
    assert stat(a, "eager_pushes") == pushes + 1
    net.run(0.2 / net.config.eager_push_rate)
    a.register(service("two"), None, net.now)
    assert stat(a, "eager_pushes") == pushes + 2


# ---------------------------------------------------------------- the end of a probe


def probing(target: str) -> tuple[CoreNetwork, NodeCore]:
    """Four members; a has just pinged ``target``, which is down."""
    net = CoreNetwork(insecure=True)
    a, *_ = net.cluster("a", "b", "c", "d")
    net.down.add(target)
    assert net.run_until(net.now + 10, until=lambda: a._probe is not None and a._probe.target == target)
    return net, a


def test_a_probe_whose_timeout_comes_asks_the_helpers_without_pinging_again() -> None:
    # The re-ping due before the timeout is overtaken by it (a driver that ticks late):
    # at the timeout the probe goes to the helpers only.
    _net, a = probing("b")
    p = a._probe
    assert p is not None
    assert p.resend_at < p.timeout_at
    resends, reqs = stat(a, "probe_resends"), stat(a, "ping_reqs_sent")
    a.tick(p.timeout_at)
    assert stat(a, "probe_resends") == resends
    assert stat(a, "ping_reqs_sent") == reqs + 2
    assert not any(isinstance(m, Ping) for o in datagrams(a) for m in messages(o.data))


def test_a_probe_whose_target_left_before_its_timeout_ends_without_a_failure() -> None:
    net, a = probing("b")
    p = a._probe
    assert p is not None
    b = net.member("a", "b")
    a.receive_datagram(plain(Leave("b", b.incarnation)), b.address, net.now)
    assert net.state("a", "b") is MemberState.LEFT
    failed, reqs, health = stat(a, "probes_failed"), stat(a, "ping_reqs_sent"), a.membership.awareness.score
    a.tick(p.timeout_at)
    a.tick(p.period_end)
    assert stat(a, "ping_reqs_sent") == reqs
    assert stat(a, "probes_failed") == failed
    assert a.membership.awareness.score == health
