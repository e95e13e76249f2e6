"""``gossipreg demo``: a real cluster on loopback, watched live.

The demo runs ``--nodes`` members (default 12) in one trio process, each with
real UDP and TCP sockets on 127.0.0.1 (port 0) and a fresh cluster key, so
every datagram is sealed with AES-256-GCM. It then walks through six steps,
each measured and each *checked*:

1. **cluster**: start the members (each joins through the first) and wait
   until every member sees all of them alive;
2. **registrations**: register a few services with metadata, versions and
   endpoints (greeter 1.0.0 and 2.0.0, payments, inventory, auth, reports) on
   several members, and wait until every member's view holds exactly them;
3. **abrupt kill**: silence the last member's sockets and cancel it, so it
   sends no leave (like ``kill -9``); measure the time to the first suspicion
   anywhere, to the first and to the last survivor declaring it dead;
4. **its services**: measure the time until its nodes are gone from every
   survivor's view (one service, ``reports``, disappears entirely);
5. **deregister, re-register**: deregister ``inventory`` and register it
   again, measuring the propagation to every survivor each time;
6. **final state**: every survivor sees every other alive, all views are
   identical, and no datagram failed authentication.

Every wait polls the members' local views (every 1 to 10 ms) until its
condition holds, bounded only by what is left of the ``--duration`` budget: nothing
assumes how long a step takes, so a slow machine only makes the numbers
larger. The command exits 0 when every step behaved as shown, and 1 with a
message naming the step and what was still missing otherwise.

Protocol parameters (:data:`DEMO_CONFIG`): the LAN profile (suspicion
multiplier 4, 3 indirect probes, retransmit multiplier 4) with a 0.5 s probe
interval, a 0.2 s probe timeout and 0.1 s gossip rounds. Loopback round trips
are far below a millisecond, so the halved probe interval is safe; keeping
LAN's suspicion multiplier and indirect probes (rather than
:meth:`Config.local`'s 3 and 1) keeps a busy event loop, which runs all
members at once, from causing false deaths. With 12 members the minimum
suspicion timeout is ``4 * log10(12) * 0.5 = 2.2 s`` and two independent
confirmations bring a suspicion down to it, so a killed member is typically
suspected within a second and dead everywhere about 3 s after the kill.
Everything else (joins, registrations, deregistrations) spreads in tens of
milliseconds. The whole demo takes about 3 s with ``--no-live`` and about
15 s in the live view, which paces the steps (:data:`LIVE_PAUSE`,
:data:`LIVE_STAGGER`) so they can be followed; both fit the default 30 s
budget with room to spare, even if no confirmation arrives and a suspicion
runs to its maximum of ``6 * 2.2 = 13 s``. Dead members stay listed for 60 s
(``gossip_to_the_dead``) so the table can show them; a member already reaped
counts as dead.

The live view (rich) shows every member with its state as the others see it
and every service version with its nodes and how many members see them,
with the events scrolling above. ``--no-live`` prints timestamped progress
lines instead, for logs and CI; so does the command when stdout is not a
terminal.
"""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import click
import trio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..core.crypto import Keyring
from ..core.errors import NotFoundError, RegistryError
from ..core.model import Endpoint, Node, Service, Value
from ..registry import AsyncRegistry, open_registry
from ..runtime.transport import KillableTransport, NetTransport
from ..testing import FAST_CONFIG
from .main import CommandError, cli

__all__ = ["DEMO_CONFIG", "DemoFailure", "demo", "run_demo"]

#: Protocol parameters of the demo members (see the module docstring for the choice).
DEMO_CONFIG = FAST_CONFIG
#: Longest interval, in seconds, between two looks at the members' views while waiting for a
#: condition. The first looks come faster (a tenth of the time waited so far, at least 1 ms), so
#: a propagation of a few milliseconds is measured to about a millisecond.
POLL_INTERVAL = 0.01
#: Seconds the live view pauses between steps so they can be followed (not in ``--no-live``).
LIVE_PAUSE = 2.5
#: Seconds between member starts in the live view, so the cluster can be seen growing.
LIVE_STAGGER = 0.15
#: Frames per second of the live view.
LIVE_FPS = 10

