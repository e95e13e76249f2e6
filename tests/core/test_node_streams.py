"""Unit tests of the node core's stream side (gossipreg.core.node): frames and push-pulls.

What ``receive_stream`` answers for each kind of frame (authentic or not), how a
message of several chunks is put together and where its size limit lies, the
push-pull steps seen from each end (what each sends, counts and closes, and what it
gossips on afterwards), and how a frame that does not authenticate is told to be
plaintext. Messages are built and read by hand with the helpers of ``node_helpers``.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any

from gossipreg import pki
from gossipreg.core import chunks, codec
from gossipreg.core.catalog import Record
from gossipreg.core.codec import Message, RecordMsg
from gossipreg.core.config import Config
from gossipreg.core.crypto import Keyring
from gossipreg.core.hlc import make_stamp, physical_ms
from gossipreg.core.identity import ALIVE_DOMAIN, Identity, TrustStore
from gossipreg.core.membership import Address, Alive, Member, MemberState
from gossipreg.core.model import Node
from gossipreg.core.node import CloseStream, JoinResult, NodeCore, SendDatagram, SendStream
from gossipreg.testing import WALL0, CoreNetwork, decode_datagram

from .node_helpers import KEY, OTHER_KEY, STREAM_LABEL, read_stream, stat, stream_frame

PEER = Address("10.0.0.66", 7946)


def frames_on(out: list[Any], sid: tuple[str, int]) -> list[bytes]:
    return [o.data for o in out if isinstance(o, SendStream) and o.stream == sid]


def gossiped(out: list[Any], core: NodeCore) -> list[Message]:
    """The messages of the datagrams in outbox items ``out`` (``core`` sealed them)."""
    return [m for o in out if isinstance(o, SendDatagram) for m in decode_datagram(o.data, core.keyring)]


def record(owner: str, stamp: int, service: str = "pushed", node_id: str = "p-1") -> Record:
    return Record(service, "1.0", node_id, owner, stamp, None, False, Node(node_id, "10.9.9.9:1"))


def answered_init(core: NodeCore, sid: tuple[str, int], now: float) -> list[bytes]:
    """A peer at PEER opens ``sid`` with an empty push-pull init: the frames of ``core``'s reply."""
    assert core.receive_stream(sid, PEER, stream_frame([codec.PP_INIT, False, [], {}]), now) is True
    return frames_on(core.take_outbox(), sid)


def reconcile(core: NodeCore, sid: tuple[str, int], push: list[Record], now: float) -> list[Any]:
    """After :func:`answered_init`, PEER pushes ``push`` and asks for nothing; ``core``'s outbox."""
    frame = stream_frame([codec.PP_RECONCILE, [codec.encode_transfer(r, 0.0) for r in push], []], seq=1)
    core.receive_stream(sid, PEER, frame, now)
    return core.take_outbox()


# ====================================================================== what a frame answers


def test_a_refusal_read_on_a_joins_first_frame_is_not_authentic() -> None:
    # The driver lifts its budget only for streams whose frame authenticated: a refusal is plaintext.
    net = CoreNetwork()
    a = net.add("a")
    d = net.add("d")
    (sid,) = d.join([a.address], net.now)
    d.take_outbox()
    assert d.receive_stream(sid, a.address, chunks.refusal(1), net.now) is False
    assert d.take_outbox() == [CloseStream(sid)]
    assert stat(d, "stream_refusals_received") == 1


def test_a_frame_sealed_with_another_key_is_not_authentic() -> None:
    net = CoreNetwork()
    a = net.add("a")
    bogus = stream_frame([codec.PP_INIT, False, [], {}], ring=Keyring(OTHER_KEY))
    assert a.receive_stream(("in", 1), PEER, bogus, net.now) is False
    assert stat(a, "auth_failures") == 1


def test_a_sealed_frame_reaching_a_plaintext_member_is_not_authentic() -> None:
    net = CoreNetwork(insecure=True)
    a = net.add("a")
    assert a.receive_stream(("in", 1), PEER, stream_frame([codec.PP_INIT, False, [], {}]), net.now) is False
    assert stat(a, "sealed_received_while_insecure") == 1


