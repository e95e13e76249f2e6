"""``python -m simulations sweep``: grids, resumable jobs, merged table, local pool and Dask.

The sweeps here are tiny (6 to 16 members, a few virtual seconds) so each runs in seconds.
"""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from simulations import sweep
from simulations.__main__ import main

# Two sizes x two loss rates x two seeds, one registration each, eager push on.
GRID = ["convergence", "--nodes", "6,12", "--loss", "0,0.1", "--seeds", "1,2", "--opt", "eager=true",
        "--opt", "registrations=1", "--opt", "limit=5", "--no-crypto"]  # fmt: skip


def _sweep(out: Path, *extra: str) -> int:
    return main(["sweep", *GRID, "--out", str(out), *extra])


def _reports(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.json") if p.name != "sweep.json")


def _without_wall(x: Any) -> Any:
    """A report with its wall-clock figures (the only ones a machine changes) left out."""
    if isinstance(x, dict):
        return {k: _without_wall(v) for k, v in x.items() if not k.startswith("wall")}
    if isinstance(x, list):
        return [_without_wall(v) for v in x]
    return x


def test_grid_makes_one_job_per_combination_with_stable_keys() -> None:
    grid = sweep.Grid("convergence", {"nodes": [6, 12], "loss": [0.0, 0.1], "set.gossip_interval": [0.1, 0.2],
                                      "seed": [1], "eager": [True]})  # fmt: skip
    jobs = grid.jobs()
    assert len(jobs) == 8
    assert len({j.key for j in jobs}) == 8
    assert grid.swept() == ["nodes", "loss", "set.gossip_interval"]
    # The key depends on the parameters only, not on the order they were given in.
    again = sweep.Grid("convergence", {"eager": [True], "seed": [1], "set.gossip_interval": [0.1, 0.2],
                                       "loss": [0.0, 0.1], "nodes": [6, 12]})  # fmt: skip
    assert {j.key for j in again.jobs()} == {j.key for j in jobs}
    kwargs = jobs[0].kwargs()
    assert kwargs["nodes"] == (6,)
    assert kwargs["losses"] == (0.0,)
    assert kwargs["eager"] == (True,)
    assert kwargs["overrides"] == {"gossip_interval": 0.1}
    # A scenario option that takes a list defaults to its own list, one run a job.
    both = sweep.Grid("convergence", {"nodes": [6], "loss": [0.0]})
    assert both.swept() == ["eager"]
    with pytest.raises(ValueError, match="takes no 'loss'"):
        sweep.Grid("bandwidth", {"loss": [0.1]})
    with pytest.raises(ValueError, match="not a Config field"):
        sweep.Grid("detection", {"set.no_such_setting": [1]})


def test_same_job_same_report() -> None:
    job = sweep.Grid("detection", {"nodes": [10], "crashes": [1], "limit": [20.0], "seed": [3],
                                   "crypto": [False]}).jobs()[0]  # fmt: skip
    a, b = sweep.run_job(job), sweep.run_job(job)
    assert a["key"] == b["key"] == job.key
    assert a["report"]["trace_hash"] == b["report"]["trace_hash"]
    assert _without_wall(a) == _without_wall(b)


def test_local_sweep_resumes_and_merges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib  # noqa: F401 - part of the test extra: a missing install must fail, not skip

    out = tmp_path / "sweep"
    assert _sweep(out, "--workers", "2") == 0
    captured = capsys.readouterr()
    reports = _reports(out)
    assert len(reports) == 8
    assert "8 jobs, 0 already done" in captured.err
    assert "(8 run now, 0 skipped" in captured.out
    assert captured.err.count("[") == 8  # a line per finished job

    # The merged table: one row per job, the swept parameters first, the key figures after.
    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert list(rows[0])[:3] == ["nodes", "loss", "seed"]
    assert sorted((r["nodes"], r["loss"], r["seed"]) for r in rows) == sorted(
        (n, loss, s) for n in ("6", "12") for loss in ("0.0", "0.1") for s in ("1", "2"))
    merged = json.loads((out / "sweep.json").read_text())
    assert merged["swept"] == ["nodes", "loss", "seed"]
    for row in merged["rows"]:
        saved = json.loads((out / f"{row['job']}.json").read_text())
        (run,) = saved["report"]["runs"]
        assert saved["params"]["nodes"] == row["nodes"] == run["nodes"]
        assert row["p100_s"] == run["max"]["p100"] is not None
        assert row["complete"] == "1/1"
    for metric in sweep.PLOT_METRICS["convergence"]:
        assert (out / f"sweep_{metric}.png").stat().st_size > 0
    assert "p9999_s" in captured.out  # the table is printed

    # Resume: delete one report; only that job runs again.
    victim = reports[3]
    before = {p.name: p.read_text() for p in reports if p != victim}
    victim.unlink()
    assert _sweep(out, "--workers", "1") == 0
    captured = capsys.readouterr()
    assert "8 jobs, 7 already done" in captured.err
    assert "(1 run now, 7 skipped" in captured.out
    assert captured.err.count(f"{victim.stem}.json") == 1
    assert {p.name: p.read_text() for p in _reports(out) if p != victim} == before
    assert victim.exists()

    # Nothing left to do.
    assert _sweep(out, "--no-plots") == 0
    assert "(0 run now, 8 skipped" in capsys.readouterr().out


def test_sweep_through_any_executor_counts_failures(tmp_path: Path) -> None:
    grid = sweep.Grid("detection", {"nodes": [5, 10], "crashes": [4], "limit": [10.0], "crypto": [False]})
    done: list[tuple[str, str | None]] = []
    with ThreadPoolExecutor(1) as ex:
        result = sweep.run_sweep(grid, tmp_path, ex, on_done=lambda i, n, j, s, e: done.append((j.key, e)))
    # 4 crashes among 5 members is refused by the scenario: that job fails, the other is written.
    assert result.ran == 1
    assert len(result.failed) == 1
    assert "at most nodes - 2" in result.failed[0][1]
    assert len(done) == 2
    columns, rows = sweep.merge(grid, tmp_path)
    assert [r["nodes"] for r in rows] == [10]
    assert columns[0] == "nodes"


def test_sweep_on_a_dask_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (pip install 'gossipreg[sweep]')")
    out = tmp_path / "dask"
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        assert _sweep(out, "--scheduler", cluster.scheduler_address, "--no-plots") == 0
    captured = capsys.readouterr()
    assert f"to run on Dask scheduler {cluster.scheduler_address}" in captured.err
    assert "(8 run now, 0 skipped" in captured.out
    assert len(_reports(out)) == 8
    # The same jobs on the local pool give the same reports (same keys, same figures).
    local = tmp_path / "local"
    assert _sweep(local, "--workers", "2", "--no-plots") == 0
    for report in _reports(out):
        a = json.loads(report.read_text())
        b = json.loads((local / report.name).read_text())
        assert _without_wall(a) == _without_wall(b)


def test_missing_dask_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    assert _sweep(tmp_path, "--scheduler", "tcp://127.0.0.1:1", "--no-plots") == 2
    assert "pip install 'gossipreg[sweep]'" in capsys.readouterr().err
