"""Pieces shared by several methods: time laws, distances, noise. Each names its source."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def noise_like(x1: Tensor, x0: Tensor | None) -> Tensor:
    """Base noise x0 ~ N(0, I) shaped like the data (or the caller's x0, for tests)."""
    return torch.randn_like(x1) if x0 is None else x0


def uniform(n: int, like: Tensor, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """t ~ U[lo, hi], shape (n,)."""
    return lo + (hi - lo) * torch.rand(n, device=like.device, dtype=like.dtype)


def logit_normal(n: int, like: Tensor, mean: float, std: float) -> Tensor:
    """t = sigmoid(mean + std * N(0, 1)) (the EDM log-normal sigma law, Sec. 0 of METHODS_SPEC)."""
    return torch.sigmoid(mean + std * torch.randn(n, device=like.device, dtype=like.dtype))


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


def times_like(value: float | Tensor, x: Tensor) -> Tensor:
    """A (B,) time tensor filled with ``value`` for a batch shaped like x."""
    return torch.as_tensor(value, dtype=x.dtype, device=x.device).expand(x.shape[0]).clone()