def test_a_message_of_several_chunks_is_answered_once_whole_and_counted_once() -> None:
    # Every chunk authenticates at its own sequence number; the message is handled (and
    # counted) when its last chunk arrives, and each frame answers that it authenticated.
    net = CoreNetwork()
    a = net.add("a")
    ghosts = [codec.encode_member(Member(f"gone-{i:05}", Address("10.1.0.1", 1000 + i), 1, MemberState.DEAD))
              for i in range(3000)]
    message = codec.pack_stream([codec.PP_INIT, False, ghosts, {}])
    frames = chunks.seal_chunks(Keyring(KEY), STREAM_LABEL, message, initiator=True, seq=0)
    assert len(frames) >= 2
    sid = ("in", 1)
    for frame in frames[:-1]:
        assert a.receive_stream(sid, PEER, frame, net.now) is True
        assert a.take_outbox() == []
        assert stat(a, "stream_messages_received") == 0
    assert a.receive_stream(sid, PEER, frames[-1], net.now) is True
    [reply] = read_stream(frames_on(a.take_outbox(), sid), ring=Keyring(KEY), initiator=False)
    assert reply[0] == codec.PP_REPLY
    assert stat(a, "stream_messages_received") == 1
    assert stat(a, "push_pulls_answered") == 1
    assert stat(a, "auth_failures") == 0
    assert "gone-00000" in {m.name for m in a.membership.graveyard()}


def test_a_stream_message_of_exactly_the_size_limit_is_handled() -> None:
    ghosts = [codec.encode_member(Member(f"gone-{i}", Address("10.1.0.1", 1000 + i), 1, MemberState.DEAD,
                                         b"m" * 100)) for i in range(20)]
    init = [codec.PP_INIT, False, ghosts, {}]
    size = len(codec.pack_stream(init))
    net = CoreNetwork()
    a = net.add("a", config=Config.lan(max_stream_frame=size))
    assert a.receive_stream(("in", 1), PEER, stream_frame(init), net.now) is True
    assert stat(a, "stream_messages_too_large") == 0
    assert stat(a, "push_pulls_answered") == 1
    b = net.add("b", config=Config.lan(max_stream_frame=size - 1))  # one byte less: too large
    b.receive_stream(("in", 1), PEER, stream_frame(init), net.now)
    assert stat(b, "stream_messages_too_large") == 1
    assert stat(b, "push_pulls_answered") == 0


# ====================================================================== the push-pull, step by step


def test_a_check_is_answered_then_its_stream_closed() -> None:
    net = CoreNetwork()
    a = net.add("a")
    sid = ("in", 1)
    check = stream_frame([codec.PP_CHECK, a.membership.fingerprint(), a.catalog.root()])
    assert a.receive_stream(sid, PEER, check, net.now) is True
    out = a.take_outbox()
    [reply] = read_stream(frames_on(out, sid), ring=Keyring(KEY), initiator=False)
    assert reply == [codec.PP_CHECK_REPLY, True]
    assert out[-1] == CloseStream(sid)


def test_a_matched_check_ends_the_exchange_and_closes_its_stream() -> None:
    # Drivers call stream_failed for every stream they close: the exchange is over by
    # then, so nothing fails.
    net = CoreNetwork()
    a = net.add("a")
    a._start_check(PEER, net.now)
    [sent] = a.take_outbox()
    assert isinstance(sent, SendStream)
    sid = sent.stream
    a.receive_stream(sid, PEER, stream_frame([codec.PP_CHECK_REPLY, True], initiator=False), net.now)
    assert a.take_outbox() == [CloseStream(sid)]
    assert stat(a, "push_pull_checks_matched") == 1
    a.stream_failed(sid, net.now, "closed by peer")
    assert stat(a, "push_pulls_failed") == 0
    assert a.take_outbox() == []


def test_a_check_that_differs_is_followed_by_a_full_push_pull_that_is_no_join() -> None:
    net = CoreNetwork()
    a = net.add("a")
    a._start_check(PEER, net.now)
    [sent] = a.take_outbox()
    assert isinstance(sent, SendStream)
    a.receive_stream(sent.stream, PEER, stream_frame([codec.PP_CHECK_REPLY, False], initiator=False), net.now)
    out = a.take_outbox()
    assert out[0] == CloseStream(sent.stream)
    [init_sid] = {o.stream for o in out if isinstance(o, SendStream)}
    [init] = read_stream(frames_on(out, init_sid), ring=Keyring(KEY))
    assert init[:2] == [codec.PP_INIT, False]
    assert stat(a, "push_pulls_started") == 1


