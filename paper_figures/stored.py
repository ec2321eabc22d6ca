"""What the cells kept of their samples (``samples.npz``), read without building any model.

``benchmarks.evaluation.evaluate.Evaluation.save`` writes, per cell: ``x0`` (2D: the first evaluation
noises, identical across the cells of one seed), ``nfe<k>`` (the method's own sampler at NFE k
from that noise: float16 points or uint8 images (N, C, H, W)), and for 2D ``paths`` (trajectories
t -> X_{0,t}(x0[:n]), time-major) at ``path_times``. The exact cell keeps ``nfe1`` = X*_{0,1}(x0).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.base.rows import FLOOR
from benchmarks.evaluation.evaluate import SAMPLES
from benchmarks.evaluation.metrics import flowmap_err
from benchmarks.report.style import order
from paper_figures.common import Run, Skip, rerun_command, run_command, runs


@dataclass(frozen=True)
class Kept:
    """The arrays of one cell's ``samples.npz``."""

    run: Run
    arrays: dict[str, np.ndarray]

    def at(self, nfe: int) -> np.ndarray | None:
        """The samples at ``nfe`` (float32 points or uint8 images), None when not kept."""
        x = self.arrays.get(f"nfe{nfe}")
        return None if x is None else x if x.dtype == np.uint8 else x.astype(np.float32)

    @property
    def image(self) -> bool:
        """Whether the kept samples are images (N, C, H, W)."""
        return any(k.startswith("nfe") and v.ndim == 4 for k, v in self.arrays.items())

    @property
    def x0(self) -> np.ndarray | None:
        """The kept evaluation noise (2D only; image cells keep none)."""
        x = self.arrays.get("x0")
        return None if x is None else x.astype(np.float32)

    def paths(self) -> np.ndarray | None:
        """(T, n, 2) trajectories X_{0,t}(x0[:n]) at ``path_times``, None when not kept."""
        if "paths" not in self.arrays or "path_times" not in self.arrays:
            return None
        times = len(self.arrays["path_times"])
        return self.arrays["paths"].astype(np.float32).reshape(times, -1, 2)

    def evaluated(self) -> list[int] | None:
        """The NFEs the cell was scored at (config.json ``eval.nfe``), None when unknown."""
        nfe = self.run.config().get("eval", {}).get("nfe")
        return [int(n) for n in nfe] if isinstance(nfe, list) else None

    def absent(self, nfe: int) -> str:
        """Why nothing is kept at ``nfe``: "not run" when eval.nfe lacks it, else "n/a"."""
        evaluated = self.evaluated()
        return "not run" if evaluated is not None and nfe not in evaluated else "n/a"


def read_kept(run: Run) -> Kept | None:
    """A cell's ``samples.npz`` (None when it has none)."""
    path = run.path / SAMPLES
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return Kept(run, {k: z[k] for k in z.files})


def error(x: np.ndarray, target: np.ndarray) -> float:
    """``benchmarks.evaluation.metrics.flowmap_err`` of stored points against the exact map's."""
    return flowmap_err(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(target))


def shown_seed(found: list[Run]) -> int:
    """The seed whose cells kept the most samples (lowest on a tie): one noise for all rows."""
    counts = Counter(r.seed for r in found if (r.path / SAMPLES).is_file())
    return min(counts, key=lambda s: (-counts[s], s))


def kept_cells(results: Path, dataset: str) -> tuple[dict[str, Kept], list[str]]:
    """The kept samples of ``dataset``, one cell per method, all of one seed, in method order
    (the exact floor first); notes name the cells of that seed without ``samples.npz``.

    Skip (naming the command that makes them) when no cell of ``dataset`` kept samples.
    """
    found = runs(results, dataset)
    if not any((r.path / SAMPLES).is_file() for r in found):
        where = Path(results) / dataset / "runs"
        command = rerun_command(dataset, found) if found else run_command(dataset)
        raise Skip(f"no {SAMPLES} under {where}", command)
    seed = shown_seed(found)
    of_seed = {r.method: r for r in found if r.seed == seed}
    kept = {m: read_kept(r) for m, r in of_seed.items()}
    lacking = [of_seed[m] for m in sorted(of_seed) if kept[m] is None]
    notes = []
    if lacking:
        names = ", ".join(r.method for r in lacking)
        notes.append(
            f"{dataset}: no {SAMPLES} for {names} at seed {seed}, left out "
            f"(rerun: {rerun_command(dataset, lacking)})"
        )
    names = order([m for m in kept if kept[m] is not None and m != FLOOR])
    first = [FLOOR] if kept.get(FLOOR) is not None else []
    return {m: kept[m] for m in first + names}, notes
