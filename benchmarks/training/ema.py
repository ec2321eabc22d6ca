"""The evaluation EMA: power-function averaging (Karras et al. 2024, EDM2), or a constant decay.

theta_hat_k = beta_k theta_hat_{k-1} + (1 - beta_k) theta_k, where k = 1, 2, ... counts the
optimiser steps since the current training stage began (``Method.stage_start``), so the average
restarts with each stage of a staged method (PD, PFMM) and never mixes two stages' models.

- ``power`` (EDM2, Sec. 3.1 and App. C.1): beta_k = (1 - 1/k)^(gamma + 1). In closed form
  theta_hat_k = sum_{i<=k} w_i theta_i with w_i = (i^(gamma+1) - (i-1)^(gamma+1)) / k^(gamma+1):
  an average over a fixed *fraction* of the run, whatever its length, with no trace of the random
  initialisation (beta_1 = 0). Its setting is the relative width sigma_rel (the standard deviation
  of the averaging profile over its extent, EDM2 Eq. 3): sigma_rel^2 = (g+1) / ((g+2)^2 (g+3)).
  Default 0.05 (gamma = 16.97), within EDM2's optimal range (0.05-0.15 on ImageNet); on the short
  CPU budgets a narrow average keeps the EMA from lagging the model (issue 12: a 0.999 decay over
  1,500 steps left 22 % of the random initialisation in every scored model).
- ``constant``: beta_1 = 0, then beta_k = decay (for presets that publish one, e.g. 0.9999).
- ``none``: the raw weights are scored.

The law is a function of the step alone, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import math

from methods.base import ema_update

__all__ = ["KINDS", "EMALaw", "ema_update", "gamma_of_width"]
KINDS = ("power", "constant", "none")


def gamma_of_width(sigma_rel: float) -> float:
    """gamma of the power profile with relative width ``sigma_rel`` (EDM2 Eq. 3, solved)."""
    if not 0 < sigma_rel < 0.2887:  # gamma -> -1 gives sigma_rel -> 1/sqrt(12)
        raise ValueError(f"sigma_rel must lie in (0, 0.2887), got {sigma_rel}")
    lo, hi = -0.999, 1e6
    for _ in range(200):  # sigma_rel decreases in gamma: bisection on a log scale
        mid = math.sqrt((lo + 1) * (hi + 1)) - 1
        width = math.sqrt((mid + 1) / ((mid + 2) ** 2 * (mid + 3)))
        lo, hi = (mid, hi) if width > sigma_rel else (lo, mid)
    return 0.5 * (lo + hi)


class EMALaw:
    """beta_k of the chosen kind; ``describe()`` names it in the metrics rows."""

    def __init__(self, kind: str = "power", width: float = 0.05, decay: float = 0.999) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown EMA kind {kind!r}; allowed: {', '.join(KINDS)}")
        if kind == "constant" and not 0 <= decay < 1:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.kind, self.width, self.decay = kind, width, decay
        self.gamma = gamma_of_width(width) if kind == "power" else math.nan

    def beta(self, k: int) -> float:
        """Decay of the k-th update since the (re)start, k >= 1."""
        if k < 1:
            raise ValueError(f"EMA update count must be >= 1, got {k}")
        if self.kind == "none" or k == 1:
            return 0.0
        if self.kind == "constant":
            return self.decay
        return (1.0 - 1.0 / k) ** (self.gamma + 1.0)

    def describe(self) -> str:
        if self.kind == "power":
            return f"ema power sigma_rel={self.width:g}"
        return f"ema {self.decay:g}" if self.kind == "constant" else "raw"
