"""What a node core takes from signed statements, and the bookkeeping of its streams.

With member identities: which alives, records, leaves and push-pull member states a
member believes, which it refuses and how it counts them, what waits for an unknown
signer's certificate, and when the proofs of departed members are forgotten. Without
them: the stream counters, the rate limit of stream refusals, and the chunk state a
member drops when one of its streams ends.

Each test drives real :class:`NodeCore` instances, on the test kit's
:class:`~gossipreg.testing.CoreNetwork` or by hand.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any

from gossipreg import pki
from gossipreg.core import chunks, codec
from gossipreg.core.catalog import Record
from gossipreg.core.codec import RecordMsg
from gossipreg.core.config import Config
from gossipreg.core.crypto import Keyring
from gossipreg.core.identity import ALIVE_DOMAIN, LEAVE_DOMAIN, RECORD_DOMAIN, Identity, TrustStore
from gossipreg.core.membership import Address, Alive, Leave, Member, MemberState
from gossipreg.core.model import Node
from gossipreg.core.node import REFUSALS_PER_SECOND, JoinResult, NodeCore, SendStream
from gossipreg.testing import WALL0, CoreNetwork

from .node_helpers import KEY, STREAM_LABEL, read_stream, sealed, service, stat, stream_frame

CA, CA_KEY = pki.create_ca("gossipreg test CA")
_CERTS: dict[str, tuple[bytes, bytes]] = {}
STRANGER = ("10.0.0.66", 7946)


def ident(name: str) -> Identity:
    """The identity of member ``name``, certified by the cluster CA (one per name)."""
    if name not in _CERTS:
        _CERTS[name] = pki.create_member_cert(CA, CA_KEY, name)
    return Identity(*_CERTS[name], name=name)


def cluster(*names: str) -> tuple[CoreNetwork, list[NodeCore]]:
    net = CoreNetwork(wall0=time.time())
    cores = [net.add(n, identity=ident(n), trust=TrustStore(CA)) for n in names]
    for c in cores[1:]:
        c.join([cores[0].address], net.now)
    net.run(3)
    return net, cores


def signed_by(signer: Identity, rec: Record) -> Record:
    return replace(rec, signature=signer.sign(RECORD_DOMAIN, codec.record_payload(rec)))


def signed_alive(signer: Identity, alive: Alive) -> Alive:
    """``alive`` signed by ``signer``, with its certificate."""
    signature = signer.sign(ALIVE_DOMAIN, codec.alive_payload(alive))
    return replace(alive, signature=signature, certificate=signer.certificate_der)


def push_pull_init(core: NodeCore, states: list[list[Any]], stream: int, now: float) -> None:
    """``states`` arrive at ``core`` in a push-pull init from a stranger (its reply is not read)."""
    core.receive_stream(("in", stream), STRANGER, stream_frame([codec.PP_INIT, False, states, {}]), now)


def push_records(core: NodeCore, records: list[Record], stream: int, now: float) -> None:
    """``records`` are pushed to ``core`` in a push-pull's reconcile step (after an empty init)."""
    push_pull_init(core, [], stream, now)
    push = [codec.encode_transfer(r, 0.0) for r in records]
    frame = stream_frame([codec.PP_RECONCILE, push, codec.encode_hashes([])], seq=1)
    core.receive_stream(("in", stream), STRANGER, frame, now)


def graveyard(core: NodeCore) -> set[str]:
    return {m.name for m in core.membership.graveyard()}


def lone_core(now: float = 0.0) -> NodeCore:
    """A lone member with the test keyring, outside any network: inputs are fed by hand."""
    return NodeCore("a", ("10.0.0.9", 1), config=Config(), rng=random.Random(1), wall_clock=lambda: WALL0,
                    now=now, keyring=Keyring(KEY))


def sent_on(core: NodeCore, stream: tuple[str, int]) -> list[bytes]:
    return [o.data for o in core.take_outbox() if isinstance(o, SendStream) and o.stream == stream]


# ---------------------------------------------------------------- alives


def test_a_verified_alives_signature_on_other_fields_is_checked_and_refused() -> None:
    """Only an alive equal to the one verified is taken on trust: the same signature on
    a higher incarnation (a replay with the fields changed) is verified, and fails."""
    net, (_a, b, c) = cluster("a", "b", "c")
    held = net.member("c", "b")
    genuine = b._signed_alive(b.membership.local_alive())
    bumped = replace(genuine, incarnation=held.incarnation + 5, certificate=b"")
    c.receive_datagram(sealed(bumped), STRANGER, net.now)
    assert net.member("c", "b").incarnation == held.incarnation
    assert stat(c, "identity_bad_signature") == 1


