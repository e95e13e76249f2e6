"""``python -m simulations run ...``: one measured run of a simulated cluster.

See :mod:`simulations.scenario` for the timeline and the meaning of every
reported figure, and ``python -m simulations run --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .scenario import PROFILES, RunParams, run

__all__ = ["main"]


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _latency(text: str) -> tuple[float, float]:
    parts = text.split(":")
    try:
        values = [float(x) for x in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI in milliseconds, got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not 0 <= values[0] <= values[1]:
        raise argparse.ArgumentTypeError(f"expected LO:HI with 0 <= LO <= HI, got {text!r}")
    return values[0], values[1]


def _positive_int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m simulations",
        description="Deterministic discrete-event simulations of gossipreg clusters "
        "(real NodeCores on a virtual clock over a simulated network).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "run",
        help="run the standard measured scenario and report",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Members m0000..m(N-1) all join through m0000 at t=0; the run waits until every "
            "member sees all N alive. One second later R services are registered (0.1 s apart, "
            "by random members) and timed until every live member holds them. 5 s after the "
            "last registration M random members (never m0000) are crashed, 1 s apart, and "
            "timed until first suspected and until declared dead by every live member. The "
            "last --idle-window seconds are measured as idle traffic. At the end the live "
            "members' catalogs are compared. Same seed, same run: see trace_hash."
        ),
        epilog=(
            "Reported (JSON): join_converged_s; registration_spread_s {n, complete, p50, p99, max}; "
            "detection_s {crashes: [{member, crashed_at, first, all}], first, all}; false_dead "
            "(death declarations about members whose process was up, not refuted by the end); "
            "false_dead_events (all of them); suspicions, false_suspicions; views_equal (records() "
            "identical on every live member); visible_views_equal; messages_per_node_per_s and "
            "bytes_per_node_per_s (datagrams + stream messages sent, per live member per virtual "
            "second, whole run); idle {window_s, quiet, messages_per_node_per_s, "
            "bytes_per_node_per_s}; network counters; trace_hash; wall_seconds; params. "
            "Unfinished measurements are null."
        ),
    )
    r.add_argument("--nodes", type=lambda t: _positive_int(t, 2), default=20, metavar="N",
                   help="number of members")
    r.add_argument("--seconds", type=_seconds, default=60.0, metavar="S",
                   help="virtual seconds to run, joins included")
    r.add_argument("--seed", type=int, default=0, metavar="K", help="seed of every random choice")
    r.add_argument("--loss", type=_probability, default=0.0, metavar="P",
                   help="probability that a datagram is lost (streams are reliable)")
    r.add_argument("--duplicate", type=_probability, default=0.0, metavar="P",
                   help="probability that a datagram is delivered twice")
    r.add_argument("--latency-ms", type=_latency, default=(1.0, 5.0), metavar="LO:HI",
                   help="one-way link latency, uniform in [LO, HI] milliseconds (or one value)")
    r.add_argument("--crash", type=lambda t: _positive_int(t, 0), default=0, metavar="M",
                   help="members crashed mid-run (after the registrations)")
    r.add_argument("--registrations", type=lambda t: _positive_int(t, 0), default=10, metavar="R",
                   help="services registered mid-run (after the join converged)")
    r.add_argument("--profile", choices=PROFILES, default="lan",
                   help="protocol parameter profile (memberlist's LAN, WAN or local defaults)")
    r.add_argument("--push-pull-interval", type=_seconds, default=None, metavar="SECONDS",
                   help="override the profile's anti-entropy interval")
    r.add_argument("--no-eager-push", dest="eager_push", action="store_false",
                   help="disable eager push: fresh updates wait for the next gossip round"
                   "%(default).0s")  # (no "default: True" for a switch that turns something off)
    r.add_argument("--no-crypto", dest="crypto", action="store_false",
                   help="run plaintext instead of sealing with AES-GCM (faster for large runs)%(default).0s")
    r.add_argument("--idle-window", type=_seconds, default=None, metavar="W",
                   help="length of the final quiet window measured as idle traffic "
                   "(default: min(10, S/4))")
    r.add_argument("--json", action="store_true",
                   help="print the report as one JSON object on one line (default: a readable summary)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    params = RunParams(
        nodes=args.nodes,
        seconds=args.seconds,
        seed=args.seed,
        loss=args.loss,
        duplicate=args.duplicate,
        latency_ms=args.latency_ms,
        crash=args.crash,
        registrations=args.registrations,
        profile=args.profile,
        eager_push=args.eager_push,
        crypto=args.crypto,
        idle_window=args.idle_window,
        push_pull_interval=args.push_pull_interval,
    )
    try:
        report = run(params)
    except ValueError as exc:
        print(f"python -m simulations run: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    else:
        print(summary(report))
    return 0


def summary(report: dict[str, Any]) -> str:
    """A few readable lines from a report."""
    p = report["params"]
    spread = report["registration_spread_s"]
    det = report["detection_s"]
    idle = report["idle"]
    lines = [
        f"{p['nodes']} members, {p['seconds']:g} s virtual, seed {p['seed']}, profile {p['profile']}, "
        f"loss {p['loss']:g}, latency {p['latency_ms'][0]:g}-{p['latency_ms'][1]:g} ms",
        f"join converged:     {report['join_converged_s']} s",
        f"registration spread ({spread['complete']}/{spread['n']}): p50 {spread['p50']} s, "
        f"p99 {spread['p99']} s, max {spread['max']} s",
        f"detection ({det['all']['complete']}/{det['all']['n']} complete): "
        f"first p50 {det['first']['p50']} s, all p50 {det['all']['p50']} s, all max {det['all']['max']} s",
        f"false deaths:       {report['false_dead']} unrefuted, {report['false_dead_events']} in all",
        f"views equal:        {report['views_equal']} (visible: {report['visible_views_equal']})",
        f"traffic:            {report['messages_per_node_per_s']} msg/node/s, "
        f"{report['bytes_per_node_per_s']} B/node/s",
        f"idle {idle['window_s']}{'' if idle['quiet'] else ' (not quiet)'}: "
        f"{idle['messages_per_node_per_s']} msg/node/s, {idle['bytes_per_node_per_s']} B/node/s",
        f"trace {report['trace_hash'][:16]}, {report['wall_seconds']} s wall",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
