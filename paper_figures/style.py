"""One look for every paper figure: fonts, sizes, and each method's colour and line style.

Colours, baseline line styles and method order come from :mod:`benchmarks.report.style`, the
mapping the harness's own plots use, so a method looks the same in every figure of the project;
this module adds only the paper's fonts and sizes and a marker per learned method (a second cue
that survives grey-scale print). Files are written without a creation date, so regenerating a
figure from unchanged results rewrites identical bytes.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
from matplotlib.transforms import offset_copy

from benchmarks.base.atomic import atomic_open
from benchmarks.base.rows import FLOOR, is_baseline
from benchmarks.report.plots import NO_DATE
from benchmarks.report.style import baseline_style, method_color
from benchmarks.report.style import order as method_order
from methods import METHODS

EXACT, KNOWN_METHODS = FLOOR, tuple(sorted(METHODS))

TEXT_WIDTH = 6.75  # inches: a two-column paper's full text width
RC: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.4,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42,  # TrueType in the PDF: editable text, accepted by publishers
    "ps.fonttype": 42,
}
#: markers of learned methods (after the colour, a second cue that survives grey-scale print)
MARKERS = ("o", "v", "^", "<", ">", "*", "s", "D", "d", "P", "8", "p", "h", "H", "X")


@contextlib.contextmanager
def context() -> Iterator[None]:
    """Apply the paper rc settings (figures are built and saved inside this context)."""
    with matplotlib.rc_context(RC):
        yield


def color(method: str) -> Any:
    """The method's colour: :func:`benchmarks.report.method_color`, never redefined here."""
    return method_color(method)


def marker(method: str) -> str:
    """A marker fixed per learned method name (known names in order, others by hash)."""
    known = sorted(KNOWN_METHODS)
    i = known.index(method) if method in known else zlib.crc32(method.encode())
    return MARKERS[i % len(MARKERS)]


def line_style(method: str, thin: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``Axes.plot``: a baseline's :func:`baseline_style` (``thin``: as a
    light reference line), a learned method solid in its colour with its marker."""
    if is_baseline(method):
        kw = baseline_style(method)
        if thin:
            kw |= dict(linewidth=0.8, markersize=8 if kw.get("marker") == "*" else 2.5)
        return kw
    return dict(color=color(method), marker=marker(method), markersize=3.5)


def order(methods: Iterable[str]) -> list[str]:
    """:func:`benchmarks.report.style.order`: learned methods sorted, baselines, then the floor."""
    return method_order(list(methods))


def band(ax: Axes, x: Any, mean: Any, std: Any, method: str) -> None:
    """The spread over seeds: mean +- std shaded in the method's colour (gid "<method>/band");
    a lone point gets an error bar instead. Nothing is drawn where std is 0 or unknown."""
    x, mean, std = (np.asarray(v, dtype=float) for v in (x, mean, std))
    std = np.nan_to_num(std)
    if not (std > 0).any():
        return
    if len(x) == 1:
        bars = ax.errorbar(
            x, mean, yerr=std, fmt="none", ecolor=color(method), capsize=2, elinewidth=0.8
        )
        bars.lines[2][0].set_gid(f"{method}/band")
        return
    ax.fill_between(
        x,
        mean - std,
        mean + std,
        color=color(method),
        alpha=0.18,
        linewidth=0,
        gid=f"{method}/band",
    )


def is_learned(method: str) -> bool:
    """Whether ``method`` is a trained method (not a teacher solve or the exact floor)."""
    return not is_baseline(method)


def nfe_axis(ax: Axes, nfes: Sequence[float]) -> None:
    """Log-2 NFE axis, a plain tick label at every power of two over the NFEs present."""
    ax.set_xscale("log", base=2)
    pos = [n for n in nfes if n > 0] or [1.0]
    lo, hi = int(np.floor(np.log2(min(pos)))), int(np.ceil(np.log2(max(pos))))
    ax.xaxis.set_major_locator(FixedLocator([2.0**k for k in range(lo, hi + 1)]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("NFE")


def _two_five(y: float, _pos: int | None = None) -> str:
    """Minor log tick label: only at 2 x 10^k and 5 x 10^k."""
    mantissa = y / 10 ** math.floor(math.log10(y)) if y > 0 else 0.0
    return f"{y:g}" if round(mantissa, 6) in (2.0, 5.0) else ""


def log_axis(axis: Axis, values: Iterable[float]) -> None:
    """Plain number labels on a log axis, plus 2 and 5 x 10^k when it spans < ~2.5 decades."""
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=float)
    axis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    if len(v) and v.max() < 300 * v.min():
        axis.set_minor_formatter(FuncFormatter(_two_five))


def maybe_log_y(ax: Axes, values: Iterable[float]) -> None:
    """Log y when all values are positive and span more than a factor of ten."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) and (v > 0).all() and v.max() > 10 * v.min():
        ax.set_yscale("log")
        log_axis(ax.yaxis, v)


