"""``python -m simulations sweep``: a grid of scenario runs as independent jobs.

A :class:`Grid` names one scenario and, for each swept parameter (an *axis*),
the values to try: cluster sizes, loss rates, seeds, any protocol parameter
(``set.NAME``, a :class:`~gossipreg.core.config.Config` field) and any other
keyword of the scenario function (``registrations``, ``limit``, ``eager``,
``variant``...). Every combination is a :class:`Job`: one call of the
scenario with one run in it, keyed by a stable hash of its parameters
(:attr:`Job.key`).

Jobs go through any :class:`concurrent.futures.Executor`: a local
:class:`~concurrent.futures.ProcessPoolExecutor` or a Dask cluster's
(:func:`open_executor`). :func:`run_job` is a top-level function that runs the
scenario in the worker's own process (no subprocess) and returns its report;
the sweep writes each report to ``OUT/<key>.json`` as soon as it arrives
(a temporary file renamed into place, so a report is whole or absent), so
workers need no shared file system. A job whose report is already there is
skipped: an interrupted sweep, run again with the same arguments, resumes
where it stopped.

The simulator is seeded, so a job gives the same report wherever it runs
(wall-clock figures aside; every run's ``trace_hash`` is in its report).

At the end the reports of the grid's jobs are merged into one table (the
key figures of :func:`simulations.metrics.key_figures`, one row per job, with
the swept parameters in front), written as ``OUT/sweep.csv`` and
``OUT/sweep.json``, and drawn as one plot per metric against the swept
parameter (:func:`simulations.plots.plot_sweep`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import inspect
import itertools
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import scenarios
from .metrics import key_figures
from .run_command import make_config

__all__ = [
    "PLOT_METRICS",
    "Grid",
    "Job",
    "MissingDask",
    "SweepResult",
    "merge",
    "open_executor",
    "run_job",
    "run_sweep",
]

#: Keyword arguments of a scenario that the sweep names differently (one value per job).
_ALIASES = {"losses": "loss", "variants": "variant"}
#: Keyword arguments a sweep never sets (the sweep passes its own).
_RESERVED = {"progress", "overrides"}

#: The figures plotted against the swept parameter, per scenario (``--metric`` chooses others).
PLOT_METRICS: dict[str, tuple[str, ...]] = {
    "convergence": ("p50_s", "p99_s", "p9999_s", "p100_s"),
    "detection": ("first_p50_s", "dead_p50_s", "dead_max_s", "false_dead"),
    "false-positives": ("suspicion_episodes", "death_episodes"),
    "partition": ("converged_after_heal_s", "lost", "resurrected"),
    "churn": ("divergence_mean", "msg_per_member_s", "bytes_per_member_s"),
    "bandwidth": ("idle_bytes_per_member_s", "load_bytes_per_member_s", "idle_msg_per_member_s",
                  "load_msg_per_member_s"),
}

#: The figures of a key-figures row that repeat a swept parameter under another name.
_SAME_AS = {"eager": "eager_push"}


class MissingDask(RuntimeError):
    """A Dask scheduler was given but ``distributed`` is not installed."""


def _keywords(scenario: str) -> dict[str, inspect.Parameter]:
    """The scenario function's keyword arguments, by the sweep's name for them."""
    fn = scenarios.SCENARIOS[scenario]
    return {_ALIASES.get(name, name): p for name, p in inspect.signature(fn).parameters.items()
            if name not in _RESERVED}


#: Keyword arguments that take a list of values, one run each: a job passes one.
_LISTS = {"nodes", "losses", "eager", "variants"}


def _is_sequence(p: inspect.Parameter) -> bool:
    return p.name in _LISTS and isinstance(p.default, tuple | list)


@dataclass(frozen=True)
class Job:
    """One run of a scenario: its parameters, sorted by name.

    ``params`` maps the sweep's names (``nodes``, ``loss``, ``seed``, ``set.NAME``...) to one
    value each. Picklable, so it travels to any worker.
    """

    scenario: str
    params: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> str:
        """A stable hash of the scenario and the parameters: the report's file name."""
        text = json.dumps({"scenario": self.scenario, "params": dict(self.params)}, sort_keys=True,
                          separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def overrides(self) -> dict[str, Any]:
        """The ``set.NAME`` parameters: :class:`Config` overrides."""
        return {k.removeprefix("set."): v for k, v in self.params if k.startswith("set.")}

    def kwargs(self) -> dict[str, Any]:
        """The scenario function's keyword arguments (a one-element list where it takes a list)."""
        known = _keywords(self.scenario)
        reverse = {v: k for k, v in _ALIASES.items()}
        out: dict[str, Any] = {"overrides": self.overrides()}
        for name, value in self.params:
            if name.startswith("set."):
                continue
            p = known[name]
            out[reverse.get(name, name)] = (value,) if _is_sequence(p) else value
        return out

    def label(self, names: Sequence[str] | None = None) -> str:
        """``name=value`` of the named parameters (default: all)."""
        given = dict(self.params)
        return " ".join(f"{n.removeprefix('set.')}={_fmt(given[n])}"
                        for n in (names if names is not None else given))


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class Grid:
    """A scenario and the values of each parameter; every combination is a job.

    Raises (when built):
        ValueError: an unknown scenario, a parameter the scenario does not take, an empty
            axis, or a protocol override that is no valid ``Config`` setting.
    """

    scenario: str
    axes: Mapping[str, Sequence[Any]]

    def __post_init__(self) -> None:
        if self.scenario not in scenarios.SCENARIOS:
            raise ValueError(f"scenario: one of {', '.join(scenarios.SCENARIOS)}, got {self.scenario!r}")
        known = _keywords(self.scenario)
        axes: dict[str, list[Any]] = {}
        for name, values in self.axes.items():
            if not name.startswith("set.") and name not in known:
                raise ValueError(f"{self.scenario} takes no {name!r}; it takes "
                                 f"{', '.join(sorted(known))} and --set NAME=VALUE")
            if not values:
                raise ValueError(f"{name}: no value given")
            axes[name] = list(dict.fromkeys(values))  # in order, without repeats
        # A scenario parameter that takes a list (convergence's eager push settings,
        # false-positives' variants) is swept over its default list unless given: one run a job.
        for name, p in known.items():
            if _is_sequence(p) and name not in axes and name not in ("nodes", "loss"):
                axes[name] = list(p.default)
        for name in ("nodes", "loss"):
            if name in known and _is_sequence(known[name]) and name not in axes:
                axes[name] = list(known[name].default)
        for overrides in {json.dumps(j.overrides(), sort_keys=True) for j in self._jobs(axes)}:
            make_config("lan", json.loads(overrides))  # a bad --set fails here, before any run
        object.__setattr__(self, "axes", axes)

    def _jobs(self, axes: Mapping[str, Sequence[Any]]) -> list[Job]:
        names = list(axes)
        return [Job(self.scenario, tuple(sorted(zip(names, combo, strict=True))))
                for combo in itertools.product(*(axes[n] for n in names))]

    def jobs(self) -> list[Job]:
        """Every combination, the first axis varying slowest."""
        return self._jobs(self.axes)

    def swept(self) -> list[str]:
        """The parameters with more than one value, in the grid's order."""
        return [n for n, vs in self.axes.items() if len(vs) > 1]

    def fixed(self) -> dict[str, Any]:
        """The parameters with one value."""
        return {n: vs[0] for n, vs in self.axes.items() if len(vs) == 1}


def run_job(job: Job) -> dict[str, Any]:
    """Run one job in this process and return ``{key, scenario, params, report}``.

    A top-level function, so a process pool or a Dask worker can run it.
    """
    fn = scenarios.SCENARIOS[job.scenario]
    report = fn(**job.kwargs(), progress=scenarios.Progress())
    return {"key": job.key, "scenario": job.scenario, "params": dict(job.params), "report": report}


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load(path: Path, key: str) -> dict[str, Any] | None:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and saved.get("key") == key else None


@contextlib.contextmanager
def open_executor(workers: int | None = None, scheduler: str | None = None) -> Iterator[Executor]:
    """A local process pool of ``workers`` processes, or the executor of a Dask cluster.

    ``scheduler`` is a Dask scheduler's address (``tcp://host:8786``); its
    workers must have gossipreg (this checkout) importable.

    Raises:
        MissingDask: a scheduler was given and ``distributed`` is not installed.
    """
    if scheduler is not None:
        try:
            from distributed import Client
        except ImportError:
            raise MissingDask(
                "a Dask scheduler needs dask.distributed: pip install 'gossipreg[sweep]' "
                "(or leave out --scheduler to use local processes)"
            ) from None
        with Client(scheduler) as client:  # type: ignore[no-untyped-call]
            yield client.get_executor()
        return
    methods = multiprocessing.get_all_start_methods()
    # Not fork: the parent may run threads (a test's Dask cluster, a GUI), which fork would copy
    # mid-state.
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield pool


@dataclass
class SweepResult:
    """What a sweep did, and its merged table."""

    jobs: list[Job]
    ran: int = 0
    skipped: int = 0
    failed: list[tuple[Job, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def run_sweep(
    grid: Grid,
    out: Path,
    executor: Executor,
    *,
    on_done: Callable[[int, int, Job, dict[str, Any] | None, str | None], None] | None = None,
) -> SweepResult:
    """Run the grid's jobs whose report is not in ``out`` yet; write each report as it arrives.

    ``on_done(done, to_run, job, saved, error)`` is called after each job (``saved`` the
    report written, or ``error`` what the job raised). Returns the counts; merge with
    :func:`merge`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = grid.jobs()
    result = SweepResult(jobs)
    todo = [j for j in jobs if _load(out / f"{j.key}.json", j.key) is None]
    result.skipped = len(jobs) - len(todo)
    futures: dict[Future[dict[str, Any]], Job] = {executor.submit(run_job, j): j for j in todo}
    try:
        for done, fut in enumerate(as_completed(futures), 1):
            job = futures[fut]
            try:
                saved = fut.result()
            except Exception as exc:  # a job's failure is reported; the others go on
                error = f"{type(exc).__name__}: {exc}"
                result.failed.append((job, error))
                if on_done is not None:
                    on_done(done, len(todo), job, None, error)
                continue
            write_atomic(out / f"{job.key}.json", json.dumps(saved, indent=1) + "\n")
            result.ran += 1
            if on_done is not None:
                on_done(done, len(todo), job, saved, None)
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    return result


def merge(grid: Grid, out: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The merged table of the grid's saved reports: ``(columns, rows)``, one row per run.

    The swept parameters come first, then the run's key figures (those that repeat a swept
    parameter left out), then ``job`` (the report's file name). Jobs without a report (failed)
    are left out.
    """
    swept = grid.swept()
    rows: list[dict[str, Any]] = []
    for job in grid.jobs():
        saved = _load(Path(out) / f"{job.key}.json", job.key)
        if saved is None:
            continue
        params = dict(job.params)
        skip = set(swept) | {_SAME_AS.get(n, n) for n in swept}
        for figures in key_figures(saved["report"]):
            row = {n: params[n] for n in swept}
            row.update((k, v) for k, v in figures.items() if k not in skip)
            row["job"] = job.key
            rows.append(row)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return columns, rows


def write_table(out: Path, grid: Grid, columns: list[str], rows: list[dict[str, Any]],
                command: str) -> list[Path]:
    """``OUT/sweep.csv`` and ``OUT/sweep.json`` (the rows, the grid, the command)."""
    out = Path(out)
    csv_path, json_path = out / "sweep.csv", out / "sweep.json"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for row in rows:
            w.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    doc = {"scenario": grid.scenario, "command": command, "axes": {k: list(v) for k, v in grid.axes.items()},
           "swept": grid.swept(), "columns": columns, "rows": rows,
           "jobs": [{"key": j.key, "params": dict(j.params)} for j in grid.jobs()]}
    write_atomic(json_path, json.dumps(doc, indent=1) + "\n")
    return [csv_path, json_path]


def plot_axes(grid: Grid, x: str | None = None) -> tuple[str | None, list[str]]:
    """The x axis of the merged plots (``x``, or the first swept parameter other than the seed)
    and the parameters that make one line each (the other swept ones; seeds are averaged).

    Raises:
        ValueError: ``x`` is not a parameter of the grid.
    """
    swept = [n for n in grid.swept() if n != "seed"]
    if x is not None:
        if x not in grid.axes and f"set.{x}" in grid.axes:
            x = f"set.{x}"
        if x not in grid.axes:
            raise ValueError(f"--x {x}: not a parameter of this sweep ({', '.join(grid.axes)})")
    elif swept:
        x = swept[0]
    return x, [n for n in swept if n != x]


def timed(start: float) -> str:
    """Wall seconds since ``start``, for progress lines."""
    return f"{time.perf_counter() - start:.1f} s"
