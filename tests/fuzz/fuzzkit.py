"""Shared pieces of the seeded fuzz suite (``tests/fuzz``).

* **Seed and sizes.** Every input is drawn from ``random.Random(f"{SEED}/{family}")``
  (one generator per family, so families do not shift each other). ``SEED`` is
  :data:`DEFAULT_SEED` unless the environment variable ``GOSSIPREG_FUZZ_SEED``
  gives another (any Python integer literal). Each file spends
  :data:`DEFAULT_INPUTS` inputs in the default suite and :data:`SLOW_INPUTS`
  in the tests marked ``slow`` (``scripts/test --all``, ``pytest -m ''``),
  split across its families by fixed shares (:func:`split`).
* **The cluster.** :func:`build_cluster` makes a few :class:`NodeCore` members
  on the in-memory network of :mod:`tests.core.node_helpers`, keyed
  (deterministic nonces, so a seed reproduces byte for byte) or insecure, each
  with a registration, and lets them converge; :func:`assert_spreads` checks
  afterwards that a new registration still reaches every member.
* **Judging a member.** :func:`state_of` is everything observable but the
  counters (member table with incarnations, graveyard, catalog records and
  root, views, next deadline); :func:`assert_healthy` the invariants no input
  may break.
* **Generators.** Random msgpack structures, byte mutations of sealed frames,
  and mutations of real message arrays.
"""

from __future__ import annotations

import copy
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgpack
import pytest

from gossipreg.core import codec
from gossipreg.core import node as node_module
from gossipreg.core.config import Config
from gossipreg.core.crypto import Keyring
from gossipreg.core.errors import DecodeError, NotFoundError
from gossipreg.core.membership import Address, MemberState
from gossipreg.core.model import Endpoint, Node, Service, Value
from gossipreg.core.node import NodeCore
from gossipreg.testing import CoreNetwork

from ..core.node_helpers import KEY

SEED_ENV = "GOSSIPREG_FUZZ_SEED"
#: The default seed (issue 13).
DEFAULT_SEED = 13
DEFAULT_INPUTS = 10_000
SLOW_INPUTS = 1_000_000


def _seed() -> int:
    text = os.environ.get(SEED_ENV, "").strip()
    if not text:
        return DEFAULT_SEED
    try:
        return int(text, 0)
    except ValueError:
        raise RuntimeError(f"{SEED_ENV}={text!r}: expected an integer") from None


SEED = _seed()
REPRO = f"seed {SEED}: reproduce with {SEED_ENV}={SEED}"

#: The two sizes every fuzz test runs at; the seed shows in the test id.
SIZES = [
    pytest.param(DEFAULT_INPUTS, id=f"1e4-seed{SEED}"),
    pytest.param(SLOW_INPUTS, id=f"1e6-seed{SEED}", marks=pytest.mark.slow),
]