def test_an_answered_init_is_counted() -> None:
    net = CoreNetwork()
    a = net.add("a")
    answered_init(a, ("in", 1), net.now)
    assert stat(a, "push_pulls_answered") == 1
    answered_init(a, ("in", 2), net.now)
    assert stat(a, "push_pulls_answered") == 2


def _join_by_hand(net: CoreNetwork, seed: NodeCore, joiner: NodeCore) -> tuple[tuple[str, int], list[Any]]:
    """``joiner`` joins through ``seed``, whose reply is handed over by hand: (the joiner's
    stream, the joiner's outbox after the reply)."""
    (sid,) = joiner.join([seed.address], net.now)
    seed_sid = ("in", 1)
    for frame in frames_on(joiner.take_outbox(), sid):
        seed.receive_stream(seed_sid, joiner.address, frame, net.now)
    for frame in frames_on(seed.take_outbox(), seed_sid):
        joiner.receive_stream(sid, seed.address, frame, net.now)
    return sid, joiner.take_outbox()


def test_a_join_whose_stream_breaks_after_the_reply_has_succeeded_once_and_for_all() -> None:
    # The reply told the joiner the members: the join has succeeded; losing the stream
    # before the fetch fails that exchange, not the join.
    net = CoreNetwork()
    a = net.add("a")
    d = net.add("d")
    sid, _ = _join_by_hand(net, a, d)
    d.stream_failed(sid, net.now, "closed by peer")
    assert [e for e in d.take_events() if isinstance(e, JoinResult)] == [JoinResult(a.address, True)]
    assert stat(d, "push_pulls_failed") == 1


def test_a_joiner_with_a_slow_probe_checks_again_two_probe_intervals_after_its_join() -> None:
    config = Config.lan(probe_interval=2.0)
    net = CoreNetwork(config=config)
    a = net.add("a")
    net.run(1.0)
    b = net.add("b")
    b.join([a.address], net.now)
    net.wait_for(lambda: any(isinstance(e, JoinResult) and e.ok for e in net.events["b"]), timeout=5)
    checks = stat(b, "push_pull_checks")
    soon = 2 * config.probe_interval
    net.run(soon - 0.05)
    assert stat(b, "push_pull_checks") == checks
    net.run(0.1)
    assert stat(b, "push_pull_checks") == checks + 1


def test_the_fetch_returns_only_what_the_initiator_lacks_each_record_once() -> None:
    # A pushed record the responder now holds as pushed goes back to nobody; one it holds
    # newer goes back once, however many older copies were pushed.
    net = CoreNetwork()
    a = net.add("a")
    sid = ("in", 1)
    reply = answered_init(a, sid, net.now)
    fresh = record("x", a.catalog.clock.now())
    out = reconcile(a, sid, [fresh], net.now)
    [_, [kind, transfers]] = read_stream(reply + frames_on(out, sid), ring=Keyring(KEY), initiator=False)
    assert (kind, transfers) == (codec.PP_FETCH, [])
    assert out[-1] == CloseStream(sid)
    assert stat(a, "push_pulls_completed") == 1
    assert a.catalog.get(fresh.key) == fresh
    # Two older versions of what a holds: the newer one comes back, once.
    sid2 = ("in", 2)
    reply = answered_init(a, sid2, net.now)
    older = [replace(fresh, stamp=fresh.stamp - 2), replace(fresh, stamp=fresh.stamp - 1)]
    out = reconcile(a, sid2, older, net.now)
    [_, [kind, transfers]] = read_stream(reply + frames_on(out, sid2), ring=Keyring(KEY), initiator=False)
    assert kind == codec.PP_FETCH
    assert [r for r, _ in codec.decode_transfers(transfers)] == [fresh]


def test_a_completed_push_pull_is_counted_and_closed_by_its_initiator() -> None:
    net = CoreNetwork()
    a = net.add("a")
    d = net.add("d")
    sid, out = _join_by_hand(net, a, d)
    for frame in frames_on(out, sid):
        a.receive_stream(("in", 1), d.address, frame, net.now)
    for frame in frames_on(a.take_outbox(), ("in", 1)):
        d.receive_stream(sid, a.address, frame, net.now)
    assert stat(d, "push_pulls_completed") == 1
    assert CloseStream(sid) in d.take_outbox()
    d.stream_failed(sid, net.now, "closed by peer")  # the driver's, for the stream it closed
    assert stat(d, "push_pulls_failed") == 0
    assert [e for e in d.take_events() if isinstance(e, JoinResult)] == [JoinResult(a.address, True)]


