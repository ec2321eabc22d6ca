"""Results discovery and model loading shared by the figure scripts. Nothing here trains.

Layout read (written by ``python -m benchmarks.run``): ``<results>/<dataset>/metrics.csv`` and
``<results>/<dataset>/runs/<method>-s<seed>/{config.json, log.jsonl, ckpt.pt, train.json}``.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from benchmarks.config import RunConfig, apply_updates
from benchmarks.factory import model as build_model
from benchmarks.report import summarize
from benchmarks.rows import read_rows
from methods import METHODS, Method, build_config
from unify import FlowMap, make_interpolant

NOISE_SEED = 1234  # every samples cell of every method starts from this noise
SHAPES = {"gmm": (2,), "checkerboard": (2,), "cifar10": (3, 32, 32), "imagenet32": (3, 32, 32)}


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


def primary_metric(rows: pd.DataFrame) -> str:
    """fid for image datasets, w2 for 2D ones (else the first metric present)."""
    present = set(rows["metric"])
    return next((m for m in ("fid", "w2") if m in present), min(present))


def cells(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``benchmarks.report.summarize`` of one metric, only cells with a value (n/a dropped)."""
    s = summarize(rows[rows["metric"] == metric])
    return s[~s["na"] & (s["n"] > 0)].reset_index(drop=True)


@dataclass(frozen=True)
class Run:
    """One cell directory ``<method>-s<seed>``."""

    method: str
    seed: int
    path: Path

    @property
    def ckpt(self) -> Path:
        return self.path / "ckpt.pt"


def runs(results: Path, dataset: str) -> list[Run]:
    """Every run directory of ``dataset``, sorted by (method, seed)."""
    found = []
    for d in sorted((Path(results) / dataset / "runs").glob("*-s*")):
        name, _, seed = d.name.rpartition("-s")
        if d.is_dir() and seed.isdigit():
            found.append(Run(name, int(seed), d))
    return sorted(found, key=lambda r: (r.method, r.seed))


def checkpoint_runs(results: Path, dataset: str) -> tuple[list[Run], list[str]]:
    """The lowest-seed run with a checkpoint per learned method; notes for those without one."""
    chosen: dict[str, Run] = {}
    lacking: dict[str, Run] = {}
    for r in runs(results, dataset):
        if r.method not in METHODS:
            continue  # exact floor (no network), or a method no longer registered
        if r.ckpt.is_file():
            chosen.setdefault(r.method, r)
        else:
            lacking.setdefault(r.method, r)
    notes = [
        f"{dataset}/{m}: no checkpoint (ckpt.pt is git-ignored; rerun: {rerun_command(dataset, [r])})"
        for m, r in sorted(lacking.items())
        if m not in chosen
    ]
    return [chosen[m] for m in sorted(chosen)], notes


def checkpoint_command(results: Path, dataset: str) -> str:
    """What makes checkpoints for ``dataset``: redo its runs that lack one, or the default run."""
    lacking = [r for r in runs(results, dataset) if r.method in METHODS and not r.ckpt.is_file()]
    return rerun_command(dataset, lacking) if lacking else run_command(dataset)


def rerun_command(dataset: str, cells: list[Run]) -> str:
    """The harness command that redoes these cells, at the budget in their config.json."""
    try:
        budget = json.loads((cells[0].path / "config.json").read_text()).get("budget", "small")
    except (OSError, ValueError):
        budget = "small"
    names = ",".join(sorted({r.method for r in cells}))
    seeds = ",".join(str(s) for s in sorted({r.seed for r in cells}))
    return f"{run_command(dataset, names)} --budget {budget} --seeds {seeds} --force"


def read_config(run_dir: Path) -> tuple[RunConfig, int]:
    """A cell's RunConfig (rebuilt and type-checked from config.json) and its seed."""
    d = json.loads((Path(run_dir) / "config.json").read_text())
    seed = int(d.pop("seed", 0))
    return apply_updates(RunConfig(), d), seed


def data_shape(cfg: RunConfig) -> tuple[int, ...]:
    """Per-sample shape of the dataset, without loading the data (an npz only reads its header)."""
    if cfg.dataset in SHAPES:
        return SHAPES[cfg.dataset]
    path = Path(cfg.data_root)
    path = path if path.is_file() else next(path.glob("*.npz"))
    with zipfile.ZipFile(path) as z, z.open("images.npy") as f:
        fmt = np.lib.format
        v1 = fmt.read_magic(f) == (1, 0)
        header = (fmt.read_array_header_1_0 if v1 else fmt.read_array_header_2_0)(f)
        _, h, w, c = header[0]  # (N, H, W, C)
    return (c, h, w)


class NoTeacher:
    """Stands in for the teacher of a distillation method: samplers never call it."""

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        raise RuntimeError("a method's sampler called its teacher; paper_figures has none")

    def step(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        raise RuntimeError("a method's sampler called its teacher; paper_figures has none")


@dataclass
class Loaded:
    """A cell's EMA network and its method, ready to sample."""

    run: Run
    cfg: RunConfig
    fm: FlowMap
    method: Method


def load_run(run: Run) -> Loaded:
    """Rebuild the cell's network from config.json, load ``ckpt["ema"]``, build its method.

    A distillation method gets :class:`NoTeacher` (its sampler does not use a teacher), and its
    own state (e.g. PD's current stage, which decides the NFE it supports) is restored.
    """
    cfg, _ = read_config(run.path)
    fm = build_model(cfg, data_shape(cfg))
    state = torch.load(run.ckpt, map_location="cpu", weights_only=False)
    fm.load_state_dict(state["ema"])
    fm.requires_grad_(False).eval()
    cls = METHODS[run.method]
    teacher = NoTeacher() if cls.needs_teacher else None
    method = cls(
        build_config(cls, cfg.method.get(run.method)), make_interpolant(cfg.interpolant), teacher
    )
    method.setup(fm, cfg.train.steps)
    if state.get("method"):
        method.load_state_dict(state["method"])
    return Loaded(run, cfg, fm, method)


def load_runs(chosen: list[Run]) -> tuple[list[Loaded], list[str]]:
    """``load_run`` for each run; one that cannot be loaded becomes a note naming it and why."""
    loaded, notes = [], []
    for r in chosen:
        try:
            loaded.append(load_run(r))
        except Exception as e:  # any unreadable or mismatched checkpoint: name it, go on
            notes.append(f"{r.path}: checkpoint not loadable, left out ({type(e).__name__}: {e})")
    return loaded, notes


def noise(shape: tuple[int, ...], n: int, seed: int = NOISE_SEED) -> Tensor:
    """The fixed noise batch x0 (n, *shape) shared by every method and NFE."""
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def sample(m: Loaded, x0: Tensor, nfe: int, seed: int = NOISE_SEED) -> Tensor | None:
    """The method's own sampler at ``nfe`` from ``x0`` (None where it is not applicable)."""
    if not m.method.supports(nfe):
        return None
    gen = torch.Generator().manual_seed(seed + 1)  # stochastic samplers (CM multistep) reuse it
    with torch.inference_mode():
        return m.method.sample(m.fm, x0, nfe, generator=gen).float()


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` intra-op threads, then restore. Small 2D batches are many times faster
    on one thread than on a few contended ones (thread wake-ups dominate tiny ops)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
