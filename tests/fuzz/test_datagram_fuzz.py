"""Seeded fuzzing of ``NodeCore.receive_datagram`` (issue 13).

A four-member keyed cluster (``tests.core.node_helpers.CoreNetwork``, deterministic
nonces, each member with a registration) converges; then one member
(:data:`~tests.fuzz.fuzzkit.TARGET`) is fed hostile datagrams, family by
family, each family drawn from its own ``random.Random(f"{seed}/{family}")``.
The seed is 13 unless ``GOSSIPREG_FUZZ_SEED`` says otherwise; it is in every
test id and every failure message. The default suite feeds 10,000 datagrams in
all (shares below); the same tests marked ``slow`` feed 1,000,000
(``scripts/test --all``).

Families:

* ``random_bytes``: random bytes, 0..1500 long (3 % up to 65535), from a
  member's address or a stranger's;
* ``mutated_sealed``: real sealed datagrams captured on the wire, truncated,
  with one or many bits flipped, bytes set, cut, appended, rotated;
* ``forged``: real datagram plaintexts sealed with a wrong key or under a
  wrong label (none, a near miss, the stream label), sent as plaintext to the
  keyed member, and real sealed datagrams sent to a member of an *insecure*
  cluster;
* ``authenticated_garbage``: sealed with the right key and label, but the
  content is random msgpack structures, real messages with mutated fields
  (wrong types, wrong arity, ints out of range or negative, too-long
  strings, deep nesting, unknown types, bad addresses, records with broken
  nodes, metadata or service-field blobs) or malformed plaintext (bad version
  byte, truncated or trailing msgpack, more than 1024 messages, deep nesting).
  Every such datagram is checked with the codec's own decoders to contain no
  valid message (a valid one is redrawn), so it too must change nothing.

Assertions, per input: ``receive_datagram`` does not raise, and the member
sends nothing and queues no event (beyond a notice of refused traffic where
the node core gives one). Per batch of inputs: the member table (states,
incarnations), graveyard, catalog records and root, views and next deadline
are unchanged, only the counters of refused input moved, and they moved by
exactly the number of inputs of each kind (``auth_failures``,
``plaintext_rejected``, ``sealed_received_while_insecure``, and for
authenticated garbage ``decode_errors`` plus ``stale_skipped``: one per bad
message, or one for the whole datagram when it does not unpack). A batch that
fails is replayed input by input on a fresh cluster to name the culprit.
Afterwards the member still holds every member alive and a catalog that
exports cleanly, and a registration made by it and one made by another member
reach every member.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gossipreg.core import codec
from gossipreg.core.codec import Nack, PingReq, Tree
from gossipreg.core.crypto import Keyring
from gossipreg.core.membership import Address, Alive, Dead, Leave, Suspect
from gossipreg.testing import CoreNetwork

from ..core.node_helpers import KEY, OTHER_KEY
from .fuzzkit import (
    CONFIG,
    NAMES,
    REPRO,
    SIZES,
    STRANGER,
    TARGET,
    Notices,
    assert_healthy,
    assert_spreads,
    build_cluster,
    datagram_rejections,
    deep_bytes,
    describe_change,
    family_rng,
    keyring_for,
    mutate_array,
    mutate_bytes,
    pack,
    random_message_like,
    random_obj,
    show,
    splice_deep,
    split,
    state_of,
    stats_delta,
)

#: Shares of the inputs per family (of 100).
SHARES = {"random_bytes": 20, "mutated_sealed": 25, "forged": 20, "authenticated_garbage": 35}
#: Inputs between two comparisons of the member's whole state.
BATCH = 250
PROTOCOL = bytes([codec.PROTOCOL_VERSION])
LABEL_BYTES = CONFIG.label_bytes

#: Counters an unauthenticated datagram may move.
REFUSED = ("auth_failures", "plaintext_rejected", "sealed_received_while_insecure", "decode_errors")
TRAFFIC = ("datagrams_received", "bytes_received")
#: Besides those, what an authenticated but invalid datagram may move: the stale-update
#: fast path judges some (e.g. an alive of a known member at its incarnation but with a
#: broken field) stale before decoding, counted in these.
STALE = ("stale_skipped", "members_stale", "members_accusations_out_of_range", "catalog_stale",
         "catalog_duplicates")


@dataclass
class Input:
    data: bytes
    source: Address
    #: The counter (or "refusals": decode_errors + stale_skipped) and by how much it must move.
    counter: str
    count: int = 1


@dataclass
class Corpus:
    """Real traffic of the converged cluster."""

    sealed: list[bytes] = field(default_factory=list)
    plain: list[bytes] = field(default_factory=list)
    messages: list[list[Any]] = field(default_factory=list)


def capture(net: CoreNetwork) -> Corpus:
    ring = Keyring(KEY)
    corpus = Corpus()
    for d in net.log:
        corpus.sealed.append(d.data)
        plain = ring.open(d.data, LABEL_BYTES)
        corpus.plain.append(plain)
        corpus.messages.extend(codec.unpack_datagram(plain))
    # The probe protocol's rarer messages and the accusations, built by the codec itself.
    addr = net.cores["m2"].address
    for msg in (
        PingReq(7, "m3", net.cores["m3"].address, "m2", addr, True),
        Nack(7, "m2"),
        Suspect("m3", 0, "m2"),
        Dead("m3", 0, "m2"),
        Leave("m3", 0),
        Tree("m0", 1),
    ):
        corpus.messages.append(codec.unpack(codec.encode_message(msg)))
    kinds = {m[0] for m in corpus.messages}
    assert kinds == set(range(10)), f"the corpus lacks message types {set(range(10)) - kinds}"
    return corpus


def sources(net: CoreNetwork) -> list[Address]:
    return [*(c.address for c in net.cores.values() if c.name != TARGET), STRANGER]


def expected_refusal(data: bytes) -> str:
    """What a keyed member counts for a datagram that does not authenticate."""
    return "plaintext_rejected" if data[:1] == PROTOCOL else "auth_failures"


# ---------------------------------------------------------------------- the runner


def feed(
    net: CoreNetwork,
    target: str,
    family: str,
    inputs: Iterator[Input],
    *,
    allowed: tuple[str, ...],
    rebuild: Callable[[], CoreNetwork],
) -> dict[str, int]:
    """Feed ``inputs`` to ``target`` and check them (module docstring); returns the counters'
    total movement."""
    core = net.cores[target]
    now = net.now
    notices = Notices()
    total_before = core.statistics()
    batch: list[Input] = []
    before = state_of(core)
    stats = core.statistics()
    index = 0

    def check_batch() -> None:
        nonlocal before, stats
        after = state_of(core)
        if after != before:
            first = index - len(batch)
            raise AssertionError(
                f"{family}: inputs #{first}..#{index - 1} changed {describe_change(before, after)}"
                f" ({REPRO}); {pinpoint(rebuild, target, batch)}"
            )
        now_stats = core.statistics()
        delta = stats_delta(stats, now_stats)
        unexpected = set(delta) - set(allowed) - set(TRAFFIC)
        assert not unexpected, f"{family}: batch ending at #{index - 1} moved {delta} ({REPRO})"
        want: dict[str, int] = {}
        for item in batch:
            want[item.counter] = want.get(item.counter, 0) + item.count
        got = {k: delta.get(k, 0) for k in want if k != "refusals"}
        if "refusals" in want:
            got["refusals"] = delta.get("decode_errors", 0) + delta.get("stale_skipped", 0)
        assert got == want, (
            f"{family}: batch ending at #{index - 1}: counters {delta}, expected {want} ({REPRO})"
        )
        assert delta.get("datagrams_received", 0) == len(batch)
        assert delta.get("bytes_received", 0) == sum(len(i.data) for i in batch)
        before, stats = after, now_stats
        batch.clear()

    for item in inputs:
        try:
            core.receive_datagram(item.data, item.source, now)
        except Exception as exc:
            raise AssertionError(
                f"{family} #{index}: receive_datagram raised {exc!r} ({REPRO}); "
                f"input from {item.source}: {show(item.data, 4000)}"
            ) from exc
        out = core.take_outbox()
        events = notices.sort(core.take_events())
        if out or events:
            raise AssertionError(
                f"{family} #{index}: a refused datagram produced {[type(o).__name__ for o in out]} "
                f"{events} ({REPRO}); input from {item.source}: {show(item.data, 4000)}"
            )
        batch.append(item)
        index += 1
        if len(batch) == BATCH:
            check_batch()
    if batch:
        check_batch()
    notices.assert_rate_limited(family)
    assert_healthy(core, net.cores, family, now)
    return stats_delta(total_before, core.statistics())


def pinpoint(rebuild: Callable[[], CoreNetwork], target: str, batch: list[Input]) -> str:
    """Replay ``batch`` one input at a time on a fresh cluster: the first that changes the
    target's state, as a reproduction."""
    net = rebuild()
    core = net.cores[target]
    for i, item in enumerate(batch):
        before = state_of(core)
        core.receive_datagram(item.data, item.source, net.now)
        after = state_of(core)
        if after != before:
            return (
                f"on a fresh cluster, input {i} of the batch alone changes {describe_change(before, after)}: "
                f"receive_datagram(bytes.fromhex({item.data.hex()!r}), {tuple(item.source)}, now)"
            )
    return "not reproduced input by input on a fresh cluster"


