"""Samplers over a FlowMap. Each calls the network exactly ``nfe`` times (tests count it)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from unify.flowmap import FlowMap
from unify.grids import time_grid
from unify.interpolant import Interpolant, bcast


def _grid(
    nfe: int,
    grid: str | Sequence[float] | Tensor,
    x: Tensor,
    interpolant: Interpolant | None = None,
) -> Tensor:
    return time_grid(nfe, grid, interpolant=interpolant, dtype=x.dtype).to(x.device)


@torch.no_grad()
def sample(
    flow_map: FlowMap, x0: Tensor, nfe: int, grid: str | Sequence[float] | Tensor = "uniform"
) -> Tensor:
    """Flow-map composition X_{t_{N-1},1} o ... o X_{0,t_1}(x0) over an N = nfe step grid."""
    times = _grid(nfe, grid, x0)
    x = x0
    for s, t in zip(times[:-1], times[1:]):
        x = flow_map(x, s.expand(x.shape[0]), t.expand(x.shape[0]))
    return x


@torch.no_grad()
def consistency_sample(
    flow_map: FlowMap,
    x0: Tensor,
    nfe: int,
    interpolant: Interpolant,
    grid: str | Sequence[float] | Tensor = "uniform",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Consistency multistep sampler (Song et al. 2023, Alg. 1) in our time convention.

    x <- X_{0,1}(x0); then for each later grid time t_k < 1: re-noise to I_{t_k} = a(t_k) z + b(t_k) x
    with fresh z ~ N(0, I) and map to the data end again, x <- X_{t_k,1}(I_{t_k}).
    """
    times = _grid(nfe, grid, x0, interpolant)
    ones = torch.ones(x0.shape[0], dtype=x0.dtype, device=x0.device)
    x = flow_map(x0, times[0] * ones, ones)
    for t in times[1:-1]:
        a, b, _, _ = interpolant.coeffs(t * ones)
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = flow_map(bcast(a, x) * z + bcast(b, x) * x, t * ones, ones)
    return x
