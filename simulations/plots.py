"""PNG plots of the scenario reports (matplotlib, Agg backend).

matplotlib is imported only when a plot is drawn, so the simulator and its
reports work without the ``sim`` extra; :func:`require_matplotlib` raises a
clear error when plots are asked for and it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["MissingMatplotlib", "merge_reports", "plot", "require_matplotlib"]


class MissingMatplotlib(RuntimeError):
    """Plots were requested but matplotlib is not installed."""


def require_matplotlib() -> Any:
    """Import matplotlib with the Agg backend and return ``matplotlib.pyplot``."""
    try:
        import matplotlib
    except ImportError:
        raise MissingMatplotlib(
            "plots need matplotlib: pip install 'gossipreg[sim]' (or pass --no-plots)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(report: dict[str, Any], out: Path) -> list[Path]:
    """Draw the plots of ``report`` into ``out``; returns the files written."""
    plt = require_matplotlib()
    fn = _PLOTS.get(report["scenario"])
    return [] if fn is None else fn(plt, report, Path(out))


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from several of the same scenario, to plot them together.

    ``convergence`` reports are merged run by run (their sizes and loss rates
    united), ``bandwidth`` reports row by row; any other scenario takes
    exactly one report. The merged ``params`` are the first report's, with the
    united lists, plus ``merged_from``: every report's own params.

    Raises:
        ValueError: no report, reports of different scenarios, or several
            reports of a scenario that cannot be merged.
    """
    if not reports:
        raise ValueError("no report to plot")
    scenario = reports[0].get("scenario")
    if any(r.get("scenario") != scenario for r in reports):
        raise ValueError("reports of different scenarios cannot be merged")
    if len(reports) == 1:
        return reports[0]
    params = {**reports[0]["params"], "merged_from": [r["params"] for r in reports]}
    if scenario == "convergence":
        runs = [run for r in reports for run in r["runs"]]
        params["nodes"] = sorted({run["nodes"] for run in runs})
        params["losses"] = sorted({run["loss"] for run in runs})
        params["eager_push"] = sorted({run["eager_push"] for run in runs}, reverse=True)
        return {**reports[0], "params": params, "runs": runs}
    if scenario == "bandwidth":
        rows = sorted((row for r in reports for row in r["rows"]), key=lambda row: row["nodes"])
        params["nodes"] = [row["nodes"] for row in rows]
        return {**reports[0], "params": params, "rows": rows}
    raise ValueError(f"{scenario} reports cannot be merged; plot them one at a time")


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _convergence(plt: Any, report: dict[str, Any], out: Path) -> list[Path]:
    from .scenarios import serf_curve

    p = report["params"]
    runs = report["runs"]
    losses = p["losses"]
    fig, axes = plt.subplots(1, len(losses), figsize=(5 * len(losses), 4.2), squeeze=False)
    for ax, loss in zip(axes[0], losses, strict=True):
        rows = [r for r in runs if r["loss"] == loss]
        for push, color in ((True, "tab:blue"), (False, "tab:orange")):
            mine = sorted((r for r in rows if r["eager_push"] == push), key=lambda r: r["nodes"])
            if not mine:
                continue
            ns = [r["nodes"] for r in mine]
            label = "eager push" if push else "no eager push"
            for q, style in (("p9999", "-o"), ("p100", ":x")):
                ys = [r["max"][q] for r in mine]
                pts = [(n, y) for n, y in zip(ns, ys, strict=True) if y is not None]
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, color=color,
                            label=f"{label}, {'99.99 %' if q == 'p9999' else '100 %'} (measured, max)")
            ax.plot(ns, [r["ideal_s"] for r in mine], "--", color=color, alpha=0.6,
                    label=f"ideal ceil(log4 N) hops, {label}")
        ns = sorted({r["nodes"] for r in rows})
        serf = {r["nodes"]: r["serf_model_s"]["p9999"] for r in rows}
        ax.plot(ns, [serf[n] for n in ns], "-", color="tab:green", lw=2, label="Serf model, 99.99 %")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("members N")
        ax.set_ylabel("seconds after the register call")
        ax.set_title(f"loss {loss:.0%}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Time until 99.99 % / 100 % of members hold a new registration (LAN, fanout 3, 0.2 s)")
    files = [_save(plt, fig, out / "convergence.png")]
    # The spread curve of the largest size run at each loss.
    fig, axes = plt.subplots(1, len(losses), figsize=(5 * len(losses), 4.0), squeeze=False)
    for ax, loss in zip(axes[0], losses, strict=True):
        nmax = max(r["nodes"] for r in runs if r["loss"] == loss)
        horizon = 0.0
        for r in runs:
            if r["nodes"] != nmax or r["loss"] != loss:
                continue
            color = "tab:blue" if r["eager_push"] else "tab:orange"
            for i, reg in enumerate(r["registrations"]):
                xs = [x for x in reg["curve"] if x is not None]
                if not xs:
                    continue
                ys = [min(1.0, (k * max(1, reg["holders"] // 100) + 1) / nmax) for k in range(len(xs))]
                horizon = max(horizon, xs[-1])
                ax.plot(xs, ys, color=color, alpha=0.7,
                        label=("eager push" if r["eager_push"] else "no eager push") if i == 0 else None)
        horizon = max(horizon, 6.0)
        curve = serf_curve(nmax, loss, horizon)
        ax.plot([t for t, _ in curve], [f for _, f in curve], color="tab:green", lw=2, label="Serf model")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlabel("seconds after the register call")
        ax.set_ylabel("fraction of members holding it")
        ax.set_title(f"N = {nmax}, loss {loss:.0%}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    files.append(_save(plt, fig, out / "convergence_curve.png"))
    return files


def _cdf(ax: Any, values: list[float], label: str, color: str) -> None:
    xs = sorted(values)
    if xs:
        ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=label, color=color)


def _detection(plt: Any, report: dict[str, Any], out: Path) -> list[Path]:
    crashes = report["crashes"]
    exp = report["expected"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    _cdf(axes[0], [c["first"] for c in crashes if c["first"] is not None], "measured", "tab:blue")
    axes[0].axvline(exp["swim_first_s"], color="tab:green", ls="--",
                    label=f"SWIM e/(e-1) periods = {exp['swim_first_s']:.2f} s")
    axes[0].set_title("crash to first suspicion")
    _cdf(axes[1], [c["all"] for c in crashes if c["all"] is not None], "measured", "tab:blue")
    lo, hi = exp["all_dead_range_s"]
    axes[1].axvline(lo, color="tab:green", ls="--", label=f"SWIM first + min suspicion = {lo:.1f} s")
    axes[1].axvline(hi, color="tab:red", ls="--", label=f"SWIM first + max suspicion = {hi:.1f} s")
    axes[1].set_title("crash to declared dead by every member")
    for ax in axes:
        ax.set_xlabel("seconds after the crash")
        ax.set_ylabel("fraction of crashes (CDF)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Failure detection, N = {report['params']['nodes']}, {len(crashes)} crashes (LAN)")
    return [_save(plt, fig, out / "detection.png")]


def _false_positives(plt: Any, report: dict[str, Any], out: Path) -> list[Path]:
    vs = report["variants"]
    names = [v["variant"] for v in vs]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = range(len(vs))
    axes[0].bar([i - 0.2 for i in x], [v["false_suspicion_episodes_about_healthy"] for v in vs], 0.4,
                label="about healthy members")
    axes[0].bar([i + 0.2 for i in x], [v["false_suspicion_episodes"] for v in vs], 0.4, label="all")
    axes[0].set_title("false suspicion episodes")
    axes[1].bar([i - 0.2 for i in x], [v["false_death_episodes_about_healthy"] for v in vs], 0.4,
                label="about healthy members")
    axes[1].bar([i + 0.2 for i in x], [v["false_death_episodes"] for v in vs], 0.4, label="all")
    axes[1].set_title("false death episodes")
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=15, fontsize=8)
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    p = report["params"]
    fig.suptitle(f"Lifeguard experiment: N = {p['nodes']}, {p['seconds']:g} s, loss {p['loss']:.0%}, "
                 f"{p['slow_fraction']:.0%} slow")
    return [_save(plt, fig, out / "false_positives.png")]


def _churn(plt: Any, report: dict[str, Any], out: Path) -> list[Path]:
    s = report["samples"]
    fig, ax = plt.subplots(figsize=(9, 4))
    t = [x["t"] for x in s]
    ax.plot(t, [x["membership"] for x in s], label="membership view differs")
    ax.plot(t, [x["catalog"] for x in s], label="catalog view differs")
    ax.plot(t, [x["either"] for x in s], label="either", color="black", lw=1)
    ax.set_xlabel("virtual seconds")
    ax.set_ylabel("fraction of live members")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    p = report["params"]
    ax.set_title(f"Churn: N ~ {p['nodes']}, one membership event and one registration every "
                 f"{p['event_every']:g} s")
    return [_save(plt, fig, out / "churn.png")]


def _bandwidth(plt: Any, report: dict[str, Any], out: Path) -> list[Path]:
    rows = report["rows"]
    ns = [r["nodes"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("idle", "idle"), ("load", f"{report['params']['rate']:g} registrations/s")):
        axes[0].plot(ns, [r[key]["messages_per_member_per_s"] for r in rows], "-o", label=label)
        axes[1].plot(ns, [r[key]["bytes_per_member_per_s"] for r in rows], "-o", label=label)
    axes[1].plot(ns, [r["idle"]["datagram_bytes_per_member_per_s"] for r in rows], ":",
                 label="idle, datagrams only")
    axes[0].set_ylabel("messages / member / s")
    axes[1].set_ylabel("bytes / member / s")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("members N")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Traffic sent per member (LAN; push/pull included)")
    return [_save(plt, fig, out / "bandwidth.png")]


def _partition(plt: Any, report: dict[str, Any], out: Path) -> list[Path]:
    return []


_PLOTS = {
    "convergence": _convergence,
    "detection": _detection,
    "false-positives": _false_positives,
    "churn": _churn,
    "bandwidth": _bandwidth,
    "partition": _partition,
}