# ---------------------------------------------------------------------- families


@pytest.mark.parametrize("total", SIZES)
def test_random_bytes(total: int) -> None:
    n = split(total, SHARES)["random_bytes"]
    net = build_cluster()
    rng = family_rng("random_bytes")
    froms = sources(net)

    def inputs() -> Iterator[Input]:
        for _ in range(n):
            size = rng.randint(0, 1500) if rng.random() < 0.97 else rng.randint(1501, 65535)
            data = rng.randbytes(size)
            if size and rng.random() < 0.1:
                # Look like one of ours: the sealed or the plaintext version byte.
                data = rng.choice((b"\x01", PROTOCOL)) + data[1:]
            yield Input(data, rng.choice(froms), expected_refusal(data))

    moved = feed(net, TARGET, "random_bytes", inputs(), allowed=REFUSED, rebuild=build_cluster)
    assert moved.get("auth_failures", 0) + moved.get("plaintext_rejected", 0) == n
    assert moved.get("auth_failures", 0) > n // 2
    assert moved.get("plaintext_rejected", 0) > 0
    assert_spreads(net, TARGET, "random_bytes")


@pytest.mark.parametrize("total", SIZES)
def test_mutated_sealed_datagrams(total: int) -> None:
    n = split(total, SHARES)["mutated_sealed"]
    net = build_cluster()
    corpus = capture(net)
    rng = family_rng("mutated_sealed")
    froms = sources(net)

    def inputs() -> Iterator[Input]:
        for _ in range(n):
            data = original = rng.choice(corpus.sealed)
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                data = mutate_bytes(rng, data)
            if data == original:
                data = data[:-1]
            yield Input(data, rng.choice(froms), expected_refusal(data))

    moved = feed(net, TARGET, "mutated_sealed", inputs(), allowed=REFUSED, rebuild=build_cluster)
    assert moved.get("auth_failures", 0) + moved.get("plaintext_rejected", 0) == n
    assert moved.get("auth_failures", 0) > n * 9 // 10
    assert_spreads(net, TARGET, "mutated_sealed")


