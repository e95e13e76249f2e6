"""``python -m simulations run ...``: one measured run of a simulated cluster.

See :mod:`simulations.run_command` for the timeline and the meaning of every
reported figure, and ``python -m simulations run --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from collections.abc import Sequence
from typing import Any, TextIO

from . import scenarios
from .metrics import scenario_summary
from .run_command import PROFILES, RunParams, run

__all__ = ["main"]


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _latency(text: str) -> tuple[float, float]:
    parts = text.split(":")
    try:
        values = [float(x) for x in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI in milliseconds, got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not 0 <= values[0] <= values[1]:
        raise argparse.ArgumentTypeError(f"expected LO:HI with 0 <= LO <= HI, got {text!r}")
    return values[0], values[1]


def _positive_int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m simulations",
        description="Deterministic discrete-event simulations of gossipreg clusters "
        "(real NodeCores on a virtual clock over a simulated network).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "run",
        help="run the standard measured scenario and report",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Members m0000..m(N-1) all join through m0000 at t=0; the run waits until every "
            "member sees all N alive (with --warm: no joins, every member starts holding all N "
            "alive). One second later R services are registered (0.1 s apart, "
            "by random members) and timed until every live member holds them. 5 s after the "
            "last registration M random members (never m0000) are crashed, 1 s apart, and "
            "timed until first suspected and until declared dead by every live member. The "
            "last --idle-window seconds are measured as idle traffic. At the end the live "
            "members' catalogs are compared. Same seed, same run: see trace_hash."
        ),
        epilog=(
            "Reported (JSON): join_converged_s; registration_spread_s {n, complete, p50, p99, max}; "
            "detection_s {crashes: [{member, crashed_at, first, all}], first, all}; false_dead "
            "(death declarations about members whose process was up, not refuted by the end); "
            "false_dead_events (all of them); suspicions, false_suspicions; views_equal (records() "
            "identical on every live member); visible_views_equal; messages_per_node_per_s and "
            "bytes_per_node_per_s (datagrams + stream messages sent, per live member per virtual "
            "second, whole run); idle {window_s, quiet, messages_per_node_per_s, "
            "bytes_per_node_per_s}; network counters; trace_hash; wall_seconds; max_rss_mb (peak "
            "resident memory of the process); params. "
            "Unfinished measurements are null."
        ),
    )
    r.add_argument("--nodes", type=lambda t: _positive_int(t, 2), default=20, metavar="N",
                   help="number of members")
    r.add_argument("--seconds", type=_seconds, default=60.0, metavar="S",
                   help="virtual seconds to run, joins included")
    r.add_argument("--seed", type=int, default=0, metavar="K", help="seed of every random choice")
    r.add_argument("--loss", type=_probability, default=0.0, metavar="P",
                   help="probability that a datagram is lost (streams are reliable)")
    r.add_argument("--duplicate", type=_probability, default=0.0, metavar="P",
                   help="probability that a datagram is delivered twice")
    r.add_argument("--latency-ms", type=_latency, default=(1.0, 5.0), metavar="LO:HI",
                   help="one-way link latency, uniform in [LO, HI] milliseconds (or one value)")
    r.add_argument("--crash", type=lambda t: _positive_int(t, 0), default=0, metavar="M",
                   help="members crashed mid-run (after the registrations)")
    r.add_argument("--registrations", type=lambda t: _positive_int(t, 0), default=10, metavar="R",
                   help="services registered mid-run (after the join converged)")
    r.add_argument("--profile", choices=PROFILES, default="lan",
                   help="protocol parameter profile (memberlist's LAN, WAN or local defaults)")
    r.add_argument("--push-pull-interval", type=_seconds, default=None, metavar="SECONDS",
                   help="override the profile's anti-entropy interval")
    r.add_argument("--no-eager-push", dest="eager_push", action="store_false",
                   help="disable eager push: fresh updates wait for the next gossip round"
                   "%(default).0s")  # (no "default: True" for a switch that turns something off)
    r.add_argument("--no-crypto", dest="crypto", action="store_false",
                   help="run plaintext instead of sealing with AES-GCM (faster for large runs)%(default).0s")
    r.add_argument("--identities", action="store_true",
                   help="member identities: every member signs its records and alives with a "
                   "certificate of one cluster CA")
    r.add_argument("--idle-window", type=_seconds, default=None, metavar="W",
                   help="length of the final quiet window measured as idle traffic "
                   "(default: min(10, S/4))")
    r.add_argument("--warm", action="store_true",
                   help="start from Simulation.bootstrap (every table adopts one shared snapshot of "
                   "all N alive) instead of N real joins, which cost O(N^2) messages")
    r.add_argument("--set", dest="overrides", action="append", type=_override, default=[],
                   metavar="NAME=VALUE",
                   help="override one protocol parameter of the profile (repeatable), e.g. "
                   "--set eager_round_rate=20; any Config field, see docs/configuration.md")
    r.add_argument("--json", action="store_true",
                   help="print the report as one JSON object on one line (default: a readable summary)")
    _add_scenarios(sub)
    _add_sweep(sub)
    pl = sub.add_parser(
        "plot",
        help="draw the plots of saved reports (several of one scenario are merged)",
        description=(
            "Read scenario reports (the JSON files the scenarios write) and draw their PNG plots "
            "into --out, without running anything. Several convergence reports are merged run by "
            "run and several bandwidth reports row by row, so runs made with different options "
            "(e.g. 10,000 members at 0 % loss only) can be shown together."
        ),
    )
    pl.add_argument("reports", nargs="+", metavar="REPORT.json", help="scenario reports to plot")
    pl.add_argument("--out", default="sim-out", metavar="DIR",
                    help="directory for the plots (default: sim-out)")
    return parser


def _sizes(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of sizes, got {text!r}") from None
    if not values or any(v < 2 for v in values):
        raise argparse.ArgumentTypeError(f"every size must be at least 2, got {text!r}")
    return values


def _probabilities(text: str) -> list[float]:
    return [_probability(x) for x in text.split(",") if x.strip()]


def _eager(text: str) -> list[bool]:
    table = {"on": [True], "off": [False], "both": [True, False]}
    if text not in table:
        raise argparse.ArgumentTypeError(f"one of on, off, both; got {text!r}")
    return table[text]


_COMMON_EPILOG = (
    "Writes OUT/<scenario>.json (the report) and, unless --no-plots, PNG plots into OUT. "
    "Members start warm (their tables filled through Simulation.bootstrap, no join traffic) "
    "unless --cold. Times are virtual seconds; wall_seconds is the real time taken."
)


def _override(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` of ``--set``: VALUE is read as a TOML value (``20``, ``0.5``, ``true``, ``"x"``)."""
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # a bare word: a string (Config says whether it fits)
    return name, parsed


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", type=_override, default=[],
                   metavar="NAME=VALUE",
                   help="override one protocol parameter of the lan profile (repeatable), e.g. "
                   "--set eager_round_rate=20; any Config field, see docs/configuration.md; "
                   "the report lists the overrides")
    p.add_argument("--out", default="sim-out", metavar="DIR", help="directory for the JSON report and plots")
    p.add_argument("--seed", type=int, default=0, metavar="K", help="seed of every random choice")
    p.add_argument("--no-crypto", dest="crypto", action="store_false",
                   help="run plaintext instead of AES-GCM sealing (faster; named in the report)%(default).0s")
    p.add_argument("--cold", dest="warm", action="store_false",
                   help="start members with real joins through m0000 instead of the warm bootstrap"
                   "%(default).0s")
    p.add_argument("--no-plots", dest="plots", action="store_false",
                   help="write only the JSON report (no matplotlib needed)%(default).0s")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress report on stderr (a bar on a terminal, otherwise a plain line "
                   "per finished run)%(default).0s")


