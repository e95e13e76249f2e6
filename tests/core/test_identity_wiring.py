"""Member identities wired into the core: each member signs its own records and alives.

Every test runs real cores on the in-memory network of ``node_helpers``, with
certificates of one cluster CA (``gossipreg.pki``). The forgeries are those a
key holder made in the issue that asked for identities (13): a forged
tombstone hiding another member's registration, an override stamped ahead
serving the attacker's address, a "ghost" member with a registration, and an
alive at a huge incarnation. Each is tried with identities (refused, nothing
changes) and without (where it works, which is what identities are for).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from gossipreg import pki
from gossipreg.core import codec
from gossipreg.core.catalog import Record
from gossipreg.core.codec import Cert, RecordMsg
from gossipreg.core.errors import ConfigError
from gossipreg.core.identity import ALIVE_DOMAIN, RECORD_DOMAIN, Identity, TrustStore
from gossipreg.core.membership import Address, Alive, Leave, Member, MemberState, Suspect
from gossipreg.core.model import Node, Service
from gossipreg.core.node import NodeCore
from gossipreg.testing import CoreNetwork

from .node_helpers import sealed, service, stat, stream_frame

CA, CA_KEY = pki.create_ca("gossipreg test CA")
OTHER_CA, OTHER_CA_KEY = pki.create_ca("another CA")
_CERTS: dict[str, tuple[bytes, bytes]] = {}


def certificate(name: str, ca: tuple[bytes, bytes] = (CA, CA_KEY)) -> tuple[bytes, bytes]:
    if ca[0] is not CA:
        return pki.create_member_cert(ca[0], ca[1], name)
    if name not in _CERTS:
        _CERTS[name] = pki.create_member_cert(CA, CA_KEY, name)
    return _CERTS[name]


def identified(name: str) -> dict[str, Any]:
    """The identity and trust-store arguments of a member called ``name``."""
    return {"identity": Identity(*certificate(name), name=name), "trust": TrustStore(CA)}


def cluster(*names: str, identities: bool = True) -> tuple[CoreNetwork, list[NodeCore]]:
    net = CoreNetwork(wall0=time.time())
    cores = [net.add(n, **(identified(n) if identities else {})) for n in names]
    for c in cores[1:]:
        c.join([cores[0].address], net.now)
    net.run(3)
    return net, cores


def nodes(core: NodeCore, name: str) -> list[tuple[str, str, str]]:
    try:
        return [(s.version, n.id, n.address) for s in core.get_service(name) for n in s.nodes]
    except Exception:
        return []


def signed_by(ident: Identity, rec: Record) -> Record:
    return replace(rec, signature=ident.sign(RECORD_DOMAIN, codec.record_payload(rec)))


# ---------------------------------------------------------------- the cluster works


def test_a_cluster_with_identities_spreads_registrations_and_deregistrations() -> None:
    net, (a, b, c) = cluster("a", "b", "c")
    assert {m.name for m in c.members()} == {"a", "b", "c"}
    b.register(service("web", "b1"), None, net.now)
    net.run(1)
    assert nodes(a, "web") == nodes(b, "web") == nodes(c, "web") != []
    b.deregister(service("web", "b1"), net.now)
    net.run(1)
    assert nodes(a, "web") == nodes(c, "web") == []
    for core in (a, b, c):
        assert stat(core, "identity_bad_signature") == 0
        assert stat(core, "identity_unsigned") == 0


def test_a_joiner_learns_every_owners_certificate_and_record_in_the_push_pull() -> None:
    net, (a, b) = cluster("a", "b")
    a.register(service("svc-a", "a1"), None, net.now)
    b.register(service("svc-b", "b1"), 60.0, net.now)
    net.run(2)
    d = net.add("d", **identified("d"))
    d.join([a.address], net.now)
    net.run(0.1)  # the join's push-pull, no gossip round needed
    assert nodes(d, "svc-a")
    assert nodes(d, "svc-b")
    assert d.trust is not None
    assert d.trust.known("a")
    assert d.trust.known("b")
    assert stat(d, "identity_unknown_signer") == 0


def test_an_identity_for_another_name_is_a_config_error() -> None:
    net = CoreNetwork(wall0=time.time())
    with pytest.raises(ConfigError, match="certificate is 'b'"):
        net.add("a", identity=Identity(*certificate("b"), name="b"), trust=TrustStore(CA))
    with pytest.raises(ConfigError, match="both an identity and a trust store"):
        net.add("a", trust=TrustStore(CA))


# ---------------------------------------------------------------- forgeries by a key holder


def _forged_tombstone(net: CoreNetwork, victim_record: Record) -> Record:
    return Record(victim_record.service, victim_record.version, victim_record.node_id, victim_record.owner,
                  victim_record.stamp + (1 << 16), None, True)


@pytest.mark.parametrize("identities", [True, False], ids=["with-identities", "without"])
def test_a_forged_tombstone_hides_another_members_registration_only_without_identities(
    identities: bool,
) -> None:
    net, (_a, b, c) = cluster("a", "b", "c", identities=identities)
    [rec] = b.register(service("web", "b1"), None, net.now)
    net.run(1)
    assert nodes(c, "web")
    forged = _forged_tombstone(net, rec)
    x = Identity(*certificate("x"), name="x")  # a certified member of its own, or none at all
    for attempt in (forged, signed_by(x, forged)):
        c.receive_datagram(sealed(RecordMsg(attempt)), ("10.0.0.66", 7946), net.now)
    # Right after: without identities the registration is hidden until its owner hears of
    # the tombstone and corrects it (one gossip hop later); a forger repeating it keeps it
    # hidden most of the time. With identities it never is.
    assert bool(nodes(c, "web")) is identities
    if identities:
        assert stat(c, "identity_unsigned") == 1
        assert stat(c, "identity_bad_signature") == 1
        net.run(0.5)
        assert nodes(c, "web")


@pytest.mark.parametrize("identities", [True, False], ids=["with-identities", "without"])
def test_a_forged_override_stamped_ahead_moves_a_registration_only_without_identities(
    identities: bool,
) -> None:
    net, (_a, b, c) = cluster("a", "b", "c", identities=identities)
    [rec] = b.register(service("web", "b1"), None, net.now)
    net.run(1)
    ahead = c.catalog.clock.now() + (59 << 16) * 1000  # about 59 s ahead: within max_clock_drift
    forged = replace(rec, stamp=ahead, node=Node("b1", "10.66.66.66:80"), signature=b"")
    c.receive_datagram(sealed(RecordMsg(forged)), ("10.0.0.66", 7946), net.now)
    if identities:
        assert nodes(c, "web") == [("1.0", "b1", rec.node.address if rec.node else "")]
        assert stat(c, "identity_unsigned") == 1
    else:
        assert nodes(c, "web") == [("1.0", "b1", "10.66.66.66:80")]


@pytest.mark.parametrize("identities", [True, False], ids=["with-identities", "without"])
def test_a_ghost_member_with_a_registration_shows_only_without_identities(identities: bool) -> None:
    net, (_a, _b, c) = cluster("a", "b", "c", identities=identities)
    ghost_addr = Address("10.0.0.66", 7946)
    ghost = Alive("ghost", 0, ghost_addr, b"", c.catalog.clock.now())
    x = Identity(*certificate("x"), name="x")
    if identities:  # the best a certified member can do: sign the ghost's alive with its own key
        ghost = replace(ghost, signature=x.sign(b"gossipreg/alive/v1", codec.alive_payload(ghost)),
                        certificate=x.certificate_der)
    rec = Record("ghost-svc", "1", "g1", "ghost", c.catalog.clock.now(), None, False,
                 Node("g1", "10.66.0.1:1"))
    c.receive_datagram(sealed(ghost, RecordMsg(signed_by(x, rec) if identities else rec)),
                       (ghost_addr.host, ghost_addr.port), net.now)
    net.run(0.01)
    names = {m.name for m in c.members()}
    if identities:
        assert "ghost" not in names
        assert not nodes(c, "ghost-svc")
        assert stat(c, "identity_bad_certificate") == 1  # x's certificate is not the ghost's
    else:
        assert "ghost" in names
        assert nodes(c, "ghost-svc")


@pytest.mark.parametrize("identities", [True, False], ids=["with-identities", "without"])
def test_a_forged_alive_at_a_huge_incarnation_is_refused_with_identities(identities: bool) -> None:
    net, (_a, b, c) = cluster("a", "b", "c", identities=identities)
    huge = Alive("b", 2**40, b.address, b"", b.membership.local_alive().epoch)
    c.receive_datagram(sealed(huge), ("10.0.0.66", 7946), net.now)
    got = c.membership.get("b")
    assert got is not None
    assert (got.incarnation == 2**40) is not identities
    if identities:
        assert stat(c, "identity_unsigned") == 1


def test_a_push_pull_state_without_a_proof_adds_no_member() -> None:
    net, (a, _b) = cluster("a", "b")
    ghost = ["ghost", 0, "10.0.0.66", 7946, b"", "alive", 1]
    init = stream_frame([codec.PP_INIT, False, [ghost], {}])
    a.receive_stream(("in", 77), ("10.0.0.66", 7946), init, net.now)
    assert "ghost" not in {m.name for m in a.members()}
    assert stat(a, "identity_unsigned") == 1


def test_a_certificate_of_another_ca_is_refused() -> None:
    net, (a, _b) = cluster("a", "b")
    stranger = Identity(*certificate("s", (OTHER_CA, OTHER_CA_KEY)), name="s")
    alive = Alive("s", 0, Address("10.0.0.66", 7946), b"", 1)
    alive = replace(alive, signature=stranger.sign(b"gossipreg/alive/v1", codec.alive_payload(alive)),
                    certificate=stranger.certificate_der)
    a.receive_datagram(sealed(alive), ("10.0.0.66", 7946), net.now)
    assert "s" not in {m.name for m in a.members()}
    assert stat(a, "identity_bad_certificate") == 1


def test_a_key_holder_can_still_register_in_its_own_name() -> None:
    """Identities bind records to their owner, not to honesty: a certified member may
    register what it likes under its own name (and is accountable for it)."""
    net, (_a, _b, c) = cluster("a", "b", "c")
    x_ident = Identity(*certificate("x"), name="x")
    x_alive = Alive("x", 0, Address("10.0.0.66", 7946), b"", c.catalog.clock.now())
    x_alive = replace(x_alive, signature=x_ident.sign(b"gossipreg/alive/v1", codec.alive_payload(x_alive)),
                      certificate=x_ident.certificate_der)
    own = Record("x-svc", "1", "x1", "x", c.catalog.clock.now(), None, False, Node("x1", "10.66.0.1:1"))
    c.receive_datagram(sealed(x_alive, RecordMsg(signed_by(x_ident, own))), ("10.0.0.66", 7946), net.now)
    assert "x" in {m.name for m in c.members() if m.state is MemberState.ALIVE}
    assert nodes(c, "x-svc") == [("1", "x1", "10.66.0.1:1")]


def test_signed_statements_cost_bytes_only_with_identities() -> None:
    net, (a,) = cluster("a")
    plain_net, (p,) = cluster("a", identities=False)
    svc = Service("web", "1", nodes=(Node("n1", "10.0.0.1:80"),))
    [rec] = a.register(svc, None, net.now)
    [prec] = p.register(svc, None, plain_net.now)
    signed = codec.encode_message(RecordMsg(a._signed_record(rec)))
    unsigned = codec.encode_message(RecordMsg(prec))
    assert len(signed) - len(unsigned) == 66  # a 64-byte signature as msgpack bin
    assert a.trust is not None
    assert a.trust.verify("a", RECORD_DOMAIN, codec.record_payload(rec), a._signed_record(rec).signature)


def test_an_alive_carries_its_certificate_down_the_tree_but_not_in_gossip() -> None:
    # The certificate (hundreds of bytes) rides where every member gets it once: down
    # the broadcast tree after a join. Gossip and piggybacked copies carry the
    # signature alone; a member lacking the certificate asks for it.
    net, (a, b, _) = cluster("a", "b", "c")
    start = len(net.log)
    # b's suspicion of a makes a refute: a new alive, gossiped (refutations use no tree).
    a.receive_datagram(sealed(Suspect("a", a.membership.local.incarnation, "b")), b.address, net.now)
    net.run(1.0)
    alives = [
        m for dg in net.log[start:] if dg.src == "a"
        for m in net.messages(dg) if isinstance(m, Alive) and m.name == "a"
    ]
    assert alives
    assert all(m.signature and not m.certificate for m in alives)
    # A joiner's own alive goes down its tree with the certificate.
    d = net.add("d", **identified("d"))
    start = len(net.log)
    d.join([a.address], net.now)
    net.run(1.0)
    down_tree = [
        m for dg in net.log[start:] if dg.src == "d"
        for msgs in [net.messages(dg)] if msgs and isinstance(msgs[0], codec.Tree)
        for m in msgs if isinstance(m, Alive) and m.name == "d"
    ]
    assert down_tree
    assert all(m.certificate for m in down_tree)


@pytest.mark.parametrize("identities", [True, False], ids=["with-identities", "without"])
def test_a_forged_leave_hides_a_member_only_without_identities(identities: bool) -> None:
    net, (_a, b, c) = cluster("a", "b", "c", identities=identities)
    b.register(service("web", "b1"), None, net.now)
    net.run(1)
    forged = Leave("b", b.membership.local_alive().incarnation)
    c.receive_datagram(sealed(forged), ("10.0.0.66", 7946), net.now)
    got = c.membership.get("b")
    assert got is not None
    assert (got.state is MemberState.LEFT) is not identities
    assert bool(nodes(c, "web")) is identities


def test_a_members_own_leave_is_signed_and_believed() -> None:
    net, (a, b, c) = cluster("a", "b", "c")
    b.leave(net.now)
    net.run(0.5)
    for core in (a, c):
        got = core.membership.get("b")
        assert got is not None
        assert got.state is MemberState.LEFT
        assert stat(core, "identity_unsigned") == 0


def test_a_statement_of_an_unknown_signer_waits_for_its_certificate_from_the_sender() -> None:
    """A gossip copy of an alive carries no certificate: the receiver asks the sender
    for it, and handles the alive once it is admitted."""
    net, (a, b) = cluster("a", "b")
    d_ident = Identity(*certificate("d"), name="d")
    d_alive = Alive("d", 0, Address("10.0.0.9", 7946), b"", a.catalog.clock.now())
    d_alive = replace(d_alive, signature=d_ident.sign(b"gossipreg/alive/v1", codec.alive_payload(d_alive)))
    assert a.trust is not None
    assert b.trust is not None
    b.trust.admit("d", d_ident.certificate_der, time.time())  # b knows d's certificate, a does not
    a.receive_datagram(sealed(d_alive), b.address, net.now)
    assert "d" not in {m.name for m in a.members()}
    assert stat(a, "identity_certificates_asked") == 1
    net.run(0.01)  # a asks b, b answers, a admits and handles the alive
    assert stat(b, "identity_certificates_sent") == 1
    assert "d" in {m.name for m in a.members()}
    assert a.trust.known("d")


def test_a_certificate_nobody_asked_for_is_not_admitted() -> None:
    net, (a, _b) = cluster("a", "b")
    a.receive_datagram(sealed(Cert("z", Identity(*certificate("z"), name="z").certificate_der)),
                       ("10.0.0.66", 7946), net.now)
    assert a.trust is not None
    assert not a.trust.known("z")


def test_a_record_of_an_unknown_owner_waits_for_its_certificate_from_the_sender() -> None:
    """A gossip copy of a record carries no certificate: the receiver parks it, asks the
    sender for the owner's certificate, and merges the record once it is admitted."""
    net, (a, b) = cluster("a", "b")
    d_ident = Identity(*certificate("d"), name="d")
    rec = signed_by(d_ident, Record("d-svc", "1", "d1", "d", a.catalog.clock.now(), None, False,
                                    Node("d1", "10.66.0.4:1")))
    assert a.trust is not None
    assert b.trust is not None
    b.trust.admit("d", d_ident.certificate_der, time.time())  # b knows d's certificate, a does not
    a.receive_datagram(sealed(RecordMsg(rec)), b.address, net.now)
    assert a.catalog.get(rec.key) is None
    assert stat(a, "identity_unknown_signer") == 1
    assert stat(a, "identity_certificates_asked") == 1
    net.run(0.01)  # a asks b, b answers, a admits d's certificate and merges the record
    assert a.trust.known("d")
    assert a.catalog.get(rec.key) == rec
    assert stat(a, "identity_bad_signature") == 0


