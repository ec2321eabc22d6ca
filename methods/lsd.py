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

    the LSD loss of Boffi, Albergo & Vanden-Eijnden 2025 ("How to build a consistency model",
    arXiv 2505.18825; reference ``lsd_term`` in Keely-Ai/flow-maps ``py/common/losses.py``, its
    'convex' stop-gradient). b_t(x) = v(x, t, t) is the model's own velocity with the current
    weights under no_grad (the reference's teacher_params = params, no EMA); d/dt X is one
    forward-mode jvp with tangent (0, 0, 1) (``unify.map_dt``), through which the gradient flows.
    At the exact flow map d/dt X_{s,t}(x) = b_t(X_{s,t}(x)) for every x, so the term is zero
    pointwise.

    Published defaults used: diag_frac 0.75, t ~ U[0, 1] on the diagonal, (s, t) ~ U[0, 1]^2 both
    orders off it. Deviations (no learned log-variance weight, N(0, I) noise, per-coordinate mean
    distance, dropout) are listed in :class:`methods._selfdistill.SelfDistillation`.

    Cost: the off-diagonal part is one jvp with graph plus one no-grad velocity call.
    """

    exact_terms = ("lsd",)
    summary = {
        "paper": "Boffi, Albergo, Vanden-Eijnden 2025 (self-distillation), LSD",
        "times": "75% diagonal t ~ U[0,1]; 25% (s, t) ~ U[0,1]^2, both orders",
        "target": "dI_t/dt on the diagonal; sg self-velocity b_t(sg X_{s,t}(I_s)) for d/dt X",
        "nfe": "any (composition)",
    }

    def distill(self, fm: FlowMap, xs: Tensor, s: Tensor, t: Tensor) -> Tensor:
        x, dx_dt = map_dt(fm, xs, s, t)
        with torch.no_grad():
            b = fm.velocity(x.detach(), t)
        return sqdist(dx_dt, b)
