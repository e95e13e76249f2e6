"""``gossipreg simulate`` passes its arguments to the simulation harness."""

from __future__ import annotations

import json

from click.testing import CliRunner

from gossipreg.cli.main import cli


def test_simulate_runs_the_harness_and_prints_its_json() -> None:
    result = CliRunner().invoke(
        cli, ["simulate", "run", "--nodes", "8", "--seconds", "12", "--seed", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["params"]["nodes"] == 8
    assert report["views_equal"] is True
    assert report["registration_spread_s"]["complete"] == report["registration_spread_s"]["n"]


def test_simulate_reports_bad_arguments_with_a_nonzero_status() -> None:
    result = CliRunner().invoke(cli, ["simulate", "run", "--nodes", "zero"])
    assert result.exit_code != 0