def test_an_unsigned_leave_is_refused_and_counted_as_unsigned() -> None:
    net, (_a, b, c) = cluster("a", "b", "c")
    c.receive_datagram(sealed(Leave("b", b.membership.local_alive().incarnation)), ("10.0.0.66", 7946),
                       net.now)
    assert net.state("c", "b") is MemberState.ALIVE
    assert stat(c, "identity_unsigned") == 1
    assert stat(c, "identity_bad_signature") == 0  # refused as unsigned, before any verification


def test_statements_waiting_for_a_certificate_are_bounded_and_the_dropped_ones_counted() -> None:
    """At most 16 statements wait per unknown signer and 256 signers wait (docs/security.md):
    beyond, the oldest statement of the signer, or the oldest signer's statements, are
    dropped and counted."""
    net, (a, _b) = cluster("a", "b")
    sender = ("10.0.0.66", 7946)
    junk = bytes(64)  # a signature nobody can check yet: the signers' certificates are unknown
    for inc in range(17):
        a.receive_datagram(sealed(Leave("z0", inc, junk)), sender, net.now)
    assert stat(a, "identity_unknown_signer") == 17
    assert stat(a, "identity_pending_dropped") == 1  # z0's first statement
    for i in range(1, 256):
        a.receive_datagram(sealed(Leave(f"z{i}", 0, junk)), sender, net.now)
    assert stat(a, "identity_pending_dropped") == 1  # 256 signers wait
    a.receive_datagram(sealed(Leave("z256", 0, junk)), sender, net.now)
    assert stat(a, "identity_pending_dropped") == 1 + 16  # z0's 16 statements make room


