"""Hypothesis properties of the service model: round trips and fuzzing.

Invalid input must ALWAYS raise ``InvalidServiceError`` and nothing else; any
other exception escaping ``from_dict``/``from_json`` is a bug in the model.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gossipreg.core.errors import InvalidServiceError
from gossipreg.core.model import (
    MAX_METADATA_BYTES,
    MAX_NAME_LENGTH,
    MAX_VALUE_DEPTH,
    Endpoint,
    Node,
    Service,
    Value,
)
from tests.strategies import endpoints, nodes, services, values

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(max_examples=100, deadline=None)

# --------------------------------------------------------------------------- helpers

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities included: Python's json emits and accepts them
    st.text(max_size=10),  # may contain lone surrogates
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=20,
)

_KEYS = ("name", "version", "metadata", "endpoints", "nodes", "id", "address", "port",
         "request", "response", "type", "values")  # fmt: skip


def service_shaped(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Objects using the model's own keys, so the fuzz reaches past the first check."""
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=3), children, max_size=6),
        ),
        max_leaves=25,
    )


def check_outcome(make: Any) -> Service | None:
    """Run ``make()``: it must return a Service or raise InvalidServiceError."""
    try:
        svc = make()
    except InvalidServiceError:
        return None
    assert isinstance(svc, Service)
    # anything accepted is a valid service: it encodes as UTF-8, round-trips and re-validates
    assert Service.from_json(svc.to_json().encode("utf-8")) == svc
    assert Service.from_json(svc.to_json()) == svc
    assert Service(svc.name, svc.version, svc.metadata, svc.endpoints, svc.nodes) == svc
    return svc


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a dict entry or list item inside a JSON-like object."""
    out: list[tuple[Any, ...]] = []
    items: Any = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out.extend(paths(v, (*prefix, k)))
    return out


def set_path(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def deep_list(n: int) -> Any:
    v: Any = []
    for _ in range(n):
        v = [v]
    return v


def deep_dict(n: int) -> Any:
    v: Any = {}
    for _ in range(n):
        v = {"values": [v], "name": "x"}
    return v


# Hostile replacements for any field of a valid service dict. Containers are
# built fresh for every draw, so a mutation never leaks into a later example.
_nasty_ints = (
    st.sampled_from([True, False, 0, -1, 65536, 2**63, -(2**63) - 1, 10**5000, -(10**5000)]) | st.integers()
)
_nasty_floats = st.sampled_from([math.nan, math.inf, -math.inf, 80.0, -0.0])
_nasty_strs = st.one_of(
    st.sampled_from(
        ["", "\ud800", "a\udfffb", "x" * (MAX_NAME_LENGTH + 1), "é" * (MAX_METADATA_BYTES // 2 + 1)]
    ),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),
    st.text(max_size=6),
)
_container_makers: list[Callable[[], object]] = [
    lambda: b"bytes",
    lambda: bytearray(b"ba"),
    lambda: (1, 2),
    lambda: {1: "int key"},
    lambda: {10**5000: "huge key"},
    lambda: {"k": "\ud800"},
    lambda: {"\ud800": "v"},
    lambda: {"k": None},
    lambda: ["\ud800"],
    lambda: [None],
    lambda: [[]],
    lambda: [{}],
    lambda: {"id": "", "name": ""},
    lambda: {"values": None},
    lambda: {},
    lambda: [],
    lambda: object(),
]
_nasty_containers = st.sampled_from(_container_makers).map(lambda make: make())
nasty = st.one_of(
    st.none(),
    _nasty_ints,
    _nasty_floats,
    _nasty_strs,
    _nasty_containers,
    json_values,
    st.builds(deep_list, st.integers(MAX_VALUE_DEPTH, 3000)),
    st.builds(deep_dict, st.integers(MAX_VALUE_DEPTH - 1, 300)),
)

# The fields of each kind of go-micro object, for targeted mutation.
_FIELDS = {
    "service": ("name", "version", "metadata", "endpoints", "nodes"),
    "endpoint": ("name", "request", "response", "metadata"),
    "node": ("id", "address", "port", "metadata"),
    "value": ("name", "type", "values"),
}


def objects(d: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every (kind, object) inside a service dict, the service itself included."""
    out: list[tuple[str, dict[str, Any]]] = [("service", d)]

    def add_value(v: dict[str, Any] | None) -> None:
        if v is not None:
            out.append(("value", v))
            for child in v["values"] or ():
                add_value(child)

    for ep in d["endpoints"]:
        out.append(("endpoint", ep))
        add_value(ep["request"])
        add_value(ep["response"])
    out.extend(("node", n) for n in d["nodes"])
    for _kind, obj in list(out):
        if obj.get("metadata"):
            out.append(("metadata", obj["metadata"]))
    return out


