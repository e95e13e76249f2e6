"""Unit tests of the registration CRDT (gossipreg.core.catalog).

Every catalog gets a fake wall clock (for HLC stamps) and every time-dependent
call an explicit ``now`` (the monotonic clock), so the tests are deterministic.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

import pytest

from gossipreg.core.catalog import (
    DEFAULT_CONVERGENCE_BOUND,
    DEFAULT_TOMBSTONE_TTL,
    Catalog,
    CatalogEvent,
    Key,
    Offer,
    Record,
    key_hash,
    sync_pair,
)
from gossipreg.core.codec import decode_record, encode_record, pack, unpack
from gossipreg.core.errors import InvalidServiceError, NotFoundError
from gossipreg.core.hlc import HybridClock, make_stamp, physical_ms
from gossipreg.core.model import Endpoint, Node, Service

WALL = 1_000_000.0  # fake wall clock, seconds
WALL_MS = int(WALL * 1000)
TOMB = DEFAULT_TOMBSTONE_TTL


class FakeWall:
    def __init__(self, t: float = WALL) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def catalog(
    name: str = "a", wall: FakeWall | None = None, max_drift: float = 60.0, **kwargs: object
) -> Catalog:
    clock = HybridClock(wall if wall is not None else FakeWall(), max_drift=max_drift)
    return Catalog(name, clock, **kwargs)  # type: ignore[arg-type]


def stamp(offset_ms: int = 0, c: int = 0) -> int:
    """A stamp ``offset_ms`` after the default fake wall clock."""
    return make_stamp(WALL_MS + offset_ms, c)


def node(nid: str, port: int = 8080, **md: str) -> Node:
    return Node(id=nid, address=f"10.0.0.1:{port}", metadata=md)


def service(
    name: str = "greeter",
    version: str = "1.0",
    nodes: Iterable[str | Node] = ("n1",),
    metadata: Mapping[str, str] | None = None,
    endpoints: Iterable[str] = (),
) -> Service:
    return Service(
        name=name,
        version=version,
        metadata=metadata or {},
        endpoints=tuple(Endpoint(e) for e in endpoints),
        nodes=tuple(n if isinstance(n, Node) else node(n) for n in nodes),
    )


def rec(
    key: Key = ("greeter", "1.0", "n1"),
    owner: str = "x",
    st: int | None = None,
    *,
    ttl: float | None = None,
    deleted: bool = False,
    metadata: Mapping[str, str] | None = None,
    port: int = 8080,
) -> Record:
    """A remote record (owner ``x`` by default) with a stamp at the fake wall clock."""
    return Record(
        key[0],
        key[1],
        key[2],
        owner,
        stamp() if st is None else st,
        ttl,
        deleted,
        None if deleted else node(key[2], port),
        dict(metadata or {}),
        (),
    )


def actions(events: list[CatalogEvent]) -> list[tuple[str, Key]]:
    return [(e.action, e.record.key) for e in events]


# ----------------------------------------------------------- view reference


def expected_views(cat: Catalog) -> tuple[dict[str, list[Service]], list[Service]]:
    """Recompute the views from scratch: visible records grouped, sorted, newest record heads."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in cat.records():
        if cat.is_visible(r.key):
            assert not r.deleted
            assert r.node is not None
            groups[(r.service, r.version)].append(r)
    by_name: dict[str, list[Service]] = defaultdict(list)
    listing = []
    for (name, version), rs in sorted(groups.items()):
        head = max(rs, key=lambda r: (r.stamp, r.owner))
        nodes = tuple(r.node for r in sorted(rs, key=lambda r: r.node_id) if r.node is not None)
        by_name[name].append(Service(name, version, head.metadata, head.endpoints, nodes))
        listing.append(Service(name, version, head.metadata, head.endpoints, ()))
    return dict(by_name), listing


def check_views(cat: Catalog, names: Iterable[str] = ()) -> None:
    """The (cached) views equal a recomputation; also reads them, filling the caches."""
    by_name, listing = expected_views(cat)
    for name in {*names, *by_name}:
        if name in by_name:
            assert cat.get_service(name) == by_name[name], name
        else:
            with pytest.raises(NotFoundError):
                cat.get_service(name)
    assert cat.list_services() == listing


def visible_nodes(cat: Catalog, name: str = "greeter") -> dict[str, list[str]]:
    try:
        return {s.version: [n.id for n in s.nodes] for s in cat.get_service(name)}
    except NotFoundError:
        return {}


# ------------------------------------------------------------ construction


def test_constructor_validates() -> None:
    clock = HybridClock(FakeWall())
    with pytest.raises(ValueError, match="name"):
        Catalog("", clock)
    with pytest.raises(ValueError, match="tombstone_ttl"):
        Catalog("a", clock, tombstone_ttl=100, convergence_bound=100)
    with pytest.raises(ValueError, match="tombstone_ttl"):
        Catalog("a", clock, convergence_bound=0)
    cat = Catalog("a", clock)
    assert cat.max_ttl == DEFAULT_TOMBSTONE_TTL - DEFAULT_CONVERGENCE_BOUND
    assert len(cat) == 0
    assert cat.records() == []
    assert cat.next_deadline() is None


# -------------------------------------------------------------- register


def test_register_returns_one_record_per_node_with_increasing_stamps() -> None:
    cat = catalog()
    svc = service(nodes=("n1", "n2", "n3"), metadata={"m": "1"}, endpoints=("Greeter.Hello",))
    out = cat.register(svc, 30, now=5.0)
    assert [r.key for r in out] == [("greeter", "1.0", n) for n in ("n1", "n2", "n3")]
    assert [r.node for r in out] == list(svc.nodes)
    for r in out:
        assert r.owner == "a"
        assert r.ttl == 30.0
        assert isinstance(r.ttl, float)
        assert not r.deleted
        assert r.metadata == {"m": "1"}
        assert r.endpoints == svc.endpoints
        assert cat.get(r.key) == r
        assert cat.is_visible(r.key)
    stamps = [r.stamp for r in out]
    assert stamps == sorted(set(stamps))
    assert physical_ms(stamps[0]) == WALL_MS
    assert sorted(cat.local_records(), key=lambda r: r.key) == out
    assert actions(cat.take_events()) == [("create", r.key) for r in out]
    assert cat.take_events() == []


def test_register_shows_the_service() -> None:
    cat = catalog()
    svc = service(nodes=("n1", "n2"), metadata={"m": "1"}, endpoints=("E",))
    cat.register(svc, None, now=0.0)
    assert cat.get_service("greeter") == [svc]
    assert cat.list_services() == [svc.with_nodes(())]


def test_get_service_one_service_per_version_sorted_nodes_sorted() -> None:
    cat = catalog()
    cat.register(service(version="2.0", nodes=("n9", "n1")), None, 0.0)
    cat.register(service(version="10", nodes=("b",)), None, 0.0)
    cat.register(service(version="1.0", nodes=("z", "a", "m")), None, 0.0)
    cat.register(service(version="", nodes=("e",)), None, 0.0)
    got = cat.get_service("greeter")
    assert [s.version for s in got] == ["", "1.0", "10", "2.0"]
    assert [[n.id for n in s.nodes] for s in got] == [["e"], ["a", "m", "z"], ["b"], ["n1", "n9"]]
    assert all(s.name == "greeter" for s in got)


def test_list_services_one_per_name_and_version_without_nodes_sorted() -> None:
    cat = catalog()
    cat.register(service("zeta", "1", nodes=("a", "b")), None, 0.0)
    cat.register(service("alpha", "2", nodes=("a",)), None, 0.0)
    cat.register(service("alpha", "1", nodes=("c",)), None, 0.0)
    cat.register(service("alpha", "1", nodes=("d",)), None, 0.0)
    listing = cat.list_services()
    assert [(s.name, s.version) for s in listing] == [("alpha", "1"), ("alpha", "2"), ("zeta", "1")]
    assert all(s.nodes == () for s in listing)


def test_get_service_unknown_raises_not_found() -> None:
    cat = catalog()
    with pytest.raises(NotFoundError, match="nope"):
        cat.get_service("nope")
    cat.register(service(), None, 0.0)
    with pytest.raises(NotFoundError):
        cat.get_service("greeter2")
    with pytest.raises(LookupError):
        cat.get_service("nope")


def test_register_without_nodes_is_invalid() -> None:
    cat = catalog()
    with pytest.raises(InvalidServiceError, match="node"):
        cat.register(service(nodes=()), None, 0.0)
    assert len(cat) == 0


def test_register_rejects_non_service() -> None:
    cat = catalog()
    with pytest.raises(InvalidServiceError, match="Service"):
        cat.register({"name": "greeter"}, None, 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, "10", 3301])
def test_register_rejects_bad_ttl(ttl: object) -> None:
    cat = catalog()  # max_ttl = 3600 - 300 = 3300
    with pytest.raises(InvalidServiceError, match="ttl"):
        cat.register(service(), ttl, 0.0)  # type: ignore[arg-type]
    assert len(cat) == 0
    assert cat.take_events() == []
    assert cat.local_records() == []


def test_register_accepts_ttl_up_to_max_ttl() -> None:
    cat = catalog(tombstone_ttl=100, convergence_bound=40)
    assert cat.max_ttl == 60
    with pytest.raises(InvalidServiceError):
        cat.register(service(), 60.001, 0.0)
    (r,) = cat.register(service(), 60, 0.0)
    assert r.ttl == 60.0
    (r,) = cat.register(service(), 0.001, 0.0)
    assert r.ttl == 0.001


def test_register_rounds_ttl_to_whole_milliseconds() -> None:
    cat = catalog()
    (r,) = cat.register(service(), 10.0006, 0.0)
    assert r.ttl == 10.001
    with pytest.raises(InvalidServiceError, match="ttl"):
        cat.register(service(), 0.0004, 0.0)  # rounds to zero


def test_owner_does_not_correct_its_own_echoes() -> None:
    # Records cross the wire with the ttl in whole milliseconds; a copy echoed back to the
    # owner must equal its local record, or owner authority would re-assert it forever.
    a = catalog("a")
    (r,) = a.register(service(), 10.0006, 0.0)
    echo = decode_record(unpack(pack(encode_record(r))))
    assert echo == r
    res = a.merge([echo], 1.0)
    assert res.reply == []
    assert a.counters["corrections"] == 0
    assert a.get(r.key) == r


