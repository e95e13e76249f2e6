#!/usr/bin/env python3
"""Benchmark a real gossipreg cluster on loopback: join, spread, failure detection, idle cost.

Runs ``--nodes`` members on 127.0.0.1 (UDP + TCP, keyring encryption), spread
over ``--processes`` OS processes (1, the default, runs them all in this trio
process), and prints one JSON object with ``--json`` (a short summary
otherwise):

* ``join_converged_s``: from the moment every member but the seed starts
  joining through the seed, at once, until every member sees ``N`` alive;
* ``registration_spread_s`` {p50, p99, max}: from ``register`` on a random
  member until every member's watcher has reported the new service, over
  ``--registrations`` sequential registrations;
* ``idle_cpu_percent_per_node``: CPU time (``time.process_time``) of the
  member processes over an idle window of ``--seconds``, per member, as a
  percentage of the window;
* ``rss_mb_per_process``: mean resident set size of the member processes
  (``rss_mb_processes`` lists each);
* ``detection_s`` {first, all}: after an abrupt stop, until the first
  surviving member, then every one, declares the stopped member(s) dead. With
  several processes the last process is killed with SIGKILL (its
  ``N / P`` members stop at once); with one, one member's sockets go silent
  and its task is cancelled, without a leave.

Timestamps come from ``time.monotonic`` (one clock for every process on the
host). Member processes are this script run with ``--worker``, driven by
JSON lines on stdin/stdout. Usage::

    python scripts/bench_cluster.py --nodes 30 [--processes 3] [--seconds 10]
        [--profile lan|local] [--registrations 20] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from gossipreg.core.config import Config
from gossipreg.core.model import Node, Service
from gossipreg.registry import AsyncRegistry, open_registry
from gossipreg.runtime.transport import KillableTransport, NetTransport, Transport

Event = dict[str, Any]
Emit = Callable[[Event], None]

SCRIPT = str(Path(__file__).resolve())
PHASE_LIMIT = 120.0  # seconds any one phase may take before the benchmark gives up
POLL = 0.01  # seconds between two looks at member views (only where no event exists)


def _config(profile: str) -> Config:
    return Config.local() if profile == "local" else Config.lan()


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# ====================================================================== worker side


@dataclass
class _Member:
    name: str
    reg: AsyncRegistry | None = None
    transport: KillableTransport | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stop: trio.Event = field(default_factory=trio.Event)
    seen: set[str] = field(default_factory=set)


class Worker:
    """Members of one process, driven by commands; reports events through ``emit``."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.members: dict[str, _Member] = {}
        self.total = 0
        self.key = b""
        self.config = Config.lan()
        self.seen_by: dict[str, set[str]] = {}

    async def serve(self, commands: trio.MemoryReceiveChannel[Event]) -> None:
        """Run commands until ``stop`` (or the channel closes), then stop the members gracefully."""
        async with trio.open_nursery() as members, trio.open_nursery() as tasks:
            async for cmd in commands:
                op = cmd["cmd"]
                if op == "stop":
                    break
                if op == "configure":
                    self.key = bytes.fromhex(cmd["key"])
                    self.config = _config(cmd["profile"])
                    self.total = cmd["nodes"]
                    self.emit({"ev": "configured"})
                elif op == "start":
                    silenceable = cmd.get("silenceable", [])
                    tasks.start_soon(self._start, members, cmd["names"], cmd["seeds"], silenceable)
                elif op == "register":
                    await self._register(cmd["member"], cmd["service"])
                elif op == "idle":
                    tasks.start_soon(self._idle, cmd["seconds"])
                elif op == "crash":
                    await self._crash(cmd["member"])
                elif op == "watch_dead":
                    tasks.start_soon(self._watch_dead, cmd["names"])
                else:
                    raise ValueError(f"unknown command {op!r}")
            tasks.cancel_scope.cancel()
            for m in self.members.values():
                m.stop.set()  # each leaves gracefully
            members.cancel_scope.deadline = trio.current_time() + 5

    async def _start(self, nursery: trio.Nursery, names: Sequence[str], seeds: Sequence[str],
                     silenceable: Sequence[str]) -> None:
        started = trio.Event()
        pending = len(names)

        def one_started() -> None:
            nonlocal pending
            pending -= 1
            if pending == 0:
                started.set()

        for name in names:
            member = _Member(name)
            self.members[name] = member
            nursery.start_soon(self._run_member, member, seeds, name in silenceable, one_started)
        await started.wait()
        self.emit({"ev": "started", "members": {n: list(self._reg(n).address) for n in names}})
        if seeds:  # a joining batch: report when every member here sees the whole cluster
            await self._until(lambda: all(self._alive(m) == self.total for m in self._regs()))
            self.emit({"ev": "converged", "t": time.monotonic()})

    async def _run_member(self, member: _Member, seeds: Sequence[str], silenceable: bool,
                          started: Callable[[], None]) -> None:
        transport: Transport | None = None
        with member.scope:
            if silenceable:
                member.transport = KillableTransport(await NetTransport.bind("127.0.0.1", 0))
                transport = member.transport
            async with open_registry(
                "127.0.0.1:0", seeds, name=member.name, keyring=self.key, config=self.config,
                transport=transport, timeout=60,
            ) as reg:
                member.reg = reg
                started()
                async with trio.open_nursery() as inner, reg.watch(buffer=65536) as watcher:
                    inner.start_soon(self._watch, member, watcher)
                    await member.stop.wait()
                    inner.cancel_scope.cancel()
        if member.transport is not None:
            await member.transport.aclose()

    async def _watch(self, member: _Member, watcher: Any) -> None:
        async for result in watcher:
            name = result.service.name
            if result.action != "create" or name in member.seen:
                continue
            member.seen.add(name)
            seen = self.seen_by.setdefault(name, set())
            seen.add(member.name)
            if len(seen) == len(self.members):
                self.emit({"ev": "seen_all", "service": name, "t": time.monotonic()})

    async def _register(self, name: str, service: str) -> None:
        reg = self._reg(name)
        t = time.monotonic()
        await reg.register(Service(service, "1.0.0", nodes=(Node(f"{service}-node", "127.0.0.1:8080"),)))
        self.emit({"ev": "registered", "service": service, "t": t})

    async def _idle(self, seconds: float) -> None:
        before = self._suspicions()
        cpu0, wall0 = time.process_time(), time.monotonic()
        await trio.sleep(seconds)
        cpu1, wall1 = time.process_time(), time.monotonic()
        self.emit({
            "ev": "idle", "cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, "members": len(self.members),
            "rss_mb": _rss_mb(), "suspicions": self._suspicions() - before,
        })

    async def _crash(self, name: str) -> None:
        member = self.members.pop(name)
        assert member.transport is not None, "only members started silenceable can crash"
        member.transport.kill()
        member.scope.cancel()
        self.emit({"ev": "crashed", "member": name, "t": time.monotonic()})

    async def _watch_dead(self, names: Sequence[str]) -> None:
        victims = set(names)
        first: float | None = None
        regs = [m.reg for m in self.members.values() if m.reg is not None and m.name not in victims]
        while True:
            done = 0
            for reg in regs:
                dead = {m.name for m in reg.members() if m.name in victims and m.state == "dead"}
                if dead and first is None:
                    first = time.monotonic()
                    self.emit({"ev": "dead_first", "t": first})
                done += dead == victims
            if done == len(regs):
                self.emit({"ev": "dead_all", "t": time.monotonic()})
                return
            await trio.sleep(POLL)

    # -- helpers

    def _reg(self, name: str) -> AsyncRegistry:
        reg = self.members[name].reg
        assert reg is not None
        return reg

    def _regs(self) -> list[AsyncRegistry]:
        return [m.reg for m in self.members.values() if m.reg is not None]

    @staticmethod
    def _alive(reg: AsyncRegistry) -> int:
        return sum(1 for m in reg.members() if m.state == "alive")

    def _suspicions(self) -> int:
        return sum(r.statistics()["members_suspicions"] for r in self._regs())

    @staticmethod
    async def _until(predicate: Callable[[], bool]) -> None:
        with trio.fail_after(PHASE_LIMIT):
            while not predicate():  # noqa: ASYNC110 - member views change on their own timers
                await trio.sleep(POLL)


