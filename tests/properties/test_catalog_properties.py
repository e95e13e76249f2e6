"""Hypothesis properties of the registration CRDT (gossipreg.core.catalog).

* merge is a join: commutative, associative and idempotent over arbitrary record
  sets, including forged ties on ``(stamp, owner)`` with different content;
* any permutation or duplication of delivery gives the same records and views;
* the four-step push-pull gives the same state as merging everything;
* a stateful model: through any sequence of registrations, deregistrations,
  remote merges, ticks and owner liveness changes, the stored records, the
  visibility of every key, the cached views, the event stream and the digest
  all agree with a simple model.

Owners of generated records are never the catalogs' own names, so owner
authority does not interfere (it has unit tests of its own).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from gossipreg.core.catalog import Catalog, Key, Record, sync_pair
from gossipreg.core.errors import NotFoundError
from gossipreg.core.hlc import HybridClock, make_stamp
from gossipreg.core.model import Endpoint, Node, Service

WALL = 1_000_000.0
WALL_MS = int(WALL * 1000)
NOW = 0.0
NAMES = ("alpha", "beta", "gamma")
VERSIONS = ("1", "2")
NODE_IDS = ("n1", "n2", "n3")
OWNERS = ("o1", "o2", "o3")

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def new_catalog(name: str = "c", **kwargs: object) -> Catalog:
    return Catalog(name, HybridClock(lambda: WALL), **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ records

keys = st.tuples(st.sampled_from(NAMES), st.sampled_from(VERSIONS), st.sampled_from(NODE_IDS))
# A few ms after the wall clock, with logical counters: many ties on the same key.
stamps = st.builds(make_stamp, st.integers(WALL_MS - 2, WALL_MS + 2), st.integers(0, 2))
# Equal maps in different insertion orders, to check the tiebreak depends on content only.
node_metadata = st.sampled_from([{}, {"a": "1"}, {"a": "1", "b": "2"}, {"b": "2", "a": "1"}])
service_metadata = st.sampled_from([{}, {"v": "x"}, {"v": "y"}])
endpoint_sets = st.sampled_from([(), (Endpoint("E"),), (Endpoint("E", metadata={"k": "v"}),)])


@st.composite
def records(
    draw: st.DrawFn,
    key: Key | None = None,
    owner: str | None = None,
    stamp: int | None = None,
    key_space: st.SearchStrategy[Key] = keys,
    stamp_space: st.SearchStrategy[int] = stamps,
) -> Record:
    name, version, nid = key if key is not None else draw(key_space)
    owner = owner if owner is not None else draw(st.sampled_from(OWNERS))
    stamp = stamp if stamp is not None else draw(stamp_space)
    if draw(st.integers(0, 3)) == 0:
        return Record(name, version, nid, owner, stamp, None, True)
    node = Node(nid, f"h:{draw(st.integers(1, 3))}", metadata=draw(node_metadata))
    return Record(
        name,
        version,
        nid,
        owner,
        stamp,
        draw(st.sampled_from([None, 30.0, 60.0])),
        False,
        node,
        draw(service_metadata),
        draw(endpoint_sets),
    )


@st.composite
def tied_records(draw: st.DrawFn) -> list[Record]:
    """Arbitrary records plus variants sharing ``(key, stamp, owner)`` with different content."""
    base = draw(st.lists(records(), max_size=12))
    tied = draw(st.lists(st.sampled_from(base), max_size=4)) if base else []
    return base + [draw(records(key=r.key, owner=r.owner, stamp=r.stamp)) for r in tied]


record_sets = tied_records()


def build(*batches: Iterable[Record]) -> Catalog:
    cat = new_catalog()
    for batch in batches:
        cat.merge(batch, NOW)
    return cat


def views(cat: Catalog) -> tuple[dict[str, list[Service] | None], list[Service]]:
    by_name: dict[str, list[Service] | None] = {}
    for name in NAMES:
        try:
            by_name[name] = cat.get_service(name)
        except NotFoundError:
            by_name[name] = None
    return by_name, cat.list_services()


def state(cat: Catalog) -> tuple[object, ...]:
    by_name, listing = views(cat)
    visible = sorted(r.key for r in cat.records() if cat.is_visible(r.key))
    return cat.records(), visible, by_name, listing, cat.digest()


def fresh_state(cat: Catalog) -> tuple[object, ...]:
    """The state of a catalog that received ``cat``'s records in one go (no cache history)."""
    return state(build(cat.records()))


# -------------------------------------------------------------- join laws


