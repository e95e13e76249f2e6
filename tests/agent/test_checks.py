"""Service checks of the agent: the ``"check"`` of a ``--service`` file, parsed and run.

Real sockets on 127.0.0.1 port 0, every test under ``trio.fail_after``; the
waits are bounded by ``wait_until`` limits, never by a measured duration.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import pytest
import trio

from gossipreg.agent import Agent, AgentSettings, prepare
from gossipreg.agent.checks import DEFAULT_INTERVAL, DEFAULT_TIMEOUT, Check, parse_check, run_check
from gossipreg.core.errors import ConfigError
from gossipreg.core.model import Node, Service

from .helpers import request, settings, start_agent, visible, wait_until

pytestmark = pytest.mark.timeout(60)

WEB = {"name": "web", "version": "2.1", "nodes": [{"id": "web-1", "address": "10.1.0.1:80"}]}
WEB_SERVICE = Service("web", "2.1", nodes=(Node("web-1", "10.1.0.1:80"),))
#: Small TTL and check period, so that expiry and recovery take about a second.
TTL = 1.0
FAST_CHECK = {"interval": 0.3, "timeout": 0.3}
#: Bound of a wait for expiry: ttl + interval + timeout, plus slack for a loaded host.
EXPIRY_LIMIT = TTL + 0.3 + 0.3 + 8.0


# ---------------------------------------------------------------- parsing


def test_tcp_check_with_defaults() -> None:
    check = parse_check({"tcp": "127.0.0.1:8080"})
    assert check == Check("tcp", "127.0.0.1:8080", "127.0.0.1", 8080, "", DEFAULT_INTERVAL, DEFAULT_TIMEOUT)
    assert parse_check({"tcp": "[::1]:53"}).host == "::1"
    assert parse_check({"tcp": "db.internal:5432"}).host == "db.internal"


def test_http_check_with_path_query_and_default_port() -> None:
    check = parse_check({"http": "http://10.0.0.5/healthz?full=1", "interval": 5, "timeout": 1.5})
    assert (check.kind, check.host, check.port, check.path) == ("http", "10.0.0.5", 80, "/healthz?full=1")
    assert (check.interval, check.timeout) == (5.0, 1.5)
    assert parse_check({"http": "http://[::1]:8080"}).path == "/"
    assert parse_check({"http": "http://[::1]:8080"}).to_dict() == {
        "http": "http://[::1]:8080", "interval": DEFAULT_INTERVAL, "timeout": DEFAULT_TIMEOUT}


def test_the_default_timeout_is_never_longer_than_the_interval() -> None:
    assert parse_check({"tcp": "h:1", "interval": 0.5}).timeout == 0.5
    assert parse_check({"tcp": "h:1", "interval": 60}).timeout == DEFAULT_TIMEOUT


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["tcp", "h:1"], "check: must be an object"),
        ("h:1", "check: must be an object"),
        ({}, "check: names no kind"),
        ({"interval": 5}, "check: names no kind"),
        ({"tcp": "h:1", "http": "http://h/"}, "check: give one of"),
        ({"tcp": "h:1", "script": "true"}, "check.script: unknown key"),
        ({"tcp": 8080}, "check.tcp: must be a string, not int"),
        ({"tcp": "h"}, "check.tcp: 'h': missing :port"),
        ({"tcp": ":80"}, "check.tcp: ':80': missing host"),
        ({"tcp": "h:0"}, "check.tcp: 'h:0': port must be a number from 1 to 65535"),
        ({"tcp": "h:99999"}, "check.tcp: 'h:99999': port must be a number"),
        ({"tcp": "::1:80"}, "check.tcp: '::1:80': write IPv6 addresses as [address]:port"),
        ({"http": None}, "check.http: must be a string, not NoneType"),
        ({"http": "https://h/"}, "check.http: 'https://h/': https is not supported"),
        ({"http": "h:80/health"}, "the URL must begin with http://"),
        ({"http": "http:///health"}, "check.http: 'http:///health': missing host"),
        ({"http": "http://u:p@h/"}, "credentials in the URL are not supported"),
        ({"http": "http://h/#top"}, "a fragment"),
        ({"http": "http://h:0/"}, "port must be a number from 1 to 65535"),
        ({"http": "http://h:x/"}, "check.http: 'http://h:x/': not a URL"),
        ({"http": "http://h/a b"}, "spaces and control characters"),
        ({"tcp": "h:1", "interval": "10s"}, "check.interval: must be a number of seconds, not str"),
        ({"tcp": "h:1", "interval": True}, "check.interval: must be a number of seconds, not bool"),
        ({"tcp": "h:1", "interval": 0}, "check.interval: must be a positive number of seconds, not 0"),
        ({"tcp": "h:1", "interval": -1}, "check.interval: must be a positive number"),
        ({"tcp": "h:1", "interval": math.inf}, "check.interval: must be a positive number"),
        ({"tcp": "h:1", "timeout": math.nan}, "check.timeout: must be a positive number"),
        ({"tcp": "h:1", "timeout": None}, "check.timeout: must be a number of seconds, not NoneType"),
        ({"tcp": "h:1", "interval": 1, "timeout": 3}, "check.timeout: 3 is longer than check.interval (1)"),
    ],
)
def test_an_invalid_check_names_the_field(data: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_check(data)
    assert message in str(info.value)


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_prepare_reads_the_check_beside_the_go_micro_fields(tmp_path: Path) -> None:
    checked = _write(tmp_path / "web.json", {**WEB, "check": {"tcp": "127.0.0.1:80", "interval": 3}})
    plain = _write(tmp_path / "plain.json", {**WEB, "name": "plain"})
    prepared = prepare(settings(services=(checked, plain)))
    # The service is what go-micro reads from the same file: "check" is not part of it.
    assert prepared.services[0] == Service.from_json(checked.read_text()) == WEB_SERVICE
    assert prepared.checks == (parse_check({"tcp": "127.0.0.1:80", "interval": 3}), None)


def test_an_invalid_check_in_a_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    bad = _write(tmp_path / "web.json", {**WEB, "check": {"tcp": "127.0.0.1:80", "interval": -2}})
    with pytest.raises(ConfigError) as info:
        prepare(settings(services=(bad,)))
    assert str(info.value) == (
        f"--service {str(bad)!r}: check.interval: must be a positive number of seconds, not -2"
    )
    origins = {"services": "GOSSIPREG_SERVICE_FILES"}
    with pytest.raises(ConfigError) as info:
        prepare(AgentSettings(insecure=True, services=(bad,), origins=origins))
    assert str(info.value).startswith(f"GOSSIPREG_SERVICE_FILES {str(bad)!r}: check.interval:")


# ---------------------------------------------------------------- test servers


#: :attr:`Server.answer` that never answers.
HANG = b"hang"


class Server:
    """A TCP (or tiny HTTP) server on 127.0.0.1 that a test opens and closes.

    With ``status`` set, each connection gets one HTTP answer with that status;
    without, connections are accepted and closed at once.
    """

    def __init__(self, nursery: trio.Nursery, status: int | None = None) -> None:
        self.nursery = nursery
        self.status = status
        self.port = 0
        self.answer: bytes | None = None
        """Raw bytes to answer a request with instead of an HTTP answer (:data:`HANG`: never answer)."""
        self._listener: trio.SocketListener | None = None
        self._scope = trio.CancelScope()

    async def open(self) -> int:
        """Listen (on the same port as before, if it was opened before); return the port."""
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self._listener = listeners[0]
        self.port = self._listener.socket.getsockname()[1]
        self._scope = trio.CancelScope()
        self.nursery.start_soon(self._serve, self._listener, self._scope)
        return self.port

    async def close(self) -> None:
        """Stop listening: connections are refused from now on."""
        self._scope.cancel()
        if self._listener is not None:
            await self._listener.aclose()

    async def _serve(self, listener: trio.SocketListener, scope: trio.CancelScope) -> None:
        with scope:
            async with listener, trio.open_nursery() as handlers:
                while True:
                    stream = await listener.accept()
                    handlers.start_soon(self._handle, stream)

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self.status is None and self.answer is None:
                return  # a TCP server: accept, close
            data = await stream.receive_some(65536)  # the whole request: a check's is small
            if self.answer is not None:
                if self.answer == HANG:
                    await trio.sleep_forever()
                await stream.send_all(self.answer)
                return
            conn = h11.Connection(h11.SERVER)
            conn.receive_data(data)
            while not isinstance(event := conn.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
            assert self.status is not None
            body = b"" if self.status == 204 else b"ok"
            headers = [] if self.status == 204 else [("Content-Length", "2"), ("Location", "/elsewhere")]
            await stream.send_all(
                (conn.send(h11.Response(status_code=self.status, headers=headers)) or b"")
                + ((conn.send(h11.Data(data=body)) or b"") if body else b"")
                + (conn.send(h11.EndOfMessage()) or b"")
            )


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 where connections are refused: bound by a socket that does not listen,
    so that nothing else (the agent under test) is given it meanwhile."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


# ---------------------------------------------------------------- running one check


async def test_run_check_tcp_passes_while_listening_and_says_why_not() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = Server(nursery)
            port = await server.open()
            check = parse_check({"tcp": f"127.0.0.1:{port}"})
            assert await run_check(check) is None
            await server.close()
            assert await run_check(check) == "connection refused"
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("status", "reason"),
    [(200, None), (204, None), (500, "HTTP 500"), (404, "HTTP 404"),
     (302, "HTTP 302 (redirects are not followed)")],
)
async def test_run_check_http_passes_on_2xx_only(status: int, reason: str | None) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = Server(nursery, status)
            port = await server.open()
            assert await run_check(parse_check({"http": f"http://127.0.0.1:{port}/health?x=1"})) == reason
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", "not an HTTP answer"),
        (HANG, "no answer within 0.2s"),
        (b"", "the connection was closed without an answer"),
    ],
)
async def test_run_check_http_fails_on_what_is_not_an_answer(answer: bytes, reason: str) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = Server(nursery)
            server.answer = answer
            port = await server.open()
            found = await run_check(parse_check({"http": f"http://127.0.0.1:{port}/", "timeout": 0.2}))
            assert found is not None
            assert found.startswith(reason)
            nursery.cancel_scope.cancel()


async def test_run_check_http_on_a_closed_port() -> None:
    with trio.fail_after(20), closed_port() as port:
        assert await run_check(parse_check({"http": f"http://127.0.0.1:{port}/"})) == "connection refused"


# ---------------------------------------------------------------- an agent with checks


def _check_events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (getattr(r, "event", ""), getattr(r, "reason", "") or "")
        for r in caplog.records
        if getattr(r, "event", "").startswith("check.")
    ]


async def _listed_follows_the_check(
    tmp_path: Path, nursery: trio.Nursery, server: Server, check: dict[str, Any],
    fail: Any, recover: Any, reason: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """An agent with ``check``: listed while it passes, gone after ``fail()``, back after ``recover()``."""
    path = _write(tmp_path / "web.json", {**WEB, "check": {**check, **FAST_CHECK}})
    agent = await start_agent(nursery, services=(path,), service_ttl=TTL)
    key = str(path)
    await wait_until(lambda: visible(agent.registry, WEB_SERVICE), "the checked service to be registered")
    assert agent.checks[key].status == "passing"
    first_since = agent.checks[key].since

    # Passing for longer than the TTL: renewed, still listed.
    runs = agent.checks[key].runs
    await wait_until(lambda: agent.checks[key].runs >= runs + 7, "more checks")
    assert visible(agent.registry, WEB_SERVICE)

    await fail()
    await wait_until(lambda: agent.checks[key].status == "failing", "the check to fail")
    failing = agent.checks[key]
    assert failing.reason == reason
    assert failing.since >= first_since
    await wait_until(lambda: not visible(agent.registry, WEB_SERVICE), "the registration to expire",
                     limit=EXPIRY_LIMIT)
    # Still failing, still gone; the failure was logged once, not once per check.
    await wait_until(lambda: agent.checks[key].runs >= failing.runs + 3, "more failed checks")
    assert not visible(agent.registry, WEB_SERVICE)
    assert agent.checks[key].failures >= failing.failures + 3
    assert _check_events(caplog) == [("check.passing", ""), ("check.failing", reason)]

    await recover()
    await wait_until(lambda: visible(agent.registry, WEB_SERVICE), "the service to be registered again")
    assert agent.checks[key].status == "passing"
    assert agent.checks[key].reason is None
    assert _check_events(caplog) == [("check.passing", ""), ("check.failing", reason), ("check.passing", "")]
    assert agent.checks[key].to_dict()["status"] == "passing"
    agent.stop()


async def test_an_agent_renews_a_tcp_checked_service_only_while_the_port_accepts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gossipreg.agent")
    with trio.fail_after(50):
        async with trio.open_nursery() as nursery:
            server = Server(nursery)
            port = await server.open()
            await _listed_follows_the_check(
                tmp_path, nursery, server, {"tcp": f"127.0.0.1:{port}"},
                server.close, server.open, "connection refused", caplog,
            )
            nursery.cancel_scope.cancel()


async def test_an_agent_renews_an_http_checked_service_only_while_it_answers_2xx(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gossipreg.agent")
    with trio.fail_after(50):
        async with trio.open_nursery() as nursery:
            server = Server(nursery, 200)
            port = await server.open()

            async def answer(status: int) -> None:
                server.status = status
                await trio.lowlevel.checkpoint()

            await _listed_follows_the_check(
                tmp_path, nursery, server, {"http": f"http://127.0.0.1:{port}/healthz"},
                lambda: answer(500), lambda: answer(200), "HTTP 500", caplog,
            )
            nursery.cancel_scope.cancel()


async def test_a_service_whose_check_never_passes_is_never_registered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gossipreg.agent")
    with trio.fail_after(30), closed_port() as port:
        checked = _write(tmp_path / "web.json", {**WEB, "check": {"tcp": f"127.0.0.1:{port}", **FAST_CHECK}})
        plain = _write(tmp_path / "plain.json", {**WEB, "name": "plain"})
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery, services=(checked, plain), service_ttl=TTL)
            assert set(agent.checks) == {str(checked)}  # files without a check are not listed
            # The unchecked file is registered at start, as before.
            assert visible(agent.registry, Service("plain", "2.1", nodes=WEB_SERVICE.nodes))
            await wait_until(lambda: agent.checks[str(checked)].runs >= 4, "a few checks")
            status = agent.checks[str(checked)]
            assert (status.status, status.reason) == ("failing", "connection refused")
            assert status.failures == status.runs
            assert not visible(agent.registry, WEB_SERVICE)
            assert _check_events(caplog) == [("check.failing", "connection refused")]
            agent.stop()


def test_checks_start_unknown(tmp_path: Path) -> None:
    path = _write(tmp_path / "web.json", {**WEB, "check": {"tcp": "127.0.0.1:9"}})
    agent = Agent(prepare(settings(services=(path,))))
    status = agent.checks[str(path)]
    assert (status.status, status.service, status.nodes) == ("unknown", "web", ("web-1",))
    assert status.to_dict() == {
        "file": str(path), "service": "web", "version": "2.1", "nodes": ["web-1"],
        "check": {"tcp": "127.0.0.1:9", "interval": DEFAULT_INTERVAL, "timeout": DEFAULT_TIMEOUT},
        "status": "unknown", "reason": None, "since": 0.0, "runs": 0, "failures": 0,
    }


async def test_health_and_metrics_show_the_checks(tmp_path: Path) -> None:
    with socket.socket() as closed:  # bound, never listening: the check fails
        closed.bind(("127.0.0.1", 0))
        path = _write(tmp_path / "web.json", {**WEB, "check": {"tcp": f"127.0.0.1:{closed.getsockname()[1]}",
                                                               **FAST_CHECK}})
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                agent = await start_agent(nursery, services=(path,), service_ttl=TTL)
                assert agent.http_port is not None
                await wait_until(lambda: agent.checks[str(path)].runs >= 2, "two runs")
                [shown] = (await request(agent.http_port, "GET", "/v1/health")).json()["checks"]
                assert (shown["file"], shown["status"], shown["reason"]) == (str(path), "failing",
                                                                             "connection refused")
                text = (await request(agent.http_port, "GET", "/v1/metrics")).body.decode()
                assert "gossipreg_service_checks_failing 1.0" in text
                assert f'gossipreg_service_check_failures_total{{file="{path}"}}' in text
                agent.stop()
