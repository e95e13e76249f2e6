"""The service model: go-micro's registry structs, made Pythonic and immutable.

``Service``, ``Node``, ``Endpoint`` and ``Value`` carry exactly the fields of
go-micro's ``registry`` package and (de)serialise with its JSON field names.
Instances are frozen: sequences become tuples and metadata maps become
read-only mappings, so a ``Service`` handed out by the registry can be shared
between readers without copying.

Construction validates. Anything malformed raises
:class:`~gossipreg.InvalidServiceError` (a ``ValueError``) whose message names
the offending field, e.g. ``service.nodes[2].port: 70000 is out of range 1..65535``.
Strings must be valid Unicode (no lone surrogates), so that every valid
service also encodes as UTF-8.

Names carry no control characters: the service name, version, node id, node
address, endpoint names, ``Value`` names and types, and metadata *keys*
reject every character of :data:`CONTROL_CHARACTERS` (C0 U+0000-U+001F,
DEL and C1 U+007F-U+009F, and the line and paragraph separators U+2028 and
U+2029), so no name can break a log line or a terminal. Metadata *values* may
hold any valid Unicode (a PEM certificate, a JSON document): gossipreg never
logs them, and tools that print them must escape them.

A registration's ``ttl`` (:func:`check_ttl`) is ``None`` or a real number of
seconds from :data:`MIN_TTL` (1 ms) to :data:`MAX_TTL` (4,294,967 s, about
49.7 days: the most whole seconds the wire's unsigned 32-bit millisecond
``ttl`` carries); a member's configuration may lower the maximum further
(``tombstone_ttl - convergence_bound``, 3300 s by default).

Limits (all inclusive, chosen so that one node's record fits comfortably in
a gossip datagram and a hostile peer cannot make a member allocate without
bound):

=============================  ==========================================
``MAX_NAME_LENGTH``            256 characters: service name, version, node
                               id, endpoint name, value name and type (and
                               a member's name, on the wire)
``MAX_ADDRESS_LENGTH``         512 characters: node address
``MAX_METADATA_BYTES``         4096 bytes: UTF-8 keys plus values, per map
``MAX_NODES``                  1024 nodes per service
``MAX_ENDPOINTS``              256 endpoints per service
``MAX_VALUE_DEPTH``            8 levels of nested ``Value``
``MAX_VALUE_FIELDS``           256 ``values`` per ``Value``
=============================  ==========================================
"""

from __future__ import annotations

import json
import numbers
import re
import reprlib
from collections.abc import Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from itertools import islice
from types import MappingProxyType
from typing import Any, NoReturn, final

from .errors import InvalidServiceError

__all__ = [
    "CONTROL_CHARACTERS",
    "EMPTY_METADATA",
    "MAX_ADDRESS_LENGTH",
    "MAX_ENDPOINTS",
    "MAX_METADATA_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_NODES",
    "MAX_TTL",
    "MAX_VALUE_DEPTH",
    "MAX_VALUE_FIELDS",
    "MIN_TTL",
    "Endpoint",
    "Node",
    "Service",
    "Value",
    "check_ttl",
    "control_character",
    "name_problem",
    "shown",
]

MAX_NAME_LENGTH = 256
MAX_ADDRESS_LENGTH = 512
MAX_METADATA_BYTES = 4096
MAX_NODES = 1024
MAX_ENDPOINTS = 256
MAX_VALUE_DEPTH = 8
MAX_VALUE_FIELDS = 256
#: Longest lease in seconds: 4,294,967 s (49 days 17 h), the most whole seconds the
#: wire's unsigned 32-bit millisecond ``ttl`` carries (``codec.MAX_TTL_MS``).
MAX_TTL = 4_294_967
#: Shortest lease in seconds: leases are counted in whole milliseconds.
MIN_TTL = 0.001
#: The characters no name may contain, as a regular-expression character class:
#: C0 controls (NUL, tab, newline, ESC, ...), DEL and the C1 controls (NEL, ...),
#: and the Unicode line and paragraph separators.
CONTROL_CHARACTERS = "\x00-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")
_CONTROL_RULE = "names may not contain control characters (U+0000-U+001F, U+007F-U+009F, U+2028, U+2029)"


