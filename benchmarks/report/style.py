"""One colour and line style per method name, from the registries: the harness's plots and the
paper figures share them, so a method looks the same in every figure."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import matplotlib

from benchmarks.base.rows import BASELINES, FLOOR, is_adaptive, is_baseline, velocity_of
from methods import METHODS

# tab20 without its greys (kept for baselines), dark shades first so neighbours differ in hue,
# then tab20b: room for every registered method
_PALETTE = [("tab20", i) for i in (*range(0, 20, 2), *range(1, 20, 2)) if i not in (14, 15)]
_PALETTE += [("tab20b", i) for i in (*range(0, 20, 4), *range(2, 20, 4), *range(1, 20, 2))]
_VELOCITY_GREY = {"fm": 0.45, "exact": 0.0}
_SOLVER_STYLE = {
    "euler": dict(linestyle="--", marker="o", markersize=4),
    "heun": dict(linestyle="-.", marker="s", markersize=4),
}


def method_color(name: str) -> Any:
    """A colour fixed per name: registered methods in sorted order, baselines in grey/black,
    any other name hashed into the palette's remainder."""
    if name == FLOOR:
        return "black"
    if name in BASELINES:
        return str(_VELOCITY_GREY[velocity_of(name)])
    known = sorted(METHODS)
    spare = max(1, len(_PALETTE) - len(known))
    i = known.index(name) if name in known else len(known) + zlib.crc32(name.encode()) % spare
    cmap, k = _PALETTE[i % len(_PALETTE)]
    return matplotlib.colormaps[cmap](k)


def baseline_style(name: str) -> dict[str, Any]:
    """Plot keywords of a baseline: solvers dashed, adaptive a star, the floor dotted."""
    if name == FLOOR:
        return dict(color="black", linestyle=":", marker="none")
    if is_adaptive(name):
        return dict(color=method_color(name), linestyle="none", marker="*", markersize=12)
    return dict(color=method_color(name), **_SOLVER_STYLE[name.rsplit("-", 1)[1]])


def order(methods: Sequence[str]) -> list[str]:
    """Learned methods (sorted), then the baselines in registry order, then the floor."""
    names = set(methods)
    learned = sorted(m for m in names if not is_baseline(m))
    return learned + [m for m in (*BASELINES, FLOOR) if m in names]
