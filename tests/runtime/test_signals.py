"""The sync registry leaves the cluster when its process is stopped with SIGTERM or exits.

Real processes on loopback: a child joins a member of this test process,
registers a service, and is stopped; this process watches what its member
sees. Every wait is bounded; no test asserts how long anything took (the
time from SIGTERM to "gone from the view" is measured by
``scripts/bench_shutdown.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gossipreg import Registry, _signals
from gossipreg.default import registry_from_env
from gossipreg.testing import FAST_CONFIG

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))
#: Bound of every wait, in seconds (a hang guard, not a timing claim).
WAIT = 20.0

pytestmark = pytest.mark.usefixtures("clean_env")  # tests/conftest.py

#: The child: joins the peer, registers ``child-svc``, says "ready", then waits for a signal.
CHILD = """
import signal, sys, time
import gossipreg
from gossipreg.default import registry_from_env
from gossipreg.testing import FAST_CONFIG
mode = sys.argv[2]
if mode == "chained":
    def mine(signum, frame):
        print("mine", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, mine)
reg = gossipreg.Registry("127.0.0.1:0", [sys.argv[1]], name="child", keyring=bytes(range(32)),
                         config=FAST_CONFIG, handle_signals=mode != "off")
reg.register(gossipreg.Service("child-svc", "1", nodes=(gossipreg.Node("c1", "10.0.0.1:1"),)))
print("ready", flush=True)
if mode == "exit":
    sys.exit(3)
while True:
    time.sleep(1)  # the signal interrupts it
"""


@pytest.fixture
def peer() -> Iterator[Registry]:
    with Registry("127.0.0.1:0", name="peer", keyring=KEY, config=FAST_CONFIG, handle_signals=False) as reg:
        yield reg


def start_child(peer: Registry, mode: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIPREG_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, f"{peer.address[0]}:{peer.address[1]}", mode],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "ready\n":
        proc.kill()
        pytest.fail(f"the child did not start: {line!r} {proc.communicate()[1]}")
    return proc


def state_of(peer: Registry, name: str) -> str | None:
    return {m.name: m.state for m in peer.members()}.get(name)


def wait_for_state(peer: Registry, name: str, state: str) -> None:
    """Wait (bounded) until ``peer`` holds ``name`` in ``state``: its datagram may still be in flight."""
    deadline = time.monotonic() + WAIT
    while state_of(peer, name) != state:
        assert time.monotonic() < deadline, f"{name} is {state_of(peer, name)}, not {state}"
        time.sleep(0.01)


def stop(proc: subprocess.Popen[str], sig: int | None) -> tuple[int, str, str]:
    try:
        if sig is not None:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def test_sigterm_makes_the_process_leave_and_still_die_of_sigterm(peer: Registry) -> None:
    with peer.watch("child-svc", snapshot=True) as watcher:
        proc = start_child(peer, "default")
        assert watcher.next(timeout=WAIT).action == "create"
        code, _, err = stop(proc, signal.SIGTERM)
        assert code == -signal.SIGTERM, err  # the default action still ends it
        # It said it left (not suspected, not dead) and its registration went with it.
        deleted = watcher.next(timeout=WAIT)
    assert (deleted.action, deleted.service.nodes[0].id) == ("delete", "c1")
    assert state_of(peer, "child") == "left"


def test_sigterm_runs_the_programs_own_handler_after_leaving(peer: Registry) -> None:
    proc = start_child(peer, "chained")
    code, out, err = stop(proc, signal.SIGTERM)
    assert (code, out) == (0, "mine\n"), err
    wait_for_state(peer, "child", "left")


def test_without_signal_handling_sigterm_kills_the_process_before_it_can_leave(peer: Registry) -> None:
    proc = start_child(peer, "off")
    code, _, err = stop(proc, signal.SIGTERM)
    assert code == -signal.SIGTERM, err
    # No leave was sent: the peer still holds the child alive (or, later, suspects it).
    assert state_of(peer, "child") in ("alive", "suspect")


def test_an_exit_without_close_leaves_through_atexit(peer: Registry) -> None:
    proc = start_child(peer, "exit")
    code, _, err = stop(proc, None)
    assert code == 3, err
    wait_for_state(peer, "child", "left")


def test_the_handler_is_installed_in_the_main_thread_only_and_restored_on_close() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with Registry("127.0.0.1:0", insecure=True) as a:
        assert signal.getsignal(signal.SIGTERM) is _signals._on_sigterm
        with Registry("127.0.0.1:0", insecure=True, handle_signals=False):
            pass
        assert signal.getsignal(signal.SIGTERM) is _signals._on_sigterm  # a still needs it
        made: list[Registry] = []
        thread = threading.Thread(target=lambda: made.append(Registry("127.0.0.1:0", insecure=True)))
        thread.start()
        thread.join(WAIT)
        made[0].close()
        assert not a.closed
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_handler_the_program_installs_later_is_left_in_place() -> None:
    before = signal.getsignal(signal.SIGTERM)

    def program_handler(signum: int, frame: object) -> None:
        pass

    try:
        with Registry("127.0.0.1:0", insecure=True):
            signal.signal(signal.SIGTERM, program_handler)
        assert signal.getsignal(signal.SIGTERM) is program_handler
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.parametrize(("value", "handled"), [(None, True), ("1", True), ("0", False), ("no", False)])
def test_the_default_registry_handles_sigterm_unless_told_not_to(value: str | None, handled: bool) -> None:
    env = {"GOSSIPREG_BIND": "127.0.0.1:0", "GOSSIPREG_INSECURE": "1"}
    if value is not None:
        env["GOSSIPREG_HANDLE_SIGNALS"] = value
    before = signal.getsignal(signal.SIGTERM)
    with registry_from_env(env):
        assert (signal.getsignal(signal.SIGTERM) is _signals._on_sigterm) is handled
    assert signal.getsignal(signal.SIGTERM) is before
