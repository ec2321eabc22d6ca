"""Figure 3: on ``gmm``, each learned flow map against the exact one (rows: methods).

Drawn from the cells' ``samples.npz`` alone (one seed, see :mod:`paper_figures.stored`).
Columns 1-3: the method's kept samples at NFE 1, 2, 4 from the shared noise x0, over the true
data density p_1 (``gmm_oracle().log_prob`` at t = 1 in closed form, grey); the corner number is
the flow-map error: mean distance between the method's samples and the exact cell's ``nfe1``
= X*_{0,1}(x0) of the same x0 (``benchmarks.evaluation.metrics.flowmap_err``). Column 4: the kept
trajectories t -> X_{0,t}(x0) of a few points, the learned map (method colour) against the exact
cell's (dashed black); start points are black dots, exact end points crosses. Without an exact
cell (or with a different x0) the errors and exact paths are left out and a note says why. Axes
gids: "<method>/nfe<k>", "<method>/traj"; trajectory lines "<method>/learned/<i>", "exact/<i>".
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from benchmarks.base.rows import FLOOR
from benchmarks.data.registry import gmm_oracle
from paper_figures import style
from paper_figures.common import Made, Skip, run_command
from paper_figures.stored import Kept, error, kept_cells
from unify import Linear

NAME = "flow_map_2d"
DATASET = "gmm"
NFES = (1, 2, 4)
LIM = 6.0


@functools.cache
def density(n: int = 200) -> np.ndarray:
    """p_1 of the gmm oracle on an n x n grid over [-LIM, LIM]^2 (rows: y). At t = 1 it is the
    data density, the same for every interpolant."""
    g = torch.linspace(-LIM, LIM, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    one = torch.ones(len(pts), dtype=torch.float64)
    return gmm_oracle().log_prob(pts, one, Linear()).exp().view(n, n).numpy()


def frame(ax: Axes, gid: str) -> None:
    """Square [-LIM, LIM]^2 axes over the density, no ticks, a light frame."""
    ax.set_gid(gid)
    ax.set(xlim=(-LIM, LIM), ylim=(-LIM, LIM), aspect="equal", xticks=[], yticks=[])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set(visible=True, color="0.7", linewidth=0.5)
    p = density()
    ax.imshow(
        p, extent=(-LIM, LIM, -LIM, LIM), origin="lower", cmap="Greys", vmax=1.6 * p.max(), zorder=0
    )


def draw_samples(ax: Axes, k: Kept, nfe: int, target: np.ndarray | None) -> None:
    """Kept samples at ``nfe`` in the method's colour, with their error against ``target``."""
    x = k.at(nfe)
    if x is None:
        ax.text(0, 0, k.absent(nfe), ha="center", va="center", color="0.3")
        return
    ax.scatter(
        x[:, 0], x[:, 1], s=0.8, color=style.color(k.run.method), linewidths=0, rasterized=True
    )
    if target is not None:
        n = min(len(x), len(target))
        ax.text(
            0.03,
            0.97,
            f"err {error(x[:n], target[:n]):.2f}",
            transform=ax.transAxes,
            va="top",
            fontsize=6.5,
            gid="err",
            bbox=dict(boxstyle="square,pad=0.15", fc="white", ec="none", alpha=0.8),
        )


def draw_paths(ax: Axes, method: str, learned: np.ndarray | None, exact: np.ndarray | None) -> None:
    """Learned trajectories (method colour) over the exact ones (dashed black), each (T, n, 2)."""
    c = style.color(method)
    if exact is not None:
        for i in range(exact.shape[1]):
            ax.plot(exact[:, i, 0], exact[:, i, 1], "--", color="black", lw=0.8, gid=f"exact/{i}")
        ax.scatter(exact[-1, :, 0], exact[-1, :, 1], marker="x", s=12, color="black", lw=0.8)
    if learned is None:
        ax.text(0, 0, "no paths kept", ha="center", va="center", color="0.3")
        return
    for i in range(learned.shape[1]):
        ax.plot(learned[:, i, 0], learned[:, i, 1], color=c, lw=1.1, gid=f"{method}/learned/{i}")
    ax.scatter(learned[-1, :, 0], learned[-1, :, 1], s=9, color=c, zorder=3)
    ax.scatter(learned[0, :, 0], learned[0, :, 1], s=3, color="black", zorder=4)


def same_noise(k: Kept, exact: Kept | None) -> bool:
    """Whether ``k`` kept the exact cell's x0 (over the points both kept), so that pointwise
    errors compare the same noise."""
    if exact is None or k.x0 is None or exact.x0 is None:
        return False
    n = min(len(k.x0), len(exact.x0))
    return np.array_equal(k.x0[:n], exact.x0[:n])


def figure(learned: dict[str, Kept], exact: Kept | None) -> Figure:
    """Rows: methods; columns: samples at NFE 1, 2, 4 and the trajectory panel."""
    fig = style.figure(len(learned), len(NFES) + 1, panel=1.3, row=1.3)
    axes = fig.subplots(len(learned), len(NFES) + 1, squeeze=False)
    for i, (m, k) in enumerate(learned.items()):
        target = exact.at(1) if same_noise(k, exact) else None
        for j, nfe in enumerate(NFES):
            frame(axes[i, j], f"{m}/nfe{nfe}")
            draw_samples(axes[i, j], k, nfe, target)
        frame(axes[i, -1], f"{m}/traj")
        draw_paths(axes[i, -1], m, k.paths(), exact.paths() if same_noise(k, exact) else None)
        axes[i, 0].set_ylabel(m, fontweight="bold")
    for j, nfe in enumerate(NFES):
        axes[0, j].set_title(f"NFE {nfe}")
    axes[0, -1].set_title(r"$X_{0,t}(x_0)$; exact dashed")
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.02, hspace=0.02)
    return fig


def notes_for(learned: dict[str, Kept], exact: Kept | None) -> list[str]:
    """What the figure cannot show: no exact cell, or cells whose x0 is not the exact one's."""
    seed = next(iter(learned.values())).run.seed
    if exact is None:
        command = f"{run_command(DATASET, FLOOR)} --seeds {seed}"
        return [
            f"{DATASET}: no exact cell at seed {seed}, errors and exact paths left out "
            f"(run: {command})"
        ]
    other = ", ".join(m for m, k in learned.items() if not same_noise(k, exact))
    return (
        [f"{DATASET}: {other} kept another x0 than the exact cell, no error drawn"] if other else []
    )


def make(results: Path, out: Path) -> list[Path]:
    """Write ``flow_map_2d.{pdf,png}`` from the gmm cells' ``samples.npz``."""
    if not (Path(results) / DATASET / "runs").is_dir():
        raise Skip(f"no {DATASET} results under {results} (needs its exact oracle)", run_command())
    kept, notes = kept_cells(results, DATASET)
    exact = kept.pop(FLOOR, None)
    if not kept:
        raise Skip(f"no learned {DATASET} cell kept samples", run_command(DATASET))
    with style.context():
        fig = figure(kept, exact)
        return Made(style.save(fig, out, NAME), {NAME: fig}, notes + notes_for(kept, exact))
