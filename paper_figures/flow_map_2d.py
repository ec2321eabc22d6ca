"""Figure 3: on ``gmm``, each learned flow map against the exact one (rows: methods).

Columns 1-3: the method's samples at NFE 1, 2, 4 from the shared noise, over the true data
density p_1 (``GaussianMixture.log_prob`` at t = 1, grey); the corner number is the flow-map
error (mean distance to the exact X_{0,1} of the same noise). Column 4: trajectories
t -> X_{0,t}(x0) of a few points, the learned map (method colour, one jump per time) against the
exact map (``oracle.flow_map``, dashed black); start points are black dots. Axes gids:
"<method>/nfe<k>" and "<method>/traj"; trajectory lines: "<method>/learned/<i>", "exact/<i>".
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from benchmarks.datasets import gmm_oracle
from benchmarks.metrics import flowmap_err
from paper_figures import style
from paper_figures.common import (
    Loaded,
    Made,
    Skip,
    checkpoint_command,
    checkpoint_runs,
    load_runs,
    noise,
    run_command,
    threads,
)
from paper_figures.common import sample as sample_cell
from unify import Interpolant, make_interpolant
from unify.exact import GaussianMixture

NAME = "flow_map_2d"
DATASET = "gmm"
NFES = (1, 2, 4)
N_POINTS, N_PATHS, N_TIMES = 1000, 10, 21
LIM = 6.0
RTOL = 1e-5  # exact map: max error ~1e-4 on the plot's scale of 10


@functools.cache
def _density(interpolant: str, n: int = 200) -> np.ndarray:
    """p_1 of the gmm oracle on an n x n grid over [-LIM, LIM]^2 (rows: y)."""
    g = torch.linspace(-LIM, LIM, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    one = torch.ones(len(pts), dtype=torch.float64)
    return gmm_oracle().log_prob(pts, one, make_interpolant(interpolant)).exp().view(n, n).numpy()


def density(ax: Axes, interpolant: str) -> None:
    """The true data density p_1 (``log_prob`` at t = 1) as a grey image under the points."""
    p = _density(interpolant)
    extent = (-LIM, LIM, -LIM, LIM)
    ax.imshow(p, extent=extent, origin="lower", cmap="Greys", vmax=1.6 * p.max(), zorder=0)


def exact_paths(oracle: GaussianMixture, x0: Tensor, times: Tensor, interp: Interpolant) -> Tensor:
    """(T, n, 2): X*_{0,t}(x0) at each of ``times`` (from 0), chained X*_{t_k,t_k+1} solves."""
    x, out = x0.double(), [x0.double()]
    one = torch.ones(len(x0), dtype=torch.float64)
    for s, t in zip(times[:-1].tolist(), times[1:].tolist()):
        x = oracle.flow_map(x, s * one, t * one, interp, rtol=RTOL)
        out.append(x)
    return torch.stack(out).float()


def learned_paths(m: Loaded, x0: Tensor, times: Tensor) -> Tensor:
    """(T, n, 2): the learned X_{0,t}(x0), one network call per time."""
    zero = torch.zeros(len(x0))
    with torch.inference_mode():
        return torch.stack([m.fm(x0, zero, zero + float(t)) for t in times]).float()


def _frame(ax: Axes, gid: str) -> None:
    ax.set_gid(gid)
    ax.set(xlim=(-LIM, LIM), ylim=(-LIM, LIM), aspect="equal", xticks=[], yticks=[])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set(visible=True, color="0.7", linewidth=0.5)


def draw_paths(ax: Axes, m: Loaded, learned: Tensor, exact: Tensor) -> None:
    """Learned trajectories (method colour) over the exact ones (dashed black)."""
    c = style.color(m.run.method)
    for i in range(learned.shape[1]):
        ax.plot(exact[:, i, 0], exact[:, i, 1], "--", color="black", lw=0.8, gid=f"exact/{i}")
        ax.plot(
            learned[:, i, 0], learned[:, i, 1], color=c, lw=1.1, gid=f"{m.run.method}/learned/{i}"
        )
    ax.scatter(exact[-1, :, 0], exact[-1, :, 1], marker="x", s=12, color="black", lw=0.8)
    ax.scatter(learned[-1, :, 0], learned[-1, :, 1], s=9, color=c, zorder=3)
    ax.scatter(learned[0, :, 0], learned[0, :, 1], s=3, color="black", zorder=4)


def figure(loaded: list[Loaded]) -> Figure:
    """Rows: methods; columns: samples at NFE 1, 2, 4 and the trajectory panel."""
    oracle, interp = gmm_oracle(), make_interpolant(loaded[0].cfg.interpolant)
    x0 = noise((2,), N_POINTS)
    one = torch.ones(N_POINTS, dtype=torch.float64)
    target = oracle.flow_map(x0.double(), 0 * one, one, interp, rtol=RTOL).float()
    times = torch.linspace(0, 1, N_TIMES)
    exact = exact_paths(oracle, x0[:N_PATHS], times, interp)
    fig = style.figure(len(loaded), len(NFES) + 1, panel=1.3, row=1.3)
    axes = fig.subplots(len(loaded), len(NFES) + 1, squeeze=False)
    for i, m in enumerate(loaded):
        c = style.color(m.run.method)
        for j, nfe in enumerate(NFES):
            ax = axes[i, j]
            _frame(ax, f"{m.run.method}/nfe{nfe}")
            density(ax, m.cfg.interpolant)
            x = sample_cell(m, x0, nfe)
            if x is None:
                ax.text(0, 0, "n/a", ha="center", va="center", color="0.3")
                continue
            ax.scatter(x[:, 0], x[:, 1], s=0.8, color=c, linewidths=0, rasterized=True)
            err = flowmap_err(x, target)
            ax.text(0.03, 0.97, f"err {err:.2f}", transform=ax.transAxes, va="top", fontsize=6.5,
                    bbox=dict(boxstyle="square,pad=0.15", fc="white", ec="none", alpha=0.8))  # fmt: skip
        ax = axes[i, -1]
        _frame(ax, f"{m.run.method}/traj")
        density(ax, m.cfg.interpolant)
        draw_paths(ax, m, learned_paths(m, x0[:N_PATHS], times), exact)
        axes[i, 0].set_ylabel(m.run.method, fontweight="bold")
    for j, nfe in enumerate(NFES):
        axes[0, j].set_title(f"NFE {nfe}")
    axes[0, -1].set_title(r"$X_{0,t}(x_0)$; exact dashed")
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.02, hspace=0.02)
    return fig


def make(results: Path, out: Path) -> list[Path]:
    """Write ``flow_map_2d.{pdf,png}`` from the gmm checkpoints."""
    runs_dir = Path(results) / DATASET / "runs"
    if not runs_dir.is_dir():
        raise Skip(f"no {DATASET} results under {results} (needs its exact oracle)", run_command())
    chosen, notes = checkpoint_runs(results, DATASET)
    if not chosen:
        raise Skip(f"no checkpoints under {runs_dir}", checkpoint_command(results, DATASET))
    with style.context(), threads(1):
        loaded, bad = load_runs(chosen)
        if not loaded:
            raise Skip(f"no loadable checkpoints under {runs_dir}", run_command(DATASET))
        fig = figure(loaded)
        return Made(style.save(fig, out, NAME), {NAME: fig}, notes + bad)
