"""The named scenarios of ``python -m simulations <scenario>``.

Every scenario builds clusters of real :class:`~gossipreg.core.node.NodeCore`
instances on the simulator (:mod:`simulations.engine`), injects what it
studies at exact virtual times, and returns a JSON-ready report. Figures are
virtual seconds unless named ``wall_*``.

Warm start
    Unless ``warm=False``, members start as a converged cluster:
    :meth:`Simulation.bootstrap <simulations.engine.Simulation.bootstrap>`
    feeds every member's table the others' ALIVE records through the public
    core API (the call a push/pull makes) instead of running N joins, which
    cost O(N^2) decoded gossip messages. Every report says which in
    ``params.start``. Measurements begin no earlier than ``settle`` seconds
    later (default 2 s), once each member's own start-up announcement has
    finished its retransmissions.

Traffic figures are messages (datagrams plus stream messages) and bytes *sent*
per live member per virtual second.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gossipreg.core.catalog import CatalogEvent, Key
from gossipreg.core.config import Config
from gossipreg.core.membership import EventKind, MemberEvent, MemberState
from gossipreg.core.model import Node, Service
from gossipreg.core.node import NodeEvent

from .audit import ViewAudit, visible_keys
from .engine import SimMember, Simulation
from .metrics import Tracker, percentiles
from .models import ideal_hops, serf_infected, serf_time_to, swim_first_detection
from .run_command import make_config

__all__ = [
    "SCENARIOS",
    "NullProgress",
    "Progress",
    "bandwidth",
    "churn",
    "convergence",
    "detection",
    "false_positives",
    "partition",
]

QUANTILES = (("p50", 0.5), ("p99", 0.99), ("p9999", 0.9999), ("p100", 1.0))


class Progress:
    """Progress reporting: virtual time of the current phase against wall time."""

    def phase(self, label: str, total: float) -> None:
        """A new phase of ``total`` virtual seconds starts."""

    def update(self, virtual: float) -> None:
        """``virtual`` seconds of the current phase are done."""

    def close(self) -> None:
        """Everything is done."""


NullProgress = Progress


@dataclass
class _Cluster:
    sim: Simulation
    tracker: Tracker
    listeners: list[Callable[[Simulation, SimMember, NodeEvent], None]] = field(default_factory=list)
    start: float = 0.0
    progress: Progress = field(default_factory=Progress)

    def run_until(self, t: float, *, stop: Callable[[], bool] | None = None, step: float = 0.5) -> None:
        """Advance to ``t`` in ``step`` slices, reporting progress; early if ``stop()`` holds."""
        sim = self.sim
        while sim.now < t:
            if stop is not None and stop():
                return
            sim.run_until(min(t, sim.now + step))
            self.progress.update(sim.now - self.start)


def _cluster(
    n: int,
    *,
    seed: int,
    config: Config,
    loss: float = 0.0,
    crypto: bool = True,
    latency_ms: tuple[float, float] = (1.0, 5.0),
    warm: bool = True,
    progress: Progress | None = None,
    label: str = "",
    total: float = 0.0,
) -> _Cluster:
    tracker = Tracker(n)
    c: _Cluster

    def on_event(sim: Simulation, member: SimMember, event: NodeEvent) -> None:
        tracker.on_event(sim, member, event)
        for listener in c.listeners:
            listener(sim, member, event)

    sim = Simulation(n, seed=seed, config=config, latency=(latency_ms[0] / 1000, latency_ms[1] / 1000),
                     loss=loss, crypto=crypto, on_event=on_event)
    c = _Cluster(sim, tracker, progress=progress or Progress())
    tracker.attach(sim)
    c.progress.phase(label, total)
    if warm:
        sim.bootstrap()
        tracker.warm_start([m.name for m in sim.alive_members()])
    else:
        sim.join_all()
        c.run_until(total, stop=lambda: tracker.join_converged_at is not None, step=0.05)
    return c


def _lan(overrides: Mapping[str, object] | None, **fixed: Any) -> Config:
    """The lan profile with ``--set`` overrides and the scenario's own ``fixed`` settings (see
    :func:`simulations.run_command.make_config`)."""
    return make_config("lan", overrides, owner="this scenario", **fixed)


def _profile(overrides: Mapping[str, object] | None) -> dict[str, Any]:
    """The report's record of the configuration: the profile and the ``--set`` overrides."""
    return {"profile": "lan", "config_overrides": dict(overrides or {})}


def _start(warm: bool) -> str:
    return ("warm: Simulation.bootstrap (every table adopts one shared snapshot of the ALIVE records)"
            if warm else "cold: every member joins through m0000 at t=0")


def _traffic(sim: Simulation) -> tuple[int, int]:
    st = sim.stats
    return st["datagrams"] + st["stream_messages"], st["datagram_bytes"] + st["stream_bytes"]