def split(total: int, shares: dict[str, int]) -> dict[str, int]:
    """``total`` inputs split by integer ``shares``; the parts add up to ``total`` exactly."""
    weight = sum(shares.values())
    out = {k: total * v // weight for k, v in shares.items()}
    rest = total - sum(out.values())
    for k in list(out)[:rest]:
        out[k] += 1
    return out


def family_rng(family: str) -> random.Random:
    return random.Random(f"{SEED}/{family}")


def show(data: bytes, limit: int = 160) -> str:
    """``data`` as hex for a failure message (cut short if long)."""
    text = data[:limit].hex()
    return f"{len(data)} bytes: {text}{'...' if len(data) > limit else ''}"


# ---------------------------------------------------------------------- the cluster

LABEL = "fuzz-cluster"
CONFIG = Config.lan(label=LABEL)
NAMES = ("m0", "m1", "m2", "m3")
#: The member the inputs are fed to (not the seed the others joined through).
TARGET = "m1"
#: Somebody who is not a member, as the source of some inputs.
STRANGER = Address("10.66.0.1", 7946)


def keyring_for(name: str, key: bytes = KEY, seed: int = SEED) -> Keyring:
    """A keyring with a nonce counter derived from the seed: sealed bytes repeat per seed."""
    return Keyring(key, nonce_start=random.Random(f"{seed}/nonce/{name}").getrandbits(96))


def service_of(name: str, nodes: int = 2, meta_size: int = 16) -> Service:
    """A registration with service metadata, an endpoint and node metadata, so gossiped
    records carry every field (and a ``service_fields`` blob)."""
    req = Value("Request", "struct", (Value("name", "string"), Value("n", "int64")))
    endpoint = Endpoint("Say.Hello", req, Value("Response", "string"), {"m": "1"})
    return Service(
        f"{name}-svc",
        "1.0",
        {"team": name},
        (endpoint,),
        tuple(
            Node(f"{name}-{i}", f"10.9.{len(name)}.{i}", 8000 + i, {"zone": "a", "pad": "x" * meta_size})
            for i in range(nodes)
        ),
    )


def build_cluster(
    *,
    insecure: bool = False,
    key: bytes = KEY,
    config: Config = CONFIG,
    names: Sequence[str] = NAMES,
    tag: str = "",
    services: Callable[[str], Service] = service_of,
) -> CoreNetwork:
    """Members ``names`` on a fresh :class:`CoreNetwork`, all joined through the first, each with
    one registration, converged (every member sees every other alive and every service)."""
    net = CoreNetwork(config=config, insecure=insecure, seed=SEED)
    for name in names:
        net.add(name, keyring=None if insecure else keyring_for(name + tag, key))
    first = net.cores[names[0]]
    for name in names[1:]:
        net.cores[name].join([first.address], net.now)
    net.run(3.0)
    for name in names:
        net.cores[name].register(services(name), None, net.now)
    net.wait_for(lambda: converged(net), 10.0)
    net.run(1.0)
    for name in names:
        net.take_events(name)
    return net


def sees(core: NodeCore, service: str) -> bool:
    try:
        return bool(core.get_service(service))
    except NotFoundError:
        return False


def converged(net: CoreNetwork) -> bool:
    names = sorted(net.cores)
    for core in net.cores.values():
        if [m.name for m in core.members() if m.state is MemberState.ALIVE] != names:
            return False
        if {s.name for s in core.list_services()} != {
            r.service for c in net.cores.values() for r in c.catalog.local_records()
        }:
            return False
    return True


def assert_spreads(net: CoreNetwork, target: str, what: str) -> None:
    """A new registration made by the target, and one made by another member, reach
    every member; every member still sees every other alive."""
    other = next(n for n in sorted(net.cores) if n != target)
    fresh = f"after-{what}".replace("_", "-")[:200]
    net.cores[target].register(Service(f"{fresh}-t", "1", nodes=(Node("t-1", "10.1.0.1:1"),)), None, net.now)
    net.cores[other].register(Service(f"{fresh}-o", "1", nodes=(Node("o-1", "10.1.0.2:1"),)), None, net.now)
    t0 = net.now
    reached = net.run_until(
        net.now + 10.0,
        until=lambda: all(sees(c, f"{fresh}-t") and sees(c, f"{fresh}-o") for c in net.cores.values()),
    )
    assert reached, (
        f"{what}: a registration made afterwards did not reach every member within 10 s ({REPRO})"
    )
    assert net.now - t0 < 2.0, f"{what}: the registration took {net.now - t0:.2f} s to spread ({REPRO})"
    for name, core in net.cores.items():
        alive = sorted(m.name for m in core.members() if m.state is MemberState.ALIVE)
        assert alive == sorted(net.cores), f"{what}: {name} sees {alive} alive ({REPRO})"


# ---------------------------------------------------------------------- judging a member


def state_of(core: NodeCore) -> tuple[object, ...]:
    """Everything observable about ``core`` but its counters."""
    services = core.list_services()
    return (
        core.members(),
        core.membership.graveyard(),
        core.membership.fingerprint(),
        sorted(core.catalog.records(), key=lambda r: r.key),
        core.catalog.root(),
        services,
        [core.get_service(s.name) for s in services],
        core.left,
        deadline_but_tree_acks(core),
    )


def deadline_but_tree_acks(core: NodeCore) -> float | None:
    """``core.next_deadline()`` leaving out the broadcast tree's pending acks.

    The intact prefix of a replayed conversation may make the member push an
    update down its broadcast tree (legitimate output, like its datagrams), and
    each such tree datagram waits for its child's ack (the tree repair): a timer
    that no garbage input set. Every other timer must stay as it was.
    """
    pending = core._tree_sends
    core._tree_sends = {}
    try:
        return core.next_deadline()
    finally:
        core._tree_sends = pending


def describe_change(before: tuple[object, ...], after: tuple[object, ...]) -> str:
    parts = ("members", "graveyard", "members fingerprint", "records", "catalog root", "services",
             "views", "left", "next deadline")
    changed = [p for p, b, a in zip(parts, before, after, strict=True) if b != a]
    return ", ".join(changed)


def assert_healthy(core: NodeCore, names: Iterable[str], where: str, now: float) -> None:
    """Invariants no input may break: the member is alive in its own table, still lists
    every member alive, and its catalog exports and re-encodes cleanly."""
    me = core.membership.get(core.name)
    assert me is not None, f"{where}: {core.name} is missing from its own table ({REPRO})"
    assert me.state is MemberState.ALIVE, f"{where}: {core.name} is {me} in its own table ({REPRO})"
    alive = sorted(m.name for m in core.members() if m.state is MemberState.ALIVE)
    assert alive == sorted(names), f"{where}: {core.name} sees {alive} alive ({REPRO})"
    for rec, age in core.catalog.export(now):
        assert codec.decode_transfer(codec.unpack(codec.pack(codec.encode_transfer(rec, age))))[0] == rec


class Notices:
    """The notices of refused traffic (``TrafficRefused``, where the node core has them),
    counted by cause. A fuzz family runs at one instant of the virtual clock, so however
    many inputs it refuses, each cause may give at most one notice (they are rate-limited
    so that a flood cannot flood the log)."""

    def __init__(self) -> None:
        self.by_cause: Counter[str] = Counter()
        self._type = getattr(node_module, "TrafficRefused", None)

    def sort(self, events: Sequence[object]) -> list[object]:
        """Count the notices among ``events``; return the other events."""
        rest = []
        for e in events:
            if self._type is not None and isinstance(e, self._type):
                self.by_cause[e.cause] += 1
            else:
                rest.append(e)
        return rest

    def assert_rate_limited(self, where: str) -> None:
        over = {cause: n for cause, n in self.by_cause.items() if n > 1}
        assert not over, f"{where}: notices of refused traffic at one instant: {over} ({REPRO})"


def stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after.keys() | before.keys()
            if after.get(k, 0) != before.get(k, 0)}


