"""Event-driven observation of a simulated cluster.

A :class:`Tracker` receives every node event of a :class:`~simulations.engine.Simulation`
(pass :meth:`Tracker.on_event` as its ``on_event``) and keeps, per member, what
that member currently believes: the state of every other member, and which
catalog keys are in its view. Convergence questions ("does every live member
see X alive?", "does every live member hold key K?") are then answered from
indexes maintained incrementally, and the first moment each becomes true is
recorded exactly, at the virtual time of the event that made it true,
without scanning N members' tables on every step.

Crashes, restarts and leaves must go through :meth:`Tracker.crash`,
:meth:`Tracker.restart` and :meth:`Tracker.leave` (which call the simulation),
so the tracker knows which processes are live.

Warm start
    :meth:`Tracker.warm_start` makes the named members (their current
    processes) hold every other named member ALIVE, with the same results as
    the N*(N-1) JOINED events it stands for, but in O(N) time and memory: the
    named set is a *baseline*. Each observer stores only its *explicit* states,
    those that differ from the baseline (a reaped or unknown subject the
    baseline would hold ALIVE is an explicit ``None``); a warm observer with no
    entry about a warm subject other than itself holds it ALIVE. The indexes
    (``held``) count explicit states only and the queries add the baseline, so
    an event costs O(1) whatever N is, while whole-cluster queries cost O(N)
    plus the explicit states they touch. A restarted process is a new, cold
    observer: its predecessor's entries and baseline are dropped.

False deaths
    A membership ``FAILED`` event at observer O about subject S at time t is a
    *false death declaration* if, at t, S's process is up, has not left, and
    was already running when O started suspecting it (O's last ``SUSPECTED``
    event about S, or t itself if O went straight from alive to dead). So a
    declaration about the previous process of a member that was restarted
    meanwhile is not false. A false declaration is *refuted* if O later holds S
    ALIVE again. :attr:`Tracker.false_dead` counts, when it is read, the false
    declarations not refuted whose observer is still the same live process and
    whose subject is still live (a subject that crashed or left since is dead
    by now, rightly); :attr:`Tracker.false_dead_events` counts all of them.

Detection
    For a crash of X at t: ``first`` is the first ``SUSPECTED`` (or ``FAILED``)
    event about X anywhere after t; ``all`` is the moment by which every live
    member has declared X dead (a ``FAILED`` event about X since t). It is
    cumulative: a member that declared X dead and has already reaped it still
    counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gossipreg.core.catalog import CatalogEvent, Key
from gossipreg.core.membership import EventKind, MemberEvent, MemberState
from gossipreg.core.node import JoinResult, NodeEvent

from .engine import SimMember, Simulation

__all__ = ["Crash", "FalseDeath", "Tracker", "format_table", "key_figures", "percentiles", "scenario_summary"]


@dataclass
class Crash:
    """One crash and how long the cluster took to notice it."""

    member: str
    at: float
    first_suspected: float | None = None
    """Virtual time of the first SUSPECTED event about it, anywhere."""
    all_dead: float | None = None
    """Virtual time by which every live member had declared it dead."""
    declared: set[str] = field(default_factory=set, repr=False)

    def first_seconds(self) -> float | None:
        """Seconds from the crash to the first suspicion (None: not yet)."""
        return _rel(self.first_suspected, self.at)

    def all_seconds(self) -> float | None:
        """Seconds from the crash until every live member had declared it dead (None: not yet)."""
        return _rel(self.all_dead, self.at)

    def as_dict(self) -> dict[str, object]:
        """``{member, crashed_at, first, all}``, the last two relative to the crash."""
        return {
            "member": self.member,
            "crashed_at": round(self.at, 6),
            "first": _rel(self.first_suspected, self.at),
            "all": _rel(self.all_dead, self.at),
        }


@dataclass
class FalseDeath:
    """A death declaration about a member whose process was up."""

    observer: str
    observer_generation: int
    subject: str
    at: float
    refuted_at: float | None = None


@dataclass
class _Watch:
    """A key whose spread (or removal) is being timed."""

    key: Key
    since: float
    done_at: float | None = None


@dataclass(slots=True)
class _Observer:
    generation: int
    # Explicit states only: those differing from the warm baseline (see the module docstring);
    # None (only where the baseline is ALIVE) is a subject reaped or unknown.
    states: dict[str, MemberState | None] = field(default_factory=dict)
    suspect_since: dict[str, float] = field(default_factory=dict)
    alive: int = 0  # other members held ALIVE
    keys: set[Key] = field(default_factory=set)
    warm: bool = False  # named in warm_start: holds every other warm subject ALIVE unless explicit


class Tracker:
    """Follows every member's view of the cluster through its events.

    Args:
        expected: number of members the join phase waits for (``join_converged_at``
            is set when every live member holds ``expected - 1`` others ALIVE).
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.sim: Simulation | None = None
        self.observers: dict[str, _Observer] = {}
        self.live: set[str] = set()
        self.started: dict[str, float] = {}
        # subject -> observers holding it in each state, explicitly (the warm baseline aside)
        self.held: dict[str, dict[MemberState, set[str]]] = {}
        # The warm baseline: subjects held ALIVE by every warm observer (but themselves) ...
        self._warm: frozenset[str] = frozenset()
        # ... the observers whose current process is warm ...
        self._warm_obs: set[str] = set()
        # ... and, per warm subject, the warm observers with an explicit state about it.
        self._overrides: dict[str, set[str]] = {}
        # key -> observers holding it visible
        self.holders: dict[Key, set[str]] = {}
        self._full: set[str] = set()  # observers holding expected - 1 others ALIVE
        self.join_converged_at: float | None = None
        self.crashes: list[Crash] = []
        self._pending_crash: dict[str, Crash] = {}
        self.spreads: list[_Watch] = []
        self._pending_spread: dict[Key, _Watch] = {}
        self.false_deaths: list[FalseDeath] = []
        self._open_false: dict[tuple[str, str], FalseDeath] = {}
        self.false_suspicions = 0
        self.suspicions = 0
        self.deaths = 0
        self.join_results: list[tuple[str, JoinResult]] = []
        self.member_seconds = 0.0
        self._live_since = 0.0

    # ------------------------------------------------------------ wiring

    def attach(self, sim: Simulation) -> None:
        """Start following ``sim``: every member up now is live."""
        self.sim = sim
        self._live_since = sim.now
        for m in sim.members.values():
            if m.up and not m.core.left:
                self.live.add(m.name)
                self.started[m.name] = sim.now
            self._observer(m)

    def _sim(self) -> Simulation:
        assert self.sim is not None, "Tracker.attach(sim) first"
        return self.sim

    def _observer(self, m: SimMember) -> _Observer:
        ob = self.observers.get(m.name)
        if ob is None or ob.generation != m.generation:
            if ob is not None:
                self._forget(m.name, ob)
            ob = self.observers[m.name] = _Observer(m.generation)
        return ob

    def _forget(self, name: str, ob: _Observer) -> None:
        """A new process replaced ``name``: what the old one believed is gone."""
        for subject, state in ob.states.items():
            if state is not None:
                self.held[subject][state].discard(name)
            if ob.warm and subject in self._warm and subject != name:
                self._overrides[subject].discard(name)
        if ob.warm:
            self._warm_obs.discard(name)
        for key in ob.keys:
            self.holders[key].discard(name)
        self._full.discard(name)

    def warm_start(self, names: Iterable[str]) -> None:
        """Each of the named members (their current processes) holds every other named
        member ALIVE, as if it had received a JOINED event about each, but nothing is
        stored per pair: O(N) time and memory (see "Warm start" in the module docstring).

        Call it after :meth:`attach`, at most once. ``join_converged_at`` is set if the
        join condition holds afterwards.
        """
        sim = self._sim()
        if self._warm:
            raise RuntimeError("Tracker.warm_start may be called only once")
        warm = self._warm = frozenset(names)
        now = sim.now
        for name in warm:
            ob = self._observer(sim.members[name])
            # Explicit states about warm subjects give way to the baseline (ALIVE).
            for subject in [s for s in ob.states if s in warm and s != name]:
                old = ob.states.pop(subject)
                if old is not None:
                    self.held[subject][old].discard(name)
                if old is MemberState.ALIVE:
                    ob.alive -= 1
            ob.warm = True
            ob.alive += len(warm) - 1
            self._warm_obs.add(name)
            if ob.alive == self.expected - 1:
                self._full.add(name)
            else:
                self._full.discard(name)
        # A JOINED event refutes the open false death declaration of its pair.
        for pair in [(o, s) for o, s in self._open_false if o in warm and s in warm and o != s]:
            self._open_false.pop(pair).refuted_at = now
        self._check_joined(now)

    def _baseline(self, ob: _Observer, observer: str, subject: str) -> MemberState | None:
        """What ``observer`` holds about ``subject`` when it has no explicit state about it."""
        if ob.warm and subject in self._warm and subject != observer:
            return MemberState.ALIVE
        return None

    def _account(self) -> None:
        now = self._sim().now
        self.member_seconds += len(self.live) * (now - self._live_since)
        self._live_since = now

    def live_member_seconds(self) -> float:
        """The integral of the number of live members over virtual time so far."""
        self._account()
        return self.member_seconds

    # ------------------------------------------------------------ actions

    def crash(self, name: str) -> Crash:
        """Crash ``name`` and time its detection."""
        sim = self._sim()
        self._account()
        sim.crash(name)
        self.live.discard(name)
        c = Crash(name, sim.now)
        self.crashes.append(c)
        self._pending_crash[name] = c
        self._recheck()
        return c

    def restart(self, name: str, seeds: Sequence[str]) -> None:
        """Restart ``name`` as a fresh process and join through ``seeds``."""
        sim = self._sim()
        self._account()
        self._pending_crash.pop(name, None)
        self.live.add(name)
        self.started[name] = sim.now
        sim.restart(name, list(seeds))
        self._observer(sim.members[name])

    def add(self, name: str, seeds: Sequence[str]) -> None:
        """Create a new member ``name`` and join it through ``seeds``."""
        sim = self._sim()
        self._account()
        m = sim.add_member(name)
        self.live.add(name)
        self.started[name] = sim.now
        self._observer(m)
        sim.join(name, list(seeds))

    def leave(self, name: str) -> None:
        """``name`` leaves gracefully."""
        self._account()
        self._sim().leave(name)
        self.live.discard(name)
        self._recheck()

    def watch_spread(self, key: Key) -> None:
        """Time ``key`` from now until every live member holds it visible."""
        w = _Watch(key, self._sim().now)
        self.spreads.append(w)
        self._pending_spread[key] = w
        self._check_spread(key)

    # ------------------------------------------------------------ queries

    def sees(self, observer: str, subject: str) -> MemberState | None:
        """``observer``'s current state for ``subject`` (None: unknown or reaped)."""
        ob = self.observers.get(observer)
        if ob is None:
            return None
        states = ob.states
        return states[subject] if subject in states else self._baseline(ob, observer, subject)

    def view(self, observer: str) -> dict[str, MemberState]:
        """``observer``'s current states of every member it knows (O(N) with a warm start)."""
        ob = self.observers.get(observer)
        if ob is None:
            return {}
        out: dict[str, MemberState] = {}
        if ob.warm:
            out = dict.fromkeys(self._warm - {observer}, MemberState.ALIVE)
        for subject, state in ob.states.items():
            if state is None:
                out.pop(subject, None)
            else:
                out[subject] = state
        return out

    def alive_view(self, observer: str) -> set[str]:
        """The members ``observer`` currently holds ALIVE."""
        return {s for s, st in self.view(observer).items() if st is MemberState.ALIVE}

    def _held(self, subject: str, state: MemberState) -> set[str]:
        """Every observer (live or not) holding ``subject`` in ``state``, baseline included."""
        held = self.held.get(subject, {}).get(state, set())
        if state is MemberState.ALIVE and subject in self._warm:
            held = held | (self._warm_obs - self._overrides.get(subject, set()) - {subject})
        return held

    def _counts(self, subject: str, state: MemberState, live_warm: int) -> tuple[int, int, bool]:
        """``(len(H), len(H & live), subject in H)`` for ``H = _held(subject, state)``, without
        building H: O(explicit entries about ``subject``). ``live_warm`` is
        ``len(_warm_obs & live)``."""
        held = self.held.get(subject, {}).get(state, set())
        total, live, own = len(held), len(held & self.live), subject in held
        if state is MemberState.ALIVE and subject in self._warm:
            # The baseline holders: warm observers other than the subject without an explicit
            # state about it; disjoint from the explicit holders.
            over = self._overrides.get(subject, set())
            total += len(self._warm_obs) - len(over) - (subject in self._warm_obs)
            live += live_warm - len(over & self.live) - (subject in self._warm_obs and subject in self.live)
        return total, live, own

    def _live_warm(self) -> int:
        return len(self._warm_obs & self.live) if self._warm_obs else 0

    def holding(self, subject: str, state: MemberState) -> set[str]:
        """Live members (other than ``subject``) holding ``subject`` in ``state``."""
        return self._held(subject, state) & self.live

    def all_hold(self, subject: str, state: MemberState) -> bool:
        """Whether every live member other than ``subject`` holds it in ``state``."""
        return self._all_hold(subject, state, self._live_warm())

    def _all_hold(self, subject: str, state: MemberState, live_warm: int) -> bool:
        others = len(self.live) - (subject in self.live)
        total, live, own = self._counts(subject, state, live_warm)
        return total >= others and live - own == others

    def all_alive_everywhere(self) -> bool:
        """Whether every live member holds every other live member ALIVE, and nobody else."""
        n = len(self.live)
        for name in self.live:
            ob = self.observers[name]
            if ob.alive != n - 1:
                return False
        live_warm = self._live_warm()
        return all(self._all_hold(s, MemberState.ALIVE, live_warm) for s in self.live)

    def all_live_everywhere(self) -> bool:
        """Whether every live member holds every other live member ALIVE or SUSPECT."""
        live_warm = self._live_warm()
        for s in self.live:
            # An observer holds one state per subject: the two sets are disjoint.
            _, alive, own_alive = self._counts(s, MemberState.ALIVE, live_warm)
            _, suspect, own_suspect = self._counts(s, MemberState.SUSPECT, live_warm)
            if alive + suspect - own_alive - own_suspect != len(self.live) - 1:
                return False
        return True

    def key_holders(self, key: Key) -> set[str]:
        """Live members holding ``key`` in their view."""
        return self.holders.get(key, set()) & self.live

    def everywhere(self, key: Key) -> bool:
        """Whether every live member holds ``key`` in its view."""
        holders = self.holders.get(key, set())
        return len(holders) >= len(self.live) and self.live <= holders

    def nowhere(self, key: Key) -> bool:
        """Whether no live member holds ``key`` in its view."""
        return not self.key_holders(key)

    @property
    def false_dead(self) -> int:
        """False death declarations not refuted (see the module docstring)."""
        return len(self.unrefuted_false_deaths())

    def unrefuted_false_deaths(self) -> list[FalseDeath]:
        """The false death declarations that still stand (see the module docstring)."""
        sim = self._sim()
        return [
            f
            for f in self.false_deaths
            if f.refuted_at is None
            and f.subject in self.live
            and f.observer in self.live
            and sim.members[f.observer].generation == f.observer_generation
        ]

    @property
    def false_dead_events(self) -> int:
        """All false death declarations, refuted or not."""
        return len(self.false_deaths)

    def pending_crashes(self) -> int:
        """Crashes not yet known DEAD by every live member."""
        return len(self._pending_crash)

    def pending_spreads(self) -> int:
        """Watched keys not yet held by every live member."""
        return len(self._pending_spread)

    # ------------------------------------------------------------ events

    def on_event(self, sim: Simulation, member: SimMember, event: NodeEvent) -> None:
        """The ``on_event`` hook of the simulation."""
        if self.sim is None:
            self.attach(sim)
        ob = self._observer(member)
        if isinstance(event, MemberEvent):
            self._member_event(member.name, ob, event)
        elif isinstance(event, CatalogEvent):
            self._catalog_event(member.name, ob, event)
        elif isinstance(event, JoinResult):
            self.join_results.append((member.name, event))

    def _member_event(self, observer: str, ob: _Observer, ev: MemberEvent) -> None:
        kind = ev.kind
        if kind is EventKind.CONFLICT:
            return
        subject = ev.member.name
        sim = self.sim
        assert sim is not None, "Tracker.attach(sim) first"
        now = sim.now
        states = ob.states
        # (_baseline, inline: this runs for every member event of every member)
        base = MemberState.ALIVE if ob.warm and subject in self._warm and subject != observer else None
        explicit = subject in states
        old = states[subject] if explicit else base
        new: MemberState | None = None if kind is EventKind.REAPED else ev.member.state
        if explicit and old is not None:
            self.held[subject][old].discard(observer)
        if new is base:  # back to the baseline: no entry
            if explicit:
                del states[subject]
                if base is not None:
                    self._overrides[subject].discard(observer)
        else:
            states[subject] = new
            if new is not None:
                by_state = self.held.get(subject)
                if by_state is None:
                    by_state = self.held[subject] = {s: set() for s in MemberState}
                by_state[new].add(observer)
            if base is not None and not explicit:
                self._overrides.setdefault(subject, set()).add(observer)
        was_alive = old is MemberState.ALIVE
        is_alive = new is MemberState.ALIVE
        if was_alive != is_alive:
            ob.alive += 1 if is_alive else -1
            if ob.alive == self.expected - 1:
                self._full.add(observer)
            else:
                self._full.discard(observer)
            if self.join_converged_at is None:
                self._check_joined(now)
        if kind is EventKind.SUSPECTED:
            self.suspicions += 1
            ob.suspect_since[subject] = now
            if subject in self.live:
                self.false_suspicions += 1
            c = self._pending_crash.get(subject)
            if c is not None and c.first_suspected is None:
                c.first_suspected = now
        elif kind is EventKind.FAILED:
            self.deaths += 1
            since = ob.suspect_since.get(subject, now) if old is MemberState.SUSPECT else now
            if subject in self.live and self.started.get(subject, math.inf) <= since:
                f = FalseDeath(observer, ob.generation, subject, now)
                self.false_deaths.append(f)
                self._open_false[(observer, subject)] = f
            c = self._pending_crash.get(subject)
            if c is not None:
                if c.first_suspected is None:
                    c.first_suspected = now
                c.declared.add(observer)
                self._check_crash(c)
        elif is_alive:
            refuted = self._open_false.pop((observer, subject), None)
            if refuted is not None:
                refuted.refuted_at = now

    def _catalog_event(self, observer: str, ob: _Observer, ev: CatalogEvent) -> None:
        key = ev.record.key
        if ev.action == "delete":
            ob.keys.discard(key)
            s = self.holders.get(key)
            if s is not None:
                s.discard(observer)
            return
        ob.keys.add(key)
        self.holders.setdefault(key, set()).add(observer)
        if key in self._pending_spread:
            self._check_spread(key)

    # ------------------------------------------------------------ completion

    def _check_joined(self, now: float) -> None:
        if (
            self.join_converged_at is None
            and len(self._full) >= self.expected
            and self._full >= self.live
            and len(self.live) == self.expected
        ):
            self.join_converged_at = now

    def _check_crash(self, c: Crash) -> None:
        others = len(self.live) - (c.member in self.live)
        if len(c.declared) >= others and len(c.declared & self.live) == others:
            c.all_dead = self._sim().now
            del self._pending_crash[c.member]

    def _check_spread(self, key: Key) -> None:
        w = self._pending_spread[key]
        if self.everywhere(key):
            w.done_at = self._sim().now
            del self._pending_spread[key]

    def _recheck(self) -> None:
        """The live set shrank: a pending condition may now hold without a new event."""
        for c in list(self._pending_crash.values()):
            self._check_crash(c)
        for key in list(self._pending_spread):
            self._check_spread(key)

    # ------------------------------------------------------------ summaries

    def spread_times(self) -> list[float | None]:
        """Seconds from each watched registration to everywhere (None: not yet)."""
        return [None if w.done_at is None else w.done_at - w.since for w in self.spreads]


