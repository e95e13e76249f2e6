"""Prometheus text exposition (format 0.0.4) of a member's statistics.

Every counter of :meth:`gossipreg.AsyncRegistry.statistics` becomes
``gossipreg_<name>_total`` (a counter); the few that are current sizes
rather than running counts become gauges: member counts by state as
``gossipreg_members{state="..."}``, and ``gossipreg_incarnation``,
``gossipreg_awareness``, ``gossipreg_broadcast_queue``. The agent adds its own
gauges and counters (services, keyring size, HTTP answers by status code) and
an info metric naming the member.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

__all__ = ["CONTENT_TYPE", "Metric", "from_statistics", "render"]

#: Content type of the exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Statistics that are current values, with their gauge name (member states are handled apart).
_GAUGES = {
    "members_incarnation": ("incarnation", "This member's incarnation number."),
    "members_awareness": ("awareness", "Lifeguard local-health score (0 is healthy)."),
    "broadcast_queue": ("broadcast_queue", "Broadcasts queued for retransmission."),
}
_STATES = ("alive", "suspect", "dead", "left")
_NAME_OK = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

#: One metric: name, type, help text and samples ``(labels, value)``.
Metric = tuple[str, str, str, list[tuple[Mapping[str, str], float]]]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value)):
        return str(int(value))
    return repr(float(value))


def _sanitize(name: str) -> str:
    cleaned = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    return cleaned if _NAME_OK.fullmatch(cleaned) else f"_{cleaned}"


def from_statistics(stats: Mapping[str, int]) -> list[Metric]:
    """The metrics of a :meth:`~gossipreg.AsyncRegistry.statistics` mapping."""
    out: list[Metric] = []
    states: list[tuple[Mapping[str, str], float]] = [
        ({"state": s}, float(stats[f"members_{s}"])) for s in _STATES if f"members_{s}" in stats
    ]
    if states:
        out.append(("gossipreg_members", "gauge", "Members known, by state (this one included).", states))
    for key, value in sorted(stats.items()):
        if key in {f"members_{s}" for s in _STATES}:
            continue
        if key in _GAUGES:
            name, text = _GAUGES[key]
            out.append((f"gossipreg_{name}", "gauge", text, [({}, float(value))]))
        else:
            name = f"gossipreg_{_sanitize(key)}_total"
            out.append((name, "counter", f"statistics() counter {key}.", [({}, float(value))]))
    return out


def render(metrics: Iterable[Metric]) -> str:
    """The exposition text of ``metrics``: ``# HELP``, ``# TYPE`` and sample lines per metric."""
    lines: list[str] = []
    for name, kind, text, samples in metrics:
        lines.append(f"# HELP {name} {_escape_help(text)}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if labels:
                inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
                lines.append(f"{name}{{{inner}}} {_number(value)}")
            else:
                lines.append(f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"
