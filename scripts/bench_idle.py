"""Idle cost of agent processes, the way a deployment runs them: one member per process.

Starts ``--agents`` ``gossipreg agent`` processes on loopback (encryption on,
the LAN profile), each joining the first, lets them settle for ``--warmup``
seconds, then reads every process's CPU time at the start and the end of
``--seconds`` and its resident memory (``VmRSS``, split into ``RssAnon``, the
process's own, and ``RssFile``, pages of the interpreter, the libraries and
the binary, which processes share) at the end. CPU time is the scheduler's
nanosecond count (``/proc/PID/task/*/schedstat``, every thread), where the
kernel has it: ``/proc/PID/stat`` counts in 10 ms ticks, too coarse for an
idle process (at 0.05 % of a core a minute is 3 ticks).
With ``--serf`` it does the same, in the same run, for as many ``serf agent``
processes (``apt-get install serf``), encryption on, so the two compare as a
ratio measured side by side. With ``--trio-floor RATE`` it also runs as many
processes that only import trio and wake ``RATE`` times a second
(``trio.sleep``, a deadline like the member's timer): the cost of the wake-ups
alone, which no member that wakes that often can go below. With ``--floors
RATE`` it runs as many processes of three more kinds, each waking ``RATE``
times a second and doing nothing else: ``floor_trio`` (``trio.sleep``, with
the core's three runtime dependencies imported: trio, msgpack and
cryptography's AES-GCM, so its RSS is the memory floor of any member too),
``floor_asyncio`` (``asyncio.sleep``, the same imports) and ``floor_sleep``
(``time.sleep`` in a bare interpreter): what an event loop's wake costs
against the system's own.

Prints JSON: per kind, each process's CPU (percent of one core) and RSS (MiB),
and their mean, median and max, and how often its threads were woken (voluntary
context switches per second). Example::

    python scripts/bench_idle.py --agents 10 --seconds 60 --serf
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def schedstat_available() -> bool:
    """Whether the kernel keeps per-task run times (``/proc/PID/schedstat``, CONFIG_SCHEDSTATS)."""
    return Path(f"/proc/{os.getpid()}/schedstat").exists()


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` (every thread), in seconds: the scheduler's nanoseconds if
    available, else user plus system time in clock ticks."""
    if schedstat_available():
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wakeups(pid: int) -> int:
    """Times the threads of ``pid`` went to sleep and were woken (voluntary context switches)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def memory_mib(pid: int) -> dict[str, float]:
    """``VmRSS``, ``RssAnon`` and ``RssFile`` of ``pid``, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) / 1024
    return out


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid``, in MiB."""
    return memory_mib(pid).get("VmRSS", float("nan"))


def gossipreg_agents(n: int, workdir: Path) -> list[subprocess.Popen[bytes]]:
    """``n`` gossipreg agents, the first a seed for the others."""
    key = base64.b64encode(os.urandom(32)).decode()
    ring = workdir / "keyring"
    ring.write_text(key + "\n")
    exe = Path(sys.executable).with_name("gossipreg")
    ports = [free_port() for _ in range(n)]
    procs = []
    for i, port in enumerate(ports):
        state = workdir / f"g{i}"
        state.mkdir()
        args = [str(exe), "agent", "--name", f"g{i}", "--bind", f"127.0.0.1:{port}",
                "--http", "127.0.0.1:0", "--keyring-file", str(ring), "--log-level", "warning"]
        if i:
            args += ["--join", f"127.0.0.1:{ports[0]}", "--retry-join"]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("GOSSIPREG_")},
               "GOSSIPREG_STATE_DIR": str(state)}
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def serf_agents(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` Serf agents, the first a seed for the others."""
    key = base64.b64encode(os.urandom(32)).decode()
    ports = [free_port() for _ in range(n)]
    procs = []
    for i, port in enumerate(ports):
        args = ["serf", "agent", f"-node=s{i}", f"-bind=127.0.0.1:{port}",
                f"-rpc-addr=127.0.0.1:{free_port()}", f"-encrypt={key}", "-log-level=err"]
        if i:
            args += [f"-retry-join=127.0.0.1:{ports[0]}", "-retry-interval=1s"]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


#: A process that only wakes, ``sys.argv[1]`` times a second, on trio.
FLOOR = """
import sys, trio
async def main():
    while True:
        await trio.sleep(1 / float(sys.argv[1]))
trio.run(main)
"""


def trio_floor(n: int, rate: float) -> list[subprocess.Popen[bytes]]:
    """``n`` trio processes that do nothing but wake ``rate`` times a second."""
    return [subprocess.Popen([sys.executable, "-c", FLOOR, str(rate)]) for _ in range(n)]


