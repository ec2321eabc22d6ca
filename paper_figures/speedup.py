"""Figure 4: quality against sampling cost, each method against the baselines of its teacher.

A learned method is compared with the solver baselines of the velocity it learned from: the
``exact-*`` rows (exact-euler, exact-heun, exact-dopri5) when its rows' ``teacher`` column is
"exact", otherwise the ``fm-*`` rows (a trained fm teacher, or a data-only method against the
flow-matching solve; also when ``metrics.csv`` has no ``teacher`` column). One row of panels per
(dataset, teacher velocity) present, on the dataset's primary metric. Left: against wall time per
sample (``sample_seconds / n_samples``, log axis); right: against NFE (log-2 axis). Each method
is a curve of its means over seeds; the baselines in :func:`benchmarks.report.style.baseline_style`
(Euler dashed, Heun dash-dot, the adaptive dopri5 a star); the exact floor a dotted line. An
arrow runs from the adaptive baseline to the best one-step learned method of the row, and a box
gives the ratio of their costs. Series have ``gid`` = method name, panels
"<dataset>/<velocity>/<sec|nfe>", the ratio box "ratio".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from benchmarks.base.rows import (
    ADAPTIVE_SOLVER,
    BASELINES,
    FLOOR,
    VELOCITIES,
    baseline,
    velocity_of,
)
from benchmarks.report import fmt
from paper_figures import style
from paper_figures.common import Made, Skip, cells, load_rows, primary_metric, run_command

NAME = "speedup"
AXES = (("sec", "sampling time per sample [s]"), ("nfe", "NFE"))
DEFAULT = "fm"  # the velocity of a method without a teacher column or with teacher != "exact"


def teacher_velocity(rows: pd.DataFrame) -> pd.Series:
    """Per row: "exact" where the ``teacher`` column says so, else "fm" (also without the column)."""
    if "teacher" not in rows:
        return pd.Series(DEFAULT, index=rows.index)
    return rows["teacher"].astype(str).str.strip().map(lambda t: t if t == "exact" else DEFAULT)


def groups(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(velocity, rows) per teacher velocity of the learned rows: those rows, the velocity's
    baselines ``<velocity>-*`` and the exact floor. Baselines alone when nothing is learned."""
    learned = rows["method"].map(style.is_learned)
    vel = teacher_velocity(rows)
    found = [v for v in VELOCITIES if (learned & (vel == v)).any()] or [DEFAULT]
    out = []
    for v in found:
        refs = rows["method"].map(
            lambda m, v=v: m == FLOOR or (m in BASELINES and velocity_of(m) == v)
        )
        out.append((v, rows[(learned & (vel == v)) | refs]))
    return out


def best_one_step(s: pd.DataFrame) -> pd.Series | None:
    """The learned method with the lowest value at NFE 1 (None if there is none)."""
    one = s[s["method"].map(style.is_learned) & (s["nfe"] == 1) & np.isfinite(s["mean"])]
    return None if one.empty else one.sort_values("mean").iloc[0]


def ratio_box(ax: Axes, s: pd.DataFrame, x: str, metric: str, velocity: str) -> None:
    """Arrow from the adaptive baseline to the best one-step method, their cost ratio in a box."""
    adaptive = baseline(velocity, ADAPTIVE_SOLVER)
    dop, best = s[s["method"] == adaptive], best_one_step(s)
    if dop.empty or best is None or not best[x] > 0:
        return
    d = dop.iloc[0]
    ratio = d[x] / best[x]
    ax.annotate(
        "",
        xy=(best[x], best["mean"]),
        xytext=(d[x], d["mean"]),
        arrowprops=dict(arrowstyle="->", color="0.3", lw=0.8, shrinkA=6, shrinkB=4),
    )
    what = "less time" if x == "sec" else "fewer NFE"
    num = f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.2g}"
    title = f"{best['method']} at NFE 1: {num}x {what}\nthan {adaptive} ({metric} "
    title += f"{fmt(best['mean'])} vs {fmt(d['mean'])})"
    box = ax.legend(
        handles=[], title=title, loc="best", title_fontsize=6.5, frameon=True, framealpha=0.9
    )
    box.get_frame().set(edgecolor="0.8", linewidth=0.5)
    box.set_gid("ratio")


def draw(ax: Axes, s: pd.DataFrame, x: str, metric: str, velocity: str) -> None:
    """One panel: mean metric against ``x`` ("sec" or "nfe") per method, ratio arrow."""
    for m in style.order(s["method"].unique()):
        d = s[s["method"] == m].sort_values("nfe")
        kw = style.line_style(m)
        if m == FLOOR:
            ax.axhline(d["mean"].mean(), label=m, gid=m, **kw)
        else:
            ax.plot(d[x], d["mean"], label=m, gid=m, **kw)
    if x == "nfe":
        style.nfe_axis(ax, s.loc[s["method"] != FLOOR, "nfe"])
    else:
        ax.set_xscale("log")
        style.log_axis(ax.xaxis, s[x])
    style.maybe_log_y(ax, s["mean"])
    ratio_box(ax, s, x, metric, velocity)


def figure(rows: pd.DataFrame) -> Figure:
    """Rows: (dataset, teacher velocity); columns: metric vs time per sample, metric vs NFE."""
    panels = [
        (d, v, g)
        for d in sorted(rows["dataset"].unique())
        for v, g in groups(rows[rows["dataset"] == d])
    ]
    fig = style.figure(len(panels), 2, row=2.3)
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for i, (d, v, g) in enumerate(panels):
        metric = primary_metric(rows[rows["dataset"] == d])
        s = cells(g, metric)
        for j, (x, label) in enumerate(AXES):
            ax = axes[i, j]
            ax.set_gid(f"{d}/{v}/{x}")
            draw(ax, s, x, metric, v)
            ax.set_xlabel(label)
            ax.set_title(
                f"{d}, against {v}-*: quality vs {'time' if x == 'sec' else 'NFE'}", loc="left"
            )
        axes[i, 0].set_ylabel(f"{metric} (lower is better)")
    style.legend(fig, axes.flat)
    return fig


def notes_for(rows: pd.DataFrame) -> list[str]:
    """Rows of panels whose baselines are missing, and a missing ``teacher`` column."""
    notes = (
        []
        if "teacher" in rows
        else ["no teacher column in metrics.csv: every method compared with fm-* rows"]
    )
    for d in sorted(rows["dataset"].unique()):
        for v, g in groups(rows[rows["dataset"] == d]):
            if not g["method"].map(lambda m: m in BASELINES).any():
                notes.append(
                    f"{d}: no {v}-* baseline rows, methods taught by {v} drawn without "
                    f"them (run: {run_command(d, v)})"
                )
    return notes


def make(results: Path, out: Path) -> list[Path]:
    """Write ``speedup.{pdf,png}``; Skip if no run has timed samples."""
    rows = load_rows(results)
    if not (rows["sample_seconds"] > 0).any():
        raise Skip(f"no sample_seconds in {results}/*/metrics.csv", run_command())
    with style.context():
        fig = figure(rows)
        return Made(style.save(fig, out, NAME), {NAME: fig}, notes_for(rows))