@final
class _FrozenMetadata(Mapping[str, str]):
    """A read-only, hashable, picklable str-to-str mapping (a frozen copy of its input)."""

    __slots__ = ("_hash", "_proxy")

    _proxy: Mapping[str, str]
    _hash: int | None

    def __init__(self, items: dict[str, str]) -> None:
        object.__setattr__(self, "_proxy", MappingProxyType(items))
        object.__setattr__(self, "_hash", None)

    def __getitem__(self, key: str) -> str:
        return self._proxy[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._proxy)

    def __len__(self) -> int:
        return len(self._proxy)

    def __contains__(self, key: object) -> bool:
        return key in self._proxy

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _FrozenMetadata):
            return self._proxy == other._proxy
        if isinstance(other, Mapping):
            return dict(self._proxy) == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash(frozenset(self._proxy.items()))
            object.__setattr__(self, "_hash", h)
        return h

    def __repr__(self) -> str:
        return repr(dict(self._proxy))

    def __reduce__(self) -> tuple[type[_FrozenMetadata], tuple[dict[str, str]]]:
        return _FrozenMetadata, (dict(self._proxy),)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"metadata is read-only (cannot set {name!r})")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"metadata is read-only (cannot delete {name!r})")


_EMPTY: Mapping[str, str] = _FrozenMetadata({})
#: The shared empty, read-only metadata map.
EMPTY_METADATA = _EMPTY
# "host:port" or "[v6]:port" (matched in full); a bare IPv6 address ("::1") has no port.
_HOST_PORT = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]*)):(?P<port>[0-9]+)")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHOWN_CHARS = 40


def _fail(where: str, problem: str) -> InvalidServiceError:
    return InvalidServiceError(f"{where}: {problem}")


class _ShortRepr(reprlib.Repr):
    """``repr`` cut short: strings and containers are truncated, huge ints summarised."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = 60
        self.maxother = 60
        self.maxlong = 40
        self.maxlevel = 2

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # repr() of a huge int is slow, or refused (int_max_str_digits)
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_SHORT_REPR = _ShortRepr()


def shown(value: object) -> str:
    """The ``repr`` of ``value`` for an error message: control characters escaped, cut short if long."""
    try:
        return _SHORT_REPR.repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        return f"<{type(value).__name__}>"


def control_character(text: str) -> int:
    """The index of the first character of ``text`` that no name may contain, or -1.

    The characters are those of :data:`CONTROL_CHARACTERS`.
    """
    m = _CONTROL.search(text)
    return -1 if m is None else m.start()


def name_problem(value: object, *, limit: int = MAX_NAME_LENGTH, empty_ok: bool = False) -> str | None:
    """What makes ``value`` invalid as a name, or ``None`` if it is a valid one.

    A name is a ``str`` of at most ``limit`` characters (non-empty unless
    ``empty_ok``), valid Unicode (no lone surrogate), without any character of
    :data:`CONTROL_CHARACTERS`. The answer shows the value and states the rule,
    e.g. ``"'a\\nb' contains the control character U+000A at index 1; names may
    not contain control characters (...)"``.
    """
    if not isinstance(value, str):
        return f"must be a str, not {type(value).__name__} {shown(value)}"
    if not value:
        return None if empty_ok else "must not be empty"
    if len(value) > limit:
        return f"{shown(value)} is {len(value)} characters, over the limit of {limit}"
    if _SURROGATE.search(value) is not None:
        return f"{shown(value)} is not valid Unicode (lone surrogate)"
    at = control_character(value)
    if at >= 0:
        return (
            f"{shown(value)} contains the control character U+{ord(value[at]):04X} at index {at}; "
            + _CONTROL_RULE
        )
    return None


def check_ttl(ttl: object, *, where: str = "ttl") -> float | None:
    """Validate a lease: ``None`` (no expiry) or seconds from :data:`MIN_TTL` to :data:`MAX_TTL`.

    Any real number is accepted (``int``, ``float``, ``Fraction``, ...) and
    returned as a ``float``; ``bool``, ``str``, NaN, infinities, zero,
    negative numbers and numbers beyond :data:`MAX_TTL` are refused, so every
    lease computed from it (``now + ttl``, ``ttl * 1000``, ``ttl / 3``) is finite.

    Raises:
        InvalidServiceError: ``ttl`` is not ``None`` nor a number in range; the
            message shows it and states the range.
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, numbers.Real):
        raise _fail(where, f"must be a number of seconds or None, not {type(ttl).__name__} {shown(ttl)}")
    number: Any = ttl  # numbers.Real is not typed as comparable
    # Compared before any conversion: exact for huge ints (float() would overflow), False for NaN.
    if not MIN_TTL <= number <= MAX_TTL:
        raise _fail(
            where,
            f"{shown(ttl)} is out of range: a ttl is from {MIN_TTL:g} to {MAX_TTL} seconds (about 49.7 days)",
        )
    return float(number)


