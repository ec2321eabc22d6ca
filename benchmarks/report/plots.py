"""Metric-vs-NFE plots of tidy metrics rows."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from benchmarks.atomic import atomic_open
from benchmarks.report.style import baseline_style, method_color, order
from benchmarks.report.tables import one
from benchmarks.rows import FLOOR, is_baseline

NO_DATE = {"png": {}, "pdf": {"CreationDate": None}}  # reproducible files: no time stamp


def plot_metric_vs_nfe(rows: pd.DataFrame, metric: str, path_stem: str | Path | None) -> Figure:
    """``metric`` vs NFE (log2 x) per method; writes ``path_stem``.png/.pdf unless None.

    Learned methods: lines with markers and std error bars; fm-euler/fm-heun dashed grey;
    fm-dopri5 a star at its counted NFE; exact a dotted horizontal line; n/a cells left out.
    Each plotted line has ``gid`` = method name (the returned Figure can be inspected).
    """
    s = one(rows, metric, valid=True)
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for m in order(s["method"].unique()):
        d = s[s["method"] == m].sort_values("nfe")
        if m == FLOOR:
            ax.axhline(d["mean"].mean(), color="black", linestyle=":", label=m, gid=m)
            continue
        style = (
            baseline_style(m)
            if is_baseline(m)
            else dict(color=method_color(m), marker="o", markersize=5)
        )
        ax.plot(d["nfe"], d["mean"], label=m, gid=m, **style)
        if (d["std"].fillna(0) > 0).any():
            bars = dict(fmt="none", ecolor=style["color"], capsize=3, elinewidth=1)
            ax.errorbar(d["nfe"], d["mean"], yerr=d["std"].fillna(0), **bars)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    y = s["mean"][s["mean"].abs() < math.inf]
    if len(y) and (y > 0).all() and y.max() > 10 * y.min():
        ax.set_yscale("log")
    ax.set(xlabel="NFE", ylabel=f"{metric} (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8)
    if path_stem is not None:
        for ext in ("png", "pdf"):
            with atomic_open(Path(f"{path_stem}.{ext}"), "wb") as f:
                fig.savefig(f, format=ext, bbox_inches="tight", dpi=150, metadata=NO_DATE[ext])
    return fig