def _insecure_cluster() -> CoreNetwork:
    return build_cluster(insecure=True)


@pytest.mark.parametrize("total", SIZES)
def test_forged_datagrams(total: int) -> None:
    n = split(total, SHARES)["forged"]
    parts = split(n, {"wrong_key": 1, "wrong_label": 1, "plaintext": 1, "sealed_to_insecure": 1})
    net = build_cluster()
    corpus = capture(net)
    rng = family_rng("forged")
    froms = sources(net)
    other = Keyring(OTHER_KEY)
    right = keyring_for("forger")
    labels = (b"", LABEL_BYTES[:-1], LABEL_BYTES + b"\x00", LABEL_BYTES + b"\x00gossipreg-stream",
              LABEL_BYTES.upper(), b"other-cluster")

    def keyed() -> Iterator[Input]:
        for _ in range(parts["wrong_key"]):
            plain = rng.choice(corpus.plain)
            ring = other if rng.random() < 0.5 else Keyring(rng.randbytes(rng.choice((16, 24, 32))))
            yield Input(ring.seal(plain, LABEL_BYTES), rng.choice(froms), "auth_failures")
        for _ in range(parts["wrong_label"]):
            plain = rng.choice(corpus.plain)
            label = rng.choice(labels) if rng.random() < 0.8 else rng.randbytes(rng.randint(1, 40))
            if label == LABEL_BYTES:
                label += b"!"
            yield Input(right.seal(plain, label), rng.choice(froms), "auth_failures")
        for _ in range(parts["plaintext"]):
            plain = rng.choice(corpus.plain)
            if rng.random() < 0.3:
                plain = PROTOCOL + mutate_bytes(rng, plain[1:])
            yield Input(plain, rng.choice(froms), "plaintext_rejected")

    moved = feed(net, TARGET, "forged", keyed(), allowed=REFUSED, rebuild=build_cluster)
    assert moved.get("auth_failures", 0) == parts["wrong_key"] + parts["wrong_label"]
    assert moved.get("plaintext_rejected", 0) == parts["plaintext"]
    assert_spreads(net, TARGET, "forged")

    insecure = _insecure_cluster()
    insecure_froms = sources(insecure)

    def sealed() -> Iterator[Input]:
        for _ in range(parts["sealed_to_insecure"]):
            data = rng.choice(corpus.sealed)
            if rng.random() < 0.3:
                data = b"\x01" + mutate_bytes(rng, data[1:])
            yield Input(data, rng.choice(insecure_froms), "sealed_received_while_insecure")

    moved = feed(insecure, TARGET, "forged/sealed_to_insecure", sealed(), allowed=REFUSED,
                 rebuild=_insecure_cluster)
    assert moved.get("sealed_received_while_insecure", 0) == parts["sealed_to_insecure"]
    assert_spreads(insecure, TARGET, "forged/sealed_to_insecure")