# --------------------------------------------------------------------------- round trips


@ROUND_TRIP
@given(services())
def test_dict_round_trip(svc: Service) -> None:
    d = svc.to_dict()
    assert Service.from_dict(d) == svc
    # to_dict output is plain JSON; going through the text changes nothing
    assert Service.from_dict(json.loads(json.dumps(d))) == svc


@ROUND_TRIP
@given(services())
def test_json_round_trip(svc: Service) -> None:
    text = svc.to_json()
    assert Service.from_json(text) == svc
    assert Service.from_json(text.encode("utf-8")) == svc
    # ASCII-escaped JSON (what Go emits for some characters) parses to the same service
    assert Service.from_json(json.dumps(svc.to_dict())) == svc
    assert Service.from_json(text).to_json() == text


@ROUND_TRIP
@given(nodes(), endpoints(), values())
def test_component_round_trips(node: Node, ep: Endpoint, val: Value) -> None:
    assert Node.from_dict(node.to_dict()) == node
    assert Endpoint.from_dict(ep.to_dict()) == ep
    assert Value.from_dict(val.to_dict()) == val
    assert hash(Node.from_dict(node.to_dict())) == hash(node)


@ROUND_TRIP
@given(services())
def test_go_style_nulls_and_reordering_parse_the_same(svc: Service) -> None:
    """Go writes null for empty maps/lists and orders fields differently."""

    def goify(obj: Any) -> Any:
        if isinstance(obj, dict):  # only metadata maps can be empty
            return {k: goify(v) for k, v in reversed(list(obj.items()))} or None
        if isinstance(obj, list):
            return [goify(v) for v in obj] or None
        return obj

    d = goify(svc.to_dict())
    for node in d["nodes"] or ():
        node.setdefault("port", 0)  # older go-micro always wrote the port, 0 if unset
    assert Service.from_dict(d) == svc
    assert Service.from_json(json.dumps(d)) == svc


@ROUND_TRIP
@given(services(max_nodes=0), st.lists(nodes(), min_size=1, max_size=4, unique_by=lambda n: n.id))
def test_host_port_of_generated_nodes(svc: Service, ns: list[Node]) -> None:
    for n in svc.with_nodes(ns).nodes:
        host, port = n.host_port()
        if n.port is not None:
            assert (host, port) == (n.address, n.port)
        elif port is not None:
            assert 1 <= port <= 65535
            assert n.address in (f"{host}:{port}", f"[{host}]:{port}")
        else:
            assert host == n.address


# --------------------------------------------------------------------------- immutability


@ROUND_TRIP
@given(services())
def test_instances_are_deeply_immutable_and_hashable(svc: Service) -> None:
    assert isinstance(svc.endpoints, tuple)
    assert isinstance(svc.nodes, tuple)
    hash(svc)
    d = svc.to_dict()
    parsed = Service.from_dict(d)
    # mutating the input after parsing does not reach the instance
    d["metadata"]["__new__"] = "x"
    for n in d["nodes"]:
        n["metadata"]["__new__"] = "x"
        n["id"] = "changed"
    d["nodes"].append({"id": "extra"})
    assert parsed == svc
    assert "__new__" not in parsed.metadata
    for n in parsed.nodes:
        assert "__new__" not in n.metadata


# --------------------------------------------------------------------------- invalid input