@PROPS
@given(record_sets, record_sets)
def test_merge_is_commutative(xs: list[Record], ys: list[Record]) -> None:
    ab = build(xs, ys)
    ba = build(ys, xs)
    assert state(ab) == state(ba)
    assert state(ab) == fresh_state(ab)


@PROPS
@given(record_sets, record_sets, record_sets)
def test_merge_is_associative(xs: list[Record], ys: list[Record], zs: list[Record]) -> None:
    a, b, c = build(xs), build(ys), build(zs)
    left = build(build(a.records(), b.records()).records(), c.records())
    right = build(a.records(), build(b.records(), c.records()).records())
    assert state(left) == state(right)
    assert state(left) == state(build(xs, ys, zs))


@PROPS
@given(record_sets)
def test_merge_is_idempotent(xs: list[Record]) -> None:
    cat = build(xs)
    before = state(cat)
    cat.take_events()
    for batch in (xs, cat.records()):
        res = cat.merge(batch, NOW)
        assert res.accepted == []
        assert res.reply == []
        assert cat.take_events() == []
        assert state(cat) == before


@PROPS
@given(record_sets, st.data())
def test_any_permutation_or_duplication_of_delivery_gives_the_same_state(
    xs: list[Record], data: st.DataObject
) -> None:
    reference = build(xs)
    order = data.draw(st.permutations(xs))
    extra = data.draw(st.lists(st.sampled_from(xs), max_size=10)) if xs else []
    delivery = data.draw(st.permutations(order + extra))
    # One record at a time, reading the views in between (so the caches are exercised).
    cat = new_catalog()
    for r in delivery:
        cat.merge([r], NOW)
        views(cat)
    assert state(cat) == state(reference)
    assert state(cat) == fresh_state(cat)


@PROPS
@given(record_sets)
def test_event_stream_replays_to_the_view(xs: list[Record]) -> None:
    cat = new_catalog()
    seen: dict[Key, Node] = {}
    for r in xs:
        cat.merge([r], NOW)
        apply_events(seen, cat)
    assert seen == visible_nodes(cat)


# ------------------------------------------------------------ anti-entropy


@st.composite
def honest_writes(draw: st.DrawFn) -> list[Record]:
    """Records as an honest cluster writes them: one write per ``(owner, stamp)``."""
    heads = draw(
        st.lists(
            st.tuples(keys, st.sampled_from(OWNERS), stamps),
            unique_by=lambda t: (t[1], t[2]),
            max_size=16,
        )
    )
    return [draw(records(key=k, owner=o, stamp=s)) for k, o, s in heads]


@PROPS
@given(honest_writes(), st.data())
def test_push_pull_gives_the_same_state_as_merging_everything(
    universe: list[Record], data: st.DataObject
) -> None:
    # Each record is known to a, to b, or to both (in any order).
    where = [data.draw(st.sampled_from(["a", "b", "ab"])) for _ in universe]
    a = build(data.draw(st.permutations([r for r, w in zip(universe, where, strict=True) if "a" in w])))
    b = build(data.draw(st.permutations([r for r, w in zip(universe, where, strict=True) if "b" in w])))
    a = rename(a, "a")
    b = rename(b, "b")
    reference = build(universe)
    if data.draw(st.booleans()):
        sync_pair(a, b, NOW)
    else:
        sync_pair(b, a, NOW)
    assert state(a)[0] == state(b)[0] == state(reference)[0]
    assert state(a) == state(b) == state(reference)
    # Converged: another exchange transfers nothing.
    assert sync_pair(a, b, NOW) == 0
    assert sync_pair(b, a, NOW) == 0


@PROPS
@given(honest_writes(), st.data())
def test_push_pull_transfers_each_differing_record_at_most_once(
    universe: list[Record], data: st.DataObject
) -> None:
    a_has = data.draw(st.lists(st.sampled_from(universe), unique=True)) if universe else []
    b_has = data.draw(st.lists(st.sampled_from(universe), unique=True)) if universe else []
    a, b = rename(build(a_has), "a"), rename(build(b_has), "b")
    differing = {r.key for r in a.records()} ^ {r.key for r in b.records()}
    differing |= {r.key for r in a.records() if b.get(r.key) is not None and b.get(r.key) != r}
    sent = sync_pair(a, b, NOW)
    assert a.records() == b.records()
    # Exactly the differing keys cross, plus at most the loser of each key whose
    # winner changed owner (it is offered under its own owner's summary).
    assert len(differing) <= sent <= 2 * len(differing)


