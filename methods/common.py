"""Pieces shared by several methods: time laws, distances, noise. Each names its source."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unify.edm import data_scale, edm_sigma, time_of_edm_sigma
from unify.grids import time_grid
from unify.interpolant import Interpolant


def noise_like(x1: Tensor, x0: Tensor | None) -> Tensor:
    """Base noise x0 ~ N(0, I) shaped like the data (or the caller's x0, for tests)."""
    return torch.randn_like(x1) if x0 is None else x0


def like_or_default(like: Tensor | None) -> Tensor:
    """The tensor whose dtype and device time draws take (float32 on the CPU when None)."""
    return torch.zeros(()) if like is None else like


def mean_or_zero(x: Tensor) -> Tensor:
    """Mean of a (n,) tensor, 0 for an empty part (logged, never divided by)."""
    return x.mean() if x.numel() else x.new_zeros(())


def uniform(
    n: int, like: Tensor, lo: float = 0.0, hi: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """t ~ U[lo, hi], shape (n,) (from ``generator``, else the global RNG)."""
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)


def logit_normal(
    n: int, like: Tensor, mean: float, std: float, generator: torch.Generator | None = None
) -> Tensor:
    """t = sigmoid(mean + std * N(0, 1)): on the linear path, EDM's ln sigma ~ N(-mean, std^2)
    (Karras et al. 2022, arXiv 2206.00364), since logit t = -ln sigma (docs/methods.md)."""
    z = torch.randn(n, generator=generator, device=like.device, dtype=like.dtype)
    return torch.sigmoid(mean + std * z)


def sqdist(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample mean squared distance over all non-batch dimensions, shape (B,)."""
    return (a - b).pow(2).flatten(1).mean(1)


def pseudo_huber(a: Tensor, b: Tensor, c: float | None = None) -> Tensor:
    """Pseudo-Huber distance sqrt(|a - b|^2 + c^2) - c of improved CT (Song & Dhariwal 2023, Sec. 3.3).

    c defaults to 0.00054 sqrt(d) with d the data dimension, the paper's choice (0.03 on CIFAR-10).
    Stands in for LPIPS wherever the published distance needs downloaded weights.
    """
    d = a[0].numel()
    c = 0.00054 * math.sqrt(d) if c is None else c
    return ((a - b).pow(2).flatten(1).sum(1) + c * c).sqrt() - c


def pseudo_huber_edm(a: Tensor, b: Tensor, sigma_data: float = 0.5) -> Tensor:
    """``pseudo_huber`` (iCT's c = 0.00054 sqrt(d)) in EDM's data units: of k a and k b, k = 0.5 /
    sigma_data (``unify.edm``); the plain distance when sigma_data = 0.5."""
    k = data_scale(sigma_data)
    return pseudo_huber(a, b) if k == 1.0 else pseudo_huber(k * a, k * b)


def times_like(value: float | Tensor, x: Tensor) -> Tensor:
    """A (B,) time tensor filled with ``value`` for a batch shaped like x."""
    return torch.as_tensor(value, dtype=x.dtype, device=x.device).expand(x.shape[0]).clone()


def edm_time_grid(nfe: int, interpolant: Interpolant, sigma_data: float = 0.5) -> Tensor:
    """nfe + 1 float64 times 0 = t_0 < ... < t_N = 1: Karras et al. 2022's rho = 7 grid on EDM sigma
    in [0.002, 80] mapped to our time by the translation rule (``unify.edm``), ends pinned to 0, 1."""
    i = torch.arange(nfe + 1, dtype=torch.float64) / nfe
    lo, hi = 0.002 ** (1 / 7), 80.0 ** (1 / 7)
    grid = time_of_edm_sigma(interpolant, (hi + i * (lo - hi)) ** 7, sigma_data)
    grid[0], grid[-1] = 0.0, 1.0
    return time_grid(nfe, grid, dtype=torch.float64)


def karras_grid(
    n_points: int, interpolant: Interpolant, like: Tensor, sigma_data: float = 0.5
) -> tuple[Tensor, Tensor]:
    """(times, sigmas), each (n_points,): the Karras grid as times (``edm_time_grid``) and the
    published EDM sigma_i they stand for (clamped to [0.002, 80], so the pinned ends read 80 and
    0.002), for sigma-space weights and index laws (CM, iCT, CTM)."""
    times = edm_time_grid(n_points - 1, interpolant, sigma_data)
    sigmas = edm_sigma(interpolant, times, sigma_data).clamp(0.002, 80.0)
    return times.to(like), sigmas.to(like)


def consistency_grid(
    nfe: int, interpolant: Interpolant, mid_sigma: float | None = 0.821, sigma_data: float = 0.5
) -> Tensor:
    """Re-noising times of the consistency multistep sampler: the Karras grid with nfe steps, except
    that 2 steps re-noise at EDM sigma ``mid_sigma`` (improved CT's 0.821, Song & Dhariwal 2023)."""
    grid = edm_time_grid(nfe, interpolant, sigma_data)
    if nfe == 2 and mid_sigma is not None:
        grid[1] = time_of_edm_sigma(interpolant, float(mid_sigma), sigma_data)
    return grid


def split_count(n: int, frac: float) -> int:
    """How many of a batch of n go to a part of fraction frac: int(n * frac), as the reference codes
    slice their batches (``int(bs * diag_fraction)``, ``bs // bootstrap_every``), but kept within
    [1, n - 1] when 0 < frac < 1 and n >= 2 so that a small batch still feeds both parts."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {frac}")
    k = int(n * frac)
    if 0.0 < frac < 1.0 and n >= 2:
        k = min(max(k, 1), n - 1)
    return k


def run_length_decay(published: float, published_steps: int, steps: int) -> float:
    """An EMA decay for a run of ``steps`` that averages over the same *fraction* of training as
    ``published`` does over ``published_steps``: mu = published^(published_steps / steps), since
    mu^k is the weight left after k steps. Capped at ``published`` (a longer run keeps the
    published value). E.g. shortcut's 0.999 at 400k steps is 0.766 over 1,500 steps: its target
    then lags the model by ~4 steps, as the published target lags by ~0.25 % of the run."""
    if not 0.0 <= published < 1.0 or published_steps < 1 or steps < 1:
        raise ValueError(
            f"need 0 <= decay < 1 and step counts >= 1: {published}, {published_steps}, {steps}"
        )
    return min(published, published ** (published_steps / steps))
