"""The operator commands (CliRunner) against real agents on 127.0.0.1, each in its own thread."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gossipreg.agent.client import AgentClient, find_token
from gossipreg.agent.keyring import fingerprint
from gossipreg.cli.main import cli

from .helpers import KEY1, KEY1_B64, KEY2, KEY2_B64, ThreadAgent, service, write_keyring

pytestmark = pytest.mark.timeout(60)

GREETER = {
    "name": "greeter",
    "version": "1.0.0",
    "nodes": [
        {"id": "greeter-1", "address": "10.0.0.1:8080", "metadata": {"zone": "a"}},
        {"id": "greeter-2", "address": "10.0.0.2:8080"},
    ],
}


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)


@pytest.fixture
def pair() -> Iterator[tuple[ThreadAgent, ThreadAgent]]:
    """Two agents, the second joined through the first."""
    first = ThreadAgent({"name": "ops-a"}).start()
    try:
        second = ThreadAgent({"name": "ops-b", "join": (first.address,)}).start()
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


@pytest.fixture
def greeter_file(tmp_path: Path) -> Path:
    path = tmp_path / "greeter.json"
    path.write_text(json.dumps(GREETER))
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_register_services_get_deregister_through_the_agent(
    pair: tuple[ThreadAgent, ThreadAgent], greeter_file: Path
) -> None:
    first, second = pair
    done = run("register", str(greeter_file), "--agent", first.url, "--ttl", "60")
    assert done.exit_code == 0, done.output
    assert done.output == "registered greeter 1.0.0 (2 nodes) on ops-a with ttl 60s\n"

    # The registration spreads: ask the other agent.
    for _ in range(1000):  # a hang guard only (the timeout mark bounds the test)
        got = run("get", "greeter", "--agent", second.url, "--json")
        if got.exit_code == 0:
            break
        time.sleep(0.01)
    assert got.exit_code == 0, got.output
    nodes = json.loads(got.output)["services"][0]["nodes"]
    assert [n["id"] for n in nodes] == ["greeter-1", "greeter-2"]

    table = run("get", "greeter", "--agent", first.url)
    assert table.exit_code == 0
    for text in ("greeter-1", "10.0.0.1:8080", "zone=a", "1.0.0"):
        assert text in table.output

    listed = run("services", "--agent", first.url)
    assert listed.exit_code == 0
    assert "greeter" in listed.output
    assert (
        json.loads(run("services", "--agent", first.url, "--json").output)["services"][0]["name"] == "greeter"
    )

    gone = run("deregister", str(greeter_file), "--agent", first.url)
    assert gone.exit_code == 0, gone.output
    assert gone.output == "deregistered greeter 1.0.0 (2 node(s)) on ops-a\n"
    missing = run("get", "greeter", "--agent", first.url)
    assert missing.exit_code == 1
    assert missing.output == f"Error: the agent at {first.url} answered 404: service 'greeter' not found\n"


def test_members_as_a_table_and_as_json(pair: tuple[ThreadAgent, ThreadAgent]) -> None:
    first, _ = pair
    table = run("members", "--agent", first.url)
    assert table.exit_code == 0, table.output
    assert "ops-a" in table.output
    assert "ops-b" in table.output
    assert "alive" in table.output
    answer = json.loads(run("members", "--json", env={"GOSSIPREG_AGENT": first.url}).output)
    assert answer["member"] == "ops-a"
    assert {m["name"] for m in answer["members"]} == {"ops-a", "ops-b"}


def test_watch_prints_the_snapshot_then_changes(
    pair: tuple[ThreadAgent, ThreadAgent], tmp_path: Path
) -> None:
    first, _ = pair
    svc = tmp_path / "g1.json"
    svc.write_text(service("greeter", "g1").to_json())
    assert run("register", str(svc), "--agent", first.url).exit_code == 0
    result = run("watch", "--service", "greeter", "--count", "1", "--agent", first.url)
    assert result.exit_code == 0, result.output
    assert result.output == "create  greeter 1.0.0  g1 10.99.0.1:8080\n"
    as_json = run("watch", "--count", "1", "--json", "--agent", first.url)
    line = json.loads(as_json.output)
    assert line["action"] == "create"
    assert line["service"]["nodes"][0]["id"] == "g1"

    # Without the snapshot, only what happens once the watch runs: keep registering
    # new nodes until the watch (in a thread) has printed two of them.
    box: dict[str, Result] = {}
    args = ("watch", "--service", "greeter", "--no-snapshot", "--count", "2", "--agent", first.url)
    thread = threading.Thread(target=lambda: box.update(result=run(*args)))
    thread.start()
    client = AgentClient(first.url, find_token(first.url))
    for i in range(2, 1000):  # a hang guard only
        if not thread.is_alive():
            break
        client.request("PUT", "/v1/services", body=service("greeter", f"g{i}").to_dict())
        time.sleep(0.02)
    thread.join(10)
    lines = box["result"].output.splitlines()
    assert len(lines) == 2
    assert all(re.fullmatch(r"create  greeter 1\.0\.0  g\d+ 10\.99\.0\.1:8080", x) for x in lines), lines
    assert "g1 " not in box["result"].output


def test_an_unreachable_agent_is_an_error_not_a_traceback() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    for args in (["members"], ["services"], ["get", "x"], ["watch"], ["keyring", "list"]):
        result = run(*args, "--agent", url)
        assert result.exit_code == 1, args
        assert result.output == f"Error: cannot reach the agent at {url}: connection refused\n", args


def test_bad_arguments_read_like_a_tool(tmp_path: Path) -> None:
    missing = run("register", str(tmp_path / "nope.json"))
    assert missing.exit_code == 1
    assert missing.output.startswith(f"Error: {tmp_path / 'nope.json'}: cannot be read: ")
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "nodes": [{"id": "n", "port": 70000}]}')
    invalid = run("register", str(bad))
    assert invalid.exit_code == 1
    assert "service.nodes[0].port" in invalid.output
    assert "Traceback" not in invalid.output
    empty = tmp_path / "empty.json"
    empty.write_text('{"name": "x"}')
    assert "lists no node" in run("register", str(empty)).output
    assert run("register", str(bad), "--ttl", "0").exit_code == 2  # click's usage error
    scheme = run("members", "--agent", "https://127.0.0.1:8946")
    assert scheme.exit_code == 1
    assert "only http://" in scheme.output
    key = run("keyring", "install", "not-base64!")
    assert key.exit_code == 1
    assert key.output == "Error: key: is not valid base64\n"
    short = run("keyring", "use", "c2hvcnQ=")
    assert short.output.startswith("Error: key: is 5 bytes")


def test_register_reads_stdin(pair: tuple[ThreadAgent, ThreadAgent]) -> None:
    first, _ = pair
    done = run("register", "-", "--agent", first.url, input=json.dumps(GREETER))
    assert done.exit_code == 0, done.output
    assert "registered greeter" in done.output


def test_the_token_comes_from_the_option_the_environment_or_a_token_file(
    tmp_path: Path, greeter_file: Path, state_dir: Path
) -> None:
    agent = ThreadAgent({"http_token": "tok-123"}).start()
    try:
        reads = run("services", "--agent", agent.url)
        assert reads.exit_code == 0, reads.output  # reads are open on loopback
        refused = run("register", str(greeter_file), "--agent", agent.url)
        assert refused.exit_code == 1
        assert refused.output.startswith(
            f"Error: the agent at {agent.url} answered 401: missing token: a request that is not a plain read"
        )
        assert "--token or --token-file" in refused.output
        assert f"default token file is {state_dir / 'http-token'}" in refused.output
        wrong = run("register", str(greeter_file), "--agent", agent.url, "--token", "nope")
        assert wrong.output.startswith(f"Error: the agent at {agent.url} answered 401: invalid token (")
        done = run("register", str(greeter_file), "--agent", agent.url, "--token", "tok-123")
        assert done.exit_code == 0, done.output
        env = {"GOSSIPREG_AGENT": agent.url, "GOSSIPREG_HTTP_TOKEN": "tok-123"}
        assert run("keyring", "list", "--json", env=env).exit_code == 0
        token_file = tmp_path / "tok"
        token_file.write_text("tok-123\n")
        token_file.chmod(0o600)
        by_file = run("keyring", "list", "--agent", agent.url, "--token-file", str(token_file))
        assert by_file.exit_code == 0, by_file.output
        by_env = run(
            "keyring",
            "list",
            env={"GOSSIPREG_AGENT": agent.url, "GOSSIPREG_HTTP_TOKEN_FILE": str(token_file)},
        )
        assert by_env.exit_code == 0, by_env.output
        token_file.chmod(0o640)
        shared = run("keyring", "list", "--agent", agent.url, "--token-file", str(token_file))
        assert shared.exit_code == 1
        assert shared.output == (
            f"Error: token file {str(token_file)!r}: is accessible to other users (mode 0640); "
            f"make it private with: chmod 600 {str(token_file)!r}\n"
        )
        missing = run("keyring", "list", "--agent", agent.url, "--token-file", str(tmp_path / "nope"))
        assert missing.output == f"Error: token file {str(tmp_path / 'nope')!r}: does not exist\n"
    finally:
        agent.stop()


def test_the_commands_find_a_local_agents_own_token_file(greeter_file: Path, state_dir: Path) -> None:
    """No token anywhere: the agent made one in the default token file, and the commands read it."""
    agent = ThreadAgent().start()
    try:
        assert (state_dir / "http-token").exists()
        done = run("register", str(greeter_file), "--agent", agent.url)
        assert done.exit_code == 0, done.output
        assert run("keyring", "list", "--agent", agent.url).exit_code == 0
        # The default file holds a local agent's token: it is never sent to another host.
        assert find_token("http://10.0.0.5:8946") is None
        assert find_token(agent.url) == (state_dir / "http-token").read_text().strip()
    finally:
        agent.stop()


def test_keyring_commands_on_one_agent(tmp_path: Path) -> None:
    ring = write_keyring(tmp_path / "keyring", KEY1)
    agent = ThreadAgent({"keyring_file": ring}).start()
    fp1, fp2 = fingerprint(KEY1), fingerprint(KEY2)
    try:
        listed = run("keyring", "list", "--agent", agent.url)
        assert listed.exit_code == 0, listed.output
        assert fp1 in listed.output
        assert "primary" in listed.output
        assert KEY1_B64 not in listed.output

        early = run("keyring", "use", KEY2_B64, "--agent", agent.url)
        assert early.exit_code == 1
        assert "not using the key, nothing changed: the key is not installed" in early.output

        installed = run("keyring", "install", KEY2_B64, "--agent", agent.url)
        assert installed.exit_code == 0, installed.output
        assert installed.output.endswith(f"({agent.url}): installed {fp2}\n")
        assert "(no change)" in run("keyring", "install", KEY2_B64, "--agent", agent.url).output

        still = run("keyring", "remove", KEY1_B64, "--agent", agent.url)
        assert still.exit_code == 1
        assert "the key is still the primary key" in still.output

        assert run("keyring", "use", "-", "--agent", agent.url, input=KEY2_B64 + "\n").exit_code == 0
        removed = run("keyring", "remove", KEY1_B64, "--agent", agent.url, "--json")
        assert removed.exit_code == 0, removed.output
        answer = json.loads(removed.output)
        assert answer["results"][0]["keys"] == [{"fingerprint": fp2, "primary": True}]
        assert ring.read_text().count("\n") == 3  # two comment lines and the one key
    finally:
        agent.stop()


def test_keyring_on_several_agents_reports_each_and_fails_if_one_fails(tmp_path: Path) -> None:
    ring = write_keyring(tmp_path / "keyring", KEY1)
    agent = ThreadAgent({"keyring_file": ring}).start()
    dead = f"http://127.0.0.1:{closed_port()}"
    try:
        result = run("keyring", "install", KEY2_B64, "--agent", f"{agent.url},{dead}")
        assert result.exit_code == 1
        assert f"({agent.url}): installed" in result.output
        assert f"{dead}: failed: cannot reach the agent" in result.output
        assert "Error: install failed on 1 of 2 agent(s)" in result.output
        # use checks every agent first and changes nothing when one cannot be asked.
        refused = run("keyring", "use", KEY2_B64, "--agent", agent.url, "--agent", dead)
        assert refused.exit_code == 1
        assert "not using the key, nothing changed: cannot reach the agent" in refused.output
        listing = json.loads(run("keyring", "list", "--agent", agent.url, "--json").output)
        assert listing["agents"][0]["primary"] == fingerprint(KEY1)
    finally:
        agent.stop()


def test_keyring_on_an_insecure_agent_is_refused() -> None:
    agent = ThreadAgent().start()
    try:
        listed = run("keyring", "list", "--agent", agent.url)
        assert "none (insecure)" in listed.output
        result = run("keyring", "install", KEY2_B64, "--agent", agent.url)
        assert result.exit_code == 1
        assert "answered 409: keyring: this agent runs without encryption" in result.output
    finally:
        agent.stop()
