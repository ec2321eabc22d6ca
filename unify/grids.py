"""Time grids 0 = t_0 < t_1 < ... < t_N = 1 for N-step sampling, chosen after training."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from unify.interpolant import Interpolant, Linear

GRID_KINDS = ("uniform", "edm")


def time_grid(
    nfe: int,
    kind: str | Sequence[float] | Tensor = "uniform",
    *,
    rho: float = 7.0,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    interpolant: Interpolant | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Return nfe + 1 increasing times from 0 to 1.

    - "uniform": t_i = i / N.
    - "edm": Karras et al. (2022) Eq. 5 rho-spacing of sigma_i = (smax^(1/rho) + i/N (smin^(1/rho)
      - smax^(1/rho)))^rho for i = 0..N, mapped to t_i = interpolant.time_of_sigma(sigma_i) (linear
      interpolant by default); the end points are then pinned to exactly 0 and 1.
    - an explicit sequence of nfe + 1 times, validated (starts at 0, ends at 1, increasing).
    """
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    if not isinstance(kind, str):
        grid = (
            kind.to(dtype) if isinstance(kind, Tensor) else torch.tensor(kind, dtype=dtype)
        ).flatten()
        if grid.numel() != nfe + 1:
            raise ValueError(f"explicit grid has {grid.numel()} times, nfe={nfe} needs {nfe + 1}")
        if grid[0] != 0 or grid[-1] != 1 or not bool((grid[1:] > grid[:-1]).all()):
            raise ValueError(
                f"explicit grid must increase strictly from 0 to 1, got {grid.tolist()}"
            )
        return grid
    if kind == "uniform":
        return torch.linspace(0, 1, nfe + 1, dtype=dtype)
    if kind == "edm":
        i = torch.arange(nfe + 1, dtype=torch.float64) / nfe
        lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        sigma = (hi + i * (lo - hi)) ** rho
        grid = (interpolant or Linear()).time_of_sigma(sigma)
        grid[0], grid[-1] = 0.0, 1.0
        return grid.to(dtype)
    raise ValueError(
        f"unknown grid kind {kind!r}; allowed: {', '.join(GRID_KINDS)} or a list of times"
    )
