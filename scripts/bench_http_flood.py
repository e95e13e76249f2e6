"""Measure the agent's HTTP API under a connection flood.

Starts ``gossipreg agent --insecure`` in its own process (private state
directory, HTTP API on 127.0.0.1:0), then, from this process, holds
``--idle`` idle connections to the API (silent) and ``--partial`` ones that
send one byte and then nothing, each reopened as soon as the agent closes it,
and ``--slow`` slowloris connections (request heads at 1 byte/s,
a new connection as soon as one is closed). Meanwhile a probe sends
``GET /v1/health`` and, every fifth probe, an authorised
``PUT /v1/services`` on fresh connections, one at a time, for
``--duration`` seconds, and records each answer and its latency.

Prints one JSON object: the probes' status counts and latency percentiles,
the flood's reconnections, the agent's counters from ``/v1/metrics`` and its
peak resident memory. Run from the repository root::

    python scripts/bench_http_flood.py --idle 5000 --slow 200 --duration 30
    python scripts/bench_http_flood.py --idle 2500 --partial 2500 --slow 200 --duration 30
    python scripts/bench_http_flood.py --idle 128 --slow 0 --duration 30   # 128 idle, reopened

Only loopback is touched; every loop is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h11
import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.agent.helpers import request, service


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _peak_rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) if m else -1


async def _flood(args: argparse.Namespace, port: int, token: str) -> dict[str, Any]:
    stats: dict[str, Any] = {"reopened": 0, "connect_errors": 0, "slow_connections": 0}
    probes: list[tuple[str, int, float]] = []
    failures: dict[str, int] = {}

    async def idle_client(first: bytes) -> None:
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                stats["connect_errors"] += 1
                await trio.sleep(0.1)
                continue
            async with stream:
                try:
                    await stream.send_all(first)
                    while await stream.receive_some(65536):
                        pass
                except trio.BrokenResourceError:
                    pass
            stats["reopened"] += 1

    async def slow_client() -> None:
        head = f"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                stats["connect_errors"] += 1
                await trio.sleep(0.1)
                continue
            stats["slow_connections"] += 1
            async with stream:
                try:
                    for byte in head[:-1]:
                        await stream.send_all(bytes([byte]))
                        await trio.sleep(1.0)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    async def probe() -> None:
        i = 0
        while True:
            i += 1
            kind = "register" if i % 5 == 0 else "health"
            started = time.perf_counter()
            try:
                with trio.fail_after(30):
                    if kind == "health":
                        reply = await request(port, "GET", "/v1/health")
                    else:
                        body = service("bench", f"b{i % 50}").to_dict()
                        reply = await request(port, "PUT", "/v1/services?ttl=60", json_body=body, token=token)
                status = reply.status
            except (
                OSError,
                trio.TooSlowError,
                AssertionError,
                trio.BrokenResourceError,
                h11.ProtocolError,
            ) as exc:
                status = 0  # no answer: the connection was refused, reset or closed
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            probes.append((kind, status, time.perf_counter() - started))

    async with trio.open_nursery() as nursery:
        for _ in range(args.idle):
            nursery.start_soon(idle_client, b"")
        for _ in range(args.partial):
            nursery.start_soon(idle_client, b"G")
        for _ in range(args.slow):
            nursery.start_soon(slow_client)
        await trio.sleep(args.warmup)
        nursery.start_soon(probe)
        await trio.sleep(args.duration)
        nursery.cancel_scope.cancel()

    out: dict[str, Any] = {"flood": stats, "probe_failures": failures}
    for kind in ("health", "register"):
        mine = [(s, t) for k, s, t in probes if k == kind]
        counts: dict[str, int] = {}
        for s, _ in mine:
            counts[str(s)] = counts.get(str(s), 0) + 1
        latencies = [t for s, t in mine if s == 200]
        out[kind] = {
            "sent": len(mine),
            "status": counts,
            "latency_s": {
                "p50": round(_percentile(latencies, 0.5), 3),
                "p95": round(_percentile(latencies, 0.95), 3),
                "max": round(max(latencies, default=float("nan")), 3),
            },
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=5000, help="idle connections, reopened when closed")
    parser.add_argument(
        "--partial",
        type=int,
        default=0,
        help="connections that send one byte, then nothing, reopened when closed",
    )
    parser.add_argument("--slow", type=int, default=200, help="slowloris connections (1 byte/s heads)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of probing")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of flood before probing")
    parser.add_argument("--backlog", type=int, help="the agent's listen backlog (default: HTTPLimits')")
    parser.add_argument("--serve-agent", type=int, metavar="BACKLOG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_agent is not None:
        _serve_agent(args.serve_agent)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = args.idle + args.partial + args.slow + 200
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))

    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "GOSSIPREG_STATE_DIR": state, "PYTHONUNBUFFERED": "1"}
        env.pop("GOSSIPREG_HTTP_TOKEN", None)
        env.pop("GOSSIPREG_HTTP_TOKEN_FILE", None)
        log_path = Path(state) / "agent.log"
        log_file = open(log_path, "w")  # noqa: SIM115 - closed in the finally below
        if args.backlog is None:
            command = [sys.executable, "-m", "gossipreg.cli", "agent", "--insecure", "--bind", "127.0.0.1:0"]
            command += ["--http", "127.0.0.1:0", "--log-json"]
        else:
            command = [sys.executable, os.path.abspath(__file__), "--serve-agent", str(args.backlog)]
        agent = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            port = None
            deadline = time.monotonic() + 30
            while port is None and time.monotonic() < deadline and agent.poll() is None:
                for line in log_path.read_text().splitlines():  # the agent's JSON log: its ready line
                    record = json.loads(line)
                    if record.get("event") == "agent.ready":
                        port = int(record["http"].rsplit(":", 1)[1])
                time.sleep(0.1)  # polling another process's log file, bounded by the deadline
            if port is None:
                raise SystemExit(f"the agent did not start: {log_path.read_text()}")
            token_file = Path(state) / "http-token"
            token = token_file.read_text().strip()
            result = trio.run(_flood, args, port, token)
            reply = trio.run(lambda: request(port, "GET", "/v1/metrics"))
            counters = {}
            for line in reply.body.decode().splitlines():
                if line.startswith("gossipreg_http_") and " " in line:
                    name, value = line.rsplit(" ", 1)
                    counters[name] = float(value)
            result["agent"] = {"metrics": counters, "peak_rss_kib": _peak_rss_kib(agent.pid)}
            result["args"] = vars(args)
            print(json.dumps(result, indent=2, sort_keys=True))
        finally:
            agent.terminate()
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                agent.kill()
            log_file.close()
            rest = log_path.read_text().splitlines()
            warnings = [line for line in rest if '"level": "warning"' in line][-2:]
            if warnings:
                print("agent warnings (last two):", *warnings, sep="\n  ", file=sys.stderr)


def _serve_agent(backlog: int) -> None:
    """Run an insecure agent on loopback with HTTP limits of ``backlog`` (JSON logs on stderr)."""
    from gossipreg.agent import Agent, AgentSettings, HTTPLimits, prepare
    from gossipreg.agent.logs import configure_logging

    configure_logging("info", json_lines=True)
    settings = AgentSettings(bind="127.0.0.1:0", http="127.0.0.1:0", insecure=True)
    agent = Agent(prepare(settings), limits=HTTPLimits(backlog=backlog))
    trio.run(agent.run_until_signal)


if __name__ == "__main__":
    main()