def _add_scenarios(sub: Any) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    c = sub.add_parser("convergence", help="time for a new registration to reach 50/99/99.99/100 %%",
                       formatter_class=fmt, epilog=_COMMON_EPILOG,
                       description=scenarios.convergence.__doc__)
    c.add_argument("--nodes", type=_sizes, default=[10, 100, 1000], metavar="N,N,...", help="cluster sizes")
    c.add_argument("--loss", type=_probabilities, default=[0.0, 0.1, 0.5], metavar="P,P,...",
                   help="datagram loss rates")
    c.add_argument("--eager", type=_eager, default=[True, False], metavar="on|off|both",
                   help="eager push setting(s) (default: both)%(default).0s")
    c.add_argument("--registrations", type=lambda t: _positive_int(t, 1), default=3, metavar="R",
                   help="registrations timed per run")
    c.add_argument("--gap", type=_seconds, default=1.0, metavar="S", help="seconds between registrations")
    c.add_argument("--limit", type=_seconds, default=40.0, metavar="S",
                   help="stop waiting this long after the last registration")
    _common(c)

    d = sub.add_parser("detection", help="time from a crash to first suspicion and to dead-by-all",
                       formatter_class=fmt, epilog=_COMMON_EPILOG, description=scenarios.detection.__doc__)
    d.add_argument("--nodes", type=lambda t: _positive_int(t, 3), default=100, metavar="N", help="members")
    d.add_argument("--crashes", type=lambda t: _positive_int(t, 1), default=20, metavar="M", help="crashes")
    d.add_argument("--gap", type=_seconds, default=3.0, metavar="S", help="seconds between crashes")
    d.add_argument("--limit", type=_seconds, default=120.0, metavar="S",
                   help="stop waiting this long after the last crash")
    d.add_argument("--loss", type=_probability, default=0.0, metavar="P", help="datagram loss rate")
    _common(d)

    f = sub.add_parser("false-positives", help="the Lifeguard experiment: slow members, loss, false deaths",
                       formatter_class=fmt, epilog=_COMMON_EPILOG,
                       description=scenarios.false_positives.__doc__)
    f.add_argument("--nodes", type=lambda t: _positive_int(t, 3), default=200, metavar="N",
                   help="members (the full-size study: 1000)")
    f.add_argument("--seconds", type=_seconds, default=120.0, metavar="S",
                   help="virtual seconds (the full-size study: 600)")
    f.add_argument("--loss", type=_probability, default=0.05, metavar="P", help="datagram loss rate")
    f.add_argument("--slow", type=_probability, default=0.1, metavar="FRACTION",
                   help="fraction of slow members")
    f.add_argument("--pause-every", type=_seconds, default=2.0, metavar="S",
                   help="mean seconds between two pauses of a slow member (exponential)")
    f.add_argument("--variants", default=",".join(scenarios.VARIANTS), metavar="V,V,...",
                   help="Lifeguard variants: " + ", ".join(scenarios.VARIANTS))
    _common(f)

    p = sub.add_parser("partition", help="split in two, heal, time until views are identical",
                       formatter_class=fmt, epilog=_COMMON_EPILOG, description=scenarios.partition.__doc__)
    p.add_argument("--nodes", type=lambda t: _positive_int(t, 4), default=40, metavar="N", help="members")
    p.add_argument("--split-seconds", type=_seconds, default=60.0, metavar="T", help="length of the split")
    p.add_argument("--registrations", type=lambda t: _positive_int(t, 2), default=10, metavar="R",
                   help="registrations made before the split")
    p.add_argument("--changes", type=lambda t: _positive_int(t, 0), default=3, metavar="C",
                   help="registrations added and deregistered on each side during the split")
    p.add_argument("--limit", type=_seconds, default=300.0, metavar="S", help="longest wait after healing")
    p.add_argument("--loss", type=_probability, default=0.0, metavar="P", help="datagram loss rate")
    _common(p)

    ch = sub.add_parser("churn", help="continuous join/leave/crash and registration churn",
                        formatter_class=fmt, epilog=_COMMON_EPILOG, description=scenarios.churn.__doc__)
    ch.add_argument("--nodes", type=lambda t: _positive_int(t, 4), default=40, metavar="N",
                    help="members live (the target the churn keeps)")
    ch.add_argument("--seconds", type=_seconds, default=120.0, metavar="S", help="virtual seconds")
    ch.add_argument("--event-every", type=_seconds, default=2.0, metavar="S",
                    help="seconds between membership events (and between new registrations)")
    ch.add_argument("--ttl", type=_seconds, default=30.0, metavar="S", help="registration lease")
    ch.add_argument("--renew-every", type=_seconds, default=10.0, metavar="S", help="lease renewal period")
    ch.add_argument("--abandon", type=_probability, default=0.2, metavar="P",
                    help="fraction of registrations never renewed (they expire)")
    ch.add_argument("--loss", type=_probability, default=0.0, metavar="P", help="datagram loss rate")
    _common(ch)

    b = sub.add_parser("bandwidth", help="messages and bytes per member per second against N",
                       formatter_class=fmt, epilog=_COMMON_EPILOG, description=scenarios.bandwidth.__doc__)
    b.add_argument("--nodes", type=_sizes, default=[10, 50, 100, 200], metavar="N,N,...",
                   help="cluster sizes")
    b.add_argument("--rate", type=_seconds, default=10.0, metavar="R",
                   help="registrations per second (cluster-wide) in the load window")
    b.add_argument("--idle-window", type=_seconds, default=None, metavar="S",
                   help="idle window length (default: P = push_pull_interval_for(N), so every member "
                   "starts exactly one push/pull in it)")
    b.add_argument("--load-window", type=_seconds, default=None, metavar="S",
                   help="load window length (default: P)")
    b.add_argument("--renew-every", type=_seconds, default=None, metavar="S",
                   help="make the load renewals instead of new registrations: R x S services are "
                   "registered (with a lease) before the idle window and each is renewed every S "
                   "seconds in the load window, R renewals a second in all")
    _common(b)


