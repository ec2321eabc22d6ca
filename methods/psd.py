"""Progressive self-distillation (PSD): Boffi, Albergo & Vanden-Eijnden 2025."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods._selfdistill import SelfDistillation
from methods.base import register
from methods.common import sqdist, times_like, uniform
from unify.flowmap import FlowMap
from unify.interpolant import bcast

VARIANTS = ("uniform", "midpoint")


@register("psd")
class ProgressiveSelfDistillation(SelfDistillation):
    """L = diag_frac E_t |v(I_t, t, t) - dI_t/dt|^2
         + (1 - diag_frac) E_{s,t,h} |v(I_s, s, t) - sg[(1 - h) v(I_s, s, u) + h v(X_{s,u}(I_s), u, t)]|^2,
    u = h s + (1 - h) t; the two-hop teacher uses the current weights under no_grad (no EMA).

    Source: PSD of Boffi, Albergo & Vanden-Eijnden 2025 ("How to build a consistency model",
    arXiv 2505.18825); reference ``psd_term`` ('convex' stop-gradient) in Keely-Ai/flow-maps
    ``py/common/losses.py``.
    Defaults kept: diag_frac 0.75, t ~ U[0, 1], (s, t) ~ U[0, 1]^2 both orders, residual on the
    mean velocity v; ``variant`` "uniform" (PSD-U, h ~ U[0, 1]; "midpoint" is PSD-M, h = 1/2).
    Deviations: those of :class:`methods._selfdistill.SelfDistillation`.
    """

    exact_terms = ("psd",)
    summary = {
        "paper": "Boffi, Albergo, Vanden-Eijnden 2025 (self-distillation), PSD",
        "times": "75% diagonal t ~ U[0,1]; 25% (s, t) ~ U[0,1]^2 both orders, u = h s + (1-h) t",
        "target": "dI_t/dt on the diagonal; sg two-hop self-teacher s -> u -> t",
        "nfe": "any (composition)",
    }

    @dataclass(frozen=True)
    class Config(SelfDistillation.Config):
        variant: str = "uniform"  # "uniform" (PSD-U, h ~ U[0, 1]) or "midpoint" (PSD-M, h = 1/2)

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.variant not in VARIANTS:
                raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        """(t_diag, s, t, h): the shared split, then h ~ U[0, 1] (PSD-U) or h = 1/2 (PSD-M)."""
        t_diag, s, t = super().sample_times(n, step, generator, like)
        uniform_h = self.cfg.variant == "uniform"
        h = uniform(len(s), s, generator=generator) if uniform_h else times_like(0.5, s)
        return t_diag, s, t, h

    def distill(
        self, flow_map: FlowMap, xs: Tensor, s: Tensor, t: Tensor, *extra: Tensor
    ) -> Tensor:
        (h,) = extra
        u = h * s + (1 - h) * t
        student = flow_map.avg_velocity(xs, s, t)
        with torch.no_grad():
            v_su = flow_map.avg_velocity(xs, s, u)
            x_u = xs + bcast(u - s, xs) * v_su  # X_{s,u}(I_s)
            v_ut = flow_map.avg_velocity(x_u, u, t)
            teacher = bcast(1 - h, xs) * v_su + bcast(h, xs) * v_ut
        return sqdist(student, teacher)
