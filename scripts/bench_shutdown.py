"""How long a process stopped with SIGTERM stays in the other members' view.

A child process embeds a sync ``gossipreg.Registry`` (default ``Config.lan()``),
joins ``--peers`` members of this process and registers one service; this
process sends it SIGTERM and measures, on every peer, the time until the
service is gone from ``get_service`` and the child is no longer alive in
``members()``. Runs ``--runs`` times with ``handle_signals`` on (the default:
the child leaves) and, with ``--compare``, with it off (the child is killed
before it can leave, so the peers notice only by failure detection).

Prints JSON: per mode the child's exit codes and, over runs and peers, the
seconds until gone (min, median, max). Example::

    python scripts/bench_shutdown.py --peers 3 --runs 5 --compare
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gossipreg
from gossipreg import NotFoundError

KEY = bytes(range(32))
ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import sys, time, gossipreg
reg = gossipreg.Registry("127.0.0.1:0", sys.argv[1].split(","), name=sys.argv[2], keyring=bytes(range(32)),
                         handle_signals=sys.argv[3] == "on")
reg.register(gossipreg.Service("bench-svc", "1", nodes=(gossipreg.Node(sys.argv[2], "10.0.0.1:1"),)))
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def lists(peer: gossipreg.Registry, child: str) -> bool:
    """Whether ``peer`` lists the child's node of the service."""
    try:
        return any(n.id == child for s in peer.get_service("bench-svc") for n in s.nodes)
    except NotFoundError:
        return False


def gone(peer: gossipreg.Registry, child: str) -> bool:
    """Whether ``peer`` neither lists the child's node nor holds the child alive or suspect."""
    alive = any(m.name == child and m.state in ("alive", "suspect") for m in peer.members())
    return not lists(peer, child) and not alive


def one_run(peers: list[gossipreg.Registry], mode: str, run: int, limit: float) -> tuple[int, list[float]]:
    child = f"child-{mode}-{run}"
    seeds = ",".join(f"{p.address[0]}:{p.address[1]}" for p in peers)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIPREG_")}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, seeds, child, mode], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout is None or proc.stdout.readline() != "ready\n":
            raise RuntimeError("the child did not start")
        deadline = time.monotonic() + 10
        while not all(lists(p, child) for p in peers):
            if time.monotonic() > deadline:
                raise RuntimeError("the child's registration did not reach every peer")
            time.sleep(0.005)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        seen: dict[int, float] = {}
        while len(seen) < len(peers) and time.monotonic() - start < limit:
            for i, p in enumerate(peers):
                if i not in seen and gone(p, child):
                    seen[i] = time.monotonic() - start
            time.sleep(0.002)
        proc.wait(timeout=limit)
        return proc.returncode, [seen.get(i, float("inf")) for i in range(len(peers))]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def summary(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 4), "median": round(statistics.median(values), 4),
            "max": round(max(values), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare", action="store_true", help="also run with handle_signals=False")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds to wait for the peers to notice")
    args = parser.parse_args()
    peers = [gossipreg.Registry("127.0.0.1:0", name="peer-0", keyring=KEY, handle_signals=False)]
    seed = [f"{peers[0].address[0]}:{peers[0].address[1]}"]
    peers += [gossipreg.Registry("127.0.0.1:0", seed, name=f"peer-{i}", keyring=KEY, handle_signals=False)
              for i in range(1, args.peers)]
    report: dict[str, object] = {"peers": args.peers, "runs": args.runs, "config": "Config.lan()"}
    try:
        for mode in ("on", "off") if args.compare else ("on",):
            codes, times = [], []
            for run in range(args.runs):
                code, seconds = one_run(peers, mode, run, args.limit)
                codes.append(code)
                times.extend(seconds)
            report[f"handle_signals_{mode}"] = {"exit_codes": sorted(set(codes)),
                                                "seconds_until_gone": summary(times)}
    finally:
        for p in peers:
            p.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
