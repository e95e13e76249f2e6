"""Checks over the recorded view streams of member processes: the view must never lie.

Every check reads both streams of a :class:`~tests.netns.cluster.MemberProc`:
the watch results (exact, every change) and the polled views (every 20 ms).
Findings are :class:`Anomaly` objects that carry an excerpt of the stream
around the moment, so a failure says which member, which registration, when,
and what the member saw. Times are printed in seconds relative to an epoch
(the test's fault injection), with the raw ``time.monotonic()`` stamp too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .cluster import Key, ViewSample, WatchEvent


class Streams(Protocol):
    """What one member process reported (a :class:`~tests.netns.cluster.MemberProc`)."""

    @property
    def label(self) -> str: ...

    @property
    def watch(self) -> list[WatchEvent]: ...

    @property
    def views(self) -> list[ViewSample]: ...

    @property
    def member_events(self) -> list[tuple[float, str, str]]: ...


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str
    member: str
    key: Key
    t: float
    detail: str
    excerpt: str

    def render(self, epoch: float) -> str:
        return (
            f"{self.kind}: at {self.member}, {self.key[0]} (node {self.key[1]}) "
            f"at t={self.t - epoch:+.3f} s (monotonic {self.t:.3f}): {self.detail}\n{self.excerpt}"
        )


def _owner(key: Key) -> str:
    return key[1]


def excerpt(m: Streams, key: Key, t: float, epoch: float, window: float = 2.0) -> str:
    """What ``m`` reported about ``key`` and its owner within ``window`` s of ``t``."""
    lines = [f"    --- {m.label}'s streams, {window:g} s either side (t relative to the fault) ---"]
    for ev in m.watch:
        if ev.key == key and abs(ev.t - t) <= window:
            lines.append(f"    t={ev.t - epoch:+.3f} watch {ev.action} {ev.key[0]}/{ev.key[1]}")
    for te, kind, who in m.member_events:
        if who == _owner(key) and abs(te - t) <= window:
            lines.append(f"    t={te - epoch:+.3f} member event: {who} {kind}")
    before: tuple[bool, str | None, int | None] | None = None
    for sample in m.views:
        owner = _owner(key)
        now = (key in sample.visible, sample.states.get(owner), sample.incarnations.get(owner))
        if now != before and abs(sample.t - t) <= window:
            lines.append(
                f"    t={sample.t - epoch:+.3f} view: {key[0]}/{key[1]} "
                f"{'VISIBLE' if now[0] else 'absent'}, owner {owner} {now[1]} (incarnation {now[2]})"
            )
        before = now
    return "\n".join(lines[:1] + sorted(lines[1:], key=lambda line: float(line.split()[0][2:])))


def _view_presence(m: Streams, key: Key, until: float) -> list[tuple[float, bool]]:
    """Times at which ``key``'s presence in ``m``'s polled view changed (the first sample included)."""
    out: list[tuple[float, bool]] = []
    for sample in m.views:
        if sample.t > until:
            break
        present = key in sample.visible
        if not out or out[-1][1] != present:
            out.append((sample.t, present))
    return out


def stale_reappearances(
    members: Iterable[Streams], keys: Iterable[Key], until: float, epoch: float
) -> list[Anomaly]:
    """A registration that left a member's view and came back (by watch, or by poll)."""
    out: list[Anomaly] = []
    keys = list(keys)
    for m in members:
        for key in keys:
            removed: float | None = None
            for ev in m.watch:
                if ev.key != key or ev.t > until:
                    continue
                if ev.action == "delete":
                    removed = removed or ev.t
                elif removed is not None:
                    out.append(
                        Anomaly(
                            "stale reappearance (watch)",
                            m.label,
                            key,
                            ev.t,
                            f"watch {ev.action} after its delete at t={removed - epoch:+.3f}",
                            excerpt(m, key, ev.t, epoch),
                        )
                    )
                    break
            seen_absent_after_present: float | None = None
            was_present = False
            for t, present in _view_presence(m, key, until):
                left = seen_absent_after_present
                if present and left is not None:
                    out.append(
                        Anomaly(
                            "stale reappearance (view)",
                            m.label,
                            key,
                            t,
                            f"visible again after it left the view at t={left - epoch:+.3f}",
                            excerpt(m, key, t, epoch),
                        )
                    )
                    break
                if present:
                    was_present = True
                elif was_present and seen_absent_after_present is None:
                    seen_absent_after_present = t
    return out


