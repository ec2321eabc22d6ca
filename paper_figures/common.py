"""Results discovery shared by the figure scripts. Nothing here trains or builds a network.

Layout read (written by ``python -m benchmarks.run``): ``<results>/<dataset>/metrics.csv`` and
``<results>/<dataset>/runs/<method>-s<seed>/{config.json, log.jsonl, samples.npz,
convergence.csv}``. Checkpoints (``ckpt.pt``, git-ignored) are never read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from benchmarks.base.rows import is_baseline, read_rows
from benchmarks.report import summarize
from methods import METHODS
from methods.base import FAMILIES

OTHER = "other"  # the panel of method names not in ``methods.METHODS``
PANELS = (*FAMILIES, OTHER)  # the order of per-family panels


class Skip(Exception):
    """A figure's inputs are missing: ``reason`` names what, ``command`` would make it."""

    def __init__(self, reason: str, command: str) -> None:
        super().__init__(reason, command)
        self.reason, self.command = reason, command

    def __str__(self) -> str:
        return f"{self.reason} (run: {self.command})"


class Made(list):
    """The paths a figure wrote, plus its Figures (for inspection) and notes on what it left out."""

    def __init__(self, paths: list[Path], figures: dict[str, Figure], notes: list[str]) -> None:
        super().__init__(paths)
        self.figures, self.notes = figures, notes


def run_command(dataset: str = "gmm", methods: str = "all") -> str:
    """The harness command that makes the results of ``dataset``."""
    return f"python -m benchmarks.run --methods {methods} --dataset {dataset}"


def datasets(results: Path) -> list[str]:
    """Datasets that have a ``metrics.csv`` under ``results``, sorted."""
    return sorted(p.parent.name for p in Path(results).glob("*/metrics.csv"))


def load_rows(results: Path) -> pd.DataFrame:
    """All metrics rows under ``results`` (``note == "n/a"`` kept); Skip when there are none."""
    names = datasets(results)
    if not names:
        raise Skip(f"no metrics under {results} (no <dataset>/metrics.csv)", run_command())
    return pd.concat(
        [read_rows(Path(results) / d / "metrics.csv") for d in names], ignore_index=True
    )


PRIMARY = ("fid", "sw2", "fd_pixel", "w2")  # distribution metrics, the most trusted first


def primary_metric(rows: pd.DataFrame) -> str:
    """The first of ``PRIMARY`` present: fid for images, sw2 on the 2D oracle, fd_pixel on the
    image oracle, w2 on 2D data without an oracle (else the first metric present)."""
    present = set(rows["metric"])
    return next((m for m in PRIMARY if m in present), min(present))


def metrics_of(rows: pd.DataFrame) -> list[str]:
    """The metrics of one dataset's rows: the primary one first, then the others sorted."""
    first = primary_metric(rows)
    return [first] + sorted(set(rows["metric"]) - {first})


def cells(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``benchmarks.report.summarize`` of one metric, only cells with a finite value.

    n/a cells, cells whose every seed failed, and diverged samplers (``inf``) are dropped.
    """
    s = summarize(rows[rows["metric"] == metric])
    keep = ~s["na"] & (s["n"] > 0) & s["mean"].abs().lt(float("inf"))
    return s[keep].reset_index(drop=True)


def family(method: str) -> str:
    """The panel a method is drawn in: its ``Method.family``, or "other" for unknown names."""
    cls = METHODS.get(method)
    return cls.family if cls is not None else OTHER


def panels(methods: list[str]) -> list[str]:
    """The families of the learned ``methods`` (baselines and the floor ignored), in ``PANELS``
    order; [] when none is learned."""
    present = {family(m) for m in methods if not is_baseline(m)}
    return [f for f in PANELS if f in present]


@dataclass(frozen=True)
class Run:
    """One cell directory ``<method>-s<seed>``."""

    method: str
    seed: int
    path: Path

    def config(self) -> dict:
        """The cell's ``config.json`` as stored ({} when missing or unreadable)."""
        try:
            return json.loads((self.path / "config.json").read_text())
        except (OSError, ValueError):
            return {}


def runs(results: Path, dataset: str) -> list[Run]:
    """Every run directory of ``dataset``, sorted by (method, seed)."""
    found = []
    for d in sorted((Path(results) / dataset / "runs").glob("*-s*")):
        name, _, seed = d.name.rpartition("-s")
        if d.is_dir() and seed.isdigit():
            found.append(Run(name, int(seed), d))
    return sorted(found, key=lambda r: (r.method, r.seed))


def rerun_command(dataset: str, cells: list[Run]) -> str:
    """The harness command that redoes these cells, at the budget in their config.json."""
    budget = (cells[0].config().get("budget") if cells else None) or "small"
    names = ",".join(sorted({r.method for r in cells}))
    seeds = ",".join(str(s) for s in sorted({r.seed for r in cells}))
    return f"{run_command(dataset, names)} --budget {budget} --seeds {seeds} --force"