_Key = tuple[str, str, str]  # (service, version, node id)


class DemoFailure(Exception):
    """A step of the demo did not behave as shown; the message says which and how."""


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class _Placement:
    """One registration: ``service`` (its nodes only) registered by member number ``member``."""

    member: int
    service: Service


def _value(name: str, *fields: tuple[str, str]) -> Value:
    return Value(name, name, tuple(Value(f, t) for f, t in fields))


def _plan(n: int) -> list[_Placement]:
    """The registrations for ``n`` members; the last member (the victim) hosts three nodes.

    Nodes of the other services are spread over the first ``n - 1`` members.
    """
    survivors = n - 1
    victim = n - 1
    hello = Endpoint(
        "Greeter.Hello",
        _value("Request", ("name", "string")),
        _value("Response", ("msg", "string")),
        {"stream": "false"},
    )
    charge = Endpoint(
        "Payments.Charge",
        _value("ChargeRequest", ("account", "string"), ("cents", "int64")),
        _value("ChargeResponse", ("id", "string")),
    )
    stock = Endpoint("Inventory.Stock", _value("StockRequest", ("sku", "string")), _value("StockResponse"))
    login = Endpoint("Auth.Login", _value("LoginRequest", ("user", "string")), _value("Token"))
    report = Endpoint("Reports.Daily", None, _value("Report", ("csv", "bytes")))
    port = iter(range(9001, 9100))

    def node(node_id: str, zone: str) -> Node:
        return Node(node_id, f"127.0.0.1:{next(port)}", metadata={"zone": zone})

    def svc(name: str, version: str, nodes: Sequence[Node], ep: Endpoint, **meta: str) -> Service:
        return Service(name, version, metadata=meta, endpoints=(ep,), nodes=tuple(nodes))

    zones = ("az-a", "az-b", "az-c")
    canary = {"protocol": "grpc", "canary": "true"}
    out = [
        _Placement(
            k % survivors,
            svc("greeter", "1.0.0", [node(f"greeter-{k + 1}", zones[k])], hello, protocol="grpc"),
        )
        for k in range(3)
    ]
    out += [
        _Placement(3 % survivors, svc("greeter", "2.0.0", [node("greeter-v2-1", "az-a")], hello, **canary)),
        _Placement(victim, svc("greeter", "2.0.0", [node("greeter-v2-2", "az-b")], hello, **canary)),
        _Placement(4 % survivors, svc("payments", "1.4.2", [node("payments-1", "az-a")], charge, pci="true")),
        _Placement(victim, svc("payments", "1.4.2", [node("payments-2", "az-c")], charge, pci="true")),
        _Placement(2 % survivors, svc("inventory", "3.1.0", [node("inventory-1", "az-b")], stock)),
        _Placement(5 % survivors, svc("auth", "1.0.0", [node("auth-1", "az-a")], login)),
        _Placement(6 % survivors, svc("auth", "1.0.0", [node("auth-2", "az-c")], login)),
        _Placement(victim, svc("reports", "0.9.0", [node("reports-1", "az-c")], report)),
    ]
    return out


def _keys(placements: Sequence[_Placement]) -> set[_Key]:
    return {(p.service.name, p.service.version, n.id) for p in placements for n in p.service.nodes}


# ---------------------------------------------------------------- members


