"""The agent's HTTP JSON API (``/v1/...``), on top of one running member.

Every route is documented in ``docs/http-api.md``. In short:

==========  ==========================  =============================================
``GET``     ``/v1/services``            every (name, version), without nodes
``GET``     ``/v1/services/{name}``     one entry per version with its nodes; 404 if none
``PUT``     ``/v1/services[?ttl=S]``    register a go-micro JSON service (owned by the agent)
``DELETE``  ``/v1/services``            deregister it (the nodes listed, or all of that version)
``GET``     ``/v1/members``             the member table as this agent sees it
``GET``     ``/v1/watch``               a JSON-lines stream of changes (``?service=&snapshot=1``)
``GET``     ``/v1/health``              liveness (never needs a token)
``GET``     ``/v1/ready``               readiness: 503 while alone with seeds, or isolated (no token)
``GET``     ``/v1/metrics``             Prometheus text format
``GET``     ``/v1/keyring``             key fingerprints and the primary (token required)
``POST``    ``/v1/keyring/{op}``        ``install`` / ``use`` / ``remove`` ``{"key": base64}``
==========  ==========================  =============================================

Errors are ``{"error": "..."}`` with a 4xx status naming the problem (5xx
only for the agent's own failures); bad input never gets a 500.

Who may do what:

* Every request that is not a plain read (registering, deregistering, every
  keyring route, ``GET /v1/keyring`` included, any method but ``GET``)
  needs ``Authorization: Bearer TOKEN``, on every address, loopback
  included; the token is compared in constant time. The agent always has a
  token: the one configured, or one it generated in a private token file
  (:mod:`gossipreg.agent.settings`).
* Plain reads (``GET`` of services, members, watch, metrics) are open
  without a token on a loopback address (``open_reads``); elsewhere they
  need the token too. ``/v1/health`` and ``/v1/ready`` never need one.
* A request without a valid token must carry a loopback ``Host`` header on
  a loopback address (``check_host``), which defeats DNS rebinding; and
  request bodies must be ``Content-Type: application/json``, which a
  cross-site form cannot send without a CORS preflight this API never
  approves.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from ..core.errors import (
    ConfigError,
    InvalidServiceError,
    NotFoundError,
    RegistrationLimitError,
    RegistryClosedError,
    RegistryError,
    WatcherStoppedError,
    WatchOverflowError,
)
from ..core.model import MAX_TTL, MIN_TTL, Service, check_ttl
from ..registry import AsyncRegistry, Member, Result, Watcher
from .checks import CheckStatus
from .http import HTTPLimits, HTTPServer, Request, Response, StreamResponse, Writer, json_line
from .keyring import KeyringManager, KeyringOp, decode_key

__all__ = ["AgentAPI", "is_loopback_host", "member_to_dict", "result_to_dict"]

#: A plain decimal number: digits, an optional fraction and exponent (no sign,
#: no ``inf``/``nan``, no ``_`` separators, ASCII digits only).
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

log = logging.getLogger("gossipreg.agent")

_Route = Callable[[Request], Awaitable[Response | StreamResponse]]


class _APIError(Exception):
    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


#: The challenge sent with every 401.
_CHALLENGE = (("WWW-Authenticate", 'Bearer realm="gossipreg"'),)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or address, ``[v6]`` brackets allowed) is a loopback host.

    ``localhost`` and ``*.localhost`` count (RFC 6761); other names do not,
    whatever they resolve to.
    """
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(header: str) -> str:
    """The host part of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``)."""
    header = header.strip()
    if header.startswith("["):
        end = header.find("]")
        return header[: end + 1] if end > 0 else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def member_to_dict(member: Member) -> dict[str, Any]:
    """The JSON object of a member: name, ``host:port`` address, state, incarnation, metadata."""
    return {
        "name": member.name,
        "address": _address(*member.address),
        "state": member.state,
        "incarnation": member.incarnation,
        "metadata": dict(member.metadata),
    }


def result_to_dict(result: Result) -> dict[str, Any]:
    """The JSON object of a watch result: ``{"action", "service"}`` (go-micro's ``registry.Result``)."""
    return {"action": result.action, "service": result.service.to_dict()}


