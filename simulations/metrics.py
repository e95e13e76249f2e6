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

from gossipreg.core.catalog import CatalogEvent, Key
from gossipreg.core.membership import EventKind, MemberEvent, MemberState
from gossipreg.core.node import JoinResult, NodeEvent

from .engine import SimMember, Simulation

__all__ = ["Crash", "FalseDeath", "Tracker", "percentiles"]


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


@dataclass
class _Observer:
    generation: int
    states: dict[str, MemberState] = field(default_factory=dict)
    suspect_since: dict[str, float] = field(default_factory=dict)
    alive: int = 0  # other members held ALIVE
    keys: set[Key] = field(default_factory=set)


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
        # subject -> observers holding it in each state
        self.held: dict[str, dict[MemberState, set[str]]] = {}
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
            self.held[subject][state].discard(name)
        for key in ob.keys:
            self.holders[key].discard(name)
        self._full.discard(name)

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
        return None if ob is None else ob.states.get(subject)

    def holding(self, subject: str, state: MemberState) -> set[str]:
        """Live members (other than ``subject``) holding ``subject`` in ``state``."""
        return self.held.get(subject, {}).get(state, set()) & self.live

    def all_hold(self, subject: str, state: MemberState) -> bool:
        """Whether every live member other than ``subject`` holds it in ``state``."""
        others = len(self.live) - (subject in self.live)
        held = self.held.get(subject, {}).get(state, set())
        return len(held) >= others and len(held & self.live) - (subject in held) == others

    def all_alive_everywhere(self) -> bool:
        """Whether every live member holds every other live member ALIVE, and nobody else."""
        n = len(self.live)
        for name in self.live:
            ob = self.observers[name]
            if ob.alive != n - 1:
                return False
        return all(self.all_hold(s, MemberState.ALIVE) for s in self.live)

    def all_live_everywhere(self) -> bool:
        """Whether every live member holds every other live member ALIVE or SUSPECT."""
        return all(
            len((self.holding(s, MemberState.ALIVE) | self.holding(s, MemberState.SUSPECT)) - {s})
            == len(self.live) - 1
            for s in self.live
        )

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
        else:
            self.join_results.append((member.name, event))

    def _member_event(self, observer: str, ob: _Observer, ev: MemberEvent) -> None:
        kind = ev.kind
        if kind is EventKind.CONFLICT:
            return
        subject = ev.member.name
        now = self._sim().now
        old = ob.states.get(subject)
        new: MemberState | None = None if kind is EventKind.REAPED else ev.member.state
        if old is not None:
            self.held[subject][old].discard(observer)
        if new is None:
            ob.states.pop(subject, None)
        else:
            ob.states[subject] = new
            self.held.setdefault(subject, {s: set() for s in MemberState})[new].add(observer)
        was_alive = old is MemberState.ALIVE
        is_alive = new is MemberState.ALIVE
        if was_alive != is_alive:
            ob.alive += 1 if is_alive else -1
            if ob.alive == self.expected - 1:
                self._full.add(observer)
            else:
                self._full.discard(observer)
            if (
                self.join_converged_at is None
                and len(self._full) >= self.expected
                and self._full >= self.live
                and len(self.live) == self.expected
            ):
                self.join_converged_at = now
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