def _show_int(n: int) -> str:
    """``str(n)``, or a stand-in for an int too large to be worth (or able to be) formatted."""
    return str(n) if -(10**12) < n < 10**12 else "a huge integer"


def _show_key(key: str) -> str:
    """A short ``repr`` of a metadata key for an error message."""
    if len(key) <= _SHOWN_CHARS:
        return repr(key)
    return repr(key[:_SHOWN_CHARS]) + "..."


def _check_name(
    where: str, value: object, *, empty_ok: bool = False, limit: int = MAX_NAME_LENGTH
) -> str:
    problem = name_problem(value, limit=limit, empty_ok=empty_ok)
    if problem is not None:
        raise _fail(where, problem)
    assert isinstance(value, str)
    return value


def _utf8_len(where: str, s: str) -> int:
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError:
        raise _fail(where, "is not valid Unicode (lone surrogate)") from None


def _freeze_metadata(where: str, value: object) -> Mapping[str, str]:
    """Validate a metadata map and return a read-only copy. ``None`` is empty."""
    if value is None:
        return _EMPTY
    if isinstance(value, _FrozenMetadata):
        return value  # immutable and validated when it was made
    if not isinstance(value, Mapping):
        raise _fail(where, f"must be a mapping of str to str, not {type(value).__name__}")
    if not value:
        return _EMPTY
    total = 0
    copy: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise _fail(where, f"keys must be str, not {type(k).__name__}")
        at = f"{where}[{_show_key(k)}]"
        if not isinstance(v, str):
            raise _fail(at, f"must be a str, not {type(v).__name__}")
        # A str of n characters is at least n UTF-8 bytes: stop early on huge input.
        if total + len(k) + len(v) > MAX_METADATA_BYTES:
            raise _fail(where, f"is over the limit of {MAX_METADATA_BYTES} bytes")
        total += _utf8_len(at, k) + _utf8_len(at, v)
        if total > MAX_METADATA_BYTES:
            raise _fail(where, f"is over the limit of {MAX_METADATA_BYTES} bytes")
        c = control_character(k)
        if c >= 0:  # values may hold any valid Unicode; keys are names
            raise _fail(
                at,
                f"the key contains the control character U+{ord(k[c]):04X} at index {c}; "
                f"metadata keys are names, and {_CONTROL_RULE}",
            )
        copy[k] = v
    return _FrozenMetadata(copy)


