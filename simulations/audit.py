"""Transient view anomalies: what a client of one member would have been told wrongly.

A :class:`ViewAudit` listens to every member's catalog events (the same
events a ``watch`` delivers) and compares each one, at the moment it happens,
with the truth held by the owner process itself:

stale reappearance
    a member shows a record again (``create`` after it had shown and then
    removed that key) although the owner had already deregistered that
    version (the owner's own catalog holds a newer tombstone for the key), or
    the owner has restarted since the record was written and its new process
    does not register the key. What a client saw: a service that was gone.
false disappearance
    a member removes a record (``delete``) while its owner is up, still
    registers exactly that key (its lease not run out), and can reach the
    member (the two are not partitioned apart). What a client saw: a live
    endpoint vanish.

It also records, per member, when its visible keys last became equal to a
reference set (:meth:`ViewAudit.settled_at`), which gives the time to
identical views after a fault heals.

The audit reads the owners' catalogs directly (the simulator holds every
member); it never changes what the members do, so a run's trace is the same
with or without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gossipreg.core.catalog import CatalogEvent, Key
from gossipreg.core.node import NodeEvent

from .engine import SimMember, Simulation

__all__ = ["Anomaly", "ViewAudit", "visible_keys"]


def visible_keys(m: SimMember) -> set[Key]:
    """Every ``(service, version, node id)`` in ``m``'s view now."""
    return {
        (s.name, s.version, nd.id)
        for name in {listed.name for listed in m.core.list_services()}
        for s in m.core.get_service(name)
        for nd in s.nodes
    }


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One wrong answer a member's view gave."""

    kind: str
    """``"stale_reappearance"`` or ``"false_disappearance"``."""
    at: float
    """Virtual time."""
    observer: str
    """The member whose view was wrong."""
    key: Key
    owner: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "at": round(self.at, 6), "observer": self.observer,
                "key": list(self.key), "owner": self.owner}


@dataclass(slots=True)
class _View:
    generation: int
    keys: set[Key] = field(default_factory=set)
    removed: set[Key] = field(default_factory=set)  # keys shown once, then removed
    settled_at: float | None = None  # when ``keys`` last became the reference set


class ViewAudit:
    """Counts stale reappearances and false disappearances in a simulation.

    Pass :meth:`on_event` as (or from) the simulation's ``on_event`` hook.
    ``since`` ignores anomalies before that virtual time.
    """

    def __init__(self, sim: Simulation, *, since: float = 0.0) -> None:
        self.sim = sim
        self.since = since
        self.anomalies: list[Anomaly] = []
        self._views: dict[str, _View] = {}
        self._reference: frozenset[Key] | None = None
        # (key, owner) -> the owner's process generation when the key was first shown
        self._born: dict[tuple[Key, str], int] = {}

    # ------------------------------------------------------------ events

    def on_event(self, sim: Simulation, member: SimMember, event: NodeEvent) -> None:
        """The simulation hook: audit one catalog event (others are ignored)."""
        if not isinstance(event, CatalogEvent):
            return
        view = self._view(member)
        key = event.record.key
        owner = event.record.owner
        now = sim.now
        if event.action == "delete":
            view.keys.discard(key)
            view.removed.add(key)
            if now >= self.since and self._falsely_removed(member, event):
                self.anomalies.append(Anomaly("false_disappearance", now, member.name, key, owner))
        else:
            owner_m = sim.members.get(owner)
            if owner_m is not None:
                self._born.setdefault((key, owner), owner_m.generation)
            if (
                event.action == "create"
                and key in view.removed
                and now >= self.since
                and self._superseded(event)
            ):
                self.anomalies.append(Anomaly("stale_reappearance", now, member.name, key, owner))
            view.keys.add(key)
        self._settle(view, now)

    def _view(self, m: SimMember) -> _View:
        v = self._views.get(m.name)
        if v is None or v.generation != m.generation:
            v = self._views[m.name] = _View(m.generation)
        return v

    def _superseded(self, ev: CatalogEvent) -> bool:
        """Whether the owner itself already holds something newer for the shown record's key."""
        rec = ev.record
        owner = self.sim.members.get(rec.owner)
        if owner is None or not owner.up:
            return False
        mine = owner.core.catalog.get(rec.key)
        if mine is None:
            # A process of the owner newer than the one that wrote it, which does not have it.
            return owner.generation > self._born.get((rec.key, rec.owner), owner.generation)
        return mine.owner == rec.owner and mine.stamp > rec.stamp and mine.deleted

    def _falsely_removed(self, observer: SimMember, ev: CatalogEvent) -> bool:
        rec = ev.record
        owner = self.sim.members.get(rec.owner)
        if owner is None or not owner.up or owner.core.left or owner.name == observer.name:
            return False
        if not self.sim.connected(observer.name, owner.name):
            return False
        local = owner.core.catalog.local_records()
        asserted = any(r.key == rec.key for r in local)
        if not asserted:
            return False
        # Still registered by the owner: removed for a reason other than the owner's own act.
        current = observer.core.catalog.get(rec.key)
        return current is None or not current.deleted

    # ------------------------------------------------------------ settling

    def expect(self, keys: Iterable[Key], now: float) -> None:
        """Set the reference key set; ``settled_at`` is measured against it from now on."""
        self._reference = frozenset(keys)
        for m in self.sim.members.values():
            if m.up and not m.core.left:
                self._settle(self._view(m), now)

    def _settle(self, view: _View, now: float) -> None:
        ref = self._reference
        if ref is None:
            return
        if view.keys == ref:
            if view.settled_at is None:
                view.settled_at = now
        else:
            view.settled_at = None

    def settled_at(self, name: str) -> float | None:
        """When ``name``'s visible keys last became the reference set (None: they differ now)."""
        v = self._views.get(name)
        return None if v is None else v.settled_at

    def seed_views(self) -> None:
        """Take every live member's current visible keys (after a warm start or a run-up)."""
        for m in self.sim.members.values():
            if not m.up or m.core.left:
                continue
            self._view(m).keys = visible_keys(m)

    # ------------------------------------------------------------ summary

    def counts(self) -> dict[str, int]:
        """Anomalies by kind."""
        out = {"stale_reappearance": 0, "false_disappearance": 0}
        for a in self.anomalies:
            out[a.kind] += 1
        return out

    def report(self, limit: int = 20) -> dict[str, Any]:
        """Counts, anomalies per member, and the first ``limit`` anomalies."""
        per: dict[str, dict[str, int]] = {}
        for a in self.anomalies:
            d = per.setdefault(a.observer, {"stale_reappearance": 0, "false_disappearance": 0})
            d[a.kind] += 1
        return {**self.counts(), "per_member": dict(sorted(per.items())),
                "first": [a.as_dict() for a in self.anomalies[:limit]]}
