"""Stochastic interpolants I_t = a(t) x0 + b(t) x1 with x0 ~ N(0, I) noise at t = 0, data x1 at t = 1.

Every time in this project lives on this one axis. Methods published in EDM's sigma terms reach
it through :meth:`Interpolant.sigma` / :meth:`Interpolant.time_of_sigma` (sigma = a / b, so that
x_sigma = I_t / b(t)), and data-prediction heads through :meth:`Interpolant.ddim_map`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor


def bcast(t: Tensor, x: Tensor) -> Tensor:
    """View a (B,) time tensor as (B, 1, ..., 1) so it broadcasts against x of shape (B, ...)."""
    return t.reshape(t.shape[0], *([1] * (x.ndim - 1)))


@dataclass(frozen=True)
class PathSample:
    """One draw of the interpolant: I_t = ``xt`` and its time derivative dI_t/dt = ``vt``."""

    x0: Tensor
    x1: Tensor
    t: Tensor
    xt: Tensor
    vt: Tensor


class Interpolant(ABC):
    """I_t = a(t) x0 + b(t) x1 with a(0) = b(1) = 1 and a(1) = b(0) = 0."""

    name: str = "interpolant"

    @abstractmethod
    def coeffs(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return (a(t), b(t), a'(t), b'(t)), each with the shape of t."""

    @abstractmethod
    def time_of_sigma(self, sigma: Tensor) -> Tensor:
        """Inverse of sigma(t) = a(t) / b(t): the time at which the noise-to-signal ratio is sigma."""

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> PathSample:
        """I_t = a x0 + b x1 and dI_t/dt = a' x0 + b' x1, with t of shape (B,)."""
        a, b, da, db = (bcast(c, x0) for c in self.coeffs(t))
        return PathSample(x0, x1, t, a * x0 + b * x1, da * x0 + db * x1)

    def sigma(self, t: Tensor) -> Tensor:
        """EDM noise level sigma(t) = a(t) / b(t) (infinite at t = 0)."""
        a, b, _, _ = self.coeffs(t)
        return a / b

    def denoise(self, x: Tensor, v: Tensor, t: Tensor) -> Tensor:
        """Data estimate E[x1 | I_t = x] from the velocity v = E[dI/dt | I_t = x].

        Solves x = a x0 + b x1, v = a' x0 + b' x1 for x1: x1 = (a v - a' x) / (a b' - a' b).
        """
        a, b, da, db = (bcast(c, x) for c in self.coeffs(t))
        return (a * v - da * x) / (a * db - da * b)

    def ddim_map(self, x: Tensor, x1_hat: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """Deterministic DDIM map from s to t with data estimate D (Song, Meng & Ermon 2021,
        arXiv 2010.02502, noise-free update, in our time; docs/methods.md).

        X_{s,t}(x) = (a(t) / a(s)) x + (b(t) - a(t) b(s) / a(s)) D, so X_{s,1}(x) = D.
        """
        a_s, b_s, _, _ = (bcast(c, x) for c in self.coeffs(s))
        a_t, b_t, _, _ = (bcast(c, x) for c in self.coeffs(t))
        ratio = a_t / a_s
        return ratio * x + (b_t - ratio * b_s) * x1_hat

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Interpolant):
    """Rectified-flow / linear path: a(t) = 1 - t, b(t) = t."""

    name = "linear"

    def coeffs(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        one = torch.ones_like(t)
        return 1 - t, t, -one, one

    def time_of_sigma(self, sigma: Tensor) -> Tensor:
        """sigma = (1 - t) / t  <=>  t = 1 / (1 + sigma)."""
        return 1 / (1 + sigma)


class Trig(Interpolant):
    """Trigonometric (cosine VP) path: a(t) = cos(pi t / 2), b(t) = sin(pi t / 2)."""

    name = "trig"

    def coeffs(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h = 0.5 * math.pi
        return torch.cos(h * t), torch.sin(h * t), -h * torch.sin(h * t), h * torch.cos(h * t)

    def time_of_sigma(self, sigma: Tensor) -> Tensor:
        """sigma = cot(pi t / 2)  <=>  t = (2 / pi) arctan(1 / sigma)."""
        return (2 / math.pi) * torch.atan2(torch.ones_like(sigma), sigma)


INTERPOLANTS: dict[str, type[Interpolant]] = {"linear": Linear, "trig": Trig}


def make_interpolant(name: str) -> Interpolant:
    """Build an interpolant by name; raises ValueError naming the allowed names."""
    if name not in INTERPOLANTS:
        raise ValueError(f"unknown interpolant {name!r}; allowed: {', '.join(INTERPOLANTS)}")
    return INTERPOLANTS[name]()