def _tuple_of(where: str, value: object, kind: type[Any], limit: int) -> tuple[Any, ...]:
    """Validate a sequence of ``kind`` (``None`` is empty) and return it as a tuple."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        raise _fail(where, f"must be a list of {kind.__name__}, not {type(value).__name__}")
    if isinstance(value, Sized) and len(value) > limit:
        raise _fail(where, f"has {len(value)} entries, over the limit of {limit}")
    items = tuple(islice(value, limit + 1))  # bounded even for an endless iterator
    if len(items) > limit:
        raise _fail(where, f"has more than {limit} entries, over the limit of {limit}")
    for i, item in enumerate(items):
        if not isinstance(item, kind):
            raise _fail(f"{where}[{i}]", f"must be a {kind.__name__}, not {type(item).__name__}")
    return items


def _expect_dict(where: str, data: object) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise _fail(where, f"must be a JSON object, not {type(data).__name__}")
    return data


def _get_str(where: str, data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(f"{where}.{key}", f"must be a string, not {type(value).__name__}")
    return value


def _get_list(where: str, data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(f"{where}.{key}", f"must be a JSON array or null, not {type(value).__name__}")
    return value


def _loads(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidServiceError(f"not valid JSON: {exc}") from None


@dataclass(frozen=True, slots=True, init=False)
class Value:
    """A typed field of an endpoint's request or response (go-micro ``registry.Value``).

    Args:
        name: the field name.
        type: the field's type name.
        values: nested fields (any iterable; kept as a tuple), at most
            ``MAX_VALUE_DEPTH`` levels deep.
    """

    name: str
    type: str
    values: tuple[Value, ...]

    def __init__(self, name: str, type: str = "", values: Iterable[Value] | None = ()) -> None:
        _check_name("value.name", name, empty_ok=True)
        _check_name("value.type", type, empty_ok=True)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "values", _tuple_of("value.values", values, Value, MAX_VALUE_FIELDS))
        if self.depth() > MAX_VALUE_DEPTH:
            raise _fail("value", f"is nested deeper than the limit of {MAX_VALUE_DEPTH}")

    def depth(self) -> int:
        """Levels of nesting: 1 for a value without ``values``."""
        return 1 + max((v.depth() for v in self.values), default=0)

    def to_dict(self) -> dict[str, Any]:
        """The go-micro JSON object: ``{"name", "type", "values"}``."""
        return {
            "name": self.name,
            "type": self.type,
            "values": [v.to_dict() for v in self.values] if self.values else None,
        }

    @classmethod
    def from_dict(cls, data: object, *, _where: str = "value", _depth: int = 1) -> Value:
        """Build from a go-micro JSON object; ``null`` lists are empty."""
        d = _expect_dict(_where, data)
        if _depth > MAX_VALUE_DEPTH:
            raise _fail(_where, f"is nested deeper than the limit of {MAX_VALUE_DEPTH}")
        raw = _get_list(_where, d, "values")
        if len(raw) > MAX_VALUE_FIELDS:
            raise _fail(f"{_where}.values", f"has {len(raw)} entries, over the limit of {MAX_VALUE_FIELDS}")
        values = tuple(
            cls.from_dict(v, _where=f"{_where}.values[{i}]", _depth=_depth + 1) for i, v in enumerate(raw)
        )
        try:
            return cls(name=_get_str(_where, d, "name"), type=_get_str(_where, d, "type"), values=values)
        except InvalidServiceError as exc:
            raise _prefix(exc, "value", _where) from None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An RPC endpoint a service offers (go-micro ``registry.Endpoint``).

    Args:
        name: the endpoint name, e.g. ``"Greeter.Hello"``.
        request: the request type, or ``None``.
        response: the response type, or ``None``.
        metadata: str-to-str annotations.
    """

    name: str
    request: Value | None = None
    response: Value | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        _check_name("endpoint.name", self.name)
        for fname in ("request", "response"):
            v = getattr(self, fname)
            if v is not None and not isinstance(v, Value):
                raise _fail(f"endpoint.{fname}", f"must be a Value or None, not {type(v).__name__}")
        object.__setattr__(self, "metadata", _freeze_metadata("endpoint.metadata", self.metadata))

    def to_dict(self) -> dict[str, Any]:
        """The go-micro JSON object: ``{"name", "request", "response", "metadata"}``."""
        return {
            "name": self.name,
            "request": self.request.to_dict() if self.request is not None else None,
            "response": self.response.to_dict() if self.response is not None else None,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: object, *, _where: str = "endpoint") -> Endpoint:
        """Build from a go-micro JSON object; ``null`` maps and values are accepted."""
        d = _expect_dict(_where, data)
        req = d.get("request")
        resp = d.get("response")
        try:
            return cls(
                name=_get_str(_where, d, "name"),
                request=None if req is None else Value.from_dict(req, _where=f"{_where}.request"),
                response=None if resp is None else Value.from_dict(resp, _where=f"{_where}.response"),
                metadata=_freeze_metadata(f"{_where}.metadata", d.get("metadata")),
            )
        except InvalidServiceError as exc:
            raise _prefix(exc, "endpoint", _where) from None