def test_renewing_an_unchanged_registration_is_silent_and_restarts_the_lease() -> None:
    cat = catalog()
    (r1,) = cat.register(service(), 10, now=0.0)
    cat.take_events()
    assert cat.register(service(), 10, now=8.0) == []  # nothing to disseminate
    assert cat.take_events() == []  # no watch result
    assert cat.get(r1.key) == r1  # the same version
    assert cat.counters["renewals"] == 1
    assert cat.tick(10.0) == []  # the first lease would have ended here
    assert cat.is_visible(r1.key)
    assert cat.next_deadline() == 18.0
    # Unrenewed, the lease runs out at its owner, which deregisters it.
    (tomb,) = cat.tick(18.0)
    assert tomb.deleted
    assert tomb.key == r1.key
    assert tomb.stamp > r1.stamp
    assert not cat.is_visible(r1.key)
    assert actions(cat.take_events()) == [("delete", r1.key)]
    assert cat.local_records() == []
    assert cat.counters["expired"] == 1


def test_a_changed_registration_is_a_new_version() -> None:
    cat = catalog()
    (r1,) = cat.register(service(), 10, now=0.0)
    cat.take_events()
    (r2,) = cat.register(service(), 20, now=1.0)  # another ttl
    assert r2.stamp > r1.stamp
    (r3,) = cat.register(service(metadata={"v": "2"}), 20, now=2.0)  # other service fields
    assert r3.stamp > r2.stamp
    assert actions(cat.take_events()) == [("update", r1.key), ("update", r1.key)]
    assert cat.register(service(metadata={"v": "2"}), None, now=3.0) != []  # ttl dropped
    assert cat.counters["renewals"] == 0


def test_reregister_with_changed_node_updates_the_view() -> None:
    cat = catalog()
    cat.register(service(nodes=(node("n1", 1),)), None, 0.0)
    cat.register(service(nodes=(node("n1", 2),)), None, 0.0)
    (svc,) = cat.get_service("greeter")
    assert svc.nodes == (node("n1", 2),)
    ev = cat.take_events()
    assert [e.action for e in ev] == ["create", "update"]
    assert ev[1].node == node("n1", 2)


def test_service_level_fields_come_from_the_newest_record_of_the_version() -> None:
    cat = catalog()
    cat.register(service(nodes=("n1",), metadata={"gen": "1"}, endpoints=("A",)), None, 0.0)
    cat.register(service(nodes=("n2",), metadata={"gen": "2"}, endpoints=("B",)), None, 0.0)
    cat.register(service(version="2", nodes=("n3",), metadata={"gen": "3"}), None, 0.0)
    v1, v2 = cat.get_service("greeter")
    assert v1.metadata == {"gen": "2"}
    assert v1.endpoints == (Endpoint("B"),)
    assert [n.id for n in v1.nodes] == ["n1", "n2"]
    assert v2.metadata == {"gen": "3"}
    assert [s.metadata for s in cat.list_services()] == [{"gen": "2"}, {"gen": "3"}]
    # Removing the newest record of version 1.0 falls back to the next newest.
    cat.deregister(service(nodes=("n2",)), 1.0)
    (v1, _) = cat.get_service("greeter")
    assert v1.metadata == {"gen": "1"}
    assert v1.endpoints == (
        Endpoint(
            "A",
        ),
    )
    assert cat.list_services()[0].metadata == {"gen": "1"}
    # Re-registering the older node makes it the newest again.
    cat.register(service(nodes=("n1",), metadata={"gen": "4"}), None, 2.0)
    assert cat.get_service("greeter")[0].metadata == {"gen": "4"}
    assert cat.list_services()[0].metadata == {"gen": "4"}
    check_views(cat)


def test_service_level_fields_do_not_depend_on_history_when_stamps_tie() -> None:
    # Two records of one version with the same (stamp, owner) (forged or corrupt input):
    # the head, and so the service-level fields, must still be a function of the state.
    a = rec(("s", "1", "a"), "x", stamp(1), metadata={"head": "a"})
    b = dataclasses.replace(rec(("s", "1", "b"), "x", stamp(1), metadata={"head": "b"}), ttl=5.0)
    c = rec(("s", "1", "c"), "x", stamp(2), metadata={"head": "c"})
    c_del = rec(("s", "1", "c"), "x", stamp(3), deleted=True)
    histories = ([a, b, c, c_del], [b, a, c, c_del], [a, b, c_del], [b, a, c_del], [c, b, a, c_del])
    cats = []
    for history in histories:
        cat = catalog("me")
        cat.merge(history, 0.0)
        assert cat.records() == [a, b, c_del]
        cats.append(cat)
    for cat in cats[1:]:
        assert cat.get_service("s") == cats[0].get_service("s")
        assert cat.list_services() == cats[0].list_services()


def test_service_level_fields_follow_a_remote_newer_record() -> None:
    cat = catalog()
    cat.register(service(nodes=("n1",), metadata={"gen": "local"}), None, 0.0)
    cat.merge([rec(("greeter", "1.0", "n2"), "x", stamp(5), metadata={"gen": "remote"})], 0.0)
    assert cat.get_service("greeter")[0].metadata == {"gen": "remote"}
    assert cat.list_services()[0].metadata == {"gen": "remote"}
    check_views(cat)


def test_event_service_holds_only_the_changed_node() -> None:
    cat = catalog()
    cat.register(service(nodes=("n1", "n2"), metadata={"m": "v"}), None, 0.0)
    ev = cat.take_events()
    assert [e.service for e in ev] == [
        service(nodes=("n1",), metadata={"m": "v"}),
        service(nodes=("n2",), metadata={"m": "v"}),
    ]


# ---------------------------------------------------------- immutability


def test_get_service_returns_shared_immutable_services() -> None:
    cat = catalog()
    cat.register(service(nodes=("n1", "n2"), metadata={"k": "v"}), None, 0.0)
    first = cat.get_service("greeter")
    second = cat.get_service("greeter")
    assert first == second
    assert first[0] is second[0]  # shared, not copied
    with pytest.raises(dataclasses.FrozenInstanceError):
        first[0].name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        first[0].metadata["k"] = "w"  # type: ignore[index]
    assert isinstance(first[0].nodes, tuple)
    first.clear()
    first.append(service("bogus"))
    assert cat.get_service("greeter") == second
    listing = cat.list_services()
    listing.append(service("bogus"))
    assert [s.name for s in cat.list_services()] == ["greeter"]


def test_records_returned_are_snapshots() -> None:
    cat = catalog()
    cat.register(service(), None, 0.0)
    recs = cat.records()
    recs.clear()
    assert len(cat.records()) == 1
    local = cat.local_records()
    local.clear()
    assert len(cat.local_records()) == 1


def test_caches_follow_every_kind_of_change() -> None:
    cat = catalog(tombstone_ttl=100, convergence_bound=10)
    names = ("greeter", "db", "cache")

    def step() -> None:
        check_views(cat, names)
        check_views(cat, names)  # second read comes from the caches

    step()
    cat.register(service(nodes=("n1", "n2"), metadata={"g": "1"}), 20, 0.0)
    step()
    cat.register(service("db", "1", nodes=("d1",)), None, 0.0)
    step()
    cat.merge([rec(("greeter", "1.0", "n3"), "x", stamp(10), metadata={"g": "x"})], 1.0)
    step()
    cat.merge([rec(("greeter", "2.0", "m1"), "y", stamp(11))], 1.0)
    step()
    cat.merge([rec(("greeter", "1.0", "n3"), "x", stamp(12), port=9999)], 1.0)  # update
    step()
    cat.merge([rec(("cache", "1", "c1"), "y", stamp(13), ttl=5)], 2.0)
    step()
    cat.register(service(nodes=("n1",), metadata={"g": "2"}), 20, 3.0)  # head changes
    step()
    cat.deregister(service(nodes=("n2",)), 4.0)
    step()
    cat.owner_down("x")
    step()
    cat.owner_down("y")
    step()
    cat.owner_up("x")  # back from down: hidden until synced
    step()
    cat.owner_synced("x")
    step()
    cat.tick(7.0)  # cache's lease ends (owner y is down: nothing visible changes)
    step()
    cat.owner_up("y")
    step()
    cat.owner_synced("y")
    step()
    assert visible_nodes(cat) == {"1.0": ["n1", "n3"], "2.0": ["m1"]}
    cat.merge([rec(("greeter", "1.0", "n3"), "x", stamp(20), deleted=True)], 8.0)  # remote delete
    step()
    cat.tick(23.0)  # n1's lease (renewed at 3.0) ends
    step()
    assert visible_nodes(cat) == {"2.0": ["m1"]}
    cat.purge_owner("y")
    step()
    cat.register(service(nodes=("n1",)), None, 24.0)
    step()
    cat.tick(1000.0)  # collections
    step()
    assert visible_nodes(cat) == {"1.0": ["n1"]}
    assert [(s.name, s.version) for s in cat.list_services()] == [("db", "1"), ("greeter", "1.0")]


# ------------------------------------------------------------------ merge


def test_merge_last_writer_wins_by_stamp() -> None:
    cat = catalog("me")
    old = rec(st=stamp(1), port=1)
    new = rec(st=stamp(2), port=2)
    res = cat.merge([old], 0.0)
    assert res.accepted == [old]
    assert res.reply == []
    assert res.rejected == 0
    res = cat.merge([new], 0.0)
    assert res.accepted == [new]
    assert cat.get(new.key) == new
    assert actions(cat.take_events()) == [("create", old.key), ("update", new.key)]
    res = cat.merge([old], 0.0)
    assert res.accepted == []
    assert cat.get(new.key) == new
    assert cat.counters["stale"] == 1
    assert cat.counters["duplicates"] == 0
    assert cat.counters["merged"] == 2
    assert cat.take_events() == []
    assert cat.get_service("greeter")[0].nodes == (node("n1", 2),)


def test_merge_in_either_order_gives_the_same_winner() -> None:
    a, b = catalog("me"), catalog("me")
    old = rec(st=stamp(1), port=1)
    new = rec(st=stamp(2), port=2)
    a.merge([old, new], 0.0)
    b.merge([new, old], 0.0)
    assert a.records() == b.records() == [new]
    assert a.get_service("greeter") == b.get_service("greeter")


