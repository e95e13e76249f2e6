"""PNG plots of the scenario reports (matplotlib, Agg backend).

matplotlib is imported only when a plot is drawn, so the simulator and its
reports work without the ``sim`` extra; :func:`require_matplotlib` raises a
clear error when plots are asked for and it is missing.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["MissingMatplotlib", "merge_reports", "plot", "plot_sweep", "require_matplotlib"]


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


def _size_ticks(ax: Any, ns: Sequence[int]) -> None:
    """Plain tick labels at the cluster sizes run (not 2x10^1 on a log axis)."""
    ax.set_xticks(sorted(set(ns)))
    ax.set_xticklabels([f"{n:,}" for n in sorted(set(ns))])
    ax.xaxis.set_minor_formatter("")


def _wrap(text: str, inches: float, fontsize: float = 12.0) -> str:
    """``text`` wrapped to lines that fit ``inches`` at ``fontsize`` points (so no title is cut off)."""
    chars = max(16, int(inches * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.wrap(text, chars)) or text


def _suptitle(fig: Any, text: str) -> None:
    fig.suptitle(_wrap(text, fig.get_figwidth() - 0.3))


def _title(ax: Any, text: str) -> None:
    fig = ax.get_figure()
    width = fig.get_figwidth() * ax.get_position().width
    ax.set_title(_wrap(text, width, 11.0), fontsize=11)


def _legend(ax: Any, **kwargs: Any) -> None:
    """A legend only if something labelled was drawn (no empty legend box, no warning)."""
    handles, _labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(**kwargs)


def _points(xs: Sequence[Any], ys: Sequence[Any]) -> tuple[list[Any], list[float]]:
    """The pairs whose y is a finished figure (not None, not NaN)."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True)
           if isinstance(y, int | float) and not isinstance(y, bool) and math.isfinite(y)]
    return [x for x, _ in pts], [float(y) for _, y in pts]


def _line(ax: Any, xs: Sequence[Any], ys: Sequence[Any], *args: Any, **kwargs: Any) -> None:
    """Plot the finished points only; nothing at all (and no legend entry) if there is none."""
    px, py = _points(xs, ys)
    if px:
        ax.plot(px, py, *args, **kwargs)


def _bars(ax: Any, labels: Sequence[str], values: Sequence[float | None], colors: Sequence[str],
          unit: str) -> None:
    """Labelled bars: one figure each, its value written on it (for a single cluster size)."""
    heights = [0.0 if v is None else v for v in values]
    bars = ax.bar(range(len(labels)), heights, color=colors)
    ax.bar_label(bars, labels=["not reached" if v is None else f"{v:.3g}{unit}" for v in values],
                 fontsize=8, padding=2)
    ax.set_xticks(list(range(len(labels))))
    ax.set_xticklabels(labels, fontsize=8)
    done = [v for v in values if v is not None and v > 0]
    if done and max(done) / min(done) > 30:
        ax.set_yscale("log")
    ax.margins(y=0.15)


def _convergence(plt: Any, report: dict[str, Any], out: Path) -> list[Path]:
    p = report["params"]
    runs = report["runs"]
    losses = p["losses"]
    if len({r["nodes"] for r in runs}) == 1:
        files = [_convergence_one_size(plt, report, out)]
        return files + _convergence_curve(plt, report, out)
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
                _line(ax, ns, [r["max"][q] for r in mine], style, color=color,
                      label=f"{label}, {'99.99 %' if q == 'p9999' else '100 %'} (measured, max)")
            _line(ax, ns, [r["ideal_s"] for r in mine], "--", color=color, alpha=0.6,
                  label=f"ideal ceil(log4 N) hops, {label}")
        ns = sorted({r["nodes"] for r in rows})
        serf = {r["nodes"]: r["serf_model_s"]["p9999"] for r in rows}
        _line(ax, ns, [serf[n] for n in ns], "-", color="tab:green", lw=2, label="Serf model, 99.99 %")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _size_ticks(ax, ns)
        ax.set_xlabel("members N")
        ax.set_ylabel("seconds after the register call")
        _title(ax, f"loss {loss:.0%}")
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax, fontsize=7, loc="upper left")
    _suptitle(fig, f"Time until 99.99 % / 100 % of members hold a new registration ({_lan(p)})")
    files = [_save(plt, fig, out / "convergence.png")]
    return files + _convergence_curve(plt, report, out)


