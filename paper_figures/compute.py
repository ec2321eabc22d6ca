"""Figure 7 and its table: map error against training compute (counted FLOPs), per oracle dataset.

Compute: a cell's rows carry ``train_flops`` (its whole run, counted by
``benchmarks.training.flops.cell_flops``, teacher calls charged at a network's forward pass),
``train_flops_once`` (the one-time part: ``no``'s trajectory pool) and ``train_steps``; training
to step k costs once + (train_flops - once) k / steps. Quality: the convergence probes
(``runs/*/convergence.csv``) of the oracle's map error (``flowmap_err_pd`` on images,
``flowmap_err`` in 2D) at NFE 1 and, second view, the best NFE <= 4 (the NFE whose mean over
seeds is lowest at that probe). Each dataset is read at its longest tier: ``<results>/long/<d>``
when it exists (``--budget long``), else ``<results>/<d>``.

Figure ``compute.{pdf,png}``: rows (dataset, view), one panel per method family, x = training
FLOPs (log), mean over seeds with the spread shaded. Table ``compute.md``: per dataset and view,
each method's error (mean ± std over seeds, each seed's curve interpolated linearly in log compute)
at the compute fm spends in S/9, S/3 and S steps (S: the tier's steps); "—" where the method
has no probe that early (its first cost more, or a staged method could not yet sample at that
NFE), "> run" where its run ended before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmarks.base.atomic import atomic_open
from benchmarks.base.rows import read_rows
from methods import METHODS
from paper_figures import style
from paper_figures.common import Made, Skip, family, panels, run_command
from paper_figures.convergence import read_all

NAME = "compute"
ERRORS = ("flowmap_err_pd", "flowmap_err")  # the map error, per pixel on images
FEW = 4  # the second view: the best NFE up to this
LEVELS = (9, 3, 1)  # the compute fm spends in S / 9, S / 3 and S steps
TEACHER = next(m for m, c in METHODS.items() if c.family == "teacher")


def tiers(results: Path) -> dict[str, Path]:
    """{dataset: the folder of its longest tier} for every dataset with probes and a FLOP count."""
    found = {}
    for root in (Path(results), Path(results) / "long"):
        for f in sorted(root.glob("*/metrics.csv")):
            rows = read_rows(f)
            if "train_flops" in rows and any(f.parent.glob("runs/*/convergence.csv")):
                found[f.parent.name] = f.parent
    return found


def cost(folder: Path) -> pd.DataFrame:
    """Per run that trained: total, once, steps (the fm run's rows are its solver baselines')."""
    rows = read_rows(folder / "metrics.csv")
    rows = rows[rows["train_steps"].gt(0)]
    cols = ["train_flops", "train_flops_once", "train_steps"]
    if "train_flops_once" not in rows:
        rows = rows.assign(train_flops_once=0.0)
    return rows.groupby("run")[cols].first().fillna(0.0)


def probes(folder: Path) -> pd.DataFrame:
    """The map-error probe rows of ``folder`` with their compute (column ``flops``)."""
    conv, _ = read_all(folder.parent, only=folder.name)
    error = next((e for e in ERRORS if e in set(conv["metric"])), None)
    if error is None:
        return pd.DataFrame()
    conv = conv[(conv["metric"] == error) & (conv["nfe"] <= FEW)].copy()
    conv["run"] = conv["method"] + "-s" + conv["seed"].astype(int).astype(str)
    c = cost(folder).reindex(conv["run"]).to_numpy()
    conv["flops"] = c[:, 1] + (c[:, 0] - c[:, 1]) * conv["step"].to_numpy() / c[:, 2]
    return conv.dropna(subset=["flops"]).assign(error=error)


def view(conv: pd.DataFrame, best: bool) -> pd.DataFrame:
    """Per (method, step): flops, mean, std over seeds, at NFE 1 or the best NFE <= FEW."""
    g = conv.groupby(["method", "step", "nfe"])
    stats = g["value"].agg(["mean", "std"]).join(g["flops"].first()).reset_index()
    if not best:
        return stats[stats["nfe"] == 1]
    return stats.loc[stats.groupby(["method", "step"])["mean"].idxmin()]


def figure(data: dict[str, pd.DataFrame]) -> Figure:
    """Rows (dataset, view) x family panels."""
    methods = sorted({m for c in data.values() for m in c["method"]})
    columns = panels(methods)
    keys = [(d, best) for d in data for best in (False, True)]
    fig = style.figure(len(keys), len(columns), panel=2.2, row=1.9)
    axes = fig.subplots(len(keys), len(columns), squeeze=False, sharey="row", sharex=True)
    for i, (d, best) in enumerate(keys):
        v = view(data[d], best)
        label = f"NFE <= {FEW}" if best else "NFE 1"
        for j, panel in enumerate(columns):
            ax = axes[i, j]
            ax.set_gid(f"{d}/{label}/{panel}")
            for m, s in v.groupby("method"):
                if family(m) != panel or (m == TEACHER and not best):
                    continue
                ax.plot(s["flops"], s["mean"], label=m, gid=m, **style.line_style(m))
                style.band(ax, s["flops"], s["mean"], s["std"].fillna(0.0), m)
            ax.set_xscale("log")
            ax.set_title(panel if i == 0 else "")
            ax.set_xlabel("training FLOPs" if i == len(keys) - 1 else "")
        style.maybe_log_y(axes[i, 0], v["mean"])
        axes[i, 0].set_ylabel(f"{d}, {label}\n{data[d]['error'].iloc[0]}")
    style.family_legends(fig, axes, columns)
    return fig


def at_compute(conv: pd.DataFrame, flops: float, best: bool) -> tuple[float, float, str]:
    """(mean, std, mark) of one method's error at ``flops``: each seed's curve at each NFE
    interpolated linearly in log compute, then the NFE (1, or the best <= FEW) by the mean. An
    NFE whose probes do not reach ``flops`` (a staged method samples at its stage's NFE only) is
    left out; with none left the mark says why: "—" (its probes all cost more: none that early)
    or "> run" (its run ended before)."""
    out, marks = {}, set()
    for nfe, g in conv.groupby("nfe"):
        if not best and nfe != 1:
            continue
        vals = []
        for _, s in g.groupby("seed"):
            s = s.sort_values("step")
            if flops < s["flops"].iloc[0] * (1 - 1e-9):
                marks.add("—")
            elif flops > s["flops"].iloc[-1] * (1 + 1e-9):
                marks.add("> run")
            else:
                vals.append(np.interp(np.log(flops), np.log(s["flops"]), s["value"]))
        if vals and len(vals) == g["seed"].nunique():
            out[nfe] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
    if not out:
        return np.nan, np.nan, ("—" if "—" in marks else "> run") if marks else "n/a"
    mean, std = min(out.values())
    return mean, std, ""


def table(data: dict[str, pd.DataFrame], folders: dict[str, Path]) -> str:
    """``compute.md``: per dataset and view, the error at fm's compute of S / 9, S / 3, S steps."""
    lines = ["# Map error at equal training compute", "", __doc__.split("\n\n")[1], ""]
    for d, conv in data.items():
        c = cost(folders[d])
        fm = c[c.index.str.startswith(f"{TEACHER}-s")]
        steps = int(c["train_steps"].max())
        per = float((fm["train_flops"] / fm["train_steps"]).mean()) if len(fm) else np.nan
        levels = [steps // k for k in LEVELS]
        for best in (False, True):
            label = f"best NFE <= {FEW}" if best else "NFE 1"
            lines += [f"## {d} ({folders[d].parent.name}/{d}, {steps} steps): {label}", ""]
            heads = [f"fm x {s} steps ({per * s:.3g} FLOPs)" for s in levels]
            lines += ["| method | " + " | ".join(heads) + " |", "|---" + "|---:" * len(heads) + "|"]
            for m in style.order(conv["method"].unique()):
                if m == TEACHER and not best:
                    continue
                cells = []
                for s in levels:
                    mean, std, mark = at_compute(conv[conv["method"] == m], per * s, best)
                    cells.append(mark or f"{mean:.3g} ± {std:.2g}")
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def make(results: Path, out: Path) -> list[Path]:
    """Write ``compute.{pdf,png}`` and ``compute.md``; Skip without probes and FLOP counts."""
    folders = tiers(results)
    data = {d: p for d, f in folders.items() if len(p := probes(f))}
    if not data:
        raise Skip(
            f"no folder under {results} has convergence probes and train_flops", run_command()
        )
    path = Path(out) / f"{NAME}.md"
    with atomic_open(path, "w") as fh:
        fh.write(table(data, folders))
    with style.context():
        fig = figure(data)
        return Made([*style.save(fig, out, NAME), path], {NAME: fig}, [])
