"""The standard measured run behind ``python -m simulations run``.

Timeline (virtual seconds; ``S`` = ``seconds``, ``W`` = ``idle_window``):

1. ``t = 0``: every member joins through the first one. The run advances
   until every member holds all N ALIVE (``join_converged_s``, measured from
   the start of the joins), or until ``S``. With ``warm=True`` there are no
   joins: :meth:`Simulation.bootstrap` gives every member one shared snapshot
   of all N ALIVE (no join traffic, O(N) memory), so ``join_converged_s`` is 0.
2. One second later, ``registrations`` services are registered, one every
   ``registration_gap`` seconds, each by a random member that will not be
   crashed. Each is timed from the register call until every live member holds
   it in its view (``registration_spread_s``).
3. ``crash_delay`` seconds after the last registration, ``crash`` random members
   (never the first, the join seed) are crashed, one every ``crash_gap``
   seconds, and their detection is timed (``detection_s``).
4. Nothing more is injected. The last ``W`` seconds, ``[S - W, S]``, are the
   idle window: its traffic is reported separately (``idle``), flagged
   ``quiet`` if nothing was injected in it and every registration and crash
   detection had completed before it began.
5. At ``S``: ``views_equal`` compares ``records()`` (every stored record,
   tombstones and hidden ones included) of all live members;
   ``visible_views_equal`` compares what they would answer
   (``list_services`` plus ``get_service`` of each).

Traffic figures are messages (datagrams plus stream messages) and bytes
*sent*, divided by live-member-seconds (the integral of the number of live
members over the interval). False deaths are defined in :mod:`simulations.metrics`.
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from gossipreg.core.config import Config
from gossipreg.core.errors import NotFoundError
from gossipreg.core.model import Node, Service

from .engine import Simulation
from .metrics import Tracker, percentiles

__all__ = ["RunParams", "make_config", "max_rss_mb", "run", "service_for"]

PROFILES = ("lan", "wan", "local")


@dataclass(frozen=True)
class RunParams:
    """The parameters of one measured run (see the module docstring)."""

    nodes: int = 20
    seconds: float = 60.0
    seed: int = 0
    loss: float = 0.0
    duplicate: float = 0.0
    latency_ms: tuple[float, float] = (1.0, 5.0)
    crash: int = 0
    registrations: int = 10
    profile: str = "lan"
    eager_push: bool = True
    crypto: bool = True
    identities: bool = False
    """Member identities: every member signs its records and alives (certificates of one CA)."""
    idle_window: float | None = None
    """Seconds; ``None``: ``min(10, seconds / 4)``."""
    registration_gap: float = 0.1
    crash_delay: float = 5.0
    crash_gap: float = 1.0
    push_pull_interval: float | None = None
    """Override the profile's push-pull interval (seconds)."""
    warm: bool = False
    """Start from :meth:`Simulation.bootstrap` instead of N real joins."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Any other :class:`Config` fields, over the profile's values (``--set``)."""

    def window(self) -> float:
        """The idle window's length, seconds."""
        return min(10.0, self.seconds / 4) if self.idle_window is None else self.idle_window


