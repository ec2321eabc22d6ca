"""Figure 5: training loss curves from the run logs, and training cost as bars.

One row per dataset. Left: ``loss`` against ``step`` from every run's ``log.jsonl`` (one line per
seed, the method's colour; gid "<method>/s<seed>"). Losses of different methods are different
objectives, so compare shapes, not heights. Right: training wall time per method (mean over
seeds, from the metrics rows), with the teacher's training time stacked in grey (hatched) for
distillation methods that used a trained teacher (bar gids "<method>/train", "<method>/teacher").
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from benchmarks.base.rows import read_rows
from paper_figures import style
from paper_figures.common import Made, Run, Skip, run_command, runs

NAME = "training"
TEACHER_COLOR = "0.75"


def read_log(run: Run) -> pd.DataFrame:
    """A run's log.jsonl as a frame (columns step, loss, lr, seconds, ...); empty if absent."""
    path = run.path / "log.jsonl"
    if not path.is_file():
        return pd.DataFrame(columns=["step", "loss"])
    lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return pd.DataFrame(lines, columns=None if lines else ["step", "loss"])


def costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Per trained method: mean over seeds of train_seconds and teacher_seconds.

    Rows are grouped by ``run`` (``<method>-s<seed>``), so the fm run, whose rows are named
    fm-euler / fm-heun / fm-dopri5, counts as ``fm``; the exact floor trains nothing.
    """
    key = rows["run"] if "run" in rows else rows["method"] + "-s" + rows["seed"].astype(str)
    per_run = rows.assign(key=key).groupby("key")[["train_seconds", "teacher_seconds"]].first()
    per_run["method"] = [k.rpartition("-s")[0] for k in per_run.index]
    per_run = per_run[per_run["method"].map(style.is_learned)]
    out = per_run.groupby("method")[["train_seconds", "teacher_seconds"]].mean().fillna(0.0)
    return out.reindex(style.order(out.index))


def draw_losses(ax: Axes, logs: dict[Run, pd.DataFrame]) -> None:
    """Loss against step, one line per run (labelled once per method)."""
    labelled: set[str] = set()
    for run, log in logs.items():
        label = None if run.method in labelled else run.method
        labelled.add(run.method)
        ax.plot(
            log["step"],
            log["loss"],
            color=style.color(run.method),
            label=label,
            gid=f"{run.method}/s{run.seed}",
            lw=1.1,
        )
    style.maybe_log_y(ax, pd.concat([log["loss"] for log in logs.values()]))
    ax.set(xlabel="training step", ylabel="training loss")


def draw_costs(ax: Axes, c: pd.DataFrame) -> None:
    """Horizontal bars: own training time, the teacher's stacked after it."""
    y = range(len(c))
    colors = [style.color(m) for m in c.index]
    own = ax.barh(y, c["train_seconds"], color=colors, height=0.7)
    extra = ax.barh(
        y,
        c["teacher_seconds"],
        left=c["train_seconds"],
        color=TEACHER_COLOR,
        hatch="////",
        edgecolor="white",
        lw=0,
        height=0.7,
        label="teacher training",
    )
    for m, a, b in zip(c.index, own, extra):
        a.set_gid(f"{m}/train")
        b.set_gid(f"{m}/teacher")
    ax.set_yticks(list(y), list(c.index))
    ax.set_xlim(0, 1.05 * float((c["train_seconds"] + c["teacher_seconds"]).max() or 1.0))
    ax.invert_yaxis()
    ax.set_xlabel("training wall time [s]")
    ax.grid(axis="y", visible=False)
    if (c["teacher_seconds"] > 0).any():
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)


def figure(logs: dict[str, dict[Run, pd.DataFrame]], rows: dict[str, pd.DataFrame]) -> Figure:
    """Rows: datasets (from ``logs``); columns: loss curves, cost bars (if metrics exist)."""
    names = sorted(logs)
    fig = style.figure(len(names), 2, row=2.4)
    axes = fig.subplots(len(names), 2, squeeze=False, width_ratios=(1.6, 1))
    for i, d in enumerate(names):
        draw_losses(axes[i, 0], logs[d])
        axes[i, 0].set_title(f"{d}: training loss", loc="left")
        if d in rows:
            draw_costs(axes[i, 1], costs(rows[d]))
            axes[i, 1].set_title(f"{d}: training cost", loc="left")
        else:
            axes[i, 1].set_axis_off()
            axes[i, 1].text(
                0.5, 0.5, f"no {d}/metrics.csv", ha="center", transform=axes[i, 1].transAxes
            )
    style.legend(fig, axes[:, 0])
    return fig


def make(results: Path, out: Path) -> list[Path]:
    """Write ``training.{pdf,png}`` from ``runs/*/log.jsonl`` and the metrics rows."""
    logs: dict[str, dict[Run, pd.DataFrame]] = {}
    for d in sorted(p.parent.name for p in Path(results).glob("*/runs")):
        found = {r: read_log(r) for r in runs(results, d)}
        found = {r: log for r, log in found.items() if len(log)}
        if found:
            logs[d] = found
    if not logs:
        raise Skip(f"no run logs (runs/*/log.jsonl) under {results}", run_command())
    paths = {d: Path(results) / d / "metrics.csv" for d in logs}
    rows = {d: read_rows(p) for d, p in paths.items() if p.is_file()}
    notes = [
        f"{d}: no metrics.csv, training cost not drawn (run: {run_command(d)})"
        for d in logs
        if d not in rows
    ]
    with style.context():
        fig = figure(logs, rows)
        return Made(style.save(fig, out, NAME), {NAME: fig}, notes)