def _lan(p: dict[str, Any]) -> str:
    fanout, interval = p.get("gossip_nodes", 3), p.get("gossip_interval", 0.2)
    return f"LAN, fanout {fanout}, {interval:g} s"


def _convergence_one_size(plt: Any, report: dict[str, Any], out: Path) -> Path:
    """One cluster size: a labelled bar per figure (a line through one point says nothing)."""
    p = report["params"]
    runs = report["runs"]
    losses = p["losses"]
    n = runs[0]["nodes"]
    fig, axes = plt.subplots(1, len(losses), figsize=(max(6.0, 5 * len(losses)), 4.4), squeeze=False)
    for ax, loss in zip(axes[0], losses, strict=True):
        rows = [r for r in runs if r["loss"] == loss]
        labels: list[str] = []
        values: list[float | None] = []
        colors: list[str] = []
        for push, color in ((True, "tab:blue"), (False, "tab:orange")):
            for r in (r for r in rows if r["eager_push"] == push):
                tag = "eager" if push else "no eager"
                for q, name in (("p9999", "99.99 %"), ("p100", "100 %")):
                    labels.append(f"{tag}\n{name}")
                    values.append(r["max"][q])
                    colors.append(color)
                labels.append(f"{tag}\nideal")
                values.append(r["ideal_s"])
                colors.append("lightgray")
        labels.append("Serf model\n99.99 %")
        values.append(rows[0]["serf_model_s"]["p9999"] if rows else None)
        colors.append("tab:green")
        _bars(ax, labels, values, colors, " s")
        ax.set_ylabel("seconds after the register call")
        _title(ax, f"N = {n}, loss {loss:.0%}")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    _suptitle(fig, f"Time until 99.99 % / 100 % of {n} members hold a new registration "
                   f"(slowest of the run; {_lan(p)})")
    return _save(plt, fig, out / "convergence.png")