def rename(cat: Catalog, name: str) -> Catalog:
    """A catalog called ``name`` holding ``cat``'s records (names are fixed at construction)."""
    out = new_catalog(name)
    out.merge(cat.records(), NOW)
    return out


# ----------------------------------------------------------- stateful model


def apply_events(seen: dict[Key, Node], cat: Catalog) -> None:
    """Apply ``cat``'s queued events to a key -> node view, checking each is consistent."""
    for ev in cat.take_events():
        key = ev.record.key
        assert ev.node == ev.record.node
        assert ev.service.nodes == (ev.node,)
        if ev.action == "create":
            assert key not in seen, ev
            seen[key] = ev.node
        elif ev.action == "update":
            assert key in seen, ev
            seen[key] = ev.node
        else:
            assert seen.pop(key) == ev.node, ev


def visible_nodes(cat: Catalog) -> dict[Key, Node]:
    out = {}
    for r in cat.records():
        if cat.is_visible(r.key):
            assert r.node is not None
            out[r.key] = r.node
    return out


def recomputed_views(cat: Catalog) -> tuple[dict[str, list[Service] | None], list[Service]]:
    """The views from scratch: visible records grouped, sorted; the newest record heads a version."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in cat.records():
        if cat.is_visible(r.key):
            groups[(r.service, r.version)].append(r)
    by_name: dict[str, list[Service] | None] = dict.fromkeys(NAMES)
    listing = []
    for (name, version), rs in sorted(groups.items()):
        # Ties on (stamp, owner) across keys only come from forged input: broken by node id.
        head = max(rs, key=lambda r: (r.stamp, r.owner, r.node_id))
        nodes = tuple(r.node for r in sorted(rs, key=lambda r: r.node_id) if r.node is not None)
        services = by_name.get(name)
        if services is None:
            services = by_name[name] = []
        services.append(Service(name, version, head.metadata, head.endpoints, nodes))
        listing.append(Service(name, version, head.metadata, head.endpoints, ()))
    return by_name, listing


ME = "me"
TOMB_TTL = 100.0
LEASES = st.sampled_from([None, 5.0, 30.0, 90.0])
# A smaller space than the join properties use, so that the machine's registrations, remote
# records and ties on (key, stamp) collide often.
M_NAMES = st.sampled_from(NAMES[:2])
M_NODE_IDS = NODE_IDS[:2]
M_KEYS = st.tuples(M_NAMES, st.sampled_from(VERSIONS), st.sampled_from(M_NODE_IDS))
M_STAMPS = st.builds(make_stamp, st.integers(WALL_MS, WALL_MS + 1), st.integers(0, 1))


class CatalogMachine(RuleBasedStateMachine):
    """Drives one catalog and a simple model of what it must hold and show."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.default_up = True
        self.cat = new_catalog(ME, tombstone_ttl=TOMB_TTL, convergence_bound=10.0)
        # The model: key -> (record, when it was received on the local clock).
        self.store: dict[Key, tuple[Record, float]] = {}
        self.local: dict[Key, Record] = {}
        self.leases: dict[Key, float] = {}  # our own leases: when each ends
        self.up: dict[str, bool] = {}
        self.resync: set[str] = set()
        self.seen: dict[Key, Node] = {}

    @initialize(default_up=st.booleans())
    def setup(self, default_up: bool) -> None:
        self.default_up = default_up
        self.cat = new_catalog(
            ME, tombstone_ttl=TOMB_TTL, convergence_bound=10.0, owners_up_by_default=default_up
        )

    # -- model helpers

    def _put(self, rec: Record, received: float) -> None:
        self.store[rec.key] = (rec, received)

    def _dead_at(self, rec: Record, received: float) -> float | None:
        # Leases are counted by their owner, which deregisters what it does not renew: a
        # live record stays until a tombstone replaces it.
        return received if rec.deleted else None

    def _owner_visible(self, owner: str) -> bool:
        return owner == ME or (self.up.get(owner, self.default_up) and owner not in self.resync)

    # -- rules

    @rule(
        name=M_NAMES,
        version=st.sampled_from(VERSIONS),
        nids=st.lists(st.sampled_from(M_NODE_IDS), min_size=1, max_size=2, unique=True),
        ttl=LEASES,
        md=service_metadata,
        port=st.integers(1, 3),
    )
    def register(
        self, name: str, version: str, nids: list[str], ttl: float | None, md: dict[str, str], port: int
    ) -> None:
        svc = Service(name, version, md, (), tuple(Node(n, f"me:{port}") for n in nids))
        renewed = []
        for n in nids:
            key = (name, version, n)
            local = self.local.get(key)
            stored = self.store.get(key)
            if (
                local is not None
                and stored is not None
                and (stored[0] == local or (not stored[0].deleted and stored[0].owner != ME))
                and (local.ttl, local.node, dict(local.metadata), local.endpoints)
                == (ttl, Node(n, f"me:{port}"), md, ())
            ):
                renewed.append(key)  # unchanged (ours, or shown as another's): the lease restarts
        out = self.cat.register(svc, ttl, self.now)
        assert [r.key for r in out] == [(name, version, n) for n in nids if (name, version, n) not in renewed]
        for key in [(name, version, n) for n in nids]:
            if ttl is None:
                self.leases.pop(key, None)
            else:
                self.leases[key] = self.now + ttl
        for r in out:
            assert r.owner == ME
            assert r.ttl == ttl
            current = self.store.get(r.key)
            assert current is None or r.wins_over(current[0])
            self._put(r, self.now)
            self.local[r.key] = r

    @rule(
        name=M_NAMES,
        version=st.sampled_from(VERSIONS),
        nids=st.lists(st.sampled_from(M_NODE_IDS), max_size=2, unique=True),
    )
    def deregister(self, name: str, version: str, nids: list[str]) -> None:
        if nids:
            candidates = [(name, version, n) for n in nids]
        else:
            candidates = [k for k in self.local if k[:2] == (name, version)]
        expected = [
            k
            for k in candidates
            if k in self.store and self.store[k][0].owner == ME and not self.store[k][0].deleted
        ]
        svc = Service(name, version, nodes=tuple(Node(n) for n in nids))
        out = self.cat.deregister(svc, self.now)
        assert sorted(t.key for t in out) == sorted(expected)
        for k in candidates:
            self.local.pop(k, None)
            self.leases.pop(k, None)
        for t in out:
            assert t.deleted
            assert t.owner == ME
            self._put(t, self.now)

    @precondition(lambda self: self.local)
    @rule(data=st.data(), owner=st.sampled_from(OWNERS), withdraw=st.booleans())
    def another_owner_registers_ours(self, data: st.DataObject, owner: str, withdraw: bool) -> None:
        """Another member registers a node id this member registers (a copied config), and
        maybe withdraws it again: the paths the random records rarely reach."""
        key = data.draw(st.sampled_from(sorted(self.local)))
        top = max(self.local[key].stamp, self.store[key][0].stamp if key in self.store else 0)
        theirs = Record(*key, owner, top + 1, None, False, Node(key[2], "h:9"))
        self.merge_remote(theirs, 0.0)
        if withdraw:
            self.merge_remote(Record(*key, owner, top + 2, None, True), 0.0)

    @rule(
        rec=records(key_space=M_KEYS, stamp_space=M_STAMPS),
        age=st.sampled_from([0.0, 0.0, 3.0, 40.0, 200.0]),
    )
    def merge_remote(self, rec: Record, age: float) -> None:
        current = self.store.get(rec.key)
        res = self.cat.merge_aged([(rec, age)], self.now)
        assert res.rejected == 0
        if current is not None and not rec.wins_over(current[0]):
            assert res.accepted == res.reply == []
            return
        local = self.local.get(rec.key)
        if local is not None and rec.owner != ME and rec.deleted:
            # Another owner withdrew a node id we register too: ours is re-asserted.
            assert res.accepted == []
            [fix] = res.reply
            assert fix.owner == ME
            assert fix.wins_over(rec)
            assert (fix.key, fix.ttl, fix.node, fix.metadata, fix.endpoints) == (
                local.key, local.ttl, local.node, local.metadata, local.endpoints
            )
            self.local[rec.key] = fix
            self._put(fix, self.now)
            return
        assert res.reply == []
        assert res.accepted == [rec]
        self._put(rec, self.now - age)  # (a live one of another owner: ours stays registered)

    @rule(dt=st.sampled_from([0.0, 1.0, 4.0, 10.0, 29.0, 60.0, 100.0, 250.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        due = sorted(k for k, end in self.leases.items() if end <= self.now)
        shown = [k for k in due if k in self.local and k in self.store and self.store[k][0] == self.local[k]]
        expired = self.cat.tick(self.now)
        # Our own leases that ran out are deregistered: tombstones for those shown as ours.
        assert sorted(t.key for t in expired) == shown
        for t in expired:
            assert t.deleted
            assert t.owner == ME
            assert t.wins_over(self.store[t.key][0])
            self._put(t, self.now)
        for k in due:
            del self.leases[k]
            self.local.pop(k, None)
        for key, (rec, received) in list(self.store.items()):
            dead = self._dead_at(rec, received)
            if dead is not None and dead + TOMB_TTL <= self.now:
                del self.store[key]

    def _reasserted(self, owner: str, before: dict[Key, tuple[Record, float]]) -> None:
        """Check what the catalog re-asserted because ``owner`` went down, and take it."""
        expected = sorted(
            k for k in self.local if k in before and before[k][0].owner == owner and not before[k][0].deleted
        ) if owner != ME else []
        out = self.cat.take_outgoing()
        assert sorted(r.key for r in out) == expected
        for fix in out:
            assert fix.owner == ME
            assert fix.wins_over(before[fix.key][0])
            self.local[fix.key] = fix
            self._put(fix, self.now)

    @rule(owner=st.sampled_from((*OWNERS, ME)))
    def owner_down(self, owner: str) -> None:
        before = dict(self.store)
        self.cat.owner_down(owner)
        self._reasserted(owner, before)
        if owner != ME:
            self.up[owner] = False
            self.resync.discard(owner)

    @rule(owner=st.sampled_from((*OWNERS, ME)))
    def owner_up(self, owner: str) -> None:
        # An owner back from down whose records are stored is hidden until it is synced.
        stored = any(r.owner == owner for r, _ in self.store.values())
        returning = self.up.get(owner) is False and stored
        assert self.cat.owner_up(owner) == (owner != ME and (owner in self.resync or returning))
        self.up[owner] = True
        if owner != ME and returning:
            self.resync.add(owner)

    @rule(owner=st.sampled_from((*OWNERS, ME)))
    def owner_synced(self, owner: str) -> None:
        self.cat.owner_synced(owner)
        self.resync.discard(owner)

    @rule(owner=st.sampled_from((*OWNERS, ME)))
    def purge_owner(self, owner: str) -> None:
        before = dict(self.store)
        self.cat.purge_owner(owner)
        self._reasserted(owner, before)
        if owner != ME:
            self.up[owner] = False
            self.resync.discard(owner)
            for key in [k for k, (r, _) in self.store.items() if r.owner == owner]:
                del self.store[key]

    @precondition(lambda self: self.store)
    @rule(data=st.data())
    def replay_stored(self, data: st.DataObject) -> None:
        # Replaying what is stored (gossip echo, anti-entropy duplicate) changes nothing.
        rec, _ = self.store[data.draw(st.sampled_from(sorted(self.store)))]
        res = self.cat.merge_aged([(rec, 0.0)], self.now)
        assert res.accepted == res.reply == []

    # -- invariants

    @invariant()
    def records_match_the_model(self) -> None:
        assert self.cat.records() == [self.store[k][0] for k in sorted(self.store)]
        assert len(self.cat) == len(self.store)
        assert sorted(self.cat.local_records(), key=lambda r: r.key) == [
            self.local[k] for k in sorted(self.local)
        ]

    @invariant()
    def visibility_matches_the_model(self) -> None:
        for key, (rec, received) in self.store.items():
            expected = self._dead_at(rec, received) is None and self._owner_visible(rec.owner)
            assert self.cat.is_visible(key) == expected, (rec, received, self.now)

    @invariant()
    def views_match_a_recomputation(self) -> None:
        assert views(self.cat) == recomputed_views(self.cat)
        assert views(self.cat) == recomputed_views(self.cat)  # from the caches

    @invariant()
    def events_replay_to_the_view(self) -> None:
        apply_events(self.seen, self.cat)
        assert self.seen == visible_nodes(self.cat)

    @invariant()
    def digest_matches_a_fresh_catalog(self) -> None:
        fresh = new_catalog("fresh")
        fresh.merge(self.cat.records(), self.now)
        # Owners known to be down take no part in anti-entropy, so not in the digest.
        expected = {o: v for o, v in fresh.digest().items() if not self.cat._down(o)}
        assert self.cat.digest() == expected

    @invariant()
    def next_deadline_is_not_late(self) -> None:
        pending = []
        for rec, received in self.store.values():
            dead = self._dead_at(rec, received)
            if dead is not None:
                pending.append(dead + TOMB_TTL)
        pending.extend(self.leases.values())
        deadline = self.cat.next_deadline()
        if pending:
            assert deadline is not None
            assert deadline <= min(pending)


CatalogMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_catalog_state_machine = CatalogMachine.TestCase