# ====================================================================== what a push-pull gossips on

CA, CA_KEY = pki.create_ca("gossipreg stream test CA")


def identified(name: str) -> dict[str, Any]:
    """The identity and trust-store arguments of a member called ``name``."""
    ident = Identity(*pki.create_member_cert(CA, CA_KEY, name), name=name)
    return {"identity": ident, "trust": TrustStore(CA)}


def signed_alive(ident: Identity, alive: Alive) -> Alive:
    return replace(alive, signature=ident.sign(ALIVE_DOMAIN, codec.alive_payload(alive)),
                   certificate=ident.certificate_der)


def gossip_of(net: CoreNetwork, core: NodeCore, out: list[Any], seconds: float) -> list[Message]:
    """The messages ``core`` sends in datagrams: those of outbox items ``out``, then those
    of the next ``seconds`` of the network."""
    since = net.now
    net.run(seconds)
    later = [m for d in net.sent_by(core.name, since) for m in net.messages(d)]
    return gossiped(out, core) + later


def test_a_member_first_heard_of_in_a_push_pull_is_gossiped_on() -> None:
    net = CoreNetwork()
    _a, b = net.cluster("a", "b")
    x = Member("x", Address("10.0.0.77", 7946), 3, MemberState.ALIVE)
    init = stream_frame([codec.PP_INIT, False, [codec.encode_member(x)], {}])
    b.receive_stream(("in", 9), PEER, init, net.now)
    out = b.take_outbox()  # (its reply goes to no member of the network)
    sent = gossip_of(net, b, out, 1.0)
    assert Alive("x", 3, x.address) in [m for m in sent if isinstance(m, Alive)]
    assert net.state("a", "x") is MemberState.ALIVE


def test_with_identities_a_member_first_heard_of_in_a_push_pull_is_gossiped_with_its_own_signature() -> None:
    net = CoreNetwork(wall0=time.time())
    a = net.add("a", **identified("a"))
    b = net.add("b", **identified("b"))
    b.join([a.address], net.now)
    net.run(3)
    x_ident = Identity(*pki.create_member_cert(CA, CA_KEY, "x"), name="x")
    proof = signed_alive(x_ident, Alive("x", 3, Address("10.0.0.77", 7946), b"", 1))
    x = Member("x", proof.address, 3, MemberState.ALIVE, epoch=1)
    init = stream_frame([codec.PP_INIT, False, [codec.encode_member(x, proof)], {}])
    b.receive_stream(("in", 9), PEER, init, net.now)
    out = b.take_outbox()
    alives = [m for m in gossip_of(net, b, out, 1.0) if isinstance(m, Alive) and m.name == "x"]
    assert alives
    assert all(m == proof and m.signature == proof.signature for m in alives)
    assert net.state("a", "x") is MemberState.ALIVE
    assert a.statistics()["identity_unsigned"] == 0


def test_with_identities_a_push_pull_gossips_only_the_alive_it_merged() -> None:
    # Never another signed alive of that member that the same message carried (here an
    # older one, listed after it): receivers would take it for news.
    net = CoreNetwork(wall0=time.time())
    a = net.add("a", **identified("a"))
    b = net.add("b", **identified("b"))
    b.join([a.address], net.now)
    net.run(3)
    x_ident = Identity(*pki.create_member_cert(CA, CA_KEY, "x"), name="x")
    states = []
    for inc in (3, 2):
        proof = signed_alive(x_ident, Alive("x", inc, Address("10.0.0.77", 7946), b"", 1))
        states.append(codec.encode_member(Member("x", proof.address, inc, MemberState.ALIVE, epoch=1), proof))
    b.receive_stream(("in", 9), PEER, stream_frame([codec.PP_INIT, False, states, {}]), net.now)
    assert net.member("b", "x").incarnation == 3
    out = b.take_outbox()
    alives = [m for m in gossip_of(net, b, out, 1.0) if isinstance(m, Alive) and m.name == "x"]
    assert all(m.incarnation == 3 for m in alives)


def test_records_new_to_a_responder_are_gossiped_on() -> None:
    # Anti-entropy repairs spread at gossip speed: what a push-pull brought is news here.
    net = CoreNetwork()
    a, b = net.cluster("a", "b")
    sid = ("in", 9)
    answered_init(b, sid, net.now)
    pushed = record("a", a.catalog.clock.now())
    out = reconcile(b, sid, [pushed], net.now)
    assert b.catalog.get(pushed.key) == pushed
    sent = gossip_of(net, b, out, 1.0)
    assert RecordMsg(pushed) in sent


