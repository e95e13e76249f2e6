"""Member processes (:mod:`tests.netns.member`) in a :class:`~tests.netns.lab.NetLab`, and their records.

Every member process reports, with ``time.monotonic()`` stamps, each watch
result and each change of its polled view; :class:`MemberProc` keeps them all
(the analysis in :mod:`tests.netns.checks` runs over them afterwards) plus the
latest state for waiting. :func:`open_cluster` builds the lab, starts the
members, waits until they agree, and tears everything down on the way out.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from .lab import NetLab

ROOT = Path(__file__).resolve().parents[2]

Key = tuple[str, str]
"""A visible registration: ``(service name, node id)``; node ids are the owners' member names."""


def member_name(i: int) -> str:
    return f"m{i}"


def base_service(i: int) -> str:
    """The service every member registers at start."""
    return f"svc-m{i}"


@dataclass(frozen=True, slots=True)
class ViewSample:
    """A polled view: member states and visible registrations, from time ``t`` on."""

    t: float
    states: Mapping[str, str]
    incarnations: Mapping[str, int]
    visible: frozenset[Key]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One node of one watch result."""

    t: float
    action: str
    key: Key


@dataclass
class MemberProc:
    """One member process and everything it reported."""

    index: int
    name: str
    label: str
    proc: trio.Process
    stderr: Path
    log: Path
    started: float
    ready: trio.Event = field(default_factory=trio.Event)
    ready_at: float | None = None
    views: list[ViewSample] = field(default_factory=list)
    watch: list[WatchEvent] = field(default_factory=list)
    #: Registrations visible according to the watch stream so far.
    watch_visible: set[Key] = field(default_factory=set)
    acks: list[tuple[float, str, str]] = field(default_factory=list)
    stats: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    #: ``(t, kind, member)`` membership events (diagnosis only).
    member_events: list[tuple[float, str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    killed_at: float | None = None
    _acked: trio.Event = field(default_factory=trio.Event)

    @property
    def latest(self) -> ViewSample | None:
        return self.views[-1] if self.views else None

    @property
    def running(self) -> bool:
        return self.killed_at is None and self.proc.returncode is None

    async def read(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        async with self.proc.stdout:
            async for chunk in self.proc.stdout:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                if lines:
                    with self.log.open("ab") as f:
                        f.write(b"".join(line + b"\n" for line in lines))
                for line in lines:
                    if line.strip():
                        self._on(json.loads(line))

    def _on(self, msg: dict[str, Any]) -> None:
        t = float(msg["t"])
        event = msg["event"]
        if event == "ready":
            self.ready_at = t
            self.ready.set()
        elif event == "view":
            visible = frozenset((str(s), str(n)) for s, n in msg["visible"])
            incarnations = {str(k): int(v) for k, v in msg.get("incarnations", {}).items()}
            self.views.append(ViewSample(t, dict(msg["states"]), incarnations, visible))
        elif event == "watch":
            for node in msg["nodes"]:
                key = (str(msg["service"]), str(node))
                self.watch.append(WatchEvent(t, str(msg["action"]), key))
                if msg["action"] == "delete":
                    self.watch_visible.discard(key)
                else:
                    self.watch_visible.add(key)
        elif event == "member":
            self.member_events.append((t, str(msg["kind"]), str(msg["member"])))
        elif event == "done":
            self.acks.append((t, str(msg["cmd"]), str(msg["service"])))
            self._acked.set()
        elif event == "stats":
            self.stats.append((t, {str(k): int(v) for k, v in msg["stats"].items()}))
            self._acked.set()
        else:
            self.problems.append(f"{self.label}: unexpected report at {t:.3f}: {msg}")

    async def command(self, cmd: str, service: str | None = None, limit: float = 5.0) -> float:
        """Send a command; return the member's stamp of its completion."""
        assert self.proc.stdin is not None
        count = len(self.acks) + len(self.stats)
        payload: dict[str, str] = {"cmd": cmd}
        if service is not None:
            payload["service"] = service
        await self.proc.stdin.send_all((json.dumps(payload) + "\n").encode())
        with trio.fail_after(limit):
            while len(self.acks) + len(self.stats) == count:
                self._acked = trio.Event()
                await self._acked.wait()
        return self.acks[-1][0] if cmd != "stats" else self.stats[-1][0]

    async def statistics(self) -> dict[str, int]:
        await self.command("stats")
        return self.stats[-1][1]

    def kill(self) -> None:
        """SIGKILL (no leave goes out)."""
        if self.proc.returncode is None:
            self.proc.kill()
        if self.killed_at is None:
            self.killed_at = time.monotonic()

    async def reap(self) -> None:
        """Kill, wait for the process and close its pipes (the reader closes stdout)."""
        self.kill()
        with trio.CancelScope(shield=True):
            with trio.move_on_after(10):
                await self.proc.wait()
            if self.proc.stdin is not None:
                await self.proc.stdin.aclose()

    def stderr_tail(self, chars: int = 1500) -> str:
        try:
            return self.stderr.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def describe(self) -> str:
        view = self.latest
        states = dict(sorted(view.states.items())) if view else {}
        visible = sorted(view.visible) if view else []
        tail = self.stderr_tail().strip()
        return (
            f"  {self.label} (rc={self.proc.returncode}): states={states}\n"
            f"    visible={visible}\n    watch-visible={sorted(self.watch_visible)}"
            + (f"\n    stderr: ...{tail}" if tail else "")
        )


