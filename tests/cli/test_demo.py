"""``gossipreg demo``: a real encrypted cluster on loopback, each step checked and measured."""

from __future__ import annotations

import io
import re

from click.testing import CliRunner
from rich.console import Console

from gossipreg.cli.demo import DEMO_CONFIG, run_demo
from gossipreg.cli.main import cli

NUMBER = r"(\d+\.\d+)"


def seconds(pattern: str, text: str) -> list[float]:
    match = re.search(pattern, text, re.MULTILINE)
    assert match is not None, f"no line matches {pattern!r} in:\n{text}"
    return [float(g) for g in match.groups()]


def test_demo_with_six_members_passes_every_step_and_reports_the_measured_times() -> None:
    result = CliRunner().invoke(cli, ["demo", "--no-live", "--nodes", "6", "--duration", "10"])
    out = result.stdout
    assert result.exit_code == 0, result.output
    assert result.stderr == ""

    # Progress lines, timestamped, in order.
    steps = [
        r"starting 6 members on 127\.0\.0\.1 with a fresh AES-256-GCM cluster key",
        r"converged: every member sees 6 alive",
        r"every member's view holds exactly the 11 nodes",
        r"killing n06 abruptly \(sockets silenced, no leave sent\); it hosts greeter 2\.0\.0 node "
        r"greeter-v2-2, payments 1\.4\.2 node payments-2, reports 0\.9\.0 node reports-1",
        r"n0[1-5] suspects n06",
        r"n0[1-5] declares n06 DEAD",
        r"n06 is DEAD at all 5 survivors",
        r"n06's 3 nodes gone from every survivor's view .*: reports 0\.9\.0 gone entirely; "
        r"greeter 2\.0\.0, payments 1\.4\.2 down to the other members' nodes",
        r"n03 deregisters inventory 3\.1\.0",
        r"inventory 3\.1\.0 gone from all 5 members",
        r"n03 registers inventory 3\.1\.0 again",
        r"inventory 3\.1\.0 back on all 5 members",
        r"final check: every survivor sees the others alive and holds the same catalog",
    ]
    position = 0
    for step in steps:
        match = re.compile(r"^\[ *\d+\.\d\ds\] " + step, re.MULTILINE).search(out, position)
        assert match is not None, f"missing (in order) {step!r} in:\n{out}"
        position = match.end()

    # The summary, with times that make sense together.
    suspect, dead, all_dead = seconds(
        rf"^  abrupt kill of n06 +first suspicion {NUMBER} s \(n0[1-5]\), first DEAD {NUMBER} s \(n0[1-5]\), "
        rf"DEAD at all 5 survivors {NUMBER} s after the kill$",
        out,
    )
    [gone] = seconds(rf"^  n06's services +3 nodes gone from every view {NUMBER} s after the kill", out)
    assert 0 < suspect <= dead <= all_dead <= gone < 10
    # A suspicion lasts at least the minimum suspicion timeout (4 * 1 * 0.5 s for 6 members); the
    # first suspicion is seen at most one poll (10 ms) after it began.
    minimum, _ = DEMO_CONFIG.suspicion_timeout_bounds(6)
    assert dead - suspect >= minimum - 0.011
    [dereg] = seconds(rf"^  deregistration +inventory 3\.1\.0 gone from all 5 members in {NUMBER} s$", out)
    [rereg] = seconds(rf"^  re-registration +inventory 3\.1\.0 back on all 5 members in {NUMBER} s$", out)
    assert 0 <= dereg < 10
    assert 0 <= rereg < 10
    assert re.search(
        r"^  cluster +6 members up in \d+\.\d\d s; every member saw all 6 alive", out, re.MULTILINE
    )
    assert re.search(r"^  registrations +6 service versions, 11 nodes on 6 members", out, re.MULTILINE)
    assert re.search(
        r"^  final state +5 survivors see each other alive; identical views of 8 nodes$", out, re.M
    )
    assert re.search(r"^  traffic +[\d,]+ datagrams, .* sent by the survivors; 0 authentication failures, "
                     r"0 decode errors", out, re.MULTILINE)  # fmt: skip
    [total] = seconds(rf"^  result +OK: every step behaved as shown, in {NUMBER} s of the 10 s budget$", out)
    assert gone <= total + 0.05  # total is printed to 0.1 s
    assert total < 10


def test_demo_fails_clearly_when_the_budget_is_too_short_for_failure_detection() -> None:
    # 0.5 s cannot hold even the minimum suspicion timeout (2 s): the demo must say so and exit 1.
    # Without --no-live and with stdout not a terminal, it prints plain lines too.
    result = CliRunner().invoke(cli, ["demo", "--nodes", "3", "--duration", "0.5"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert re.search(r"^\[ *0\.00s\] starting 3 members", result.stdout, re.MULTILINE)
    assert re.search(
        r"^  result +FAILED after \d+\.\d s: .*not done within the 0\.5 s budget", result.stdout, re.M
    )
    assert result.stderr.startswith("Error: demo failed: ")
    assert "not done within the 0.5 s budget" in result.stderr


async def test_live_view_shows_the_members_their_states_and_the_services() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=150, color_system=None)
    result = await run_demo(3, 20.0, console=console, pace=0.0)
    assert result.failure is None, result.failure
    screen = buffer.getvalue()
    assert "members (state as the other live members see it)" in screen
    assert "services (union of the live members' views)" in screen
    assert "n03 (killed)" in screen
    # A suspicion lasts at least the minimum suspicion timeout (2 s), so the view shows it at 10 frames/s.
    for state in ("suspect", "dead"):
        assert re.search(rf"│ n03 \(killed\) +│ 127\.0\.0\.1:\d+ +│ {state} ", screen), state
    # The victim's reports service was listed, then gone: the last frame no longer has it.
    assert "reports-1@n03" in screen
    last = screen.rsplit("gossipreg demo", 1)[1]
    assert "reports-1@n03" not in last
    assert "inventory-1@n01" in last
    assert "done" in last
    assert [label for label, _ in result.rows] == [
        "cluster",
        "registrations",
        "abrupt kill of n03",
        "n03's services",
        "deregistration",
        "re-registration",
        "final state",
        "traffic",
    ]