class _Member:
    """One demo member, run by :func:`open_registry` in its own task, that can be killed abruptly."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.registry: AsyncRegistry | None = None
        self.killed = False
        self._transport: KillableTransport | None = None
        self._scope = trio.CancelScope()

    @property
    def reg(self) -> AsyncRegistry:
        assert self.registry is not None, "member not started"
        return self.registry

    async def run(
        self,
        seeds: Sequence[str],
        key: bytes,
        join_timeout: float,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the member until cancelled or killed; ``started()`` once it has joined."""
        with self._scope:
            transport = KillableTransport(await NetTransport.bind("127.0.0.1", 0))
            self._transport = transport
            try:
                async with open_registry(
                    seeds=list(seeds),
                    name=self.name,
                    keyring=key,
                    config=DEMO_CONFIG,
                    transport=transport,
                    timeout=join_timeout,
                ) as reg:
                    self.registry = reg
                    task_status.started()
                    await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await transport.aclose()

    def kill(self) -> None:
        """Stop abruptly: silence the sockets first, then cancel, so the leave goes nowhere."""
        assert self._transport is not None
        self.killed = True
        self._transport.kill()
        self._scope.cancel()


def _state_of(observer: AsyncRegistry, name: str) -> str:
    """``name``'s state in ``observer``'s member list, or ``"reaped"`` if it is no longer listed."""
    for m in observer.members():
        if m.name == name:
            return m.state
    return "reaped"


def _alive(observer: AsyncRegistry) -> set[str]:
    return {m.name for m in observer.members() if m.state == "alive"}


def _view(reg: AsyncRegistry) -> set[_Key]:
    """Every (service, version, node id) in ``reg``'s local view."""
    out: set[_Key] = set()
    for name in sorted({s.name for s in reg.list_services()}):
        with contextlib.suppress(NotFoundError):
            for svc in reg.get_service(name):
                out.update((svc.name, svc.version, n.id) for n in svc.nodes)
    return out


def _dead(state: str) -> bool:
    return state in ("dead", "reaped")


# ---------------------------------------------------------------- output


class _Output(Protocol):
    """Where the demo reports: plain lines or a live table."""

    pace: float
    """Multiplier of the pauses between steps (0: none)."""

    def event(self, elapsed: float, text: str) -> None:
        """Report one timestamped event."""

    def session(self, render: Callable[[], RenderableType]) -> contextlib.AbstractContextManager[None]:
        """Context during which the demo runs (the live display, if any)."""

    def refresh(self) -> None:
        """Redraw the live display, if any."""


class _PlainOutput:
    """Timestamped progress lines, for logs and CI."""

    pace = 0.0

    def event(self, elapsed: float, text: str) -> None:
        click.echo(f"[{elapsed:6.2f}s] {text}")

    @contextlib.contextmanager
    def session(self, render: Callable[[], RenderableType]) -> Iterator[None]:
        yield

    def refresh(self) -> None:
        pass


class _LiveOutput:
    """A rich live table of members and services, with events scrolling above it."""

    def __init__(self, console: Console, pace: float) -> None:
        self._console = console
        self.pace = pace
        self._live: Live | None = None
        self._render: Callable[[], RenderableType] | None = None

    def event(self, elapsed: float, text: str) -> None:
        self._console.print(Text.assemble((f"[{elapsed:6.2f}s] ", "dim"), text))

    @contextlib.contextmanager
    def session(self, render: Callable[[], RenderableType]) -> Iterator[None]:
        self._render = render
        with Live(render(), console=self._console, auto_refresh=False) as live:
            self._live = live
            try:
                yield
            finally:
                self._live = None

    def refresh(self) -> None:
        if self._live is not None and self._render is not None:
            self._live.update(self._render(), refresh=True)


# ---------------------------------------------------------------- the demo


@dataclass
class DemoResult:
    """What :func:`run_demo` measured: summary rows and, if a step failed, why."""

    nodes: int
    duration: float
    rows: list[tuple[str, str]] = field(default_factory=list)
    failure: str | None = None
    elapsed: float = 0.0

    def summary(self) -> list[str]:
        """The summary as text lines."""
        lines = [f"summary: {self.nodes} members on 127.0.0.1, every datagram sealed with AES-256-GCM"]
        lines += [f"  {label:<22} {text}" for label, text in self.rows]
        if self.failure is None:
            result = (
                f"OK: every step behaved as shown, in {self.elapsed:.1f} s of the {self.duration:g} s budget"
            )
        else:
            result = f"FAILED after {self.elapsed:.1f} s: {self.failure}"
        lines.append(f"  {'result':<22} {result}")
        return lines