def test_merge_stamp_tie_is_broken_by_owner_then_deleted() -> None:
    x = rec(owner="x", st=stamp(5), port=1)
    y = rec(owner="y", st=stamp(5), port=2)
    yt = rec(owner="y", st=stamp(5), deleted=True)
    for order in ([x, y, yt], [yt, y, x], [y, x, yt], [x, yt, y]):
        cat = catalog("me")
        cat.merge(order, 0.0)
        assert cat.records() == [yt]
        assert visible_nodes(cat) == {}
    for order in ([x, y], [y, x]):
        cat = catalog("me")
        cat.merge(order, 0.0)
        assert cat.records() == [y]


def test_merge_exact_order_tie_with_different_content_is_deterministic() -> None:
    p = rec(owner="x", st=stamp(5), port=1)
    q = rec(owner="x", st=stamp(5), port=2)
    assert p.wins_over(q) != q.wins_over(p)
    winner = p if p.wins_over(q) else q
    for order in ([p, q], [q, p], [p, q, p, q]):
        cat = catalog("me")
        cat.merge(order, 0.0)
        assert cat.records() == [winner]


def test_merge_tie_break_depends_on_content_not_on_metadata_insertion_order() -> None:
    # p1 and p2 are the same record (equal), built from dicts in different orders.
    n1 = Node("n1", "h:1", metadata={"a": "1", "b": "2"})
    n2 = Node("n1", "h:1", metadata={"b": "2", "a": "1"})
    o = Node("n1", "h:1", metadata={"a": "1", "c": "0"})
    base = rec(owner="x", st=stamp(5))
    p1 = dataclasses.replace(base, node=n1)
    p2 = dataclasses.replace(base, node=n2)
    q = dataclasses.replace(base, node=o)
    assert p1 == p2
    assert p1.wins_over(q) == p2.wins_over(q)
    assert q.wins_over(p1) == q.wins_over(p2)
    results = []
    for order in ([p1, q], [q, p1], [p2, q], [q, p2], [p1, q, p2], [p2, q, p1]):
        cat = catalog("me")
        cat.merge(order, 0.0)
        results.append(cat.records())
    assert all(r == results[0] for r in results)


def test_record_equality_and_wins_over_are_consistent() -> None:
    r = rec(st=stamp(3))
    same = rec(st=stamp(3))
    assert r == same
    assert hash(r) == hash(same)
    assert not r.wins_over(same)
    assert not same.wins_over(r)
    # ttl as int or float is the same record
    assert dataclasses.replace(r, ttl=5) == dataclasses.replace(r, ttl=5.0)
    assert not dataclasses.replace(r, ttl=5).wins_over(dataclasses.replace(r, ttl=5.0))
    assert not dataclasses.replace(r, ttl=5.0).wins_over(dataclasses.replace(r, ttl=5))


def test_merge_duplicate_is_ignored_and_idempotent() -> None:
    cat = catalog("me")
    r = rec()
    cat.merge([r], 0.0)
    before = cat.records()
    cat.take_events()
    res = cat.merge([r, r], 0.0)
    assert res.accepted == []
    assert cat.counters["duplicates"] == 2
    assert cat.counters["stale"] == 0
    assert cat.records() == before
    assert cat.take_events() == []
    # A copy (equal, not identical) is a duplicate too.
    cat.merge([rec()], 0.0)
    assert cat.counters["duplicates"] == 3


def test_merge_result_accepted_holds_only_records_new_here() -> None:
    cat = catalog("me")
    r1 = rec(("s", "1", "a"), st=stamp(1))
    r2 = rec(("s", "1", "b"), st=stamp(2))
    r1_new = rec(("s", "1", "a"), st=stamp(3), port=3)
    assert cat.merge([r1, r1, r2], 0.0).accepted == [r1, r2]
    assert cat.merge([r1, r1_new, r1, r2], 0.0).accepted == [r1_new]
    assert cat.counters["merged"] == 3


def test_merge_events_in_order_with_removed_node_on_delete() -> None:
    cat = catalog("me")
    a1 = rec(("s", "1", "a"), st=stamp(1), port=1)
    b1 = rec(("s", "1", "b"), st=stamp(2), port=2)
    a2 = rec(("s", "1", "a"), st=stamp(3), port=3)
    b_del = rec(("s", "1", "b"), st=stamp(4), deleted=True)
    cat.merge([a1, b1, a2, b_del], 0.0)
    ev = cat.take_events()
    assert [(e.action, e.record, e.node) for e in ev] == [
        ("create", a1, a1.node),
        ("create", b1, b1.node),
        ("update", a2, a2.node),
        ("delete", b1, b1.node),
    ]
    assert ev[3].service.nodes == (b1.node,)
    assert cat.take_events() == []


def test_tombstone_for_an_unseen_key_is_stored_without_event() -> None:
    cat = catalog("me")
    t = rec(st=stamp(1), deleted=True)
    res = cat.merge([t], 0.0)
    assert res.accepted == [t]
    assert cat.get(t.key) == t
    assert not cat.is_visible(t.key)
    assert cat.take_events() == []
    # and the older live record it deleted stays out
    cat.merge([rec(st=stamp(0))], 0.0)
    assert cat.get(t.key) == t
    assert cat.take_events() == []
    assert cat.counters["stale"] == 1


def test_live_record_after_tombstone_with_newer_stamp_is_created() -> None:
    cat = catalog("me")
    cat.merge([rec(st=stamp(1), deleted=True)], 0.0)
    r = rec(st=stamp(2))
    cat.merge([r], 0.0)
    assert actions(cat.take_events()) == [("create", r.key)]


# ------------------------------------------------------------------ drift


def test_merge_rejects_records_beyond_the_drift_window() -> None:
    cat = catalog("me", max_drift=60.0)
    far = rec(("s", "1", "far"), st=stamp(3_600_000))
    edge = rec(("s", "1", "edge"), st=stamp(60_000))
    res = cat.merge([far, edge], 0.0)
    assert res.rejected == 1
    assert res.accepted == [edge]
    assert cat.counters["rejected_drift"] == 1
    assert cat.clock.rejected == 1
    assert cat.get(far.key) is None
    assert actions(cat.take_events()) == [("create", edge.key)]
    # The clock was not dragged along by the rejected stamp, but moved past the accepted one.
    assert edge.stamp <= cat.clock.last < far.stamp
    (mine,) = cat.register(service("s", "1", nodes=("mine",)), None, 0.0)
    assert edge.stamp < mine.stamp < far.stamp


def test_drifted_tombstone_does_not_delete() -> None:
    cat = catalog("me", max_drift=10.0)
    cat.merge([rec(st=stamp(0))], 0.0)
    res = cat.merge([rec(st=stamp(10_001), deleted=True)], 0.0)
    assert res.rejected == 1
    assert visible_nodes(cat) == {"1.0": ["n1"]}


# ------------------------------------------------------------------ leases


@pytest.mark.parametrize("age", [0.0, 4.0, 10.0, 1e6])
def test_a_peers_leased_record_lives_until_its_owner_deregisters_it(age: float) -> None:
    """Leases are counted by their owner: a receiver neither expires a peer's record nor
    needs its renewals; the owner's tombstone (or its death) removes it."""
    cat = catalog("me")
    r = rec(ttl=10.0)
    cat.merge_aged([(r, age)], now=50.0)
    assert cat.is_visible(r.key)
    assert cat.next_deadline() is None
    assert cat.tick(1e6) == []
    assert cat.is_visible(r.key)
    cat.take_events()
    cat.merge([rec(st=stamp(1), deleted=True)], now=1e6)
    assert not cat.is_visible(r.key)
    assert actions(cat.take_events()) == [("delete", r.key)]


def test_local_registration_lease() -> None:
    cat = catalog()
    (r,) = cat.register(service(), 30, now=100.0)
    assert cat.next_deadline() == 130.0
    cat.take_events()
    (tomb,) = cat.tick(130.0)
    assert tomb.key == r.key
    assert actions(cat.take_events()) == [("delete", r.key)]
    assert cat.next_deadline() == 130.0 + TOMB  # the tombstone is collected in due time


@pytest.mark.parametrize(
    ("sender_wall", "receiver_wall"),
    [(WALL, WALL), (WALL + 30, WALL), (WALL - 30, WALL), (WALL, WALL + 45), (WALL + 20, WALL - 20)],
)
def test_clock_skew_does_not_change_expiry_times(sender_wall: float, receiver_wall: float) -> None:
    """The owner counts the lease on its monotonic clock; the receivers' wall clocks play no
    part: the record leaves their views when the owner's tombstone arrives."""
    sender = catalog("s", FakeWall(sender_wall))
    receiver = catalog("r", FakeWall(receiver_wall))
    (r,) = sender.register(service(nodes=("n1",)), 10, now=5.0)  # sender's monotonic clock
    assert receiver.merge([r], now=100.0).rejected == 0
    assert sender.tick(14.9) == []
    (tomb,) = sender.tick(15.0)
    receiver.tick(500.0)
    assert visible_nodes(receiver) == {"1.0": ["n1"]}
    assert receiver.merge([tomb], now=500.0).rejected == 0
    assert visible_nodes(receiver) == {}


def test_export_carries_ages() -> None:
    cat = catalog("me")
    live = rec(("s", "1", "live"), st=stamp(1), ttl=100.0)
    forever = rec(("s", "1", "forever"), st=stamp(2))
    tomb = rec(("s", "1", "tomb"), st=stamp(3), deleted=True)
    cat.merge_aged([(live, 5.0), (forever, 7.0), (tomb, 2.0)], now=10.0)
    exported = {r.node_id: age for r, age in cat.export(now=30.0)}
    assert exported == {"forever": 0.0, "live": 0.0, "tomb": 22.0}  # a peer's lease is its own
    assert [r.key for r, _ in cat.export(30.0)] == sorted(r.key for r in (live, forever, tomb))
    # A member joining through export keeps the original deadlines.
    joiner = catalog("j")
    joiner.merge_aged(cat.export(now=30.0), now=1000.0)
    assert joiner.next_deadline() == 1000.0 - 22.0 + TOMB
    joiner.tick(1000.0 - 22.0 + TOMB)
    assert joiner.get(tomb.key) is None
    assert joiner.get(live.key) == live