def _rate(x: float, member_seconds: float) -> float | None:
    return round(x / member_seconds, 3) if member_seconds > 0 else None


def _svc(name: str, node_id: str) -> Service:
    return Service(name, "1.0.0", nodes=(Node(node_id, "10.200.0.1:8080"),))


def _key(svc: Service) -> Key:
    return (svc.name, svc.version, svc.nodes[0].id)


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


def _median(xs: Sequence[float | None]) -> float | None:
    done = sorted(x for x in xs if x is not None)
    if not done or len(done) < len(xs):
        return None
    return done[(len(done) - 1) // 2]


def _max(xs: Sequence[float | None]) -> float | None:
    if not xs or any(x is None for x in xs):
        return None
    return max(x for x in xs if x is not None)


# ====================================================================== convergence


def convergence(
    *,
    nodes: Sequence[int] = (10, 100, 1000),
    losses: Sequence[float] = (0.0, 0.1, 0.5),
    eager: Sequence[bool] = (True, False),
    registrations: int = 3,
    gap: float = 1.0,
    limit: float = 40.0,
    seed: int = 0,
    crypto: bool = True,
    warm: bool = True,
    settle: float = 2.0,
    latency_ms: tuple[float, float] = (1.0, 5.0),
    overrides: Mapping[str, object] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Time until 50 %, 99 %, 99.99 % and 100 % of the members hold a new registration.

    For every size, eager-push setting and loss rate, a fresh cluster (LAN
    profile) registers ``registrations`` services, ``gap`` seconds apart, each
    by a different random member, ``settle`` seconds after the start. Each is
    timed from the register call until each fraction of the members holds it in
    its view (nearest rank: the ``ceil(q * N)``-th member to receive it; at
    N < 10,000, 99.99 % is every member). A run stops when all are everywhere or
    ``limit`` seconds after the last registration.
    """
    wall0 = time.perf_counter()
    prog = progress or Progress()
    configs = {push: _lan(overrides, eager_push=push) for push in eager}
    runs = [
        _convergence_one(n, configs[push], loss, registrations, gap, limit, seed, crypto, warm, settle,
                         latency_ms, prog)
        for n in nodes
        for push in eager
        for loss in losses
    ]
    base = _lan(overrides)
    return {
        "scenario": "convergence",
        "params": {
            "nodes": list(nodes), "losses": list(losses), "eager_push": list(eager),
            "registrations": registrations, "gap": gap, "limit": limit, "seed": seed, "crypto": crypto,
            "start": _start(warm), "settle": settle, "latency_ms": list(latency_ms), **_profile(overrides),
            "gossip_interval": base.gossip_interval, "gossip_nodes": base.gossip_nodes,
        },
        "runs": runs,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
    }


def _convergence_one(
    n: int, config: Config, loss: float, registrations: int, gap: float, limit: float, seed: int,
    crypto: bool, warm: bool, settle: float, latency_ms: tuple[float, float], prog: Progress,
) -> dict[str, Any]:
    wall0 = time.perf_counter()
    push = config.eager_push
    total = settle + gap * registrations + limit
    label = f"convergence n={n} eager={'on' if push else 'off'} loss={loss:g}"
    c = _cluster(n, seed=seed, config=config, loss=loss, crypto=crypto, warm=warm,
                 latency_ms=latency_ms, progress=prog, label=label, total=total)
    wall_boot = time.perf_counter() - wall0
    sim, tracker = c.sim, c.tracker
    arrivals: dict[Key, list[float]] = {}
    seen: dict[Key, set[str]] = {}

    def listen(sim: Simulation, member: SimMember, ev: NodeEvent) -> None:
        if isinstance(ev, CatalogEvent) and ev.action != "delete":
            key = ev.record.key
            got = seen.get(key)
            if got is not None and member.name not in got:
                got.add(member.name)
                arrivals[key].append(sim.now)

    c.listeners.append(listen)
    rng = random.Random(f"convergence/{seed}/{n}")
    owners = rng.sample(list(sim.members), min(registrations, n))
    since: dict[Key, float] = {}
    t0 = sim.now + settle if warm else sim.now + 1.0
    for i, owner in enumerate(owners):
        svc = _svc(f"conv-{i}", f"{owner}-conv-{i}")
        key = _key(svc)

        def register(svc: Service = svc, key: Key = key, owner: str = owner) -> None:
            seen[key] = set()
            arrivals[key] = []
            since[key] = sim.now
            sim.register(owner, svc)
            tracker.watch_spread(key)

        sim.schedule(t0 + i * gap, register)
    end = t0 + gap * len(owners) + limit
    c.run_until(t0 + gap * max(0, len(owners) - 1) + 0.01)
    c.run_until(end, stop=lambda: tracker.pending_spreads() == 0, step=0.05)
    n_live = len(tracker.live)
    per_reg = []
    for key, t in since.items():
        arr = sorted(arrivals[key])
        row: dict[str, Any] = {"key": list(key)}
        for name, q in QUANTILES:
            rank = math.ceil(q * n_live - 1e-9)
            row[name] = _r(arr[rank - 1] - t) if len(arr) >= rank else None
        row["holders"] = len(arr)
        # The curve: seconds after registering at which each 1/100 of the members held it.
        row["curve"] = [_r(a - t, 5) for a in arr[:: max(1, len(arr) // 100)]]
        per_reg.append(row)
    hops = ideal_hops(n, config.gossip_nodes)
    lo, hi = latency_ms
    mean_latency = (lo + hi) / 2000
    out: dict[str, Any] = {
        "nodes": n,
        "eager_push": push,
        "loss": loss,
        "registrations": per_reg,
        "median": {name: _r(_median([r[name] for r in per_reg])) for name, _ in QUANTILES},
        "max": {name: _r(_max([r[name] for r in per_reg])) for name, _ in QUANTILES},
        "complete": sum(1 for r in per_reg if r["p100"] is not None),
        "ideal_hops": hops,
        "ideal_s": round(hops * (mean_latency if push else config.gossip_interval + mean_latency), 6),
        "serf_model_s": {
            name: _r(serf_time_to(n, q, fanout=config.gossip_nodes, interval=config.gossip_interval,
                                  loss=loss))
            for name, q in QUANTILES
        },
        "trace_hash": sim.trace_hash,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
        "wall_bootstrap_seconds": round(wall_boot, 3),
    }
    return out




def serf_curve(n: int, loss: float, seconds: float, *, fanout: int = 3, interval: float = 0.2,
               points: int = 100) -> list[tuple[float, float]]:
    """``(seconds, fraction infected)`` of Serf's model, for plots."""
    return [
        (t, serf_infected(n, t / interval, fanout=fanout, loss=loss) / n)
        for t in (seconds * i / points for i in range(points + 1))
    ]


# ====================================================================== detection


def detection(
    *,
    nodes: int = 100,
    crashes: int = 10,
    gap: float = 3.0,
    limit: float = 120.0,
    loss: float = 0.0,
    seed: int = 0,
    crypto: bool = True,
    warm: bool = True,
    settle: float = 5.0,
    overrides: Mapping[str, object] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Distribution of the time from a crash to its first suspicion and to dead-by-all.

    ``crashes`` random members are crashed ``gap`` seconds apart, starting
    ``settle`` seconds in; the run goes on until every live member has declared
    every one dead, or ``limit`` seconds after the last crash.
    """
    if crashes > nodes - 2:
        raise ValueError("crashes: at most nodes - 2")
    wall0 = time.perf_counter()
    config = _lan(overrides)
    total = settle + gap * crashes + limit
    c = _cluster(nodes, seed=seed, config=config, loss=loss, crypto=crypto, warm=warm,
                 progress=progress, label=f"detection n={nodes}", total=total)
    sim, tracker = c.sim, c.tracker
    rng = random.Random(f"detection/{seed}")
    victims = rng.sample(list(sim.members)[1:], crashes)
    t0 = sim.now + settle
    for i, v in enumerate(victims):
        sim.schedule(t0 + i * gap, functools.partial(tracker.crash, v))
    c.run_until(t0 + gap * crashes)
    c.run_until(t0 + gap * crashes + limit, stop=lambda: tracker.pending_crashes() == 0)
    first = [x.first_seconds() for x in tracker.crashes]
    dead = [x.all_seconds() for x in tracker.crashes]
    lo, hi = config.suspicion_timeout_bounds(nodes)
    expect = swim_first_detection(config.probe_interval)
    return {
        "scenario": "detection",
        "params": {"nodes": nodes, "crashes": crashes, "gap": gap, "limit": limit, "loss": loss, "seed": seed,
                   "crypto": crypto, "start": _start(warm), "settle": settle, **_profile(overrides)},
        "crashes": [x.as_dict() for x in tracker.crashes],
        "first": {**percentiles(first), "mean": _r(_mean(first))},
        "all": {**percentiles(dead), "mean": _r(_mean(dead))},
        "expected": {
            "swim_first_s": round(expect, 6),
            "suspicion_timeout_bounds_s": [round(lo, 6), round(hi, 6)],
            "confirmations_wanted": config.suspicion_confirmations(nodes),
            "all_dead_range_s": [round(expect + lo, 6), round(expect + hi, 6)],
        },
        "false_dead": tracker.false_dead,
        "false_suspicions": tracker.false_suspicions,
        "trace_hash": sim.trace_hash,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
    }


def _mean(xs: Sequence[float | None]) -> float | None:
    done = [x for x in xs if x is not None]
    return sum(done) / len(done) if done else None


# ====================================================================== false positives

#: The Lifeguard variants: name -> (awareness_max_multiplier, suspicion_max_timeout_mult) or None
#: for the profile's values.
VARIANTS: dict[str, dict[str, int]] = {
    "lifeguard": {},
    "no-awareness": {"awareness_max_multiplier": 1},
    "no-dynamic-suspicion": {"suspicion_max_timeout_mult": 1},
    "no-lifeguard": {"awareness_max_multiplier": 1, "suspicion_max_timeout_mult": 1},
}


def false_positives(
    *,
    nodes: int = 200,
    seconds: float = 120.0,
    loss: float = 0.05,
    slow_fraction: float = 0.1,
    pause_every: float = 2.0,
    variants: Sequence[str] = tuple(VARIANTS),
    seed: int = 0,
    crypto: bool = True,
    warm: bool = True,
    overrides: Mapping[str, object] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The Lifeguard experiment: false suspicions and false deaths with slow members.

    ``slow_fraction`` of the members (chosen by the seed, never m0000) are
    *slow*: after an exponentially distributed gap of mean ``pause_every``
    seconds each is paused (:meth:`Simulation.pause`: no timers, inbound
    traffic waits) for a uniform random 0 to ``2 * probe_timeout`` seconds,
    again and again. Nobody crashes, so every suspicion and every death
    declaration is false. Variants (``VARIANTS``) switch Lifeguard's pieces
    off through the configuration:

    * ``no-awareness``: ``awareness_max_multiplier=1`` (LHA-Probe off: a member
      never slows its probing when its own acks go missing);
    * ``no-dynamic-suspicion``: ``suspicion_max_timeout_mult=1`` (LHA-Suspicion
      off: the suspicion timeout is fixed at the minimum,
      ``suspicion_mult * max(1, log10 n) * probe_interval``, as in SWIM and
      pre-Lifeguard memberlist; confirmations change nothing);
    * ``no-lifeguard``: both. Nacks and the buddy system (a probe of a suspect
      carries the suspicion) have no switch and stay on in every variant.
    """
    wall0 = time.perf_counter()
    prog = progress or Progress()
    for variant in variants:
        if variant not in VARIANTS:
            raise ValueError(f"variant: one of {', '.join(VARIANTS)}, got {variant!r}")
    configs = [(variant, _lan(overrides, **VARIANTS[variant])) for variant in variants]
    base = _lan(overrides)
    out = [
        _false_positives_one(variant, config, nodes, seconds, loss, slow_fraction, pause_every, seed,
                             crypto, warm, prog)
        for variant, config in configs
    ]
    return {
        "scenario": "false-positives",
        "params": {"nodes": nodes, "seconds": seconds, "loss": loss, "slow_fraction": slow_fraction,
                   "pause_every": pause_every, "pause_max": 2 * base.probe_timeout, "seed": seed,
                   "crypto": crypto, "start": _start(warm), **_profile(overrides)},
        "variants": out,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
    }


def _false_positives_one(
    variant: str, config: Config, nodes: int, seconds: float, loss: float, slow_fraction: float,
    pause_every: float, seed: int, crypto: bool, warm: bool, prog: Progress,
) -> dict[str, Any]:
    wall0 = time.perf_counter()
    c = _cluster(nodes, seed=seed, config=config, loss=loss, crypto=crypto, warm=warm, progress=prog,
                 label=f"false-positives {variant} n={nodes}", total=seconds)
    sim, tracker = c.sim, c.tracker
    rng = random.Random(f"false-positives/{seed}")
    slow = set(rng.sample(list(sim.members)[1:], round(slow_fraction * nodes)))
    pause_max = 2 * config.probe_timeout
    counts = {f"{kind}_{o}_about_{s}": 0 for kind in ("suspicions", "deaths")
              for o in ("slow", "healthy") for s in ("slow", "healthy")}

    episodes: dict[str, set[tuple[str, int]]] = {"suspicions": set(), "deaths": set()}

    def listen(sim: Simulation, member: SimMember, ev: NodeEvent) -> None:
        if isinstance(ev, MemberEvent) and ev.kind in (EventKind.SUSPECTED, EventKind.FAILED):
            kind = "suspicions" if ev.kind is EventKind.SUSPECTED else "deaths"
            o = "slow" if member.name in slow else "healthy"
            s = "slow" if ev.member.name in slow else "healthy"
            counts[f"{kind}_{o}_about_{s}"] += 1
            episodes[kind].add((ev.member.name, ev.member.incarnation))

    c.listeners.append(listen)
    pauses = [0]
    paused_s = [0.0]

    def schedule_pause(name: str, after: float) -> None:
        def go() -> None:
            d = rng.uniform(0, pause_max)
            pauses[0] += 1
            paused_s[0] += d
            sim.pause(name, d)
            schedule_pause(name, d + rng.expovariate(1 / pause_every))

        sim.schedule(sim.now + after, go)

    for name in sorted(slow):
        schedule_pause(name, rng.expovariate(1 / pause_every))
    c.run_until(seconds, step=1.0)
    return {
        "variant": variant,
        "config": VARIANTS[variant],
        "slow_members": len(slow),
        "pauses": pauses[0],
        "paused_seconds": round(paused_s[0], 3),
        # An episode: one member suspected (declared dead) at one incarnation, however many
        # members learnt of it; it ends when the member refutes with a higher incarnation.
        "false_suspicion_episodes": len(episodes["suspicions"]),
        "false_suspicion_episodes_about_healthy": sum(1 for s, _ in episodes["suspicions"] if s not in slow),
        "false_death_episodes": len(episodes["deaths"]),
        "false_death_episodes_about_healthy": sum(1 for s, _ in episodes["deaths"] if s not in slow),
        # Events: one per member that held the (false) suspicion or death.
        "false_suspicions": tracker.false_suspicions,
        "false_deaths": tracker.false_dead_events,
        "false_deaths_unrefuted_at_end": tracker.false_dead,
        "members_falsely_declared_dead": len({f.subject for f in tracker.false_deaths}),
        "breakdown": counts,
        "trace_hash": sim.trace_hash,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
    }


# ====================================================================== partition


def _views_identical(sim: Simulation, tracker: Tracker) -> bool:
    live = [sim.members[n] for n in sorted(tracker.live)]
    if not tracker.all_alive_everywhere():
        return False
    first = live[0].core.catalog.records()
    return all(m.core.catalog.records() == first for m in live[1:])


def partition(
    *,
    nodes: int = 40,
    split_seconds: float = 60.0,
    registrations: int = 10,
    changes: int = 3,
    limit: float = 300.0,
    loss: float = 0.0,
    seed: int = 0,
    crypto: bool = True,
    warm: bool = True,
    overrides: Mapping[str, object] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Split the cluster in two halves for ``split_seconds``, then heal.

    Before the split ``registrations`` services are registered (random owners)
    and spread everywhere. During it, each side registers ``changes`` new
    services and deregisters ``changes`` of its own old ones. After healing the
    run measures the time until every live member holds every other ALIVE and
    all catalogs (``records()``, tombstones included) are identical, then
    checks that every registration not deregistered is visible at every member
    (nothing lost) and that no deregistered one is visible anywhere (nothing
    resurrected).
    """
    wall0 = time.perf_counter()
    config = _lan(overrides)
    total = 5.0 + split_seconds + limit
    c = _cluster(nodes, seed=seed, config=config, loss=loss, crypto=crypto, warm=warm, progress=progress,
                 label=f"partition n={nodes}", total=total)
    sim, tracker = c.sim, c.tracker
    audit = ViewAudit(sim)
    audit.seed_views()
    c.listeners.append(audit.on_event)
    rng = random.Random(f"partition/{seed}")
    names = list(sim.members)
    half = set(rng.sample(names, nodes // 2))
    sides = [sorted(half), sorted(set(names) - half)]
    owned: dict[Key, tuple[str, Service]] = {}
    for i in range(registrations):
        owner = rng.choice(names)
        svc = _svc(f"part-{i}", f"{owner}-part-{i}")
        sim.register(owner, svc)
        owned[_key(svc)] = (owner, svc)
        tracker.watch_spread(_key(svc))
    c.run_until(sim.now + 5.0, stop=lambda: tracker.pending_spreads() == 0)
    spread_before = tracker.pending_spreads() == 0
    split_at = sim.now + 1.0
    c.run_until(split_at)
    sim.partition(sides[0], sides[1])
    deregistered: set[Key] = set()
    added: set[Key] = set()
    for s, side in enumerate(sides):
        mine = sorted(k for k, (o, _) in owned.items() if o in side and k not in deregistered)
        for j, key in enumerate(rng.sample(mine, min(changes, len(mine)))):
            owner, svc = owned[key]
            sim.schedule(split_at + 1.0 + j, functools.partial(sim.deregister, owner, svc))
            deregistered.add(key)
        for j in range(changes):
            owner = rng.choice(side)
            svc = _svc(f"part-{s}-new-{j}", f"{owner}-new-{j}")
            sim.schedule(split_at + 2.0 + j, functools.partial(sim.register, owner, svc))
            owned[_key(svc)] = (owner, svc)
            added.add(_key(svc))
    heal_at = split_at + split_seconds
    c.run_until(heal_at)
    during = {
        "members_dead_at_other_side": sum(
            1 for a in sides[0] for b in sides[1] if tracker.sees(a, b) in (MemberState.DEAD, None)
        ),
        "pairs_across": len(sides[0]) * len(sides[1]),
    }
    sim.heal()
    expect_visible = set(owned) - deregistered
    audit.expect(expect_visible, sim.now)
    members_at: list[float] = []

    def done() -> bool:
        if not members_at and tracker.all_alive_everywhere():
            members_at.append(sim.now - heal_at)
        return _views_identical(sim, tracker)

    c.run_until(heal_at + limit, stop=done, step=0.25)
    identical = _views_identical(sim, tracker)
    converged_after = sim.now - heal_at if identical else None
    # Run on a little, so an anomaly just after the views first agree is still seen.
    c.run_until(sim.now + 5.0, step=0.25)
    settled = {m.name: audit.settled_at(m.name) for m in sim.live_members()}
    view_times = [None if t is None else t - heal_at for t in settled.values()]
    lost: list[tuple[str, list[str]]] = []
    resurrected: list[tuple[str, list[str]]] = []
    for m in sim.live_members():
        vis = visible_keys(m)
        lost.extend((m.name, list(k)) for k in sorted(expect_visible - vis))
        resurrected.extend((m.name, list(k)) for k in sorted(vis & deregistered))
    return {
        "scenario": "partition",
        "params": {"nodes": nodes, "split_seconds": split_seconds, "registrations": registrations,
                   "changes": changes, "limit": limit, "loss": loss, "seed": seed, "crypto": crypto,
                   "start": _start(warm), **_profile(overrides), "sides": [len(s) for s in sides]},
        "spread_before_split": spread_before,
        "during_split": during,
        "views_identical": identical,
        "converged_after_heal_s": _r(converged_after),
        "membership_converged_after_heal_s": _r(members_at[0]) if members_at else None,
        "push_pull_interval_s": config.push_pull_interval_for(nodes),
        "reconnect_interval_s": config.reconnect_interval,
        "registrations_expected_visible": len(expect_visible),
        "registrations_deregistered": len(deregistered),
        "lost": lost,
        "resurrected": resurrected,
        "false_dead_at_end": tracker.false_dead,
        "anomalies": audit.report(),
        "views_settled_after_heal_s": {"max": _max(view_times), "median": _median(view_times),
                                       "unsettled": sum(1 for t in view_times if t is None),
                                       "per_member": {name: _r(None if t is None else t - heal_at)
                                                      for name, t in sorted(settled.items())}},
        "trace_hash": sim.trace_hash,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
    }


# ====================================================================== churn


def churn(
    *,
    nodes: int = 40,
    seconds: float = 120.0,
    event_every: float = 2.0,
    ttl: float = 30.0,
    renew_every: float = 10.0,
    abandon: float = 0.2,
    sample_every: float = 1.0,
    loss: float = 0.0,
    seed: int = 0,
    crypto: bool = True,
    warm: bool = True,
    overrides: Mapping[str, object] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Continuous membership churn and registration churn.

    Every ``event_every`` seconds one membership event happens, chosen at
    random among join (a new member through a random live one), graceful
    leave, crash, and restart of a crashed member, biased to keep about
    ``nodes`` members live. At the same pace a random live member registers a
    new service with lease ``ttl``; its owner renews it (registers it again)
    every ``renew_every`` seconds, except a fraction ``abandon`` of them, never
    renewed, which expire. A member that leaves or crashes stops renewing.

    Every ``sample_every`` seconds the *view divergence* is sampled: the
    fraction of live members whose view differs from the truth, where the
    truth is the set of live members (their ALIVE set, themselves included)
    and the set of keys each live owner itself holds visible (its own
    registrations not expired). Reported for membership, catalog, and either.
    """
    wall0 = time.perf_counter()
    config = _lan(overrides)
    c = _cluster(nodes, seed=seed, config=config, loss=loss, crypto=crypto, warm=warm, progress=progress,
                 label=f"churn n={nodes}", total=seconds)
    sim, tracker = c.sim, c.tracker
    audit = ViewAudit(sim)
    audit.seed_views()
    c.listeners.append(audit.on_event)
    rng = random.Random(f"churn/{seed}")
    owner_of: dict[Key, str] = {}
    crashed: list[str] = []
    counts = dict.fromkeys(("join", "leave", "crash", "restart", "register", "renew"), 0)
    next_id = [len(sim.members)]
    samples: list[dict[str, Any]] = []

    def live() -> list[str]:
        return sorted(tracker.live)

    def member_event() -> None:
        names = live()
        n = len(names)
        if n < nodes - 3:
            kinds = ["join", "restart"]
        elif n > nodes + 3:
            kinds = ["leave", "crash"]
        else:
            kinds = ["join", "leave", "crash", "restart"]
        kind = rng.choice(kinds)
        if kind == "restart" and not crashed:
            kind = "join"
        if kind in ("leave", "crash") and n <= 3:
            kind = "join"
        counts[kind] += 1
        if kind == "join":
            name = f"m{next_id[0]:04d}"
            next_id[0] += 1
            tracker.add(name, [rng.choice(names)])
        elif kind == "restart":
            name = crashed.pop(rng.randrange(len(crashed)))
            tracker.restart(name, [rng.choice(names)])
        else:
            victim = rng.choice([x for x in names if x != "m0000"])
            if kind == "leave":
                tracker.leave(victim)
            else:
                tracker.crash(victim)
                crashed.append(victim)

    def registration() -> None:
        owner = rng.choice(live())
        i = counts["register"]
        counts["register"] += 1
        svc = _svc(f"churn-{i}", f"{owner}-churn-{i}")
        gen = sim.members[owner].generation
        sim.register(owner, svc, ttl)
        owner_of[_key(svc)] = owner
        if rng.random() >= abandon:

            def renew(svc: Service = svc, owner: str = owner, gen: int = gen) -> None:
                m = sim.members[owner]
                if owner in tracker.live and m.generation == gen:
                    counts["renew"] += 1
                    sim.register(owner, svc, ttl)
                    sim.schedule(sim.now + renew_every, renew)

            sim.schedule(sim.now + renew_every, renew)

    def sample() -> None:
        names = live()
        truth_members = set(names)
        truth_keys: set[Key] = set()
        for o in names:
            truth_keys.update(k for k in tracker.observers[o].keys if owner_of.get(k) == o)
        dm = dc = both = 0
        for o in names:
            ob = tracker.observers[o]
            alive = tracker.alive_view(o) | {o}
            bad_m = alive != truth_members
            bad_c = ob.keys != truth_keys
            dm += bad_m
            dc += bad_c
            both += bad_m or bad_c
        n = len(names)
        samples.append({"t": round(sim.now, 3), "live": n, "membership": round(dm / n, 4),
                        "catalog": round(dc / n, 4), "either": round(both / n, 4)})

    t = sim.now + 2.0
    while t < seconds:
        sim.schedule(t, member_event)
        sim.schedule(t + event_every / 2, registration)
        t += event_every
    s = sim.now + 2.0
    while s <= seconds:
        sim.schedule(s, sample)
        s += sample_every
    ms0 = tracker.live_member_seconds()
    m0, b0 = _traffic(sim)
    c.run_until(seconds, step=1.0)
    m1, b1 = _traffic(sim)
    ms = tracker.live_member_seconds() - ms0
    either = [x["either"] for x in samples]
    return {
        "scenario": "churn",
        "params": {"nodes": nodes, "seconds": seconds, "event_every": event_every, "ttl": ttl,
                   "renew_every": renew_every, "abandon": abandon, "sample_every": sample_every,
                   "loss": loss, "seed": seed, "crypto": crypto, "start": _start(warm),
                   **_profile(overrides)},
        "events": counts,
        "divergence": {
            "mean": round(sum(either) / len(either), 4) if either else None,
            "max": max(either) if either else None,
            "mean_membership": round(sum(x["membership"] for x in samples) / len(samples), 4) if samples
            else None,
            "mean_catalog": round(sum(x["catalog"] for x in samples) / len(samples), 4) if samples else None,
        },
        "samples": samples,
        "messages_per_member_per_s": _rate(m1 - m0, ms),
        "bytes_per_member_per_s": _rate(b1 - b0, ms),
        "live_at_end": len(tracker.live),
        "false_dead_at_end": tracker.false_dead,
        "anomalies": audit.report(),
        "trace_hash": sim.trace_hash,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
    }


# ====================================================================== bandwidth


def bandwidth(
    *,
    nodes: Sequence[int] = (10, 50, 100, 200),
    rate: float = 10.0,
    seed: int = 0,
    crypto: bool = True,
    warm: bool = True,
    idle_window: float | None = None,
    load_window: float | None = None,
    renew_every: float | None = None,
    overrides: Mapping[str, object] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Messages and bytes per member per second against N, idle and under registration load.

    Each member starts its first push/pull 15 to 30 s after it is created,
    then one every ``P = push_pull_interval_for(N)`` seconds; so the idle
    window is ``[30, 30 + P]`` (every member starts exactly one push/pull in
    it: the steady state, not a start-up burst) and the load window the next
    ``P`` seconds, during which ``rate`` new registrations per second
    (cluster-wide, random owners, no lease) are made.

    ``idle_window`` and ``load_window`` (seconds) shorten either window for
    large N, where ``P`` grows (270 s at 10,000 members) and every
    registration costs each member a few datagrams: an idle window shorter
    than ``P`` holds the push/pulls of only some of the members (each row
    reports its windows and ``stream_messages``).

    With ``renew_every`` the load is renewals instead: ``rate * renew_every``
    services (random owners, a lease) are registered before the idle window,
    and in the load window each owner renews its service every
    ``renew_every`` seconds, ``rate`` renewals a second cluster-wide.
    """
    if renew_every is not None and renew_every <= 0:
        raise ValueError("renew_every must be positive")
    for w in (idle_window, load_window):
        if w is not None and w <= 0:
            raise ValueError("idle_window and load_window must be positive")
    wall0 = time.perf_counter()
    prog = progress or Progress()
    config = _lan(overrides)
    rows = [_bandwidth_one(n, config, rate, seed, crypto, warm, prog, idle_window, load_window, renew_every)
            for n in nodes]
    return {
        "scenario": "bandwidth",
        "params": {"nodes": list(nodes), "rate": rate, "seed": seed, "crypto": crypto, "start": _start(warm),
                   **_profile(overrides), "idle_window": idle_window, "load_window": load_window,
                   "renew_every": renew_every},
        "rows": rows,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
    }


def _bandwidth_one(
    n: int, config: Config, rate: float, seed: int, crypto: bool, warm: bool, prog: Progress,
    idle_window: float | None = None, load_window: float | None = None, renew_every: float | None = None,
) -> dict[str, Any]:
    wall0 = time.perf_counter()
    period = config.push_pull_interval_for(n)
    idle_len = period if idle_window is None else idle_window
    load_len = period if load_window is None else load_window
    start = 30.0
    idle_end = start + idle_len
    load_end = idle_end + load_len
    c = _cluster(n, seed=seed, config=config, crypto=crypto, warm=warm, progress=prog,
                 label=f"bandwidth n={n}", total=load_end)
    sim, tracker = c.sim, c.tracker
    rng = random.Random(f"bandwidth/{seed}/{n}")
    leased: list[tuple[str, Service]] = []
    if renew_every is not None:
        # Leased services, registered well before the idle window (their spread is over by then).
        names = list(sim.members)
        count = max(1, round(rate * renew_every))
        lease = min(config.tombstone_ttl / 2, 10 * (idle_len + load_len))
        for j in range(count):
            owner = rng.choice(names)
            svc = _svc(f"bw-lease-{j}", f"{owner}-bw-lease-{j}")
            leased.append((owner, svc))
            sim.schedule(1.0 + 10.0 * j / count, functools.partial(sim.register, owner, svc, lease))
    c.run_until(start, step=1.0)

    def checks() -> int:
        # Periodic anti-entropy exchanges begun (each starts with a summary check): read, so
        # the report can say how many members' push/pulls fall in a window.
        return sum(m.core.statistics()["push_pull_checks"] for m in sim.live_members())

    def window(end: float) -> dict[str, Any]:
        st0 = dict(sim.stats)
        ms0 = tracker.live_member_seconds()
        pp0 = checks()
        c.run_until(end, step=1.0)
        ms = tracker.live_member_seconds() - ms0
        d = {k: sim.stats[k] - st0[k] for k in st0}
        return {
            "push_pull_checks": checks() - pp0,
            "messages_per_member_per_s": _rate(d["datagrams"] + d["stream_messages"], ms),
            "bytes_per_member_per_s": _rate(d["datagram_bytes"] + d["stream_bytes"], ms),
            "datagrams_per_member_per_s": _rate(d["datagrams"], ms),
            "datagram_bytes_per_member_per_s": _rate(d["datagram_bytes"], ms),
            "stream_bytes_per_member_per_s": _rate(d["stream_bytes"], ms),
            "stream_messages": d["stream_messages"],
        }

    idle = window(idle_end)
    names = list(sim.members)
    t = sim.now
    i = 0
    while t < load_end:
        if leased:
            owner, svc = leased[i % len(leased)]  # a renewal: the same registration again
            sim.schedule(t, functools.partial(sim.register, owner, svc, lease))
        else:
            owner = rng.choice(names)
            svc = _svc(f"bw-{i}", f"{owner}-bw-{i}")
            sim.schedule(t, functools.partial(sim.register, owner, svc))
        i += 1
        t += 1.0 / rate
    load = window(load_end)
    return {
        "nodes": n,
        "push_pull_interval_s": period,
        "idle_window_s": [start, idle_end],
        "load_window_s": [idle_end, load_end],
        "registrations": 0 if leased else i,
        "renewals": i if leased else 0,
        "idle": idle,
        "load": load,
        "trace_hash": sim.trace_hash,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
    }


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "convergence": convergence,
    "detection": detection,
    "false-positives": false_positives,
    "partition": partition,
    "churn": churn,
    "bandwidth": bandwidth,
}