class _Demo:
    """One run of the demo: the members, the plan of registrations, the steps and the live view."""

    def __init__(self, nodes: int, duration: float, out: _Output) -> None:
        self.n = nodes
        self.duration = duration
        self.out = out
        self.members: list[_Member] = []
        self.plan = _plan(nodes)
        self.expected: set[_Key] = _keys(self.plan)
        self.result = DemoResult(nodes, duration)
        self.phase = "starting"
        self.t0 = 0.0
        self.deadline = math.inf

    # -- helpers

    def now(self) -> float:
        return trio.current_time() - self.t0

    def event(self, text: str) -> None:
        self.out.event(self.now(), text)

    def row(self, label: str, text: str) -> None:
        self.result.rows.append((label, text))

    @property
    def survivors(self) -> list[_Member]:
        return [m for m in self.members if not m.killed]

    async def wait_for(self, predicate: Callable[[], bool], what: str, detail: Callable[[], str]) -> float:
        """Poll until ``predicate`` holds; return the time it did. Fail once the budget is spent."""
        start = trio.current_time()
        with trio.move_on_at(self.deadline):
            while not predicate():  # no event says "every member sees X": poll the views
                waited = trio.current_time() - start
                await trio.sleep(min(POLL_INTERVAL, max(0.001, waited / 10)))
            return trio.current_time()
        raise self.out_of_budget(what, detail())

    def out_of_budget(self, what: str, detail: str = "") -> DemoFailure:
        more = f"; {detail}" if detail else ""
        return DemoFailure(f"{what}: not done within the {self.duration:g} s budget{more}")

    async def pause(self) -> None:
        """In the live view, let a step be seen before the next one (never in ``--no-live``)."""
        if self.out.pace:
            left = self.deadline - trio.current_time()
            await trio.sleep(max(0.0, min(LIVE_PAUSE * self.out.pace, left / 4)))

    async def refresh_loop(self) -> None:
        while True:
            self.out.refresh()
            await trio.sleep(1 / LIVE_FPS)

    # -- the run

    async def run(self) -> DemoResult:
        self.t0 = trio.current_time()
        self.deadline = self.t0 + self.duration
        with self.out.session(self.render):
            async with trio.open_nursery() as nursery:
                if isinstance(self.out, _LiveOutput):
                    nursery.start_soon(self.refresh_loop)
                try:
                    await self.start_members(nursery)
                    await self.pause()
                    await self.register()
                    await self.pause()
                    await self.kill()
                    await self.pause()
                    await self.reregister()
                    await self.final_check()
                except DemoFailure as exc:
                    self.result.failure = str(exc)
                    self.phase = "FAILED"
                    self.event(f"FAILED: {exc}")
                else:
                    self.phase = "done"
                finally:
                    self.result.elapsed = self.now()
                    self.out.refresh()  # the last frame shows the cluster before it shuts down
                    nursery.cancel_scope.cancel()
        return self.result

    async def start_members(self, nursery: trio.Nursery) -> None:
        self.phase = "1/6 starting members"
        key = Keyring.generate_key()
        self.event(f"starting {self.n} members on 127.0.0.1 with a fresh AES-256-GCM cluster key")
        with trio.move_on_at(self.deadline):
            for i in range(self.n):
                member = _Member(f"n{i + 1:02d}")
                seeds = [_seed(self.members[0].reg)] if self.members else []
                join_timeout = max(0.1, min(10.0, self.deadline - trio.current_time()))
                try:
                    await nursery.start(partial(member.run, seeds, key, join_timeout))
                except (OSError, RegistryError) as exc:
                    raise DemoFailure(f"member {member.name} could not start: {exc}") from None
                self.members.append(member)
                if self.out.pace:
                    await trio.sleep(LIVE_STAGGER * self.out.pace)
        if len(self.members) < self.n:
            raise self.out_of_budget(f"starting {self.n} members", f"{len(self.members)} started")
        up = self.now()
        first = self.members[0].reg
        self.event(
            f"{self.n} members up: {first.name} at {_seed(first)} started the cluster, "
            f"the others joined through it"
        )
        names = {m.name for m in self.members}

        def converged() -> bool:
            return all(_alive(m.reg) == names for m in self.members)

        def missing() -> str:
            worst = min(self.members, key=lambda m: len(_alive(m.reg)))
            return f"{worst.name} sees only {len(_alive(worst.reg))} of {self.n} alive"

        done = await self.wait_for(converged, f"every member seeing all {self.n} alive", missing)
        self.event(
            f"converged: every member sees {self.n} alive ({done - self.t0 - up:.2f} s after the last join)"
        )
        self.row(
            "cluster",
            f"{self.n} members up in {up:.2f} s; every member saw all {self.n} alive "
            f"{done - self.t0 - up:.2f} s later",
        )

    async def register(self) -> None:
        self.phase = "2/6 registering services"
        versions = sorted({(p.service.name, p.service.version) for p in self.plan})
        hosts = {p.member for p in self.plan}
        self.event(
            f"registering {len(versions)} service versions, {len(self.expected)} nodes, on "
            f"{len(hosts)} members: " + ", ".join(f"{n} {v}" for n, v in versions)
        )
        start = trio.current_time()
        for p in self.plan:
            await self.members[p.member].reg.register(p.service)
        expected = self.expected
        done = await self.wait_for(
            lambda: all(_view(m.reg) == expected for m in self.members),
            f"all {len(expected)} nodes reaching every member",
            lambda: self.view_gap(self.members, expected),
        )
        took = done - start
        self.event(
            f"every member's view holds exactly the {len(expected)} nodes ({took:.3f} s after the "
            "first register)"
        )
        self.row(
            "registrations",
            f"{len(versions)} service versions, {len(expected)} nodes on {len(hosts)} "
            f"members: in every member's view in {took:.3f} s",
        )

    async def kill(self) -> None:
        victim = self.members[-1]
        survivors = self.members[:-1]
        own = sorted(k for p in self.plan if p.member == self.n - 1 for k in _keys([p]))
        self.phase = f"3/6 {victim.name} killed: waiting for the others to notice"
        self.event(
            f"killing {victim.name} abruptly (sockets silenced, no leave sent); it hosts "
            + ", ".join(f"{s} {v} node {i}" for s, v, i in own)
        )
        t_kill = trio.current_time()
        victim.kill()

        first_suspect: tuple[float, str, str] | None = None
        first_dead: tuple[float, str] | None = None
        states: dict[str, str] = {}

        def progress() -> bool:
            nonlocal first_suspect, first_dead, states
            t = trio.current_time() - t_kill
            states = {s.name: _state_of(s.reg, victim.name) for s in survivors}
            leavers = sorted(name for name, state in states.items() if state == "left")
            if leavers:
                raise DemoFailure(
                    f"{', '.join(leavers)} saw {victim.name} LEFT, but it was killed without a leave"
                )
            if first_suspect is None:
                for name, state in states.items():
                    if state != "alive":
                        first_suspect = (t, name, state)
                        self.event(
                            f"{name} {'suspects' if state == 'suspect' else 'reports ' + state.upper()} "
                            f"{victim.name} ({t:.2f} s after the kill)"
                        )
                        self.phase = f"3/6 {victim.name} suspected"
                        break
            if first_dead is None:
                for name, state in states.items():
                    if _dead(state):
                        first_dead = (t, name)
                        self.event(f"{name} declares {victim.name} DEAD ({t:.2f} s after the kill)")
                        self.phase = f"3/6 {victim.name} declared dead, spreading"
                        break
            return all(_dead(s) for s in states.values())

        def not_dead() -> str:
            pending = sorted(f"{n} ({s})" for n, s in states.items() if not _dead(s))
            return "still not DEAD at " + ", ".join(pending)

        done = await self.wait_for(
            progress, f"{victim.name} declared dead by all {len(survivors)} survivors", not_dead
        )
        all_dead = done - t_kill
        self.event(
            f"{victim.name} is DEAD at all {len(survivors)} survivors ({all_dead:.2f} s after the kill)"
        )
        assert first_suspect is not None
        assert first_dead is not None
        self.row(
            f"abrupt kill of {victim.name}",
            f"first suspicion {first_suspect[0]:.2f} s ({first_suspect[1]}), first DEAD "
            f"{first_dead[0]:.2f} s ({first_dead[1]}), DEAD at all {len(survivors)} survivors "
            f"{all_dead:.2f} s after the kill",
        )

        # Its nodes vanish from every view; everything else stays.
        self.phase = f"4/6 {victim.name}'s services vanishing"
        self.expected = self.expected - set(own)
        expected = self.expected
        done = await self.wait_for(
            lambda: all(_view(s.reg) == expected for s in survivors),
            f"{victim.name}'s services vanishing from every view",
            lambda: self.view_gap(survivors, expected),
        )
        gone = done - t_kill
        left = {(s, v) for s, v, _ in expected}
        entirely = sorted({f"{s} {v}" for s, v, _ in own if (s, v) not in left})
        reduced = sorted({f"{s} {v}" for s, v, _ in own if (s, v) in left})
        what = []
        if entirely:
            what.append(f"{', '.join(entirely)} gone entirely")
        if reduced:
            what.append(f"{', '.join(reduced)} down to the other members' nodes")
        self.event(
            f"{victim.name}'s {len(own)} nodes gone from every survivor's view ({gone:.2f} s after the "
            f"kill): {'; '.join(what)}"
        )
        self.row(
            f"{victim.name}'s services",
            f"{len(own)} nodes gone from every view {gone:.2f} s after the kill ({'; '.join(what)})",
        )

    async def reregister(self) -> None:
        [placement] = [p for p in self.plan if p.service.name == "inventory"]
        owner = self.members[placement.member]
        svc = placement.service
        keys = _keys([placement])
        survivors = self.survivors
        label = f"{svc.name} {svc.version}"

        self.phase = f"5/6 deregistering {label}"
        self.event(f"{owner.name} deregisters {label} (node {svc.nodes[0].id})")
        start = trio.current_time()
        await owner.reg.deregister(svc)
        without = self.expected - keys
        done = await self.wait_for(
            lambda: all(_view(s.reg) == without for s in survivors),
            f"the deregistration of {label} reaching every member",
            lambda: self.view_gap(survivors, without),
        )
        dereg = done - start
        self.event(f"{label} gone from all {len(survivors)} members ({dereg:.3f} s)")
        self.row("deregistration", f"{label} gone from all {len(survivors)} members in {dereg:.3f} s")
        await self.pause()

        self.phase = f"5/6 re-registering {label}"
        self.event(f"{owner.name} registers {label} again")
        start = trio.current_time()
        await owner.reg.register(svc)
        expected = self.expected
        done = await self.wait_for(
            lambda: all(_view(s.reg) == expected for s in survivors),
            f"the re-registration of {label} reaching every member",
            lambda: self.view_gap(survivors, expected),
        )
        rereg = done - start
        self.event(f"{label} back on all {len(survivors)} members ({rereg:.3f} s)")
        self.row("re-registration", f"{label} back on all {len(survivors)} members in {rereg:.3f} s")

    async def final_check(self) -> None:
        self.phase = "6/6 final check"
        survivors = self.survivors
        names = {m.name for m in survivors}

        def stragglers() -> str:
            return "; ".join(
                f"{m.name} sees {sorted(names - _alive(m.reg))} not alive"
                for m in survivors
                if not names <= _alive(m.reg)
            )

        await self.wait_for(
            lambda: all(names <= _alive(m.reg) for m in survivors),
            f"all {len(survivors)} survivors seeing each other alive",
            stragglers,
        )
        # Normally already true; a false suspicion refuted just now could still be hiding a node.
        expected = self.expected
        await self.wait_for(
            lambda: all(_view(m.reg) == expected for m in survivors),
            "identical views of every surviving registration",
            lambda: self.view_gap(survivors, expected),
        )
        stats = [m.reg.statistics() for m in survivors]
        auth = sum(s["auth_failures"] for s in stats)
        decode = sum(s["decode_errors"] for s in stats)
        self.row(
            "final state",
            f"{len(survivors)} survivors see each other alive; identical views of {len(self.expected)} nodes",
        )
        datagrams = sum(s["datagrams_sent"] for s in stats)
        sent = sum(s["bytes_sent"] for s in stats)
        refuted = sum(s["members_suspicions_refuted"] for s in stats)
        self.row(
            "traffic",
            f"{datagrams:,} datagrams, {_size(sent)} sent by the survivors; "
            f"{auth} authentication failures, {decode} decode errors, "
            f"{refuted} false suspicions refuted",
        )
        if auth or decode:
            raise DemoFailure(
                f"{auth} datagrams failed authentication and {decode} failed to decode "
                "(every member shares one key: there should be none)"
            )
        self.event("final check: every survivor sees the others alive and holds the same catalog")

    # -- diagnostics and display

    def view_gap(self, members: Sequence[_Member], expected: set[_Key]) -> str:
        """Which members' views differ from ``expected``, and how (for failure messages)."""
        parts = []
        for m in members:
            view = _view(m.reg)
            if view != expected:
                lack = sorted(i for _, _, i in expected - view)
                extra = sorted(i for _, _, i in view - expected)
                bits = ([f"missing {', '.join(lack)}"] if lack else []) + (
                    [f"still has {', '.join(extra)}"] if extra else []
                )
                parts.append(f"{m.name} {' and '.join(bits)}")
        return "; ".join(parts[:4]) + (f"; and {len(parts) - 4} more" if len(parts) > 4 else "")

    def render(self) -> RenderableType:
        """The live view: a header, the members table and the services table."""
        elapsed = self.now() if self.t0 else 0.0
        header = Text.assemble(
            ("gossipreg demo", "bold"),
            f"  {self.n} members on 127.0.0.1, AES-256-GCM  ",
            (self.phase, "bold red" if self.phase == "FAILED" else "bold cyan"),
            (f"  {elapsed:5.1f} s of {self.duration:g} s", "dim"),
        )
        return Group(header, self.members_table(), self.services_table())

    def members_table(self) -> Table:
        table = Table(title="members (state as the other live members see it)", title_justify="left")
        for col in ("member", "address", "state", "sees alive", "hosts"):
            table.add_column(col)
        hosts: dict[int, list[str]] = collections.defaultdict(list)
        for p in self.plan:
            hosts[p.member] += [n.id for n in p.service.nodes]
        live = self.survivors
        for i, m in enumerate(self.members):
            observers = [o for o in live if o is not m]
            counts = collections.Counter(_state_of(o.reg, m.name) for o in observers)
            state = Text()
            for k, (s, c) in enumerate(sorted(counts.items(), key=lambda kv: _ORDER.get(kv[0], 9))):
                if k:
                    state.append("  ")
                state.append(s if len(counts) == 1 else f"{s} {c}", _STYLE.get(s, ""))
            if m.killed:
                name = Text(f"{m.name} (killed)", "bold red")
                sees = Text("-", "dim")
            else:
                name = Text(m.name)
                sees = Text(f"{len(_alive(m.reg))}/{len(self.members)}")
            host, port = m.reg.address
            table.add_row(name, f"{host}:{port}", state, sees, ", ".join(hosts.get(i, [])))
        return table

    def services_table(self) -> Table:
        table = Table(title="services (union of the live members' views)", title_justify="left")
        for col in ("service", "version", "nodes (owner)", "seen by"):
            table.add_column(col)
        owner = {
            n.id: self.members[p.member].name
            for p in self.plan
            if p.member < len(self.members)
            for n in p.service.nodes
        }
        live = self.survivors
        views = [_view(m.reg) for m in live]
        by_version: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        holders: collections.Counter[tuple[str, str]] = collections.Counter()
        for view in views:
            for s, v, i in view:
                by_version[(s, v)][i] += 1
            for sv in {(s, v) for s, v, _ in view}:
                holders[sv] += 1
        for (s, v), nodes in sorted(by_version.items()):
            cell = Text()
            for k, (node_id, count) in enumerate(sorted(nodes.items())):
                if k:
                    cell.append(" ")
                partial_ = count < len(live)
                cell.append(
                    f"{node_id}@{owner.get(node_id, '?')}" + (f" ({count}/{len(live)})" if partial_ else ""),
                    "yellow" if partial_ else "",
                )
            seen = holders[(s, v)]
            table.add_row(s, v, cell, Text(f"{seen}/{len(live)}", "" if seen == len(live) else "yellow"))
        return table


