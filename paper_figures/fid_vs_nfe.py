"""Figure 1: quality against NFE (log-2 axis), one panel per dataset, teachers as references.

Top row: each dataset's primary metric (fid for images, w2 for 2D); second row: the flow-map
error where the dataset has an exact oracle. Learned methods are solid lines with markers (std
error bars over seeds); fm-euler / fm-heun dashed; fm-dopri5 a star at its counted NFE; the
exact floor a dotted line and fm-dopri5 (adaptive, often hundreds of NFE) a dash-dot line labelled
whose counted NFE is in the panel title, so the axis stays on the sweep's NFEs (``speedup``
places it on the NFE axis). Not-applicable cells are left out, never drawn as zero. Every plotted
series has ``gid`` = method name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from paper_figures import style
from paper_figures.common import Made, cells, load_rows, primary_metric

NAME = "fid_vs_nfe"
SECOND = "flowmap_err"


def panels(rows: pd.DataFrame) -> list[list[tuple[str, str] | None]]:
    """Grid of (dataset, metric) per panel: primary metrics, then flowmap_err where present."""
    names = sorted(rows["dataset"].unique())
    grid: list[list[tuple[str, str] | None]] = [
        [(d, primary_metric(rows[rows["dataset"] == d])) for d in names]
    ]
    has = [SECOND in set(rows.loc[rows["dataset"] == d, "metric"]) for d in names]
    if any(has) and all(m != SECOND for _, m in grid[0]):
        grid.append([(d, SECOND) if h else None for d, h in zip(names, has)])
    return grid


def draw(ax: Axes, rows: pd.DataFrame, metric: str) -> None:
    """One panel: ``metric`` of one dataset's rows against NFE, each method its own series."""
    s = cells(rows, metric)
    for m in style.order(s["method"].unique()):
        d = s[s["method"] == m].sort_values("nfe")
        kw = style.line_style(m)
        if m == style.EXACT:
            ax.axhline(d["mean"].mean(), label=m, gid=m, **kw)
            continue
        if m == style.ADAPTIVE:  # its counted NFE goes in the panel title
            y = d["mean"].mean()
            ax.axhline(y, label=m, gid=m, color=kw["color"], linestyle="-.", linewidth=1.0)
            continue
        ax.plot(d["nfe"], d["mean"], label=m, gid=m, **kw)
        if (d["std"].fillna(0) > 0).any():
            ax.errorbar(
                d["nfe"], d["mean"], yerr=d["std"].fillna(0), fmt="none", ecolor=kw["color"],
                capsize=2, elinewidth=0.8,
            )  # fmt: skip
    nfes = s.loc[s["method"] != style.ADAPTIVE, "nfe"].to_numpy(dtype=float)
    style.nfe_axis(ax, nfes if len(nfes) else [1.0])
    style.maybe_log_y(ax, s["mean"])
    ax.set_ylabel(f"{metric} (lower is better)")


def title(rows: pd.DataFrame, dataset: str, metric: str, first: bool) -> str:
    """Panel title: the dataset (first row) with fm-dopri5's counted NFE, else dataset: metric."""
    if not first:
        return f"{dataset}: {metric}"
    nfe = rows.loc[rows["method"] == style.ADAPTIVE, "nfe"]
    return f"{dataset} ({style.ADAPTIVE}: {nfe.mean():.0f} NFE)" if len(nfe) else dataset


def figure(rows: pd.DataFrame) -> Figure:
    """The whole figure from metrics rows of one or more datasets."""
    grid = panels(rows)
    fig = style.figure(len(grid), len(grid[0]), row=2.1)
    axes = np.atleast_2d(fig.subplots(len(grid), len(grid[0]), squeeze=False))
    for i, row in enumerate(grid):
        for j, cell in enumerate(row):
            ax = axes[i, j]
            if cell is None:
                ax.set_axis_off()
                continue
            d, metric = cell
            draw(ax, rows[rows["dataset"] == d], metric)
            ax.set_title(title(rows[rows["dataset"] == d], d, metric, first=i == 0))
    style.legend(fig, axes.flat)
    return fig


def make(results: Path, out: Path) -> list[Path]:
    """Write ``fid_vs_nfe.{pdf,png}`` from every ``<results>/<dataset>/metrics.csv``."""
    rows = load_rows(results)
    with style.context():
        fig = figure(rows)
        return Made(style.save(fig, out, NAME), {NAME: fig}, [])