# -------------------------------------------------------------- tombstones


def test_deregister_returns_tombstones_and_emits_delete() -> None:
    cat = catalog()
    regs = cat.register(service(nodes=("n1", "n2")), None, 0.0)
    cat.take_events()
    tombs = cat.deregister(service(nodes=("n1",)), now=1.0)
    assert len(tombs) == 1
    (t,) = tombs
    assert t.key == regs[0].key
    assert t.deleted
    assert t.node is None
    assert t.owner == "a"
    assert t.stamp > max(r.stamp for r in regs)
    assert cat.get(t.key) == t
    ev = cat.take_events()
    assert [(e.action, e.record, e.node) for e in ev] == [("delete", regs[0], regs[0].node)]
    assert visible_nodes(cat) == {"1.0": ["n2"]}
    assert [r.key for r in cat.local_records()] == [regs[1].key]
    tombs = cat.deregister(service(nodes=("n2",)), now=1.0)
    assert len(tombs) == 1
    with pytest.raises(NotFoundError):
        cat.get_service("greeter")
    assert cat.list_services() == []


def test_deregister_without_nodes_removes_all_own_nodes_of_that_version() -> None:
    cat = catalog()
    cat.register(service(nodes=("n1", "n2")), None, 0.0)
    cat.register(service(version="2.0", nodes=("n3",)), None, 0.0)
    cat.merge([rec(("greeter", "1.0", "foreign"), "x", stamp(50))], 0.0)
    tombs = cat.deregister(service(nodes=()), 1.0)
    assert sorted(t.node_id for t in tombs) == ["n1", "n2"]
    assert visible_nodes(cat) == {"1.0": ["foreign"], "2.0": ["n3"]}


def test_deregister_leaves_nodes_of_other_owners_alone() -> None:
    cat = catalog()
    cat.merge([rec(("greeter", "1.0", "n1"), "x")], 0.0)
    assert cat.deregister(service(nodes=("n1", "unknown")), 1.0) == []
    assert visible_nodes(cat) == {"1.0": ["n1"]}


def test_deregister_twice_is_a_no_op() -> None:
    cat = catalog()
    cat.register(service(), None, 0.0)
    assert len(cat.deregister(service(), 1.0)) == 1
    cat.take_events()
    assert cat.deregister(service(), 2.0) == []
    assert cat.take_events() == []


def test_deregister_rejects_non_service() -> None:
    with pytest.raises(InvalidServiceError):
        catalog().deregister("greeter", 0.0)  # type: ignore[arg-type]


def test_tombstones_are_collected_tombstone_ttl_after_receipt() -> None:
    cat = catalog(tombstone_ttl=600, convergence_bound=60)
    cat.register(service(), None, 0.0)
    (t,) = cat.deregister(service(), now=10.0)
    cat.take_events()
    remote = rec(("s", "1", "r"), "x", stamp(1), deleted=True)
    cat.merge_aged([(remote, 100.0)], now=20.0)  # received (by someone) at 20 - 100 = -80
    assert cat.next_deadline() == -80.0 + 600
    cat.tick(519.9)
    assert cat.get(remote.key) == remote
    cat.tick(520.0)
    assert cat.get(remote.key) is None
    assert cat.counters["collected"] == 1
    assert cat.next_deadline() == 610.0
    cat.tick(609.9)
    assert cat.get(t.key) == t
    cat.tick(610.0)
    assert cat.get(t.key) is None
    assert cat.counters["collected"] == 2
    assert len(cat) == 0
    assert cat.digest() == {}
    assert cat.take_events() == []


def test_tombstone_replacing_an_expired_record_of_the_same_stamp_is_kept_its_full_time() -> None:
    # Two owners can write the same key with the same HLC stamp; the later-received winner
    # must not be collected on the schedule of the record it replaced.
    cat = catalog("me", tombstone_ttl=100, convergence_bound=10)
    expired = rec(owner="o1", st=stamp(1), ttl=5.0)
    cat.merge([expired], 0.0)
    cat.tick(5.0)  # expired: due for collection at 105
    tomb = rec(owner="o2", st=stamp(1), deleted=True)
    assert cat.merge([tomb], 50.0).accepted == [tomb]
    cat.tick(105.0)
    assert cat.get(tomb.key) == tomb
    cat.tick(149.9)
    assert cat.get(tomb.key) == tomb
    cat.tick(150.0)
    assert cat.get(tomb.key) is None
    assert cat.counters["collected"] == 1


def test_replayed_registration_after_deregistration_changes_nothing() -> None:
    # The product requirement: an old registration replayed after its deregistration,
    # even an hour later (before the tombstone is collected), changes nothing.
    owner = catalog("a")
    (live,) = owner.register(service(), 30, now=0.0)
    (tomb,) = owner.deregister(service(), now=10.0)
    other = catalog("b")
    other.merge([live], now=0.0)
    other.merge([tomb], now=10.0)
    for cat in (owner, other):
        before = cat.records()
        digest = cat.digest()
        cat.take_events()
        for now in (10.0, 600.0, 3599.0, 10.0 + TOMB - 0.001):
            cat.tick(now)
            res = cat.merge([live], now=now)
            res_aged = cat.merge_aged([(live, 0.0), (live, 5.0)], now=now)
            assert res.accepted == res_aged.accepted == []
            assert res.reply == res_aged.reply == []
            assert cat.records() == before == [tomb]
            assert cat.digest() == digest
            assert cat.take_events() == []
            assert visible_nodes(cat) == {}
            assert cat.list_services() == []
        assert cat.counters["stale"] == 12


def test_deleted_registration_never_comes_back_through_anti_entropy() -> None:
    owner = catalog("a")
    (live,) = owner.register(service(), None, now=0.0)
    (tomb,) = owner.deregister(service(), now=1.0)
    stale = catalog("stale")  # saw the registration, missed the deregistration
    stale.merge([live], 0.0)
    knows = catalog("knows")  # saw both
    knows.merge([live], 0.0)
    knows.merge([tomb], 1.0)
    stale.take_events()
    knows.take_events()
    for now in (2.0, 1800.0, 3590.0):
        sync_pair(knows, stale, now)
        sync_pair(stale, knows, now)
        knows.merge_aged(stale.export(now), now)
        assert stale.records() == knows.records() == [tomb]
        assert visible_nodes(stale) == visible_nodes(knows) == {}
    assert actions(stale.take_events()) == [("delete", live.key)]
    assert knows.take_events() == []
    # and the tombstone kept its age across the transfer: both collect it at the same time
    assert stale.next_deadline() == knows.next_deadline() == 1.0 + TOMB


# ----------------------------------------------------------- owner liveness


def test_owner_down_hides_and_a_returning_owner_shows_again_once_synced() -> None:
    cat = catalog("me")
    x1 = rec(("s", "1", "b"), "x", stamp(1))
    x2 = rec(("s", "1", "a"), "x", stamp(2))
    y1 = rec(("s", "1", "c"), "y", stamp(3))
    cat.merge([x1, x2, y1], 0.0)
    cat.take_events()
    cat.owner_down("x")
    ev = cat.take_events()
    assert [(e.action, e.record, e.node) for e in ev] == [
        ("delete", x2, x2.node),
        ("delete", x1, x1.node),
    ]
    assert visible_nodes(cat, "s") == {"1": ["c"]}
    assert len(cat) == 3  # still stored
    cat.owner_down("x")  # again: nothing more
    assert cat.take_events() == []
    # Back from down: what is stored is what x registered before, which it may have changed
    # since. It stays hidden (but offered to anti-entropy) until a push-pull with x completes.
    assert cat.owner_up("x")
    assert cat.in_resync("x")
    assert cat.take_events() == []
    assert visible_nodes(cat, "s") == {"1": ["c"]}
    assert "x" in cat.digest()
    assert cat.owner_up("x")  # a refuted suspicion meanwhile does not end the resync
    assert cat.take_events() == []
    cat.owner_synced("x")
    assert not cat.in_resync("x")
    assert actions(cat.take_events()) == [("create", x2.key), ("create", x1.key)]
    assert visible_nodes(cat, "s") == {"1": ["a", "b", "c"]}
    assert not cat.owner_up("x")
    cat.owner_synced("x")  # not in resync: nothing happens
    assert cat.take_events() == []
    check_views(cat, ["s"])


def test_a_returning_owner_never_shows_what_it_deregistered_while_away() -> None:
    cat = catalog("me")
    gone = rec(("s", "1", "gone"), "x", stamp(1))
    kept = rec(("s", "1", "kept"), "x", stamp(2))
    cat.merge([gone, kept], 0.0)
    cat.owner_down("x")
    cat.take_events()
    assert cat.owner_up("x")
    # The push-pull with x brings its tombstone before anything is shown.
    cat.merge([rec(("s", "1", "gone"), "x", stamp(3), deleted=True)], 1.0)
    assert cat.take_events() == []
    cat.owner_synced("x")
    assert actions(cat.take_events()) == [("create", kept.key)]
    # Records of an owner down but never stored need no resync.
    assert not cat.owner_up("y")
    cat.owner_down("y")
    assert not cat.owner_up("y")
    check_views(cat, ["s"])


def test_owner_up_skips_deleted_records_and_keeps_leased_ones() -> None:
    cat = catalog("me")
    leased = rec(("s", "1", "e"), "x", stamp(1), ttl=5.0)
    deleted = rec(("s", "1", "d"), "x", stamp(2))
    kept = rec(("s", "1", "k"), "x", stamp(3))
    cat.merge([leased, deleted, kept], 0.0)
    cat.owner_down("x")
    cat.merge([rec(("s", "1", "d"), "x", stamp(4), deleted=True)], 1.0)
    cat.tick(6.0)  # x's lease is x's to count: nothing expires here
    cat.take_events()
    cat.owner_up("x")
    cat.owner_synced("x")
    assert actions(cat.take_events()) == [("create", leased.key), ("create", kept.key)]
    assert visible_nodes(cat, "s") == {"1": ["e", "k"]}
    check_views(cat, ["s"])