def test_records_stamped_beyond_the_drift_bound_in_a_push_pull_are_refused_and_counted() -> None:
    net = CoreNetwork()
    a = net.add("a")
    sid = ("in", 1)
    answered_init(a, sid, net.now)
    ahead_ms = int((a.config.max_clock_drift + 10) * 1000)
    far = record("x", make_stamp(physical_ms(a.catalog.clock.now()) + ahead_ms))
    reconcile(a, sid, [far], net.now)
    assert a.catalog.get(far.key) is None
    assert stat(a, "records_rejected_drift") == 1


def test_with_identities_an_unsigned_record_pushed_in_a_push_pull_is_refused() -> None:
    net = CoreNetwork(wall0=time.time())
    a = net.add("a", **identified("a"))
    sid = ("in", 1)
    answered_init(a, sid, net.now)
    unsigned = record("a", a.catalog.clock.now())  # in a's own name, unsigned
    reconcile(a, sid, [unsigned], net.now)
    assert a.catalog.get(unsigned.key) is None
    assert stat(a, "identity_unsigned") == 1


# ====================================================================== plaintext told from another key


def test_the_first_chunk_of_a_long_plaintext_message_is_refused_as_plaintext() -> None:
    # A first chunk of several carries the MORE flag and a message's start, not a whole
    # msgpack document: it still reads as plaintext, not as a frame sealed with another key.
    core = NodeCore("a", ("10.0.0.9", 1), config=Config(), rng=random.Random(1), wall_clock=lambda: WALL0,
                    now=0.0, keyring=Keyring(KEY))
    message = codec.pack_stream([codec.PP_INIT, False, [], {"pad": b"p" * (chunks.CHUNK + 10)}])
    first, _rest = chunks.seal_chunks(None, b"", message, initiator=True, seq=0)
    assert first[0] == chunks.MORE
    assert core.receive_stream(("in", 1), ("10.0.0.8", 1), first, 0.0) is False
    assert (stat(core, "plaintext_rejected"), stat(core, "auth_failures")) == (1, 0)
    # The shortest such chunk, flag and protocol version only, reads as plaintext too.
    core.receive_stream(("in", 2), ("10.0.0.8", 1), bytes([chunks.MORE, codec.PROTOCOL_VERSION]), 0.0)
    assert (stat(core, "plaintext_rejected"), stat(core, "auth_failures")) == (2, 0)
    # One byte alone is no plaintext chunk.
    core.receive_stream(("in", 3), ("10.0.0.8", 1), bytes([chunks.MORE]), 0.0)
    assert (stat(core, "plaintext_rejected"), stat(core, "auth_failures")) == (2, 1)


def test_with_identities_an_older_signed_alive_does_not_replace_the_proof_held() -> None:
    """A peer whose view of x is behind (x refuted a suspicion since) push-pulls x's
    older signed alive: the member keeps x's newer state and the proof that vouches for
    it, so its own push-pull states still carry x with a proof (a member joining
    through it learns x, and counts nothing unsigned)."""
    net = CoreNetwork(wall0=time.time())
    a = net.add("a", **identified("a"))
    b = net.add("b", **identified("b"))
    b.join([a.address], net.now)
    net.run(3)
    x_ident = Identity(*pki.create_member_cert(CA, CA_KEY, "x"), name="x")
    for sid, inc in ((9, 3), (10, 2)):  # the newer first, the older in a later exchange
        proof = signed_alive(x_ident, Alive("x", inc, Address("10.0.0.77", 7946), b"", 1))
        state = codec.encode_member(Member("x", proof.address, inc, MemberState.ALIVE, epoch=1), proof)
        b.receive_stream(("in", sid), PEER, stream_frame([codec.PP_INIT, False, [state], {}]), net.now)
        b.take_outbox()
    assert net.member("b", "x").incarnation == 3
    x = b.membership.get("x")
    assert x is not None
    proof_held = b._proof_of(x)
    assert proof_held is not None
    assert proof_held.incarnation == 3
    d = net.add("d", **identified("d"))
    d.join([b.address], net.now)
    net.run(0.5)
    assert d.membership.get("x") is not None  # (x is no real member: soon suspected)
    assert d.statistics()["identity_unsigned"] == 0