def _convergence_curve(plt: Any, report: dict[str, Any], out: Path) -> list[Path]:
    """The spread curve of the largest size run at each loss."""
    from .scenarios import serf_curve

    runs = report["runs"]
    losses = report["params"]["losses"]
    fig, axes = plt.subplots(1, len(losses), figsize=(5 * len(losses), 4.0), squeeze=False)
    for ax, loss in zip(axes[0], losses, strict=True):
        nmax = max(r["nodes"] for r in runs if r["loss"] == loss)
        horizon = 0.0
        for r in runs:
            if r["nodes"] != nmax or r["loss"] != loss:
                continue
            color = "tab:blue" if r["eager_push"] else "tab:orange"
            labelled = False
            for reg in r["registrations"]:
                xs = [x for x in reg["curve"] if x is not None]
                if not xs:
                    continue
                ys = [min(1.0, (k * max(1, reg["holders"] // 100) + 1) / nmax) for k in range(len(xs))]
                horizon = max(horizon, xs[-1])
                ax.plot(xs, ys, color=color, alpha=0.7,
                        label=None if labelled else ("eager push" if r["eager_push"] else "no eager push"))
                labelled = True
        horizon = max(horizon, 6.0)
        curve = serf_curve(nmax, loss, horizon)
        ax.plot([t for t, _ in curve], [f for _, f in curve], color="tab:green", lw=2, label="Serf model")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlabel("seconds after the register call")
        ax.set_ylabel("fraction of members holding it")
        _title(ax, f"N = {nmax}, loss {loss:.0%}")
        ax.grid(True, alpha=0.3)
        _legend(ax, fontsize=8)
    return [_save(plt, fig, out / "convergence_curve.png")]


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
    _title(axes[0], "crash to first suspicion")
    _cdf(axes[1], [c["all"] for c in crashes if c["all"] is not None], "measured", "tab:blue")
    lo, hi = exp["all_dead_range_s"]
    axes[1].axvline(lo, color="tab:green", ls="--", label=f"SWIM first + min suspicion = {lo:.1f} s")
    axes[1].axvline(hi, color="tab:red", ls="--", label=f"SWIM first + max suspicion = {hi:.1f} s")
    _title(axes[1], "crash to declared dead by every member")
    for ax in axes:
        ax.set_xlabel("seconds after the crash")
        ax.set_ylabel("fraction of crashes (CDF)")
        ax.grid(True, alpha=0.3)
        _legend(ax, fontsize=8)
    _suptitle(fig, f"Failure detection, N = {report['params']['nodes']}, {len(crashes)} crashes (LAN)")
    return [_save(plt, fig, out / "detection.png")]


def _false_positives(plt: Any, report: dict[str, Any], out: Path) -> list[Path]:
    vs = report["variants"]
    names = [v["variant"] for v in vs]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = range(len(vs))
    axes[0].bar([i - 0.2 for i in x], [v["false_suspicion_episodes_about_healthy"] for v in vs], 0.4,
                label="about healthy members")
    axes[0].bar([i + 0.2 for i in x], [v["false_suspicion_episodes"] for v in vs], 0.4, label="all")
    _title(axes[0], "false suspicion episodes")
    axes[1].bar([i - 0.2 for i in x], [v["false_death_episodes_about_healthy"] for v in vs], 0.4,
                label="about healthy members")
    axes[1].bar([i + 0.2 for i in x], [v["false_death_episodes"] for v in vs], 0.4, label="all")
    _title(axes[1], "false death episodes")
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=15, fontsize=8)
        _legend(ax, fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    p = report["params"]
    _suptitle(fig, f"Lifeguard experiment: N = {p['nodes']}, {p['seconds']:g} s, loss {p['loss']:.0%}, "
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
    _legend(ax, fontsize=8)
    p = report["params"]
    _title(ax, f"Churn: N ~ {p['nodes']}, one membership event and one registration every "
               f"{p['event_every']:g} s")
    return [_save(plt, fig, out / "churn.png")]


def push_pull_note(rows: Sequence[dict[str, Any]], window: str) -> str:
    """What share of the members' periodic push/pulls the ``window`` ("idle" or "load") holds.

    Rows record ``push_pull_checks`` (exchanges started in the window) since they are counted;
    older reports are judged by the window's length against ``push_pull_interval_s``.
    """
    shares = []
    for r in rows:
        count = r[window].get("push_pull_checks")
        if count is None:
            lo, hi = r[f"{window}_window_s"]
            shares.append(1.0 if hi - lo >= r["push_pull_interval_s"] else math.nan)
        else:
            shares.append(count / r["nodes"])
    if any(math.isnan(x) for x in shares):
        return f"{window} window shorter than the push/pull interval: push/pull partly or not included"
    if all(x >= 1.0 - 1e-9 for x in shares):
        return f"{window}: every member's push/pull included"
    if all(x == 0 for x in shares):
        return f"{window}: no push/pull in the window"
    return (f"{window}: push/pulls of {min(shares):.0%}-{max(shares):.0%} of the members in the window "
            "(shorter than the push/pull interval)")


def _bandwidth(plt: Any, report: dict[str, Any], out: Path) -> list[Path]:
    rows = report["rows"]
    ns = [r["nodes"] for r in rows]
    load_label = f"{report['params']['rate']:g} registrations/s"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    if len(rows) == 1:
        r = rows[0]
        _bars(axes[0], ["idle", load_label],
              [r["idle"]["messages_per_member_per_s"], r["load"]["messages_per_member_per_s"]],
              ["tab:blue", "tab:orange"], "")
        _bars(axes[1], ["idle", "idle,\ndatagrams only", load_label],
              [r["idle"]["bytes_per_member_per_s"], r["idle"]["datagram_bytes_per_member_per_s"],
               r["load"]["bytes_per_member_per_s"]], ["tab:blue", "lightsteelblue", "tab:orange"], "")
        for ax in axes:
            _title(ax, f"N = {r['nodes']}")
            ax.grid(True, axis="y", which="both", alpha=0.3)
    else:
        for key, label in (("idle", "idle"), ("load", load_label)):
            _line(axes[0], ns, [r[key]["messages_per_member_per_s"] for r in rows], "-o", label=label)
            _line(axes[1], ns, [r[key]["bytes_per_member_per_s"] for r in rows], "-o", label=label)
        _line(axes[1], ns, [r["idle"]["datagram_bytes_per_member_per_s"] for r in rows], ":",
              label="idle, datagrams only")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_yscale("log")
            _size_ticks(ax, ns)
            ax.set_xlabel("members N")
            ax.grid(True, which="both", alpha=0.3)
            _legend(ax, fontsize=8)
    axes[0].set_ylabel("messages / member / s")
    axes[1].set_ylabel("bytes / member / s")
    # The push/pull's share is measured, not assumed: a window shorter than the push/pull
    # interval holds only some members' exchanges (or none).
    _suptitle(fig, "Traffic sent per member, datagrams + stream messages (LAN; "
                   f"{push_pull_note(rows, 'idle')}; {push_pull_note(rows, 'load')})")
    return [_save(plt, fig, out / "bandwidth.png")]


def _label(params: dict[str, Any]) -> str:
    return ", ".join(f"{k.removeprefix('set.')}={_fmt(v)}" for k, v in params.items()) or "all runs"


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def plot_sweep(rows: Sequence[dict[str, Any]], *, x: str | None, lines: Sequence[str],
               metrics: Sequence[str], out: Path, title: str) -> list[Path]:
    """The merged plots of a sweep: one PNG per metric, ``sweep_<metric>.png``.

    Each plot shows the metric against the swept parameter ``x``, one line per
    combination of the ``lines`` parameters; several seeds of one point are
    averaged, their minimum and maximum drawn as an error bar. With no swept
    parameter (``x`` None or one value) each combination is a labelled bar.
    Unfinished figures (None) are left out; a line with none is not drawn.
    """
    plt = require_matplotlib()
    out = Path(out)
    groups: dict[tuple[Any, ...], dict[Any, list[float]]] = {}
    for row in rows:
        key = tuple(row.get(name) for name in lines)
        groups.setdefault(key, {})
    xs = sorted({row.get(x) for row in rows}, key=_sort_key) if x else [None]
    files = []
    for metric in metrics:
        fig, ax = plt.subplots(figsize=(7.5, 4.6))
        series: list[tuple[str, list[Any], list[float], list[float], list[float]]] = []
        for key in sorted(groups, key=lambda k: tuple(_sort_key(v) for v in k)):
            label = _label(dict(zip(lines, key, strict=True)))
            px, mean, lo, hi = [], [], [], []
            for xv in xs:
                vals = [float(row[metric]) for row in rows
                        if tuple(row.get(n) for n in lines) == key and (x is None or row.get(x) == xv)
                        and isinstance(row.get(metric), int | float) and not isinstance(row.get(metric), bool)
                        and math.isfinite(row[metric])]
                if vals:
                    px.append(xv)
                    m = sum(vals) / len(vals)
                    mean.append(m)
                    lo.append(m - min(vals))
                    hi.append(max(vals) - m)
            series.append((label, px, mean, lo, hi))
        if len(xs) == 1:
            _bars(ax, [textwrap.fill(label, 22) for label, *_ in series],
                  [m[0] if m else None for _, _, m, _, _ in series],
                  [f"C{i % 10}" for i in range(len(series))], "")
            if x is not None:
                ax.set_xlabel(f"{x.removeprefix('set.')} = {_fmt(xs[0])}")
        else:
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs)
            for i, (label, px, mean, lo, hi) in enumerate(series):
                if not px:
                    continue
                pos = px if numeric else [xs.index(v) for v in px]
                ax.errorbar(pos, mean, yerr=[lo, hi] if any(lo) or any(hi) else None, fmt="-o",
                            color=f"C{i % 10}", capsize=3, label=label)
            assert x is not None
            if numeric:
                finite = [float(v) for v in xs if isinstance(v, int | float)]
                if min(finite) > 0 and max(finite) / min(finite) >= 20:
                    ax.set_xscale("log")
            else:
                ax.set_xticks(list(range(len(xs))))
                ax.set_xticklabels([_fmt(v) for v in xs])
            ax.set_xlabel(x.removeprefix("set."))
            _legend(ax, fontsize=8)
        ax.set_ylabel(metric)
        ax.grid(True, which="both", alpha=0.3)
        _title(ax, f"{title}: {metric}")
        safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in metric)
        files.append(_save(plt, fig, out / f"sweep_{safe}.png"))
    return files


def _sort_key(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, v)
    if isinstance(v, int | float):
        return (2, v)
    return (3, str(v))


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