# -- authenticated garbage


def _malformed_plaintext(rng: random.Random, corpus: Corpus) -> bytes:
    real = rng.choice(corpus.plain)
    kind = rng.randrange(14)
    if kind == 0:
        return bytes([rng.choice([b for b in range(256) if b != codec.PROTOCOL_VERSION])]) + real[1:]
    if kind == 1:
        return rng.choice((b"", PROTOCOL))
    if kind == 2:
        return real[: rng.randrange(2, len(real))]
    if kind == 3:
        return real + rng.choice((b"\xc0", b"\x90", rng.randbytes(rng.randint(1, 20))))
    if kind == 4:
        return PROTOCOL + rng.randbytes(rng.randint(1, 300))
    if kind == 5:
        return PROTOCOL + deep_bytes(rng.choice((100, 1000, 5000, 20000)))
    if kind == 6:
        return PROTOCOL + b"\x91" + deep_bytes(rng.randint(2, 3000))
    if kind == 7:
        filler = rng.choice(([99], None, [codec.ACK, 1, "m2"]))
        return PROTOCOL + pack([filler] * rng.choice((1025, 1100, 4000)))
    if kind == 8:
        # Headers claiming 4 GiB arrays, strings, bins and maps; invalid UTF-8.
        return PROTOCOL + rng.choice((b"\xdd\xff\xff\xff\xff", b"\x91\xdb\xff\xff\xff\xff",
                                      b"\x91\xc6\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
                                      b"\x91\x94\x04\xa2\xff\xfe"))
    if kind == 9:
        return PROTOCOL + pack([[codec.ALIVE, {rng.randint(0, 9): "x"}, 1]])
    if kind == 10:
        obj = random_obj(rng)
        return PROTOCOL + pack(obj if not isinstance(obj, list) else {"a": obj})
    if kind == 11:
        # An ext type, a timestamp, a float as the only message.
        return PROTOCOL + b"\x91" + rng.choice((b"\xd4\x01\x00", b"\xd6\xff" + bytes(4), b"\xcb" + bytes(8)))
    if kind == 12:
        return PROTOCOL + b"\xdc\x00\x02" + pack([99]) + pack([codec.NACK])
    # A real datagram whose array header claims more messages than follow.
    return PROTOCOL + bytes([real[1] + 1 if real[1] < 0x9F else 0x9F]) + real[2:]


