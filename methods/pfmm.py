"""Progressive flow map matching (PFMM): Boffi, Albergo & Vanden-Eijnden 2024, Sec. 3.4."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods.base import Logs, Method, frozen_copy, register
from methods.common import like_or_default, noise_like, sqdist, uniform
from unify.flowmap import FlowMap


@register("pfmm")
class ProgressiveFlowMapMatching(Method):
    """L = E |X_{s,t}(I_s) - sg (X'_{m,t} o X'_{s,m})(I_s)|^2, m = (s + t) / 2, with gaps
    0 <= t - s <= delta_k = 2^(k - stages + 1) in stage k; X' = the teacher (stage 0) or the
    previous stage's frozen student.

    Source: progressive flow map matching, Boffi, Albergo & Vanden-Eijnden 2024 (arXiv 2406.07507),
    Sec. 3.4; nmboffi/flow_map_matching_public ``py/common/losses.py`` (K = 2, the midpoint).
    Defaults kept: K = 2 composition; teacher <- student copy at each stage change.
    Deviations:
    - stage 0 uses one step of the teacher (Heun / exact), not one Euler step of b;
    - ``stages`` = 2, chosen by a sweep at the small budget (docs/recipes.md);
    - pairs drawn forward only (s <= t), the direction samplers use.
    """

    family = "teacher-distilled"
    needs_teacher = True
    exact_terms = ("pfmm",)
    summary = {
        "paper": "Boffi, Albergo, Vanden-Eijnden 2024 (FMM), Sec. 3.4",
        "times": "s < t, t - s <= delta_k doubling per stage",
        "target": "two half-steps of the previous stage's frozen map (stage 0: teacher step)",
        "nfe": "any (composition)",
    }

    @dataclass(frozen=True)
    class Config:
        stages: int = 2

    def setup(self, flow_map: FlowMap, total_steps: int) -> None:
        super().setup(flow_map, total_steps)
        if self.cfg.stages < 1:
            raise ValueError(f"pfmm needs stages >= 1, got {self.cfg.stages}")
        self.nets["teacher"] = frozen_copy(flow_map)

    def stage(self, step: int) -> int:
        return min(self.cfg.stages - 1, step * self.cfg.stages // self.total_steps)

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(s, t): gap ~ U[0, delta_k], s ~ U[0, 1 - gap], t = s + gap (stage k of ``step``)."""
        like = like_or_default(like)
        delta = 2.0 ** (self.stage(step) - self.cfg.stages + 1)
        gap = uniform(n, like, 0.0, delta, generator)
        s = uniform(n, like, generator=generator) * (1 - gap)
        return s, s + gap

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        k = self.stage(step)
        s, t = self.sample_times(x1.shape[0], step, like=x1)
        xs = self.interpolant.sample(x0, x1, s).xt
        with torch.no_grad():
            if k == 0:
                target = self.teacher.step(xs, s, t)
            else:
                teacher, m = self.nets["teacher"], 0.5 * (s + t)
                target = teacher(teacher(xs, s, m), m, t)
        loss = sqdist(flow_map(xs, s, t), target).mean()
        return loss, {"pfmm": loss.detach(), "stage": torch.tensor(float(k))}

    def after_step(self, flow_map: FlowMap, step: int) -> None:
        """At a stage change the frozen teacher becomes a copy of the student."""
        if self.stage(step + 1) != self.stage(step):
            self.nets["teacher"].load_state_dict(flow_map.state_dict())
