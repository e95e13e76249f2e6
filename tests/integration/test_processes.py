"""Five members in five OS processes on 127.0.0.1; one is killed with SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[2]


class Child:
    """A member process (:mod:`tests.integration.member_proc`) and its latest reported view."""

    def __init__(self, name: str, proc: trio.Process, stderr: Path) -> None:
        self.name = name
        self.proc = proc
        self.stderr = stderr
        self.address: tuple[str, int] | None = None
        self.states: dict[str, str] = {}
        self.services: list[str] = []
        self.ready = trio.Event()

    @classmethod
    async def spawn(cls, nursery: trio.Nursery, tmp: Path, name: str, seed: str | None) -> Child:
        args = [sys.executable, "-m", "tests.integration.member_proc", "--name", name]
        args += ["--service", f"svc-{name}"]
        if seed:
            args += ["--seed", seed]
        stderr = tmp / f"{name}.stderr"
        with stderr.open("wb") as err:
            proc = await trio.lowlevel.open_process(
                args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        child = cls(name, proc, stderr)
        nursery.start_soon(child._read)
        return child

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        async with self.proc.stdout:
            async for chunk in self.proc.stdout:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self._on(json.loads(line))

    def _on(self, msg: dict[str, Any]) -> None:
        if msg["event"] == "ready":
            self.address = (msg["address"][0], msg["address"][1])
            self.ready.set()
        elif msg["event"] == "view":
            self.states = msg["states"]
            self.services = msg["services"]

    @property
    def seed(self) -> str:
        assert self.address is not None
        return f"{self.address[0]}:{self.address[1]}"

    def describe(self) -> str:
        err = self.stderr.read_text(errors="replace")[-2000:] if self.stderr.exists() else ""
        return f"{self.name}: states={self.states} services={self.services} rc={self.proc.returncode} {err}"

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        with trio.CancelScope(shield=True):
            await self.proc.wait()
            if self.proc.stdin is not None:
                await self.proc.stdin.aclose()


async def wait_for(children: list[Child], pred: Any, what: str, limit: float) -> None:
    with trio.move_on_after(limit):
        while not all(pred(c) for c in children):  # noqa: ASYNC110 - state reported by other processes
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(c.describe() for c in children))


async def test_five_processes_converge_without_a_sigkilled_one(tmp_path: Path) -> None:
    names = [f"p{i}" for i in range(5)]
    children: list[Child] = []
    try:
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                first = await Child.spawn(nursery, tmp_path, names[0], None)
                children.append(first)
                await wait_for([first], lambda c: c.ready.is_set(), "the first member", 30)
                for name in names[1:]:
                    children.append(await Child.spawn(nursery, tmp_path, name, first.seed))
                await wait_for(children, lambda c: c.ready.is_set(), "every member to join", 30)
                everyone = set(names)
                services = sorted(f"svc-{n}" for n in names)
                await wait_for(
                    children,
                    lambda c: c.states == dict.fromkeys(everyone, "alive") and c.services == services,
                    "5 alive members and 5 services in every process",
                    30,
                )

                victim = children[2]
                await victim.kill()
                assert victim.proc.returncode == -9  # SIGKILL: no leave was sent
                survivors = [c for c in children if c is not victim]
                await wait_for(
                    survivors,
                    lambda c: c.states.get(victim.name) == "dead"
                    and {n for n, s in c.states.items() if s == "alive"} == everyone - {victim.name}
                    and c.services == [s for s in services if s != f"svc-{victim.name}"],
                    "the four survivors to see the killed member DEAD and its service gone",
                    30,
                )
                nursery.cancel_scope.cancel()
    finally:
        for child in children:
            await child.kill()
