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
    decode_digest,
    decode_hashes,
    decode_offer,
    decode_record,
    decode_transfer,
    encode_digest,
    encode_hashes,
    encode_offer,
    encode_record,
    encode_transfer,
    pack,
    unpack,
)
from gossipreg.core.errors import DecodeError
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
