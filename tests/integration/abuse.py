"""Attacks on a member's stream port, and a victim member in its own process.

Shared by ``tests/integration/test_abuse.py`` (short runs, bounds asserted)
and ``scripts/bench_abuse.py`` (full-size runs, figures as JSON). Every
attack targets only the victim's address on loopback, bounds its loops, and
closes every socket it opened when its deadline passes or it is cancelled.

The victim is ``python -m tests.integration.abuse`` (run from the repository
root): a member on 127.0.0.1:0 that joins ``--seed`` if given, registers one
service, prints ``{"event": "ready", "address": [...], "pid": ...}`` and then
answers each line on stdin: ``stats`` with its statistics as one JSON line;
it leaves when stdin closes.

Attackers bind their sockets to :data:`ATTACKER_HOST` (127.0.0.2, another
loopback address), so they are a different source from legitimate members
on 127.0.0.1, as a host on the network would be.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import trio

from gossipreg.core.model import Node, Service
from gossipreg.registry import open_registry

from .helpers import FAST, KEY

#: The repository root, where the victim runs (``python -m tests.integration.abuse``).
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: Where attackers connect from.
ATTACKER_HOST = "127.0.0.2"


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid``, in MiB (Linux ``/proc``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def attacker_host(i: int) -> str:
    """The ``i``-th attacker source address: 127.0.0.2, 127.0.0.3, ... (one /24 of loopback)."""
    return f"127.0.0.{2 + i % 250}"


async def _connect(target: tuple[str, int], source: str = ATTACKER_HOST) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind((source, 0))
        await sock.connect(target)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def big_frames(target: tuple[str, int], *, connections: int, announced: int, seconds: float,
                     stats: dict[str, int], sources: int = 1) -> None:
    """``connections`` connections, each announcing an ``announced``-byte frame and
    sending it as fast as the victim reads, minus its last byte; each reconnects
    when closed, until ``seconds`` pass. Connection ``i`` comes from
    ``attacker_host(i % sources)``. Counts bytes sent and connections."""

    async def one(source: str) -> None:
        payload = bytes(64 * 1024)
        while True:
            try:
                stream = await _connect(target, source)
            except OSError:
                stats["connect_failures"] += 1
                await trio.sleep(0.05)
                continue
            stats["connections"] += 1
            async with stream:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    await stream.send_all(announced.to_bytes(4, "big"))
                    left = announced - 1
                    while left > 0:
                        piece = payload[: min(left, len(payload))]
                        await stream.send_all(piece)
                        stats["bytes"] += len(piece)
                        left -= len(piece)
                    await stream.receive_some(1)  # stall until the victim closes

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for i in range(connections):
                nursery.start_soon(one, attacker_host(i % sources))


async def idle_flood(target: tuple[str, int], *, connections: int, seconds: float,
                     stats: dict[str, int]) -> None:
    """Hold up to ``connections`` idle connections open, reopening closed ones, for ``seconds``."""
    held: list[trio.SocketStream] = []
    try:
        with trio.move_on_after(seconds):
            while True:
                for s in list(held):
                    if s.socket.fileno() < 0:
                        held.remove(s)
                while len(held) < connections:
                    try:
                        held.append(await _connect(target))
                        stats["connections"] += 1
                    except OSError:
                        stats["connect_failures"] += 1
                        break
                # Forget the ones the victim closed (EOF), without blocking.
                still = []
                for s in held:
                    try:
                        data = os.read(s.socket.fileno(), 1)  # trio sockets are non-blocking
                    except BlockingIOError:
                        still.append(s)
                        continue
                    except OSError:
                        data = b""
                    if data:
                        still.append(s)
                    else:
                        s.socket.close()
                held = still
                await trio.sleep(0.05)
    finally:
        for s in held:
            s.socket.close()


async def slowloris(target: tuple[str, int], *, per_second: float, seconds: float,
                    stats: dict[str, int]) -> None:
    """Open ``per_second`` connections a second, each sending one byte of a frame a second."""

    async def one() -> None:
        try:
            stream = await _connect(target)
        except OSError:
            stats["connect_failures"] += 1
            return
        stats["connections"] += 1
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                for byte in (65000).to_bytes(4, "big") + bytes(1000):
                    await stream.send_all(bytes([byte]))
                    await trio.sleep(1.0)

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            while True:
                nursery.start_soon(one)
                await trio.sleep(1 / per_second)


class Victim:
    """A member in its own process (see the module docstring)."""

    def __init__(self, process: trio.Process, address: tuple[str, int], pid: int) -> None:
        self.process = process
        self.address = address
        self.pid = pid
        self._lines = b""

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, seed: str | None = None, *, name: str = "victim") -> AsyncIterator[Victim]:
        """Start the victim; on exit close its stdin (it leaves) and reap it."""
        root = _ROOT
        args = [sys.executable, "-m", "tests.integration.abuse", "--name", name]
        if seed:
            args += ["--seed", seed]
        process = await trio.lowlevel.open_process(args, cwd=root, stdin=-1, stdout=-1)
        victim = cls(process, ("", 0), process.pid)
        try:
            with trio.fail_after(30):
                ready = await victim._line()
            victim.address = (ready["address"][0], ready["address"][1])
            yield victim
        finally:
            with trio.CancelScope(shield=True):
                assert process.stdin is not None
                with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    await process.stdin.aclose()
                with trio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    async def _line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self._lines:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                raise RuntimeError("the victim exited")
            self._lines += chunk
        line, self._lines = self._lines.split(b"\n", 1)
        obj: dict[str, Any] = json.loads(line)
        return obj

    async def stats(self) -> dict[str, Any]:
        """The victim's statistics and view: ``{"stats": {...}, "services": [...], "alive": n}``."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(b"stats\n")
        with trio.fail_after(10):
            return await self._line()

    def rss_mib(self) -> float:
        """The victim's resident set size, in MiB."""
        return rss_mib(self.pid)


async def _victim_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--seed", default=None)
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed else None

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
        sys.stdout.flush()

    async with open_registry("127.0.0.1:0", seeds, name=args.name, keyring=KEY, config=FAST) as reg:
        await reg.register(Service(f"svc-{args.name}", "1", nodes=(Node(f"{args.name}-1", "127.0.0.1:9"),)))
        emit({"event": "ready", "address": list(reg.address), "pid": os.getpid()})
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        async with stdin:
            buffered = b""
            while chunk := await stdin.receive_some(4096):
                buffered += chunk
                while b"\n" in buffered:
                    line, buffered = buffered.split(b"\n", 1)
                    if line.strip() == b"stats":
                        emit({
                            "event": "stats",
                            "stats": reg.statistics(),
                            "services": sorted(s.name for s in reg.list_services()),
                            "alive": sorted(m.name for m in reg.members() if m.state == "alive"),
                        })


if __name__ == "__main__":
    trio.run(_victim_main)
