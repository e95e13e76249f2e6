"""Event-loop latency of an asyncio program reading gossipreg.aio at 10,000 calls/s.

A lag probe task sleeps 1 ms at a time and records by how much each sleep
overshoots; a load task wakes every millisecond and makes the ``get_service``
calls due at ``--rate`` calls per second. Phases, each ``--seconds`` long,
on one asyncio member of a small cluster (``--peers`` sync members in a
child process, ``--services`` services registered among them):

* ``baseline``: the registry is open, the load task wakes as often but makes no call;
* ``aio``: ``AsyncioRegistry.get_service`` (a read of the published snapshot);
* ``sync`` (with ``--compare-sync``): the thread-backed ``gossipreg.Registry.get_service``
  called from the loop, which waits for the member's thread on every call: what
  a read through a blocking thread hop would cost.

Prints JSON: per phase the probe's overshoot percentiles (ms) and the calls
per second achieved, and for each loaded phase the latency it adds over the
baseline (p50, p99, max), and the cost of one ``get_service`` call in a tight
loop (``get_service_us``). Example::

    python scripts/bench_aio.py --seconds 10 --compare-sync
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gossipreg
from gossipreg import Node, Service, aio

KEY = bytes(range(32))
TICK = 0.001


def peer_main(count: int, services: int) -> None:
    """The child process: ``count`` sync members sharing ``services`` registrations; prints the
    first member's address, then runs until its standard input closes."""
    registries: list[gossipreg.Registry] = []
    first = gossipreg.Registry("127.0.0.1:0", keyring=KEY, name="peer-0")
    registries.append(first)
    seed = f"{first.address[0]}:{first.address[1]}"
    registries.extend(
        gossipreg.Registry("127.0.0.1:0", seeds=[seed], keyring=KEY, name=f"peer-{i}")
        for i in range(1, count)
    )
    for i in range(services):
        reg = registries[i % count]
        node = Node(f"svc-{i}-{reg.name}", f"10.0.0.{i % 250}:80")
        reg.register(Service(f"svc-{i}", "1.0.0", nodes=(node,)))
    print(seed, flush=True)
    sys.stdin.read()
    for reg in registries:
        reg.close()


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99 and max of ``samples`` (seconds), in milliseconds."""
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 4),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 4),
        "max_ms": round(ordered[-1] * 1000, 4),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 4),
        "samples": len(ordered),
    }


async def phase(seconds: float, rate: float, call: Callable[[], object] | None) -> dict[str, object]:
    """Run the probe and the load task for ``seconds``; ``call`` is made ``rate`` times a second."""
    lags: list[float] = []
    stop = time.perf_counter() + seconds

    async def probe() -> None:
        while True:
            before = time.perf_counter()
            if before >= stop:
                return
            await asyncio.sleep(TICK)
            lags.append(time.perf_counter() - before - TICK)

    async def load() -> int:
        done = 0
        start = time.perf_counter()
        while True:
            now = time.perf_counter()
            if now >= stop:
                return done
            if call is not None:
                # The calls due by now; a backlog past 10 ms worth is dropped, not caught up.
                due = int((now - start) * rate) - done
                if due > rate / 100:
                    skipped = due - int(rate / 100)
                    start += skipped / rate
                    due -= skipped
                for _ in range(due):
                    call()
                done += max(due, 0)
            await asyncio.sleep(TICK)

    started = time.perf_counter()
    _, calls = await asyncio.gather(probe(), load())
    elapsed = time.perf_counter() - started
    return {"lag": percentiles(lags), "calls": calls, "calls_per_s": round(calls / elapsed)}


def added(loaded: dict[str, object], baseline: dict[str, object]) -> dict[str, float]:
    """The probe latency ``loaded`` adds over ``baseline``, per statistic (ms)."""
    a, b = loaded["lag"], baseline["lag"]
    assert isinstance(a, dict)
    assert isinstance(b, dict)
    return {f"added_{k}": round(a[k] - b[k], 4) for k in ("p50_ms", "p99_ms", "max_ms")}


async def arrived(list_services: Callable[[], list[Service]], count: int) -> None:
    """Wait (30 s at most) until ``count`` services are listed."""
    for _ in range(600):
        if len(list_services()) >= count:
            return
        await asyncio.sleep(0.05)
    raise SystemExit(f"only {len(list_services())} of {count} services arrived")


async def bench(args: argparse.Namespace, seed: str) -> dict[str, object]:
    async with aio.open_registry("127.0.0.1:0", seeds=[seed], keyring=KEY, name="bench") as reg:
        await arrived(reg.list_services, args.services)
        names = [f"svc-{i}" for i in range(args.services)]
        turn = iter(range(1 << 62))

        def aio_call() -> None:
            reg.get_service(names[next(turn) % len(names)])

        results: dict[str, object] = {
            "python": sys.version.split()[0],
            "loop": type(asyncio.get_running_loop()).__name__,
            "members": len(reg.members()),
            "services": args.services,
            "rate": args.rate,
            "seconds": args.seconds,
        }
        await phase(1.0, args.rate, aio_call)  # warm-up
        started = time.perf_counter()
        for _ in range(100_000):
            aio_call()
        results["get_service_us"] = round((time.perf_counter() - started) / 100_000 * 1e6, 3)
        baseline = await phase(args.seconds, args.rate, None)
        loaded = await phase(args.seconds, args.rate, aio_call)
        results["baseline"] = baseline
        results["aio"] = {**loaded, **added(loaded, baseline)}
        if args.compare_sync:
            with gossipreg.Registry("127.0.0.1:0", seeds=[seed], keyring=KEY, name="bench-sync") as sync:
                await arrived(sync.list_services, args.services)

                def sync_call() -> None:
                    sync.get_service(names[next(turn) % len(names)])

                baseline_sync = await phase(args.seconds, args.rate, None)
                loaded_sync = await phase(args.seconds, args.rate, sync_call)
            results["sync_baseline"] = baseline_sync
            results["sync"] = {**loaded_sync, **added(loaded_sync, baseline_sync)}
        return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--rate", type=float, default=10_000.0, help="get_service calls per second")
    parser.add_argument("--peers", type=int, default=3, help="other members, in a child process")
    parser.add_argument("--services", type=int, default=20, help="services registered by the peers")
    parser.add_argument("--compare-sync", action="store_true", help="also measure the sync Registry's reads")
    parser.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_main(args.peers, args.services)
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "--peer", "--peers", str(args.peers), "--services", str(args.services)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        seed = child.stdout.readline().strip()
        if not seed:
            raise SystemExit("the peer process did not start")
        results = asyncio.run(bench(args, seed))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