# ---------------------------------------------------------------- records


def _held_record(net: CoreNetwork, owner: NodeCore, holder: NodeCore) -> Record:
    [rec] = owner.register(service("web", "b1"), None, net.now)
    net.run(1)
    held = holder.catalog.get(rec.key)
    assert held is not None
    assert held == rec
    assert held.signature
    return held


def test_a_held_record_repeated_with_another_signature_is_checked_and_refused() -> None:
    """A record equal to the one held is taken unchecked only with the signature that
    was verified when it came; with another one (here a certified stranger's) it is checked."""
    net, (_a, b, c) = cluster("a", "b", "c")
    held = _held_record(net, b, c)
    push_records(c, [signed_by(ident("x"), held)], 77, net.now)
    assert stat(c, "identity_bad_signature") == 1
    got = c.catalog.get(held.key)
    assert got is not None
    assert got.signature == held.signature


def test_a_record_tied_with_the_held_one_and_carrying_its_signature_is_refused() -> None:
    """The held record's signature copied onto other content at the same stamp (a tie the
    tiebreak could let win) vouches for nothing: checked, refused, the view unchanged."""
    net, (_a, b, c) = cluster("a", "b", "c")
    held = _held_record(net, b, c)
    forged = replace(held, node=Node("b1", "10.66.66.66:80"))
    assert forged.order() == held.order()
    assert forged != held
    push_records(c, [forged], 77, net.now)
    assert stat(c, "identity_bad_signature") == 1
    assert c.catalog.get(held.key) == held


def test_an_older_version_of_a_held_record_is_counted_stale_without_checking_its_signature() -> None:
    """A record older than the one held changes nothing: it is not verified (its signature
    here is junk), and the catalog counts it as stale."""
    net, (_a, b, c) = cluster("a", "b", "c")
    held = _held_record(net, b, c)
    stale = stat(c, "catalog_stale")
    older = replace(held, stamp=held.stamp - 1, signature=bytes(64))
    push_records(c, [older], 77, net.now)
    assert stat(c, "identity_bad_signature") == 0
    assert stat(c, "identity_unknown_signer") == 0
    assert stat(c, "catalog_stale") == stale + 1
    assert c.catalog.get(held.key) == held


# ---------------------------------------------------------------- proofs of departed members


def _dead_with_proofs(names: list[str]) -> list[list[Any]]:
    """Push-pull states of members ``names``, dead, each with its own signed alive as proof."""
    states = []
    for i, name in enumerate(names):
        alive = Alive(name, 3, Address("10.0.1.1", 10000 + i), b"", 1)
        proof = signed_alive(ident(name), alive)
        states.append(codec.encode_member(Member(name, alive.address, 3, MemberState.DEAD, epoch=1), proof))
    return states


def test_proofs_are_forgotten_once_one_more_than_twice_the_table_plus_64() -> None:
    """With 2 members in the table, 68 proofs are kept and the 69th starts the pruning."""
    net, (a, _b) = cluster("a", "b")
    assert len(a.members()) == 2
    ghosts = [f"g{i}" for i in range(68)]  # with b's: 69 proofs
    push_pull_init(a, _dead_with_proofs(ghosts), 77, net.now)
    shared = {m.name: proof for m, proof in codec.decode_member_proofs(a._member_states())}
    assert set(ghosts) <= set(shared)
    assert all(shared[name] is None for name in ghosts)
    assert shared["b"] is not None


# ---------------------------------------------------------------- leaves


def test_a_leave_whose_signers_certificate_is_unknown_waits_and_hides_no_one() -> None:
    net, (_a, b, c) = cluster("a", "b", "c")
    assert c.trust is not None
    c.trust.forget("b")
    junk = bytes(64)  # no signature can be checked without the certificate
    c.receive_datagram(sealed(Leave("b", b.membership.local_alive().incarnation, junk)), STRANGER, net.now)
    assert net.state("c", "b") is MemberState.ALIVE
    assert stat(c, "identity_unknown_signer") == 1
    assert stat(c, "identity_certificates_asked") == 1


def test_a_leave_signed_by_another_member_is_refused_and_counted_as_a_bad_signature() -> None:
    net, (_a, b, c) = cluster("a", "b", "c")
    leave = Leave("b", b.membership.local_alive().incarnation)
    forged = replace(leave, signature=ident("x").sign(LEAVE_DOMAIN, codec.leave_payload(leave)))
    c.receive_datagram(sealed(forged), STRANGER, net.now)
    assert net.state("c", "b") is MemberState.ALIVE
    assert stat(c, "identity_bad_signature") == 1
    assert stat(c, "identity_unsigned") == 0