def test_a_signers_certificate_is_asked_for_at_most_once_per_probe_interval() -> None:
    net, (a, _b) = cluster("a", "b")
    interval = a.config.probe_interval
    waiting = sealed(Leave("z", 0, bytes(64)))
    sender = ("10.0.0.66", 7946)
    a.receive_datagram(waiting, sender, net.now)
    assert stat(a, "identity_certificates_asked") == 1
    net.run(interval / 2)
    a.receive_datagram(waiting, sender, net.now)
    assert stat(a, "identity_certificates_asked") == 1  # asked just now: not again
    net.run(interval / 2)
    a.receive_datagram(waiting, sender, net.now)
    assert stat(a, "identity_certificates_asked") == 2  # a probe interval on: asked again
    assert stat(a, "identity_unknown_signer") == 3


def test_the_memory_of_certificates_asked_is_bounded_and_starts_afresh_when_full() -> None:
    """Which signers were asked, and when, is remembered for 1,024 signers (4 x the 256
    that may wait): the next one clears it, so a signer asked moments ago is asked again."""
    net, (a, _b) = cluster("a", "b")
    sender = ("10.0.0.66", 7946)

    def statement_of(name: str) -> None:
        a.receive_datagram(sealed(Leave(name, 0, bytes(64))), sender, net.now)

    for i in range(1024):
        statement_of(f"z{i}")
    statement_of("z0")
    assert stat(a, "identity_certificates_asked") == 1024  # z0 was asked just now
    statement_of("z1024")  # the memory is full: cleared, then z1024 remembered
    assert stat(a, "identity_certificates_asked") == 1025
    statement_of("z0")
    assert stat(a, "identity_certificates_asked") == 1026


