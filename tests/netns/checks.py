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

from .cluster import Key, MemberProc


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


def excerpt(m: MemberProc, key: Key, t: float, epoch: float, window: float = 2.0) -> str:
    """What ``m`` reported about ``key`` and its owner within ``window`` s of ``t``."""
    lines = [f"    --- {m.label}'s streams, {window:g} s either side (t relative to the fault) ---"]
    for ev in m.watch:
        if ev.key == key and abs(ev.t - t) <= window:
            lines.append(f"    t={ev.t - epoch:+.3f} watch {ev.action} {ev.key[0]}/{ev.key[1]}")
    before: tuple[bool, str | None] | None = None
    for sample in m.views:
        now = (key in sample.visible, sample.states.get(_owner(key)))
        if now != before and abs(sample.t - t) <= window:
            lines.append(
                f"    t={sample.t - epoch:+.3f} view: {key[0]}/{key[1]} "
                f"{'VISIBLE' if now[0] else 'absent'}, owner {_owner(key)} {now[1]}"
            )
        before = now
    return "\n".join(lines)


def _view_presence(m: MemberProc, key: Key, until: float) -> list[tuple[float, bool]]:
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
    members: Iterable[MemberProc], keys: Iterable[Key], until: float, epoch: float
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
            seen_absent_after_present = None
            was_present = False
            for t, present in _view_presence(m, key, until):
                if present and seen_absent_after_present is not None:
                    out.append(
                        Anomaly(
                            "stale reappearance (view)",
                            m.label,
                            key,
                            t,
                            f"visible again after it left the view at t={seen_absent_after_present - epoch:+.3f}",
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
    members: Iterable[MemberProc], keys: Iterable[Key], since: float, until: float, epoch: float
) -> list[Anomaly]:
    """A registration that ``m`` showed at any moment of ``[since, until]``."""
    out: list[Anomaly] = []
    keys = list(keys)
    for m in members:
        for key in keys:
            shown = False
            for ev in m.watch:
                if ev.key != key or ev.t > until:
                    continue
                shown = ev.action != "delete"
                if shown and ev.t >= since:
                    out.append(
                        Anomaly("shown after it was gone (watch)", m.label, key, ev.t,
                                f"watch {ev.action}", excerpt(m, key, ev.t, epoch))
                    )
                    break
            else:
                if shown:
                    out.append(
                        Anomaly("shown after it was gone (watch)", m.label, key, since,
                                "still visible", excerpt(m, key, since, epoch))
                    )
            present = False
            for t, now in _view_presence(m, key, until):
                if t <= since:
                    present = now
                    continue
                if now:
                    out.append(
                        Anomaly("shown after it was gone (view)", m.label, key, t, "polled view shows it",
                                excerpt(m, key, t, epoch))
                    )
                    break
            else:
                if present:
                    out.append(
                        Anomaly("shown after it was gone (view)", m.label, key, since,
                                "still visible in the polled view", excerpt(m, key, since, epoch))
                    )
    return out


def false_disappearances(
    members: Iterable[MemberProc],
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
    m: MemberProc, expected: frozenset[Key], since: float, until: float
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
        if last_sample is not None and sample.visible != last_sample.visible and sample.t > since:
            last_change = sample.t
        last_sample = sample
    by_poll = last_change - since if last_sample is not None and last_sample.visible == expected else None
    return by_watch, by_poll


def alive_settle_time(m: MemberProc, names: Sequence[str], since: float, until: float) -> float | None:
    """Seconds from ``since`` until ``m`` last changed to seeing exactly ``names`` alive (and stayed)."""
    want = set(names)
    last_alive: set[str] | None = None
    last_change = since
    for sample in m.views:
        if sample.t > until:
            break
        alive = {n for n, s in sample.states.items() if s == "alive"}
        if last_alive is not None and alive != last_alive and sample.t > since:
            last_change = sample.t
        last_alive = alive
    return last_change - since if last_alive == want else None


def render(anomalies: Sequence[Anomaly], epoch: float, limit: int = 12) -> str:
    text = "\n".join(a.render(epoch) for a in anomalies[:limit])
    if len(anomalies) > limit:
        text += f"\n... and {len(anomalies) - limit} more"
    return text
