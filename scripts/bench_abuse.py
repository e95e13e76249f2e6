#!/usr/bin/env python3
"""Attack a member's stream port on loopback and measure what it costs: memory and availability.

A victim member runs in its own process (``tests/integration/abuse.py``) with
one peer process joined through it; attackers connect from 127.0.0.2. Prints
one JSON object:

* ``frames_16mib`` / ``frames_largest``: 128 connections, each announcing a
  16 MiB frame (or the largest frame a member accepts, one sealed 64 KiB
  chunk) and sending it minus one byte, reconnecting whenever closed, for
  ``--seconds``: the victim's RSS before, at its peak (sampled every 0.1 s),
  and ``--settle`` seconds after, in MiB; bytes the attackers got to send;
* ``frames_largest_128_sources``: the same from 128 source addresses
  (127.0.0.2 to 127.0.0.129), one connection each, so no per-source quota
  applies and every stream slot holds a frame;
* ``flood``: ``--idle`` idle connections held (reopened when closed) plus a
  slowloris opening ``--loris-rate`` connections a second, each sending one
  byte a second, for ``--seconds``; meanwhile ``--joins`` members join
  through the victim one after another: each join's time (``join_s``), and
  the push-pulls the victim completed during the attack.

Usage::

    python scripts/bench_abuse.py [--seconds 60] [--idle 5000] [--joins 10] [--json]

Run from the repository root (Linux: reads ``/proc``, binds 127.0.0.2).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
from typing import Any

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gossipreg.core import chunks
from gossipreg.registry import open_registry
from tests.integration.abuse import Victim, big_frames, idle_flood, slowloris
from tests.integration.helpers import FAST, KEY


async def _peak(victim: Victim, out: list[float]) -> None:
    while True:
        out[0] = max(out[0], victim.rss_mib())
        await trio.sleep(0.1)


async def frames(announced: int, seconds: float, settle: float, sources: int = 1) -> dict[str, Any]:
    async with Victim.start() as victim:
        await trio.sleep(1.0)
        before = victim.rss_mib()
        peak = [before]
        counts: collections.Counter[str] = collections.Counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_peak, victim, peak)
            await big_frames(victim.address, connections=128, announced=announced, seconds=seconds,
                             stats=counts, sources=sources)
            nursery.cancel_scope.cancel()
        await trio.sleep(settle)
        after = victim.rss_mib()
        stats = (await victim.stats())["stats"]
        return {
            "announced_bytes": announced,
            "sources": sources,
            "rss_mib": {"before": round(before, 1), "peak": round(peak[0], 1), "after": round(after, 1)},
            "rss_increase_mib": {"peak": round(peak[0] - before, 1), "after": round(after - before, 1)},
            "attacker_connections": counts["connections"],
            "attacker_bytes_sent": counts["bytes"],
            "victim": {k: stats[k] for k in ("driver_stream_errors", "driver_streams_auth_timeouts",
                                             "driver_streams_refused_source", "driver_streams_evicted",
                                             "stream_messages_received")},
        }


async def flood(idle: int, loris_rate: float, seconds: float, joins: int) -> dict[str, Any]:
    async with Victim.start() as victim, Victim.start(
        f"{victim.address[0]}:{victim.address[1]}", name="peer"
    ):
        seed = f"{victim.address[0]}:{victim.address[1]}"
        counts: collections.Counter[str] = collections.Counter()
        join_s: list[float] = []
        failures = 0
        before = (await victim.stats())["stats"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: idle_flood(victim.address, connections=idle, seconds=seconds,
                                                  stats=counts))
            nursery.start_soon(lambda: slowloris(victim.address, per_second=loris_rate, seconds=seconds,
                                                 stats=counts))
            with trio.move_on_after(30):
                while counts["connections"] < idle:  # noqa: ASYNC110 - counted by the attack tasks
                    await trio.sleep(0.1)
            for i in range(joins):
                start = time.monotonic()
                try:
                    async with open_registry("127.0.0.1:0", [seed], name=f"joiner-{i}", keyring=KEY,
                                             config=FAST, timeout=10):
                        join_s.append(time.monotonic() - start)
                except Exception:
                    failures += 1
                await trio.sleep(0.5)
            after = (await victim.stats())["stats"]
            nursery.cancel_scope.cancel()
        return {
            "idle_connections": idle,
            "slowloris_per_second": loris_rate,
            "attacker_connections": counts["connections"],
            "joins": len(join_s),
            "join_failures": failures,
            "join_s": {
                "median": round(statistics.median(join_s), 3) if join_s else None,
                "max": round(max(join_s), 3) if join_s else None,
            },
            "victim_push_pulls_during": (after["push_pulls_completed"] - before["push_pulls_completed"]),
            "victim": {k: after[k] for k in ("driver_streams_refused_source", "driver_streams_evicted",
                                             "driver_streams_auth_timeouts", "driver_streams_refused_limit")},
        }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--loris-rate", type=float, default=13.0)
    parser.add_argument("--joins", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = {
        "frames_16mib": await frames(16 * 1024 * 1024 - 1, args.seconds, args.settle),
        "frames_largest": await frames(chunks.MAX_FRAME - 1, args.seconds, args.settle),
        "frames_largest_128_sources": await frames(chunks.MAX_FRAME - 1, args.seconds, args.settle, 128),
        "flood": await flood(args.idle, args.loris_rate, args.seconds, args.joins),
    }
    print(json.dumps(out, indent=None if args.json else 2))


if __name__ == "__main__":
    trio.run(main)
