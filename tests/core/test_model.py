"""Unit tests of the go-micro service model (gossipreg/core/model.py)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle
import re
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossipreg.core.errors import InvalidServiceError, RegistryError
from gossipreg.core.model import (
    CONTROL_CHARACTERS,
    MAX_ADDRESS_LENGTH,
    MAX_ENDPOINTS,
    MAX_METADATA_BYTES,
    MAX_NAME_LENGTH,
    MAX_NODES,
    MAX_TTL,
    MAX_VALUE_DEPTH,
    MAX_VALUE_FIELDS,
    MIN_TTL,
    Endpoint,
    Node,
    Service,
    Value,
    check_ttl,
    control_character,
    shown,
)

# What go-micro (v4/v5, Go's encoding/json) emits today: Go field order, null for
# empty maps/lists, no Node.Port (the port is in the address).
GO_MICRO_JSON = (
    '{"name":"greeter","version":"latest","metadata":null,'
    '"endpoints":[{"request":{"name":"Request","type":"Request",'
    '"values":[{"name":"name","type":"string","values":null}]},'
    '"response":null,"metadata":{"stream":"false"},"name":"Greeter.Hello"}],'
    '"nodes":[{"metadata":{"broker":"http","protocol":"grpc","registry":"gossip",'
    '"server":"grpc","transport":"grpc"},"id":"greeter-4f5a0c1e-9d2b-4a7e-8f51-2b6c3d4e5f60",'
    '"address":"10.0.0.5:54321"}]}'
)


def nested_value(depth: int) -> Value:
    v = Value("leaf", "string")
    for i in range(depth - 1):
        v = Value(f"v{i}", "T", (v,))
    return v


def nested_value_dict(depth: int) -> dict[str, Any]:
    d: dict[str, Any] = {"name": "leaf", "type": "string", "values": None}
    for i in range(depth - 1):
        d = {"name": f"v{i}", "type": "T", "values": [d]}
    return d


def short_id(value: object) -> str:
    """A short pytest id for any parameter (huge ints and strings included)."""
    if isinstance(value, int) and not -(10**12) < value < 10**12:
        return "huge-int"
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 30 else text[:27] + "..."


def raises_field(prefix: str) -> Any:
    """``pytest.raises(InvalidServiceError)`` whose message starts with ``prefix: ``."""
    return pytest.raises(InvalidServiceError, match="^" + re.escape(prefix) + ": ")


# --------------------------------------------------------------------------- go-micro JSON


class TestGoMicroJson:
    def test_realistic_sample_parses(self) -> None:
        svc = Service.from_json(GO_MICRO_JSON)
        assert svc.name == "greeter"
        assert svc.version == "latest"
        assert svc.metadata == {}
        (ep,) = svc.endpoints
        assert ep.name == "Greeter.Hello"
        assert ep.request == Value("Request", "Request", (Value("name", "string"),))
        assert ep.response is None
        assert ep.metadata == {"stream": "false"}
        (node,) = svc.nodes
        assert node.id == "greeter-4f5a0c1e-9d2b-4a7e-8f51-2b6c3d4e5f60"
        assert node.address == "10.0.0.5:54321"
        assert node.port is None
        assert node.host_port() == ("10.0.0.5", 54321)
        assert node.metadata["registry"] == "gossip"
        assert len(node.metadata) == 5

    def test_bytes_input_is_accepted(self) -> None:
        assert Service.from_json(GO_MICRO_JSON.encode()) == Service.from_json(GO_MICRO_JSON)

    def test_sample_round_trips(self) -> None:
        svc = Service.from_json(GO_MICRO_JSON)
        assert Service.from_json(svc.to_json()) == svc
        assert Service.from_dict(svc.to_dict()) == svc

    def test_to_dict_uses_go_micro_field_names(self) -> None:
        svc = Service.from_json(GO_MICRO_JSON)
        d = svc.to_dict()
        assert set(d) == {"name", "version", "metadata", "endpoints", "nodes"}
        assert set(d["endpoints"][0]) == {"name", "request", "response", "metadata"}
        assert set(d["endpoints"][0]["request"]) == {"name", "type", "values"}
        # a leaf Value serialises its empty list as null, like Go's nil slice
        assert d["endpoints"][0]["request"]["values"][0]["values"] is None
        assert d["endpoints"][0]["response"] is None
        # a node without a port field emits none
        assert set(d["nodes"][0]) == {"id", "address", "metadata"}
        # plain JSON types only
        assert json.loads(json.dumps(d)) == d

    def test_to_json_is_compact_and_keeps_unicode(self) -> None:
        svc = Service("grüße", metadata={"k": "日本"})
        text = svc.to_json()
        assert " " not in text
        assert "grüße" in text
        assert "日本" in text
        assert json.loads(text)["name"] == "grüße"

    def test_old_go_micro_node_with_port_field(self) -> None:
        svc = Service.from_dict({"name": "s", "nodes": [{"id": "n1", "address": "10.0.0.5", "port": 8080}]})
        assert svc.nodes[0] == Node("n1", "10.0.0.5", 8080)
        assert svc.nodes[0].host_port() == ("10.0.0.5", 8080)
        assert svc.to_dict()["nodes"][0]["port"] == 8080

    @pytest.mark.parametrize("port", [0, None])
    def test_zero_or_null_port_means_none(self, port: int | None) -> None:
        svc = Service.from_dict({"name": "s", "nodes": [{"id": "n1", "address": "h:81", "port": port}]})
        assert svc.nodes[0].port is None
        assert svc.nodes[0].host_port() == ("h", 81)

    def test_null_for_every_map_and_list(self) -> None:
        svc = Service.from_dict(
            {
                "name": "s",
                "version": None,
                "metadata": None,
                "endpoints": [
                    {
                        "name": "E",
                        "request": {"name": None, "type": None, "values": None},
                        "response": None,
                        "metadata": None,
                    }
                ],
                "nodes": [{"id": "n", "address": None, "port": None, "metadata": None}],
            }
        )
        assert svc.version == ""
        assert svc.metadata == {}
        assert svc.endpoints == (Endpoint("E", Value(""), None),)
        assert svc.nodes == (Node("n"),)

    def test_null_top_level_lists(self) -> None:
        svc = Service.from_dict({"name": "s", "endpoints": None, "nodes": None})
        assert svc.endpoints == ()
        assert svc.nodes == ()

    def test_missing_keys_take_defaults(self) -> None:
        assert Service.from_dict({"name": "s"}) == Service("s")
        assert Node.from_dict({"id": "n"}) == Node("n")
        assert Endpoint.from_dict({"name": "e"}) == Endpoint("e")
        assert Value.from_dict({}) == Value("")

    def test_unknown_keys_are_ignored(self) -> None:
        svc = Service.from_dict(
            {
                "name": "s",
                "extra": [1, {"x": None}],
                "Name": 17,
                "endpoints": [{"name": "e", "junk": True, "request": {"name": "r", "z": 1}}],
                "nodes": [{"id": "n", "weight": 3.5}],
            }
        )
        assert svc == Service("s", endpoints=(Endpoint("e", Value("r")),), nodes=(Node("n"),))

    def test_key_order_is_irrelevant(self) -> None:
        d = Service.from_json(GO_MICRO_JSON).to_dict()
        reordered = dict(reversed(list(d.items())))
        assert Service.from_dict(reordered) == Service.from_dict(d)

    def test_component_round_trips(self) -> None:
        v = Value("a", "T", (Value("b", "int"),))
        e = Endpoint("E.M", v, Value("resp"), {"stream": "true"})
        n = Node("id", "[::1]:80", None, {"k": "v"})
        assert Value.from_dict(v.to_dict()) == v
        assert Endpoint.from_dict(e.to_dict()) == e
        assert Node.from_dict(n.to_dict()) == n
        assert Node.from_dict(Node("id", "h", 9).to_dict()) == Node("id", "h", 9)


# --------------------------------------------------------------------------- construction


class TestConstruction:
    def test_defaults(self) -> None:
        s = Service("s")
        assert (s.version, s.metadata, s.endpoints, s.nodes) == ("", {}, (), ())
        n = Node("n")
        assert (n.address, n.port, n.metadata) == ("", None, {})
        e = Endpoint("e")
        assert (e.request, e.response, e.metadata) == (None, None, {})
        v = Value("v")
        assert (v.type, v.values) == ("", ())

    def test_none_for_collections_is_empty(self) -> None:
        s = Service("s", "", None, None, None)
        assert (s.metadata, s.endpoints, s.nodes) == ({}, (), ())

    def test_lists_become_tuples(self) -> None:
        s = Service("s", endpoints=[Endpoint("e")], nodes=[Node("a"), Node("b")])
        assert isinstance(s.endpoints, tuple)
        assert isinstance(s.nodes, tuple)
        v = Value("v", values=[Value("w")])
        assert v.values == (Value("w"),)
        assert isinstance(v.values, tuple)

    def test_generators_are_accepted(self) -> None:
        s = Service("s", nodes=(Node(f"n{i}") for i in range(3)))
        assert [n.id for n in s.nodes] == ["n0", "n1", "n2"]

    def test_endless_iterator_is_rejected_without_hanging(self) -> None:
        import itertools

        endless = (Endpoint(f"e{i}") for i in itertools.count())
        with raises_field("service.endpoints"):
            Service("s", endpoints=endless)

    def test_with_nodes(self) -> None:
        s = Service("s", "1", {"a": "b"}, (Endpoint("e"),), (Node("x"),))
        t = s.with_nodes([Node("y"), Node("z")])
        assert t.nodes == (Node("y"), Node("z"))
        assert (t.name, t.version, t.metadata, t.endpoints) == (
            s.name,
            s.version,
            s.metadata,
            s.endpoints,
        )
        assert s.nodes == (Node("x"),)
        with raises_field("service.nodes[1].id"):
            s.with_nodes([Node("y"), Node("y")])

    def test_value_depth(self) -> None:
        assert Value("a").depth() == 1
        assert Value("a", values=(Value("b"), Value("c", values=(Value("d"),)))).depth() == 3
        assert nested_value(MAX_VALUE_DEPTH).depth() == MAX_VALUE_DEPTH

    def test_error_type(self) -> None:
        assert issubclass(InvalidServiceError, ValueError)
        assert issubclass(InvalidServiceError, RegistryError)
        with pytest.raises(ValueError, match=r"^service\.name: must not be empty$"):
            Service("")


# --------------------------------------------------------------------------- immutability


class TestImmutability:
    @pytest.mark.parametrize(
        ("obj", "attr"),
        [
            (Service("s"), "name"),
            (Service("s"), "nodes"),
            (Node("n"), "port"),
            (Endpoint("e"), "metadata"),
            (Value("v"), "values"),
        ],
    )
    def test_frozen(self, obj: object, attr: str) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, "x")

    @pytest.mark.parametrize(
        "make",
        [
            lambda md: Service("s", metadata=md),
            lambda md: Node("n", metadata=md),
            lambda md: Endpoint("e", metadata=md),
        ],
    )
    def test_metadata_is_a_read_only_copy(self, make: Callable[[dict[str, str]], Any]) -> None:
        md = {"a": "1"}
        obj = make(md)
        md["a"] = "changed"
        md["b"] = "2"
        assert dict(obj.metadata) == {"a": "1"}
        with pytest.raises(TypeError):
            obj.metadata["a"] = "x"
        with pytest.raises(TypeError):
            del obj.metadata["a"]
        assert not hasattr(obj.metadata, "update")
        assert not hasattr(obj.metadata, "pop")
        assert dict(obj.metadata) == {"a": "1"}

    def test_empty_metadata_cannot_be_filled(self) -> None:
        a, b = Node("a"), Node("b")
        with pytest.raises(TypeError):
            a.metadata["x"] = "y"  # type: ignore[index]
        assert b.metadata == {}

    def test_callers_list_mutation_does_not_leak(self) -> None:
        nodes = [Node("a")]
        s = Service("s", nodes=nodes)
        nodes.append(Node("b"))
        assert s.nodes == (Node("a"),)

    def test_from_dict_copies(self) -> None:
        d: dict[str, Any] = {"name": "s", "metadata": {"a": "1"}, "nodes": [{"id": "n"}]}
        s = Service.from_dict(d)
        d["metadata"]["a"] = "2"
        d["nodes"].append({"id": "m"})
        assert s.metadata == {"a": "1"}
        assert len(s.nodes) == 1

    def test_to_dict_returns_fresh_mutable_copies(self) -> None:
        s = Service("s", metadata={"a": "1"}, nodes=(Node("n", metadata={"k": "v"}),))
        d = s.to_dict()
        d["metadata"]["a"] = "x"
        d["nodes"][0]["metadata"]["k"] = "x"
        assert s.metadata == {"a": "1"}
        assert s.nodes[0].metadata == {"k": "v"}

    def test_hashable_and_equal_by_value(self) -> None:
        a = Service.from_json(GO_MICRO_JSON)
        b = Service.from_json(GO_MICRO_JSON)
        assert a == b
        assert hash(a) == hash(b)
        assert len({a, b}) == 1
        assert len({Node("n", metadata={"a": "1"}), Node("n", metadata={"a": "2"})}) == 2
        assert Node("n", metadata={"a": "1", "b": "2"}) == Node("n", metadata={"b": "2", "a": "1"})

    def test_metadata_equals_plain_dicts(self) -> None:
        md = Node("n", metadata={"a": "1"}).metadata
        plain = {"a": "1"}
        assert md == plain
        assert plain == md  # reflected: dict.__eq__ defers to the mapping
        assert md != {"a": "2"}
        not_a_mapping: object = [("a", "1")]
        assert md != not_a_mapping
        assert "a" in md
        assert "b" not in md
        assert md.get("b") is None
        assert list(md.items()) == [("a", "1")]

    def test_copy_deepcopy_and_pickle(self) -> None:
        s = Service.from_json(GO_MICRO_JSON)
        assert copy.copy(s) == s
        assert copy.deepcopy(s) == s
        restored = pickle.loads(pickle.dumps(s))
        assert restored == s
        with pytest.raises(TypeError):
            restored.nodes[0].metadata["x"] = "y"

    def test_replace_revalidates(self) -> None:
        n = Node("n", "h", 80)
        assert dataclasses.replace(n, port=81).port == 81
        with raises_field("node.port"):
            dataclasses.replace(n, port=0)
        with raises_field("service.name"):
            dataclasses.replace(Service("s"), name="")


# --------------------------------------------------------------------------- host_port


@pytest.mark.parametrize(
    ("address", "port", "expected"),
    [
        ("10.0.0.5:54321", None, ("10.0.0.5", 54321)),
        ("greeter.local:8080", None, ("greeter.local", 8080)),
        ("[::1]:8080", None, ("::1", 8080)),
        ("[fe80::1%eth0]:9", None, ("fe80::1%eth0", 9)),
        ("10.0.0.5", None, ("10.0.0.5", None)),
        ("localhost", None, ("localhost", None)),
        ("::1", None, ("::1", None)),
        ("fe80::1:8080", None, ("fe80::1:8080", None)),
        ("", None, ("", None)),
        (":8080", None, ("", 8080)),
        ("h:00080", None, ("h", 80)),
        ("10.0.0.5", 8080, ("10.0.0.5", 8080)),
        ("::1", 53, ("::1", 53)),
        # an address that merely looks like host:port is not parsed
        ("h:80 ", None, ("h:80 ", None)),
        ("h:8a", None, ("h:8a", None)),
        ("h:٨٠", None, ("h:٨٠", None)),  # non-ASCII digits are not a port
        ("a:b:1", None, ("a:b:1", None)),
    ],
)
def test_host_port(address: str, port: int | None, expected: tuple[str, int | None]) -> None:
    assert Node("n", address, port).host_port() == expected


# --------------------------------------------------------------------------- validation


def _bad_constructions() -> list[tuple[str, Callable[[], object], str]]:
    long_name = "x" * (MAX_NAME_LENGTH + 1)
    return [
        ("empty service name", lambda: Service(""), "service.name"),
        ("non-str service name", lambda: Service(1), "service.name"),  # type: ignore[arg-type]
        ("long service name", lambda: Service(long_name), "service.name"),
        ("long version", lambda: Service("s", long_name), "service.version"),
        ("None version", lambda: Service("s", None), "service.version"),  # type: ignore[arg-type]
        ("surrogate name", lambda: Service("a\ud800"), "service.name"),
        ("metadata not a map", lambda: Service("s", metadata=[("a", "b")]), "service.metadata"),  # type: ignore[arg-type]
        ("metadata int key", lambda: Service("s", metadata={1: "b"}), "service.metadata"),  # type: ignore[dict-item]
        ("metadata None value", lambda: Service("s", metadata={"a": None}), "service.metadata['a']"),  # type: ignore[dict-item]
        ("metadata surrogate", lambda: Service("s", metadata={"a": "\udfff"}), "service.metadata['a']"),
        ("endpoints is a str", lambda: Service("s", endpoints="e"), "service.endpoints"),  # type: ignore[arg-type]
        ("endpoints is a dict", lambda: Service("s", endpoints={}), "service.endpoints"),
        ("endpoints is an int", lambda: Service("s", endpoints=3), "service.endpoints"),  # type: ignore[arg-type]
        ("endpoint wrong type", lambda: Service("s", endpoints=(Node("n"),)), "service.endpoints[0]"),  # type: ignore[arg-type]
        ("node wrong type", lambda: Service("s", nodes=(Node("n"), {"id": "x"})), "service.nodes[1]"),  # type: ignore[arg-type]
        (
            "duplicate node id",
            lambda: Service("s", nodes=(Node("a"), Node("b"), Node("a"))),
            "service.nodes[2].id",
        ),
        ("empty node id", lambda: Node(""), "node.id"),
        ("long node id", lambda: Node(long_name), "node.id"),
        ("non-str address", lambda: Node("n", 5), "node.address"),  # type: ignore[arg-type]
        ("long address", lambda: Node("n", "a" * (MAX_ADDRESS_LENGTH + 1)), "node.address"),
        ("surrogate address", lambda: Node("n", "\ud800:80"), "node.address"),
        ("port zero", lambda: Node("n", "h", 0), "node.port"),
        ("port negative", lambda: Node("n", "h", -1), "node.port"),
        ("port too large", lambda: Node("n", "h", 65536), "node.port"),
        ("port huge", lambda: Node("n", "h", 10**5000), "node.port"),
        ("port bool", lambda: Node("n", "h", True), "node.port"),
        ("port float", lambda: Node("n", "h", 80.0), "node.port"),  # type: ignore[arg-type]
        ("port str", lambda: Node("n", "h", "80"), "node.port"),  # type: ignore[arg-type]
        ("address port zero", lambda: Node("n", "h:0"), "node.address"),
        ("address port too large", lambda: Node("n", "[::1]:65536"), "node.address"),
        ("address port huge", lambda: Node("n", "h:" + "9" * 500), "node.address"),
        ("node metadata", lambda: Node("n", metadata={"a": 1}), "node.metadata['a']"),  # type: ignore[dict-item]
        ("empty endpoint name", lambda: Endpoint(""), "endpoint.name"),
        ("request not a Value", lambda: Endpoint("e", request={"name": "x"}), "endpoint.request"),  # type: ignore[arg-type]
        ("response not a Value", lambda: Endpoint("e", response="x"), "endpoint.response"),  # type: ignore[arg-type]
        ("endpoint metadata", lambda: Endpoint("e", metadata={"a": b"x"}), "endpoint.metadata['a']"),  # type: ignore[dict-item]
        ("value name type", lambda: Value(None), "value.name"),  # type: ignore[arg-type]
        ("long value type", lambda: Value("v", long_name), "value.type"),
        ("values not a list", lambda: Value("v", values=Value("w")), "value.values"),  # type: ignore[arg-type]
        ("values bytes", lambda: Value("v", values=b"ab"), "value.values"),  # type: ignore[arg-type]
        ("values item", lambda: Value("v", values=("w",)), "value.values[0]"),  # type: ignore[arg-type]
        ("values too deep", lambda: Value("v", values=(nested_value(MAX_VALUE_DEPTH),)), "value"),
    ]


@pytest.mark.parametrize(
    ("make", "field"),
    [pytest.param(make, fld, id=label) for label, make, fld in _bad_constructions()],
)
def test_constructor_rejects(make: Callable[[], object], field: str) -> None:
    with raises_field(field):
        make()


def _base() -> dict[str, Any]:
    return {
        "name": "s",
        "version": "1",
        "metadata": {"a": "b"},
        "endpoints": [
            {
                "name": "E",
                "request": {"name": "R", "type": "R", "values": [{"name": "f", "type": "int"}]},
                "response": None,
                "metadata": None,
            }
        ],
        "nodes": [{"id": "n0", "address": "h:1"}, {"id": "n1", "address": "h", "port": 2}],
    }


def _set(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    d = _base()
    target: Any = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return d


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("name",), "", "service.name"),
        (("name",), 7, "service.name"),
        (("name",), ["s"], "service.name"),
        (("version",), 1.5, "service.version"),
        (("metadata",), [], "service.metadata"),
        (("metadata",), "a=b", "service.metadata"),
        (("metadata", "a"), 1, "service.metadata['a']"),
        (("metadata", "a"), None, "service.metadata['a']"),
        (("metadata", "a"), {"x": "y"}, "service.metadata['a']"),
        (("endpoints",), {}, "service.endpoints"),
        (("endpoints",), "E", "service.endpoints"),
        (("endpoints", 0), None, "service.endpoints[0]"),
        (("endpoints", 0), [], "service.endpoints[0]"),
        (("endpoints", 0, "name"), "", "service.endpoints[0].name"),
        (("endpoints", 0, "name"), False, "service.endpoints[0].name"),
        (("endpoints", 0, "metadata"), {"k": 1}, "service.endpoints[0].metadata['k']"),
        (("endpoints", 0, "request"), "R", "service.endpoints[0].request"),
        (("endpoints", 0, "request"), [], "service.endpoints[0].request"),
        (("endpoints", 0, "response"), 0, "service.endpoints[0].response"),
        (("endpoints", 0, "request", "name"), 1, "service.endpoints[0].request.name"),
        (("endpoints", 0, "request", "type"), {}, "service.endpoints[0].request.type"),
        (("endpoints", 0, "request", "type"), "t" * 257, "service.endpoints[0].request.type"),
        (("endpoints", 0, "request", "values"), {}, "service.endpoints[0].request.values"),
        (("endpoints", 0, "request", "values", 0), 1, "service.endpoints[0].request.values[0]"),
        (
            ("endpoints", 0, "request", "values", 0, "name"),
            "\ud800",
            "service.endpoints[0].request.values[0].name",
        ),
        (("nodes",), {"id": "n"}, "service.nodes"),
        (("nodes", 1), "n1", "service.nodes[1]"),
        (("nodes", 1, "id"), "", "service.nodes[1].id"),
        (("nodes", 1, "id"), None, "service.nodes[1].id"),
        (("nodes", 1, "id"), 1, "service.nodes[1].id"),
        (("nodes", 1, "id"), "n0", "service.nodes[1].id"),
        (("nodes", 1, "port"), 70000, "service.nodes[1].port"),
        (("nodes", 1, "port"), -5, "service.nodes[1].port"),
        (("nodes", 1, "port"), True, "service.nodes[1].port"),
        (("nodes", 1, "port"), False, "service.nodes[1].port"),
        (("nodes", 1, "port"), 80.0, "service.nodes[1].port"),
        (("nodes", 1, "port"), "80", "service.nodes[1].port"),
        (("nodes", 1, "port"), 10**5000, "service.nodes[1].port"),
        (("nodes", 1, "address"), 10, "service.nodes[1].address"),
        (("nodes", 1, "address"), "a" * 513, "service.nodes[1].address"),
        (("nodes", 0, "address"), "h:65536", "service.nodes[0].address"),
        (("nodes", 0, "address"), "[::1]:0", "service.nodes[0].address"),
        (("nodes", 0, "metadata"), [["a", "b"]], "service.nodes[0].metadata"),
        (("nodes", 0, "metadata"), {"a": ["b"]}, "service.nodes[0].metadata['a']"),
    ],
    ids=short_id,
)
def test_from_dict_rejects_and_names_the_field(
    path: tuple[str | int, ...], value: object, field: str
) -> None:
    Service.from_dict(_base())  # the base is valid
    with raises_field(field):
        Service.from_dict(_set(path, value))


@pytest.mark.parametrize("data", [None, [], "s", 1, True, 1.5, b"{}", [{"name": "s"}]])
def test_from_dict_rejects_non_objects(data: object) -> None:
    with raises_field("service"):
        Service.from_dict(data)


def test_from_dict_rejects_non_str_metadata_key() -> None:
    # JSON cannot produce one, but a Python caller can.
    with raises_field("service.nodes[0].metadata"):
        Service.from_dict({"name": "s", "nodes": [{"id": "n", "metadata": {(1, 2): "x"}}]})
    with raises_field("service.metadata"):
        Service.from_dict({"name": "s", "metadata": {10**5000: "x"}})


def test_error_messages_stay_short_for_huge_input() -> None:
    with pytest.raises(InvalidServiceError) as info:
        Service.from_dict({"name": "s", "metadata": {"k" * 1_000_000: 1}})
    assert len(str(info.value)) < 200
    with pytest.raises(InvalidServiceError) as info:
        Service.from_dict({"name": "s", "nodes": [{"id": "n", "port": -(10**5000)}]})
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "null",
        "[]",
        '"greeter"',
        "{'name': 'x'}",
        '{"name": "x",}',
        "\ufeff{}",
        '{"name": "x"} trailing',
        "[" * 100_000 + "]" * 100_000,
        '{"name":"s","metadata":' + '{"a":' * 50_000 + "1" + "}" * 50_001,
        '{"name":"s","nodes":[{"id":"n","port":' + "9" * 5000 + "}]}",
        '{"name":"\\ud800"}',
        '{"name":"s","nodes":[{"id":"n","port":NaN}]}',
        '{"name":"s","nodes":[{"id":"n","port":Infinity}]}',
    ],
    ids=short_id,
)
def test_from_json_rejects(text: str) -> None:
    with pytest.raises(InvalidServiceError):
        Service.from_json(text)
    with pytest.raises(InvalidServiceError):
        Service.from_json(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("data", [b"\xff\xfe\x00", b'{"name":"\xc3"}', b"\x80", b"\xed\xa0\x80"])
def test_from_json_rejects_invalid_utf8(data: bytes) -> None:
    with pytest.raises(InvalidServiceError, match="not valid JSON"):
        Service.from_json(data)


# --------------------------------------------------------------------------- limits


class TestLimits:
    def test_name_length(self) -> None:
        ok = "n" * MAX_NAME_LENGTH
        Service(ok, ok)
        Node(ok)
        Endpoint(ok)
        Value(ok, ok)
        # the limit is in characters, not bytes
        Service("é" * MAX_NAME_LENGTH)
        makers: list[tuple[Callable[[str], object], str]] = [
            (lambda s: Service(s), "service.name"),
            (lambda s: Service("x", s), "service.version"),
            (lambda s: Node(s), "node.id"),
            (lambda s: Endpoint(s), "endpoint.name"),
            (lambda s: Value(s), "value.name"),
            (lambda s: Value("v", s), "value.type"),
        ]
        for make, fld in makers:
            with raises_field(fld):
                make(ok + "n")

    def test_address_length(self) -> None:
        Node("n", "a" * MAX_ADDRESS_LENGTH)
        with raises_field("node.address"):
            Node("n", "a" * (MAX_ADDRESS_LENGTH + 1))

    def test_metadata_bytes(self) -> None:
        # keys plus values, UTF-8 encoded
        ok = {"k": "v" * (MAX_METADATA_BYTES - 1)}
        assert Service("s", metadata=ok).metadata == ok
        with raises_field("service.metadata"):
            Service("s", metadata={"k": "v" * MAX_METADATA_BYTES})
        many = {f"{i:04d}": "" for i in range(MAX_METADATA_BYTES // 4)}
        Node("n", metadata=many)
        with raises_field("node.metadata"):
            Node("n", metadata={**many, "x": ""})
        # 2-byte characters count twice
        half = MAX_METADATA_BYTES // 2
        Endpoint("e", metadata={"é" * half: ""})
        with raises_field("endpoint.metadata"):
            Endpoint("e", metadata={"é" * half: "x"})
        with raises_field("service.metadata"):
            Service.from_dict({"name": "s", "metadata": {"k": "€" * 1366}})
        Service.from_dict({"name": "s", "metadata": {"k": "€" * 1365}})

    def test_node_count(self) -> None:
        nodes = [Node(f"n{i}") for i in range(MAX_NODES)]
        assert len(Service("s", nodes=tuple(nodes)).nodes) == MAX_NODES
        with raises_field("service.nodes"):
            Service("s", nodes=(*nodes, Node("extra")))
        raw = [{"id": f"n{i}"} for i in range(MAX_NODES + 1)]
        assert len(Service.from_dict({"name": "s", "nodes": raw[:-1]}).nodes) == MAX_NODES
        with raises_field("service.nodes"):
            Service.from_dict({"name": "s", "nodes": raw})
        # the count is checked before the entries are parsed
        with raises_field("service.nodes"):
            Service.from_dict({"name": "s", "nodes": [None] * (MAX_NODES + 1)})

    def test_endpoint_count(self) -> None:
        eps = tuple(Endpoint(f"e{i}") for i in range(MAX_ENDPOINTS))
        Service("s", endpoints=eps)
        with raises_field("service.endpoints"):
            Service("s", endpoints=(*eps, Endpoint("x")))
        with raises_field("service.endpoints"):
            Service.from_dict({"name": "s", "endpoints": [None] * (MAX_ENDPOINTS + 1)})

    def test_value_fields(self) -> None:
        vals = tuple(Value(f"f{i}") for i in range(MAX_VALUE_FIELDS))
        Value("v", values=vals)
        with raises_field("value.values"):
            Value("v", values=(*vals, Value("x")))
        raw = {"name": "v", "values": [{"name": "f"}] * (MAX_VALUE_FIELDS + 1)}
        with raises_field("service.endpoints[0].request.values"):
            Service.from_dict({"name": "s", "endpoints": [{"name": "e", "request": raw}]})

    def test_value_depth(self) -> None:
        deepest = nested_value(MAX_VALUE_DEPTH)
        Endpoint("e", deepest)
        with raises_field("value"):
            Value("top", values=(deepest,))
        ok = {"name": "s", "endpoints": [{"name": "e", "response": nested_value_dict(MAX_VALUE_DEPTH)}]}
        assert Service.from_dict(ok).endpoints[0].response == deepest
        too_deep = {
            "name": "s",
            "endpoints": [{"name": "e", "response": nested_value_dict(MAX_VALUE_DEPTH + 1)}],
        }
        with pytest.raises(
            InvalidServiceError, match=r"^service\.endpoints\[0\]\.response(\.values\[0\])+: .*deeper"
        ):
            Service.from_dict(too_deep)

    def test_very_deep_value_dict_is_rejected_without_recursion_error(self) -> None:
        d: dict[str, Any] = {}
        for _ in range(100_000):
            d = {"values": [d]}
        with raises_field("service.endpoints[0].request" + ".values[0]" * (MAX_VALUE_DEPTH)):
            Service.from_dict({"name": "s", "endpoints": [{"name": "e", "request": d}]})


# --------------------------------------------------------------------------- control characters

#: Every character a name refuses (CONTROL_CHARACTERS), and some it accepts.
CONTROLS = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)]
NOT_CONTROLS = [" ", "~", "\xa0", "é", "\u200b", "\u202e", "\ufeff", "\U0001f600", "\u2027", "\u202a"]


def _name_makers() -> list[tuple[str, Callable[[str], object], str]]:
    """Every name field: (label, construct with ``s`` in that field, field in the message)."""
    return [
        ("service name", lambda s: Service(f"svc{s}"), "service.name"),
        ("version", lambda s: Service("svc", f"1{s}"), "service.version"),
        ("node id", lambda s: Node(f"{s}n"), "node.id"),
        ("node address", lambda s: Node("n", f"10.0.0.1:80{s}"), "node.address"),
        ("endpoint name", lambda s: Endpoint(f"E{s}"), "endpoint.name"),
        ("value name", lambda s: Value(f"v{s}"), "value.name"),
        ("value type", lambda s: Value("v", s), "value.type"),
        ("service metadata key", lambda s: Service("svc", metadata={f"k{s}": "v"}), "service.metadata["),
        ("node metadata key", lambda s: Node("n", metadata={s: "v"}), "node.metadata["),
        ("endpoint metadata key", lambda s: Endpoint("E", metadata={f"{s}k": "v"}), "endpoint.metadata["),
    ]


@pytest.mark.parametrize("char", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(("make", "field"), [pytest.param(m, f, id=label) for label, m, f in _name_makers()])
def test_a_control_character_in_a_name_is_an_invalid_service_error(
    make: Callable[[str], object], field: str, char: str
) -> None:
    with pytest.raises(InvalidServiceError) as info:
        make(char)
    message = str(info.value)
    assert message.startswith(field), message
    assert f"control character U+{ord(char):04X}" in message
    assert "U+0000-U+001F, U+007F-U+009F, U+2028, U+2029" in message  # the rule
    assert char not in message, "the message shows the value escaped: it cannot break a log line"


@pytest.mark.parametrize("char", NOT_CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("make", [pytest.param(m, id=label) for label, m, _ in _name_makers()])
def test_other_characters_are_allowed_in_names(make: Callable[[str], object], char: str) -> None:
    make(char)


def test_control_characters_match_the_documented_set() -> None:
    refused = {c for c in map(chr, range(0x3000)) if control_character(c) == 0}
    assert refused == set(CONTROLS)
    assert re.fullmatch(f"[{CONTROL_CHARACTERS}]+", "".join(CONTROLS))
    assert control_character("abc") == -1
    assert control_character("ab\ncd\n") == 2


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("name",), "service.name"),
        (("version",), "service.version"),
        (("endpoints", 0, "name"), "service.endpoints[0].name"),
        (("endpoints", 0, "request", "values", 0, "type"), "service.endpoints[0].request.values[0].type"),
        (("nodes", 0, "id"), "service.nodes[0].id"),
        (("nodes", 1, "address"), "service.nodes[1].address"),
    ],
)
def test_go_micro_json_with_a_control_character_in_a_name_is_refused(
    path: tuple[str | int, ...], field: str
) -> None:
    # What a hostile client of the HTTP API would send: "\n" escaped in JSON.
    text = json.dumps(_set(path, "forged\nINFO registered admin"))
    with raises_field(field):
        Service.from_json(text)


def test_metadata_values_may_hold_control_characters() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
    meta = {"cert": pem, "tabs": "a\tb", "nul": "\x00", "nel": "\x85\u2028"}
    svc = Service(
        "svc", metadata=meta, nodes=(Node("n", metadata=meta),), endpoints=(Endpoint("E", metadata=meta),)
    )
    again = Service.from_json(svc.to_json())
    assert again == svc
    assert dict(again.nodes[0].metadata) == meta


def _valid_name(text: str, *, empty_ok: bool = False) -> bool:
    return (
        (empty_ok or len(text) > 0)
        and len(text) <= MAX_NAME_LENGTH
        and control_character(text) < 0
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    )


@given(st.text(max_size=MAX_NAME_LENGTH + 2))
def test_any_text_is_a_valid_name_or_an_invalid_service_error(text: str) -> None:
    # (construct with text in a name field, whether the rules say it is valid there)
    cases: list[tuple[Callable[[str], object], bool | None]] = [
        (lambda s: Service(s), _valid_name(text)),
        (lambda s: Service("svc", s), _valid_name(text, empty_ok=True)),
        (lambda s: Node(s), _valid_name(text)),
        (lambda s: Endpoint(s), _valid_name(text)),
        (lambda s: Value(s, s), _valid_name(text, empty_ok=True)),
        (lambda s: Service("svc", metadata={s: "v"}), _valid_name(text, empty_ok=True)),
        (lambda s: Node("n", s), None),  # an address also has a port rule: valid or not, no other error
    ]
    for make, valid in cases:
        try:
            make(text)
        except InvalidServiceError:
            assert valid is not True, text
        else:
            assert valid is not False, text
    # Any other exception type escapes and fails the test.


@given(st.text(max_size=40))
def test_any_text_for_a_json_service_name_is_a_service_or_an_invalid_service_error(text: str) -> None:
    doc = json.dumps({"name": text, "nodes": [{"id": text, "address": text}], "metadata": {text: text}})
    try:
        svc = Service.from_json(doc)
    except InvalidServiceError:
        return
    assert svc.name == text
    assert control_character(text) < 0


# --------------------------------------------------------------------------- ttl


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        (None, None),
        (MIN_TTL, 0.001),
        (30, 30.0),
        (30.5, 30.5),
        (Fraction(1, 2), 0.5),
        (MAX_TTL, float(MAX_TTL)),
    ],
    ids=repr,
)
def test_a_valid_ttl_is_returned_as_a_float(ttl: object, expected: float | None) -> None:
    got = check_ttl(ttl)
    assert got == expected
    assert got is None or type(got) is float


@pytest.mark.parametrize(
    ("ttl", "fragment"),
    [
        (True, "not bool True"),
        (False, "not bool False"),
        ("30", "not str '30'"),
        (b"30", "not bytes"),
        (Decimal("30"), "not Decimal"),
        ([30], "not list [30]"),
        (math.nan, "nan is out of range"),
        (math.inf, "inf is out of range"),
        (-math.inf, "-inf is out of range"),
        (-1, "-1 is out of range"),
        (0, "0 is out of range"),
        (0.0, "0.0 is out of range"),
        (0.0009, "0.0009 is out of range"),
    ],
    ids=repr,
)
def test_a_ttl_that_is_not_a_positive_finite_number_is_an_invalid_service_error(
    ttl: object, fragment: str
) -> None:
    with pytest.raises(InvalidServiceError, match=r"^ttl: ") as info:
        check_ttl(ttl)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "ttl", [MAX_TTL + 0.001, MAX_TTL + 1, 1e10, 1e308, 10**400, Fraction(10**400, 3)], ids=short_id
)
def test_ttl_beyond_the_maximum_is_an_invalid_service_error(ttl: object) -> None:
    with pytest.raises(InvalidServiceError, match=r"^ttl: ") as info:
        check_ttl(ttl)
    message = str(info.value)
    assert f"from {MIN_TTL:g} to {MAX_TTL} seconds" in message  # the rule
    assert len(message) < 200


def test_the_ttl_maximum_keeps_every_lease_computation_finite() -> None:
    ttl = check_ttl(MAX_TTL)
    assert ttl is not None
    assert math.isfinite(1e9 + ttl)
    assert round(ttl * 1000) == MAX_TTL * 1000 <= 2**32 - 1  # the wire's uint32 milliseconds
    assert check_ttl(5, where="service_ttl") == 5.0
    with pytest.raises(InvalidServiceError, match=r"^service_ttl: "):
        check_ttl(0, where="service_ttl")


# --------------------------------------------------------------------------- messages


def test_shown_values_are_escaped_and_cut_short() -> None:
    assert shown("a\nb") == "'a\\nb'"
    assert shown("\u2028") == "'\\u2028'"
    long = shown("x" * 10_000)
    assert len(long) < 80
    assert "..." in long
    assert shown(10**5000) == "<int of 16610 bits>"
    assert len(shown(list(range(10_000)))) < 80

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert shown(Broken()).startswith("<Broken")


def test_messages_about_names_show_the_value_and_stay_short() -> None:
    with pytest.raises(InvalidServiceError) as info:
        Service("x" * 100_000)
    message = str(info.value)
    assert message.startswith("service.name: 'xxx")
    assert "100000 characters" in message
    assert len(message) < 200
    with pytest.raises(InvalidServiceError, match=r"^node\.id: must be a str, not int 42$"):
        Node(42)  # type: ignore[arg-type]
