"""Lagrangian self-distillation (LSD): Boffi, Albergo & Vanden-Eijnden 2025."""

from __future__ import annotations

import torch
from torch import Tensor

from methods._selfdistill import SelfDistillation
from methods.base import register
from methods.common import sqdist
from unify.flowmap import FlowMap, map_dt


@register("lsd")
class LagrangianSelfDistillation(SelfDistillation):
    """L = diag_frac E_t |v(I_t, t, t) - dI_t/dt|^2
         + (1 - diag_frac) E_{s,t} |d/dt X_{s,t}(I_s) - sg b_t(sg X_{s,t}(I_s))|^2,
    b_t(x) = v(x, t, t) the model's own velocity under no_grad (no EMA).

    Source: LSD of Boffi, Albergo & Vanden-Eijnden 2025 ("How to build a consistency model",
    arXiv 2505.18825); reference ``lsd_term`` ('convex' stop-gradient) in Keely-Ai/flow-maps
    ``py/common/losses.py``.
    Defaults kept: diag_frac 0.75, t ~ U[0, 1] on the diagonal, (s, t) ~ U[0, 1]^2 both orders.
    Deviations: those of :class:`methods._selfdistill.SelfDistillation`.
    """

    exact_terms = ("lsd",)
    summary = {
        "paper": "Boffi, Albergo, Vanden-Eijnden 2025 (self-distillation), LSD",
        "times": "75% diagonal t ~ U[0,1]; 25% (s, t) ~ U[0,1]^2, both orders",
        "target": "dI_t/dt on the diagonal; sg self-velocity b_t(sg X_{s,t}(I_s)) for d/dt X",
        "nfe": "any (composition)",
    }

    def distill(self, flow_map: FlowMap, xs: Tensor, s: Tensor, t: Tensor) -> Tensor:
        x, dx_dt = map_dt(flow_map, xs, s, t)
        with torch.no_grad():
            b = flow_map.velocity(x.detach(), t)
        return sqdist(dx_dt, b)