def _push_pull_init(core: NodeCore, states: list[list[Any]], stream: int, now: float) -> None:
    """``states`` arrive at ``core`` in a push-pull init from a peer (its reply is not read)."""
    core.receive_stream(("in", stream), ("10.0.0.66", 7946),
                        stream_frame([codec.PP_INIT, False, states, {}]), now)


def test_a_push_pull_proof_repeating_a_verified_alive_with_another_signature_is_refused() -> None:
    """A proof equal to the alive a member already verified is taken as verified (push-pulls
    repeat every member's proof); with the same fields but another signature it is checked,
    and refused: it cannot vouch for a state (here, a suspicion of the member)."""
    net, (_a, b, c) = cluster("a", "b", "c")
    held = net.member("c", "b")
    genuine = b._signed_alive(b.membership.local_alive())
    assert (genuine.incarnation, genuine.address, genuine.meta, genuine.epoch) == (
        held.incarnation, held.address, held.meta, held.epoch)  # what c verified and holds
    x = Identity(*certificate("x"), name="x")
    bad = replace(genuine, signature=x.sign(ALIVE_DOMAIN, codec.alive_payload(genuine)))
    _push_pull_init(c, [codec.encode_member(replace(held, state=MemberState.SUSPECT), bad)], 77, net.now)
    assert net.state("c", "b") is MemberState.ALIVE
    assert stat(c, "identity_bad_signature") == 1
    _push_pull_init(c, [codec.encode_member(replace(held, state=MemberState.SUSPECT), genuine)], 78, net.now)
    assert net.state("c", "b") is MemberState.SUSPECT  # (suspicions are not signed: any proof of the state)
    assert stat(c, "identity_bad_signature") == 1


