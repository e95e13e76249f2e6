"""Codec: round trips of catalog encodings, and strict decoding of hostile bytes."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossipreg.core.catalog import Offer, Record
from gossipreg.core.codec import (
    ALIVE,
    SUSPECT,
    Ack,
    Message,
    Nack,
    Ping,
    PingReq,
    RecordMsg,
    decode_digest,
    decode_hashes,
    decode_member,
    decode_message,
    decode_offer,
    decode_record,
    decode_transfer,
    encode_digest,
    encode_hashes,
    encode_member,
    encode_message,
    encode_offer,
    encode_record,
    encode_transfer,
    pack,
    pack_datagram,
    pack_stream,
    unpack,
    unpack_datagram,
    unpack_stream,
)
from gossipreg.core.errors import DecodeError
from gossipreg.core.membership import (
    Address,
    Alive,
    Dead,
    Leave,
    Member,
    MemberState,
    Suspect,
)
from gossipreg.core.model import Endpoint, Node, Value
from tests.strategies import services


def live(**kw: Any) -> Record:
    base: dict[str, Any] = {
        "service": "greeter",
        "version": "1.0",
        "node_id": "n1",
        "owner": "m1",
        "stamp": 12345 << 16,
        "ttl": 30.0,
        "deleted": False,
        "node": Node("n1", "10.0.0.1:8080", None, {"server": "grpc"}),
        "metadata": {"team": "a"},
        "endpoints": (Endpoint("Greeter.Hello", Value("Req", "Req", (Value("name", "string"),))),),
    }
    base.update(kw)
    from gossipreg.core.model import Service

    svc = Service(base["service"], base["version"], base["metadata"], base["endpoints"])
    base["metadata"], base["endpoints"] = svc.metadata, svc.endpoints
    return Record(**base)


def roundtrip(rec: Record) -> Record:
    return decode_record(unpack(pack(encode_record(rec))))


def test_live_record_round_trip() -> None:
    rec = live()
    assert roundtrip(rec) == rec


def test_record_without_service_fields_round_trip() -> None:
    rec = live(metadata={}, endpoints=(), ttl=None)
    enc = encode_record(rec)
    assert enc[8] is None, "empty service fields travel as nil"
    assert roundtrip(rec) == rec


def test_tombstone_round_trip() -> None:
    tomb = Record("greeter", "1.0", "n1", "m1", 99 << 16, None, True)
    assert roundtrip(tomb) == tomb


def test_node_id_is_not_repeated_on_the_wire() -> None:
    enc = encode_record(live())
    assert "n1" not in enc[7], "the node array carries no id; the record's node_id is used"


def test_transfer_carries_age_in_milliseconds() -> None:
    rec = live()
    out, age = decode_transfer(unpack(pack(encode_transfer(rec, 1.2345))))
    assert out == rec
    assert age == pytest.approx(1.235, abs=0.001)


def test_digest_offer_hashes_round_trip() -> None:
    digest = {"a": (5, 2**64 - 1), "b": (0, 0)}
    assert decode_digest(unpack(pack(encode_digest(digest)))) == digest
    offer = Offer({"a": {1: 2, 2**63: 7}}, [(live(), 3.0)], ["z"])
    got = decode_offer(unpack(pack(encode_offer(offer))))
    assert got.versions == offer.versions
    assert got.absent == offer.absent
    assert got.records[0][0] == offer.records[0][0]
    assert decode_hashes(unpack(pack(encode_hashes([1, 2**64 - 1])))) == [1, 2**64 - 1]


def test_service_fields_are_shared_between_nodes_of_a_service() -> None:
    a = roundtrip(live(node_id="n1", node=Node("n1", "h:1")))
    b = roundtrip(live(node_id="n2", node=Node("n2", "h:2")))
    assert a.endpoints is b.endpoints, "decoded service fields are memoised by their bytes"


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (0, "", "empty"),
        (0, 5, "expected str"),
        (0, "x" * 300, "exceeds"),
        (2, "", "empty"),
        (3, "", "empty"),
        (4, -1, "out of range"),
        (4, 2**64, "out of range"),
        (4, True, "expected int"),
        (5, 0, "positive"),
        (5, 1.5, "expected int"),
        (6, 1, "expected bool"),
        (7, None, "needs a node"),
        (7, ["h", 70000, {}], "out of range"),
        (7, ["h", None, {"k": 1}], "invalid"),
        (7, ["h", None], "expected 3 items"),
        (8, b"\xc1", "malformed"),
        (8, "not bytes", "expected bin"),
        (8, pack([{}, [["", None, None, {}]]]), "invalid"),
    ],
)
def test_malformed_record_fields_raise_decode_error(index: int, value: object, message: str) -> None:
    enc = unpack(pack(encode_record(live())))
    enc[index] = value
    with pytest.raises(DecodeError, match=message):
        decode_record(enc)


def test_tombstone_with_payload_is_rejected() -> None:
    enc = encode_record(live())
    enc[6] = True
    with pytest.raises(DecodeError, match="tombstone"):
        decode_record(unpack(pack(enc)))


def test_unpack_rejects_trailing_and_truncated_data() -> None:
    data = pack([1, 2, 3])
    with pytest.raises(DecodeError):
        unpack(data + b"\x00")
    with pytest.raises(DecodeError):
        unpack(data[:-1])
    with pytest.raises(DecodeError):
        unpack("text")  # type: ignore[arg-type]


def test_unpack_rejects_non_string_map_keys() -> None:
    with pytest.raises(DecodeError):
        unpack(msgpack.packb({1: 2}))


_msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=10) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=30,
)


def _decoders() -> list[Any]:
    return [decode_record, decode_transfer, decode_digest, decode_offer, decode_hashes]


@settings(max_examples=300, deadline=None)
@given(obj=_msgpack_values, which=st.sampled_from(range(5)))
def test_arbitrary_structures_only_raise_decode_error(obj: object, which: int) -> None:
    decoder = _decoders()[which]
    with contextlib.suppress(DecodeError):
        decoder(obj)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    try:
        obj = unpack(data)
    except DecodeError:
        return
    for decoder in _decoders():
        with contextlib.suppress(DecodeError):
            decoder(obj)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_records_only_raise_decode_error(data: st.DataObject) -> None:
    """Flip, drop or insert bytes of a valid encoded record: decode or DecodeError, nothing else."""
    raw = bytearray(pack(encode_record(live())))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        i = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "drop":
            del raw[i]
        else:
            raw.insert(i, data.draw(st.integers(0, 255)))
        if not raw:
            break
    with contextlib.suppress(DecodeError):
        decode_record(unpack(bytes(raw)))


@settings(max_examples=100, deadline=None)
@given(svc=services(), stamp=st.integers(1, 2**64 - 1), ttl=st.none() | st.integers(1, 10**6))
def test_any_valid_service_round_trips_as_records(svc: Any, stamp: int, ttl: int | None) -> None:
    for node in svc.nodes:
        rec = Record(
            svc.name,
            svc.version,
            node.id,
            "owner",
            stamp,
            None if ttl is None else ttl / 1000,
            False,
            node,
            svc.metadata,
            svc.endpoints,
        )
        assert roundtrip(rec) == rec


# -- protocol messages -----------------------------------------------------------

MESSAGES: list[Message] = [
    Ping(1, "b", "a", Address("10.0.0.1", 7946)),
    PingReq(2**63, "c", Address("::1", 1), "a", Address("10.0.0.1", 7946), False),
    Ack(3, "b"),
    Nack(4, "b"),
    Alive("a", 7, Address("10.0.0.1", 7946), b"\x00meta"),
    Suspect("b", 0, "a"),
    Dead("b", 2**64 - 1, "a"),
    Leave("a", 9),
    RecordMsg(live()),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_message_round_trip(msg: Any) -> None:
    assert decode_message(unpack(encode_message(msg))) == msg


def test_datagram_packs_encoded_messages_without_reencoding() -> None:
    encoded = [encode_message(m) for m in MESSAGES * 3]  # 27 messages: a 3-byte array header
    data = pack_datagram(encoded)
    assert len(data) == 1 + 3 + sum(len(e) for e in encoded)
    assert [decode_message(m) for m in unpack_datagram(data)] == MESSAGES * 3


@pytest.mark.parametrize(
    "bad",
    [
        [],
        [99, 1],
        [True, 1, "b", "a", "h", 1],  # bool is not a type tag
        [0, 1, "b", "a", "h"],  # arity
        [0, 1, "", "a", "h", 1],  # empty name
        [0, 1, "b", "a", "h", 65536],  # port range
        [4, "a", 1, "h", 1, b"x" * 513],  # meta too large
        [4, "a", 1, "h", 1, "text"],  # meta must be bin
        [1, 1, "c", "h", 1, "a", "h", 1, 1],  # nack flag must be bool
        [5, "b", -1, "a"],  # negative incarnation
        [8, "not a record"],
    ],
)
def test_malformed_messages_raise_decode_error(bad: list[Any]) -> None:
    with pytest.raises(DecodeError):
        decode_message(bad)


def test_datagram_version_and_shape_are_checked() -> None:
    good = pack_datagram([encode_message(Ack(1, "a"))])
    with pytest.raises(DecodeError, match="version"):
        unpack_datagram(b"\x01" + good[1:])
    with pytest.raises(DecodeError):
        unpack_datagram(b"")
    with pytest.raises(DecodeError, match="array"):
        unpack_datagram(good[:1] + pack({"a": 1}))


def test_member_state_round_trip_and_validation() -> None:
    m = Member("a", Address("10.0.0.1", 7946), 3, MemberState.SUSPECT, b"m", epoch=(1 << 64) - 1)
    assert decode_member(unpack(pack(encode_member(m)))) == m
    bad = encode_member(m)
    bad[5] = "zombie"
    with pytest.raises(DecodeError, match="state"):
        decode_member(bad)
    for epoch in (-1, 1 << 64, "1", None):
        bad = encode_member(m)
        bad[6] = epoch
        with pytest.raises(DecodeError, match="epoch"):
            decode_member(bad)
    with pytest.raises(DecodeError):
        decode_member(encode_member(m)[:6])  # the layout without the epoch


def test_alive_carries_the_process_epoch() -> None:
    msg = Alive("a", 2, Address("10.0.0.1", 7946), b"m", 123456789)
    raw = unpack(encode_message(msg))
    assert raw == [4, "a", 2, "10.0.0.1", 7946, b"m", 123456789]
    assert decode_message(raw) == msg
    with pytest.raises(DecodeError):
        decode_message(raw[:6])
    with pytest.raises(DecodeError, match="epoch"):
        decode_message([*raw[:6], -5])


def test_stream_messages_need_version_and_type() -> None:
    assert unpack_stream(pack_stream([16, True])) == [16, True]
    with pytest.raises(DecodeError):
        unpack_stream(b"\x00" + pack([16]))
    with pytest.raises(DecodeError):
        unpack_stream(pack_stream(["x"]))


@settings(max_examples=300, deadline=None)
@given(obj=_msgpack_values)
def test_arbitrary_message_structures_only_raise_decode_error(obj: object) -> None:
    with contextlib.suppress(DecodeError):
        decode_message(obj)
    with contextlib.suppress(DecodeError):
        decode_member(obj)


# ------------------------------------------------ names from peers follow the local rule
#
# A key holder must not get a name into a member's view (or logs) that the local API
# would refuse: every name rule of gossipreg.core.model applies to decoded records, and
# member names and hosts refuse the same control characters.

_CONTROLS = ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]


def _raw_record(**changes: Any) -> list[Any]:
    """A valid record array (``live()``), with some raw fields replaced."""
    enc = encode_record(live())
    fields = ["service", "version", "node_id", "owner", "stamp", "ttl", "deleted", "node", "fields"]
    for name, value in changes.items():
        enc[fields.index(name)] = value
    return enc


@pytest.mark.parametrize("char", _CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda c: _raw_record(service=f"svc{c}x"), "record.service"),
        (lambda c: _raw_record(version=f"1{c}"), "record.version"),
        (lambda c: _raw_record(node_id=f"{c}n1"), "record.node_id"),
        (lambda c: _raw_record(owner=f"m1{c}"), "record.owner"),
        (lambda c: _raw_record(node=[f"10.0.0.1{c}:80", None, {}]), "node.address"),
        (lambda c: _raw_record(node=["10.0.0.1:80", None, {f"k{c}": "v"}]), "node.metadata"),
        (lambda c: _raw_record(fields=pack([{f"k{c}": "v"}, []])), "service.metadata"),
        (lambda c: _raw_record(fields=pack([{}, [[f"E{c}", None, None, {}]]])), "endpoint.name"),
        (
            lambda c: _raw_record(fields=pack([{}, [["E", ["R", f"T{c}", []], None, {}]]])),
            "value.type",
        ),
    ],
    ids=["service", "version", "node_id", "owner", "address", "node_meta_key", "service_meta_key",
         "endpoint", "value_type"],
)
def test_a_record_with_a_control_character_in_a_name_is_a_decode_error(
    make: Any, field: str, char: str
) -> None:
    with pytest.raises(DecodeError, match=f"{field}.*U\\+{ord(char):04X}"):
        decode_record(unpack(pack(make(char))))


def test_metadata_values_may_hold_control_characters_on_the_wire() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    rec = live(node=Node("n1", "10.0.0.1:8080", None, {"cert": pem}), metadata={"doc": "a\tb\x00"})
    assert roundtrip(rec) == rec


@pytest.mark.parametrize("char", _CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(
    "make",
    [
        lambda c: [4, f"m{c}", 1, "10.0.0.1", 7946, b"", 1],  # alive.name
        lambda c: [4, "m", 1, f"10.0.0.1{c}", 7946, b"", 1],  # alive.address host
        lambda c: [0, 1, "t", f"s{c}", "10.0.0.1", 7946],  # ping.source
        lambda c: [5, "m", 1, f"accuser{c}"],  # suspect.from
        lambda c: [7, f"{c}", 1],  # leave.name
        lambda c: [9, f"root{c}", 0],  # tree.root
    ],
    ids=["alive_name", "alive_host", "ping_source", "suspect_from", "leave_name", "tree_root"],
)
def test_a_member_name_or_host_with_a_control_character_is_a_decode_error(make: Any, char: str) -> None:
    with pytest.raises(DecodeError, match="control character"):
        decode_message(make(char))


def test_a_member_state_with_a_control_character_in_its_name_is_a_decode_error() -> None:
    good = encode_member(Member("m1", Address("10.0.0.1", 7946), 1, MemberState.ALIVE))
    assert decode_member(good).name == "m1"
    with pytest.raises(DecodeError, match=r"member\.name: contains the control character U\+000A"):
        decode_member(["m1\nINFO forged", *good[1:]])


def test_the_longest_ttl_fits_the_wire() -> None:
    from gossipreg.core.codec import MAX_TTL_MS
    from gossipreg.core.model import MAX_TTL

    assert MAX_TTL * 1000 <= MAX_TTL_MS < (MAX_TTL + 1) * 1000
    rec = live(ttl=float(MAX_TTL))
    assert roundtrip(rec).ttl == MAX_TTL


# ---------------------------------------------------------------- peeking


def test_peek_update_reads_the_fields_that_judge_news_and_nothing_else() -> None:
    from gossipreg.core.codec import (
        ALIVE,
        DEAD,
        RECORD,
        SUSPECT,
        PeekedAccusation,
        PeekedAlive,
        PeekedRecord,
        peek_update,
    )

    assert peek_update([ALIVE, "a", 3, "10.0.0.1", 7946, b"", 1]) == PeekedAlive("a", 3, "10.0.0.1", 7946)
    assert peek_update([ALIVE, "a", 3, "h", 1, b"", 1, b"s" * 64]) == PeekedAlive("a", 3, "h", 1)
    assert peek_update([SUSPECT, "a", 3, "b"]) == PeekedAccusation("a", 3, "b", False)
    assert peek_update([DEAD, "a", 3, "b"]) == PeekedAccusation("a", 3, "b", True)
    rec = ["svc", "1", "n1", "o", 5, None, False, None, None]
    assert peek_update([RECORD, rec]) == PeekedRecord(("svc", "1", "n1"), 5, "o", False)
    # Wrong shapes or types: not peeked (the message is then decoded in full).
    for raw in ([ALIVE, 7, 3, "h", 1, b"", 1], [ALIVE, "a", "3", "h", 1, b"", 1], [SUSPECT, "a", -1, "b"],
                [DEAD, "a", 3, ""], [RECORD, rec[:8]], [RECORD, [*rec[:4], "5", *rec[5:]]], [True, "a"],
                "x", [], [ALIVE, "a"]):
        assert peek_update(raw) is None, raw


# ------------------------------------------------ gaps found by mutation testing
# (scripts/mutation; each test names the behaviour it protects)


def _wrong_length(obj: list[Any]) -> list[list[Any]]:
    """The array one item short and one item long."""
    return [obj[:-1], [*obj, None]]


def test_nested_arrays_of_the_wrong_length_raise_decode_error() -> None:
    rec = encode_record(live())
    node = rec[7]
    fields = unpack(rec[8])
    endpoint = fields[1][0]
    value = endpoint[1]
    cases: list[tuple[Any, Any]] = []
    for bad in _wrong_length(node):
        cases.append((decode_record, [*rec[:7], bad, rec[8]]))
    for bad in _wrong_length(fields):
        cases.append((decode_record, [*rec[:8], pack(bad)]))
    for bad in _wrong_length(endpoint):
        cases.append((decode_record, [*rec[:8], pack([fields[0], [bad]])]))
    for bad in _wrong_length(value):
        cases.append((decode_record, [*rec[:8], pack([fields[0], [[endpoint[0], bad, None, {}]]])]))
    transfer = encode_transfer(live(), 1.0)
    cases += [(decode_transfer, bad) for bad in _wrong_length(transfer)]
    cases += [(decode_digest, {"m1": bad}) for bad in _wrong_length([1, 2])]
    offer = encode_offer(Offer({}, [], []))
    cases += [(decode_offer, bad) for bad in _wrong_length(offer)]
    member = encode_member(Member("a", Address("10.0.0.1", 1), 1, MemberState.ALIVE))
    cases += [(decode_member, bad) for bad in _wrong_length(member)]
    for decode, bad in cases:
        with pytest.raises(DecodeError):
            decode(unpack(pack(bad)))


@pytest.mark.parametrize("state", [[], {}, ["alive"], b"alive", 1, None, "zombie"])
def test_a_member_state_of_the_wrong_type_raises_decode_error(state: object) -> None:
    raw = encode_member(Member("a", Address("10.0.0.1", 1), 1, MemberState.ALIVE))
    raw[5] = state
    with pytest.raises(DecodeError, match=r"member\.state"):
        decode_member(raw)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", bytes([0x47]), bytes([0x47]) + pack([]), bytes([0x47]) + pack(["x", 1]),
     bytes([0x47]) + pack({"a": 1}), bytes([0x47]) + pack(3), bytes([0x47]) + pack([True])],
)
def test_bad_stream_documents_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        unpack_stream(data)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 1023, 1024])
def test_datagrams_of_any_message_count_round_trip(n: int) -> None:
    msgs = [encode_message(Ack(i, "m")) for i in range(n)]
    raw = unpack_datagram(pack_datagram(msgs))
    assert [decode_message(r) for r in raw] == [Ack(i, "m") for i in range(n)]


def test_a_datagram_of_more_than_max_messages_is_refused() -> None:
    from gossipreg.core.codec import MAX_MESSAGES

    data = pack_datagram([encode_message(Ack(0, "m"))] * (MAX_MESSAGES + 1))
    with pytest.raises(DecodeError, match="too many"):
        unpack_datagram(data)


def test_alive_and_member_meta_limits_are_exact() -> None:
    from gossipreg.core.codec import MAX_META

    ok = Alive("a", 1, Address("10.0.0.1", 1), b"m" * MAX_META)
    assert decode_message(unpack(encode_message(ok))) == ok
    raw = unpack(encode_message(ok))
    raw[5] = b"m" * (MAX_META + 1)
    with pytest.raises(DecodeError, match=r"alive\.meta"):
        decode_message(raw)
    member = Member("a", Address("10.0.0.1", 1), 1, MemberState.ALIVE, b"m" * MAX_META)
    assert decode_member(unpack(pack(encode_member(member)))) == member
    raw_member = encode_member(member)
    raw_member[4] = b"m" * (MAX_META + 1)
    with pytest.raises(DecodeError, match=r"member\.meta"):
        decode_member(raw_member)


def test_host_length_limit_is_exact() -> None:
    ok = Ack(1, "m")
    assert decode_message(unpack(encode_message(ok))) == ok
    host = "h" * 255
    ping = Ping(1, "t", "s", Address(host, 1))
    assert decode_message(unpack(encode_message(ping))) == ping
    raw = unpack(encode_message(ping))
    raw[4] = "h" * 256
    with pytest.raises(DecodeError):
        decode_message(raw)


def test_endpoint_count_limit_is_exact() -> None:
    from gossipreg.core.model import MAX_ENDPOINTS

    eps = tuple(Endpoint(f"E.m{i:03d}") for i in range(MAX_ENDPOINTS))
    rec = live(endpoints=eps)
    assert roundtrip(rec) == rec
    raw = encode_record(rec)
    fields = unpack(raw[8])
    fields[1].append(fields[1][0])
    raw[8] = pack(fields)
    with pytest.raises(DecodeError, match="endpoints"):
        decode_record(raw)


def _nested(depth: int) -> Value:
    v = Value("leaf", "string")
    for i in range(depth - 1):
        v = Value(f"v{i}", "T", (v,))
    return v


def test_value_nesting_limit_is_exact() -> None:
    rec = live(endpoints=(Endpoint("E.deep", _nested(8)),))
    assert roundtrip(rec) == rec
    raw = encode_record(rec)
    fields = unpack(raw[8])
    fields[1][0][1] = ["top", "T", [fields[1][0][1]]]  # one level more, past the model's checks
    raw[8] = pack(fields)
    with pytest.raises(DecodeError, match="deep"):
        decode_record(raw)


@pytest.mark.parametrize(
    ("age", "ms"),
    [(0.0, 0), (-5.0, 0), (0.001, 1), (0.0010000001, 1), (0.0011, 2), (1.5, 1500), (1e12, (1 << 32) - 1)],
)
def test_transfer_ages_round_up_to_whole_milliseconds_within_range(age: float, ms: int) -> None:
    enc = encode_transfer(live(), age)
    assert enc[1] == ms
    rec, back = decode_transfer(unpack(pack(enc)))
    assert rec == live()
    assert back == ms / 1000


def test_documents_up_to_the_size_limit_are_read() -> None:
    from gossipreg.core.codec import MAX_DOCUMENT

    payload = b"x" * (MAX_DOCUMENT - 5)
    doc = pack(payload)  # a bin 32 header (5 bytes) and the payload: exactly the limit
    assert len(doc) == MAX_DOCUMENT
    assert unpack(doc) == payload
    with pytest.raises(DecodeError, match="exceeds"):
        unpack(doc + b"\x00")


def test_the_largest_document_a_peer_can_make_a_member_parse_is_64_mib() -> None:
    # A bound of the threat model (docs/security.md): what one authenticated
    # document may cost a member to parse. Changing it is a decision, not a refactor.
    from gossipreg.core.codec import MAX_DOCUMENT

    assert MAX_DOCUMENT == 64 * 2**20


@pytest.mark.parametrize("field", [7, 8, 5])
def test_a_tombstone_carrying_anything_is_refused(field: int) -> None:
    raw = encode_record(Record("greeter", "1.0", "n1", "m1", 99 << 16, None, True))
    whole = encode_record(live())
    raw[field] = whole[field]  # a node, service fields or a ttl
    with pytest.raises(DecodeError, match="tombstone"):
        decode_record(raw)


def test_transfer_age_rounding_absorbs_only_float_error() -> None:
    assert encode_transfer(live(), 0.0010000015)[1] == 2  # 1.5 ns past a millisecond is past it
    assert encode_transfer(live(), 0.003)[1] == 3  # 0.003 * 1000 is 3.0000000000000004


def test_member_proofs_are_checked_to_the_byte() -> None:
    from gossipreg.core.codec import MAX_CERTIFICATE, SIGNATURE_SIZE, decode_member_proofs

    member = encode_member(Member("a", Address("10.0.0.1", 1), 1, MemberState.ALIVE))
    ok = [*member, b"s" * SIGNATURE_SIZE, b"c" * MAX_CERTIFICATE]
    [(_, proof)] = decode_member_proofs([ok])
    assert proof is not None
    assert (proof.signature, proof.certificate) == (ok[7], ok[8])
    for bad in (
        [*member, b"s" * (SIGNATURE_SIZE - 1), b"c"],
        [*member, "s" * SIGNATURE_SIZE, b"c"],
        [*member, b"s" * SIGNATURE_SIZE, b"c" * (MAX_CERTIFICATE + 1)],
        [*member, b"s" * SIGNATURE_SIZE, b""],
    ):
        with pytest.raises(DecodeError):
            decode_member_proofs([bad])


@pytest.mark.parametrize("n", [1, 15, 16, 1024])
def test_datagram_overhead_covers_the_version_byte_and_array_header(n: int) -> None:
    from gossipreg.core.codec import DATAGRAM_OVERHEAD

    msgs = [encode_message(Ack(i, "m")) for i in range(n)]
    overhead = len(pack_datagram(msgs)) - sum(len(m) for m in msgs)
    assert overhead <= DATAGRAM_OVERHEAD == 1 + 3
    assert overhead == (2 if n < 16 else 4)


class _Str(str):
    """A str subclass: equal to a name the decoder has checked, but not a str."""


def test_remembered_names_and_addresses_still_refuse_lookalikes() -> None:
    """The decoder remembers names and addresses it has checked; values equal to them but
    of another type (a bool port, a str subclass) are still refused, not remembered."""
    good = [ALIVE, "lookalike", 1, "10.9.9.9", 1, b"", 0]
    assert decode_message(good) == Alive("lookalike", 1, Address("10.9.9.9", 1))
    assert decode_message(list(good)) == decode_message(good)  # now from the memo: the same
    with pytest.raises(DecodeError, match="address"):
        decode_message([ALIVE, "lookalike", 1, "10.9.9.9", True, b"", 0])
    with pytest.raises(DecodeError, match=r"alive\.name"):
        decode_message([ALIVE, _Str("lookalike"), 1, "10.9.9.9", 1, b"", 0])
    with pytest.raises(DecodeError, match=r"suspect\.from"):
        decode_message([SUSPECT, "lookalike", 1, _Str("lookalike")])