# ---------------------------------------------------------------- unknown signers


def _d_record(core: NodeCore, node_id: str = "d1") -> Record:
    return signed_by(ident("d"), Record("d-svc", "1", node_id, "d", core.catalog.clock.now(), None, False,
                                        Node(node_id, "10.66.0.4:1")))


def test_a_streamed_record_of_an_unknown_owner_brings_the_next_exchange_forward() -> None:
    """A stream has no sender to ask for the certificate: the member's next anti-entropy
    exchange, which carries the owner's certificate in its state, comes within about a
    probe interval instead of a push-pull interval."""
    net, (a, _b) = cluster("a", "b")
    net.run(2)
    begun = stat(a, "push_pull_checks") + stat(a, "push_pulls_started")
    push_records(a, [_d_record(a)], 77, net.now)
    a.take_outbox()  # the replies to the stranger
    assert stat(a, "identity_unknown_signer") == 1
    net.run(1.5 * a.config.probe_interval)
    assert stat(a, "push_pull_checks") + stat(a, "push_pulls_started") == begun + 1


def test_past_the_bound_the_oldest_statement_waiting_for_a_signer_is_the_one_dropped() -> None:
    net, (a, b) = cluster("a", "b")
    assert b.trust is not None
    b.trust.admit("d", ident("d").certificate_der, time.time())  # b knows d's certificate, a does not
    records = [_d_record(a, f"d{i}") for i in range(17)]
    for rec in records:
        a.receive_datagram(sealed(RecordMsg(rec)), b.address, net.now)
    assert stat(a, "identity_pending_dropped") == 1
    net.run(0.01)  # a asks b, b answers, a handles the 16 statements still waiting
    assert a.catalog.get(records[0].key) is None
    assert [a.catalog.get(r.key) for r in records[1:]] == records[1:]


def test_a_signer_whose_certificate_came_is_asked_for_at_once_if_it_is_needed_again() -> None:
    """An answered request is forgotten: if the certificate is later dropped (expired,
    say), the next statement of its signer asks for it at once, not a probe interval on."""
    net, (a, b) = cluster("a", "b")
    assert a.trust is not None
    assert b.trust is not None
    b.trust.admit("d", ident("d").certificate_der, time.time())
    a.receive_datagram(sealed(RecordMsg(_d_record(a, "d1"))), b.address, net.now)
    net.run(0.01)
    assert a.trust.known("d")
    a.trust.forget("d")
    a.receive_datagram(sealed(RecordMsg(_d_record(a, "d2"))), b.address, net.now)
    assert stat(a, "identity_certificates_asked") == 2


# ---------------------------------------------------------------- push-pull member states


def test_a_refused_push_pull_state_does_not_stop_the_states_after_it() -> None:
    net, (_a, _b, c) = cluster("a", "b", "c")
    held = net.member("c", "b")
    x = ident("x")
    y2_alive = Alive("y2", 0, Address("10.0.2.2", 7946), b"", 1)

    def gone(name: str) -> list[Any]:  # an accusation of a member unknown here: taken unsigned
        return codec.encode_member(Member(name, Address("10.0.3.3", 7946), 9, MemberState.DEAD, epoch=1))

    states = [
        codec.encode_member(Member("y1", Address("10.0.2.1", 7946), 0, MemberState.ALIVE, epoch=1)),
        gone("gone1"),
        codec.encode_member(Member("y2", y2_alive.address, 0, MemberState.ALIVE, epoch=1),
                            signed_alive(x, y2_alive)),  # x's certificate is not y2's
        gone("gone2"),
        codec.encode_member(replace(held, state=MemberState.DEAD, incarnation=held.incarnation + 2)),
        gone("gone3"),
    ]
    push_pull_init(c, states, 77, net.now)
    assert {"gone1", "gone2", "gone3"} <= graveyard(c)
    names = {m.name for m in c.members()}
    assert "y1" not in names
    assert "y2" not in names
    assert net.member("c", "b") == held
    assert stat(c, "identity_unsigned") == 2
    assert stat(c, "identity_bad_certificate") == 1