_ORDER = {"alive": 0, "suspect": 1, "dead": 2, "left": 3, "reaped": 4}
_STYLE = {"alive": "green", "suspect": "bold yellow", "dead": "bold red", "left": "magenta", "reaped": "red"}


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _seed(reg: AsyncRegistry) -> str:
    host, port = reg.address
    return f"{host}:{port}"


async def run_demo(
    nodes: int, duration: float, *, console: Console | None = None, pace: float = 1.0
) -> DemoResult:
    """Run the demo (see the module docstring) inside trio and return what it measured.

    Args:
        nodes: members to start, at least 3.
        duration: the total budget in seconds; a step still waiting when it is spent fails.
        console: show the live view on this rich console; ``None`` prints plain
            progress lines (with ``click.echo``) instead.
        pace: with a console, the multiplier of the pauses that let the live
            view be followed (0: no pauses). Plain output never pauses.
    """
    if nodes < 3:
        raise ValueError(f"nodes: at least 3 are needed, got {nodes}")
    if not duration > 0:
        raise ValueError(f"duration: must be positive, got {duration}")
    if pace < 0:
        raise ValueError(f"pace: must not be negative, got {pace}")
    out: _Output = _PlainOutput() if console is None else _LiveOutput(console, pace)
    return await _Demo(nodes, duration, out).run()


@cli.command()
@click.option(
    "--nodes",
    type=click.IntRange(3, 64),
    default=12,
    show_default=True,
    help="Members to start on 127.0.0.1.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Total time budget in seconds: a step not done when it is spent fails the demo.",
)
@click.option(
    "--no-live",
    "no_live",
    is_flag=True,
    help="Print timestamped progress lines instead of the live table (logs, CI; "
    "the default when stdout is not a terminal).",
)
def demo(nodes: int, duration: float, no_live: bool) -> None:
    """Run a local cluster on loopback: join, register, kill a member, deregister; measure each step.

    Exits 0 only if every step behaved as shown: all members converged, the
    killed member was declared dead by all and its services vanished
    everywhere, and the deregistration and re-registration reached every
    member.
    """
    console = Console()
    live = not no_live and console.is_terminal
    result = trio.run(partial(run_demo, nodes, duration, console=console if live else None))
    click.echo("")
    for line in result.summary():
        click.echo(line)
    if result.failure is not None:
        raise CommandError(f"demo failed: {result.failure}")
