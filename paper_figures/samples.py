"""Figure 2: samples per method (rows) at NFE 1, 2, 4, 8 (columns), from the stored checkpoints.

Every cell starts from the same noise (``common.NOISE_SEED``), so the columns of one method and
the rows of one column are directly comparable. Images: a 2x2 mosaic per cell; 2D datasets: a
scatter over the held-out data (grey). Cells a method cannot sample are blank with "n/a". Each
cell's Axes has ``gid`` = "<method>/nfe<k>". One file per dataset: ``samples_<dataset>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from benchmarks.data import to_uint8
from benchmarks.datasets import get as get_dataset
from benchmarks.factory import load_problem
from paper_figures import style
from paper_figures.common import (
    Loaded,
    Made,
    Skip,
    checkpoint_command,
    checkpoint_runs,
    data_shape,
    load_runs,
    noise,
    run_command,
    threads,
)
from paper_figures.common import sample as sample_cell

NAME = "samples"
NFES = (1, 2, 4, 8)
N_POINTS = 1000  # 2D: points per scatter cell
N_IMAGES = 4  # images: a 2x2 mosaic per cell


def mosaic(x: Tensor) -> np.ndarray:
    """(4, C, H, W) in [-1, 1] -> a (2H, 2W, C) uint8 mosaic (C = 1 squeezed for imshow)."""
    u = to_uint8(x[:N_IMAGES])
    c, h, w = u.shape[1:]
    grid = u.view(2, 2, c, h, w).permute(0, 3, 1, 4, 2).reshape(2 * h, 2 * w, c).numpy()
    return grid[..., 0] if c == 1 else grid


def blank(ax: Axes, text: str) -> None:
    """An empty cell with a centred note (e.g. n/a)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def draw_cell(ax: Axes, m: Loaded, x: Tensor | None, ref: Tensor | None, lim: float) -> None:
    """One cell: a scatter (with the reference in grey) or an image mosaic; n/a when None."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set(visible=True, color="0.7", linewidth=0.5)
    if ref is not None:
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    if x is None:
        blank(ax, "n/a")
        return
    if ref is None:
        ax.imshow(mosaic(x), cmap="gray" if x.shape[1] == 1 else None, interpolation="nearest")
        return
    ax.scatter(ref[:, 0], ref[:, 1], s=1, color="0.85", rasterized=True, linewidths=0)
    ax.scatter(
        x[:, 0], x[:, 1], s=0.8, color=style.color(m.run.method), rasterized=True, linewidths=0
    )


def figure(loaded: list[Loaded], nfes: tuple[int, ...] = NFES) -> Figure:
    """Methods x NFEs grid of samples from the shared noise of ``common.noise``."""
    cfg = loaded[0].cfg
    toy = get_dataset(cfg.dataset).kind == "points"
    ref = load_problem(cfg, 0).test if toy else None
    lim = 1.15 * float(ref.abs().max()) if ref is not None else 0.0
    x0 = noise(data_shape(cfg), N_POINTS if toy else N_IMAGES)
    cell = 1.15 if toy else 1.0
    fig = style.figure(len(loaded), len(nfes), panel=cell, row=cell)
    axes = fig.subplots(len(loaded), len(nfes), squeeze=False)
    for i, m in enumerate(loaded):
        for j, nfe in enumerate(nfes):
            ax = axes[i, j]
            ax.set_gid(f"{m.run.method}/nfe{nfe}")
            draw_cell(ax, m, sample_cell(m, x0, nfe), ref, lim)
            if i == 0:
                ax.set_title(f"NFE {nfe}")
        axes[i, 0].set_ylabel(m.run.method, fontweight="bold")
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.02, hspace=0.02)
    return fig


def make(results: Path, out: Path) -> list[Path]:
    """Write ``samples_<dataset>.{pdf,png}`` for every dataset with checkpoints."""
    found = sorted(p.parent.name for p in Path(results).glob("*/runs"))
    paths, figures, notes = [], {}, []
    for d in found:
        chosen, lacking = checkpoint_runs(results, d)
        with threads(1 if get_dataset(d).kind == "points" else torch.get_num_threads()):
            loaded, bad = load_runs(chosen)
            notes += lacking + bad
            if not loaded:
                continue
            with style.context():
                fig = figure(loaded, NFES)
                paths += style.save(fig, out, f"{NAME}_{d}")
        figures[f"{NAME}_{d}"] = fig
    if not paths:
        where = f"{results}/{found[0]}/runs" if len(found) == 1 else f"{results}/<dataset>/runs"
        command = checkpoint_command(results, found[0]) if found else run_command()
        raise Skip(f"no checkpoints under {where}", command)
    return Made(paths, figures, notes)