def test_records_merged_while_owner_is_down_stay_hidden() -> None:
    cat = catalog("me")
    cat.owner_down("x")
    r = rec(owner="x")
    assert cat.merge([r], 0.0).accepted == [r]
    assert not cat.is_visible(r.key)
    assert cat.take_events() == []
    r2 = rec(owner="x", st=stamp(1), port=2)
    cat.merge([r2], 0.0)
    assert cat.take_events() == []
    assert visible_nodes(cat) == {}
    cat.owner_up("x")
    cat.owner_synced("x")
    assert [(e.action, e.record) for e in cat.take_events()] == [("create", r2)]


def test_update_from_a_down_owner_of_a_visible_key_hides_it() -> None:
    cat = catalog("me")
    visible = rec(owner="y", st=stamp(1), port=1)
    cat.merge([visible], 0.0)
    cat.owner_down("x")
    cat.take_events()
    cat.merge([rec(owner="x", st=stamp(2), port=2)], 0.0)
    assert [(e.action, e.record) for e in cat.take_events()] == [("delete", visible)]
    assert visible_nodes(cat) == {}


def test_purge_owner_drops_its_records() -> None:
    cat = catalog("me")
    x = rec(("s", "1", "x"), "x", stamp(1))
    y = rec(("s", "1", "y"), "y", stamp(2))
    cat.merge([x, y], 0.0)
    cat.take_events()
    cat.purge_owner("x")
    assert [(e.action, e.record) for e in cat.take_events()] == [("delete", x)]
    assert cat.records() == [y]
    assert "x" not in cat.digest()
    assert visible_nodes(cat, "s") == {"1": ["y"]}
    # The purged owner stays down: its records come back hidden until it is up again.
    cat.merge([x], 0.0)
    assert not cat.is_visible(x.key)
    cat.owner_up("x")
    assert not cat.is_visible(x.key)  # back from down: hidden until synced
    cat.owner_synced("x")
    assert cat.is_visible(x.key)
    check_views(cat, ["s"])


def test_owner_down_and_purge_of_self_are_ignored() -> None:
    cat = catalog("me")
    cat.register(service(), None, 0.0)
    cat.take_events()
    cat.owner_down("me")
    cat.purge_owner("me")
    assert visible_nodes(cat) == {"1.0": ["n1"]}
    assert cat.take_events() == []


def test_unknown_owners_hidden_when_not_up_by_default() -> None:
    cat = catalog("me", owners_up_by_default=False)
    r = rec(owner="x")
    cat.merge([r], 0.0)
    assert not cat.is_visible(r.key)
    assert cat.take_events() == []
    cat.owner_up("x")
    assert cat.is_visible(r.key)
    assert actions(cat.take_events()) == [("create", r.key)]
    r2 = rec(("greeter", "1.0", "n2"), owner="x")
    cat.merge([r2], 0.0)
    assert cat.is_visible(r2.key)
    other = rec(("greeter", "1.0", "n3"), owner="y")
    cat.merge([other], 0.0)
    assert not cat.is_visible(other.key)
    check_views(cat)


def test_own_registrations_visible_when_owners_not_up_by_default() -> None:
    cat = catalog("me", owners_up_by_default=False)
    (r,) = cat.register(service(), None, 0.0)
    assert cat.is_visible(r.key)
    assert visible_nodes(cat) == {"1.0": ["n1"]}
    assert actions(cat.take_events()) == [("create", r.key)]


# ---------------------------------------------------------- owner authority


def test_restarted_owner_tombstones_or_reasserts_its_old_records() -> None:
    old_a = catalog("a", FakeWall(WALL))
    old_regs = old_a.register(service(nodes=("n1", "n2")), None, 0.0)
    old_regs += old_a.register(service("other", "1", nodes=("o1",)), None, 0.0)
    witness = catalog("c")
    witness.merge(old_regs, 0.0)
    assert visible_nodes(witness) == {"1.0": ["n1", "n2"]}

    # "a" restarts with a wall clock a few seconds behind (within drift), so its
    # new registration of n2 is *older* than the previous process's.
    new_a = catalog("a", FakeWall(WALL - 5))
    (new_n2,) = new_a.register(service(nodes=(node("n2", 9999),)), None, 0.0)
    assert new_n2.stamp < old_regs[1].stamp
    res = new_a.merge(old_regs, 1.0)
    assert res.accepted == []
    assert res.rejected == 0
    assert new_a.counters["corrections"] == 3
    replies = {r.key: r for r in res.reply}
    assert set(replies) == {r.key for r in old_regs}
    for old in old_regs:
        fix = replies[old.key]
        assert fix.owner == "a"
        assert fix.stamp > old.stamp
        assert new_a.get(old.key) == fix
    assert replies[("greeter", "1.0", "n1")].deleted
    assert replies[("other", "1", "o1")].deleted
    reasserted = replies[("greeter", "1.0", "n2")]
    assert not reasserted.deleted
    assert dataclasses.replace(reasserted, stamp=new_n2.stamp) == new_n2  # same content
    assert new_a.local_records() == [reasserted]
    assert visible_nodes(new_a) == {"1.0": ["n2"]}
    assert new_a.get_service("greeter")[0].nodes == (node("n2", 9999),)

    witness.take_events()
    assert witness.merge(res.reply, 2.0).accepted == res.reply
    assert visible_nodes(witness) == {"1.0": ["n2"]}
    assert witness.get_service("greeter")[0].nodes == (node("n2", 9999),)
    with pytest.raises(NotFoundError):
        witness.get_service("other")
    check_views(witness, ["greeter", "other"])
    # Replaying the old records once more changes nothing anywhere.
    for cat in (witness, new_a):
        before = cat.records()
        res2 = cat.merge(old_regs, 3.0)
        assert res2.accepted == res2.reply == []
        assert cat.records() == before


def test_forged_tombstone_of_a_live_registration_is_answered_by_reassertion() -> None:
    a = catalog("a")
    (live,) = a.register(service(), 30, 0.0)
    a.take_events()
    forged = rec(live.key, "a", live.stamp + 1, deleted=True)
    res = a.merge([forged], 5.0)
    assert res.accepted == []
    (fix,) = res.reply
    assert fix.stamp > forged.stamp
    assert dataclasses.replace(fix, stamp=live.stamp) == live
    assert a.get(live.key) == fix
    assert a.is_visible(live.key)
    assert actions(a.take_events()) == [("update", live.key)]
    # Anyone who took the forgery is corrected by the reply.
    b = catalog("b")
    b.merge([live, forged], 0.0)
    assert visible_nodes(b) == {}
    b.merge(res.reply, 5.0)
    assert visible_nodes(b) == {"1.0": ["n1"]}


def test_forged_live_record_of_an_owned_key_is_answered_by_reassertion() -> None:
    a = catalog("a")
    (live,) = a.register(service(), None, 0.0)
    forged = rec(live.key, "a", live.stamp + 1, port=6666)
    (fix,) = a.merge([forged], 0.0).reply
    assert fix.node == live.node
    assert fix.stamp > forged.stamp


def test_own_tombstone_of_an_unregistered_key_is_accepted() -> None:
    a = catalog("a")
    t = rec(("s", "1", "gone"), "a", stamp(1), deleted=True)
    res = a.merge([t], 0.0)
    assert res.accepted == [t]
    assert res.reply == []
    assert a.get(t.key) == t


def test_own_record_equal_to_the_local_registration_is_not_corrected() -> None:
    a = catalog("a")
    (live,) = a.register(service(), None, 0.0)
    res = a.merge([live], 0.0)
    assert res.reply == []
    assert a.counters["duplicates"] == 1
    assert a.counters["corrections"] == 0


# --------------------------------------------------------------- conflicts


def test_other_owner_with_newer_stamp_is_shown_and_both_keep_their_registration() -> None:
    a = catalog("a")
    (mine,) = a.register(service(), None, 0.0)
    theirs = rec(mine.key, "b", mine.stamp + 10, port=4444)
    res = a.merge([theirs], 0.0)
    assert res.accepted == [theirs]
    assert res.reply == []
    assert a.counters["conflicts"] == 1
    assert a.take_conflicts() == [(mine.key, "b", False)]
    assert a.get(mine.key) == theirs
    assert a.get_service("greeter")[0].nodes == (theirs.node,)
    assert a.local_records() == [mine]  # still registered here, shown as b's
    # Deregistering ours must not tombstone b's registration.
    assert a.deregister(service(), 1.0) == []
    assert a.get(mine.key) == theirs
    assert a.local_records() == []


def test_other_owner_with_equal_stamp_and_greater_name_is_shown() -> None:
    a = catalog("a")
    (mine,) = a.register(service(), None, 0.0)
    theirs = rec(mine.key, "b", mine.stamp, port=4444)  # the same HLC stamp: "b" > "a" wins
    assert theirs.wins_over(mine)
    a.merge([theirs], 0.0)
    assert a.get(mine.key) == theirs
    assert a.counters["conflicts"] == 1
    assert a.local_records() == [mine]


def test_a_shared_node_id_comes_back_when_the_shown_owner_deregisters() -> None:
    a = catalog("a")
    (mine,) = a.register(service(), None, 0.0)
    theirs = rec(mine.key, "b", mine.stamp + 10, port=4444)
    a.merge([theirs], 0.0)
    a.take_events()
    res = a.merge([rec(mine.key, "b", mine.stamp + 20, deleted=True)], 1.0)
    [back] = res.reply  # ours again, newer than b's tombstone: disseminate it
    assert res.accepted == []
    assert back.owner == "a"
    assert back.node == mine.node
    assert back.stamp > mine.stamp + 20
    assert a.get(mine.key) == back
    assert a.get_service("greeter")[0].nodes == (mine.node,)
    assert actions(a.take_events()) == [("update", mine.key)]  # b's node -> ours, no gap


def test_a_shared_node_id_comes_back_when_the_shown_owner_dies() -> None:
    a = catalog("a")
    (mine,) = a.register(service(), None, 0.0)
    a.merge([rec(mine.key, "b", mine.stamp + 10, port=4444)], 0.0)
    a.take_events()
    a.owner_down("b")
    [back] = a.take_outgoing()
    assert back.owner == "a"
    assert back.node == mine.node
    assert a.get(mine.key) == back
    assert a.is_visible(mine.key)
    assert actions(a.take_events()) == [("delete", mine.key), ("create", mine.key)]
    assert a.take_outgoing() == []


