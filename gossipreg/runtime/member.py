"""One running member: its core on a driver, joining and rejoining through seeds, leaving.

:class:`GossipMember` is what every registry front end runs (the trio
:class:`~gossipreg.AsyncRegistry`, and through it the sync and asyncio ones
and the agent): it owns the :class:`~gossipreg.core.node.NodeCore`, the
:class:`~gossipreg.runtime.driver.MemberDriver` that gives the core sockets
and time, and everything a member does on its own behalf rather than a
caller's:

* **joining** through the seeds, re-resolving DNS names and retrying with
  backoff until a deadline (:meth:`GossipMember.join`);
* **rejoining** while it has no peer left, every :data:`REJOIN_INTERVAL`
  seconds, so a member never stays alone after its seeds restart;
* **leaving** gracefully when it stops (:meth:`GossipMember.running`);
* **logging** what the core reports and a person should see: registrations
  of one node by two members, and traffic the member refuses (wrong key,
  plaintext, forged statements), at most once a minute per cause.

The registry above it only reads the catalog, forwards its calls to the core
and feeds its watchers from :attr:`GossipMember.on_catalog`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections.abc import AsyncIterator, Callable, Sequence

import trio

from .._groups import single_exception
from ..core.catalog import CatalogEvent
from ..core.errors import JoinError
from ..core.membership import Address, MemberEvent
from ..core.node import JoinResult, NodeCore, NodeEvent, RegistrationConflict, TrafficRefused
from . import srv
from .driver import DriverLimits, MemberDriver, TLSContexts
from .transport import Transport

__all__ = ["JOIN_BACKOFF", "LEAVE_TIMEOUT", "REJOIN_INTERVAL", "RETRY_JOIN_NOTICE", "GossipMember"]

log = logging.getLogger("gossipreg")

#: Seconds between re-joins through the seeds while a member has no peer at all
#: (a member must never stay alone after its seeds restart).
REJOIN_INTERVAL = 10.0
#: Seconds a clean shutdown waits for its leave message to go out.
LEAVE_TIMEOUT = 1.0
#: In retry-join mode, least seconds between two warnings that the member is not joined yet.
RETRY_JOIN_NOTICE = 60.0
#: Longest wait between two tries of the seeds while joining, in seconds.
JOIN_BACKOFF = 2.0

#: What each cause of a TrafficRefused event most likely means, for the warning.
REFUSED = {
    "plaintext_rejected": "plaintext datagram(s) or stream(s) from a member running insecure=True; "
    "configure the cluster keyring on every member",
    "sealed_received_while_insecure": "sealed datagram(s) while this member runs insecure=True; "
    "configure the cluster keyring here",
    "auth_failures": "datagram(s) or stream frame(s) no key of the keyring opens: a wrong key, a "
    "different cluster label, a key rotation in progress, or someone probing the port",
    "decode_errors": "malformed message(s) that authenticated: a buggy or hostile key holder, "
    "or members running incompatible versions",
    "records_rejected_drift": "registration(s) refused because their clock stamp is more than "
    "max_clock_drift ahead: a member's wall clock is wrong",
    "identity_unsigned": "unsigned statement(s) refused (member identities are on here): a member "
    "running without identity=, or a key holder forging",
    "identity_bad_signature": "statement(s) refused whose signature is not their member's: a key "
    "holder forging, or a member signing with another member's name",
    "identity_bad_certificate": "certificate(s) refused: not of this cluster's CA, expired, or not "
    "for the member name they came with",
}


def shown_address(address: Address) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{address.host}]:{address.port}" if ":" in address.host else f"{address.host}:{address.port}"


def _ignore(event: CatalogEvent) -> None:
    pass


class GossipMember:
    """A member's core running on a transport, with its seeds.

    Args:
        core: the member's protocol state machine.
        transport: its sockets (bound; the member closes nothing it did not open).
        seeds: ``(host, port)`` of members to join and rejoin through.
        srv_seeds: names of DNS SRV records of such members, looked up on every try.
        limits: the driver's resource limits.
        tls: mutual-TLS contexts for streams, or ``None``.

    Use :meth:`running` to start it; every method runs in the trio thread.
    """

    def __init__(
        self,
        core: NodeCore,
        transport: Transport,
        *,
        seeds: Sequence[tuple[str, int]] = (),
        srv_seeds: Sequence[str] = (),
        limits: DriverLimits | None = None,
        tls: TLSContexts | None = None,
    ) -> None:
        self.core = core
        self.seeds = list(seeds)
        #: Names of DNS SRV records whose targets are seeds too (:mod:`gossipreg.runtime.srv`).
        self.srv_seeds = list(srv_seeds)
        self.driver = MemberDriver(core, transport, limits=limits, tls=tls, on_event=self._on_event)
        #: Called with every change of the catalog (the registry feeds its watchers from it).
        self.on_catalog: Callable[[CatalogEvent], None] = _ignore
        #: Seed addresses other than this member's own at the last resolution in which
        #: a seed resolved; ``None`` before one (a seed list naming only this member,
        #: as a headless Service of one pod does, resolves to 0).
        self.seed_peers: int | None = None
        self._join_waiters: list[trio.MemorySendChannel[JoinResult]] = []
        # Set when a member event leaves this member without a peer: wakes the rejoin loop,
        # which otherwise sleeps through its checks.
        self._alone = trio.Event()

    @contextlib.asynccontextmanager
    async def running(self, join_timeout: float, *, retry_join: bool = False) -> AsyncIterator[GossipMember]:
        """Run the driver, join through the seeds, keep rejoining while alone; on exit, leave.

        By default the block starts once joined (at once without seeds). With
        ``retry_join`` it starts at once: the member serves alone while it keeps
        resolving and trying the seeds with backoff (at most :data:`JOIN_BACKOFF`
        seconds apart, so a seed that appears is joined within that) until one
        answers, warning after the first ``join_timeout`` seconds and then at
        most every :data:`RETRY_JOIN_NOTICE` seconds.

        The leave gets up to :data:`LEAVE_TIMEOUT` seconds to go out, even when
        the block is being cancelled. An exception of the block, or the
        :class:`~gossipreg.JoinError`, propagates as itself, not in a group.

        Raises:
            JoinError: seeds were given, none answered within ``join_timeout``,
                and ``retry_join`` is off.
        """
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.driver.run)
                if retry_join and self.has_seeds:
                    nursery.start_soon(self._join_then_rejoin, join_timeout)
                else:
                    await self.join(join_timeout)
                    nursery.start_soon(self._rejoin_loop)
                try:
                    yield self
                finally:
                    with trio.CancelScope(shield=True):
                        await self.leave()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The nursery wraps what it propagates (a JoinError, or the caller's own
            # exception) in an exception group; callers expect the exception itself.
            inner = single_exception(group)
            if inner is group:
                raise
            raise inner from None

    async def leave(self) -> None:
        """Tell the cluster this member leaves, and wait up to :data:`LEAVE_TIMEOUT` for it to go out.

        The leave is sent by this task, not the driver's sender, which may be
        cancelled already when the member stops.
        """
        self.core.leave(self.driver.now())
        with trio.move_on_after(LEAVE_TIMEOUT):
            await self.driver.send_remaining()

    async def join(self, timeout: float) -> None:  # noqa: ASYNC109 - the join deadline, as a duration
        """Join through the seeds, retrying with backoff until ``timeout`` seconds have passed.

        Every retry resolves the seeds again. Returns at once without seeds.
        When every seed refuses for a reason retrying will not change (another
        cluster key or label, plaintext against sealed, not a gossip port),
        gives up at once instead of at the deadline.

        Raises:
            JoinError: seeds were given and none answered in time, or all
                refused; the message gives each seed's last reason.
        """
        if not self.has_seeds:
            return
        deadline = trio.current_time() + timeout
        backoff = 0.1
        send, recv = trio.open_memory_channel[JoinResult](64)
        self._join_waiters.append(send)
        reasons: list[str] = []
        refused = False  # every seed refused for a reason retrying will not change
        try:
            while True:
                addresses = await self.resolve_seeds()
                if addresses:
                    self.core.join(addresses, self.driver.now())
                    self.driver.flush()
                    pending = len(addresses)
                    permanent = 0
                    with trio.move_on_at(deadline):
                        while pending:
                            result = await recv.receive()
                            if result.ok:
                                return
                            pending -= 1
                            permanent += result.permanent
                            reasons.append(f"{result.address.host}:{result.address.port}: {result.reason}")
                    refused = permanent == len(addresses)
                else:
                    reasons.append("no seed address could be resolved")
                left = deadline - trio.current_time()
                if left <= 0 or refused:
                    break
                # Retry with backoff, and once more right at the deadline.
                await trio.sleep(min(backoff, left))
                backoff = min(backoff * 2, JOIN_BACKOFF)
        finally:
            self._join_waiters.remove(send)
        shown = self.shown_seeds()
        seeds = ", ".join(shown)
        detail = "; ".join(dict.fromkeys(reasons[-len(shown) :])) or "no answer"
        if refused:
            raise JoinError(f"could not join through any seed ({seeds}): {detail}")
        raise JoinError(f"could not join through any seed ({seeds}) within {timeout:g}s: {detail}")

    @property
    def has_seeds(self) -> bool:
        """Whether any seed (an address or an SRV name) was given."""
        return bool(self.seeds or self.srv_seeds)

    def shown_seeds(self) -> list[str]:
        """The seeds as given: ``host:port`` and ``srv:NAME``."""
        return [f"{h}:{p}" for h, p in self.seeds] + [srv.SRV_PREFIX + n for n in self.srv_seeds]

    async def resolve_seeds(self) -> list[Address]:
        """The seeds' addresses of this member's family, itself excluded; a seed
        that does not resolve is logged and skipped."""
        out: list[Address] = []
        family = socket.AF_INET6 if ":" in self.core.address.host else socket.AF_INET
        resolved = False
        targets = list(self.seeds)
        for name in self.srv_seeds:
            try:
                found = await srv.lookup(name)
            except OSError as exc:
                log.warning("gossipreg: cannot resolve seed %s%s: %s", srv.SRV_PREFIX, name, exc)
                continue
            targets.extend(t for t in found if t not in targets)
        for host, port in targets:
            try:
                infos = await trio.socket.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
            except OSError as exc:
                log.warning("gossipreg: cannot resolve seed %s:%s: %s", host, port, exc)
                continue
            resolved = True
            for info in infos:
                addr = Address(str(info[4][0]), int(info[4][1]))
                if addr not in out and addr != self.core.address:
                    out.append(addr)
        if resolved:
            self.seed_peers = len(out)
        return out

    async def _join_then_rejoin(self, round_seconds: float) -> None:
        """Retry-join mode: try the seeds in rounds until one answers, then keep rejoining while alone."""
        started = noticed = trio.current_time()
        failed = 0
        while True:
            try:
                await self.join(max(round_seconds, JOIN_BACKOFF))
                break
            except JoinError as exc:
                failed += 1
                now = trio.current_time()
                if failed == 1 or now - noticed >= RETRY_JOIN_NOTICE:
                    noticed = now
                    log.warning("gossipreg: not joined yet after %.0fs, serving alone and still trying: %s",
                                now - started, exc)
        if failed:
            log.info("gossipreg: joined the cluster after %.0fs", trio.current_time() - started)
        await self._rejoin_loop()

    async def _rejoin_loop(self) -> None:
        """Retry the seeds while this member has no peer (re-resolving DNS names).

        Checks every :data:`REJOIN_INTERVAL` seconds, on a fixed schedule from
        its start; while the member has peers it sleeps through the checks
        instead of waking for each, until a member event (a peer failed or
        left) leaves it alone: then it wakes for the next check on the schedule.
        """
        start = trio.current_time()
        check = 0
        while True:
            if self.core.membership.alive_count() > 1:
                self._alone = trio.Event()
                await self._alone.wait()
            check = max(check + 1, math.floor((trio.current_time() - start) / REJOIN_INTERVAL) + 1)
            await trio.sleep_until(start + check * REJOIN_INTERVAL)
            if self.core.membership.alive_count() <= 1 and self.has_seeds:
                addresses = await self.resolve_seeds()
                if addresses:
                    log.info("gossipreg: no peers left; rejoining through %d seed(s)", len(addresses))
                    self.core.join(addresses, self.driver.now())
                    self.driver.flush()

    def _on_event(self, ev: NodeEvent) -> None:
        if isinstance(ev, CatalogEvent):
            self.on_catalog(ev)
        elif isinstance(ev, JoinResult):
            for ch in self._join_waiters:
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    ch.send_nowait(ev)
        elif isinstance(ev, MemberEvent):
            log.debug("gossipreg: %s %s", ev.kind.value, ev.member.name)
            if self.core.membership.alive_count() <= 1:
                self._alone.set()
        elif isinstance(ev, RegistrationConflict):
            service, version, node_id = ev.key
            log.warning(
                "gossipreg: node %r of %s %s is registered by both %s and %s; %s's registration "
                "is shown, the other's returns if it is deregistered or its member goes away",
                node_id, service, version or "-", self.core.name, ev.other,
                self.core.name if ev.ours_shown else ev.other,
            )
        elif isinstance(ev, TrafficRefused):
            log.warning("gossipreg: %d %s (latest from %s; next warning of this kind in a minute at the "
                        "soonest, the %s counter counts them all)", ev.count,
                        REFUSED.get(ev.cause, ev.cause), shown_address(ev.address), ev.cause)
