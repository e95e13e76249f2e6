#!/usr/bin/env python3
"""Benchmark the simulator at scale: N members for S virtual seconds (issue #5, section 2).

Runs the standard measured scenario (``python -m simulations run``) warm-started
(one shared table snapshot, no join traffic) with ``--nodes`` members (default
10,000) for ``--seconds`` virtual seconds (default 60): ``--registrations``
services are registered one second in, ``--crash`` members are crashed five
seconds after the last registration. Prints one JSON object:

* ``wall_seconds``: real time of the whole run, bootstrap included;
* ``max_rss_mb``: peak resident memory of this process;
* ``wall_seconds_per_virtual_second``;
* the simulated outcome: registration spread, crash detection, false deaths,
  whether every live member's catalog is identical at the end, datagrams sent;
* ``budget``: the issue's limits (600 s of wall time, 4 GiB) and whether this
  run was within them.

AES-GCM sealing is on unless ``--no-crypto`` (named in the output).
The wall time depends on the machine and its load; quote it with the machine.
Usage::

    python scripts/bench_scale.py [--nodes 10000] [--seconds 60] [--no-crypto]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulations.run_command import RunParams, run

WALL_BUDGET_S = 600.0
RSS_BUDGET_MB = 4096.0


def main() -> int:
    """Run the benchmark and print its JSON report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--registrations", type=int, default=3)
    ap.add_argument("--crash", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-crypto", dest="crypto", action="store_false")
    args = ap.parse_args()
    report = run(RunParams(nodes=args.nodes, seconds=args.seconds, seed=args.seed, crash=args.crash,
                           registrations=args.registrations, crypto=args.crypto, warm=True))
    wall, rss = report["wall_seconds"], report["max_rss_mb"]
    out = {
        "nodes": args.nodes,
        "virtual_seconds": report["virtual_seconds"],
        "crypto": args.crypto,
        "start": "warm (Simulation.bootstrap)",
        "wall_seconds": wall,
        "wall_seconds_per_virtual_second": round(wall / report["virtual_seconds"], 3),
        "max_rss_mb": rss,
        "registration_spread_s": report["registration_spread_s"],
        "detection_s": {"first": report["detection_s"]["first"], "all": report["detection_s"]["all"]},
        "false_dead": report["false_dead"],
        "views_equal": report["views_equal"],
        "datagrams": report["network"]["datagrams"],
        "budget": {
            "wall_seconds": WALL_BUDGET_S,
            "rss_mb": RSS_BUDGET_MB,
            "within": wall <= WALL_BUDGET_S and (rss is None or rss <= RSS_BUDGET_MB),
        },
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