def test_a_shadowed_registration_renews_silently_and_expires_silently() -> None:
    a = catalog("a")
    (mine,) = a.register(service(), 10, 0.0)
    theirs = rec(mine.key, "b", mine.stamp + 10, port=4444)
    a.merge([theirs], 0.0)
    assert a.register(service(), 10, 5.0) == []  # a renewal: b's stays shown
    assert a.get(mine.key) == theirs
    assert a.tick(14.0) == []
    assert a.local_records() == [mine]
    assert a.tick(15.0) == []  # our lease ended: nothing of ours was shown, nothing to send
    assert a.local_records() == []
    assert a.get(mine.key) == theirs
    a.owner_down("b")
    assert a.take_outgoing() == []  # nothing to re-assert any more


def test_registering_over_another_owners_node_counts_a_conflict() -> None:
    a = catalog("a")
    theirs = rec(("greeter", "1.0", "n1"), "b", stamp(1), port=4444)
    a.merge([theirs], 0.0)
    (mine,) = a.register(service(), None, 0.0)
    assert mine.wins_over(theirs)
    assert a.take_conflicts() == [(mine.key, "b", True)]
    assert a.counters["conflicts"] == 1


def test_other_owner_with_older_stamp_loses() -> None:
    a = catalog("a")
    (mine,) = a.register(service(), None, 0.0)
    theirs = rec(mine.key, "b", mine.stamp - 1)
    a.merge([theirs], 0.0)
    assert a.get(mine.key) == mine
    assert a.counters["conflicts"] == 0
    assert a.counters["stale"] == 1


# ------------------------------------------------------------ anti-entropy


def test_sync_pair_makes_records_identical() -> None:
    a, b = catalog("a"), catalog("b")
    a.register(service(nodes=("a1", "a2")), 60, 0.0)
    b.register(service(nodes=("b1",)), None, 0.0)
    b.register(service("db", "1", nodes=("d",)), None, 0.0)
    shared = rec(("x", "1", "k"), "x", stamp(1))
    newer = rec(("x", "1", "k"), "x", stamp(2), port=2)
    a.merge([shared, rec(("x", "1", "t"), "y", stamp(3), deleted=True)], 0.0)
    b.merge([newer], 0.0)
    assert sync_pair(a, b, 1.0) == 6  # a1, a2, t to b; b1, d, newer to a
    assert a.records() == b.records()
    assert a.digest() == b.digest()
    assert a.get(shared.key) == newer
    for name in ("greeter", "db", "x"):
        assert a.get_service(name) == b.get_service(name)
    assert a.list_services() == b.list_services()
    # Nothing left to send, either way round.
    assert sync_pair(a, b, 2.0) == 0
    assert sync_pair(b, a, 2.0) == 0
    assert b.offer(a.digest(), 2.0) == Offer({}, [], [])


def test_sync_pair_carries_ages() -> None:
    a, b = catalog("a"), catalog("b")
    a.merge_aged([(rec(deleted=True), 10.0)], now=50.0)  # a tombstone received at 40 on a
    sync_pair(b, a, now=60.0)  # b learns it 20 s after it died
    assert b.next_deadline() == 40.0 + TOMB
    c = catalog("c")
    sync_pair(a, c, now=70.0)  # a initiates, c lacks it: pushed with its age
    assert c.next_deadline() == 40.0 + TOMB


def test_offer_sends_whole_records_only_for_owners_the_initiator_does_not_know() -> None:
    a, b = catalog("a"), catalog("b")
    xs = [rec(("s", "1", f"x{i}"), "x", stamp(i)) for i in range(3)]
    ys = [rec(("s", "1", f"y{i}"), "y", stamp(i)) for i in range(3)]
    zs = [rec(("s", "1", f"z{i}"), "z", stamp(i)) for i in range(2)]
    a.merge(xs + ys, 0.0)
    b.merge(ys[:2] + zs, 0.0)
    offer = a.offer(b.digest(), 0.0)
    assert [r for r, _ in offer.records] == xs  # b does not know x
    assert set(offer.versions) == {"y"}  # y differs: key versions only
    assert sorted(offer.versions["y"].values()) == [r.stamp for r in ys]
    assert offer.absent == ["z"]  # only b knows z
    push, want = b.reconcile(offer, 0.0)
    assert [r for r, _ in push] == zs
    assert [r for r, _ in a.fetch(want, 0.0)] == [ys[2]]
    a.merge_aged(push, 0.0)
    b.merge_aged(a.fetch(want, 0.0), 0.0)
    assert a.records() == b.records()
    assert a.digest() == b.digest()


def test_offer_to_an_empty_digest_is_the_whole_state() -> None:
    a = catalog("a")
    a.register(service(nodes=("n1", "n2")), None, 0.0)
    a.merge([rec(("s", "1", "t"), "x", stamp(9), deleted=True)], 0.0)
    offer = a.offer({}, 0.0)
    assert offer.versions == {}
    assert offer.absent == []
    assert [r for r, _ in offer.records] == a.records()


def test_fetch_skips_unknown_key_hashes() -> None:
    a = catalog("a")
    (r,) = a.register(service(), None, 0.0)
    assert a.fetch([key_hash(("no", "such", "key")), key_hash(r.key)], 0.0) == [(r, 0.0)]


def test_restarted_owner_corrects_stale_records_offered_in_a_push_pull() -> None:
    old_a = catalog("a")
    old_regs = old_a.register(service(nodes=("n1", "n2")), None, 0.0)
    c = catalog("c")
    c.merge(old_regs, 0.0)
    new_a = catalog("a")  # restarted, has registered nothing yet: it does not know owner "a"
    sync_pair(new_a, c, 1.0)
    # The corrections new_a issued while reconciling reach c in the same exchange.
    assert visible_nodes(c) == {}
    assert c.records() == new_a.records()
    assert all(r.deleted for r in c.records())


def test_colliding_key_hashes_do_not_break_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    # 64-bit key hashes can collide (a birthday search finds a pair); collecting one of
    # the two keys must not lose or crash on the other.
    import gossipreg.core.catalog as catalog_module

    monkeypatch.setattr(catalog_module, "key_hash", lambda key: 42)
    cat = catalog("me", tombstone_ttl=100, convergence_bound=10)
    t1 = rec(("s", "1", "a"), "x", stamp(1), deleted=True)
    t2 = rec(("s", "1", "b"), "x", stamp(2), deleted=True)
    cat.merge([t1], 0.0)
    cat.merge([t2], 50.0)
    cat.tick(100.0)
    assert cat.records() == [t2]
    cat.tick(150.0)
    assert cat.records() == []
    assert cat.counters["collected"] == 2


def test_push_pull_sends_only_the_newer_records_when_the_peer_is_merely_behind() -> None:
    for initiator_is_behind in (True, False):
        a, b = catalog("a"), catalog("b")
        recs = [rec(("s", "1", f"k{i}"), "x", stamp(i)) for i in range(10)]
        a.merge(recs, 0.0)
        b.merge(recs[:6], 0.0)
        b.take_events()
        sent = sync_pair(b, a, 1.0) if initiator_is_behind else sync_pair(a, b, 1.0)
        assert sent == 4  # exactly the differing records
        assert b.counters["duplicates"] == a.counters["duplicates"] == 0
        assert a.records() == b.records()
        assert a.digest() == b.digest()
        assert sorted(actions(b.take_events())) == [("create", r.key) for r in recs[6:]]


def test_push_pull_is_exact_after_out_of_order_delivery() -> None:
    a, b = catalog("a"), catalog("b")
    recs = [rec(("s", "1", f"k{i}"), "x", stamp(i)) for i in range(5)]
    a.merge(recs, 0.0)
    b.merge([recs[4], recs[1]], 0.0)  # the newest arrived, older ones were missed
    assert sync_pair(b, a, 1.0) == 3
    assert a.records() == b.records()
    assert a.digest() == b.digest()
    assert visible_nodes(a, "s") == visible_nodes(b, "s") == {"1": [f"k{i}" for i in range(5)]}


def test_push_pull_is_exact_after_updates_in_both_directions() -> None:
    a, b = catalog("a"), catalog("b")
    v1 = [rec(("s", "1", f"k{i}"), "x", stamp(i)) for i in range(6)]
    a.merge(v1, 0.0)
    b.merge(v1, 0.0)
    a_new = [rec(("s", "1", "k1"), "x", stamp(10), port=2), rec(("s", "1", "a9"), "x", stamp(11))]
    b_new = [
        rec(("s", "1", "k2"), "x", stamp(12), deleted=True),
        rec(("s", "1", "k3"), "y", stamp(13), port=3),  # another owner takes k3 over
        rec(("s", "1", "b9"), "x", stamp(14)),
    ]
    a.merge(a_new, 0.0)
    b.merge(b_new, 0.0)
    ref = catalog("ref")
    ref.merge(v1 + a_new + b_new, 0.0)
    sent = sync_pair(a, b, 1.0)
    assert a.records() == b.records() == ref.records()
    assert a.digest() == b.digest() == ref.digest()
    assert a.get_service("s") == b.get_service("s") == ref.get_service("s")
    # Every differing record crosses once (the pre-takeover k3 of owner x may also be
    # offered to b, where it is stale).
    assert len(a_new) + len(b_new) <= sent <= len(a_new) + len(b_new) + 1


def test_digest_after_ownership_change_matches_a_fresh_catalog() -> None:
    # The digest summarises what is stored, whatever the history: after a key moves
    # from owner x to owner y, x's newest stamp is that of its remaining records.
    a, b = catalog("a"), catalog("b")
    k1 = rec(("s", "1", "k1"), "x", stamp(1))
    k2_x = rec(("s", "1", "k2"), "x", stamp(5))
    k2_y = rec(("s", "1", "k2"), "y", stamp(6))
    a.merge([k1, k2_x, k2_y], 0.0)
    b.merge([k1, k2_y], 0.0)
    assert a.records() == b.records()
    assert a.digest() == b.digest()
    assert sync_pair(a, b, 0.0) == 0
    assert a.offer(b.digest(), 0.0) == Offer({}, [], [])


