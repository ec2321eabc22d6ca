"""Figure 1: quality against NFE as small multiples, one file per dataset (``fid_vs_nfe_<d>``).

Rows: the dataset's metrics, all lower-is-better (the primary one first, ``common.PRIMARY``;
then e.g. the flow-map error where an oracle exists). Columns: one panel per ``Method.family`` present
(consistency, teacher-distilled, self-distilled; a method name not in ``methods.METHODS`` goes to
an "other" panel), panels of a row sharing their y axis. In each panel the family's learned
methods are solid lines in their colour and marker, the mean over seeds at each NFE, with the
spread over seeds drawn as a shaded band from mean - std to mean + std (sample std over seeds; a
method with a single NFE gets an error bar instead; nothing where only one seed has a value).
Every panel repeats the solver baselines as thin reference lines in
:func:`benchmarks.report.style.baseline_style` (fm-* grey, exact-* black; Euler dashed, Heun
dash-dot, the adaptive dopri5 a star at its counted NFE, mean over seeds) and the exact floor as
a dotted line. n/a cells, failed cells and diverged samplers are left out, never drawn as zero.
Series have ``gid`` = method name, bands "<method>/band", panels "<dataset>/<metric>/<family>".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from paper_figures import style
from paper_figures.common import Made, cells, family, load_rows, metrics_of, panels

NAME = "fid_vs_nfe"


def draw_references(ax: Axes, s: pd.DataFrame) -> None:
    """Baselines as thin lines (adaptive ones a star at the counted NFE), the floor dotted."""
    for m in style.order(s["method"].unique()):
        if style.is_learned(m):
            continue
        d = s[s["method"] == m].sort_values("nfe")
        kw = style.line_style(m, thin=True)
        if m == style.EXACT:
            ax.axhline(d["mean"].mean(), label=m, gid=m, **kw)
        else:
            ax.plot(d["nfe"], d["mean"], label=m, gid=m, zorder=1.5, **kw)


def draw_panel(ax: Axes, s: pd.DataFrame, panel: str | None) -> None:
    """One panel: the learned methods of family ``panel`` (mean and spread) over the references."""
    draw_references(ax, s)
    for m in style.order(s["method"].unique()):
        if not style.is_learned(m) or family(m) != panel:
            continue
        d = s[s["method"] == m].sort_values("nfe")
        ax.plot(d["nfe"], d["mean"], label=m, gid=m, zorder=3, **style.line_style(m))
        style.band(ax, d["nfe"], d["mean"], d["std"], m)


def figure(rows: pd.DataFrame, dataset: str) -> Figure:
    """Metrics (rows) x families (columns) of one dataset's metrics rows."""
    metrics = metrics_of(rows)
    summaries = {metric: cells(rows, metric) for metric in metrics}
    learned = sorted({m for s in summaries.values() for m in s["method"]})
    columns: list[str | None] = list(panels(learned)) or [None]
    fig = style.figure(len(metrics), len(columns), panel=2.2, row=1.9)
    axes = fig.subplots(len(metrics), len(columns), squeeze=False, sharex=True, sharey="row")
    nfes = pd.concat([s["nfe"] for s in summaries.values()]).to_numpy(dtype=float)
    for i, metric in enumerate(metrics):
        s = summaries[metric]
        for j, panel in enumerate(columns):
            ax = axes[i, j]
            ax.set_gid(f"{dataset}/{metric}/{panel or 'baselines'}")
            draw_panel(ax, s, panel)
            if i == 0:
                ax.set_title(f"{dataset}: {panel or 'baselines only'}")
        style.nfe_axis(axes[i, 0], nfes if len(nfes) else [1.0])
        style.maybe_log_y(axes[i, 0], s["mean"])
        axes[i, 0].set_ylabel(metric)
        for ax in axes[i, 1:]:
            ax.tick_params(labelleft=False)
    for ax in axes.flat:
        ax.set_xlabel("NFE" if ax in axes[-1] else "")
    style.family_legends(fig, axes, columns)
    return fig


def make(results: Path, out: Path) -> list[Path]:
    """Write ``fid_vs_nfe_<dataset>.{pdf,png}`` from each ``<results>/<dataset>/metrics.csv``."""
    rows = load_rows(results)
    paths, figures = [], {}
    with style.context():
        for d in sorted(rows["dataset"].unique()):
            stem = f"{NAME}_{d}"
            figures[stem] = figure(rows[rows["dataset"] == d], d)
            paths += style.save(figures[stem], out, stem)
    return Made(paths, figures, [])