def visible_during(
    members: Iterable[Streams], keys: Iterable[Key], since: float, until: float, epoch: float
) -> list[Anomaly]:
    """A registration that a member showed at any moment of ``[since, until]``."""
    out: list[Anomaly] = []
    keys = list(keys)
    for m in members:
        for key in keys:
            shown = False
            for ev in m.watch:
                if ev.key != key or ev.t > until:
                    continue
                if ev.t >= since and shown:
                    out.append(_gone("watch", m, key, since, "still visible", epoch))
                    break
                shown = ev.action != "delete"
                if shown and ev.t >= since:
                    out.append(_gone("watch", m, key, ev.t, f"watch {ev.action}", epoch))
                    break
            else:
                if shown:
                    out.append(_gone("watch", m, key, since, "still visible", epoch))
            present = False
            for t, now in _view_presence(m, key, until):
                if t >= since and (present or now):
                    at, why = (since, "still visible") if present else (t, "visible again")
                    out.append(_gone("view", m, key, at, why, epoch))
                    break
                present = now
            else:
                if present:
                    out.append(_gone("view", m, key, since, "still visible", epoch))
    return out


def _gone(stream: str, m: Streams, key: Key, t: float, detail: str, epoch: float) -> Anomaly:
    kind = f"shown after it should be gone ({stream})"
    return Anomaly(kind, m.label, key, t, detail, excerpt(m, key, t, epoch))


def false_disappearances(
    members: Iterable[Streams],
    keys: Iterable[Key],
    until: float,
    epoch: float,
    since: float = float("-inf"),
) -> list[Anomaly]:
    """A registration that ``m`` showed and then dropped at a time in ``(since, until]``."""
    out: list[Anomaly] = []
    keys = list(keys)
    for m in members:
        for key in keys:
            shown = False
            for ev in m.watch:
                if ev.key != key or ev.t > until:
                    continue
                if ev.action == "delete" and shown and ev.t > since:
                    out.append(
                        Anomaly("false disappearance (watch)", m.label, key, ev.t, "watch delete",
                                excerpt(m, key, ev.t, epoch))
                    )
                    break
                shown = ev.action != "delete"
            present = False
            for t, now in _view_presence(m, key, until):
                if present and not now and t > since:
                    out.append(
                        Anomaly("false disappearance (view)", m.label, key, t, "left the polled view",
                                excerpt(m, key, t, epoch))
                    )
                    break
                present = now
    return out


def settle_times(
    m: Streams, expected: frozenset[Key], since: float, until: float
) -> tuple[float | None, float | None]:
    """Seconds from ``since`` until ``m``'s set of visible registrations last changed to
    ``expected`` and stayed so through ``until``: ``(by watch, by poll)``; ``None`` if it does
    not end equal to ``expected``. 0 if it already was at ``since``."""
    current: set[Key] = set()
    last_change = since
    for ev in m.watch:
        if ev.t > until:
            break
        was_in = ev.key in current
        if ev.action == "delete":
            current.discard(ev.key)
        else:
            current.add(ev.key)
        if (ev.key in current) != was_in and ev.t > since:
            last_change = ev.t
    by_watch = last_change - since if current == expected else None
    last_sample = None
    last_change = since
    for sample in m.views:
        if sample.t > until:
            break
        if (last_sample is None or sample.visible != last_sample.visible) and sample.t > since:
            last_change = sample.t
        last_sample = sample
    by_poll = last_change - since if last_sample is not None and last_sample.visible == expected else None
    return by_watch, by_poll


def alive_settle_time(m: Streams, names: Sequence[str], since: float, until: float) -> float | None:
    """Seconds from ``since`` until ``m`` last changed to seeing exactly ``names`` alive (and stayed)."""
    want = set(names)
    last_alive: set[str] | None = None
    last_change = since
    for sample in m.views:
        if sample.t > until:
            break
        alive = {n for n, s in sample.states.items() if s == "alive"}
        if alive != last_alive and sample.t > since:
            last_change = sample.t
        last_alive = alive
    return last_change - since if last_alive == want else None


def render(anomalies: Sequence[Anomaly], epoch: float, limit: int = 12) -> str:
    text = "\n".join(a.render(epoch) for a in anomalies[:limit])
    if len(anomalies) > limit:
        text += f"\n... and {len(anomalies) - limit} more"
    return text