# ---------------------------------------------------------------------- generators

#: Integers at the edges of every range the codec checks (and beyond).
EDGE_INTS = (
    0, 1, 2, -1, -2, 7, 8, 9, 16, 21, 22, 31, 32, 33, 127, 128, 255, 256, 511, 512, 513,
    1023, 1024, 1025, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1,
    2**63 - 1, 2**63, 2**64 - 1, -128, -129, -(2**15), -(2**31), -(2**31) - 1, -(2**63),
)
_ALPHABET = "abcxyz019 -_.:/\u00e9\u4e2d\U0001f600\x00\x1f\x7f\u2028"


def random_str(rng: random.Random, max_len: int = 24) -> str:
    r = rng.random()
    if r < 0.05:
        return ""
    if r < 0.10:
        return rng.choice("ab") * rng.choice((255, 256, 257, 511, 512, 513, 4097))
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, max_len)))


def random_scalar(rng: random.Random) -> object:
    r = rng.randrange(10)
    if r == 0:
        return rng.choice(EDGE_INTS)
    if r == 1:
        return rng.randint(-(2**63), 2**64 - 1)
    if r == 2:
        return rng.randint(-3, 300)
    if r == 3:
        return rng.choice((0.0, -0.0, 1.5, 1e300, float("inf"), float("nan"), 7946.0))
    if r == 4:
        return random_str(rng)
    if r == 5:
        return rng.randbytes(rng.choice((0, 1, 8, 16, 100, 513)))
    if r == 6:
        return rng.choice((True, False, None))
    if r == 7:
        return msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.randrange(10)))
    if r == 8:
        return rng.choice(NAMES) if rng.random() < 0.5 else rng.choice(("alive", "suspect", "dead", "left"))
    return rng.randrange(0, 22)  # message and stream types


def random_obj(rng: random.Random, depth: int = 0) -> object:
    """A random msgpack-encodable structure: scalars, arrays, maps (mostly str keys)."""
    r = rng.random()
    if depth >= 6 or r < 0.55:
        return random_scalar(rng)
    if r < 0.85:
        return [random_obj(rng, depth + 1) for _ in range(rng.randrange(0, 10))]
    out: dict[Any, Any] = {}
    for _ in range(rng.randrange(0, 6)):
        k = random_str(rng, 8) if rng.random() < 0.85 else random_scalar(rng)
        if isinstance(k, list | dict | float) or (type(k) is int and not -(2**63) <= k < 2**64):
            k = str(k)
        out[k] = random_obj(rng, depth + 1)
    return out


