"""What the scenario commands print and draw: summary tables, progress lines, readable plots."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulations import plots, scenarios
from simulations.__main__ import main
from simulations.metrics import format_table, key_figures

SMALL = {
    "convergence": ["--nodes", "6", "--loss", "0,0.1", "--registrations", "1", "--limit", "5"],
    "detection": ["--nodes", "8", "--crashes", "1", "--limit", "30"],
    "false-positives": ["--nodes", "10", "--seconds", "5", "--variants", "lifeguard,no-lifeguard"],
    "partition": ["--nodes", "6", "--split-seconds", "5", "--limit", "30"],
    "churn": ["--nodes", "6", "--seconds", "10"],
    "bandwidth": ["--nodes", "6", "--idle-window", "2", "--load-window", "1"],
}


@pytest.mark.parametrize("scenario", list(SMALL))
def test_every_scenario_prints_its_key_figures(scenario: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main([scenario, *SMALL[scenario], "--no-crypto", "--no-plots", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    rows = key_figures(report)
    assert rows
    out = captured.out
    assert out.startswith(f"{scenario} (seed 0, plaintext, warm start)")
    for name in rows[0]:
        assert name in out  # every key figure is named on screen
    assert "wrote " in out
    assert len(out.splitlines()) <= 25  # one screen
    # stderr is not a terminal here: a plain line per run, no progress bar.
    lines = captured.err.splitlines()
    assert lines
    assert all(line.startswith("[run ") and "s virtual" in line for line in lines)
    assert len(lines) == max(1, len(rows))


def test_no_progress_means_silence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detection", *SMALL["detection"], "--no-crypto", "--no-plots", "--no-progress",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    assert capsys.readouterr().err == ""


def test_table_marks_unfinished_figures() -> None:
    text = format_table([{"nodes": 10, "p100_s": None, "ok": True}, {"nodes": 10_000, "p100_s": 0.12345678,
                                                                     "ok": False}])  # fmt: skip
    head, _rule, first, second = text.splitlines()
    assert head.split() == ["nodes", "p100_s", "ok"]
    assert first.split() == ["10", "-", "yes"]
    assert second.split() == ["10,000", "0.1235", "no"]


# ---------------------------------------------------------------- plots


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The figures the plot functions draw, laid out but kept open for inspection."""
    plt = plots.require_matplotlib()
    kept: list[Any] = []

    def save(plt_: Any, fig: Any, path: Path) -> Path:
        fig.tight_layout()
        fig.canvas.draw()
        kept.append(fig)
        return path

    monkeypatch.setattr(plots, "_save", save)
    yield kept
    for fig in kept:
        plt.close(fig)


def _check_readable(fig: Any) -> None:
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts = [fig._suptitle] if fig._suptitle is not None else []
    for ax in fig.axes:
        texts.append(ax.title)
        legend = ax.get_legend()
        if legend is not None:
            for handle in legend.legend_handles:
                assert handle is not None
            labelled = [a for a in [*ax.lines, *ax.containers, *ax.collections]
                        if not str(a.get_label()).startswith("_")]
            for artist in labelled:
                if hasattr(artist, "get_xdata"):
                    assert len(artist.get_xdata()) > 0, artist.get_label()  # no entry without a line
        for line in ax.lines:
            # No one-dot chart: a single point is a bar (or at least a visible, labelled marker).
            if len(line.get_xdata()) == 1:
                assert line.get_marker() not in (None, "None", ""), line.get_label()
    for t in texts:
        if t.get_text():
            ext = t.get_window_extent(renderer)
            assert ext.x0 >= box.x0 - 1, t.get_text()  # not cut off
            assert ext.x1 <= box.x1 + 1, t.get_text()


def test_convergence_at_one_size_draws_labelled_bars(figures: list[Any], tmp_path: Path) -> None:
    report = scenarios.convergence(nodes=(10,), losses=(0.0,), registrations=1, limit=5.0, crypto=False)
    plots.plot(report, tmp_path)
    chart, _curve = figures
    (ax,) = chart.axes
    assert not ax.lines  # bars, not one dot per series
    assert len(ax.patches) == 7  # 99.99 %, 100 %, ideal for each eager setting, and Serf's model
    assert all(t.get_text() for t in ax.texts)  # each bar says its value
    for fig in figures:
        _check_readable(fig)


def test_convergence_over_sizes_keeps_lines(figures: list[Any], tmp_path: Path) -> None:
    report = scenarios.convergence(nodes=(6, 12), losses=(0.0,), registrations=1, limit=5.0, crypto=False)
    plots.plot(report, tmp_path)
    chart = figures[0]
    assert chart.axes[0].lines
    for fig in figures:
        _check_readable(fig)


def test_bandwidth_title_says_whether_push_pull_is_in(figures: list[Any], tmp_path: Path) -> None:
    # Default windows: each is one push/pull interval (30 s at 6 members): every member's is in.
    full = scenarios.bandwidth(nodes=(6,), rate=2.0, crypto=False)
    (row,) = full["rows"]
    assert row["idle"]["push_pull_checks"] == row["load"]["push_pull_checks"] == 6
    # Shortened windows fall between two rounds of push/pulls: none is in them.
    short = scenarios.bandwidth(nodes=(6,), rate=2.0, crypto=False, idle_window=4.0, load_window=2.0)
    (row,) = short["rows"]
    assert row["idle"]["push_pull_checks"] == row["load"]["push_pull_checks"] == 0
    assert row["idle"]["stream_messages"] == 0
    plots.plot(full, tmp_path)
    plots.plot(short, tmp_path)
    titles = [fig._suptitle.get_text().replace("\n", " ") for fig in figures]
    assert "idle: every member's push/pull included" in titles[0]
    assert "load: every member's push/pull included" in titles[0]
    assert "idle: no push/pull in the window" in titles[1]
    assert "included" not in titles[1]
    for fig in figures:
        assert not fig.axes[0].lines  # one size: bars
        _check_readable(fig)
    # Reports saved before the count was kept are judged by the window's length.
    for r in short["rows"]:
        del r["idle"]["push_pull_checks"]
    assert "partly or not included" in plots.push_pull_note(short["rows"], "idle")


def test_long_titles_wrap(figures: list[Any], tmp_path: Path) -> None:
    report = scenarios.churn(nodes=6, seconds=6.0, event_every=1.5, crypto=False)
    plots.plot(report, tmp_path)
    for fig in figures:
        _check_readable(fig)
