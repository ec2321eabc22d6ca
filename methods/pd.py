"""Progressive distillation (Salimans & Ho 2022) on a uniform grid, in flow-map form."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import unify
from methods.base import Logs, Method, frozen_copy, register
from methods.common import like_or_default, noise_like, sqdist
from unify.edm import data_scale, time_of_edm_sigma
from unify.flowmap import FlowMap


class _Progress(nn.Module):
    """Steps completed, as a buffer so that a restored checkpoint knows its sampling N."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("done", torch.zeros((), dtype=torch.long))


@register("pd")
class ProgressiveDistillation(Method):
    """L = E_s w(s, t) |X_{s,t}(I_s) - sg X^T_{m,t}(X^T_{s,m}(I_s))|^2, (s, m, t) consecutive points
    of PD's uniform cosine-time half-step grid, w = max(a_s^2, b_s^2 / k^2) / (a_s b_t - a_t b_s)^2.

    Source: progressive distillation, Salimans & Ho 2022 (arXiv 2202.00512), Alg. 2;
    google-research ``diffusion_distillation/dpm.py``. w is its truncated-SNR x-space weight
    max(SNR_s, 1) for a DDIM-parametrised map, both via ``unify.edm`` (k = 0.5 / sigma_data).
    Defaults kept: N halves each stage down to ``final_steps`` = 1, stages share the steps
    equally, teacher X^T <- frozen student at each stage (stage 0: ``teacher.step``), no EMA
    target, grid uniform in cosine time (``grid``; docs/recipes.md), lr annealed linearly to 0 in
    each stage when fine-tuned from the teacher; the sampler runs at nfe == N only.
    Deviations:
    - ``start_steps`` = 2 instead of 8192: a sweep at the small budget (docs/recipes.md) chose it;
    - from scratch (exact oracle) the lr stays constant (``anneal=None`` picks by initialisation).
    """

    @dataclass(frozen=True)
    class Config:
        start_steps: int = 2  # student steps in stage 0 (published 8192 -> 4096 student)
        final_steps: int = 1
        anneal: bool | None = None  # lr to 0 within each stage; None: if started from teacher
        last_weight: float = 1.0  # the 2- and 1-step stages' share (CM re-implementation: 2)

    family = "teacher-distilled"
    needs_teacher = True
    init_from_teacher = True
    exact_terms = ("pd",)
    summary = {
        "paper": "Salimans & Ho 2022 (PD)",
        "times": "N-grid uniform in PD's cosine time, s -> next point, N halving 2 -> 1",
        "target": "two half-steps of the stage teacher (frozen student copy)",
        "nfe": "N of the final stage (1)",
    }

    def setup(self, flow_map: FlowMap, total_steps: int) -> None:
        super().setup(flow_map, total_steps)
        ratio = self.cfg.start_steps // self.cfg.final_steps
        if self.cfg.final_steps < 1 or ratio * self.cfg.final_steps != self.cfg.start_steps:
            raise ValueError("start_steps must be final_steps times a power of two")
        if ratio & (ratio - 1):
            raise ValueError(f"start_steps / final_steps = {ratio} is not a power of two")
        self.n_stages = int(math.log2(ratio)) + 1
        self.nets["teacher"] = frozen_copy(flow_map)
        self.nets["progress"] = _Progress()

    def stage(self, step: int) -> int:
        """Stages share the steps by weight 1 each, the last two (N = 2, 1) by ``last_weight``."""
        k = self.n_stages
        weights = [1.0] * max(k - 2, 0) + [self.cfg.last_weight] * min(k, 2)
        ends, acc = [], 0.0
        for w in weights:
            acc += w
            ends.append(acc / sum(weights) * self.total_steps)
        return next((i for i, e in enumerate(ends) if max(step, 0) < e - 1e-9), k - 1)

    def lr_scale(self, step: int) -> float:
        """1 - (step - stage start) / stage length: the published per-stage linear anneal."""
        anneal = self.init == "teacher" if self.cfg.anneal is None else self.cfg.anneal
        if not anneal:
            return 1.0
        start, end = self.stage_bounds(step)
        return 1.0 - (step - start) / (end - start)

    def n_steps(self, step: int) -> int:
        """Student steps N at a training step."""
        return self.cfg.start_steps >> self.stage(step)

    def _teacher_step(self, stage: int):
        return self.teacher.step if stage == 0 else self.nets["teacher"]

    def grid(self, n: int) -> Tensor:
        """2n + 1 float64 times of the half-step grid: PD's uniform grid in the cosine-VP time,
        t_PD = 1 - j / (2n) (sigma / alpha = tan(pi t_PD / 2) = sigma_EDM), mapped to our time by
        the translation rule (``unify.edm``), ends pinned to 0 and 1."""
        frac = torch.arange(2 * n + 1, dtype=torch.float64) / (2 * n)
        grid = time_of_edm_sigma(
            self.interpolant, 1 / torch.tan(0.5 * math.pi * frac), self.sigma_data
        )
        grid[0], grid[-1] = 0.0, 1.0
        return grid

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(s, mid, t): a student step s -> t of the stage's N-grid and its midpoint, k ~ U{0..N-1}
        (PD's t = (k + 1) / N, t' = t - 1/(2N), t'' = t - 1/N in the cosine time)."""
        like, steps = like_or_default(like), self.n_steps(step)
        k = torch.randint(0, steps, (n,), generator=generator, device=like.device)
        grid = self.grid(steps).to(like)
        return grid[2 * k], grid[2 * k + 1], grid[2 * k + 2]

    def weight(self, s: Tensor, t: Tensor) -> Tensor:
        """max(SNR_PD(s), 1) / c^2 on |X_{s,t} - target|^2, c = b_t - a_t b_s / a_s, SNR_PD = 1 /
        sigma_EDM(s)^2: PD's truncated-SNR x-space loss in our units (its value / k^2)."""
        a_s, b_s, _, _ = self.interpolant.coeffs(s)
        a_t, b_t, _, _ = self.interpolant.coeffs(t)
        k = data_scale(self.sigma_data)
        return torch.maximum(a_s**2, b_s**2 / k**2) / (a_s * b_t - a_t * b_s) ** 2

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        n = self.n_steps(step)
        s, mid, t = self.sample_times(x1.shape[0], step, like=x1)
        xs = self.interpolant.sample(x0, x1, s).xt
        with torch.no_grad():
            teacher = self._teacher_step(self.stage(step))
            target = teacher(teacher(xs, s, mid), mid, t)
        loss = (self.weight(s, t) * sqdist(flow_map(xs, s, t), target)).mean()
        return loss, {
            "pd": loss.detach(),
            "N": torch.tensor(float(n), dtype=x1.dtype, device=x1.device),
        }

    def after_step(self, flow_map: FlowMap, step: int) -> None:
        self.nets["progress"].done.fill_(step + 1)
        if self.stage(step + 1) > self.stage(step):  # new stage: teacher <- student, N halves
            self.nets["teacher"].load_state_dict(flow_map.state_dict())

    def current_steps(self) -> int:
        """N of the stage of the last completed step (start_steps before training)."""
        return (
            self.n_steps(int(self.nets["progress"].done) - 1) if self.nets else self.cfg.start_steps
        )

    def supports(self, nfe: int) -> bool:
        return nfe == self.current_steps()

    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Composition on the stage's N-grid (DDIM with the stage's N, ``grid``), nfe NFE."""
        self.check_nfe(nfe)
        return unify.sample(flow_map, x0, nfe, self.grid(nfe)[::2])
