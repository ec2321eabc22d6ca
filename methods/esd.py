"""Eulerian self-distillation (ESD): Boffi, Albergo & Vanden-Eijnden 2025."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods._selfdistill import SelfDistillation
from methods.base import register
from methods.common import sqdist
from unify.flowmap import FlowMap, eulerian_tangent

STOPGRADS = ("full", "convex")


@register("esd")
class EulerianSelfDistillation(SelfDistillation):
    """L = diag_frac E_t |v(I_t, t, t) - dI_t/dt|^2
         + (1 - diag_frac) E_{s,t} |d/ds X_{s,t}(I_s) + sg[grad X_{s,t}(I_s) . sg b_s(I_s)]|^2,
    b_s(x) = v(x, s, s) the model's own velocity under no_grad (no EMA).

    Source: ESD of Boffi, Albergo & Vanden-Eijnden 2025 ("How to build a consistency model",
    arXiv 2505.18825); reference ``esd_term`` in Keely-Ai/flow-maps ``py/common/losses.py``.
    Defaults kept: diag_frac 0.75, t ~ U[0, 1], (s, t) ~ U[0, 1]^2 both orders, ``stopgrad``
    "full" (CIFAR-10: gradient through d/ds X only; "convex" also through grad X . b).
    Deviations: those of :class:`methods._selfdistill.SelfDistillation`.
    """

    exact_terms = ("esd",)
    summary = {
        "paper": "Boffi, Albergo, Vanden-Eijnden 2025 (self-distillation), ESD",
        "times": "75% diagonal t ~ U[0,1]; 25% (s, t) ~ U[0,1]^2, both orders",
        "target": "dI_t/dt on the diagonal; -sg[grad X . sg b_s(I_s)] for d/ds X_{s,t}(I_s)",
        "nfe": "any (composition)",
    }

    @dataclass(frozen=True)
    class Config(SelfDistillation.Config):
        stopgrad: str = "full"  # "full" (CIFAR-10 config) or "convex"

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.stopgrad not in STOPGRADS:
                raise ValueError(f"stopgrad must be one of {STOPGRADS}, got {self.stopgrad!r}")

    def distill(self, flow_map: FlowMap, xs: Tensor, s: Tensor, t: Tensor) -> Tensor:
        with torch.no_grad():
            b = flow_map.velocity(xs, s)
        if self.cfg.stopgrad == "convex":
            return sqdist(eulerian_tangent(flow_map, xs, s, t, b)[1], torch.zeros_like(xs))
        ds_x = eulerian_tangent(flow_map, xs, s, t, torch.zeros_like(xs))[1]  # d/ds X, with graph
        with torch.no_grad():
            residual = eulerian_tangent(flow_map, xs, s, t, b)[1]  # d/ds X + grad X . b
        return sqdist(ds_x + (residual - ds_x.detach()), torch.zeros_like(xs))
