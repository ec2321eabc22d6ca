"""One look for every paper figure: fonts, sizes, line styles and one colour per method.

Colours come from :func:`benchmarks.report.method_color`, the same mapping the harness's own
plots use, so a method has one colour in every figure of the project.
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

from benchmarks.report.style import method_color
from benchmarks.rows import ADAPTIVE_SOLVER, BASELINES, FLOOR, is_baseline
from methods import METHODS

ADAPTIVE, EXACT, KNOWN_METHODS = f"fm-{ADAPTIVE_SOLVER}", FLOOR, tuple(sorted(METHODS))

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
_TEACHER_STYLE = {
    "fm-euler": dict(linestyle="--", marker="o", markersize=3.5, linewidth=1.1),
    "fm-heun": dict(linestyle="--", marker="s", markersize=3.5, linewidth=1.1),
    ADAPTIVE: dict(linestyle="none", marker="*", markersize=11, zorder=5),
    EXACT: dict(linestyle=":", linewidth=1.2, marker="none"),
}


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


def line_style(method: str) -> dict[str, Any]:
    """Keyword arguments for ``Axes.plot``: teachers dashed/starred, learned methods solid."""
    base = dict(color=color(method), marker=marker(method), markersize=3.5)
    return base | _TEACHER_STYLE.get(method, {})


def order(methods: Iterable[str]) -> list[str]:
    """Learned methods sorted by name, then the teacher baselines, then the exact floor."""
    names = set(methods)
    learned = sorted(m for m in names if not is_baseline(m))
    return learned + [m for m in (*BASELINES, FLOOR) if m in names]


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


def _balanced(n: int, most: int) -> int:
    """Columns for n legend entries, at most ``most``, with rows as evenly filled as possible."""
    return math.ceil(n / math.ceil(n / most))


def save(fig: Figure, out: Path, stem: str) -> list[Path]:
    """Write ``out/stem.pdf`` and ``out/stem.png``; returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.pdf", out / f"{stem}.png"]
    for p in paths:
        fig.savefig(p)
    return paths
