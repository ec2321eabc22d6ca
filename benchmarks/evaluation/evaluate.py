"""Evaluation: sample at every NFE with a method's own sampler, score, keep what was scored.

Every method of a seed starts from the same noise x0. An :class:`Evaluation` holds the metrics
rows ``{method, nfe, metric, value, n_samples, sample_seconds, note}`` (``note == "n/a"``: an NFE
the method cannot do) and a small part of what was scored, written beside the rows: for 2D sets
the first ``KEEP_POINTS`` samples per NFE and a few trajectories t -> X_{0,t}(x0); for images the
first ``KEEP_IMAGES`` samples per NFE and an 8x8 grid PNG. The paper figures draw from these.
A stop request (``benchmarks.base.stop``) is honoured between NFEs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from benchmarks.base import stop
from benchmarks.base.atomic import atomic_open
from benchmarks.base.rows import ADAPTIVE_SOLVER, FIXED_BASELINES, NA, STEP_COST, baseline
from benchmarks.data.loaders import to_uint8
from benchmarks.evaluation.scorer import Scorer
from methods.base import Method
from unify.flowmap import FlowMap
from unify.ode import solve

Sampler = Callable[[Tensor], tuple[Tensor, int]]  # x0 batch -> (samples, counted nfe)
VELOCITY_EXACT = "exact"  # the oracle's velocity, solved like the trained teacher's
KEEP_POINTS, KEEP_IMAGES = 1000, 64
N_PATHS, N_TIMES = 10, 21  # 2D trajectories kept per cell
SAMPLES = "samples.npz"


@dataclass
class Evaluation:
    """Rows of one cell and the samples kept of them."""

    rows: list[dict] = field(default_factory=list)
    kept: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, name: str, nfe: int, scores: dict, n: int, secs: float, note: str = "") -> None:
        for k, v in scores.items():
            row = dict(method=name, nfe=nfe, metric=k, value=v, n_samples=n)
            self.rows.append(row | dict(sample_seconds=secs, note=note))

    def keep(self, key: str, x: Tensor) -> None:
        """Keep the first samples of ``x``: float16 points, or uint8 images (never image noise)."""
        if key == "x0" and x.ndim == 4:
            return
        if x.ndim == 4:
            self.kept[key] = to_uint8(x[:KEEP_IMAGES]).numpy()
        else:
            self.kept[key] = x[:KEEP_POINTS].to(torch.float16).numpy()

    def save(self, folder: Path) -> None:
        """``samples.npz`` and, for images, ``grid_<key>.png`` (8x8) per kept array."""
        with atomic_open(folder / SAMPLES, "wb") as f:
            np.savez_compressed(f, **self.kept)
        for key, x in self.kept.items():
            if x.ndim == 4:
                save_grid(x, folder / f"grid_{key}.png")


def save_grid(images: np.ndarray, path: Path, cols: int = 8) -> None:
    """uint8 (N, C, H, W) -> one PNG mosaic of ``cols`` columns (1px gaps)."""
    from PIL import Image

    n, c, h, w = images.shape
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = (
            img.transpose(1, 2, 0)
        )
    with atomic_open(path, "wb") as f:
        Image.fromarray(canvas.squeeze(-1) if c == 1 else canvas).save(f, format="png")


def sample_batch_for(device: torch.device, shape: tuple[int, ...], requested: int = 0) -> int:
    """Sampling batch size: ``requested`` when > 0, else sized to the device (``eval.sample_batch=0``).

    CPU: 2^20 input elements, at most 4096 samples (4096 2D points, 256 images of 3x32x32).
    CUDA: a quarter of the free memory, allowing 2048 input-sized fp32 activations per sample (a
    rough allowance for a U-Net's live feature maps under inference mode), at most 65536. Both are
    rounded down to a power of two.
    """
    if requested > 0:
        return requested
    numel = math.prod(shape)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        n = free // 4 // (2048 * 4 * numel)
    else:
        n = min(4096, (1 << 20) // numel)
    return 2 ** int(math.log2(min(max(n, 1), 65536)))


def run_sampler(
    sampler: Sampler, x0: Tensor, batch: int, device: torch.device
) -> tuple[Tensor, float, int]:
    """Sample in batches under inference mode; returns (samples on CPU, seconds, max counted nfe)."""
    if stop.STOP.is_set():
        raise stop.Stopped(-1)
    outs, nfe = [], 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for chunk in x0.split(batch):
            x, n = sampler(chunk.to(device))
            outs.append(x)
            nfe = max(nfe, n)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return torch.cat(outs).float().cpu(), seconds, nfe


def _batch(scorer: Scorer) -> int:
    return sample_batch_for(scorer.device, scorer.problem.shape, scorer.cfg.sample_batch)


def _keep_paths(ev: Evaluation, scorer: Scorer, path_of: Callable[[Tensor, float], Tensor]) -> None:
    """2D: the first ``N_PATHS`` trajectories t -> X_{0,t}(x0) at ``N_TIMES`` times."""
    if scorer.problem.is_image:
        return
    x0, times = scorer.noise()[:N_PATHS], torch.linspace(0, 1, N_TIMES)
    with torch.inference_mode():
        paths = [path_of(x0.to(scorer.device), float(t)).float().cpu() for t in times]
    ev.keep("paths", torch.stack(paths).flatten(0, 1))
    ev.kept["path_times"] = times.numpy()


def _own_samples(method: Method, fm: FlowMap, scorer: Scorer, x0: Tensor, nfe: int):
    """The method's sampler at ``nfe`` from ``x0``: (samples, seconds)."""
    gen = torch.Generator(device=scorer.device).manual_seed(20_000 + scorer.seed)

    def sampler(x: Tensor) -> tuple[Tensor, int]:
        return method.sample(fm, x, nfe, generator=gen), nfe

    samples, secs, _ = run_sampler(sampler, x0, _batch(scorer), scorer.device)
    return samples, secs


def _keep_map_paths(ev: Evaluation, fm: FlowMap, scorer: Scorer) -> None:
    def path(x: Tensor, t: float) -> Tensor:
        zero = torch.zeros(len(x), device=x.device)
        return fm(x, zero, zero + t)

    _keep_paths(ev, scorer, path)


def evaluate_method(method: Method, fm: FlowMap, scorer: Scorer) -> Evaluation:
    """The method's own sampler at each NFE (n/a rows where it cannot)."""
    x0, ev = scorer.noise(), Evaluation()
    ev.keep("x0", x0)
    for nfe in scorer.cfg.nfe:
        if not method.supports(nfe):
            nan = dict.fromkeys(scorer.metric_names(), math.nan)
            ev.add(method.name, nfe, nan, len(x0), math.nan, NA)
            continue
        samples, secs = _own_samples(method, fm, scorer, x0, nfe)
        ev.add(method.name, nfe, scorer.score(samples), len(x0), secs)
        ev.keep(f"nfe{nfe}", samples)
    _keep_map_paths(ev, fm, scorer)
    return ev


def evaluate_solvers(velocity, name: str, scorer: Scorer) -> Evaluation:
    """Baselines on a velocity: fixed-step solvers at the sweep's NFEs, the adaptive one once."""
    x0, ev, cfg = scorer.noise(), Evaluation(), scorer.cfg
    for solver in FIXED_BASELINES:
        for nfe in (n for n in cfg.nfe if n % STEP_COST[solver] == 0):

            def fixed(x: Tensor, steps: int = nfe // STEP_COST[solver], solver: str = solver):
                return solve(velocity, x, 0.0, 1.0, solver, steps=steps)

            samples, secs, counted = run_sampler(fixed, x0, _batch(scorer), scorer.device)
            ev.add(baseline(name, solver), counted, scorer.score(samples), len(x0), secs)

    def adaptive(x: Tensor) -> tuple[Tensor, int]:
        tol = dict(rtol=cfg.dopri_rtol, atol=cfg.dopri_atol)
        return solve(velocity, x, 0.0, 1.0, ADAPTIVE_SOLVER, **tol)

    samples, secs, counted = run_sampler(adaptive, x0, _batch(scorer), scorer.device)
    ev.add(baseline(name, ADAPTIVE_SOLVER), counted, scorer.score(samples), len(x0), secs)
    return ev


def evaluate_teacher(method: Method, fm: FlowMap, scorer: Scorer) -> Evaluation:
    """The fm cell: its velocity's solver baselines; its own sampler's samples are kept."""
    ev = evaluate_solvers(fm.velocity, "fm", scorer)
    x0 = scorer.noise()
    ev.keep("x0", x0)
    n = KEEP_IMAGES if scorer.problem.is_image else KEEP_POINTS
    for nfe in (k for k in scorer.cfg.nfe if method.supports(k)):
        ev.keep(f"nfe{nfe}", _own_samples(method, fm, scorer, x0[:n], nfe)[0])
    _keep_map_paths(ev, fm, scorer)
    return ev


PROBE_FEW = 4  # probes also score every NFE up to this: quality vs compute "at NFE <= 4"


def probe(method: Method, fm: FlowMap, scorer: Scorer, n: int) -> list[dict]:
    """Convergence rows: ``n`` samples at NFE 1, each NFE up to ``PROBE_FEW`` and the largest NFE
    the method can do (or its only NFE), from the start of the evaluation noise; the training RNG is left untouched."""
    nfes = [k for k in scorer.cfg.nfe if method.supports(k)]
    if not nfes:
        return []
    x0, rows = scorer.noise()[:n], []
    fork = [scorer.device] if scorer.device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        for nfe in sorted({min(nfes), max(nfes), *(k for k in nfes if k <= PROBE_FEW)}):
            samples, _ = _own_samples(method, fm, scorer, x0, nfe)
            scores = scorer.score(
                samples, exact=scorer.exact_samples[:n] if scorer.has_oracle else None
            )
            rows += [
                dict(method=method.name, nfe=nfe, metric=k, value=v, n_samples=n)
                for k, v in scores.items()
            ]
    return rows


def evaluate_exact(scorer: Scorer, name: str) -> Evaluation:
    """The floor: the same noise through the exact flow map, repeated at every NFE column; and
    the exact velocity solved by the baseline solvers (``exact-euler``, ...)."""
    ev, x0 = Evaluation(), scorer.noise()
    t0 = time.perf_counter()
    samples = scorer.exact_map(x0)  # timed: the solve itself, not the cached copy
    secs = time.perf_counter() - t0
    scores = scorer.score(samples)
    for nfe in scorer.cfg.nfe:
        ev.add(name, nfe, scores, len(samples), secs)
    ev.keep("x0", x0)
    ev.keep("nfe1", samples)
    _keep_paths(ev, scorer, lambda x, t: scorer.exact_map(x.cpu(), t) if t > 0 else x)
    oracle, interp = scorer.problem.oracle, scorer.interpolant
    solved = evaluate_solvers(lambda x, t: oracle.velocity(x, t, interp), VELOCITY_EXACT, scorer)
    ev.rows += solved.rows
    return ev