async def worker_main() -> None:
    """``--worker``: commands as JSON lines on stdin, events as JSON lines on stdout."""

    def emit(ev: Event) -> None:
        sys.stdout.write(json.dumps(ev) + "\n")
        sys.stdout.flush()

    send, recv = trio.open_memory_channel[Event](1024)
    worker = Worker(emit)

    async def read_stdin() -> None:
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        buf = b""
        async with stdin, send:
            while chunk := await stdin.receive_some(65536):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        await send.send(json.loads(line))
            await send.send({"cmd": "stop"})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_stdin)
        await worker.serve(recv)
        nursery.cancel_scope.cancel()


# ====================================================================== controller side


class _Handle:
    """The controller's end of one worker: ``send`` commands; events land in ``Bench.on_event``."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.members: list[str] = []
        self.process: trio.Process | None = None
        self._local: trio.MemorySendChannel[Event] | None = None

    async def send(self, cmd: Event) -> None:
        if self._local is not None:
            await self._local.send(cmd)
        else:
            assert self.process is not None
            assert self.process.stdin is not None
            await self.process.stdin.send_all((json.dumps(cmd) + "\n").encode())


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.handles: list[_Handle] = []
        self.events: list[tuple[int, Event]] = []
        self.changed = trio.Event()

    def on_event(self, index: int, ev: Event) -> None:
        self.events.append((index, ev))
        self.changed.set()

    async def wait_for(self, what: str, predicate: Callable[[], Any]) -> Any:
        with trio.move_on_after(PHASE_LIMIT):
            while not (result := predicate()):
                self.changed = trio.Event()
                await self.changed.wait()
            return result
        raise RuntimeError(f"timed out after {PHASE_LIMIT:g} s waiting for {what}")

    def find(self, kind: str, **match: Any) -> list[tuple[int, Event]]:
        return [(i, e) for i, e in self.events
                if e["ev"] == kind and all(e.get(k) == v for k, v in match.items())]

    # -- workers

    async def spawn(self, nursery: trio.Nursery) -> None:
        args = self.args
        for index in range(args.processes):
            handle = _Handle(index)
            self.handles.append(handle)
            if args.processes == 1:
                send, recv = trio.open_memory_channel[Event](1024)
                handle._local = send
                worker = Worker(partial(self.on_event, index))
                nursery.start_soon(worker.serve, recv)
            else:
                handle.process = await trio.lowlevel.open_process(
                    [sys.executable, SCRIPT, "--worker"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                )
                nursery.start_soon(self._read, handle)

    async def _read(self, handle: _Handle) -> None:
        assert handle.process is not None
        assert handle.process.stdout is not None
        buf = b""
        async with handle.process.stdout as out:
            async for chunk in out:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self.on_event(handle.index, json.loads(line))

    async def shutdown(self) -> None:
        with trio.CancelScope(shield=True):
            for h in self.handles:
                with trio.move_on_after(2):
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        await h.send({"cmd": "stop"})
            for h in self.handles:
                if h.process is None:
                    continue
                with trio.move_on_after(10):
                    await h.process.wait()  # the members leave gracefully
                if h.process.returncode is None:
                    h.process.kill()
                    await h.process.wait()
                if h.process.stdin is not None:
                    await h.process.stdin.aclose()

    # -- the benchmark

    async def run(self) -> dict[str, Any]:
        args = self.args
        n, p = args.nodes, args.processes
        names = [f"bench-{i:03d}" for i in range(n)]
        # Member i lives in process i % p; the seed (member 0) in process 0.
        for i, name in enumerate(names):
            self.handles[i % p].members.append(name)
        key = os.urandom(32).hex()
        for h in self.handles:
            await h.send({"cmd": "configure", "key": key, "profile": args.profile, "nodes": n})
        await self.wait_for("workers to start", lambda: len(self.find("configured")) == p)

        victims = self.handles[-1].members if p > 1 else [names[-1]]
        seed = names[0]
        await self.handles[0].send({"cmd": "start", "names": [seed], "seeds": []})
        started = await self.wait_for("the seed", lambda: self.find("started"))
        host, port = started[0][1]["members"][seed]
        seed_addr = f"{host}:{port}"

        # Join: everyone but the seed at once.
        t0 = time.monotonic()
        for h in self.handles:
            joiners = [m for m in h.members if m != seed]
            await h.send({"cmd": "start", "names": joiners, "seeds": [seed_addr],
                          "silenceable": [v for v in victims if v in joiners] if p == 1 else []})
        conv = await self.wait_for("the join to converge",
                                   lambda: len(c := self.find("converged")) == p and c)
        join_converged = max(e["t"] for _, e in conv) - t0

        # Registrations, one at a time, each from a random member.
        rng = random.Random(args.rng_seed)
        where = {m: h for h in self.handles for m in h.members}
        spreads = []
        for i in range(args.registrations):
            service = f"svc-{i}"
            owner = rng.choice(names)
            await where[owner].send({"cmd": "register", "member": owner, "service": service})

            def spread_done(service: str = service) -> list[float] | None:
                seen = self.find("seen_all", service=service)
                registered = self.find("registered", service=service)
                if len(seen) < p or not registered:
                    return None
                return [float(max(e["t"] for _, e in seen) - registered[0][1]["t"])]

            spreads += await self.wait_for(f"{service} everywhere", spread_done)
            await trio.sleep(0.05)

        # Idle: let the last broadcasts die out, then measure.
        await trio.sleep(args.settle)
        for h in self.handles:
            await h.send({"cmd": "idle", "seconds": args.seconds})
        idle = await self.wait_for("the idle window", lambda: len(x := self.find("idle")) == p and x)
        cpu = sum(e["cpu_s"] for _, e in idle)
        wall = max(e["wall_s"] for _, e in idle)
        rss = [round(e["rss_mb"], 1) for _, e in sorted(idle, key=lambda x: x[0])]

        # Abrupt stop.
        survivors = [h for h in self.handles if p == 1 or h is not self.handles[-1]]
        for h in survivors:
            await h.send({"cmd": "watch_dead", "names": victims})
        if p > 1:
            proc = self.handles[-1].process
            assert proc is not None
            t_kill = time.monotonic()
            proc.send_signal(signal.SIGKILL)
        else:
            await self.handles[0].send({"cmd": "crash", "member": victims[0]})
            crashed = await self.wait_for("the crash", lambda: self.find("crashed"))
            t_kill = crashed[0][1]["t"]
        dead_all = await self.wait_for(
            "every survivor to declare the stopped members dead",
            lambda: len(x := self.find("dead_all")) == len(survivors) and x,
        )
        first = min(e["t"] for _, e in self.find("dead_first")) - t_kill
        all_ = max(e["t"] for _, e in dead_all) - t_kill

        return {
            "nodes": n,
            "processes": p,
            "profile": args.profile,
            "seconds": args.seconds,
            "registrations": args.registrations,
            "encryption": "keyring (AES-256-GCM)",
            "join_converged_s": round(join_converged, 4),
            "registration_spread_s": {
                "p50": round(_percentile(spreads, 50), 4),
                "p99": round(_percentile(spreads, 99), 4),
                "max": round(max(spreads), 4),
            },
            "detection_s": {"first": round(first, 3), "all": round(all_, 3), "stopped_members": len(victims)},
            "idle_cpu_percent_per_node": round(100 * cpu / wall / n, 4),
            "idle_suspicions": sum(e["suspicions"] for _, e in idle),
            "rss_mb_per_process": round(sum(rss) / len(rss), 1),
            "rss_mb_processes": rss,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        }


def _percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


async def controller_main(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args)
    async with trio.open_nursery() as nursery:
        try:
            await bench.spawn(nursery)
            result = await bench.run()
        finally:
            await bench.shutdown()
        nursery.cancel_scope.cancel()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="idle window for the CPU measurement")
    parser.add_argument("--profile", choices=["lan", "local"], default="lan")
    parser.add_argument("--registrations", type=int, default=20)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of quiet before the idle window")
    parser.add_argument("--rng-seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        trio.run(worker_main)
        return 0
    if args.nodes < 2 or not 1 <= args.processes <= args.nodes - 1:
        parser.error("need --nodes >= 2 and 1 <= --processes < --nodes (the seed's process survives)")
    if args.registrations < 1 or args.seconds <= 0:
        parser.error("need --registrations >= 1 and --seconds > 0")
    result = trio.run(controller_main, args)
    text = json.dumps(result, indent=None if args.json else 2)
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        print(text)
    else:
        spread = result["registration_spread_s"]
        print(f"{args.nodes} members in {args.processes} process(es), {args.profile} profile")
        print(f"  join converged        {result['join_converged_s']:.3f} s")
        print(f"  registration spread   p50 {spread['p50']:.4f} s  p99 {spread['p99']:.4f} s  "
              f"max {spread['max']:.4f} s")
        print(f"  detection             first {result['detection_s']['first']:.2f} s  "
              f"all {result['detection_s']['all']:.2f} s")
        print(f"  idle CPU per member   {result['idle_cpu_percent_per_node']:.3f} %")
        print(f"  RSS per process       {result['rss_mb_per_process']:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