@dataclass(frozen=True, slots=True)
class Node:
    """One instance of a service (go-micro ``registry.Node``).

    Later go-micro versions dropped ``Node.Port`` and put the port in
    ``address`` as ``host:port``; both forms are accepted. ``port`` is ``None``
    when the address carries it (or there is none). :meth:`host_port` reads
    either form.

    Args:
        id: unique node id, e.g. ``"greeter-6f1c..."``.
        address: ``host``, ``host:port`` or ``[v6]:port``.
        port: 1..65535, or ``None``.
        metadata: str-to-str annotations.
    """

    id: str
    address: str = ""
    port: int | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        _check_name("node.id", self.id)
        _check_name("node.address", self.address, empty_ok=True, limit=MAX_ADDRESS_LENGTH)
        if self.port is not None:
            if isinstance(self.port, bool) or not isinstance(self.port, int):
                raise _fail("node.port", f"must be an int or None, not {type(self.port).__name__}")
            if not 1 <= self.port <= 65535:
                raise _fail("node.port", f"{_show_int(self.port)} is out of range 1..65535")
        else:
            m = _HOST_PORT.fullmatch(self.address)
            if m is not None and not 1 <= int(m["port"]) <= 65535:
                raise _fail("node.address", f"port {m['port']} is out of range 1..65535")
        object.__setattr__(self, "metadata", _freeze_metadata("node.metadata", self.metadata))

    def host_port(self) -> tuple[str, int | None]:
        """The node's ``(host, port)``, reading ``port`` or a ``host:port`` address."""
        if self.port is not None:
            return self.address, self.port
        m = _HOST_PORT.fullmatch(self.address)
        if m is None:
            return self.address, None
        return (m["v6"] if m["v6"] is not None else m["host"]), int(m["port"])

    def to_dict(self) -> dict[str, Any]:
        """The go-micro JSON object: ``{"id", "address", "metadata"}``, plus ``"port"`` if set."""
        d: dict[str, Any] = {"id": self.id, "address": self.address}
        if self.port is not None:
            d["port"] = self.port
        d["metadata"] = dict(self.metadata)
        return d

    @classmethod
    def from_dict(cls, data: object, *, _where: str = "node") -> Node:
        """Build from go-micro JSON. A missing, ``null`` or ``0`` port means none."""
        d = _expect_dict(_where, data)
        port = d.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
            raise _fail(f"{_where}.port", f"must be an integer or null, not {type(port).__name__}")
        try:
            return cls(
                id=_get_str(_where, d, "id"),
                address=_get_str(_where, d, "address"),
                port=port or None,
                metadata=_freeze_metadata(f"{_where}.metadata", d.get("metadata")),
            )
        except InvalidServiceError as exc:
            raise _prefix(exc, "node", _where) from None


def _prefix(exc: InvalidServiceError, root: str, where: str) -> InvalidServiceError:
    """Re-root a message like ``node.port: ...`` at ``where`` (``service.nodes[2].port: ...``)."""
    msg = str(exc)
    if msg.startswith(root) and not msg.startswith(where):
        return InvalidServiceError(where + msg[len(root) :])
    return exc