def test_an_unsigned_dead_state_is_believed_only_up_to_one_incarnation_past_the_one_held() -> None:
    """A dead or left push-pull state without proof is an accusation, which the accused
    can refute: taken for a member unknown here, or within one incarnation of the one
    held, and refused and counted beyond."""
    net, (_a, _b, c) = cluster("a", "b", "c")
    held = net.member("c", "b")
    dead = replace(held, state=MemberState.DEAD)
    _push_pull_init(c, [codec.encode_member(replace(dead, incarnation=held.incarnation + 2))], 77, net.now)
    assert net.member("c", "b") == held
    assert stat(c, "identity_unsigned") == 1
    _push_pull_init(c, [codec.encode_member(replace(dead, incarnation=held.incarnation + 1))], 78, net.now)
    assert net.state("c", "b") is MemberState.SUSPECT  # a remote death is suspected here first
    assert net.member("c", "b").incarnation == held.incarnation + 1
    _push_pull_init(c, [codec.encode_member(replace(dead, name="gone", incarnation=9))], 79, net.now)
    assert "gone" in {m.name for m in c.membership.graveyard()}  # remembered as dead
    assert stat(c, "identity_unsigned") == 1


def _dead_with_proofs(names: list[str]) -> list[list[Any]]:
    """Push-pull states of members ``names``, dead, each with its own signed alive as proof."""
    states = []
    for i, name in enumerate(names):
        ident = Identity(*certificate(name), name=name)
        alive = Alive(name, 3, Address("10.0.1.1", 10000 + i), b"", 1)
        proof = replace(alive, signature=ident.sign(ALIVE_DOMAIN, codec.alive_payload(alive)),
                        certificate=ident.certificate_der)
        states.append(codec.encode_member(Member(name, alive.address, 3, MemberState.DEAD, epoch=1), proof))
    return states


