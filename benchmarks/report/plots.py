"""Plots of tidy rows: metric vs NFE and metric vs training step, one panel per method family.

Small multiples keep 19 methods and 7 baselines readable: each panel holds the learned methods
of one ``Method.family`` (consistency, teacher-distilled, self-distilled; names outside the
registry under "other") with the baselines drawn in every panel in grey (fm-* dashed mid-grey,
exact-* black; the adaptive solves as stars at their counted NFE, the exact floor dotted). The
spread over seeds is a shaded band of +- one standard deviation around the mean. Every line has
``gid`` = method name; each Axes has ``gid`` = its family.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from benchmarks.base.atomic import atomic_open
from benchmarks.base.rows import FLOOR, is_baseline
from benchmarks.report.convergence import probe_nfe
from benchmarks.report.style import baseline_style, method_color, order
from benchmarks.report.tables import one
from methods import METHODS
from methods.base import FAMILIES

NO_DATE = {"png": {}, "pdf": {"CreationDate": None}}  # reproducible files: no time stamp
OTHER = "other"


def family_of(method: str) -> str:
    return METHODS[method].family if method in METHODS else OTHER


def panels(methods: list[str]) -> list[str]:
    """The families with at least one learned method present, in ``FAMILIES`` order."""
    present = {family_of(m) for m in methods if not is_baseline(m)}
    return [f for f in (*FAMILIES, OTHER) if f in present] or [OTHER]


def save(fig: Figure, path_stem: str | Path) -> None:
    for ext in ("png", "pdf"):
        with atomic_open(Path(f"{path_stem}.{ext}"), "wb") as f:
            fig.savefig(f, format=ext, bbox_inches="tight", dpi=150, metadata=NO_DATE[ext])


def _series(ax: Axes, x, mean, std, name: str) -> None:
    """A learned method's mean line with a +- std band (seeds)."""
    color = method_color(name)
    ax.plot(x, mean, color=color, marker="o", markersize=4, label=name, gid=name)
    if (std.fillna(0) > 0).any():
        lo, hi = mean - std.fillna(0), mean + std.fillna(0)
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)


def _baselines(ax: Axes, s: pd.DataFrame) -> None:
    for m in order(s["method"].unique()):
        if not is_baseline(m):
            continue
        d = s[s["method"] == m].sort_values("nfe")
        if m == FLOOR:
            ax.axhline(d["mean"].mean(), color="black", linestyle=":", label=m, gid=m)
        else:
            ax.plot(d["nfe"], d["mean"], label=m, gid=m, linewidth=1.0, **baseline_style(m))


def _axes(fig: Figure, n: int) -> list[Axes]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    return [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def _finish(fig: Figure, axes: list[Axes], values: pd.Series, xlabel: str, ylabel: str) -> None:
    y = values[values.abs() < math.inf]
    log = len(y) and (y > 0).all() and y.max() > 10 * y.min()
    for ax in axes:
        if log:
            ax.set_yscale("log")
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", frameon=False, fontsize=6.5, ncol=2)
    fig.tight_layout()


def plot_metric_vs_nfe(rows: pd.DataFrame, metric: str, path_stem: str | Path | None) -> Figure:
    """``metric`` vs NFE (log2 x), one panel per family; writes ``path_stem``.png/.pdf unless
    None. n/a cells are left out, never drawn."""
    s = one(rows, metric, valid=True)
    families = panels(list(s["method"].unique()))
    fig = Figure(figsize=(4.2 * min(len(families), 3), 3.4 * math.ceil(len(families) / 3)))
    axes = _axes(fig, len(families))
    for ax, fam in zip(axes, families):
        ax.set_gid(fam)
        ax.set_title(fam)
        for m in order(s["method"].unique()):
            if not is_baseline(m) and family_of(m) == fam:
                d = s[s["method"] == m].sort_values("nfe")
                _series(ax, d["nfe"], d["mean"], d["std"], m)
        _baselines(ax, s)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    _finish(fig, axes, s["mean"], "NFE", f"{metric} (lower is better)")
    if path_stem is not None:
        save(fig, path_stem)
    return fig


def plot_metric_vs_step(conv: pd.DataFrame, metric: str, path_stem: str | Path | None) -> Figure:
    """``metric`` vs training step (mean +- std over seeds) at each method's ``probe_nfe``, one
    panel per family."""
    sub = probe_nfe(conv[conv["metric"] == metric])
    g = sub.groupby(["method", "step"])["value"].agg(["mean", "std"]).reset_index()
    families = panels(list(g["method"].unique()))
    fig = Figure(figsize=(4.2 * min(len(families), 3), 3.4 * math.ceil(len(families) / 3)))
    axes = _axes(fig, len(families))
    for ax, fam in zip(axes, families):
        ax.set_gid(fam)
        ax.set_title(f"{fam} (NFE 1; fm: its largest)" if fam == "teacher" else f"{fam} (NFE 1)")
        for m in order(g["method"].unique()):
            if family_of(m) == fam:
                d = g[g["method"] == m].sort_values("step")
                _series(ax, d["step"], d["mean"], d["std"], m)
    _finish(fig, axes, g["mean"], "training step", f"{metric} (lower is better)")
    if path_stem is not None:
        save(fig, path_stem)
    return fig
