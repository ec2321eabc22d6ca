"""Figure 4: quality against sampling cost, the picture of the few-step speed-up claim.

One row per dataset (its primary metric). Left: against wall time per sample
(``sample_seconds / n_samples``, log axis); right: against NFE (log-2 axis). Each method is a
curve over its NFEs; fm-euler / fm-heun dashed; the teacher's adaptive solve (fm-dopri5) a star;
the exact floor a dotted line. An arrow runs from fm-dopri5 to the best one-step learned method,
and a box (placed clear of the data) gives the ratio of their costs. Series have ``gid`` = method name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from benchmarks.report import fmt
from paper_figures import style
from paper_figures.common import Made, Skip, cells, load_rows, primary_metric, run_command

NAME = "speedup"
AXES = (("sec", "sampling time per sample [s]"), ("nfe", "NFE"))


def best_one_step(s: pd.DataFrame) -> pd.Series | None:
    """The learned method with the lowest value at NFE 1 (None if there is none)."""
    one = s[s["method"].map(style.is_learned) & (s["nfe"] == 1) & np.isfinite(s["mean"])]
    return None if one.empty else one.sort_values("mean").iloc[0]


def draw(ax: Axes, s: pd.DataFrame, x: str, metric: str) -> None:
    """One panel: mean metric against ``x`` ("sec" or "nfe") per method, ratio arrow."""
    for m in style.order(s["method"].unique()):
        d = s[s["method"] == m].sort_values("nfe")
        kw = style.line_style(m)
        if m == style.EXACT:
            ax.axhline(d["mean"].mean(), label=m, gid=m, **kw)
        else:
            ax.plot(d[x], d["mean"], label=m, gid=m, **kw)
    if x == "nfe":
        style.nfe_axis(ax, s.loc[s["method"] != style.EXACT, "nfe"])
    else:
        ax.set_xscale("log")
        style.log_axis(ax.xaxis, s[x])
    style.maybe_log_y(ax, s["mean"])
    dop, best = s[s["method"] == style.ADAPTIVE], best_one_step(s)
    if dop.empty or best is None or not best[x] > 0:
        return
    d = dop.iloc[0]
    ratio = d[x] / best[x]
    ax.annotate(
        "", xy=(best[x], best["mean"]), xytext=(d[x], d["mean"]),
        arrowprops=dict(arrowstyle="->", color="0.3", lw=0.8, shrinkA=6, shrinkB=4),
    )  # fmt: skip
    what = "less time" if x == "sec" else "fewer NFE"
    num = f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.2g}"
    title = f"{best['method']} at NFE 1: {num}x {what}\nthan {style.ADAPTIVE} ({metric} "
    title += f"{fmt(best['mean'])} vs {fmt(d['mean'])})"
    box = ax.legend(handles=[], title=title,
                    loc="best", title_fontsize=6.5, frameon=True, framealpha=0.9)  # fmt: skip
    box.get_frame().set(edgecolor="0.8", linewidth=0.5)
    box.set_gid("ratio")


def figure(rows: pd.DataFrame) -> Figure:
    """Rows: datasets; columns: metric vs time per sample, metric vs NFE."""
    names = sorted(rows["dataset"].unique())
    fig = style.figure(len(names), 2, row=2.3)
    axes = fig.subplots(len(names), 2, squeeze=False)
    for i, d in enumerate(names):
        sub = rows[rows["dataset"] == d]
        metric = primary_metric(sub)
        s = cells(sub, metric)
        for j, (x, label) in enumerate(AXES):
            draw(axes[i, j], s, x, metric)
            axes[i, j].set_xlabel(label)
        axes[i, 0].set_ylabel(f"{metric} (lower is better)")
        axes[i, 0].set_title(f"{d}: quality vs sampling time", loc="left")
        axes[i, 1].set_title(f"{d}: quality vs NFE", loc="left")
    style.legend(fig, axes.flat)
    return fig


def make(results: Path, out: Path) -> list[Path]:
    """Write ``speedup.{pdf,png}``; Skip if no run has timed samples."""
    rows = load_rows(results)
    if not (rows["sample_seconds"] > 0).any():
        raise Skip(f"no sample_seconds in {results}/*/metrics.csv", run_command())
    with style.context():
        fig = figure(rows)
        notes = [
            f"{d}: no fm-dopri5 rows, the teacher's adaptive solve is not marked "
            f"(run: {run_command(d, 'fm')})"
            for d in sorted(rows["dataset"].unique())
            if not ((rows["dataset"] == d) & (rows["method"] == style.ADAPTIVE)).any()
        ]
        return Made(style.save(fig, out, NAME), {NAME: fig}, notes)