def _values(text: str) -> list[object]:
    """``V,V,...``: each read as a TOML value (``20``, ``0.5``, ``true``, a bare word as a string)."""
    return [_override(f"v={item}")[1] for item in text.split(",") if item.strip()]


def _axis(text: str) -> tuple[str, list[object]]:
    """``NAME=V,V,...`` of the sweep's ``--set`` and ``--opt``."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name or not values.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE[,VALUE...], got {text!r}")
    return name, _values(values)


def _seeds(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of integers, got {text!r}") from None


def _add_sweep(sub: Any) -> None:
    sw = sub.add_parser(
        "sweep",
        help="a grid of one scenario's parameters as independent jobs (local processes or Dask)",
        description=(
            "Run one scenario for every combination of the given values (sizes, loss rates, seeds, "
            "protocol parameters, other scenario options), each combination one job with one run, "
            "in a local process pool or on a Dask cluster (--scheduler). Each job's report is "
            "written to OUT/<hash of its parameters>.json as it finishes; jobs whose report is "
            "already there are skipped, so an interrupted sweep resumes when run again. At the "
            "end the reports are merged into one table (printed, and OUT/sweep.csv, "
            "OUT/sweep.json) and one plot per metric against the swept parameter "
            "(OUT/sweep_<metric>.png)."
        ),
        epilog=(
            "Example: python -m simulations sweep convergence --nodes 100,1000 --loss 0,0.05,0.1 "
            "--set probe_interval=0.5,1.0 --seeds 1,2 --opt eager=true --no-crypto --out sim-sweep. "
            "Any other scenario option is an --opt (e.g. --opt registrations=2 --opt limit=10 for "
            "convergence; --opt crashes=5 for detection); see python -m simulations SCENARIO --help."
        ),
    )
    sw.add_argument("scenario", choices=list(scenarios.SCENARIOS), help="the scenario to sweep")
    sw.add_argument("--nodes", type=_sizes, default=None, metavar="N,N,...",
                    help="cluster sizes (default: the scenario's)")
    sw.add_argument("--loss", type=_probabilities, default=None, metavar="P,P,...",
                    help="datagram loss rates (default: the scenario's)")
    sw.add_argument("--seeds", type=_seeds, default=[0], metavar="K,K,...",
                    help="seeds; the plots average over them (default: 0)")
    sw.add_argument("--set", dest="sets", action="append", type=_axis, default=[],
                    metavar="NAME=V,V,...",
                    help="a protocol parameter (any Config field) and its values (repeatable)")
    sw.add_argument("--opt", dest="opts", action="append", type=_axis, default=[],
                    metavar="NAME=V,V,...",
                    help="another keyword of the scenario and its values (repeatable), e.g. "
                    "registrations=2, limit=10, eager=true,false, variant=lifeguard")
    sw.add_argument("--workers", type=lambda t: _positive_int(t, 1), default=None, metavar="N",
                    help="local worker processes (default: one per CPU)")
    sw.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="run the jobs on this Dask scheduler (tcp://host:8786) instead of local "
                    "processes; needs the sweep extra: pip install 'gossipreg[sweep]'")
    sw.add_argument("--x", default=None, metavar="NAME",
                    help="the parameter on the plots' x axis (default: the first swept one)")
    sw.add_argument("--metric", dest="metrics", action="append", default=None, metavar="NAME",
                    help="a column of the table to plot (repeatable; default: the scenario's key "
                    "figures)")
    sw.add_argument("--out", default="sim-sweep", metavar="DIR",
                    help="directory of the job reports, the merged table and plots (default: sim-sweep)")
    sw.add_argument("--no-crypto", dest="crypto", action="store_false",
                    help="run plaintext instead of AES-GCM sealing (faster; part of every job's key)")
    sw.add_argument("--cold", dest="warm", action="store_false",
                    help="members join for real instead of the warm bootstrap")
    sw.add_argument("--no-plots", dest="plots", action="store_false",
                    help="write only the table (no matplotlib needed)")
    sw.add_argument("--quiet", action="store_true", help="no line per finished job on stderr")


def run_sweep_command(args: argparse.Namespace) -> int:
    """``python -m simulations sweep``: run the grid, merge, print the table."""
    from pathlib import Path

    from . import sweep
    from .metrics import format_table
    from .plots import MissingMatplotlib, plot_sweep, require_matplotlib

    prog = "python -m simulations sweep"
    axes: dict[str, list[object]] = {}
    if args.nodes is not None:
        axes["nodes"] = list(args.nodes)
    if args.loss is not None:
        axes["loss"] = list(args.loss)
    for name, values in args.sets:
        axes[f"set.{name}"] = values
    for name, values in args.opts:
        axes[{"losses": "loss", "variants": "variant"}.get(name, name)] = values
    axes["seed"] = list(args.seeds)
    axes["crypto"] = [args.crypto]
    axes["warm"] = [args.warm]
    try:
        if args.plots:
            require_matplotlib()
        grid = sweep.Grid(args.scenario, axes)
        x, lines = sweep.plot_axes(grid, args.x)
    except (ValueError, MissingMatplotlib) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    jobs = grid.jobs()
    where = f"Dask scheduler {args.scheduler}" if args.scheduler else (
        f"{args.workers or os.cpu_count() or 1} local processes")
    start = time.perf_counter()

    def on_done(done: int, total: int, job: sweep.Job, saved: dict[str, Any] | None,
                error: str | None) -> None:
        if args.quiet and error is None:
            return
        what = f"failed: {error}" if error else f"{job.key}.json, {saved_wall(saved)} s wall"
        print(f"[{done}/{total}] {job.label(grid.swept() or None)}: {what}", file=sys.stderr, flush=True)

    def saved_wall(saved: dict[str, Any] | None) -> object:
        return None if saved is None else saved["report"].get("wall_seconds")

    try:
        with sweep.open_executor(args.workers, args.scheduler) as executor:
            done = [j for j in jobs if (out / f"{j.key}.json").exists()]
            print(f"{prog} {args.scenario}: {len(jobs)} jobs, {len(done)} already done in {out} (skipped), "
                  f"{len(jobs) - len(done)} to run on {where}", file=sys.stderr, flush=True)
            result = sweep.run_sweep(grid, out, executor, on_done=on_done)
    except sweep.MissingDask as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the reports written so far are kept: run the same command again "
              "to resume", file=sys.stderr)
        return 130
    columns, rows = sweep.merge(grid, out)
    command = " ".join(["python -m simulations", *sys.argv[1:]]) if sys.argv[1:] else prog
    written = sweep.write_table(out, grid, columns, rows, command)
    if args.plots and rows:
        metrics = args.metrics or [m for m in sweep.PLOT_METRICS[args.scenario] if m in columns]
        unknown = [m for m in metrics if m not in columns]
        if unknown:
            print(f"{prog}: error: --metric {', '.join(unknown)}: not a column ({', '.join(columns)})",
                  file=sys.stderr)
            return 2
        seeds = len(grid.axes["seed"])
        title = f"{args.scenario}, {len(rows)} runs" + (
            f", mean of {seeds} seeds (bars: min to max)" if seeds > 1 else "")
        written += plot_sweep(rows, x=x, lines=lines, metrics=metrics, out=out, title=title)
    fixed = " ".join(f"{k.removeprefix('set.')}={v}" for k, v in grid.fixed().items())
    print(f"{args.scenario} sweep: {len(jobs)} jobs ({result.ran} run now, {result.skipped} skipped: "
          f"report already in {out}; {len(result.failed)} failed), {time.perf_counter() - start:.1f} s wall")
    print(f"fixed: {fixed}" if fixed else "fixed: nothing")
    print(format_table(rows, columns) if rows else "(no report)")
    print("wrote " + ", ".join(str(w) for w in written))
    return 1 if result.failed else 0


class _RichProgress(scenarios.Progress):
    """A rich progress bar: virtual seconds of the current phase, with wall time elapsed."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.1f}/{task.total:.0f} s virtual"),
            TimeElapsedColumn(),
            transient=False,
        )
        self._bar.start()
        self._task: Any = None

    def phase(self, label: str, total: float) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=self._bar.tasks[-1].total)
        self._task = self._bar.add_task(label, total=max(total, 1e-9))

    def update(self, virtual: float) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=virtual)

    def close(self) -> None:
        self._bar.stop()