class Cluster:
    """The members of one lab; ``members[i]`` is member ``i``'s current process."""

    #: The module each member process runs (``python -m``); a diagnosis may substitute its own.
    member_module = "tests.netns.member"

    def __init__(self, lab: NetLab, nursery: trio.Nursery, tmp: Path) -> None:
        self.lab = lab
        self.nursery = nursery
        self.tmp = tmp
        self.members: list[MemberProc] = []
        #: Every process ever started, restarted ones included, in start order.
        self.history: list[MemberProc] = []

    @property
    def names(self) -> list[str]:
        return [member_name(i) for i in range(self.lab.size)]

    async def spawn(self, i: int, services: Iterable[str], seeds: Sequence[int]) -> MemberProc:
        name = member_name(i)
        generation = sum(1 for m in self.history if m.index == i)
        label = name + "'" * generation
        args = self.lab.exec_args(
            i, sys.executable, "-m", self.member_module, "--name", name, "--bind", self.lab.address(i)
        )
        for s in seeds:
            args += ["--seed", self.lab.address(s)]
        for svc in services:
            args += ["--service", svc]
        stem = f"{name}-{generation}"
        stderr = self.tmp / f"{stem}.stderr"
        started = time.monotonic()
        with stderr.open("wb") as err:
            proc = await trio.lowlevel.open_process(
                args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        member = MemberProc(i, name, label, proc, stderr, self.tmp / f"{stem}.jsonl", started)
        self.history.append(member)
        if i < len(self.members):
            self.members[i] = member
        else:
            self.members.append(member)
        self.nursery.start_soon(member.read)
        return member

    def running(self) -> list[MemberProc]:
        return [m for m in self.members if m.running]

    def describe(self) -> str:
        return "\n".join(m.describe() for m in self.members)

    async def wait_until(self, predicate: Callable[[], bool], what: str, limit: float) -> float:
        """Poll ``predicate`` every 20 ms; return ``time.monotonic()`` when it holds.

        Raises:
            AssertionError: it did not hold within ``limit`` seconds (with every member's view).
        """
        with trio.move_on_after(limit):
            while not predicate():
                for m in self.history:
                    if m.problems:
                        raise AssertionError("\n".join(m.problems))
                await trio.sleep(0.02)
            return time.monotonic()
        raise AssertionError(f"timed out after {limit:g} s waiting for {what}:\n{self.describe()}")

    async def reach(self, predicate: Callable[[], bool], limit: float) -> float | None:
        """Like :meth:`wait_until`, but ``None`` instead of an error if it did not hold in time."""
        try:
            return await self.wait_until(predicate, "", limit)
        except AssertionError:
            if any(m.problems for m in self.history):
                raise
            return None

    def differences(self, expected: frozenset[Key], members: Iterable[int] | None = None) -> str:
        """Per member: what its latest view (watch and poll) shows beyond or lacks from ``expected``."""
        lines = []
        for i in range(len(self.members)) if members is None else members:
            m = self.members[i]
            polled = m.latest.visible if m.latest else frozenset()
            for how, shown in (("watch", frozenset(m.watch_visible)), ("poll", polled)):
                extra, missing = sorted(shown - expected), sorted(expected - shown)
                if extra or missing:
                    lines.append(f"  {m.label} ({how}): shows extra {extra}, lacks {missing}")
        return "\n".join(lines)

    def agree(
        self,
        expected: frozenset[Key],
        members: Iterable[MemberProc] | None = None,
        alive: Iterable[str] | None = None,
    ) -> bool:
        """Whether each member (default: all current) shows exactly ``expected``, by watch and
        by poll, and sees ``alive`` (default: all names) alive and nobody else."""
        want = dict.fromkeys(self.names if alive is None else alive, "alive")
        for m in self.members if members is None else members:
            view = m.latest
            if view is None or view.visible != expected or m.watch_visible != expected:
                return False
            if {n: s for n, s in view.states.items() if s == "alive"} != want:
                return False
        return True

    def sees_dead(self, observers: Iterable[int], targets: Iterable[int]) -> bool:
        """Whether every observer's latest view holds every target dead (not alive or suspect)."""
        names = [member_name(t) for t in targets]
        for i in observers:
            view = self.members[i].latest
            if view is None or any(view.states.get(n) not in ("dead", "left") for n in names):
                return False
        return True

    def shows(self, observers: Iterable[int], key: Key) -> list[bool]:
        return [key in self.members[i].watch_visible for i in observers]


def expected_keys(services: Mapping[int, Iterable[str]]) -> frozenset[Key]:
    return frozenset((svc, member_name(i)) for i, svcs in services.items() for svc in svcs)


@contextlib.contextmanager
def _unwrapped() -> Iterator[None]:
    """Re-raise the single exception a nursery wrapped in an exception group, as itself."""
    try:
        yield
    except BaseExceptionGroup as group:
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if inner is group:
            raise
        raise inner from None


@contextlib.asynccontextmanager
async def open_cluster(
    tmp: Path, services: Mapping[int, Sequence[str]], size: int = 6, limit: float = 40.0
) -> AsyncIterator[Cluster]:
    """A lab of ``size`` namespaces, one member in each, all joined through member 0 and agreeing.

    ``services[i]`` are member ``i``'s registrations at start. On exit (however
    it happens) every process is killed and the lab destroyed.
    """
    lab = await NetLab.create(size)
    cluster: Cluster | None = None
    try:
        with _unwrapped():
            async with trio.open_nursery() as nursery:
                cluster = Cluster(lab, nursery, tmp)
                for i in range(size):
                    await cluster.spawn(i, services.get(i, ()), [] if i == 0 else [0])
                expected = expected_keys(services)
                await cluster.wait_until(
                    lambda: all(m.ready.is_set() for m in cluster.members) and cluster.agree(expected),
                    f"{size} members to start, see each other alive and show {sorted(expected)}",
                    limit,
                )
                yield cluster
                nursery.cancel_scope.cancel()
    finally:
        try:
            if cluster is not None:
                for m in cluster.history:
                    m.kill()
                for m in cluster.history:
                    await m.reap()
        finally:
            lab.destroy()
