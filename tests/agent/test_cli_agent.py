"""``gossipreg agent``: the real command in a subprocess (signals, config file, logs, systemd's
readiness), its errors, and retry-join on real sockets."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from gossipreg.agent import Agent
from gossipreg.agent.client import AgentClient, AgentError, find_token
from gossipreg.agent.keyring import fingerprint
from gossipreg.agent.sdnotify import notify, notify_address
from gossipreg.cli.main import cli

from .helpers import KEY1, request, start_agent, wait_until, write_keyring
from .processes import AgentProcess

pytestmark = pytest.mark.timeout(60)

WEB = {"name": "web", "version": "2.1", "nodes": [{"id": "web-1", "address": "10.1.0.1:80"}]}


def test_agent_from_a_config_file_serves_its_service_then_leaves_on_sigterm(
    tmp_path: Path, processes: list[AgentProcess], state_dir: Path
) -> None:
    write_keyring(tmp_path / "keyring", KEY1)
    (tmp_path / "web.json").write_text(json.dumps(WEB))
    (tmp_path / "agent.toml").write_text(
        'bind = "127.0.0.1:0"\n'
        'http = "127.0.0.1:1"\n'  # overridden on the command line
        'name = "cfg-agent"\n'
        'keyring-file = "keyring"\n'  # relative to the file's directory
        'service = ["web.json"]\n'
        "service_ttl = 20\n"
        'profile = "local"\n'
        "[protocol]\n"
        "probe_interval = 0.5\n"
        'label = "test-cluster"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    agent = AgentProcess("--config", str(tmp_path / "agent.toml"), "--http", "127.0.0.1:0", cwd=elsewhere)
    processes.append(agent)
    url = agent.wait_for(r"agent cfg-agent ready: gossip on \S+, HTTP API on (http://\S+)").group(1)

    # No token configured: the agent made one in the default token file, and said where.
    token_file = state_dir / "http-token"
    assert f"HTTP API token created in {token_file}" in "\n".join(agent.lines)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    token = token_file.read_text().strip()
    assert token not in "\n".join(agent.lines)
    assert AgentClient(url).members()["member"] == "cfg-agent"  # a read: no token needed
    with pytest.raises(AgentError, match="answered 401"):
        AgentClient(url).keyring()
    client = AgentClient(url, find_token(url))  # what the gossipreg commands do
    assert client.members()["member"] == "cfg-agent"
    web = client.service("web")
    assert [n["id"] for n in web[0]["nodes"]] == ["web-1"]
    assert client.keyring()["primary"] == fingerprint(KEY1)

    agent.proc.send_signal(signal.SIGTERM)
    assert agent.finish() == 0
    text = "\n".join(agent.lines)
    assert "received SIGTERM" in text
    assert "agent cfg-agent leaving the cluster" in text
    assert "agent left the cluster" in text
    assert "Traceback" not in text
    assert token not in text


def test_agent_logs_json_lines_and_leaves_on_sigint(tmp_path: Path, processes: list[AgentProcess]) -> None:
    agent = AgentProcess(
        "--insecure",
        "--bind",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--log-json",
        "--name",
        "json-agent",
        cwd=tmp_path,
    )
    processes.append(agent)
    ready = json.loads(agent.wait_for(r'"event": "agent.ready"').string)
    assert ready["level"] == "info"
    assert ready["member"] == "json-agent"
    assert AgentClient(ready["http"]).members()["member"] == "json-agent"
    agent.proc.send_signal(signal.SIGINT)
    assert agent.finish() == 0
    records = [json.loads(line) for line in agent.lines]  # every line is one JSON object
    assert {"ts", "level", "logger", "msg"} <= records[0].keys()
    assert [r["event"] for r in records if "event" in r][-3:] == [
        "agent.signal",
        "agent.leaving",
        "agent.left",
    ]


def test_a_busy_http_port_is_reported(tmp_path: Path, processes: list[AgentProcess]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        agent = AgentProcess(
            "--insecure", "--bind", "127.0.0.1:0", "--http", f"127.0.0.1:{port}", cwd=tmp_path
        )
        processes.append(agent)
        assert agent.finish() == 1
    assert agent.lines[-1] == f"Error: --http 127.0.0.1:{port}: cannot bind: address already in use"


def test_an_unanswered_join_is_reported(tmp_path: Path, processes: list[AgentProcess]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        seed = f"127.0.0.1:{s.getsockname()[1]}"
    agent = AgentProcess(
        "--insecure",
        "--bind",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--join",
        seed,
        "--join-timeout",
        "0.5",
        cwd=tmp_path,
    )
    processes.append(agent)
    assert agent.finish() == 1
    assert agent.lines[-1].startswith(f"Error: could not join through any seed ({seed}) within 0.5s")


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (
            ["--insecure", "--http", "0.0.0.0:8946"],
            {},
            "Error: --http-token: required when --http binds a non-loopback address (0.0.0.0)",
        ),
        ([], {}, "Error: --keyring-file: a cluster keyring is required"),
        (["--insecure", "--keyring-file", "ring"], {"ring": "x"}, "Error: --insecure: cannot be combined"),
        (["--keyring-file", "ring"], {"ring": "# nothing\n"}, "holds no key"),
        (["--keyring-file", "ring"], {"ring": "bm9wZQ==\n"}, "line 1: is 4 bytes"),
        (
            ["--insecure", "--tls-ca", "ca.pem"],
            {},
            "Error: --tls-cert, --tls-key: the TLS options go together",
        ),
        (
            ["--insecure", "--identities"],
            {},
            "Error: --identities: needs --tls-ca, --tls-cert and --tls-key",
        ),
        (
            ["--insecure", "--http-token", "two words"],
            {},
            "Error: --http-token: must be non-empty printable ASCII",
        ),
        (["--insecure", "--bind", "nowhere"], {}, "Error: --bind: 'nowhere': missing :port"),
        (
            ["--insecure", "--service", "svc.json"],
            {"svc.json": '{"name": "x", "nodes": [{"id": 3}]}'},
            "Error: --service 'svc.json': service.nodes[0].id",
        ),
        (["--insecure", "--service", "missing.json"], {}, "Error: --service 'missing.json': cannot be read"),
        (
            ["--config", "a.toml"],
            {"a.toml": "colour = 'blue'\n"},
            "Error: config file 'a.toml': colour: unknown key",
        ),
        (["--config", "a.toml"], {"a.toml": "bind = [\n"}, "Error: config file 'a.toml': not valid TOML"),
        (["--config", "a.toml"], {"a.toml": "insecure = 'yes'\n"}, "insecure: must be true or false"),
        (
            ["--config", "a.toml"],
            {"a.toml": "insecure = true\n[protocol]\nprobe_timeout = 5\n"},
            "Error: [protocol] probe_timeout: must be less than probe_interval",
        ),
        (
            ["--config", "a.toml"],
            {"a.toml": "insecure = true\n[protocol]\nspeed = 5\n"},
            "Error: [protocol] speed: not a Config field",
        ),
        (["--config", "missing.toml"], {}, "Error: config file 'missing.toml': cannot be read"),
    ],
)
def test_bad_options_are_reported_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], files: dict[str, str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = CliRunner().invoke(
        cli, ["agent", *args], env={"GOSSIPREG_HTTP_TOKEN": ""}, catch_exceptions=False
    )
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert result.output.startswith("Error: ")
    assert "Traceback" not in result.output


def test_identities_take_the_tls_certificate_and_its_name(tmp_path: Path) -> None:
    from gossipreg import ConfigError, pki
    from gossipreg.agent.settings import AgentSettings, prepare

    ca, ca_key = pki.create_ca("agent CA")
    cert, key = pki.create_member_cert(ca, ca_key, "agent-7")
    for name, data in (("ca.crt", ca), ("m.crt", cert), ("m.key", key)):
        (tmp_path / name).write_bytes(data)
    base = AgentSettings(insecure=True, tls_ca=tmp_path / "ca.crt", tls_cert=tmp_path / "m.crt",
                         tls_key=tmp_path / "m.key", identities=True, http_token="t0ken")
    prepared = prepare(base.replace(name="agent-7"))
    assert prepared.identity is not None
    assert prepared.identity.cert == tmp_path / "m.crt"
    with pytest.raises(ConfigError, match="agent-7"):
        prepare(base.replace(name="someone-else"))
    assert prepare(base.replace(identities=False)).identity is None


def test_the_config_files_limits_table_sets_the_driver_limits(tmp_path: Path) -> None:
    from gossipreg import ConfigError
    from gossipreg.agent.settings import AgentSettings, load_config_file, prepare

    conf = tmp_path / "agent.toml"
    conf.write_text("insecure = true\nhttp_token = 't0ken'\n[limits]\nmax-inbound-streams = 7\n"
                    "max_pending_per_source = 2\n")
    prepared = prepare(AgentSettings(**load_config_file(conf)))
    assert prepared.limits is not None
    assert (prepared.limits.max_inbound_streams, prepared.limits.max_pending_per_source) == (7, 2)
    assert prepared.limits.stream_timeout == prepared.config.stream_timeout
    with pytest.raises(ConfigError, match=r"^\[limits\] max_streams: unknown"):
        prepare(AgentSettings(insecure=True, http_token="t0ken", limits={"max_streams": 1}))
    with pytest.raises(ConfigError, match=r"^\[limits\] max_inbound_streams: must be a positive int"):
        prepare(AgentSettings(insecure=True, http_token="t0ken", limits={"max_inbound_streams": 0}))


# ---------------------------------------------------------------- retry-join


def _hold_port() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same free port of 127.0.0.1 (the TCP one not
    listening); a port whose TCP side another process holds is skipped (bounded tries)."""
    for _ in range(100):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        return udp, tcp
    raise AssertionError("no port free for both UDP and TCP in 100 tries")


