"""Figure 2: for the same noise, each method's samples (rows) at a few NFEs (columns).

Drawn from each cell's ``samples.npz`` alone, all cells of one seed (the seed with the most cells
that kept samples), so every row starts from the same evaluation noise. The first row, when the
dataset has an exact cell, is the exact one-step map X*_{0,1}(x0) ("exact map", its NFE-1 column
only). 2D datasets: columns NFE 1, 2, 4, 8, each a scatter of the kept points in the method's
colour over the exact map's points (light grey). Image datasets: columns NFE 1 and 4, each a
4x4 mosaic of the first kept images (2x2 when fewer than 16 were kept); on an oracle image set
(cifar-gmm) the figure reads "the exact one-step map beside each method's NFE-1 and NFE-4
samples". A cell the method cannot sample is blank with "n/a" ("not run" when its NFE was not in
the cell's ``eval.nfe``); columns no cell kept are left out (a note says which). One file per
dataset: ``samples_<dataset>``; each cell's Axes has ``gid`` = "<method>/nfe<k>".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from benchmarks.base.rows import FLOOR
from paper_figures import style
from paper_figures.common import Made, Skip, run_command
from paper_figures.stored import Kept, kept_cells

NAME = "samples"
NFES_2D = (1, 2, 4, 8)
NFES_IMAGE = (1, 4)
MOSAIC = 4  # images: at most a MOSAIC x MOSAIC mosaic per cell
EXACT_LABEL = "exact map"


def mosaic(images: np.ndarray, side: int) -> np.ndarray:
    """The first side^2 uint8 images (N, C, H, W) as a (side H, side W, C) mosaic (C = 1 squeezed)."""
    c, h, w = images.shape[1:]
    u = images[: side * side].reshape(side, side, c, h, w)
    grid = u.transpose(0, 3, 1, 4, 2).reshape(side * h, side * w, c)
    return grid[..., 0] if c == 1 else grid


def mosaic_side(kept: dict[str, Kept]) -> int:
    """The largest side in (MOSAIC, 2, 1) that every cell's kept images can fill."""
    n = min(len(x) for k in kept.values() for key, x in k.arrays.items() if key.startswith("nfe"))
    return next(s for s in (MOSAIC, 2, 1) if s * s <= n)


def blank(ax: Axes, text: str) -> None:
    """An empty cell with a centred note (n/a, not run)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def columns(kept: dict[str, Kept], image: bool) -> list[int]:
    """The NFE columns: those of ``NFES_2D``/``NFES_IMAGE`` some method kept (at least NFE 1)."""
    wanted = NFES_IMAGE if image else NFES_2D
    learned = [k for m, k in kept.items() if m != FLOOR]
    return [n for n in wanted if any(k.at(n) is not None for k in learned)] or [wanted[0]]


def limit(kept: dict[str, Kept], nfes: list[int], ref: np.ndarray | None) -> float:
    """2D half-width: 1.1 x the exact map's largest |coordinate|, else 1.15 x the 99.5th
    percentile of all kept points (a diverged method does not zoom the figure out)."""
    if ref is not None:
        return 1.1 * float(np.abs(ref).max())
    points = [x for k in kept.values() for n in nfes if (x := k.at(n)) is not None]
    return 1.15 * float(np.quantile(np.abs(np.concatenate(points)), 0.995))


def frame(ax: Axes, gid: str, lim: float | None) -> None:
    """No ticks or grid, a light frame; square limits for 2D."""
    ax.set_gid(gid)
    ax.set(xticks=[], yticks=[])
    ax.grid(False)
    if lim is not None:
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    for spine in ax.spines.values():
        spine.set(visible=True, color="0.7", linewidth=0.5)


def draw_cell(ax: Axes, k: Kept, nfe: int, ref: np.ndarray | None, side: int) -> None:
    """One cell: the kept samples at ``nfe`` as a scatter over ``ref`` or an image mosaic."""
    x = k.at(nfe)
    if x is None:
        blank(ax, k.absent(nfe))
    elif x.ndim == 4:
        ax.imshow(
            mosaic(x, side), cmap="gray" if x.shape[1] == 1 else None, interpolation="nearest"
        )
    else:
        if ref is not None and k.run.method != FLOOR:
            ax.scatter(ref[:, 0], ref[:, 1], s=1, color="0.85", rasterized=True, linewidths=0)
        ax.scatter(
            x[:, 0], x[:, 1], s=0.8, color=style.color(k.run.method), rasterized=True, linewidths=0
        )


def figure(kept: dict[str, Kept], nfes: list[int]) -> Figure:
    """Methods (rows, the exact map first) x ``nfes`` (columns) of the kept samples."""
    image = any(k.image for k in kept.values())
    ref = None if image or FLOOR not in kept else kept[FLOOR].at(1)
    lim = None if image else limit(kept, nfes, ref)
    side = mosaic_side(kept) if image else 0
    cell = 1.0 if image else 1.15
    fig = style.figure(len(kept), len(nfes), panel=cell, row=cell)
    axes = fig.subplots(len(kept), len(nfes), squeeze=False)
    for i, (m, k) in enumerate(kept.items()):
        for j, nfe in enumerate(nfes):
            ax = axes[i, j]
            frame(ax, f"{m}/nfe{nfe}", lim)
            if m == FLOOR and j > 0:
                ax.set_axis_off()  # one exact map: its NFE-1 column only
                continue
            draw_cell(ax, k, nfe, ref, side)
        axes[i, 0].set_ylabel(EXACT_LABEL if m == FLOOR else m, fontweight="bold")
    for j, nfe in enumerate(nfes):
        axes[0, j].set_title(f"NFE {nfe}")
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.02, hspace=0.02)
    return fig


def make(results: Path, out: Path) -> list[Path]:
    """Write ``samples_<dataset>.{pdf,png}`` for every dataset whose cells kept samples."""
    found = sorted(p.parent.name for p in Path(results).glob("*/runs"))
    paths, figures, notes, skips = [], {}, [], []
    for d in found:
        try:
            kept, lacking = kept_cells(results, d)
        except Skip as e:
            skips.append(e)
            continue
        image = any(k.image for k in kept.values())
        nfes = columns(kept, image)
        dropped = [n for n in (NFES_IMAGE if image else NFES_2D) if n not in nfes]
        if dropped:
            notes.append(f"{d}: no cell kept NFE {', '.join(map(str, dropped))}, columns left out")
        with style.context():
            figures[f"{NAME}_{d}"] = figure(kept, nfes)
            paths += style.save(figures[f"{NAME}_{d}"], out, f"{NAME}_{d}")
        notes += lacking
    if not paths:
        if len(skips) == 1:
            raise skips[0]
        command = skips[0].command if skips else run_command()
        raise Skip(f"no samples.npz under {results}/<dataset>/runs", command)
    return Made(paths, figures, notes + [str(e) for e in skips])