def figure(nrows: int, ncols: int, panel: float = 3.2, row: float = 2.2) -> Figure:
    """A constrained-layout Figure (not pyplot: nothing global, nothing left open).

    ``panel`` inches per column, capped at the text width; ``row`` inches per row.
    """
    width = min(TEXT_WIDTH, 0.3 + panel * ncols)
    return Figure(figsize=(width, row * nrows), layout="constrained")


def legend(fig: Figure, axes: Iterable[Axes], ncol: int | None = None) -> None:
    """One figure legend below the panels, one entry per label, in method order."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    if not handles:
        return
    names = order(handles)
    fig.legend(
        [handles[n] for n in names],
        names,
        loc="outside lower center",
        ncol=ncol or _balanced(len(names), max(1, int(fig.get_figwidth() / 0.85))),
        handlelength=2.2,
        columnspacing=1.2,
    )


def family_legends(fig: Figure, axes: np.ndarray, columns: Sequence[str | None]) -> None:
    """Per-family small multiples: each column's learned methods in a legend under its bottom
    panel (``None`` columns get none); baselines and the floor in one legend above the panels."""
    refs: dict[str, Any] = {}
    for j, panel in enumerate(columns):
        mine: dict[str, Any] = {}
        for ax in axes[:, j]:
            for h, n in zip(*ax.get_legend_handles_labels()):
                (mine if is_learned(n) else refs).setdefault(n, h)
        if mine and panel is not None:
            names = sorted(mine)
            ax = axes[-1, j]  # 30 pt under the axes: below tick labels and x label at any height
            below = offset_copy(ax.transAxes, fig=fig, y=-30, units="points")
            ax.legend(
                [mine[n] for n in names],
                names,
                loc="upper center",
                bbox_to_anchor=(0.5, 0),
                bbox_transform=below,
                ncol=2 if len(names) > 3 else 1,
                fontsize=6.5,
                handlelength=1.8,
            )
    if refs:
        names = order(refs)
        fig.legend(
            [refs[n] for n in names],
            names,
            loc="outside upper center",
            ncol=len(names),
            fontsize=6.5,
            handlelength=2.0,
        )


def _balanced(n: int, most: int) -> int:
    """Columns for n legend entries, at most ``most``, with rows as evenly filled as possible."""
    return math.ceil(n / math.ceil(n / most))


def save(fig: Figure, out: Path, stem: str) -> list[Path]:
    """Write ``out/stem.pdf`` and ``out/stem.png`` atomically, without a creation date
    (``benchmarks.report.plots.NO_DATE``); returns both paths."""
    paths = [Path(out) / f"{stem}.pdf", Path(out) / f"{stem}.png"]
    for p in paths:
        ext = p.suffix[1:]
        with atomic_open(p, "wb") as f:
            fig.savefig(f, format=ext, metadata=NO_DATE[ext])
    return paths