class AgentAPI:
    """The ``/v1`` API of one member; :attr:`server` serves it (see :func:`~gossipreg.agent.http.serve_http`).

    Args:
        registry: the running member.
        keyring: runtime keyring management of that member.
        token: the bearer token of this API. Every request that is not a
            plain read needs it; ``None`` refuses every such request (401).
        open_reads: answer plain reads (``GET`` of services, members, watch,
            metrics) without a token; set on a loopback address only.
            ``/v1/health`` never needs a token.
        check_host: refuse (403) a request without a valid token whose
            ``Host`` header is not a loopback host (set on a loopback
            address, against DNS rebinding).
        limits: limits of the HTTP server.
        checks: the agent's service-file checks (shown by ``/v1/health``).
    """

    def __init__(
        self,
        registry: AsyncRegistry,
        keyring: KeyringManager,
        *,
        token: str | None = None,
        open_reads: bool = True,
        check_host: bool = True,
        limits: HTTPLimits | None = None,
        checks: Mapping[str, CheckStatus] | None = None,
    ) -> None:
        self.registry = registry
        self.keyring = keyring
        #: The agent's service-file checks, by file (:mod:`gossipreg.agent.checks`).
        self.checks: Mapping[str, CheckStatus] = checks if checks is not None else {}
        self._token = token.encode("utf-8") if token else None
        self._open_reads = open_reads
        self._check_host = check_host
        self._closing = False
        self._watchers: set[Watcher] = set()
        self.server = HTTPServer(self.handle, limits)
        self._routes: dict[str, dict[str, _Route]] = {
            "/v1/services": {"GET": self._list, "PUT": self._register, "DELETE": self._deregister},
            "/v1/members": {"GET": self._members},
            "/v1/watch": {"GET": self._watch},
            "/v1/health": {"GET": self._health},
            "/v1/ready": {"GET": self._ready},
            "/v1/metrics": {"GET": self._metrics},
            "/v1/keyring": {"GET": self._keyring_list},
            "/v1/keyring/install": {"POST": self._keyring_install},
            "/v1/keyring/use": {"POST": self._keyring_use},
            "/v1/keyring/remove": {"POST": self._keyring_remove},
        }
        # The plain reads: open without a token on loopback (with open_reads).
        self._reads: set[_Route] = {self._list, self._get, self._members, self._watch, self._metrics}

    async def close(self, grace: float = 1.0) -> None:
        """Start refusing requests (503) and end every watch stream cleanly, waiting up to ``grace`` s."""
        self._closing = True
        for watcher in list(self._watchers):
            watcher.stop()
        with trio.move_on_after(grace):
            while self.server.streams:  # noqa: ASYNC110 - the streams end on their own tasks
                await trio.sleep(0.01)

    async def handle(self, request: Request) -> Response | StreamResponse:
        """Answer one request (the :data:`~gossipreg.agent.http.Handler` of :attr:`server`).

        Authorisation comes first, then routing; every error is a JSON
        ``{"error": ...}`` answer: a :class:`~gossipreg.RegistryError`
        raised by the member for the request's input is a 400
        (:class:`~gossipreg.NotFoundError` a 404), never a 500.
        """
        if self._closing:
            return Response.error(503, "the agent is shutting down", (("Connection", "close"),))
        try:
            route, problem = self._resolve(request)
            self._authorize(request, route)
            if route is None:
                raise problem or _APIError(404, f"no such endpoint: {request.path}")
            return await route(request)
        except _APIError as exc:
            return Response.error(exc.status, exc.message, exc.headers)
        except NotFoundError as exc:
            return Response.error(404, str(exc))
        except (RegistryClosedError, trio.ClosedResourceError, WatcherStoppedError):
            return Response.error(503, "the agent is shutting down")
        except RegistryError as exc:
            # The member refused the request's input (InvalidServiceError, ConfigError,
            # RegistrationLimitError, ...): the client's problem, named by the message.
            return Response.error(400, f"invalid request: {exc}")

    # ------------------------------------------------------------ plumbing

    def _resolve(self, request: Request) -> tuple[_Route | None, _APIError | None]:
        """The route of ``request``, or ``None`` and the 404 or 405 to answer."""
        path = request.path
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        methods = self._routes.get(path)
        if methods is None and path.startswith("/v1/services/"):
            methods = {"GET": self._get}
        if methods is None:
            return None, _APIError(404, f"no such endpoint: {request.path}")
        route = methods.get(request.method)
        if route is None:
            allow = ", ".join(sorted(methods))
            return None, _APIError(
                405, f"method {request.method} not allowed on {path}; use {allow}", (("Allow", allow),)
            )
        return route, None

    def _authorize(self, request: Request, route: _Route | None) -> None:
        health = route in (self._health, self._ready)  # probes of orchestrators: never a token
        auth = request.headers.get("authorization")
        if auth is not None and not health:
            self._verify(auth)
            return  # a valid token: the token is the protection, whatever the Host
        if self._check_host:
            host = request.headers.get("host")
            if host is not None and not is_loopback_host(_host_of(host)):
                raise _APIError(
                    403,
                    f"Host {host!r} is not a loopback name; without a token this API answers "
                    "local clients only",
                )
        if health:
            return
        plain_read = request.method == "GET" and (route is None or route in self._reads)
        if self._open_reads and plain_read:
            return
        what = "this route" if plain_read else "a request that is not a plain read"
        raise _APIError(
            401,
            f"missing token: {what} needs 'Authorization: Bearer TOKEN' "
            "(the agent's token, from its configuration or its token file)",
            _CHALLENGE,
        )

    def _verify(self, auth: str) -> None:
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise _APIError(401, "malformed Authorization header: expected 'Bearer TOKEN'", _CHALLENGE)
        if self._token is None or not hmac.compare_digest(given.strip().encode("utf-8"), self._token):
            raise _APIError(401, "invalid token", _CHALLENGE)

    @staticmethod
    def _json_body(request: Request) -> Any:
        ctype = request.headers.get("content-type", "")
        if ctype.split(";", 1)[0].strip().lower() != "application/json":
            shown = f"got {ctype!r}" if ctype else "none given"
            raise _APIError(415, f"Content-Type must be application/json ({shown})")
        if not request.body.strip():
            raise _APIError(400, "request body is empty; expected a JSON document")
        try:
            return json.loads(request.body)
        except (ValueError, RecursionError) as exc:
            raise _APIError(400, f"request body is not valid JSON: {exc}") from None

    def _service_body(self, request: Request) -> Service:
        try:
            return Service.from_dict(self._json_body(request))
        except InvalidServiceError as exc:
            raise _APIError(400, f"invalid service: {exc}") from None

    @staticmethod
    def _flag(request: Request, name: str) -> bool:
        value = request.param(name)
        if value is None:
            return False
        text = value.strip().lower()
        if text in ("1", "true", "yes"):
            return True
        if text in ("", "0", "false", "no"):
            return False
        raise _APIError(400, f"{name}: expected 1/true or 0/false, not {value!r}")

    # ------------------------------------------------------------ services

    async def _list(self, request: Request) -> Response:
        services = sorted(self.registry.list_services(), key=lambda s: (s.name, s.version))
        return Response.json({"services": [s.to_dict() for s in services]})

    async def _get(self, request: Request) -> Response:
        name = request.path.removeprefix("/v1/services/").rstrip("/")
        if not name:
            raise _APIError(404, "no such endpoint: /v1/services/")
        try:
            versions = self.registry.get_service(name)
        except NotFoundError:
            raise _APIError(404, f"service {name!r} not found") from None
        return Response.json({"services": [s.to_dict() for s in versions]})

    @staticmethod
    def _ttl(request: Request) -> float | None:
        """The ``?ttl=`` parameter, or ``None``.

        A plain decimal number of seconds in the model's range
        (:func:`~gossipreg.core.model.check_ttl`: from
        :data:`~gossipreg.core.model.MIN_TTL` to :data:`~gossipreg.core.model.MAX_TTL`).
        """
        text = request.param("ttl")
        if text is None:
            return None
        shown = text if len(text) <= 40 else text[:40] + "..."
        rule = (
            f"must be a decimal number of seconds from {MIN_TTL:g} to {MAX_TTL} (about 49.7 days), "
            f"not {shown!r}"
        )
        if not _DECIMAL.fullmatch(text):
            raise _APIError(400, f"ttl: {rule}")
        try:
            return check_ttl(float(text))
        except InvalidServiceError:
            raise _APIError(400, f"ttl: {rule}") from None

    async def _register(self, request: Request) -> Response:
        ttl = self._ttl(request)
        service = self._service_body(request)
        if not service.nodes:
            raise _APIError(400, "invalid service: service.nodes: a registration needs at least one node")
        try:
            await self.registry.register(service, ttl)
        except InvalidServiceError as exc:
            raise _APIError(400, f"invalid registration: {exc}") from None
        except RegistrationLimitError as exc:
            raise _APIError(400, f"registration refused: {exc}") from None
        nodes = [n.id for n in service.nodes]
        log.info(
            "registered %s %s (%d node(s))%s",
            service.name,
            service.version or "-",
            len(nodes),
            f" with ttl {ttl:g}s" if ttl is not None else "",
            extra={
                "event": "service.registered",
                "service": service.name,
                "version": service.version,
                "nodes": nodes,
                "ttl": ttl,
                "peer": request.peer,
            },
        )
        return Response.json(
            {
                "registered": {"name": service.name, "version": service.version, "nodes": nodes},
                "ttl": ttl,
                "member": self.registry.name,
            }
        )

    async def _deregister(self, request: Request) -> Response:
        service = self._service_body(request)
        await self.registry.deregister(service)
        nodes = [n.id for n in service.nodes]
        log.info(
            "deregistered %s %s (%s)",
            service.name,
            service.version or "-",
            f"{len(nodes)} node(s)" if nodes else "every node of this agent",
            extra={
                "event": "service.deregistered",
                "service": service.name,
                "version": service.version,
                "nodes": nodes,
                "peer": request.peer,
            },
        )
        return Response.json(
            {
                "deregistered": {"name": service.name, "version": service.version, "nodes": nodes},
                "member": self.registry.name,
            }
        )

    async def _watch(self, request: Request) -> StreamResponse:
        service = request.param("service")
        if service is not None and not service.strip():
            service = None
        snapshot = self._flag(request, "snapshot")
        # Created now, before the answer's head goes out: a client that has the head
        # misses nothing that happens afterwards.
        watcher = self.registry.watch(service, snapshot=snapshot)
        self._watchers.add(watcher)

        def stop() -> None:
            watcher.stop()
            self._watchers.discard(watcher)

        async def produce(write: Writer) -> None:
            try:
                while True:
                    try:
                        result = await watcher.next()
                    except WatchOverflowError as exc:
                        await write(json_line({"error": str(exc)}))
                        return
                    except WatcherStoppedError:
                        return
                    await write(json_line(result_to_dict(result)))
            finally:
                stop()

        return StreamResponse(produce, on_close=stop)

    # ------------------------------------------------------------ members, health, metrics

    async def _members(self, request: Request) -> Response:
        return Response.json(
            {"member": self.registry.name, "members": [member_to_dict(m) for m in self.registry.members()]}
        )

    async def _health(self, request: Request) -> Response:
        counts = dict.fromkeys(("alive", "suspect", "dead", "left"), 0)
        for m in self.registry.members():
            counts[m.state] += 1
        status = self.registry.status()
        return Response.json(
            {
                "status": "ok",
                "member": self.registry.name,
                "address": _address(*self.registry.address),
                "members": counts,
                "state": status.state,
                "ready": status.ready,
                "checks": [c.to_dict() for c in self.checks.values()],
            }
        )

    async def _ready(self, request: Request) -> Response:
        status = self.registry.status()
        body: dict[str, Any] = {
            "ready": status.ready,
            "state": status.state,
            "member": self.registry.name,
            "members": status.members,
            "seeds": status.seeds,
            "silent_for": round(status.silent_for, 3),
            "awareness": status.awareness,
        }
        if not status.ready:
            body["reason"] = (
                "isolated: no member heard for several probe intervals; the view is going stale"
                if status.state == "isolated"
                else "alone: no seed has answered yet"
            )
        return Response.json(body, 200 if status.ready else 503)

    async def _metrics(self, request: Request) -> Response:
        # prometheus_client (and the http.server, email and urllib it imports) is loaded
        # at the first scrape: an agent nobody scrapes does not hold it in memory.
        from . import metrics

        return Response(200, metrics.exposition(self), metrics.CONTENT_TYPE)

    # ------------------------------------------------------------ keyring

    async def _keyring_list(self, request: Request) -> Response:
        return Response.json({"member": self.registry.name, **self.keyring.describe()})

    async def _keyring_install(self, request: Request) -> Response:
        return await self._keyring_op(request, "install")

    async def _keyring_use(self, request: Request) -> Response:
        return await self._keyring_op(request, "use")

    async def _keyring_remove(self, request: Request) -> Response:
        return await self._keyring_op(request, "remove")

    async def _keyring_op(self, request: Request, op: KeyringOp) -> Response:
        body = self._json_body(request)
        if not isinstance(body, Mapping) or "key" not in body:
            raise _APIError(400, 'request body: expected {"key": "<base64 key>"}')
        try:
            key = decode_key(body["key"])
        except ConfigError as exc:
            raise _APIError(400, str(exc)) from None
        try:
            change = await self.keyring.apply(op, key)
        except ConfigError as exc:
            raise _APIError(409, str(exc)) from None
        except OSError as exc:
            log.error("keyring %s failed: cannot write the keyring file: %s", op, exc)
            raise _APIError(
                500, f"the keyring file could not be written ({exc.strerror or exc}); nothing changed"
            ) from None
        log.info(
            "keyring %s %s%s",
            op,
            change.fingerprint,
            "" if change.changed else " (no change)",
            extra={
                "event": f"keyring.{op}",
                "fingerprint": change.fingerprint,
                "changed": change.changed,
                "peer": request.peer,
            },
        )
        return Response.json(
            {
                "member": self.registry.name,
                "op": op,
                "fingerprint": change.fingerprint,
                "changed": change.changed,
                **self.keyring.describe(),
            }
        )