def make_config(
    profile: str, overrides: Mapping[str, Any] | None = None, *, owner: str = "this run", **fixed: Any
) -> Config:
    """The named profile's :class:`Config` with ``overrides`` (``--set``) and the caller's ``fixed`` settings.

    Raises:
        ValueError: an unknown profile, an override of a setting the caller
            fixes itself (``owner`` names the caller in the message), or an
            invalid value (:class:`ConfigError`).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile: one of {', '.join(PROFILES)}, got {profile!r}")
    given = dict(overrides or {})
    clash = sorted(set(given) & set(fixed))
    if clash:
        raise ValueError(f"--set {', '.join(clash)}: {owner} sets it itself")
    factory = {"lan": Config.lan, "wan": Config.wan, "local": Config.local}[profile]
    return factory(**given, **fixed)


def service_for(i: int, owner: str) -> Service:
    """The ``i``-th registration of the standard run, owned by ``owner``."""
    return Service(
        f"svc-{i:04d}",
        "1.0.0",
        metadata={"index": str(i)},
        nodes=(Node(f"{owner}-{i}", f"10.200.{i // 256 % 256}.{i % 256}:8080"),),
    )


def _traffic(sim: Simulation) -> tuple[int, int]:
    st = sim.stats
    return st["datagrams"] + st["stream_messages"], st["datagram_bytes"] + st["stream_bytes"]


def _views(sim: Simulation) -> tuple[bool, bool]:
    live = sim.live_members()
    if not live:
        return True, True
    first = live[0].core.catalog.records()
    records_equal = all(m.core.catalog.records() == first for m in live[1:])

    def visible(m: Any) -> list[Service]:
        out = []
        for name in sorted({s.name for s in m.core.list_services()}):
            with contextlib.suppress(NotFoundError):  # list_services names visible ones only
                out.extend(m.core.get_service(name))
        return out

    ref = visible(live[0])
    return records_equal, all(visible(m) == ref for m in live[1:])


def run(p: RunParams) -> dict[str, Any]:
    """Run the standard scenario and return the report (JSON-ready)."""
    if p.nodes < 2:
        raise ValueError("nodes: at least 2")
    if p.crash > p.nodes - 2:
        raise ValueError("crash: at most nodes - 2 (the join seed and one observer stay up)")
    wall0 = time.perf_counter()
    own = {} if p.push_pull_interval is None else {"push_pull_interval": p.push_pull_interval}
    config = make_config(p.profile, p.overrides, owner="this run (see --no-eager-push, --push-pull-interval)",
                         eager_push=p.eager_push, **own)
    tracker = Tracker(p.nodes)
    lo, hi = p.latency_ms
    sim = Simulation(
        p.nodes,
        seed=p.seed,
        config=config,
        latency=(lo / 1000, hi / 1000),
        loss=p.loss,
        duplicate=p.duplicate,
        crypto=p.crypto,
        on_event=tracker.on_event,
        identities=p.identities,
    )
    tracker.attach(sim)
    rng = random.Random(f"scenario/{p.seed}")
    names = list(sim.members)
    end = float(p.seconds)
    idle_start = max(0.0, end - p.window())

    if p.warm:
        sim.bootstrap()
        tracker.warm_start(names)
    else:
        sim.join_all()
        sim.run_while(lambda: tracker.join_converged_at is None, limit=end, step=0.05)

    last_injection = 0.0
    victims: list[str] = []
    if tracker.join_converged_at is not None:
        victims = rng.sample(names[1:], p.crash)
        owners = [n for n in names if n not in victims]
        t = sim.now + 1.0
        for i in range(p.registrations):
            owner = rng.choice(owners)

            def register(i: int = i, owner: str = owner) -> None:
                for rec in sim.register(owner, service_for(i, owner)):
                    tracker.watch_spread(rec.key)

            sim.schedule(t, register)
            last_injection = t
            t += p.registration_gap
        t = last_injection + p.crash_delay if p.registrations else t
        for v in victims:

            def crash(v: str = v) -> None:
                tracker.crash(v)

            sim.schedule(t, crash)
            last_injection = t
            t += p.crash_gap

    sim.run_until(idle_start)
    msgs0, bytes0 = _traffic(sim)
    stats0 = dict(sim.stats)
    ms0 = tracker.live_member_seconds()
    quiet = (
        tracker.join_converged_at is not None
        and last_injection < idle_start
        and tracker.pending_spreads() == 0
        and tracker.pending_crashes() == 0
        and len(tracker.crashes) == len(victims)
        and len(tracker.spreads) == p.registrations
    )
    sim.run_until(end)
    msgs1, bytes1 = _traffic(sim)
    ms1 = tracker.live_member_seconds()
    records_equal, visible_equal = _views(sim)

    def rate(x: float, member_seconds: float) -> float | None:
        return round(x / member_seconds, 3) if member_seconds > 0 else None

    crashes = [c.as_dict() for c in tracker.crashes]
    joined = tracker.join_converged_at
    report: dict[str, Any] = {
        "params": {**asdict(p), "latency_ms": list(p.latency_ms), "idle_window": p.window()},
        "join_converged_s": None if joined is None else round(joined, 6),
        "registration_spread_s": percentiles(tracker.spread_times()),
        "detection_s": {
            "crashes": crashes,
            "first": percentiles(c.first_seconds() for c in tracker.crashes),
            "all": percentiles(c.all_seconds() for c in tracker.crashes),
        },
        "false_dead": tracker.false_dead,
        "false_dead_events": tracker.false_dead_events,
        "suspicions": tracker.suspicions,
        "false_suspicions": tracker.false_suspicions,
        "views_equal": records_equal,
        "visible_views_equal": visible_equal,
        "messages_per_node_per_s": rate(msgs1, ms1),
        "bytes_per_node_per_s": rate(bytes1, ms1),
        "idle": {
            "window_s": [round(idle_start, 6), end],
            "quiet": quiet,
            "messages_per_node_per_s": rate(msgs1 - msgs0, ms1 - ms0),
            "bytes_per_node_per_s": rate(bytes1 - bytes0, ms1 - ms0),
            # The split: streams are push-pulls, rare (scaled with n) but large, so a short
            # window may or may not contain one.
            "datagrams_per_node_per_s": rate(sim.stats["datagrams"] - stats0["datagrams"], ms1 - ms0),
            "datagram_bytes_per_node_per_s": rate(
                sim.stats["datagram_bytes"] - stats0["datagram_bytes"], ms1 - ms0
            ),
            "stream_messages": sim.stats["stream_messages"] - stats0["stream_messages"],
            "stream_bytes": sim.stats["stream_bytes"] - stats0["stream_bytes"],
        },
        "live_members": len(tracker.live),
        "network": dict(sim.stats),
        "virtual_seconds": round(sim.now, 6),
        "trace_hash": sim.trace_hash,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
        "max_rss_mb": max_rss_mb(),
    }
    return report


def max_rss_mb() -> float | None:
    """This process's peak resident set size so far, MiB (``None`` where the platform
    does not report it). It covers everything the process ran before, too."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