def test_a_dead_state_far_past_the_held_incarnation_with_the_members_own_proof_is_not_unsigned() -> None:
    """The identity check counts as unsigned only an accusation no proof vouches for; with
    the member's own signed alive at that incarnation it is signed, and left to the
    membership's own bound (no honest accuser is more than one incarnation ahead)."""
    net, (_a, b, c) = cluster("a", "b", "c")
    held = net.member("c", "b")
    far = held.incarnation + 5
    proof = signed_alive(ident("b"), replace(b.membership.local_alive(), incarnation=far))
    push_pull_init(c, [codec.encode_member(replace(held, state=MemberState.DEAD, incarnation=far), proof)],
                   77, net.now)
    assert net.member("c", "b") == held
    assert stat(c, "identity_unsigned") == 0
    assert stat(c, "identity_bad_signature") == 0
    assert stat(c, "members_accusations_out_of_range") == 1


# ---------------------------------------------------------------- streams


def test_stream_messages_sent_and_their_bytes_are_counted() -> None:
    core = lone_core()
    core.receive_stream(("in", 1), ("10.0.0.8", 1), stream_frame([codec.PP_CHECK, 0, 0]), 0.0)
    frames = sent_on(core, ("in", 1))
    assert len(frames) == 1
    assert stat(core, "stream_messages_sent") == 1
    assert stat(core, "stream_bytes_sent") == len(frames[0])


def test_a_stream_the_member_closed_keeps_no_chunk_state() -> None:
    """After the member closes a stream, its id starts afresh: a new first frame is
    read from sequence number 0, and the answer is sealed from 0 too."""
    core = lone_core()
    check = stream_frame([codec.PP_CHECK, 0, 0])
    for _ in range(2):
        core.receive_stream(("in", 1), ("10.0.0.8", 1), check, 0.0)
        assert read_stream(sent_on(core, ("in", 1)), ring=Keyring(KEY), initiator=False) == [
            [codec.PP_CHECK_REPLY, False]
        ]
    assert stat(core, "auth_failures") == 0


def test_a_stream_the_driver_reports_failed_keeps_no_chunk_state() -> None:
    core = lone_core()
    more = Keyring(KEY).seal(bytes([chunks.MORE]) + b"\x01partial",
                             chunks.chunk_label(STREAM_LABEL, initiator=True, seq=0))
    assert core.receive_stream(("in", 1), ("10.0.0.8", 1), more, 0.0)  # a message's first chunk
    core.stream_failed(("in", 1), 0.0)
    core.receive_stream(("in", 1), ("10.0.0.8", 1), stream_frame([codec.PP_CHECK, 0, 0]), 0.0)
    assert read_stream(sent_on(core, ("in", 1)), ring=Keyring(KEY), initiator=False) == [
        [codec.PP_CHECK_REPLY, False]
    ]
    assert stat(core, "auth_failures") == 0


def test_a_failed_join_push_pull_is_reported_only_to_the_joiner() -> None:
    """The responder of a join whose stream fails counts the failure; the join result
    event is the joiner's (its initiator) alone."""
    core = lone_core()
    core.receive_stream(("in", 1), ("10.0.0.8", 1), stream_frame([codec.PP_INIT, True, [], {}]), 0.0)
    core.stream_failed(("in", 1), 0.1)
    assert stat(core, "push_pulls_failed") == 1
    assert not [e for e in core.take_events() if isinstance(e, JoinResult)]


def test_refusals_are_rate_limited_long_after_the_member_started() -> None:
    """The refusal bucket refills with the time since the last refusal, not since the start."""
    core = lone_core(now=0.0)
    bogus = stream_frame([codec.PP_INIT, False, [], {}], ring=Keyring(bytes(range(1, 33))))
    for n in range(int(REFUSALS_PER_SECOND) + 1):  # all at one instant, 100 s after the start
        core.receive_stream(("in", n), ("10.0.0.8", 1), bogus, 100.0)
    assert stat(core, "stream_refusals_sent") == REFUSALS_PER_SECOND
    assert stat(core, "auth_failures") == REFUSALS_PER_SECOND + 1


def test_a_refusal_as_the_first_frame_of_an_inbound_stream_is_bad_input_not_a_refusal() -> None:
    """Only a responder refuses, on the initiator's stream: a refusal arriving on a
    stream this member answers is an unauthenticated frame, refused in turn."""
    core = lone_core()
    assert not core.receive_stream(("in", 1), ("10.0.0.8", 1), chunks.refusal(1), 0.0)
    assert stat(core, "stream_refusals_received") == 0
    assert stat(core, "auth_failures") == 1
    assert stat(core, "stream_refusals_sent") == 1
