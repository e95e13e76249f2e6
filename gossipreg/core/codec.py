"""Wire codec: msgpack encodings of gossipreg's messages, with strict decoding.

Everything a member sends is built from the encoders here, and everything it
receives from another member goes through the decoders. Decoders treat their
input as hostile: they check types, sizes and ranges, and every failure raises
:class:`~gossipreg.core.errors.DecodeError` and nothing else. ``docs/protocol.md``
documents each layout byte by byte.

It holds three families of encodings:

* the catalog's: records, transfers (a record with its age), digests, offers
  and key-hash lists, carried by gossip and by anti-entropy;
* datagram messages (ping, ping-req, ack, nack, alive, suspect, dead, leave,
  record) and the compound datagram framing (:func:`pack_datagram`);
* stream messages for push-pull (:func:`pack_stream`) and member states.

``docs/protocol.md`` is the byte-level reference for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

from .catalog import Digest, Offer, Record
from .errors import DecodeError, InvalidServiceError
from .membership import Address, Alive, Dead, Leave, Member, MemberState, Suspect
from .model import (
    EMPTY_METADATA,
    MAX_ENDPOINTS,
    MAX_NAME_LENGTH,
    Endpoint,
    Node,
    Service,
    Value,
    control_character,
    shown,
)
from .model import _check_name as check_name

__all__ = [
    "PeekedAccusation",
    "PeekedAlive",
    "PeekedRecord",
    "peek_update",
    "CERT",
    "CERT_WANT",
    "Cert",
    "CertWant",
    "MAX_CERTIFICATE",
    "SIGNATURE_SIZE",
    "alive_payload",
    "leave_payload",
    "decode_member_proofs",
    "record_payload",
    "ACK",
    "ALIVE",
    "DATAGRAM_OVERHEAD",
    "DEAD",
    "LEAVE",
    "MAX_META",
    "MAX_STAMP",
    "MAX_TTL_MS",
    "NACK",
    "PING",
    "PING_REQ",
    "PP_CHECK",
    "PP_CHECK_REPLY",
    "PP_FETCH",
    "PP_INIT",
    "PP_RECONCILE",
    "PP_REPLY",
    "PROTOCOL_VERSION",
    "RECORD",
    "SUSPECT",
    "TREE",
    "Ack",
    "Message",
    "Nack",
    "Ping",
    "PingReq",
    "RecordMsg",
    "Tree",
    "MAX_TREE_HOPS",
    "decode_member",
    "decode_message",
    "decode_transfers",
    "encode_member",
    "encode_message",
    "pack_datagram",
    "pack_stream",
    "unpack_datagram",
    "unpack_stream",
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



def _packb(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


# One packer for every call: msgpack.packb builds a new Packer each time, which costs
# more than packing a small message. The C packer's pack resets it after each call
# (and after an error) and never releases the GIL, so calls from several threads never
# see each other's bytes; msgpack's pure-Python fallback would not be safe to share.
_PACK = (
    msgpack.Packer(use_bin_type=True).pack
    if msgpack.Packer.__module__ == "msgpack._cmsgpack"
    else _packb
)


def pack(obj: object) -> bytes:
    """Encode a structure built by this module's encoders."""
    return _PACK(obj)


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
    """The msgpack-ready array for one record: 9 fields, and the owner's signature
    as a tenth when it has one (member identities)."""
    out = [
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
    if r.signature:
        out.append(r.signature)
    return out


def record_payload(r: Record) -> bytes:
    """The bytes a record's owner signs: the record's encoding without its signature."""
    fields = encode_record(r)
    return pack(fields[:9])


def leave_payload(m: Leave) -> bytes:
    """The bytes a member signs in its ``leave``."""
    return pack([m.name, m.incarnation])


def alive_payload(a: Alive) -> bytes:
    """The bytes a member signs in its ``alive``: every field but the signature and certificate."""
    return pack([a.name, a.incarnation, a.address.host, a.address.port, a.meta, a.epoch])


# Every node of a service carries the same service-level fields, so their
# decoded (immutable) form is memoised by their bytes. Bounded; cleared when full.
#: Bytes of a member signature (ECDSA P-256, ``r || s``; :mod:`gossipreg.core.identity`).
SIGNATURE_SIZE = 64
#: Largest member certificate (DER) accepted.
MAX_CERTIFICATE = 4096

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
    signature = b""
    if type(obj) is list and len(obj) == 10:
        signature = obj[9]
        if type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
            raise DecodeError(f"record.signature: expected bin of {SIGNATURE_SIZE} bytes")
        obj = obj[:9]
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
        _no_control(owner_s, "record.owner")
        _check_names(s, v, n_id)
        ttl = None if ttl_ms is None else _uint(ttl_ms, "record.ttl", MAX_TTL_MS) / 1000
        if ttl is not None and ttl <= 0:
            raise DecodeError("record.ttl: must be positive")
        if deleted:
            if node is not None or fields is not None or ttl is not None:
                raise DecodeError("record: a tombstone carries no node, service fields or ttl")
            return Record(s, v, n_id, owner_s, _uint(stamp, "record.stamp", MAX_STAMP), None, True,
                          signature=signature)
        if node is None:
            raise DecodeError("record.node: a live record needs a node")
        dec_node = _dec_node(node, n_id, "record.node")
        meta, endpoints = _dec_service_fields(fields)
        stamp_i = _uint(stamp, "record.stamp", MAX_STAMP)
        return Record(s, v, n_id, owner_s, stamp_i, ttl, False, dec_node, meta, endpoints, signature)
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


# ------------------------------------------------------- protocol messages
#
# A datagram's plaintext is ``[PROTOCOL_VERSION: u8][msgpack array of
# messages]``; each message is a msgpack array whose first item is its type.
# Messages are encoded once (to bytes) and a datagram is assembled by writing
# an array header and concatenating them, so packing never re-encodes.

#: First byte of every plaintext datagram and stream message. Distinct from
#: the sealed-datagram version byte (1), so a member can tell a sealed datagram
#: from a plaintext one and say so when the two kinds are mixed.
PROTOCOL_VERSION = 0x47

PING = 0
PING_REQ = 1
ACK = 2
NACK = 3
ALIVE = 4
SUSPECT = 5
DEAD = 6
LEAVE = 7
RECORD = 8
TREE = 9
#: Member identities: ask the sender for a member's certificate, and its answer.
CERT_WANT = 10
CERT = 11
# Stream (push-pull) messages.
PP_INIT = 16
PP_REPLY = 17
PP_RECONCILE = 18
PP_FETCH = 19
# The cheap check that precedes a periodic push-pull.
PP_CHECK = 20
PP_CHECK_REPLY = 21

#: Largest member meta accepted, in bytes (memberlist's ``MetaMaxSize``).
MAX_META = 512
#: Most messages in one datagram.
MAX_MESSAGES = 1024
_MAX_NAME = MAX_NAME_LENGTH
_MAX_HOST = 255


@dataclass(frozen=True, slots=True)
class Ping:
    """A SWIM probe: ``source`` asks ``target`` to ack ``seq`` to ``source_address``."""

    seq: int
    target: str
    source: str
    source_address: Address


@dataclass(frozen=True, slots=True)
class PingReq:
    """An indirect probe: ``source`` asks the receiver to probe ``target`` and
    relay the ack (or a nack, if ``nack``) of ``seq``."""

    seq: int
    target: str
    target_address: Address
    source: str
    source_address: Address
    nack: bool = True


@dataclass(frozen=True, slots=True)
class Ack:
    """``source`` answers probe ``seq``."""

    seq: int
    source: str


@dataclass(frozen=True, slots=True)
class Nack:
    """An intermediary that got no ack from the target of ``seq`` says so (Lifeguard)."""

    seq: int
    source: str


@dataclass(frozen=True, slots=True)
class Tree:
    """Marks a datagram whose updates travel along the broadcast tree rooted at
    ``root``; ``hops`` counts the edges travelled so far (a bound against
    cycles when members' views differ). Only ever the first message.

    ``seq``, when present, asks the receiver to acknowledge the datagram with
    an :class:`Ack` of that sequence number (the tree repair,
    ``Config.tree_resends``); ``None`` is the marker without it."""

    root: str
    hops: int
    seq: int | None = None


#: Most edges a tree datagram travels (a tree over 2**32 members is 32 deep).
MAX_TREE_HOPS = 32


@dataclass(frozen=True, slots=True)
class RecordMsg:
    """One catalog record, gossiped."""

    record: Record


@dataclass(frozen=True, slots=True)
class CertWant:
    """Member identities: send me ``name``'s certificate (I got a statement of it I cannot check)."""

    name: str


@dataclass(frozen=True, slots=True)
class Cert:
    """Member identities: ``name``'s certificate (DER), answering a :class:`CertWant`."""

    name: str
    certificate: bytes


Message = Ping | PingReq | Ack | Nack | Alive | Suspect | Dead | Leave | RecordMsg | Tree | CertWant | Cert
"""Anything a datagram can carry."""


# Names and addresses that passed the checks below, remembered (a bounded memo): the
# same few appear in nearly every datagram, and checking a str for control characters
# costs more than looking it up. Only exact str and int values are looked up.
_MEMO_SIZE = 1 << 16
_CHECKED_NAMES: set[str] = set()
_CHECKED_ADDRESSES: dict[tuple[str, int], Address] = {}


def _addr(host: object, port: object, what: str) -> Address:
    if type(host) is str and type(port) is int:
        known = _CHECKED_ADDRESSES.get((host, port))
        if known is not None:
            return known
    address = Address(_no_control(_str(host, what, _MAX_HOST), what), _uint(port, what, 65535))
    if len(_CHECKED_ADDRESSES) >= _MEMO_SIZE:
        _CHECKED_ADDRESSES.clear()
    _CHECKED_ADDRESSES[address.host, address.port] = address
    return address


def encode_message(msg: Message) -> bytes:
    """Encode one message to msgpack bytes (ready for :func:`pack_datagram`)."""
    match msg:
        case Ping(seq, target, source, (h, p)):
            obj: list[Any] = [PING, seq, target, source, h, p]
        case PingReq(seq, target, (th, tp), source, (sh, sp), nack):
            obj = [PING_REQ, seq, target, th, tp, source, sh, sp, nack]
        case Ack(seq, source):
            obj = [ACK, seq, source]
        case Nack(seq, source):
            obj = [NACK, seq, source]
        case Alive(name, inc, (h, p), meta, epoch, signature, certificate):
            obj = [ALIVE, name, inc, h, p, meta, epoch]
            if signature:
                obj += [signature, certificate] if certificate else [signature]
        case Suspect(name, inc, frm):
            obj = [SUSPECT, name, inc, frm]
        case Dead(name, inc, frm):
            obj = [DEAD, name, inc, frm]
        case Leave(name, inc, signature):
            obj = [LEAVE, name, inc] + ([signature] if signature else [])
        case RecordMsg(rec):
            obj = [RECORD, encode_record(rec)]
        case Tree(root, hops, seq):
            obj = [TREE, root, hops] if seq is None else [TREE, root, hops, seq]
        case CertWant(name):
            obj = [CERT_WANT, name]
        case Cert(name, certificate):
            obj = [CERT, name, certificate]
        case _:  # pragma: no cover - exhaustive
            raise TypeError(f"not a message: {msg!r}")
    return pack(obj)


def _name(obj: object, what: str) -> str:
    if type(obj) is str and obj in _CHECKED_NAMES:
        return obj
    s = _str(obj, what, _MAX_NAME)
    if not s:
        raise DecodeError(f"{what}: empty")
    _no_control(s, what)
    if len(_CHECKED_NAMES) >= _MEMO_SIZE:
        _CHECKED_NAMES.clear()
    _CHECKED_NAMES.add(s)
    return s


def _no_control(s: str, what: str) -> str:
    """``s``, unless it holds a character no name may hold (``model.CONTROL_CHARACTERS``):
    member names and hosts follow the rule of the local API's names."""
    at = control_character(s)
    if at >= 0:
        raise DecodeError(f"{what}: contains the control character U+{ord(s[at]):04X}")
    return s


def decode_message(obj: object) -> Message:
    """Decode one message array (already unpacked).

    Raises:
        DecodeError: unknown type, wrong arity, or a bad field.
    """
    items = _list(obj, "message")
    if not items:
        raise DecodeError("message: empty")
    kind = items[0]
    args = items[1:]
    try:
        if kind == PING and type(kind) is int:
            seq, target, source, h, p = _fixed(args, 5, "ping")
            return Ping(_uint(seq, "ping.seq", MAX_STAMP), _name(target, "ping.target"),
                        _name(source, "ping.source"), _addr(h, p, "ping.source_address"))
        if kind == PING_REQ and type(kind) is int:
            seq, target, th, tp, source, sh, sp, nack = _fixed(args, 8, "ping_req")
            if type(nack) is not bool:
                raise DecodeError("ping_req.nack: expected bool")
            return PingReq(_uint(seq, "ping_req.seq", MAX_STAMP), _name(target, "ping_req.target"),
                           _addr(th, tp, "ping_req.target_address"), _name(source, "ping_req.source"),
                           _addr(sh, sp, "ping_req.source_address"), nack)
        if kind == ACK and type(kind) is int:
            seq, source = _fixed(args, 2, "ack")
            return Ack(_uint(seq, "ack.seq", MAX_STAMP), _name(source, "ack.source"))
        if kind == NACK and type(kind) is int:
            seq, source = _fixed(args, 2, "nack")
            return Nack(_uint(seq, "nack.seq", MAX_STAMP), _name(source, "nack.source"))
        if kind == ALIVE and type(kind) is int:
            signature = certificate = b""
            if len(args) == 8:
                signature, certificate = args[6], args[7]
                _check_proof(signature, certificate, "alive")
                args = args[:6]
            elif len(args) == 7:
                signature = args[6]
                if type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
                    raise DecodeError(f"alive.signature: expected bin of {SIGNATURE_SIZE} bytes")
                args = args[:6]
            name, inc, h, p, meta, epoch = _fixed(args, 6, "alive")
            if type(meta) is not bytes or len(meta) > MAX_META:
                raise DecodeError(f"alive.meta: expected bin of at most {MAX_META} bytes")
            return Alive(_name(name, "alive.name"), _uint(inc, "alive.incarnation", MAX_STAMP),
                         _addr(h, p, "alive.address"), meta, _uint(epoch, "alive.epoch", MAX_STAMP),
                         signature, certificate)
        if kind == SUSPECT and type(kind) is int:
            name, inc, frm = _fixed(args, 3, "suspect")
            return Suspect(_name(name, "suspect.name"), _uint(inc, "suspect.incarnation", MAX_STAMP),
                           _name(frm, "suspect.from"))
        if kind == DEAD and type(kind) is int:
            name, inc, frm = _fixed(args, 3, "dead")
            return Dead(_name(name, "dead.name"), _uint(inc, "dead.incarnation", MAX_STAMP),
                        _name(frm, "dead.from"))
        if kind == LEAVE and type(kind) is int:
            signature = b""
            if len(args) == 3:
                signature = args[2]
                if type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
                    raise DecodeError(f"leave.signature: expected bin of {SIGNATURE_SIZE} bytes")
                args = args[:2]
            name, inc = _fixed(args, 2, "leave")
            return Leave(_name(name, "leave.name"), _uint(inc, "leave.incarnation", MAX_STAMP), signature)
        if kind == TREE and type(kind) is int:
            seq = None
            if len(args) == 3:
                seq = _uint(args[2], "tree.seq", MAX_STAMP)
                args = args[:2]
            root, hops = _fixed(args, 2, "tree")
            return Tree(_name(root, "tree.root"), _uint(hops, "tree.hops", MAX_TREE_HOPS), seq)
        if kind == RECORD and type(kind) is int:
            (rec,) = _fixed(args, 1, "record")
            return RecordMsg(decode_record(rec))
        if kind == CERT_WANT and type(kind) is int:
            (name,) = _fixed(args, 1, "cert_want")
            return CertWant(_name(name, "cert_want.name"))
        if kind == CERT and type(kind) is int:
            name, der = _fixed(args, 2, "cert")
            if type(der) is not bytes or not 0 < len(der) <= MAX_CERTIFICATE:
                raise DecodeError(f"cert.certificate: expected bin of 1 to {MAX_CERTIFICATE} bytes")
            return Cert(_name(name, "cert.name"), der)
    except ValueError as exc:  # Address/dataclass construction guards
        raise DecodeError(f"message: {exc}") from None
    raise DecodeError(f"message: unknown type {shown(kind)}")


def _fixed(args: list[Any], n: int, what: str) -> list[Any]:
    if len(args) != n:
        raise DecodeError(f"{what}: expected {n} fields, got {len(args)}")
    return args


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    raise ValueError("too many messages")  # pragma: no cover - bounded by packet size


#: Bytes a datagram spends besides its messages: version byte + array header (at most 3).
DATAGRAM_OVERHEAD = 1 + 3


def pack_datagram(messages: list[bytes]) -> bytes:
    """Assemble a plaintext datagram from encoded messages."""
    return bytes([PROTOCOL_VERSION]) + _array_header(len(messages)) + b"".join(messages)


def unpack_datagram(data: bytes) -> list[Any]:
    """Check the version byte and return the raw (unpacked, undecoded) message arrays.

    Decode each with :func:`decode_message`, so one bad message does not
    discard its neighbours.

    Raises:
        DecodeError: wrong version, malformed msgpack, not an array, too many messages.
    """
    if not data:
        raise DecodeError("empty datagram")
    if data[0] != PROTOCOL_VERSION:
        raise DecodeError(f"unknown protocol version {data[0]}")
    messages = unpack(data[1:])
    if type(messages) is not list:
        raise DecodeError("datagram: expected an array of messages")
    if len(messages) > MAX_MESSAGES:
        raise DecodeError("datagram: too many messages")
    return messages


# ------------------------------------------------------- stream messages


def encode_member(m: Member, proof: Alive | None = None) -> list[Any]:
    """A member's state for push-pull: ``[name, incarnation, host, port, meta, state, epoch]``,
    and, with member identities, the signature and certificate of the member's own
    ``alive`` at that incarnation (``proof``)."""
    out = [m.name, m.incarnation, m.address.host, m.address.port, m.meta, m.state.value, m.epoch]
    if proof is not None and proof.signature:
        out += [proof.signature, proof.certificate]
    return out


def _check_proof(signature: object, certificate: object, what: str) -> None:
    if type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
        raise DecodeError(f"{what}.signature: expected bin of {SIGNATURE_SIZE} bytes")
    if type(certificate) is not bytes or not 0 < len(certificate) <= MAX_CERTIFICATE:
        raise DecodeError(f"{what}.certificate: expected bin of 1 to {MAX_CERTIFICATE} bytes")


def decode_member_proofs(obj: object) -> list[tuple[Member, Alive | None]]:
    """Decode a push-pull member list, each with the signed ``alive`` its entry carries (if any)."""
    out: list[tuple[Member, Alive | None]] = []
    for raw in _list(obj, "members"):
        proof: Alive | None = None
        if type(raw) is list and len(raw) == 9:
            _check_proof(raw[7], raw[8], "member")
            m = decode_member(raw[:7])
            proof = Alive(m.name, m.incarnation, m.address, m.meta, m.epoch, raw[7], raw[8])
        else:
            m = decode_member(raw)
        out.append((m, proof))
    return out


_STATES = {s.value: s for s in MemberState}


def decode_member(obj: object) -> Member:
    """Decode a push-pull member state."""
    name, inc, h, p, meta, state, epoch = _list(obj, "member", 7)
    if type(meta) is not bytes or len(meta) > MAX_META:
        raise DecodeError(f"member.meta: expected bin of at most {MAX_META} bytes")
    st = _STATES.get(state) if type(state) is str else None
    if st is None:
        raise DecodeError(f"member.state: unknown {shown(state)}")
    return Member(_name(name, "member.name"), _addr(h, p, "member.address"),
                  _uint(inc, "member.incarnation", MAX_STAMP), st, meta,
                  epoch=_uint(epoch, "member.epoch", MAX_STAMP))


def pack_stream(obj: list[Any]) -> bytes:
    """A stream message's plaintext: version byte + one msgpack document."""
    return bytes([PROTOCOL_VERSION]) + pack(obj)


def unpack_stream(data: bytes) -> list[Any]:
    """Check the version byte of a stream message and unpack it to an array with an int type first."""
    if not data or data[0] != PROTOCOL_VERSION:
        raise DecodeError("stream message: unknown protocol version")
    obj = unpack(data[1:])
    if type(obj) is not list or not obj or type(obj[0]) is not int:
        raise DecodeError("stream message: expected an array starting with a type")
    return obj


def decode_transfers(obj: object) -> list[tuple[Record, float]]:
    """Decode a list of ``[record, age_ms]`` transfers."""
    return [decode_transfer(t) for t in _list(obj, "transfers")]


# ------------------------------------------------------- peeking before decoding


class PeekedAlive(NamedTuple):
    """The raw fields of an ``alive`` that say whether it is news (not validated)."""

    name: str
    incarnation: int
    host: object
    port: object


class PeekedAccusation(NamedTuple):
    """The raw fields of a ``suspect`` or ``dead`` that say whether it is news."""

    name: str
    incarnation: int
    from_member: str
    dead: bool


class PeekedRecord(NamedTuple):
    """The raw fields of a gossiped record that say whether it is news."""

    key: tuple[str, str, str]
    stamp: int
    owner: str
    deleted: bool


# A named tuple built as tuple.__new__ does in its constructor, without the call of that
# (Python-level) constructor: peek_update runs for every message received.
_new_tuple = tuple.__new__


def peek_update(raw: object) -> PeekedAlive | PeekedAccusation | PeekedRecord | None:
    """The few fields of an undecoded update (``alive``, ``suspect``/``dead`` or
    ``record`` array) a member needs to judge whether it already has it.

    ``None`` for anything else, or when a field has the wrong type: such a
    message is decoded and checked in full. The layouts read here are those of
    :func:`encode_message`; nothing is validated beyond the types.
    """
    if type(raw) is not list or len(raw) < 2 or type(raw[0]) is not int:
        return None
    kind = raw[0]
    if kind == ALIVE and 7 <= len(raw) <= 9:
        name, inc = raw[1], raw[2]
        if type(name) is str and type(inc) is int:
            return _new_tuple(PeekedAlive, (name, inc, raw[3], raw[4]))
        return None
    if kind in (SUSPECT, DEAD) and len(raw) == 4:
        name, inc, frm = raw[1], raw[2], raw[3]
        if (
            type(name) is str
            and type(inc) is int
            and 0 <= inc <= MAX_STAMP
            and type(frm) is str
            and 0 < len(frm) <= MAX_NAME_LENGTH
        ):
            return _new_tuple(PeekedAccusation, (name, inc, frm, kind == DEAD))
        return None
    if kind == RECORD and len(raw) == 2:
        rec = raw[1]
        if type(rec) is not list or not 9 <= len(rec) <= 10:
            return None
        service, version, node_id, owner, stamp, _ttl, deleted = rec[:7]
        if (
            type(service) is str
            and type(version) is str
            and type(node_id) is str
            and type(owner) is str
            and type(stamp) is int
            and type(deleted) is bool
        ):
            return _new_tuple(PeekedRecord, ((service, version, node_id), stamp, owner, deleted))
    return None
