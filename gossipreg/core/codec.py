"""Wire codec: msgpack encodings of gossipreg's messages, with strict decoding.

Everything a member sends is built from the encoders here, and everything it
receives from another member goes through the decoders. Decoders treat their
input as hostile: they check types, sizes and ranges, and every failure raises
:class:`~gossipreg.DecodeError` and nothing else. ``docs/protocol.md``
documents each layout byte by byte.

This module currently holds the catalog encodings (records, transfers with an
age, digests), which both gossip and anti-entropy carry.

Record layout (a msgpack array of 9 items)::

    [service: str, version: str, node_id: str, owner: str, stamp: uint64,
     ttl_ms: uint32 | nil, deleted: bool, node: Node | nil,
     service_fields: bin | nil]

    service_fields = msgpack([metadata: map[str]str, endpoints: [Endpoint]]),
                     nil when both are empty

The service-level fields travel as one nested msgpack blob because every
node of a service carries the same ones: the decoder validates a blob once
and reuses the (immutable) result for the other nodes.

    Node     = [address: str, port: uint16 | nil, metadata: map[str]str]  (id = node_id)
    Endpoint = [name: str, request: Value | nil, response: Value | nil, metadata: map]
    Value    = [name: str, type: str, values: [Value]]

A tombstone has ``node``, ``ttl_ms`` and ``service_fields`` nil. A transfer (a
record with the age its sender measured, for anti-entropy) is ``[record,
age_ms: uint32]``. A digest is a map ``owner -> [newest stamp: uint64,
fingerprint: uint64]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgpack

from .catalog import Digest, Offer, Record
from .errors import DecodeError, InvalidServiceError
from .model import EMPTY_METADATA, MAX_ENDPOINTS, MAX_NAME_LENGTH, Endpoint, Node, Service, Value
from .model import _check_name as check_name

__all__ = [
    "MAX_STAMP",
    "MAX_TTL_MS",
    "decode_digest",
    "decode_hashes",
    "decode_offer",
    "decode_record",
    "decode_transfer",
    "encode_digest",
    "encode_hashes",
    "encode_offer",
    "encode_record",
    "encode_transfer",
    "pack",
    "unpack",
]

MAX_STAMP = (1 << 64) - 1
MAX_TTL_MS = (1 << 32) - 1
#: Largest msgpack document ``unpack`` accepts: anti-entropy states are bigger
#: than datagrams, but a peer cannot make a member parse more than this.
MAX_DOCUMENT = 64 * 1024 * 1024



def pack(obj: object) -> bytes:
    """Encode a structure built by this module's encoders."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """Decode untrusted msgpack bytes strictly.

    Raises:
        DecodeError: the bytes are not one complete, well-formed msgpack
            document within the size limits.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_DOCUMENT:
        raise DecodeError(f"document of {len(data)} bytes exceeds {MAX_DOCUMENT}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types; all mean "malformed"
        raise DecodeError(f"malformed msgpack: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------- primitives


def _str(obj: object, what: str, limit: int = MAX_NAME_LENGTH) -> str:
    if type(obj) is not str:
        raise DecodeError(f"{what}: expected str, got {type(obj).__name__}")
    if len(obj) > limit:
        raise DecodeError(f"{what}: {len(obj)} characters exceeds {limit}")
    return obj


def _uint(obj: object, what: str, limit: int) -> int:
    if type(obj) is not int:
        raise DecodeError(f"{what}: expected int, got {type(obj).__name__}")
    if not 0 <= obj <= limit:
        raise DecodeError(f"{what}: {obj} out of range 0..{limit}")
    return obj


def _list(obj: object, what: str, length: int | None = None) -> list[Any]:
    if type(obj) is not list:
        raise DecodeError(f"{what}: expected array, got {type(obj).__name__}")
    if length is not None and len(obj) != length:
        raise DecodeError(f"{what}: expected {length} items, got {len(obj)}")
    return obj


def _meta(obj: object, what: str) -> Mapping[str, str]:
    if type(obj) is not dict:
        raise DecodeError(f"{what}: expected map, got {type(obj).__name__}")
    return obj  # keys and values are checked by the model constructors


def _model_error(exc: InvalidServiceError, what: str) -> DecodeError:
    return DecodeError(f"{what}: invalid: {exc}")


# -------------------------------------------------------------------- model


def _enc_value(v: Value) -> list[Any]:
    return [v.name, v.type, [_enc_value(x) for x in v.values]]


def _dec_value(obj: object, what: str, depth: int = 1) -> Value:
    if depth > 8:
        raise DecodeError(f"{what}: nested too deep")
    name, typ, values = _list(obj, what, 3)
    vals = tuple(_dec_value(x, what, depth + 1) for x in _list(values, what))
    return Value(_str(name, what), _str(typ, what), vals)


def _enc_endpoint(e: Endpoint) -> list[Any]:
    return [
        e.name,
        _enc_value(e.request) if e.request is not None else None,
        _enc_value(e.response) if e.response is not None else None,
        dict(e.metadata),
    ]


def _dec_endpoint(obj: object, what: str) -> Endpoint:
    name, req, resp, meta = _list(obj, what, 4)
    return Endpoint(
        _str(name, what),
        None if req is None else _dec_value(req, what),
        None if resp is None else _dec_value(resp, what),
        _meta(meta, what),
    )


def _enc_node(n: Node) -> list[Any]:
    # The id is the record's node_id; it is not repeated.
    return [n.address, n.port, dict(n.metadata)]


def _dec_node(obj: object, node_id: str, what: str) -> Node:
    address, port, meta = _list(obj, what, 3)
    return Node(
        node_id,
        _str(address, what, 512),
        None if port is None else _uint(port, what, 65535),
        _meta(meta, what),
    )


# ------------------------------------------------------------------ records


def _enc_service_fields(r: Record) -> bytes | None:
    if not r.metadata and not r.endpoints:
        return None
    return pack([dict(r.metadata), [_enc_endpoint(e) for e in r.endpoints]])


def encode_record(r: Record) -> list[Any]:
    """The msgpack-ready array for one record."""
    return [
        r.service,
        r.version,
        r.node_id,
        r.owner,
        r.stamp,
        None if r.ttl is None else round(r.ttl * 1000),
        r.deleted,
        None if r.node is None else _enc_node(r.node),
        _enc_service_fields(r),
    ]


# Every node of a service carries the same service-level fields, so their
# decoded (immutable) form is memoised by their bytes. Bounded; cleared when full.
_SERVICE_FIELDS_CACHE: dict[bytes, tuple[Mapping[str, str], tuple[Endpoint, ...]]] = {}
_SERVICE_FIELDS_CACHE_SIZE = 4096
_SERVICE_FIELDS_CACHE_MAX_BLOB = 16 * 1024  # so the cache holds at most 64 MiB


def _dec_service_fields(blob: object) -> tuple[Mapping[str, str], tuple[Endpoint, ...]]:
    if blob is None:
        return EMPTY_METADATA, ()
    if type(blob) is not bytes:
        raise DecodeError(f"record.service_fields: expected bin or nil, got {type(blob).__name__}")
    hit = _SERVICE_FIELDS_CACHE.get(blob)
    if hit is not None:
        return hit
    meta, endpoints = _list(unpack(blob), "record.service_fields", 2)
    eps = _list(endpoints, "record.endpoints")
    if len(eps) > MAX_ENDPOINTS:
        raise DecodeError("record.endpoints: too many")
    # Validate through the model (names, metadata sizes, nesting).
    decoded = tuple(_dec_endpoint(e, "record.endpoints[]") for e in eps)
    svc = Service("-", "", _meta(meta, "record.metadata"), decoded)
    result = (svc.metadata if svc.metadata else EMPTY_METADATA, svc.endpoints)
    if len(blob) <= _SERVICE_FIELDS_CACHE_MAX_BLOB:
        if len(_SERVICE_FIELDS_CACHE) >= _SERVICE_FIELDS_CACHE_SIZE:
            _SERVICE_FIELDS_CACHE.clear()
        _SERVICE_FIELDS_CACHE[blob] = result
    return result


def decode_record(obj: object) -> Record:
    """Decode and validate one record array.

    Raises:
        DecodeError: the structure, a type, a size or a range is wrong, or
            the service data does not pass model validation.
    """
    what = "record"
    service, version, node_id, owner, stamp, ttl_ms, deleted, node, fields = _list(obj, what, 9)
    try:
        if type(deleted) is not bool:
            raise DecodeError(f"{what}.deleted: expected bool, got {type(deleted).__name__}")
        s = _str(service, "record.service")
        v = _str(version, "record.version")
        n_id = _str(node_id, "record.node_id")
        owner_s = _str(owner, "record.owner")
        if not s or not n_id or not owner_s:
            raise DecodeError("record: empty service name, node id or owner")
        _check_names(s, v, n_id)
        ttl = None if ttl_ms is None else _uint(ttl_ms, "record.ttl", MAX_TTL_MS) / 1000
        if ttl is not None and ttl <= 0:
            raise DecodeError("record.ttl: must be positive")
        if deleted:
            if node is not None or fields is not None or ttl is not None:
                raise DecodeError("record: a tombstone carries no node, service fields or ttl")
            return Record(s, v, n_id, owner_s, _uint(stamp, "record.stamp", MAX_STAMP), None, True)
        if node is None:
            raise DecodeError("record.node: a live record needs a node")
        dec_node = _dec_node(node, n_id, "record.node")
        meta, endpoints = _dec_service_fields(fields)
        stamp_i = _uint(stamp, "record.stamp", MAX_STAMP)
        return Record(s, v, n_id, owner_s, stamp_i, ttl, False, dec_node, meta, endpoints)
    except InvalidServiceError as exc:
        raise _model_error(exc, what) from None
    except RecursionError:
        raise DecodeError(f"{what}: nested too deep") from None


def _check_names(service: str, version: str, node_id: str) -> None:
    """Model validation of the key fields (lengths, valid Unicode)."""
    check_name("record.service", service)
    check_name("record.version", version, empty_ok=True)
    check_name("record.node_id", node_id)


def encode_transfer(r: Record, age: float) -> list[Any]:
    """A record with its age (seconds its sender held it), for anti-entropy.

    The age is rounded *up* to whole milliseconds, so that transfer can only
    shorten a lease, never extend it.
    """
    return [encode_record(r), min(MAX_TTL_MS, max(0, math.ceil(age * 1000 - 1e-6)))]


def decode_transfer(obj: object) -> tuple[Record, float]:
    """Decode ``[record, age_ms]``."""
    rec, age = _list(obj, "transfer", 2)
    return decode_record(rec), _uint(age, "transfer.age", MAX_TTL_MS) / 1000


def encode_digest(d: Digest) -> dict[str, list[int]]:
    """The msgpack-ready map for a catalog digest."""
    return {owner: [stamp, fp] for owner, (stamp, fp) in d.items()}


def decode_digest(obj: object) -> Digest:
    """Decode and validate a catalog digest map."""
    if type(obj) is not dict:
        raise DecodeError(f"digest: expected map, got {type(obj).__name__}")
    out: Digest = {}
    for owner, summary in obj.items():
        o = _str(owner, "digest.owner")
        stamp, fp = _list(summary, "digest.summary", 2)
        out[o] = (_uint(stamp, "digest.stamp", MAX_STAMP), _uint(fp, "digest.fingerprint", MAX_STAMP))
    return out


def encode_offer(offer: Offer) -> list[Any]:
    """``[versions, transfers, absent]``; versions map owner -> flat ``[hash, stamp, ...]``."""
    versions = {owner: [x for pair in sorted(v.items()) for x in pair] for owner, v in offer.versions.items()}
    return [versions, [encode_transfer(r, age) for r, age in offer.records], list(offer.absent)]


def decode_offer(obj: object) -> Offer:
    """Decode and validate an anti-entropy offer."""
    raw_versions, raw_records, raw_absent = _list(obj, "offer", 3)
    if type(raw_versions) is not dict:
        raise DecodeError("offer.versions: expected map")
    versions: dict[str, dict[int, int]] = {}
    for owner, flat in raw_versions.items():
        items = _list(flat, "offer.versions[]")
        if len(items) % 2:
            raise DecodeError("offer.versions[]: odd number of items")
        versions[_str(owner, "offer.owner")] = {
            _uint(items[i], "offer.hash", MAX_STAMP): _uint(items[i + 1], "offer.stamp", MAX_STAMP)
            for i in range(0, len(items), 2)
        }
    records = [decode_transfer(t) for t in _list(raw_records, "offer.records")]
    absent = [_str(o, "offer.absent") for o in _list(raw_absent, "offer.absent")]
    return Offer(versions, records, absent)


def encode_hashes(hashes: list[int]) -> list[int]:
    """A list of 64-bit key hashes (the records an initiator wants)."""
    return list(hashes)


def decode_hashes(obj: object) -> list[int]:
    """Decode a list of 64-bit key hashes."""
    return [_uint(h, "hash", MAX_STAMP) for h in _list(obj, "hashes")]
