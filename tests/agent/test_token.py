"""The agent's token: where the token file is, how it is made and checked, who needs it."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from gossipreg.agent.client import default_token_file, find_token, read_token_file
from gossipreg.agent.settings import AgentSettings, ensure_token_file, prepare
from gossipreg.cli.main import cli
from gossipreg.core.errors import ConfigError

from .helpers import KEY1, KEY2, KEY2_B64, request, settings, start_agent, write_keyring


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------- where


def test_the_default_token_file_location() -> None:
    home = {"HOME": "/home/ann"}
    assert default_token_file(home, euid=1000) == Path("/home/ann/.local/state/gossipreg/http-token")
    xdg = {**home, "XDG_STATE_HOME": "/xdg/state"}
    assert default_token_file(xdg, euid=1000) == Path("/xdg/state/gossipreg/http-token")
    # A relative XDG_STATE_HOME is invalid by the XDG spec: ignored.
    assert default_token_file({**home, "XDG_STATE_HOME": "rel"}, euid=1000) == Path(
        "/home/ann/.local/state/gossipreg/http-token"
    )
    assert default_token_file(xdg, euid=0) == Path("/var/lib/gossipreg/http-token")
    state = {**xdg, "GOSSIPREG_STATE_DIR": "/srv/gr"}
    assert default_token_file(state, euid=0) == Path("/srv/gr/http-token")
    assert default_token_file(state, euid=1000) == Path("/srv/gr/http-token")


# ---------------------------------------------------------------- made and checked


def test_a_token_file_is_made_private_once_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "http-token"
    old = os.umask(0)  # even with a permissive umask
    try:
        token, created = ensure_token_file(path)
    finally:
        os.umask(old)
    assert created
    assert len(token) >= 43  # secrets.token_urlsafe(32)
    assert path.read_text() == token + "\n"
    assert mode(path) == 0o600
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700
    assert ensure_token_file(path) == (token, False)
    assert read_token_file(path) == token
    assert read_token_file(tmp_path / "missing") is None


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    ensure_token_file(tmp_path / "http-token")
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "http-token") == 0o600


def test_concurrent_first_starts_agree_on_one_token(tmp_path: Path) -> None:
    path = tmp_path / "state" / "http-token"
    results: list[tuple[str, bool]] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        results.append(ensure_token_file(path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 8
    assert len({token for token, _ in results}) == 1
    assert sum(created for _, created in results) == 1


@pytest.mark.parametrize("bits", [0o640, 0o604, 0o620, 0o602, 0o644])
def test_a_token_file_others_can_read_or_write_is_refused(tmp_path: Path, bits: int) -> None:
    path = tmp_path / "http-token"
    path.write_text("a-token\n")
    path.chmod(bits)
    with pytest.raises(ConfigError) as info:
        read_token_file(path)
    assert str(info.value) == (
        f"token file {str(path)!r}: is accessible to other users (mode {bits:04o}); "
        f"make it private with: chmod 600 {str(path)!r}"
    )
    with pytest.raises(ConfigError, match="chmod 600"):
        ensure_token_file(path)
    assert path.read_text() == "a-token\n"  # never rewritten


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="giving the file to another user (chown) needs root; CI runs as root",
)
def test_a_token_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "http-token"
    path.write_text("a-token\n")
    path.chmod(0o600)
    os.chown(path, 4242, -1)
    with pytest.raises(ConfigError, match="belongs to uid 4242, not to this user"):
        read_token_file(path)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "holds no token"),
        (b"  \n", "holds no token"),
        (b"two words\n", "printable ASCII"),
        (b"\xff\n", "no token"),
    ],
)
def test_a_token_file_without_a_valid_token_is_refused(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "http-token"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=needle):
        read_token_file(path)


def test_a_directory_is_not_a_token_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a regular file"):
        read_token_file(tmp_path)


# ---------------------------------------------------------------- prepare and the command


def test_prepare_creates_the_default_token_file_last(state_dir: Path) -> None:
    with pytest.raises(ConfigError, match="--profile"):
        prepare(settings(profile="nope"))
    assert not state_dir.exists()  # nothing made for an invalid configuration
    prepared = prepare(settings())
    assert prepared.http_token_file == state_dir / "http-token"
    assert prepared.http_token_created
    assert prepared.http_token == (state_dir / "http-token").read_text().strip()
    again = prepare(settings())
    assert (again.http_token, again.http_token_created) == (prepared.http_token, False)


def test_prepare_token_rules(tmp_path: Path, state_dir: Path) -> None:
    given = prepare(settings(http_token="tok-1"))
    assert (given.http_token, given.http_token_file) == ("tok-1", None)
    assert not state_dir.exists()
    # A token given wins over a token file, which is then neither read nor made.
    both = prepare(settings(http_token="tok-1", http_token_file=tmp_path / "t"))
    assert (both.http_token, both.http_token_file) == ("tok-1", None)
    assert not (tmp_path / "t").exists()
    with pytest.raises(ConfigError, match=r"--http-token: required when --http binds a non-loopback"):
        prepare(settings(http="0.0.0.0:0"))
    exposed = prepare(settings(http="0.0.0.0:0", http_token_file=tmp_path / "t"))
    assert exposed.http_token == (tmp_path / "t").read_text().strip()
    (tmp_path / "t").chmod(0o644)
    with pytest.raises(ConfigError) as info:
        prepare(settings(http_token_file=tmp_path / "t"))
    assert str(info.value).startswith(f"--http-token-file: token file {str(tmp_path / 't')!r}: is accessible")


def test_the_config_file_names_a_token_file_relative_to_itself(tmp_path: Path) -> None:
    from gossipreg.agent.settings import load_config_file

    (tmp_path / "agent.toml").write_text('http-token-file = "secret/token"\n')
    assert load_config_file(tmp_path / "agent.toml") == {"http_token_file": tmp_path / "secret" / "token"}


def test_the_agent_command_refuses_a_shared_token_file(tmp_path: Path) -> None:
    token = tmp_path / "http-token"
    token.write_text("tok\n")
    token.chmod(0o644)
    result = CliRunner().invoke(
        cli, ["agent", "--insecure", "--http-token-file", str(token)], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert result.output == (
        f"Error: --http-token-file: token file {str(token)!r}: is accessible to other users (mode 0644); "
        f"make it private with: chmod 600 {str(token)!r}\n"
    )
    env = {"GOSSIPREG_HTTP_TOKEN_FILE": str(token)}
    assert "chmod 600" in CliRunner().invoke(cli, ["agent", "--insecure"], env=env).output


def test_find_token_order(tmp_path: Path, state_dir: Path) -> None:
    url = "http://127.0.0.1:8946"
    assert find_token(url, environ={"GOSSIPREG_STATE_DIR": str(state_dir)}) is None  # no file yet
    default, _ = ensure_token_file(state_dir / "http-token")
    own = tmp_path / "own"
    own.write_text("from-file\n")
    own.chmod(0o600)
    env = {"GOSSIPREG_STATE_DIR": str(state_dir)}
    assert find_token(url, environ=env) == default
    assert find_token("localhost:8946", environ=env) == default
    assert find_token("http://[::1]:8946", environ=env) == default
    assert find_token("http://10.0.0.5:8946", environ=env) is None
    assert find_token("http://agent.example:8946", environ=env) is None
    assert find_token(url, token_file=own, environ=env) == "from-file"
    assert find_token(url, environ={**env, "GOSSIPREG_HTTP_TOKEN_FILE": str(own)}) == "from-file"
    assert find_token("http://10.0.0.5:8946", token_file=own, environ=env) == "from-file"
    assert find_token(url, environ={**env, "GOSSIPREG_HTTP_TOKEN": "from-env"}) == "from-env"
    assert find_token(url, "given", own, {**env, "GOSSIPREG_HTTP_TOKEN": "from-env"}) == "given"


# ---------------------------------------------------------------- the attack of issue 13


async def test_a_local_user_without_the_token_cannot_take_over_the_cluster_key(tmp_path: Path) -> None:
    """The attacker test's scenario: ``POST /v1/keyring/install`` then ``/use``, with no token."""
    ring_file = write_keyring(tmp_path / "keyring", KEY1)
    before = ring_file.read_bytes()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery, keyring_file=ring_file)
            port = agent.http_port
            assert port is not None
            for op in ("install", "use"):
                reply = await request(port, "POST", f"/v1/keyring/{op}", json_body={"key": KEY2_B64})
                assert reply.status == 401, reply.body
                assert reply.headers["content-type"] == "application/json"
                assert "missing token" in reply.json()["error"]
            listing = await request(port, "GET", "/v1/keyring")
            assert listing.status == 401
            assert ring_file.read_bytes() == before
            assert agent.registry.keyring is not None
            assert list(agent.registry.keyring.keys) == [KEY1]
            # The agent's own user, with the token from the token file, can.
            token = agent.prepared.http_token
            done = await request(
                port, "POST", "/v1/keyring/install", json_body={"key": KEY2_B64}, token=token
            )
            assert done.status == 200
            assert list(agent.registry.keyring.keys) == [KEY1, KEY2]
            agent.stop()


def test_agent_settings_default_to_no_token() -> None:
    assert AgentSettings().http_token is None
    assert AgentSettings().http_token_file is None