def test_proofs_of_departed_members_are_shared_until_they_pile_up_then_forgotten() -> None:
    """The proof of a member gone from the table (reaped, or known only as dead) is kept,
    and shared with its graveyard state in push-pulls. Pruning the proofs costs a pass over them, so
    a push-pull does it only once there are more than twice the table's members plus 64:
    then those of every member not in the table are forgotten at once."""
    net, (a, _b) = cluster("a", "b")
    assert len(a.members()) == 2  # 2 x 2 + 64 = 68 proofs are kept
    few = [f"g{i}" for i in range(10)]
    _push_pull_init(a, _dead_with_proofs(few), 77, net.now)
    shared = {m.name: proof for m, proof in codec.decode_member_proofs(a._member_states())}
    assert set(few) <= set(shared)
    assert all(shared[name] is not None for name in few)
    at_threshold = [f"g{i}" for i in range(10, 67)]  # 1 + 67 = 68 proofs: not past 68
    _push_pull_init(a, _dead_with_proofs(at_threshold), 78, net.now)
    assert len(a.members()) == 2
    shared = {m.name: proof for m, proof in codec.decode_member_proofs(a._member_states())}
    assert all(shared[name] is not None for name in few + at_threshold)  # all still kept
    many = [f"g{i}" for i in range(67, 70)]  # 1 + 70 proofs: past 68
    _push_pull_init(a, _dead_with_proofs(many), 79, net.now)
    shared = {m.name: proof for m, proof in codec.decode_member_proofs(a._member_states())}
    assert set(few + at_threshold + many) <= set(shared)  # still in the graveyard...
    assert all(shared[name] is None for name in few + at_threshold + many)  # ...without their proofs
    assert shared["b"] is not None


def test_a_certificate_asked_for_that_does_not_admit_is_refused_and_counted() -> None:
    """The answer to a certificate request is checked like any certificate: one of another
    CA is refused and counted, and what waits for the signer keeps waiting for a good one."""
    net, (a, b) = cluster("a", "b")
    d_ident = Identity(*certificate("d"), name="d")
    rec = signed_by(d_ident, Record("d-svc", "1", "d1", "d", a.catalog.clock.now(), None, False,
                                    Node("d1", "10.66.0.4:1")))
    a.receive_datagram(sealed(RecordMsg(rec)), b.address, net.now)
    assert stat(a, "identity_certificates_asked") == 1
    forged_cert, _ = certificate("d", (OTHER_CA, OTHER_CA_KEY))
    a.receive_datagram(sealed(Cert("d", forged_cert)), ("10.0.0.66", 7946), net.now)
    assert a.trust is not None
    assert not a.trust.known("d")
    assert stat(a, "identity_bad_certificate") == 1
    assert a.catalog.get(rec.key) is None
    a.receive_datagram(sealed(Cert("d", d_ident.certificate_der)), b.address, net.now)
    assert a.trust.known("d")
    assert a.catalog.get(rec.key) == rec
