"""Eulerian map distillation (EMD): Flow Map Matching, Boffi, Albergo & Vanden-Eijnden 2024."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods._pairs import UnitSquarePairs
from methods.base import Logs, Method, register
from methods.common import noise_like
from unify.flowmap import FlowMap, map_ds


@register("emd")
class EulerianMapDistillation(UnitSquarePairs, Method):
    """L = E_{s,t} E |d/ds X_{s,t}(I_s) + grad X_{s,t}(I_s) b_s(I_s)|^2, b the teacher velocity.

    Source: Eulerian map distillation, Boffi, Albergo & Vanden-Eijnden 2024 (Flow Map Matching,
    arXiv 2406.07507), Prop. 3.7; nmboffi/flow_map_matching_public ``py/common/losses.py``.
    Defaults kept: w(s, t) = 1, (s, t) ~ U[0, 1]^2.
    Deviation: pairs sorted so s <= t (``order="forward"``; the public code keeps both orders,
    ``order="both"``), the only direction samplers use.
    """

    family = "teacher-distilled"
    needs_teacher = True
    exact_terms = ("emd",)
    summary = {
        "paper": "Boffi, Albergo, Vanden-Eijnden 2024 (FMM), Prop. 3.7",
        "times": "(s, t) ~ U[0,1]^2, s <= t",
        "target": "0 = d/ds X + grad X . b_s (Eulerian PDE residual)",
        "nfe": "any (composition)",
    }

    @dataclass(frozen=True)
    class Config:
        order: str = "forward"

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        s, t = self.sample_times(x1.shape[0], step, like=x1)
        xs = self.interpolant.sample(x0, x1, s).xt
        with torch.no_grad():
            b = self.teacher.velocity(xs, s)
        _, residual = map_ds(flow_map, xs, s, t, b)
        loss = residual.pow(2).flatten(1).mean(1).mean()
        return loss, {"emd": loss.detach()}