def random_message_like(rng: random.Random, types: Sequence[int]) -> list[Any]:
    """An array that looks like a message: a plausible type, then random fields."""
    head: object = rng.choice(types) if rng.random() < 0.8 else random_scalar(rng)
    return [head, *(random_obj(rng, 1) for _ in range(rng.randrange(0, 10)))]


def deep(depth: int, leaf: object = None) -> object:
    obj = leaf
    for _ in range(depth):
        obj = [obj]
    return obj


def deep_bytes(depth: int) -> bytes:
    """msgpack of ``depth`` nested one-element arrays (deeper than ``packb`` will build)."""
    return b"\x91" * depth + b"\xc0"


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


# -- byte mutations of a sealed frame (any of them breaks its authentication)

MUTATIONS = ("truncate", "flip1", "flip_many", "set_byte", "append", "cut_middle", "swap_halves")


def mutate_bytes(rng: random.Random, data: bytes, op: str | None = None) -> bytes:
    """A byte-level mutation of ``data`` that differs from it."""
    op = op or rng.choice(MUTATIONS)
    buf = bytearray(data)
    n = len(buf)
    if n == 0:
        return rng.randbytes(rng.randint(1, 40))
    if op == "truncate":
        return bytes(buf[: rng.choice((0, 1, 12, 13, 28, 29, 30, rng.randrange(n)))][: n - 1])
    if op == "flip1":
        i = rng.randrange(n)
        buf[i] ^= 1 << rng.randrange(8)
    elif op == "flip_many":
        flips = {(rng.randrange(n), rng.randrange(8)) for _ in range(rng.randint(2, 32))}
        for i, b in flips:
            buf[i] ^= 1 << b
    elif op == "set_byte":
        i = rng.randrange(n)
        buf[i] = (buf[i] + rng.randint(1, 255)) % 256
    elif op == "append":
        buf += rng.randbytes(rng.randint(1, 64))
    elif op == "cut_middle":
        i = rng.randrange(n)
        del buf[i : i + rng.randint(1, 32)]
    else:
        i = rng.randrange(1, n) if n > 1 else 0
        buf = buf[i:] + buf[:i]
    out = bytes(buf)
    return out if out != data else bytes(buf[:-1])


# -- mutations of decoded message arrays (real messages with wrong fields)

BAD_TYPES: tuple[object, ...] = (
    10, 11, 15, 16, 17, 18, 19, 20, 21, 22, 99, 127, 128, 255, 256, 65535, 2**32, 2**64 - 1,
    -1, -128, -(2**63), "0", "4", "ping", b"\x00", None, True, False, 0.0, 4.0, [], {}, [0],
)


def _bad_for(rng: random.Random, value: object) -> object:
    """A replacement for ``value``: another type, an edge of its range, or too long."""
    r = rng.random()
    if type(value) is int and r < 0.6:
        choice = rng.choice((-1, -2, -(2**63), 2**64 - 1, 2**32, 2**32 - 1, 65536, 65535, 33, 513,
                             value + 1, value - 1, -value - 1))
        return min(max(choice, -(2**63)), 2**64 - 1)  # what msgpack can carry
    if type(value) is str and r < 0.6:
        return rng.choice(("", " " * 257, "n" * 256, "h" * 256, "a" * 513, "\x00", "a\x00b", "\u2028",
                           value + "\x7f", value * 40))
    if type(value) is bytes and r < 0.6:
        return rng.choice((b"\x00" * 513, b"x" * 4097, value + b"\xff"))
    if type(value) is list and r < 0.5 and value:
        return rng.choice((value[:-1], [*value, value[-1]], [], deep(rng.randint(2, 60), value)))
    if type(value) is dict and r < 0.5:
        if value and r < 0.25:  # one key made bad, the rest kept
            bad = dict(value)
            key = rng.choice(list(bad))
            bad[rng.choice(("", "k" * 300, "\x00", 7, b"k"))] = bad.pop(key)
            return bad
        return rng.choice(({1: "x"}, {"k": 1}, {"k": ["v"]}, {"": ""}, {"k" * 300: "v"}, {"\x00": "v"}))
    return rng.choice((None, True, 3.5, -7, "x", b"x", [], {}, [None], {"k": "v"}, deep(rng.randint(2, 40)),
                       msgpack.ExtType(1, b"x")))


