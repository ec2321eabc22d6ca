"""The loss skeleton shared by LSD, ESD and PSD (Boffi, Albergo & Vanden-Eijnden 2025, "How to build
a consistency model: learning flow maps via self-distillation", arXiv 2505.18825).

A batch of B pairs (x0, x1) is cut as in the reference code (Keely-Ai/flow-maps,
``py/common/loss_args.py`` and ``losses.py``): the first ``int(B * diag_frac)`` pairs train the
diagonal with flow matching, |v(I_t, t, t) - dI_t/dt|^2, t ~ U[t_min, t_max]; the rest train one
off-diagonal self-distillation term at (s, t) ~ U[t_min, t_max]^2 drawn independently (both orders
occur). The teacher inside that term is the model's own current weights under stop-gradient (no
EMA). The loss is normalised by the whole batch, (sum_diag l_i + sum_off l_i) / B, i.e.
diag_frac * mean(diag) + (1 - diag_frac) * mean(off), exactly the reference's
``(diag_loss * diag_bs + offdiag_loss * offdiag_bs) / total_bs``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from methods.base import Logs, Method
from methods.common import (
    like_or_default,
    mean_or_zero,
    noise_like,
    split_count,
    sqdist,
    uniform,
)
from unify.flowmap import FlowMap


class SelfDistillation(Method):
    """Base of the self-distillation family: flow matching on the diagonal plus ``distill``.

    Deviations shared by the three methods, relative to the reference's CIFAR-10 configuration
    (Keely-Ai/flow-maps ``py/configs/cifar10.py``):
    - no learned EDM2 log-variance weight e^{-w(s,t)} l + w(s,t): every term has weight 1;
    - base noise x0 ~ N(0, I), not N(0, 0.5^2 I) ('adaptive' gaussian_scale): the project's
      convention fixes the noise end of every interpolant;
    - squared distances are per-coordinate means (``sqdist``), not sums: a constant factor d;
    - the reference evaluates the off-diagonal term with dropout off (train=False) and the
      diagonal with dropout on; here both see the network in whatever mode the trainer set.
    """

    needs_teacher = False

    @dataclass(frozen=True)
    class Config:
        diag_frac: float = 0.75  # fraction of the batch on the diagonal s = t
        t_min: float = 0.0
        t_max: float = 1.0

        def __post_init__(self) -> None:
            if not 0.0 <= self.diag_frac <= 1.0:
                raise ValueError(f"diag_frac must lie in [0, 1], got {self.diag_frac}")
            if not 0.0 <= self.t_min < self.t_max <= 1.0:
                raise ValueError(f"need 0 <= t_min < t_max <= 1, got {self.t_min}, {self.t_max}")

    @abstractmethod
    def distill(
        self, flow_map: FlowMap, xs: Tensor, s: Tensor, t: Tensor, *extra: Tensor
    ) -> Tensor:
        """Per-sample off-diagonal loss (n,) at xs = I_s, for time pairs s, t of shape (n,) (and
        the method's further draws of ``sample_times``)."""

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        """(t_diag, s, t): int(n diag_frac) diagonal times, then n - that many independent (s, t),
        all ~ U[t_min, t_max]."""
        like, lo, hi = like_or_default(like), self.cfg.t_min, self.cfg.t_max
        nd = split_count(n, self.cfg.diag_frac)
        t_diag = uniform(nd, like, lo, hi, generator)
        s, t = uniform(n - nd, like, lo, hi, generator), uniform(n - nd, like, lo, hi, generator)
        return t_diag, s, t

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        n = x1.shape[0]
        t_diag, s, t, *extra = self.sample_times(n, step, like=x1)
        nd = t_diag.shape[0]
        diag = off = x1.new_zeros(0)
        if nd > 0:
            path = self.interpolant.sample(x0[:nd], x1[:nd], t_diag)
            diag = sqdist(flow_map.velocity(path.xt, t_diag), path.vt)
        if n > nd:
            xs = self.interpolant.sample(x0[nd:], x1[nd:], s).xt
            off = self.distill(flow_map, xs, s, t, *extra)
        loss = (diag.sum() + off.sum()) / n
        return loss, {"fm": mean_or_zero(diag).detach(), self.name: mean_or_zero(off).detach()}