@dataclass(frozen=True, slots=True)
class Service:
    """A named, versioned service and its nodes (go-micro ``registry.Service``).

    Args:
        name: the service name, e.g. ``"go.micro.srv.greeter"``.
        version: the version string; may be empty.
        metadata: str-to-str annotations of the service.
        endpoints: the RPC endpoints (any iterable, a list as in go-micro's
            JSON; kept as a tuple).
        nodes: the instances (any iterable; kept as a tuple); node ids are
            unique within a service.

    Raises:
        InvalidServiceError: a field is malformed; the message names it.
    """

    name: str
    version: str
    metadata: Mapping[str, str]
    endpoints: tuple[Endpoint, ...]
    nodes: tuple[Node, ...]

    def __init__(
        self,
        name: str,
        version: str = "",
        metadata: Mapping[str, str] | None = None,
        endpoints: Iterable[Endpoint] | None = (),
        nodes: Iterable[Node] | None = (),
    ) -> None:
        _check_name("service.name", name)
        _check_name("service.version", version, empty_ok=True)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "metadata", _freeze_metadata("service.metadata", metadata))
        object.__setattr__(
            self, "endpoints", _tuple_of("service.endpoints", endpoints, Endpoint, MAX_ENDPOINTS)
        )
        checked: tuple[Node, ...] = _tuple_of("service.nodes", nodes, Node, MAX_NODES)
        seen: set[str] = set()
        for i, node in enumerate(checked):
            if node.id in seen:
                raise _fail(f"service.nodes[{i}].id", f"duplicate node id {node.id!r}")
            seen.add(node.id)
        object.__setattr__(self, "nodes", checked)

    @classmethod
    def _trusted(
        cls,
        name: str,
        version: str,
        metadata: Mapping[str, str],
        endpoints: tuple[Endpoint, ...],
        nodes: tuple[Node, ...],
    ) -> Service:
        """Build without validation from parts that were validated already.

        Used by the catalog to assemble views from stored records; not public.
        """
        self = object.__new__(cls)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "metadata", metadata)
        object.__setattr__(self, "endpoints", endpoints)
        object.__setattr__(self, "nodes", nodes)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The go-micro JSON object: ``{"name", "version", "metadata", "endpoints", "nodes"}``."""
        return {
            "name": self.name,
            "version": self.version,
            "metadata": dict(self.metadata),
            "endpoints": [e.to_dict() for e in self.endpoints],
            "nodes": [n.to_dict() for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: object) -> Service:
        """Build from a go-micro JSON object (as decoded by :func:`json.loads`).

        Accepts what Go emits: ``null`` for any map or list, and nodes whose
        ``address`` is ``host:port`` with no ``port``. Unknown keys are ignored,
        as Go's decoder does.

        Raises:
            InvalidServiceError: the data is not a valid service; the message names the field.
        """
        d = _expect_dict("service", data)
        raw_eps = _get_list("service", d, "endpoints")
        raw_nodes = _get_list("service", d, "nodes")
        if len(raw_eps) > MAX_ENDPOINTS:
            raise _fail("service.endpoints", f"has {len(raw_eps)} entries, over the limit of {MAX_ENDPOINTS}")
        if len(raw_nodes) > MAX_NODES:
            raise _fail("service.nodes", f"has {len(raw_nodes)} entries, over the limit of {MAX_NODES}")
        return cls(
            name=_get_str("service", d, "name"),
            version=_get_str("service", d, "version"),
            metadata=_freeze_metadata("service.metadata", d.get("metadata")),
            endpoints=tuple(
                Endpoint.from_dict(e, _where=f"service.endpoints[{i}]") for i, e in enumerate(raw_eps)
            ),
            nodes=tuple(Node.from_dict(n, _where=f"service.nodes[{i}]") for i, n in enumerate(raw_nodes)),
        )

    def to_json(self) -> str:
        """Serialise as go-micro JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Service:
        """Parse go-micro JSON.

        Raises:
            InvalidServiceError: the text is not JSON or not a valid service.
        """
        return cls.from_dict(_loads(text))

    def with_nodes(self, nodes: Iterable[Node]) -> Service:
        """A copy of this service holding ``nodes`` instead of its own."""
        return Service(self.name, self.version, self.metadata, self.endpoints, tuple(nodes))