def _paths(obj: object, prefix: tuple[Any, ...] = (), top: bool = True) -> list[tuple[Any, ...]]:
    """Every position inside nested arrays and map values (not the message type itself)."""
    if type(obj) is list:
        items: Iterable[tuple[Any, object]] = enumerate(obj)
    elif type(obj) is dict:
        items = obj.items()
    else:
        return []
    out = []
    for i, item in items:
        if top and i == 0:
            continue
        out.append((*prefix, i))
        out.extend(_paths(item, (*prefix, i), False))
    return out


def mutate_array(rng: random.Random, message: list[Any], types_ok: bool = True) -> list[Any]:
    """One or more field mutations of a (copied) message array: wrong types, wrong
    lengths, ints out of range, too-long strings, deep nesting, an unknown type, and
    for records the service-fields blob mutated inside."""
    msg = copy.deepcopy(message)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        r = rng.random()
        if r < 0.08 and types_ok:
            msg[0] = rng.choice(BAD_TYPES)
            continue
        if r < 0.16:
            op = rng.randrange(4)
            if op == 0 and len(msg) > 1:
                del msg[rng.randrange(1, len(msg))]
            elif op == 1:
                msg.insert(rng.randint(1, len(msg)), random_obj(rng, 2))
            elif op == 2:
                del msg[1:]
            else:
                msg.append(random_obj(rng, 2))
            continue
        paths = _paths(msg)
        if not paths:
            msg.append(random_obj(rng, 2))
            continue
        path = rng.choice(paths)
        parent: Any = msg
        for i in path[:-1]:
            parent = parent[i]
        value = parent[path[-1]]
        if type(value) is bytes and value[:1] in (b"\x92",) and rng.random() < 0.7:
            # A nested msgpack blob (a record's service fields): mutate inside it.
            try:
                inner = msgpack.unpackb(value, raw=False)
            except Exception:
                inner = None
            if type(inner) is list:
                parent[path[-1]] = pack(_mutate_blob(rng, inner))
                continue
        parent[path[-1]] = _bad_for(rng, value)
    return msg


def splice_deep(rng: random.Random, obj: list[Any], depth: int) -> bytes:
    """msgpack of ``obj`` with one position inside it (not the type) replaced by arrays
    nested ``depth`` deep, deeper than ``msgpack.packb`` builds (it stops at 512)."""
    msg = copy.deepcopy(obj)
    paths = _paths(msg)
    if not paths:
        return pack(msg)
    path = rng.choice(paths)
    parent: Any = msg
    for i in path[:-1]:
        parent = parent[i]
    marker = b"\x00splice\x00" + rng.randbytes(8)
    parent[path[-1]] = marker
    packed, encoded = pack(msg), pack(marker)
    assert packed.count(encoded) == 1
    return packed.replace(encoded, deep_bytes(depth))


def _mutate_blob(rng: random.Random, blob: list[Any]) -> object:
    """Service fields ``[metadata, endpoints]`` made invalid in one of many ways."""
    r = rng.randrange(8)
    if r == 0:
        return [blob[0], [blob[1][0] if blob[1] else ["e", None, None, {}]] * 257]  # too many endpoints
    if r == 1:
        return [{"k": "v" * 5000}, blob[1]]  # metadata too large
    if r == 2:
        return [blob[0], [["e", deep(rng.randint(9, 40), ["v", "t", []]), None, {}]]]  # values too deep
    if r == 3:
        value: object = ["v", "t", []]
        for _ in range(rng.randint(9, 20)):
            value = ["v", "t", [value]]
        return [blob[0], [["e", value, None, {}]]]
    if r == 4:
        return [blob[0]]
    if r == 5:
        return [{1: 2}, blob[1]]
    return mutate_array(rng, [None, *blob], types_ok=False)[1:]


# ---------------------------------------------------------------------- oracles


def datagram_rejections(plain: bytes) -> int | None:
    """How many refusals (``decode_errors`` or ``stale_skipped``) a member counts for the
    datagram plaintext ``plain``, judged by the codec's own decoders; None if any message
    in it is valid (such a datagram is not garbage) or it holds no message at all."""
    try:
        messages = codec.unpack_datagram(plain)
    except DecodeError:
        return 1
    if not messages:
        return None
    for raw in messages:
        try:
            codec.decode_message(raw)
        except DecodeError:
            continue
        return None
    return len(messages)
