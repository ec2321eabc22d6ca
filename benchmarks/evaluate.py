"""Evaluation: sample at every NFE with a method's own sampler, score, return metrics rows.

Every method of a seed starts from the same noise x0. Rows: {method, dataset, seed, nfe, metric,
value, n_samples, sample_seconds, note}; ``note == "n/a"`` marks an NFE the method cannot do.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from benchmarks import metrics
from benchmarks.config import EvalCfg
from benchmarks.data import to_uint8
from benchmarks.problems import Problem
from methods.base import Method
from unify.flowmap import FlowMap
from unify.interpolant import Interpolant
from unify.ode import solve

Sampler = Callable[[Tensor], tuple[Tensor, int]]  # x0 batch -> (samples, counted nfe)


@dataclass
class Scorer:
    """Scores samples against the problem; caches the exact map of the evaluation noise."""

    problem: Problem
    interpolant: Interpolant
    cfg: EvalCfg
    seed: int
    cache_root: Path
    device: torch.device
    _exact: Tensor | None = field(default=None, init=False)

    def noise(self) -> Tensor:
        gen = torch.Generator().manual_seed(10_000 + self.seed)
        return torch.randn(self.cfg.n_samples, *self.problem.shape, generator=gen)

    def exact_samples(self) -> Tensor:
        """X*_{0,1}(x0) by the oracle's high-accuracy solve (oracle problems only)."""
        if self._exact is None:
            x0 = self.noise().double()
            ones = torch.ones(len(x0), dtype=x0.dtype)
            self._exact = self.problem.oracle.flow_map(x0, 0 * ones, ones, self.interpolant).float()
        return self._exact

    def score(self, samples: Tensor) -> dict[str, float]:
        samples = samples.float().cpu()
        if not bool(torch.isfinite(samples).all()):
            names = ("fid",) if self.problem.is_image else ("w2", "flowmap_err")
            return {k: math.inf for k in names}
        if self.problem.is_image:
            cached = metrics.fid_cache_path(self.cache_root, self.fid_cache_name).is_file()
            value = metrics.fid(
                to_uint8(samples),
                None if cached else to_uint8(self.problem.train),
                cache_name=self.fid_cache_name,
                cache_root=self.cache_root,
                weights_path=self.cfg.fid_weights or None,
                device=str(self.device),
            )
            return {"fid": value}
        out = {"w2": metrics.w2(samples, self.problem.test)}
        if self.problem.oracle is not None:
            out["flowmap_err"] = metrics.flowmap_err(samples, self.exact_samples())
        return out

    @property
    def fid_cache_name(self) -> str:
        """Reference statistics depend on the data set, its size and the Inception weights."""
        w = self.cfg.fid_weights
        tag = (
            hashlib.sha1(Path(w).resolve().as_posix().encode()).hexdigest()[:8] if w else "default"
        )
        return f"{self.problem.name}-train{len(self.problem.train)}-{tag}"


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


def _rows(name: str, nfe: int, scores: dict[str, float], n: int, seconds: float, note: str = ""):
    return [
        {
            "method": name,
            "nfe": nfe,
            "metric": k,
            "value": v,
            "n_samples": n,
            "sample_seconds": seconds,
            "note": note,
        }
        for k, v in scores.items()
    ]


def evaluate_method(
    method: Method, fm: FlowMap, scorer: Scorer, nfes: tuple[int, ...]
) -> list[dict]:
    """The method's own sampler at each NFE (n/a rows where it cannot)."""
    x0, rows = scorer.noise(), []
    metric_names = (
        ("fid",)
        if scorer.problem.is_image
        else (("w2", "flowmap_err") if scorer.problem.oracle is not None else ("w2",))
    )
    for nfe in nfes:
        if not method.supports(nfe):
            rows += _rows(
                method.name, nfe, dict.fromkeys(metric_names, math.nan), len(x0), math.nan, "n/a"
            )
            continue
        gen = torch.Generator(device=scorer.device).manual_seed(20_000 + scorer.seed)

        def sampler(x: Tensor, nfe: int = nfe, gen=gen) -> tuple[Tensor, int]:
            return method.sample(fm, x, nfe, generator=gen), nfe

        batch = sample_batch_for(scorer.device, scorer.problem.shape, scorer.cfg.sample_batch)
        samples, secs, _ = run_sampler(sampler, x0, batch, scorer.device)
        rows += _rows(method.name, nfe, scorer.score(samples), len(x0), secs)
    return rows


def evaluate_teacher(fm: FlowMap, scorer: Scorer, nfes: tuple[int, ...]) -> list[dict]:
    """Baselines on the fm velocity: Euler and Heun at the sweep's NFEs, adaptive dopri5 once."""
    x0, rows, cfg = scorer.noise(), [], scorer.cfg
    batch = sample_batch_for(scorer.device, scorer.problem.shape, cfg.sample_batch)
    for solver in ("euler", "heun"):
        per_step = 1 if solver == "euler" else 2
        for nfe in nfes:
            if nfe % per_step:
                continue

            def sampler(x: Tensor, steps: int = nfe // per_step, solver: str = solver):
                return solve(fm.velocity, x, 0.0, 1.0, solver, steps=steps)

            samples, secs, counted = run_sampler(sampler, x0, batch, scorer.device)
            rows += _rows(f"fm-{solver}", counted, scorer.score(samples), len(x0), secs)

    def dopri(x: Tensor) -> tuple[Tensor, int]:
        return solve(fm.velocity, x, 0.0, 1.0, "dopri5", rtol=cfg.dopri_rtol, atol=cfg.dopri_atol)

    samples, secs, counted = run_sampler(dopri, x0, batch, scorer.device)
    rows += _rows("fm-dopri5", counted, scorer.score(samples), len(x0), secs)
    return rows


def evaluate_exact(scorer: Scorer, nfes: tuple[int, ...]) -> list[dict]:
    """The floor: the same noise through the exact flow map, repeated at every NFE column."""
    scorer._exact = None  # time the solve itself, not a cached copy
    t0 = time.perf_counter()
    samples = scorer.exact_samples()
    secs = time.perf_counter() - t0
    scores = scorer.score(samples)
    return [r for nfe in nfes for r in _rows("exact", nfe, scores, len(samples), secs)]