async def test_a_retry_join_agent_serves_alone_until_its_seed_appears(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gossipreg")
    # The seed's port is held (UDP bound, TCP bound but not listening): joins there are refused,
    # and no other process can take the port before the seed starts on it.
    udp, tcp = _hold_port()
    port = udp.getsockname()[1]
    try:
        with trio.fail_after(45):
            async with trio.open_nursery() as nursery:
                waiting = await start_agent(
                    nursery, name="waiting", join=(f"127.0.0.1:{port}",), retry_join=True, join_timeout=0.5
                )
                # Started without its seed: the API answers, and it keeps trying.
                assert (await request(waiting.http_port or 0, "GET", "/v1/health")).status == 200
                await wait_until(lambda: "not joined yet" in caplog.text, "a failed round of joins")
                members = (await request(waiting.http_port or 0, "GET", "/v1/members")).json()["members"]
                assert [m["name"] for m in members] == ["waiting"]
                assert (await request(waiting.http_port or 0, "GET", "/v1/health")).status == 200

                udp.close()
                tcp.close()
                seed = await start_agent(nursery, name="seed", bind=f"127.0.0.1:{port}")

                def alive(agent: Agent) -> set[str]:
                    return {m.name for m in agent.registry.members() if m.state == "alive"}

                await wait_until(lambda: alive(waiting) == alive(seed) == {"waiting", "seed"}, "the join")
                members = (await request(waiting.http_port or 0, "GET", "/v1/members")).json()["members"]
                assert sorted(m["name"] for m in members) == ["seed", "waiting"]
                await wait_until(lambda: "joined the cluster after" in caplog.text, "the join's notice")
                waiting.stop()
                seed.stop()
    finally:
        udp.close()
        tcp.close()


# ---------------------------------------------------------------- systemd's readiness protocol


def test_notify_sends_one_datagram_to_a_path_or_an_abstract_name(tmp_path: Path) -> None:
    assert notify_address({}) is None
    assert notify_address({"NOTIFY_SOCKET": "vsock:2:9"}) is None
    assert notify("READY=1", environ={}) is False  # not under systemd: nothing to do
    with pytest.raises(ValueError, match="one KEY=value line"):
        notify("READY=1\nSTATUS=x", environ={})
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        assert notify("READY=1", "STATUS=all good", environ={"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert sock.recv(4096) == b"READY=1\nSTATUS=all good"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        name = f"gossipreg-test-{os.getpid()}-{id(sock)}"
        sock.bind("\0" + name)
        assert notify_address({"NOTIFY_SOCKET": "@" + name}) == "\0" + name
        assert notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"STOPPING=1"
    # Nobody listening: a warning, never an exception.
    assert notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_the_agent_tells_systemd_it_is_ready_and_then_stopping(
    tmp_path: Path, processes: list[AgentProcess]
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(30)  # a hang guard, not a measurement
        agent = AgentProcess(
            cwd=tmp_path,
            env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "GOSSIPREG_INSECURE": "1",
                 "GOSSIPREG_BIND": "127.0.0.1:0", "GOSSIPREG_HTTP": "127.0.0.1:0", "GOSSIPREG_NAME": "unit"},
        )
        processes.append(agent)
        ready = sock.recv(4096).decode().split("\n")
        assert ready[0] == "READY=1"
        assert ready[1].startswith("STATUS=member unit: gossip on 127.0.0.1:")
        # READY=1 comes once the API listens: it answers at once.
        url = agent.wait_for(r"HTTP API on (http://\S+)").group(1)
        assert url in ready[1]
        assert AgentClient(url).members()["member"] == "unit"
        agent.proc.send_signal(signal.SIGTERM)
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=member unit: leaving the cluster"
        assert agent.finish() == 0
    assert "agent left the cluster" in "\n".join(agent.lines)