@pytest.mark.parametrize("total", SIZES)
def test_authenticated_garbage(total: int) -> None:
    n = split(total, SHARES)["authenticated_garbage"]
    parts = split(n, {"random_structures": 35, "mutated_messages": 50, "malformed_plaintext": 15})
    net = build_cluster()
    corpus = capture(net)
    rng = family_rng("authenticated_garbage")
    froms = sources(net)
    ring = keyring_for("forger")
    types = list(range(10))
    drawn = {"valid redrawn": 0}

    def garbage(make: Callable[[], bytes]) -> tuple[bytes, int]:
        while True:
            plain = make()
            count = datagram_rejections(plain)
            if count is not None:
                return plain, count
            drawn["valid redrawn"] += 1

    def random_structure() -> bytes:
        if rng.random() < 0.15:
            return PROTOCOL + pack(random_obj(rng))
        return PROTOCOL + pack([random_message_like(rng, types) for _ in range(rng.randint(1, 4))])

    def mutated_messages() -> bytes:
        if rng.random() < 0.03:
            # One field nested up to past msgpack's limit of 1024 levels.
            return PROTOCOL + b"\x91" + splice_deep(rng, rng.choice(corpus.messages), rng.randint(2, 1100))
        msgs = [mutate_array(rng, rng.choice(corpus.messages)) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
        return PROTOCOL + pack(msgs)

    def inputs() -> Iterator[Input]:
        for count, make in (
            (parts["random_structures"], random_structure),
            (parts["mutated_messages"], mutated_messages),
            (parts["malformed_plaintext"], lambda: _malformed_plaintext(rng, corpus)),
        ):
            for _ in range(count):
                plain, refusals = garbage(make)
                yield Input(ring.seal(plain, LABEL_BYTES), rng.choice(froms), "refusals", refusals)

    moved = feed(net, TARGET, "authenticated_garbage", inputs(), allowed=REFUSED + STALE,
                 rebuild=build_cluster)
    print(f"authenticated_garbage: {n} inputs, counters {moved}, {drawn}")
    assert moved.get("decode_errors", 0) >= n, moved
    assert not any(moved.get(k) for k in ("auth_failures", "plaintext_rejected")), moved
    assert_spreads(net, TARGET, "authenticated_garbage")


def test_the_families_add_up_to_the_issue_sizes() -> None:
    for total in (10_000, 1_000_000):
        assert sum(split(total, SHARES).values()) == total
    assert TARGET in NAMES


def test_the_runner_catches_a_change_and_names_the_input() -> None:
    """The runner's own check: a *valid* datagram slipped in among refused ones (an alive
    of a new member, sealed with the right key) fails the batch, and the replay on a fresh
    cluster names it."""
    net = build_cluster()
    corpus = capture(net)
    alive = codec.encode_message(Alive("intruder", 0, Address("10.7.7.7", 7946)))
    valid = keyring_for("forger").seal(codec.pack_datagram([alive]), LABEL_BYTES)
    mutated = [mutate_bytes(random.Random(i), corpus.sealed[0], "flip1") for i in range(8)]
    junk = [Input(data, STRANGER, expected_refusal(data)) for data in mutated]
    inputs = [*junk[:4], Input(valid, STRANGER, "auth_failures"), *junk[4:]]
    with pytest.raises(AssertionError, match=r"self-check #4: a refused datagram produced \['SendDatagram'"):
        feed(net, TARGET, "self-check", iter(inputs), allowed=REFUSED, rebuild=build_cluster)
    assert pinpoint(build_cluster, TARGET, inputs).startswith(
        "on a fresh cluster, input 4 of the batch alone changes members, members fingerprint"
    )


# ---------------------------------------------------------------------- regressions (found by this suite)


@pytest.mark.parametrize("insecure", [False, True], ids=["keyed-authenticated", "insecure-unauthenticated"])
def test_a_message_type_nested_1000_deep_is_a_decode_error(insecure: bool) -> None:
    """Regression (found by this suite, fixed in 2e340a2): a message whose type field is an
    array nested ~1000 deep (past the ``repr`` recursion limit, within msgpack's 1024 levels)
    made ``decode_message`` raise RecursionError from ``repr(kind)`` in its error message, and
    it escaped ``receive_datagram``; to an insecure member anyone could send it."""
    net = build_cluster(insecure=insecure)
    core = net.cores[TARGET]
    # 0x47, an array of one message, the message's type nested 1010 arrays deep.
    plain = PROTOCOL + b"\x91" + b"\x91" * 1010 + b"\xc0"
    data = plain if insecure else keyring_for("forger").seal(plain, LABEL_BYTES)
    errors = core.statistics()["decode_errors"]
    before = state_of(core)
    core.receive_datagram(data, STRANGER, net.now)
    assert core.statistics()["decode_errors"] == errors + 1
    assert state_of(core) == before
