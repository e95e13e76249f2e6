"""The agent: one long-running gossip member with its local HTTP API.

:class:`Agent` opens a member with :func:`gossipreg.open_registry`,
registers the service files it was given (renewing them every ``ttl / 3``;
a file with a ``"check"`` only while its check passes, see
:mod:`~gossipreg.agent.checks` and :attr:`Agent.checks`), serves the HTTP
API (:class:`~gossipreg.agent.api.AgentAPI`) and runs until
:meth:`Agent.stop`, or, under :meth:`Agent.run_until_signal`, until SIGINT or
SIGTERM; then it leaves the cluster gracefully. Under systemd (``Type=notify``)
it reports ``READY=1`` once its member runs and its API listens, and
``STOPPING=1`` when it begins to leave (:mod:`gossipreg.agent.sdnotify`).

In a trio program (tests, embedding)::

    agent = Agent(prepare(AgentSettings(bind="127.0.0.1:0", http="127.0.0.1:0", insecure=True,
                                        http_token="a-token")))
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        print(agent.http_url)
        ...
        agent.stop()
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

import trio

from ..core.model import Service
from ..registry import AsyncRegistry, open_registry
from .api import AgentAPI, is_loopback_host
from .checks import Check, CheckStatus, run_check
from .http import HTTPLimits, serve_http
from .keyring import KeyringManager
from .sdnotify import notify
from .settings import PreparedAgent

__all__ = ["Agent"]

log = logging.getLogger("gossipreg.agent")


def _bind_error(flag: str, address: str, exc: OSError) -> OSError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return OSError(exc.errno, f"{flag} {address}: cannot bind: {reason.lower()}")


def release_startup_memory() -> None:
    """Give back to the system the heap that starting up used and freed.

    Reading the settings, the imports and the join leave freed blocks in the C
    heap that the allocator keeps for later; an idle agent never needs them
    again. glibc's ``malloc_trim(0)`` returns them (about 2 MiB of resident
    memory); elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # already imported by trio

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc (musl has no malloc_trim)
        return
    trim(0)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Agent:
    """A gossip member with its HTTP API, configured by :func:`~gossipreg.agent.settings.prepare`.

    Args:
        prepared: the validated settings.
        limits: limits of the HTTP server (defaults: :class:`HTTPLimits`).
        seed: seed of the member's random generator (tests).
    """

    def __init__(
        self, prepared: PreparedAgent, *, limits: HTTPLimits | None = None, seed: int | None = None
    ) -> None:
        self.prepared = prepared
        self._limits = limits
        self._seed = seed
        self._stop = trio.Event()
        self._registry: AsyncRegistry | None = None
        self._api: AgentAPI | None = None
        #: The bound port of the HTTP API, once :meth:`run` has started.
        self.http_port: int | None = None
        self._checks: dict[str, CheckStatus] = {}
        for path, svc, check in zip(prepared.settings.services, prepared.services, self._service_checks(),
                                    strict=True):
            if check is not None:
                self._checks[os.fspath(path)] = CheckStatus(
                    os.fspath(path), svc.name, svc.version, tuple(n.id for n in svc.nodes), check
                )

    def _service_checks(self) -> tuple[Check | None, ...]:
        p = self.prepared
        return p.checks or (None,) * len(p.services)

    @property
    def checks(self) -> Mapping[str, CheckStatus]:
        """The service files' checks: file (as given) -> :class:`~gossipreg.agent.checks.CheckStatus`.

        A read-only view that follows the checks as they run; files without a
        ``"check"`` are not in it. Each status is ``"unknown"`` until the first run.
        """
        return MappingProxyType(self._checks)

    @property
    def registry(self) -> AsyncRegistry:
        """The running member (only between start and stop)."""
        if self._registry is None:
            raise RuntimeError("the agent is not running")
        return self._registry

    @property
    def api(self) -> AgentAPI:
        """The HTTP API (only between start and stop)."""
        if self._api is None:
            raise RuntimeError("the agent is not running")
        return self._api

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the API (the bound port), once started."""
        if self.http_port is None:
            raise RuntimeError("the agent is not running")
        host = self.prepared.http_host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return _url(host, self.http_port)

    def stop(self) -> None:
        """Ask the agent to leave the cluster and stop (call from the agent's trio thread)."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[Agent] = trio.TASK_STATUS_IGNORED) -> None:
        """Join, register, serve, and run until :meth:`stop`; then leave gracefully.

        ``task_status.started(self)`` once the HTTP API accepts connections.

        Raises:
            ConfigError: the options are invalid in a way only binding reveals
                (e.g. no advertise address).
            JoinError: seeds were given and none answered within ``join_timeout``
                (never with ``retry_join``: the agent starts alone and keeps trying them).
            OSError: an address cannot be bound.
        """
        p = self.prepared
        s = p.settings
        entered = False
        try:
            async with open_registry(
                s.bind,
                list(s.join),
                name=s.name,
                keyring=p.keyring,
                tls=p.tls,
                insecure=s.insecure,
                advertise=s.advertise,
                config=p.config,
                timeout=s.join_timeout,
                retry_join=s.retry_join,
                seed=self._seed,
                identity=p.identity,
                limits=p.limits,
            ) as reg:
                entered = True
                self._registry = reg
                try:
                    await self._serve(reg, task_status)
                finally:
                    self._registry = None
                    self._api = None
                    self.http_port = None
        except OSError as exc:
            if entered:
                raise
            raise _bind_error("--bind", s.bind, exc) from None
        log.info("agent left the cluster", extra={"event": "agent.left"})

    async def _serve(self, reg: AsyncRegistry, task_status: trio.TaskStatus[Agent]) -> None:
        p = self.prepared
        s = p.settings
        # The live keyring the member seals and opens with: changes take effect at once.
        manager = KeyringManager(reg.keyring, s.keyring_file)
        loopback = is_loopback_host(p.http_host)
        api = AgentAPI(
            reg, manager, token=p.http_token, open_reads=loopback, check_host=loopback, limits=self._limits,
            checks=self.checks,
        )
        if p.http_token_file is not None:
            log.info(
                "HTTP API token %s %s (needed for every request that is not a plain read)",
                "created in" if p.http_token_created else "read from",
                p.http_token_file,
                extra={
                    "event": "agent.token_file",
                    "token_file": str(p.http_token_file),
                    "token_created": p.http_token_created,
                },
            )
        self._api = api
        checks = self._service_checks()
        for svc, check in zip(p.services, checks, strict=True):
            if check is not None:
                continue  # registered once its check passes (_check)
            await reg.register(svc, s.service_ttl)
            log.info(
                "registered %s %s from a service file (ttl %gs, renewed every %gs)",
                svc.name,
                svc.version or "-",
                s.service_ttl,
                s.service_ttl / 3,
                extra={
                    "event": "service.registered",
                    "service": svc.name,
                    "version": svc.version,
                    "nodes": [n.id for n in svc.nodes],
                    "ttl": s.service_ttl,
                },
            )
        async with trio.open_nursery() as nursery:
            try:
                self.http_port = await nursery.start(serve_http, api.server, p.http_host, p.http_port)
            except OSError as exc:
                raise _bind_error("--http", s.http, exc) from None
            for path, svc, check in zip(s.services, p.services, checks, strict=True):
                if check is None:
                    nursery.start_soon(self._renew, reg, svc, s.service_ttl)
                else:
                    nursery.start_soon(self._check, reg, os.fspath(path), svc, check, s.service_ttl)
                    nursery.start_soon(self._renew, reg, svc, s.service_ttl, os.fspath(path))
            host, port = reg.address
            gossip = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            if p.http_token_file is not None:
                where = f"token in {p.http_token_file}"
            else:
                where = "token as configured"
            access = "writes need the token" if loopback else "every route but /v1/health needs the token"
            log.info(
                "agent %s ready: gossip on %s, HTTP API on %s (%s; %s)",
                reg.name,
                gossip,
                self.http_url,
                access,
                where,
                extra={
                    "event": "agent.ready",
                    "member": reg.name,
                    "gossip": gossip,
                    "http": self.http_url,
                    "token_file": None if p.http_token_file is None else str(p.http_token_file),
                    "members": len(reg.members()),
                },
            )
            alone = len(reg.members()) <= 1 and bool(s.join)
            notify("READY=1", f"STATUS=member {reg.name}: gossip on {gossip}, HTTP API on {self.http_url}"
                   + ("; not joined yet, trying the seeds" if alone else ""))
            task_status.started(self)
            release_startup_memory()
            await self._stop.wait()
            notify("STOPPING=1", f"STATUS=member {reg.name}: leaving the cluster")
            log.info("agent %s leaving the cluster", reg.name, extra={"event": "agent.leaving"})
            await api.close()
            nursery.cancel_scope.cancel()

    async def _renew(
        self, reg: AsyncRegistry, service: Service, ttl: float, checked: str | None = None
    ) -> None:
        """Re-register ``service`` every ``ttl / 3``; with ``checked`` (its file), while its check passes."""
        while True:
            await trio.sleep(ttl / 3)
            if checked is None or self._checks[checked].status == "passing":
                await reg.register(service, ttl)

    async def _check(self, reg: AsyncRegistry, key: str, service: Service, check: Check, ttl: float) -> None:
        """Run ``check`` every ``check.interval``; register ``service`` at once whenever it starts passing.

        Renewal (:meth:`_renew`) stops while it fails, so the registration
        expires after ``ttl`` unless the check passes again first.
        """
        while True:
            started = trio.current_time()
            reason = await run_check(check)
            old = self._checks[key]
            status: Literal["passing", "failing"] = "passing" if reason is None else "failing"
            changed = status != old.status
            self._checks[key] = dataclasses.replace(
                old,
                status=status,
                reason=reason,
                since=time.time() if changed else old.since,
                runs=old.runs + 1,
                failures=old.failures + (reason is not None),
            )
            if changed:
                self._log_check(old.status, self._checks[key], ttl)
                if reason is None:
                    await reg.register(service, ttl)
            await trio.sleep_until(max(started + check.interval, trio.current_time()))

    @staticmethod
    def _log_check(before: str, now: CheckStatus, ttl: float) -> None:
        what = f"check of {now.service} {now.version or '-'} ({now.check.describe()})"
        extra = {
            "event": f"check.{now.status}",
            "service": now.service,
            "version": now.version,
            "nodes": list(now.nodes),
            "check": now.check.describe(),
            "file": now.file,
            "ttl": ttl,
        }
        if now.status == "passing":
            log.info(
                "%s %s: registered (ttl %gs, renewed every %gs while the check passes)",
                what,
                "passing again" if before == "failing" else "passing",
                ttl,
                ttl / 3,
                extra=extra,
            )
        elif before == "passing":
            log.warning(
                "%s failing: %s; renewal stopped, the registration expires within %gs unless it passes again",
                what,
                now.reason,
                ttl,
                extra={**extra, "reason": now.reason},
            )
        else:
            log.warning(
                "%s failing: %s; not registered until it passes",
                what,
                now.reason,
                extra={**extra, "reason": now.reason},
            )

    async def run_until_signal(self) -> None:
        """:meth:`run`, stopping gracefully on SIGINT or SIGTERM (main thread only)."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def on_signal() -> None:
                    async for signum in signals:
                        log.info(
                            "received %s",
                            signal.Signals(signum).name,
                            extra={"event": "agent.signal", "signal": signal.Signals(signum).name},
                        )
                        if self._registry is None:
                            # Still starting (joining): give up at once.
                            nursery.cancel_scope.cancel()
                        self.stop()

                nursery.start_soon(on_signal)
                await self.run()
                nursery.cancel_scope.cancel()