_DEPS = "import msgpack, trio; from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
FLOORS = {
    "floor_trio": _DEPS + FLOOR.replace("import sys, trio", "import sys"),
    "floor_asyncio": _DEPS + """
import asyncio, sys
async def main():
    while True:
        await asyncio.sleep(1 / float(sys.argv[1]))
asyncio.run(main())
""",
    "floor_sleep": """
import sys, time
while True:
    time.sleep(1 / float(sys.argv[1]))
""",
}


def floors(n: int, rate: float) -> dict[str, list[subprocess.Popen[bytes]]]:
    """``n`` processes of each kind of :data:`FLOORS`, waking ``rate`` times a second."""
    return {
        kind: [subprocess.Popen([sys.executable, "-c", code, str(rate)]) for _ in range(n)]
        for kind, code in FLOORS.items()
    }


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 4), "median": round(statistics.median(values), 4),
            "max": round(max(values), 4)}


Procs = list[subprocess.Popen[bytes]]


def measure(kinds: dict[str, Procs], warmup: float, seconds: float) -> dict[str, object]:
    """CPU over ``seconds`` after ``warmup``, and RSS at the end, of every process of every kind."""
    time.sleep(warmup)
    for name, procs in kinds.items():
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{name}: a process exited during the warm-up: {dead[0]!r}")
    start = {p.pid: cpu_seconds(p.pid) for procs in kinds.values() for p in procs}
    woken = {p.pid: wakeups(p.pid) for procs in kinds.values() for p in procs}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    report: dict[str, object] = {}
    for name, procs in kinds.items():
        cpu = [100 * (cpu_seconds(p.pid) - start[p.pid]) / elapsed for p in procs]
        woke = [(wakeups(p.pid) - woken[p.pid]) / elapsed for p in procs]
        memory = [memory_mib(p.pid) for p in procs]
        rss = [m["VmRSS"] for m in memory]
        report[name] = {
            "processes": len(procs),
            "cpu_percent": summary(cpu),
            "rss_mib": summary(rss),
            "wakeups_per_second": summary(woke),
            "rss_anon_mib": summary([m["RssAnon"] for m in memory]),
            "rss_file_mib": summary([m["RssFile"] for m in memory]),
            "per_process": [
                {"cpu_percent": round(c, 4), "rss_mib": round(r, 1)} for c, r in zip(cpu, rss, strict=True)
            ],
        }
    report["cpu_clock"] = "schedstat" if schedstat_available() else "ticks"
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10, help="processes of each kind")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds to settle first")
    parser.add_argument("--serf", action="store_true", help="also run as many Serf agents, side by side")
    parser.add_argument("--trio-floor", type=float, metavar="RATE",
                        help="also run as many trio processes that only wake RATE times a second")
    parser.add_argument("--floors", type=float, metavar="RATE",
                        help="also run as many processes of each floor kind (trio, asyncio, time.sleep) "
                        "that only wake RATE times a second")
    args = parser.parse_args()
    if args.serf and shutil.which("serf") is None:
        parser.error("--serf needs the serf command (apt-get install serf)")
    kinds: dict[str, list[subprocess.Popen[bytes]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            kinds["gossipreg"] = gossipreg_agents(args.agents, Path(tmp))
            if args.serf:
                kinds["serf"] = serf_agents(args.agents)
            if args.trio_floor:
                kinds["trio_floor"] = trio_floor(args.agents, args.trio_floor)
            if args.floors:
                kinds.update(floors(args.agents, args.floors))
            report = measure(kinds, args.warmup, args.seconds)
        finally:
            for procs in kinds.values():
                for p in procs:
                    p.terminate()
            for procs in kinds.values():
                for p in procs:
                    try:
                        p.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        p.kill()
    report["seconds"] = args.seconds
    if args.trio_floor:
        report["trio_floor_wakeups_per_second"] = args.trio_floor
    if args.floors:
        report["floors_wakeups_per_second"] = args.floors
    if "serf" in report:
        g, s = report["gossipreg"], report["serf"]
        assert isinstance(g, dict)
        assert isinstance(s, dict)
        cpu_g, cpu_s = g["cpu_percent"]["mean"], s["cpu_percent"]["mean"]
        report["cpu_ratio_gossipreg_to_serf"] = round(cpu_g / max(cpu_s, 1e-9), 3)
        report["rss_ratio_gossipreg_to_serf"] = round(g["rss_mib"]["mean"] / s["rss_mib"]["mean"], 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
