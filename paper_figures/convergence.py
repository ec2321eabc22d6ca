"""Figure 6: sample quality against training step, from each cell's ``convergence.csv``.

A cell's ``runs/<method>-s<seed>/convergence.csv`` (columns step, method, seed, nfe, metric,
value) scores the model at a few points of training. One row of panels per dataset, on its
primary metric (``common.PRIMARY``); one panel per ``Method.family`` present (an unknown
method name goes to "other"), panels of a row sharing their y axis. Each method is one line: the
mean over seeds at each step, at the NFE it is judged by (NFE 1; the fm teacher, a velocity, at
its largest; a method that cannot sample there at its smallest, the legend then says
"<method> (NFE k)"), with the spread over seeds shaded from
mean - std to mean + std. Series have ``gid`` = method name, panels "<dataset>/<family>".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from benchmarks.report.convergence import probe_nfe
from paper_figures import style
from paper_figures.common import (
    OTHER,
    Made,
    Skip,
    family,
    panels,
    primary_metric,
    rerun_command,
    run_command,
    runs,
)

NAME = "convergence"
FILE = "convergence.csv"
COLUMNS = ("step", "method", "seed", "nfe", "metric", "value")


def read_all(results: Path, only: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every cell's convergence rows (of dataset ``only``, or all) with a ``dataset`` column;
    notes on unreadable files."""
    frames, notes = [], []
    for d in sorted(p.parent.name for p in Path(results).glob("*/runs")):
        if only is not None and d != only:
            continue
        for r in runs(results, d):
            path = r.path / FILE
            if not path.is_file():
                continue
            f = pd.read_csv(path)
            if missing := [c for c in COLUMNS if c not in f]:
                notes.append(f"{path}: no column {', '.join(missing)}, left out")
                continue
            frames.append(f[list(COLUMNS)].assign(dataset=d))
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), notes


def curves(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per legend label: (step, mean, std) over seeds of one metric's rows, at the NFE the
    method is judged by (``benchmarks.report.convergence.probe_nfe``: 1, the fm teacher at its largest);
    the label is the method, plus "(NFE k)" when k is not 1."""
    out = {}
    rows = probe_nfe(rows)
    for m in sorted(rows["method"].unique()):
        d = rows[rows["method"] == m]
        nfe = int(d["nfe"].min())
        d = d[d["nfe"] == nfe].groupby("step")["value"].agg(["mean", "std"]).reset_index()
        out[m if nfe == 1 else f"{m} (NFE {nfe})"] = d.assign(method=m)
    return out


def draw_panel(ax: Axes, lines: dict[str, pd.DataFrame], panel: str) -> None:
    """The methods of family ``panel``: mean over seeds against step, the spread shaded."""
    for label, d in lines.items():
        m = d["method"].iloc[0]
        if family(m) != panel:
            continue
        ax.plot(d["step"], d["mean"], label=label, gid=m, **style.line_style(m))
        style.band(ax, d["step"], d["mean"], d["std"], m)


def figure(rows: pd.DataFrame) -> Figure:
    """Datasets (rows) x families (columns) of the convergence rows."""
    names = sorted(rows["dataset"].unique())
    columns = panels(sorted(rows["method"].unique())) or [OTHER]
    fig = style.figure(len(names), len(columns), panel=2.2, row=1.9)
    axes = fig.subplots(len(names), len(columns), squeeze=False, sharey="row")
    for i, d in enumerate(names):
        sub = rows[rows["dataset"] == d]
        metric = primary_metric(sub)
        lines = curves(sub[sub["metric"] == metric])
        for j, panel in enumerate(columns):
            ax = axes[i, j]
            ax.set_gid(f"{d}/{panel}")
            draw_panel(ax, lines, panel)
            ax.set_title(f"{d}: {panel}")
            ax.set_xlabel("training step" if i == len(names) - 1 else "")
        style.maybe_log_y(axes[i, 0], pd.concat([c["mean"] for c in lines.values()]))
        axes[i, 0].set_ylabel(metric)
        for ax in axes[i, 1:]:
            ax.tick_params(labelleft=False)
    style.family_legends(fig, axes, columns)
    return fig


def make(results: Path, out: Path) -> list[Path]:
    """Write ``convergence.{pdf,png}`` from every ``runs/*/convergence.csv``; Skip when no cell
    has one, naming the command that reruns the cells found."""
    rows, notes = read_all(results)
    if rows.empty:
        names = sorted(p.parent.name for p in Path(results).glob("*/runs"))
        found = [(d, r) for d in names if (r := runs(results, d))]
        command = rerun_command(*found[0]) if found else run_command()
        raise Skip(f"no cell has a {FILE} under {results}/<dataset>/runs", command)
    with style.context():
        fig = figure(rows)
        return Made(style.save(fig, out, NAME), {NAME: fig}, notes)
