"""Scoring samples against a problem: the :class:`Scorer` (a dataset's metric names are
``benchmarks.base.rows.metric_names``).

The scorer owns the evaluation noise of a seed (the same for every method), the exact map of that
noise on oracle datasets (computed once), and the metrics (``benchmarks.evaluation.metrics``):

- 2D with an oracle (gmm): ``flowmap_err`` (map accuracy, paired with the exact map of the same
  noise), ``sw2`` (the distribution: sliced W2 to the exact law, floor ~1 % of its scale) and
  ``w2`` (exact W2 to a 2,000-point held-out set, kept for comparison: floor ~15 %). The noise is
  scrambled Sobol (``sliced.sobol_normal``): pushed through a deterministic map it fills each
  mode with its exact share, which takes the dominant term out of every distributional floor.
- 2D without an oracle: ``w2``; i.i.d. noise.
- images with an oracle (cifar-gmm): ``flowmap_err_pd`` (per-dimension map error, so
  resolutions compare) and ``fd_pixel`` (Frechet distance to the mixture's exact moments, in
  pixels); FID too when ``eval.fid_weights`` names a file.
- images: FID (``fid_nonstd`` when the Inception weights are not the published ones).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from benchmarks.base.atomic import save_torch
from benchmarks.base.rows import fid_metric, metric_names
from benchmarks.base.schema import EvalCfg
from benchmarks.data.loaders import to_uint8
from benchmarks.data.registry import Problem
from benchmarks.evaluation import metrics
from benchmarks.evaluation.sliced import SliceTable, slice_table, sliced_w2_table, sobol_normal
from unify.interpolant import Interpolant


@dataclass
class Scorer:
    """Scores samples against the problem; the exact map of the evaluation noise is cached."""

    problem: Problem
    interpolant: Interpolant
    cfg: EvalCfg
    seed: int
    cache_root: Path
    device: torch.device
    _slices: dict = field(default_factory=dict, init=False, repr=False)

    def noise(self, n: int | None = None) -> Tensor:
        """The seed's evaluation noise (its first ``n``): Sobol on 2D oracle sets, else i.i.d."""
        n = n or self.cfg.n_samples
        if self.has_oracle and not self.problem.is_image:
            return sobol_normal(
                self.cfg.n_samples, math.prod(self.problem.shape), 10_000 + self.seed
            )[:n]
        gen = torch.Generator().manual_seed(10_000 + self.seed)
        return torch.randn(self.cfg.n_samples, *self.problem.shape, generator=gen)[:n]

    def slices(self, n: int) -> SliceTable:
        """The exact projected laws for ``n`` samples (built once per n)."""
        if n not in self._slices:
            self._slices[n] = slice_table(self.problem.oracle, n)
        return self._slices[n]

    @functools.cached_property
    def moments(self) -> tuple[Tensor, Tensor]:
        """Exact mean and covariance of the data law (image oracles)."""
        return self.problem.oracle.mean(), self.problem.oracle.cov()

    def exact_map(self, x0: Tensor, t: float = 1.0) -> Tensor:
        """X*_{0,t}(x0) by the oracle's high-accuracy solve (oracle problems only)."""
        x = x0.double()
        ones = torch.ones(len(x), dtype=x.dtype)
        return self.problem.oracle.flow_map(x, 0 * ones, t * ones, self.interpolant).float()

    @functools.cached_property
    def exact_samples(self) -> Tensor:
        """X*_{0,1} of the evaluation noise, kept on disk beside the FID statistics: every cell
        of a seed needs it, and on image oracles it is the dearest part of an evaluation."""
        n, interp = self.cfg.n_samples, type(self.interpolant).__name__.lower()
        fit = hashlib.sha1(json.dumps(self.problem.info, sort_keys=True).encode()).hexdigest()[:8]
        path = self.cache_root / f"exact-{self.problem.name}-{fit}-s{self.seed}-n{n}-{interp}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
        samples = self.exact_map(self.noise())
        save_torch(samples, path)
        return samples

    @functools.cached_property
    def fid_metric(self) -> tuple[str, str]:
        """(name, feature network) of the image metric: "fid" only for the published weights."""
        return fid_metric(self.cfg.fid_weights or None)

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
        out: dict[str, float] = {}
        if self.has_oracle:
            ref = self.exact_samples if exact is None else exact
            if self.problem.is_image:
                out["flowmap_err_pd"] = metrics.flowmap_err_per_dim(samples, ref)
                out["fd_pixel"] = metrics.frechet_to_moments(samples, *self.moments)
            else:
                out["flowmap_err"] = metrics.flowmap_err(samples, ref)
                out["sw2"] = sliced_w2_table(samples, self.slices(len(samples)))
        if not self.problem.is_image:
            out["w2"] = metrics.w2(samples, self.problem.test)
        elif not self.has_oracle or self.cfg.fid_weights:
            out[self.fid_metric[0]] = self._fid(samples)
        return out

    def _fid(self, samples: Tensor) -> float:
        cached = metrics.fid_cache_path(self.cache_root, self.fid_cache_name).is_file()
        return metrics.fid(
            to_uint8(samples),
            None if cached else to_uint8(self.problem.train),
            cache_name=self.fid_cache_name,
            cache_root=self.cache_root,
            weights_path=self.cfg.fid_weights or None,
            device=str(self.device),
        )

    @property
    def fid_cache_name(self) -> str:
        """Reference statistics depend on the data set, its size and the feature network."""
        tag = self.fid_metric[1].rsplit("(", 1)[-1].rstrip(")")
        return f"{self.problem.name}-train{len(self.problem.train)}-{tag}"
