"""The module-level default registry, configured through ``GOSSIPREG_*`` variables.

Every test binds 127.0.0.1 port 0 (``GOSSIPREG_BIND=127.0.0.1:0``), never the
default port 7946.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import gossipreg
from gossipreg import ConfigError, JoinError, Node, NotFoundError, Registry, Service
from gossipreg.default import (
    DEFAULT_BIND,
    close_default_registry,
    default_registry,
    load_keyring_file,
    registry_from_env,
)

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
K1, K2, K3 = bytes(range(32)), bytes(range(1, 33)), bytes(range(2, 34))
WAIT = 10.0


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


pytestmark = pytest.mark.usefixtures("clean_env")  # tests/conftest.py


@pytest.fixture
def peer() -> Iterator[Registry]:
    """A member the default registry can join, with K2 primary and K1 secondary."""
    reg = Registry(bind="127.0.0.1:0", keyring=[b64(K2), b64(K1)], name="peer")
    yield reg
    reg.close()


def service(name: str, node: str) -> Service:
    return Service(name, "1", nodes=(Node(node, "10.1.1.1:80"),))


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.02)


def test_module_functions_use_the_default_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOSSIPREG_KEYRING", b64(K1))
    monkeypatch.setenv("GOSSIPREG_NAME", "dflt")
    watcher = gossipreg.watch("greeter")
    reg = gossipreg.default_registry()
    assert reg.name == "dflt"
    assert reg.address[0] == "127.0.0.1"
    assert reg.address[1] not in (0, 7946)

    gossipreg.register(service("greeter", "g1"), ttl=60)
    result = watcher.next(timeout=WAIT)
    assert (result.action, result.service.nodes[0].id) == ("create", "g1")
    assert gossipreg.get_service("greeter")[0].nodes[0].id == "g1"
    assert [s.name for s in gossipreg.list_services()] == ["greeter"]
    snap = gossipreg.watch("greeter", snapshot=True)
    assert snap.next(timeout=0).service.nodes[0].id == "g1"

    gossipreg.deregister(service("greeter", "g1"))
    assert watcher.next(timeout=WAIT).action == "delete"
    with pytest.raises(NotFoundError):
        gossipreg.get_service("greeter")
    assert gossipreg.default_registry() is reg


def test_created_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOSSIPREG_INSECURE", "yes")
    barrier = threading.Barrier(8)
    got: list[Registry] = []

    def body() -> None:
        barrier.wait(timeout=WAIT)
        got.append(default_registry())

    threads = [threading.Thread(target=body) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(got) == 8
    assert all(r is got[0] for r in got)


def test_close_default_registry_resets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOSSIPREG_INSECURE", "1")
    first = default_registry()
    gossipreg.register(service("a", "a1"))
    close_default_registry()
    close_default_registry()
    assert first.closed
    monkeypatch.setenv("GOSSIPREG_NAME", "second")
    second = default_registry()
    assert second is not first
    assert second.name == "second"  # the environment is read again
    with pytest.raises(NotFoundError):
        gossipreg.get_service("a")


def test_joins_seeds_with_a_keyring_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, peer: Registry
) -> None:
    ring = tmp_path / "keyring"
    ring.write_text(f"# cluster keys\n\n{b64(K1)}  # primary\n   \n{b64(K2)}\n")
    monkeypatch.setenv("GOSSIPREG_KEYRING_FILE", str(ring))
    monkeypatch.setenv("GOSSIPREG_SEEDS", f" 127.0.0.1:1 , {peer.address[0]}:{peer.address[1]},")
    monkeypatch.setenv("GOSSIPREG_ADVERTISE", "127.0.0.1")
    monkeypatch.setenv("GOSSIPREG_NAME", "dflt")
    with peer.watch("greeter") as watcher:
        gossipreg.register(service("greeter", "from-default"))
        result = watcher.next(timeout=WAIT)
    assert (result.action, result.service.nodes[0].id) == ("create", "from-default")
    assert {m.name for m in default_registry().members()} >= {"dflt", "peer"}
    # The advertise address defaults its port to the bound one.
    assert {m.name: m.address for m in peer.members()}["dflt"] == default_registry().address


def test_wrong_environment_key_cannot_join(peer: Registry) -> None:
    env = {
        "GOSSIPREG_BIND": "127.0.0.1:0",
        "GOSSIPREG_KEYRING": b64(K3),
        "GOSSIPREG_SEEDS": f"{peer.address[0]}:{peer.address[1]}",
    }
    with pytest.raises(JoinError):
        registry_from_env(env, timeout=0.5)


def test_leaves_the_cluster_at_interpreter_exit(peer: Registry) -> None:
    child = (
        "import sys, gossipreg\n"
        "node = gossipreg.Node('c1', '10.0.0.1:1')\n"
        "gossipreg.register(gossipreg.Service('child-svc', '1', nodes=(node,)))\n"
        "sys.stdin.readline()\n"  # exit (without closing anything) when the test says so
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIPREG_")}
    env.update(
        GOSSIPREG_BIND="127.0.0.1:0",
        GOSSIPREG_KEYRING=f"{b64(K1)},{b64(K2)}",
        GOSSIPREG_SEEDS=f"{peer.address[0]}:{peer.address[1]}",
        GOSSIPREG_NAME="child",
    )
    with peer.watch("child-svc") as watcher:
        proc = subprocess.Popen(
            [sys.executable, "-W", "error", "-c", child],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            created = watcher.next(timeout=WAIT)
            _, stderr = proc.communicate("\n", timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, stderr
        assert stderr == ""
        assert (created.action, created.service.nodes[0].id) == ("create", "c1")
        # atexit closed the child's registry: it left gracefully (not suspected, not
        # dead), and its registrations went with it.
        deleted = watcher.next(timeout=WAIT)
        assert (deleted.action, deleted.service.nodes[0].id) == ("delete", "c1")
    assert {m.name: m.state for m in peer.members()}["child"] == "left"


def test_insecure_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("1", "true", "YES", " on "):
        monkeypatch.setenv("GOSSIPREG_INSECURE", value)
        default_registry()  # starts without a keyring
        close_default_registry()
    monkeypatch.setenv("GOSSIPREG_INSECURE", "0")
    with pytest.raises(ConfigError, match="GOSSIPREG_KEYRING"):
        default_registry()


def test_retry_join_from_the_environment_starts_alone_instead_of_failing() -> None:
    env = {"GOSSIPREG_BIND": "127.0.0.1:0", "GOSSIPREG_INSECURE": "1", "GOSSIPREG_SEEDS": "127.0.0.1:1"}
    with pytest.raises(JoinError, match=r"127\.0\.0\.1:1"):
        registry_from_env(env, timeout=0.3).close()
    with registry_from_env({**env, "GOSSIPREG_RETRY_JOIN": "yes"}, timeout=0.3) as reg:
        assert [m.name for m in reg.members()] == [reg.name]  # serving, alone


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"GOSSIPREG_BIND": "nowhere", "GOSSIPREG_INSECURE": "1"}, "GOSSIPREG_BIND"),
        ({"GOSSIPREG_BIND": "127.0.0.1:70000", "GOSSIPREG_INSECURE": "1"}, "GOSSIPREG_BIND"),
        ({"GOSSIPREG_ADVERTISE": "[::1", "GOSSIPREG_INSECURE": "1"}, "GOSSIPREG_ADVERTISE"),
        ({"GOSSIPREG_SEEDS": "10.0.0.1:7946,host:port", "GOSSIPREG_INSECURE": "1"}, "GOSSIPREG_SEEDS"),
        ({"GOSSIPREG_INSECURE": "maybe"}, "GOSSIPREG_INSECURE"),
        ({"GOSSIPREG_RETRY_JOIN": "2", "GOSSIPREG_INSECURE": "1"}, "GOSSIPREG_RETRY_JOIN"),
        ({"GOSSIPREG_HANDLE_SIGNALS": "maybe", "GOSSIPREG_INSECURE": "1"}, "GOSSIPREG_HANDLE_SIGNALS"),
        ({"GOSSIPREG_METRICS_PORT": "x9100", "GOSSIPREG_INSECURE": "1"}, "GOSSIPREG_METRICS_PORT"),
        ({"GOSSIPREG_METRICS_PORT": "99999", "GOSSIPREG_INSECURE": "1"}, "GOSSIPREG_METRICS_PORT"),
        ({"GOSSIPREG_NAME": "m\nINFO forged", "GOSSIPREG_INSECURE": "1"}, "GOSSIPREG_NAME"),
        ({"GOSSIPREG_NAME": "n" * 257, "GOSSIPREG_INSECURE": "1"}, "GOSSIPREG_NAME"),
        ({"GOSSIPREG_SEEDS": "10.0.0.1:0", "GOSSIPREG_INSECURE": "1"}, "GOSSIPREG_SEEDS"),
        ({}, "GOSSIPREG_KEYRING"),
        ({"GOSSIPREG_KEYRING": "not base64!"}, "GOSSIPREG_KEYRING"),
        ({"GOSSIPREG_KEYRING": base64.b64encode(b"short").decode()}, "GOSSIPREG_KEYRING"),
        ({"GOSSIPREG_KEYRING": ","}, "GOSSIPREG_KEYRING"),
        ({"GOSSIPREG_KEYRING_FILE": "/nonexistent/keyring"}, "GOSSIPREG_KEYRING_FILE"),
        ({"GOSSIPREG_KEYRING": b64(K1), "GOSSIPREG_KEYRING_FILE": "/k"}, "GOSSIPREG_KEYRING_FILE"),
        (
            {"GOSSIPREG_KEYRING": b64(K1), "GOSSIPREG_TLS_CA": "/ca.pem"},
            "GOSSIPREG_TLS_CERT, GOSSIPREG_TLS_KEY",
        ),
        (
            {"GOSSIPREG_KEYRING": b64(K1), "GOSSIPREG_TLS_CERT": "/c", "GOSSIPREG_TLS_KEY": "/k"},
            "GOSSIPREG_TLS_CA",
        ),
        (
            {
                "GOSSIPREG_KEYRING": b64(K1),
                "GOSSIPREG_TLS_CA": "/nonexistent/ca.pem",
                "GOSSIPREG_TLS_CERT": "/nonexistent/cert.pem",
                "GOSSIPREG_TLS_KEY": "/nonexistent/key.pem",
            },
            "GOSSIPREG_TLS",
        ),
    ],
)
def test_invalid_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        default_registry()
    assert variable in str(info.value)
    with pytest.raises(ConfigError):  # nothing half-made was kept: it fails again
        gossipreg.list_services()


def test_unset_bind_means_the_standard_port() -> None:
    assert DEFAULT_BIND == "127.0.0.1:7946"
    options = gossipreg.default._options({"GOSSIPREG_INSECURE": "1"})
    assert options.bind == DEFAULT_BIND


def test_keyring_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "ring"
    path.write_text(f"\n# rotated 2024-05\n{b64(K2)}\n\n  {b64(K1)}  # old\n#{b64(K3)}\n")
    ring = load_keyring_file(path)
    assert ring.keys == (K2, K1)
    assert ring.primary == K2

    path.write_text("# nothing here\n\n")
    with pytest.raises(ConfigError, match="no key"):
        load_keyring_file(path)
    path.write_text(f"{b64(K1)}\n\n{b64(b'sixteen bytes!!')}\n")
    with pytest.raises(ConfigError, match="line 3"):
        load_keyring_file(path)
    path.write_text(f"{b64(K1)}\n!!!!\n")
    with pytest.raises(ConfigError, match="line 2: is not valid base64"):
        load_keyring_file(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_keyring_file(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_keyring_file(tmp_path / "missing")
