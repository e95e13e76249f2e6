"""``python -m simulations run``: options, report keys, determinism across processes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulations.__main__ import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["run", "--nodes", "20", "--seconds", "20", "--seed", "1", "--json"]
KEYS = {
    "params",
    "join_converged_s",
    "registration_spread_s",
    "detection_s",
    "false_dead",
    "views_equal",
    "messages_per_node_per_s",
    "bytes_per_node_per_s",
    "idle",
    "trace_hash",
    "wall_seconds",
}


def _cli(*args: str, hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [sys.executable, "-m", "simulations", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_prints_one_json_object_with_the_report_keys() -> None:
    done = _cli(*ARGS)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report.keys() >= KEYS
    assert report["params"]["nodes"] == 20
    assert report["params"]["seed"] == 1
    assert report["join_converged_s"] is not None
    assert report["join_converged_s"] > 0
    spread = report["registration_spread_s"]
    assert {"p50", "p99", "max"} <= spread.keys()
    assert spread["complete"] == spread["n"] == 10
    assert report["detection_s"]["crashes"] == []
    assert report["false_dead"] == 0
    assert report["views_equal"] is True
    idle = report["idle"]
    assert idle["quiet"] is True
    assert 0 < idle["messages_per_node_per_s"] <= report["messages_per_node_per_s"]
    assert idle["bytes_per_node_per_s"] > 0


def test_trace_hash_does_not_depend_on_the_interpreter_hash_seed() -> None:
    args = ["run", "--nodes", "10", "--seconds", "12", "--seed", "4", "--crash", "1", "--loss", "0.05"]
    args.append("--json")
    a, b = _cli(*args, hash_seed="1"), _cli(*args, hash_seed="2")
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert json.loads(a.stdout)["trace_hash"] == json.loads(b.stdout)["trace_hash"]


def test_main_with_crashes_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "run", "--nodes", "12", "--seconds", "30", "--seed", "2", "--crash", "2", "--registrations", "4",
        "--loss", "0.01", "--latency-ms", "2:8", "--profile", "local", "--no-eager-push", "--no-crypto",
        "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    p = report["params"]
    assert (p["profile"], p["eager_push"], p["crypto"]) == ("local", False, False)
    assert p["latency_ms"] == [2.0, 8.0]
    crashes = report["detection_s"]["crashes"]
    assert len(crashes) == 2
    for c in crashes:
        assert 0 < c["first"] <= c["all"]
    assert report["live_members"] == 10


def test_warm_run_skips_the_joins(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "--nodes", "30", "--seconds", "25", "--seed", "3", "--crash", "1", "--registrations", "3",
            "--warm", "--no-crypto", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"]["warm"] is True
    assert report["join_converged_s"] == 0.0  # every member starts holding all 30 ALIVE
    spread = report["registration_spread_s"]
    assert spread["complete"] == spread["n"] == 3
    (crash,) = report["detection_s"]["crashes"]
    assert 0 < crash["first"] <= crash["all"]
    assert report["false_dead"] == 0
    assert report["views_equal"] is True
    assert report["max_rss_mb"] > 0
    # No join traffic: before the first registration only probes and acks were sent, so the
    # whole run costs far less than the same run with real joins.
    cold = run_report(["run", "--nodes", "30", "--seconds", "25", "--seed", "3", "--crash", "1",
                       "--registrations", "3", "--no-crypto", "--json"], capsys)  # fmt: skip
    assert report["network"]["datagrams"] < cold["network"]["datagrams"]


def run_report(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(argv) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_readable_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--nodes", "5", "--seconds", "8", "--registrations", "2"]) == 0
    out = capsys.readouterr().out
    assert "join converged" in out
    assert "registration spread (2/2)" in out


def test_help_explains_every_option() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run_parser = sub.choices["run"]
    text = run_parser.format_help()
    for action in run_parser._actions:
        assert action.help, action.option_strings
        for opt in action.option_strings:
            assert opt in text
    for opt in ("--nodes", "--seconds", "--seed", "--loss", "--latency-ms", "--crash", "--registrations",
                "--profile", "--no-eager-push", "--no-crypto", "--json"):
        assert opt in text


@pytest.mark.parametrize(
    "bad",
    [["--loss", "1.5"], ["--latency-ms", "5:1"], ["--nodes", "1"], ["--profile", "moon"], ["--seconds", "0"]],
)
def test_bad_options_are_rejected(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", *bad])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_set_reaches_the_config_and_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["run", "--nodes", "12", "--seconds", "15", "--seed", "4", "--registrations", "2",
            "--no-eager-push", "--no-crypto", "--json"]  # fmt: skip
    default = run_report(base, capsys)
    slower = run_report([*base, "--set", "gossip_interval=1.0", "--set", "gossip_nodes=1"], capsys)
    assert default["params"]["overrides"] == {}
    assert slower["params"]["overrides"] == {"gossip_interval": 1.0, "gossip_nodes": 1}
    # One gossip target a second instead of three every 0.2 s: registrations spread slower.
    assert slower["registration_spread_s"]["max"] > default["registration_spread_s"]["max"]
    for bad, says in ((["--set", "eager_push=false"], "--no-eager-push"),
                      (["--set", "probe_timeout=-1"], "must be positive")):  # fmt: skip
        assert main(["run", "--nodes", "3", "--seconds", "2", *bad]) == 2
        assert says in capsys.readouterr().err


def test_too_many_crashes_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--nodes", "4", "--crash", "3", "--seconds", "5"]) == 2
    assert "crash" in capsys.readouterr().err


def test_bench_scale_prints_one_json_object() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_scale.py"), "--nodes", "30", "--seconds", "25",
         "--no-crypto"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["nodes"] == 30
    assert out["crypto"] is False
    assert out["registration_spread_s"]["complete"] == 3
    assert out["detection_s"]["all"]["complete"] == 1
    assert out["false_dead"] == 0
    assert out["views_equal"] is True
    assert out["max_rss_mb"] > 0
    assert out["budget"]["within"] == (out["wall_seconds"] <= 600 and out["max_rss_mb"] <= 4096)
