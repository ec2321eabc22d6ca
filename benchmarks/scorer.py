"""Scoring samples against a problem: the metric names of a dataset and the :class:`Scorer`.

The scorer owns the evaluation noise of a seed (the same for every method), the exact map of that
noise on oracle datasets (computed once), and the metrics: W2 and the flow-map error on 2D
sets, FID (or ``fid_nonstd`` for other feature weights) on images.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from benchmarks import metrics
from benchmarks.config import EvalCfg
from benchmarks.data import to_uint8
from benchmarks.datasets import Problem
from unify.interpolant import Interpolant


def metric_names(image: bool, oracle: bool, cfg: EvalCfg) -> tuple[str, ...]:
    """The metrics a cell of such a dataset reports, in row order."""
    if image:
        return (metrics.fid_metric(cfg.fid_weights or None)[0],)
    return ("w2", "flowmap_err") if oracle else ("w2",)


@dataclass
class Scorer:
    """Scores samples against the problem; the exact map of the evaluation noise is cached."""

    problem: Problem
    interpolant: Interpolant
    cfg: EvalCfg
    seed: int
    cache_root: Path
    device: torch.device

    def noise(self, n: int | None = None) -> Tensor:
        gen = torch.Generator().manual_seed(10_000 + self.seed)
        return torch.randn(n or self.cfg.n_samples, *self.problem.shape, generator=gen)

    def exact_map(self, x0: Tensor, t: float = 1.0) -> Tensor:
        """X*_{0,t}(x0) by the oracle's high-accuracy solve (oracle problems only)."""
        x = x0.double()
        ones = torch.ones(len(x), dtype=x.dtype)
        return self.problem.oracle.flow_map(x, 0 * ones, t * ones, self.interpolant).float()

    @functools.cached_property
    def exact_samples(self) -> Tensor:
        return self.exact_map(self.noise())

    @functools.cached_property
    def fid_metric(self) -> tuple[str, str]:
        """(name, feature network) of the image metric: "fid" only for the published weights."""
        return metrics.fid_metric(self.cfg.fid_weights or None)

    def metric_names(self) -> tuple[str, ...]:
        return metric_names(self.problem.is_image, self.problem.oracle is not None, self.cfg)

    @property
    def has_oracle(self) -> bool:
        return self.problem.oracle is not None

    def score(self, samples: Tensor, exact: Tensor | None = None) -> dict[str, float]:
        """Every metric of ``samples``; ``exact``: the exact map of the same noise (default: of
        the whole evaluation noise, for samples of it in order)."""
        samples = samples.float().cpu()
        if not bool(torch.isfinite(samples).all()):
            return dict.fromkeys(self.metric_names(), math.inf)
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
            return {self.fid_metric[0]: value}
        out = {"w2": metrics.w2(samples, self.problem.test)}
        if self.has_oracle:
            ref = self.exact_samples if exact is None else exact
            out["flowmap_err"] = metrics.flowmap_err(samples, ref)
        return out

    @property
    def fid_cache_name(self) -> str:
        """Reference statistics depend on the data set, its size and the feature network."""
        tag = self.fid_metric[1].rsplit("(", 1)[-1].rstrip(")")
        return f"{self.problem.name}-train{len(self.problem.train)}-{tag}"