@ROUND_TRIP
@given(services(), st.data())
def test_duplicate_node_ids_are_rejected(svc: Service, data: st.DataObject) -> None:
    assume(svc.nodes)
    d = svc.to_dict()
    src = data.draw(st.integers(0, len(d["nodes"]) - 1))
    dup = dict(d["nodes"][src])
    at = data.draw(st.integers(0, len(d["nodes"])))
    d["nodes"].insert(at, dup)
    second = max(at, src + (1 if at <= src else 0))
    with pytest.raises(InvalidServiceError, match=rf"^service\.nodes\[{second}\]\.id: duplicate"):
        Service.from_dict(d)


@FUZZ
@given(json_values)
def test_from_dict_fuzz_json_values(data: Any) -> None:
    check_outcome(lambda: Service.from_dict(data))


@FUZZ
@given(service_shaped(json_scalars))
def test_from_dict_fuzz_service_shaped(data: Any) -> None:
    check_outcome(lambda: Service.from_dict(data))
    check_outcome(lambda: Service.from_dict({"name": "s", "nodes": [data], "endpoints": [data]}))


@FUZZ
@given(services(), st.data())
def test_from_dict_fuzz_mutated_valid_dicts(svc: Service, data: st.DataObject) -> None:
    d = svc.to_dict()
    targets = paths(d)  # of the valid dict: never descends into the nasty values
    for path in data.draw(st.lists(st.sampled_from(targets), min_size=1, max_size=3)):
        # (a path fails to resolve when an earlier mutation replaced an ancestor)
        with contextlib.suppress(LookupError, TypeError):
            set_path(d, path, data.draw(nasty))
    check_outcome(lambda: Service.from_dict(d))


@FUZZ
@given(services(), st.data())
def test_from_dict_fuzz_wrong_types_in_each_field(svc: Service, data: st.DataObject) -> None:
    """A hostile value in any one field of any object is rejected, or was valid there."""
    d = svc.to_dict()
    kind, obj = data.draw(st.sampled_from(objects(d)))
    if kind == "metadata":
        key = data.draw(st.sampled_from(sorted(obj)))
    else:
        key = data.draw(st.sampled_from(_FIELDS[kind]))
    obj[key] = bad = data.draw(nasty)
    got = check_outcome(lambda: Service.from_dict(d))
    if got is None:
        return
    # accepted: the replacement was null or of the field's JSON type
    if key in ("name", "version", "id", "address", "type") or kind == "metadata":
        assert isinstance(bad, str) or (bad is None and kind != "metadata")
    elif key == "port":
        assert bad is None or (type(bad) is int and 0 <= bad <= 65535)
    elif key in ("metadata", "request", "response"):
        assert bad is None or type(bad) is dict
    else:
        assert bad is None or type(bad) is list


@FUZZ
@given(st.text())
def test_from_json_fuzz_text(text: str) -> None:
    check_outcome(lambda: Service.from_json(text))


@FUZZ
@given(st.binary())
def test_from_json_fuzz_bytes(raw: bytes) -> None:
    check_outcome(lambda: Service.from_json(raw))


@FUZZ
@given(service_shaped(json_scalars))
def test_from_json_fuzz_json_text(obj: Any) -> None:
    text = json.dumps(obj)  # lone surrogates become \udXXX escapes, NaN becomes NaN
    check_outcome(lambda: Service.from_json(text))
    check_outcome(lambda: Service.from_json(text.encode()))


@FUZZ
@given(services(), st.data())
def test_from_json_fuzz_corrupted_valid_json(svc: Service, data: st.DataObject) -> None:
    raw = bytearray(svc.to_json().encode())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if op == "insert" or not raw:
            raw.insert(data.draw(st.integers(0, len(raw))), data.draw(st.integers(0, 255)))
        else:
            i = data.draw(st.integers(0, len(raw) - 1))
            if op == "flip":
                raw[i] ^= 1 << data.draw(st.integers(0, 7))
            else:
                del raw[i]
    check_outcome(lambda: Service.from_json(bytes(raw)))