def percentiles(values: Iterable[float | None]) -> dict[str, object]:
    """``{n, complete, p50, p99, max}`` of the finished values (nearest-rank percentiles)."""
    vals = list(values)
    done = sorted(v for v in vals if v is not None)
    out: dict[str, object] = {"n": len(vals), "complete": len(done)}
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        out[name] = round(done[max(0, math.ceil(q * len(done)) - 1)], 6) if done else None
    out["max"] = round(done[-1], 6) if done else None
    return out


def _rel(t: float | None, since: float) -> float | None:
    return None if t is None else round(t - since, 6)


# ====================================================================== summaries of reports
#
# The key figures of each scenario's report as rows of a small table: what the scenario commands
# print, and what ``python -m simulations sweep`` merges (one row per job, in CSV and JSON).
# Keys are identifiers (units as suffixes: ``_s`` virtual seconds, ``wall_s`` real ones).


def _get(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _of(done: Any, n: Any) -> str:
    return f"{done}/{n}"


def _convergence_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in report["runs"]:
        regs = r["registrations"]
        rows.append({
            "nodes": r["nodes"], "eager_push": r["eager_push"], "loss": r["loss"],
            # The slowest registration of the run, to each fraction of the members.
            "p50_s": r["max"]["p50"], "p99_s": r["max"]["p99"], "p9999_s": r["max"]["p9999"],
            "p100_s": r["max"]["p100"], "complete": _of(r["complete"], len(regs)),
            "ideal_s": r["ideal_s"], "serf_p9999_s": r["serf_model_s"]["p9999"],
            "wall_s": r.get("wall_seconds"),
        })
    return rows


def _detection_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    p, first, dead = report["params"], report["first"], report["all"]
    lo, hi = report["expected"]["all_dead_range_s"]
    return [{
        "nodes": p["nodes"], "crashes": p["crashes"], "loss": p["loss"],
        "first_p50_s": first["p50"], "first_max_s": first["max"],
        "dead_p50_s": dead["p50"], "dead_max_s": dead["max"], "detected": _of(dead["complete"], dead["n"]),
        "expected_dead_s": f"{lo:.1f}-{hi:.1f}", "false_dead": report["false_dead"],
        "false_suspicions": report["false_suspicions"], "wall_s": report.get("wall_seconds"),
    }]


def _false_positives_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    p = report["params"]
    return [{
        "variant": v["variant"], "nodes": p["nodes"], "loss": p["loss"], "slow": v["slow_members"],
        "pauses": v["pauses"], "suspicion_episodes": v["false_suspicion_episodes"],
        "about_healthy": v["false_suspicion_episodes_about_healthy"],
        "death_episodes": v["false_death_episodes"],
        "deaths_about_healthy": v["false_death_episodes_about_healthy"],
        "unrefuted_at_end": v["false_deaths_unrefuted_at_end"], "wall_s": v.get("wall_seconds"),
    } for v in report["variants"]]


def _partition_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    p = report["params"]
    anomalies = report.get("anomalies") or {}
    return [{
        "nodes": p["nodes"], "split_s": p["split_seconds"], "loss": p["loss"],
        "views_identical": report["views_identical"],
        "converged_after_heal_s": report["converged_after_heal_s"],
        "members_after_heal_s": report["membership_converged_after_heal_s"],
        "push_pull_interval_s": report["push_pull_interval_s"],
        "lost": len(report["lost"]), "resurrected": len(report["resurrected"]),
        "stale_reappearances": anomalies.get("stale_reappearance"),
        "false_disappearances": anomalies.get("false_disappearance"),
        "false_dead": report["false_dead_at_end"], "wall_s": report.get("wall_seconds"),
    }]


def _churn_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    p, ev, div = report["params"], report["events"], report["divergence"]
    anomalies = report.get("anomalies") or {}
    return [{
        "nodes": p["nodes"], "seconds": p["seconds"], "loss": p["loss"],
        "joins": ev["join"] + ev["restart"], "leaves": ev["leave"], "crashes": ev["crash"],
        "registrations": ev["register"], "divergence_mean": div["mean"], "divergence_max": div["max"],
        "msg_per_member_s": report["messages_per_member_per_s"],
        "bytes_per_member_s": report["bytes_per_member_per_s"],
        "stale_reappearances": anomalies.get("stale_reappearance"),
        "false_disappearances": anomalies.get("false_disappearance"),
        "live_at_end": report["live_at_end"], "false_dead": report["false_dead_at_end"],
        "wall_s": report.get("wall_seconds"),
    }]


def _bandwidth_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in report["rows"]:
        idle, load = r["idle"], r["load"]
        rows.append({
            "nodes": r["nodes"], "push_pull_interval_s": r["push_pull_interval_s"],
            "idle_window_s": round(r["idle_window_s"][1] - r["idle_window_s"][0], 3),
            "idle_msg_per_member_s": idle["messages_per_member_per_s"],
            "idle_bytes_per_member_s": idle["bytes_per_member_per_s"],
            "idle_push_pulls": idle.get("push_pull_checks"),
            "load_window_s": round(r["load_window_s"][1] - r["load_window_s"][0], 3),
            "load_msg_per_member_s": load["messages_per_member_per_s"],
            "load_bytes_per_member_s": load["bytes_per_member_per_s"],
            "load_push_pulls": load.get("push_pull_checks"),
            "wall_s": r.get("wall_seconds"),
        })
    return rows


_ROWS = {
    "convergence": _convergence_rows,
    "detection": _detection_rows,
    "false-positives": _false_positives_rows,
    "partition": _partition_rows,
    "churn": _churn_rows,
    "bandwidth": _bandwidth_rows,
}


def key_figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The key figures of a scenario report: one row per run (size, loss, variant...).

    Raises:
        ValueError: not a report of a known scenario.
    """
    fn = _ROWS.get(str(report.get("scenario")))
    if fn is None:
        raise ValueError(f"not a scenario report: scenario {report.get('scenario')!r}")
    return fn(report)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    return str(v)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """``rows`` as a plain-text table (``-`` for a missing or unfinished figure).

    ``columns`` defaults to every key, in the order first seen.
    """
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), int | float) or row.get(c) is None for row in rows)
               for c in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def scenario_summary(report: dict[str, Any]) -> str:
    """One screen about a scenario report: its settings in one line, then its key figures."""
    p = report.get("params", {})
    settings = [f"seed {p.get('seed')}", "AES-GCM" if p.get("crypto", True) else "plaintext",
                "warm start" if str(p.get("start", "warm")).startswith("warm") else "real joins"]
    overrides = p.get("config_overrides") or {}
    if overrides:
        settings.append("--set " + " ".join(f"{k}={v}" for k, v in sorted(overrides.items())))
    head = f"{report['scenario']} ({', '.join(settings)}): {_get(report, 'wall_seconds')} s wall"
    rows = key_figures(report)
    if len(rows) == 1:  # one run: a figure per line reads better than one long row
        width = max(len(k) for k in rows[0])
        table = "\n".join(f"  {k.ljust(width)}  {_cell(v)}" for k, v in rows[0].items())
    else:
        table = format_table(rows)
    return "\n".join([head, table, _NOTES.get(report["scenario"], "")]).rstrip()


_NOTES = {
    "convergence": "p50_s..p100_s: seconds (virtual) from the register call until 50/99/99.99/100 % of the "
    "members hold it, slowest registration of the run; '-': not reached within the limit.",
    "detection": "first: crash to first suspicion; dead: crash to declared dead by every live member "
    "(virtual seconds).",
    "false-positives": "episodes: a member suspected (or declared dead) at one incarnation, however many "
    "members learnt of it; nobody crashed, so all are false.",
    "partition": "after heal: virtual seconds until every catalog is identical (members: every member "
    "ALIVE everywhere).",
    "churn": "divergence: fraction of live members whose view differs from the truth (sampled each second).",
    "bandwidth": "per live member per virtual second, datagrams + stream messages sent; push_pulls: "
    "periodic anti-entropy exchanges started in the window (N = every member's).",
}