class LineProgress(scenarios.Progress):
    """One plain line per finished run (a log, a CI job, a pipe: stderr is not a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._label: str | None = None
        self._total = 0.0
        self._virtual = 0.0
        self._wall0 = 0.0
        self._runs = 0

    def phase(self, label: str, total: float) -> None:
        self._finish()
        self._label, self._total, self._virtual = label, total, 0.0
        self._wall0 = time.perf_counter()

    def update(self, virtual: float) -> None:
        self._virtual = virtual

    def close(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._label is None:
            return
        self._runs += 1
        wall = time.perf_counter() - self._wall0
        print(f"[run {self._runs}] {self._label}: {self._virtual:.1f} s virtual (at most {self._total:g}), "
              f"{wall:.1f} s wall", file=self._stream, flush=True)
        self._label = None


def _progress(enabled: bool) -> scenarios.Progress:
    if not enabled:
        return scenarios.Progress()
    if not sys.stderr.isatty():
        return LineProgress(sys.stderr)
    try:
        return _RichProgress()
    except ImportError:
        return LineProgress(sys.stderr)


def _scenario_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    common = {"seed": args.seed, "crypto": args.crypto, "warm": args.warm,
              "overrides": dict(args.overrides)}
    cmd = args.command
    if cmd == "convergence":
        return {**common, "nodes": args.nodes, "losses": args.loss, "eager": args.eager,
                "registrations": args.registrations, "gap": args.gap, "limit": args.limit}
    if cmd == "detection":
        return {**common, "nodes": args.nodes, "crashes": args.crashes, "gap": args.gap,
                "limit": args.limit, "loss": args.loss}
    if cmd == "false-positives":
        return {**common, "nodes": args.nodes, "seconds": args.seconds, "loss": args.loss,
                "slow_fraction": args.slow, "pause_every": args.pause_every,
                "variants": [v for v in args.variants.split(",") if v]}
    if cmd == "partition":
        return {**common, "nodes": args.nodes, "split_seconds": args.split_seconds,
                "registrations": args.registrations, "changes": args.changes, "limit": args.limit,
                "loss": args.loss}
    if cmd == "churn":
        return {**common, "nodes": args.nodes, "seconds": args.seconds, "event_every": args.event_every,
                "ttl": args.ttl, "renew_every": args.renew_every, "abandon": args.abandon, "loss": args.loss}
    assert cmd == "bandwidth"
    return {**common, "nodes": args.nodes, "rate": args.rate, "idle_window": args.idle_window,
            "load_window": args.load_window, "renew_every": args.renew_every}


def run_scenario(args: argparse.Namespace) -> int:
    """Run the scenario named by ``args.command``; write its report and plots."""
    from pathlib import Path

    from .plots import MissingMatplotlib, plot, require_matplotlib

    prog = f"python -m simulations {args.command}"
    if args.plots:
        try:
            require_matplotlib()
        except MissingMatplotlib as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = _progress(args.progress)
    try:
        report = scenarios.SCENARIOS[args.command](**_scenario_kwargs(args), progress=progress)
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    report["command"] = " ".join(["python -m simulations", *sys.argv[1:]]) if sys.argv[1:] else prog
    path = out / f"{args.command.replace('-', '_')}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    written = [path]
    if args.plots:
        written += plot(report, out)
    print(scenario_summary(report))
    print("wrote " + ", ".join(str(w) for w in written))
    return 0


def plot_reports(args: argparse.Namespace) -> int:
    """Merge the saved reports named by ``args.reports`` and draw their plots."""
    from pathlib import Path

    from .plots import MissingMatplotlib, merge_reports, plot

    prog = "python -m simulations plot"
    try:
        reports = [json.loads(Path(name).read_text()) for name in args.reports]
        merged = merge_reports(reports)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        written = plot(merged, out)
    except KeyError as exc:
        print(f"{prog}: error: not a scenario report (no {exc})", file=sys.stderr)
        return 2
    except (OSError, ValueError, MissingMatplotlib) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    for w in written:
        print(w)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "plot":
        return plot_reports(args)
    if args.command == "sweep":
        return run_sweep_command(args)
    if args.command != "run":
        return run_scenario(args)
    params = RunParams(
        nodes=args.nodes,
        seconds=args.seconds,
        seed=args.seed,
        loss=args.loss,
        duplicate=args.duplicate,
        latency_ms=args.latency_ms,
        crash=args.crash,
        registrations=args.registrations,
        profile=args.profile,
        eager_push=args.eager_push,
        crypto=args.crypto,
        identities=args.identities,
        idle_window=args.idle_window,
        push_pull_interval=args.push_pull_interval,
        warm=args.warm,
        overrides=dict(args.overrides),
    )
    try:
        report = run(params)
    except ValueError as exc:
        print(f"python -m simulations run: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    else:
        print(summary(report))
    return 0


def summary(report: dict[str, Any]) -> str:
    """A few readable lines from a report."""
    p = report["params"]
    spread = report["registration_spread_s"]
    det = report["detection_s"]
    idle = report["idle"]
    lines = [
        f"{p['nodes']} members, {p['seconds']:g} s virtual, seed {p['seed']}, profile {p['profile']}, "
        f"loss {p['loss']:g}, latency {p['latency_ms'][0]:g}-{p['latency_ms'][1]:g} ms, "
        f"{'AES-GCM' if p['crypto'] else 'plaintext (--no-crypto)'}, "
        f"{'warm start' if p['warm'] else 'real joins'}",
        f"join converged:     {report['join_converged_s']} s",
        f"registration spread ({spread['complete']}/{spread['n']}): p50 {spread['p50']} s, "
        f"p99 {spread['p99']} s, max {spread['max']} s",
        f"detection ({det['all']['complete']}/{det['all']['n']} complete): "
        f"first p50 {det['first']['p50']} s, all p50 {det['all']['p50']} s, all max {det['all']['max']} s",
        f"false deaths:       {report['false_dead']} unrefuted, {report['false_dead_events']} in all",
        f"views equal:        {report['views_equal']} (visible: {report['visible_views_equal']})",
        f"traffic:            {report['messages_per_node_per_s']} msg/node/s, "
        f"{report['bytes_per_node_per_s']} B/node/s",
        f"idle {idle['window_s']}{'' if idle['quiet'] else ' (not quiet)'}: "
        f"{idle['messages_per_node_per_s']} msg/node/s, {idle['bytes_per_node_per_s']} B/node/s",
        f"trace {report['trace_hash'][:16]}, {report['wall_seconds']} s wall, "
        f"peak RSS {report['max_rss_mb']} MiB",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