def test_digest_after_collection_matches_a_fresh_catalog() -> None:
    a = catalog("a", tombstone_ttl=100, convergence_bound=10)
    b = catalog("b", tombstone_ttl=100, convergence_bound=10)
    k1 = rec(("s", "1", "k1"), "x", stamp(1))
    t2 = rec(("s", "1", "k2"), "x", stamp(5), deleted=True)
    a.merge([k1, t2], 0.0)
    a.tick(100.0)
    assert a.get(t2.key) is None
    b.merge([k1], 0.0)
    assert a.digest() == b.digest()


def test_is_stale_fast_path_agrees_with_merge() -> None:
    """The pre-decode check says stale only where merge would change nothing."""
    from gossipreg.core.catalog import Catalog as _Catalog
    from gossipreg.core.catalog import Record as _Record
    from gossipreg.core.hlc import HybridClock as _HybridClock
    from gossipreg.core.model import Node as _Node

    wall = 1_800_000_000.0
    cat = _Catalog("me", _HybridClock(lambda: wall))
    key = ("svc", "1", "n1")
    rec = _Record("svc", "1", "n1", "o", 100 << 16, None, False, _Node("n1", "h:1"))
    cat.merge([rec], 0.0)
    assert cat.is_stale(key, 100 << 16, "o", False)  # the same version
    assert cat.is_stale(key, 99 << 16, "z", False)  # older
    assert not cat.is_stale(key, 101 << 16, "o", False)  # newer
    assert not cat.is_stale(key, 100 << 16, "o", True)  # a tombstone of the same stamp wins the tie
    assert not cat.is_stale(("svc", "1", "n2"), 1, "o", False)  # unknown key
    assert cat.counters["duplicates"] == 1
    assert cat.counters["stale"] == 1
    older = _Record("svc", "1", "n1", "z", 99 << 16, None, False, _Node("n1", "h:2"))
    assert cat.merge([older], 1.0).accepted == []


def test_an_expired_local_registration_is_no_longer_asserted() -> None:
    """When the owner's own lease runs out, it stops being the owner's truth: a stale
    copy arriving later is not re-asserted with a fresh lease."""
    from gossipreg.core.catalog import Catalog as _Catalog
    from gossipreg.core.hlc import HybridClock as _HybridClock
    from gossipreg.core.model import Node as _Node
    from gossipreg.core.model import Service as _Service

    wall = [1_800_000_000.0]
    cat = _Catalog("me", _HybridClock(lambda: wall[0]))
    (rec,) = cat.register(_Service("svc", "1", nodes=(_Node("n1", "h:1"),)), ttl=10, now=0.0)
    assert cat.local_records() == [rec]
    cat.tick(10.0)
    assert cat.local_records() == []
    assert not cat.is_visible(rec.key)


# ------------------------------------------------ gaps found by mutation testing
# (scripts/mutation; each test names the behaviour it protects)


def test_a_collected_tombstone_leaves_no_key_hash_behind_for_fetch_or_reconcile() -> None:
    # Members collect tombstones at different times: a peer may still offer or ask for a
    # key this member has collected; it must be treated as unknown, never raise.
    cat = catalog("me", tombstone_ttl=100, convergence_bound=10)
    t = rec(("s", "1", "gone"), "x", stamp(1), deleted=True)
    cat.merge([t], 0.0)
    khash = key_hash(t.key)
    assert cat.fetch([khash], 50.0) == [(t, 50.0)]
    cat.tick(100.0)
    assert cat.records() == []
    assert cat.fetch([khash], 100.0) == []
    push, want = cat.reconcile(Offer({"x": {khash: t.stamp}}, [], []), 100.0)
    assert push == []
    assert want == [khash]


def test_a_purged_owners_records_leave_no_key_hash_behind() -> None:
    cat = catalog("me")
    r = rec(("s", "1", "n"), "x", stamp(1))
    cat.merge([r], 0.0)
    cat.purge_owner("x")
    khash = key_hash(r.key)
    assert cat.fetch([khash], 1.0) == []
    _, want = cat.reconcile(Offer({"y": {khash: r.stamp}}, [], []), 1.0)
    assert want == [khash]


def test_owner_authority_correction_keeps_the_whole_registration() -> None:
    a = catalog("a")
    svc = service(metadata={"team": "blue"}, endpoints=("Greeter.Hello", "Greeter.Bye"))
    (live,) = a.register(svc, 30, 0.0)
    forged = Record(*live.key, "a", live.stamp + 1, None, False, node("n1", 6666), {}, ())
    (fix,) = a.merge([forged], 0.0).reply
    assert fix.endpoints == live.endpoints == svc.endpoints
    assert fix.metadata == {"team": "blue"}
    assert fix.node == live.node
    assert fix.ttl == 30
    assert a.get_service("greeter") == [svc]


def test_a_reasserted_shared_registration_keeps_the_whole_registration() -> None:
    a = catalog("a")
    svc = service(metadata={"team": "blue"}, endpoints=("Greeter.Hello",))
    (mine,) = a.register(svc, None, 0.0)
    theirs = rec(mine.key, "z", mine.stamp + 1)
    a.merge([theirs], 0.0)
    (fix,) = a.merge([rec(mine.key, "z", mine.stamp + 2, deleted=True)], 0.0).reply
    assert (fix.owner, fix.endpoints, fix.node) == ("a", svc.endpoints, mine.node)
    assert fix.metadata == {"team": "blue"}
    assert a.get_service("greeter") == [svc]


def test_anti_entropy_hands_out_no_record_of_a_down_owner() -> None:
    a = catalog("a")
    down = [rec(("s", "1", f"d{i}"), "dead", stamp(i)) for i in range(2)]
    up = [rec(("s", "1", f"u{i}"), "live", stamp(i)) for i in range(2)]
    a.merge(down + up, 0.0)
    a.owner_down("dead")
    assert "dead" not in a.digest()
    # offer: neither whole records nor key versions of the down owner
    offer = a.offer({}, 0.0)
    assert [r for r, _ in offer.records] == up
    offer = a.offer({"dead": (0, 0), "live": (0, 0)}, 0.0)
    assert set(offer.versions) == {"live"}
    assert offer.absent == []
    # export
    assert [r for r, _ in a.export(0.0)] == up
    # reconcile: named absent, or listed with versions, the down owner's records stay here
    push, want = a.reconcile(Offer({}, [], ["dead"]), 0.0)
    assert push == []
    assert want == []
    push, want = a.reconcile(Offer({"dead": {}}, [], []), 0.0)
    assert push == []
    assert want == []


def test_reconcile_goes_on_to_every_owner_after_a_down_one() -> None:
    a = catalog("a")
    d = rec(("s", "1", "d"), "dead", stamp(1))
    mine = [rec(("s", "1", f"l{i}"), "live", stamp(i)) for i in range(2)]
    a.merge([d, *mine], 0.0)
    a.owner_down("dead")
    wanted = key_hash(("s", "1", "new"))
    # The down owner comes first in the offer; the owners after it are still reconciled.
    offer = Offer({"dead": {key_hash(d.key): d.stamp}, "live": {wanted: stamp(5)}}, [], [])
    push, want = a.reconcile(offer, 0.0)
    assert [r for r, _ in push] == mine
    assert want == [wanted]


def test_root_summarises_the_digest() -> None:
    a, b = catalog("a"), catalog("b")
    assert a.root() == b.root() == 0
    rs = [rec(("s", "1", f"n{i}"), "x", stamp(i)) for i in range(3)]
    a.merge(rs, 0.0)
    assert a.root() != 0
    b.merge(rs[:2], 0.0)
    assert a.root() != b.root()
    b.merge(rs[2:], 0.0)
    assert a.root() == b.root()
    # Every field of the digest counts: owner name, newest stamp, fingerprint.
    c = catalog("c")
    c.merge([dataclasses.replace(r, owner="y") for r in rs], 0.0)
    assert c.root() != a.root()
    d = catalog("d")
    d.merge([*rs[:2], dataclasses.replace(rs[2], stamp=stamp(7))], 0.0)
    assert d.root() != a.root()
    # Owners known down are left out, as in the digest.
    e = catalog("e")
    e.merge([*rs, rec(("s", "1", "z"), "zz", stamp(1))], 0.0)
    assert e.root() != a.root()
    e.owner_down("zz")
    assert e.root() == a.root()


def test_deregistering_after_the_own_lease_expired_is_quiet() -> None:
    cat = catalog("me")
    svc = service(nodes=("n1", "n2"))
    cat.register(svc, 10, 0.0)
    expired = cat.tick(10.0)
    assert len(expired) == 2
    assert cat.deregister(svc, 11.0) == []
    assert cat.deregister(service(nodes=()), 11.0) == []
    assert cat.local_records() == []


def test_writes_without_a_lease_schedule_no_expiry() -> None:
    cat = catalog("me")
    for port in range(50):
        cat.register(service(nodes=(node("n1", port + 1),)), None, float(port))
    assert cat.next_deadline() is None


def test_registering_again_without_a_lease_cancels_the_lease() -> None:
    cat = catalog("me")
    cat.register(service(nodes=(node("n1", 1),)), 10, 0.0)
    (second,) = cat.register(service(nodes=(node("n1", 2),)), None, 1.0)
    assert cat.tick(20.0) == []
    assert cat.is_visible(second.key)
    assert cat.local_records() == [second]


def test_renewing_a_lease_keeps_one_live_deadline() -> None:
    cat = catalog("me")
    svc = service()
    cat.register(svc, 10, 0.0)
    for t in range(1, 30):
        cat.register(svc, 10, float(t))  # renewed every second
        assert cat.tick(float(t)) == []
    assert cat.is_visible(("greeter", "1.0", "n1"))
    (tomb,) = cat.tick(39.0)
    assert tomb.deleted


def test_default_lease_bounds_follow_their_documented_formulas() -> None:
    from gossipreg.core.config import Config

    # Ten push-pull rounds at the lan interval; the longest lease is what is left of an hour.
    assert DEFAULT_CONVERGENCE_BOUND == 10 * Config.lan().push_pull_interval == 300.0
    assert DEFAULT_TOMBSTONE_TTL == 3600.0
    assert catalog().max_ttl == 3300.0


def test_key_hashes_fingerprints_and_roots_are_stable_across_versions() -> None:
    """Members of different versions compare these over the wire (push-pull digests, offers,
    the root check): the functions are part of the protocol, so their values are pinned."""
    from gossipreg.core.catalog import _fingerprint

    assert key_hash(("greeter", "1.0", "n1")) == 9296240766893885185
    assert key_hash(("s", "", "n")) == 8107553833459895134
    assert key_hash(("a\x00b", "c", "d")) == 5486350147931124871
    assert key_hash(("\ud800", "1", "n")) == 15985417706936330441  # lone surrogates hash too
    assert _fingerprint(key_hash(("greeter", "1.0", "n1")), 12345 << 16) == 1613723463093089830
    assert _fingerprint(0, 0) == 0
    assert _fingerprint((1 << 64) - 1, 1) == 15719503542151743746
    cat = catalog("a")
    w = 1_000_000_000
    cat.merge(
        [Record("s", "1", f"n{i}", "x", make_stamp(w + i, 0), None, False, node(f"n{i}")) for i in range(3)],
        0.0,
    )
    assert cat.digest() == {"x": (65536000131072, 8562441546831401606)}
    assert cat.root() == 5871841017846975367
    cat.merge([Record("s", "1", "u", "\ud800", make_stamp(w, 0), None, False, node("u"))], 0.0)
    assert cat.root() == 10285771028291622257


def test_wins_over_answers_a_bool() -> None:
    r = rec(st=stamp(3))
    assert r.wins_over(rec(st=stamp(3))) is False
    assert rec(st=stamp(4)).wins_over(r) is True
    assert r.wins_over(rec(st=stamp(4))) is False


def test_digest_of_records_stamped_zero() -> None:
    # The smallest stamps a peer may send (decoding allows 0) are summarised as they are.
    cat = catalog("me")
    cat.merge([rec(("s", "1", "a"), "x", 0)], 0.0)
    assert cat.digest()["x"][0] == 0
    cat.merge([rec(("s", "1", "b"), "x", 1)], 0.0)
    assert cat.digest()["x"][0] == 1


def test_is_stale_answers_a_bool() -> None:
    cat = catalog("me")
    r = rec(("s", "1", "n"), "x", stamp(5))
    cat.merge([r], 0.0)
    assert cat.is_stale(("s", "1", "other"), stamp(1), "x", False) is False
    assert cat.is_stale(r.key, stamp(6), "x", False) is False
    assert cat.is_stale(r.key, stamp(5), "x", False) is True


def test_a_small_convergence_bound_is_accepted() -> None:
    cat = catalog(tombstone_ttl=2.0, convergence_bound=0.5)
    assert cat.max_ttl == 1.5
    with pytest.raises(ValueError, match="exceed"):
        catalog(tombstone_ttl=2.0, convergence_bound=0.0)


def test_deregister_goes_on_past_a_node_it_does_not_own() -> None:
    cat = catalog("me")
    cat.merge([rec(("greeter", "1.0", "theirs"), "x", stamp(1))], 0.0)
    cat.register(service(nodes=("mine",)), None, 0.0)
    tombs = cat.deregister(service(nodes=("theirs", "mine")), 1.0)
    assert [t.node_id for t in tombs] == ["mine"]
    assert visible_nodes(cat) == {"1.0": ["theirs"]}


def test_one_refused_record_does_not_stop_the_rest_of_a_batch() -> None:
    # Each reason to refuse one record of a merged batch: the records after it still count.
    ok = rec(("s", "1", "ok"), "y", stamp(9))
    cat = catalog("me")
    cat.owner_epoch("x", stamp(5))
    res = cat.merge([rec(("s", "1", "old"), "x", stamp(1)), ok], 0.0)  # a previous process's
    assert res.accepted == [ok]
    assert cat.counters["previous_process"] == 1
    cat = catalog("me", max_records_per_owner=1)
    cat.merge([rec(("s", "1", "a"), "x", stamp(1))], 0.0)
    res = cat.merge([rec(("s", "1", "b"), "x", stamp(2)), ok], 0.0)  # over x's limit
    assert res.accepted == [ok]
    assert cat.counters["over_owner_limit"] == 1
    cat = catalog("me")
    (mine,) = cat.register(service(), None, 0.0)
    cat.merge([rec(mine.key, "z", mine.stamp + 1)], 0.0)
    res = cat.merge([rec(mine.key, "z", mine.stamp + 2, deleted=True), ok], 0.0)  # reasserted
    assert [r.owner for r in res.reply] == ["me"]
    assert res.accepted == [ok]


def test_a_conflict_is_counted_once_per_other_owner() -> None:
    cat = catalog("me")
    (mine,) = cat.register(service(), None, 0.0)
    cat.merge([rec(mine.key, "z", mine.stamp + 1)], 0.0)
    cat.merge([rec(mine.key, "z", mine.stamp + 2, port=9090)], 0.0)  # z updates its own
    assert cat.counters["conflicts"] == 1
    assert [(k, o, shown) for k, o, shown in cat.take_conflicts()] == [(mine.key, "z", False)]
    cat.merge([rec(mine.key, "w", mine.stamp + 3)], 0.0)  # another owner
    assert cat.counters["conflicts"] == 2


def test_an_owner_authority_tombstone_is_kept_its_full_time() -> None:
    cat = catalog("me", tombstone_ttl=100, convergence_bound=10)
    forged = rec(("s", "1", "never"), "me", stamp(1))  # names this member, which never registered it
    (fix,) = cat.merge([forged], 50.0).reply
    assert fix.deleted
    assert cat.next_deadline() == 150.0
    cat.tick(149.9)
    assert cat.get(fix.key) == fix
    cat.tick(150.0)
    assert cat.get(fix.key) is None


def test_epochs_hide_exactly_the_records_stamped_before_them() -> None:
    cat = catalog("me")
    at = rec(("s", "1", "at"), "x", stamp(5))
    before = rec(("s", "1", "before"), "x", stamp(4))
    cat.merge([at, before], 0.0)
    cat.owner_epoch("x", stamp(5))
    assert cat.is_visible(at.key)
    assert not cat.is_visible(before.key)
    assert visible_nodes(cat, "s") == {"1": ["at"]}
    check_views(cat)
    # A record stamped at the epoch is the current process's: accepted and shown.
    later = rec(("s", "1", "later"), "x", stamp(5))
    assert cat.merge([later], 0.0).accepted == [later]
    assert cat.is_visible(later.key)
    # Owners without a known epoch: any stamp is current, even 0.
    zero = rec(("s", "1", "zero"), "y", 0)
    assert cat.merge([zero], 0.0).accepted == [zero]
    assert cat.is_visible(zero.key)
    cat.owner_down("y")
    cat.owner_up("y")
    cat.owner_synced("y")
    assert cat.is_visible(zero.key)
    # The smallest epoch counts too.
    first = rec(("s", "1", "first"), "z", 0)
    cat.merge([first], 0.0)
    cat.owner_epoch("z", 1)
    assert not cat.is_visible(first.key)
    check_views(cat)


def test_collection_goes_on_past_a_replaced_tombstone() -> None:
    cat = catalog("me", tombstone_ttl=100, convergence_bound=10)
    t1 = rec(("s", "1", "a"), "x", stamp(1), deleted=True)
    t2 = rec(("s", "1", "b"), "x", stamp(1), deleted=True)
    cat.merge([t1, t2], 0.0)
    revived = rec(t1.key, "x", stamp(2))  # replaces t1: its collection entry is stale
    cat.merge([revived], 0.0)
    cat.tick(100.0)
    assert cat.records() == [revived]
    assert cat.counters["collected"] == 1


def test_a_collected_tombstone_frees_nothing_of_its_owners_record_limit() -> None:
    cat = catalog("me", tombstone_ttl=100, convergence_bound=10, max_records_per_owner=2)
    cat.merge([rec(("s", "1", "a"), "x", stamp(1)), rec(("s", "1", "b"), "x", stamp(2))], 0.0)
    cat.merge([rec(("s", "1", "t"), "x", stamp(3), deleted=True)], 0.0)
    cat.tick(100.0)  # the tombstone is collected; x still has two live records
    assert cat.merge([rec(("s", "1", "c"), "x", stamp(4))], 100.0).accepted == []
    assert cat.counters["over_owner_limit"] == 1


def test_a_purged_owner_is_no_longer_in_resync() -> None:
    cat = catalog("me")
    cat.merge([rec(("s", "1", "a"), "x", stamp(1))], 0.0)
    cat.owner_down("x")
    assert cat.owner_up("x") is True  # back, with records stored: resync
    cat.purge_owner("x")  # then reaped: its records are gone
    assert not cat.in_resync("x")
    assert cat.owner_up("x") is False
    r = rec(("s", "1", "b"), "x", stamp(2))
    cat.merge([r], 0.0)
    assert cat.is_visible(r.key)


def test_reconcile_pushes_a_newer_record_the_responder_holds_under_another_owner() -> None:
    a = catalog("a")
    newer = rec(("s", "1", "k"), "y", stamp(5))
    a.merge([newer], 0.0)
    offer = Offer({"z": {key_hash(newer.key): stamp(1)}}, [], [])  # the responder's older z record
    push, want = a.reconcile(offer, 0.0)
    assert push == [(newer, 0.0)]
    assert want == []
    older = Offer({"z": {key_hash(newer.key): stamp(9)}}, [], [])  # and a newer one: wanted
    push, want = a.reconcile(older, 0.0)
    assert push == []
    assert want == [key_hash(newer.key)]


def test_a_fresh_tombstone_has_age_zero() -> None:
    cat = catalog("me")
    t = rec(("s", "1", "a"), "x", stamp(1), deleted=True)
    cat.merge([t], 10.0)
    assert cat.export(10.0) == [(t, 0.0)]
    assert cat.fetch([key_hash(t.key)], 10.5) == [(t, 0.5)]
    assert cat.export(9.0) == [(t, 0.0)]  # never negative


def test_a_record_is_live_without_a_lease_by_default() -> None:
    r = Record("s", "1", "n", "o", 1)
    assert (r.ttl, r.deleted, r.node) == (None, False, None)
    assert (dict(r.metadata), r.endpoints, r.signature) == ({}, (), b"")


def test_a_signature_is_no_part_of_a_records_identity() -> None:
    r = rec(st=stamp(1))
    signed = dataclasses.replace(r, signature=b"s" * 64)
    assert signed == r
    assert hash(signed) == hash(r)
    assert not signed.wins_over(r)
    assert not r.wins_over(signed)
