"""Align Your Flow (Sabour, Fidler & Kreis 2025, arXiv 2506.14603): AYF-EMD and AYF-LMD."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods.base import Logs, Method, register
from methods.common import like_or_default, logit_normal, noise_like
from unify.flowmap import FlowMap, eulerian_tangent, map_dt
from unify.interpolant import bcast

VARIANTS = ("emd", "lmd")


@register("ayf")
class AlignYourFlow(Method):
    """EMD: L = E_{s<t} |v(I_s, s, t) - sg(v + T^)|^2,  T^ = T / (|T| + c),
         T = (u - v) + r (t - s)(d/ds v + grad_x v . u),  u = b_s(I_s) the teacher velocity;
    LMD: L = E_{s<t} |v(I_s, s, t) - sg(v - R^)|^2,  R = d/dt X_{s,t}(I_s) - b_t(X_{s,t}(I_s)).

    Source: AYF-EMD / AYF-LMD, Sabour, Fidler & Kreis 2025 (arXiv 2506.14603); no official code,
    ports revsic/flowmodels ``alignyourflow.py``, NVlabs/FastGen ``mean_flow.py`` (``opt_grad``).
    AYF's reversed time is translated as in docs/methods.md (tau = 1 - t_A, v = -F).
    Defaults kept: c = 0.1 (per-sample L2), r = min(r_max, step / H), r_max = 0.99, v^- = sg v
    (no EMA target), squared L2 on v summed over coordinates, composition sampler.
    Deviations:
    - no autoguidance (needs a second, weaker teacher) and no adversarial fine-tuning stage;
    - (s, t): two sorted logit-normal(+0.8, 1.6) draws on tau (FastGen; the paper's law is unread);
    - LMD normalises R like EMD and has no warm-up (no LMD implementation exists);
    - H = 2.5% of the run (``warmup``; the paper's H is unreported).
    """

    needs_teacher = True
    family = "teacher-distilled"
    init_from_teacher = True  # unconfirmed for the paper; FlowWithMe and FastGen do so
    exact_terms = ("tangent_norm",)
    semigradient = True
    loss_is_progress = False  # the value is |T^|^2 ~ 1 whatever the map (docs/methods.md)
    exact_with = {"r_max": 1.0}
    summary = {
        "paper": "Sabour, Fidler, Kreis 2025 (AYF), AYF-EMD; no autoguidance, no GAN stage",
        "times": "s < t, two logit-normal(+0.8, 1.6) draws sorted",
        "target": "sg(v + T / (norm T + 0.1)), T the Eulerian tangent along the teacher, warm-up r <= 0.99",
        "nfe": "any (composition)",
    }

    @dataclass(frozen=True)
    class Config:
        variant: str = "emd"  # "emd" (AYF-EMD, the paper's method) | "lmd" (AYF-LMD ablation)
        mean: float = 0.8  # logit-normal mean on our tau (FastGen: -0.8 on t_A)
        std: float = 1.6  # FastGen's AYF-style config; 1.0 = revsic (the previous default)
        c: float = 0.1  # tangent normalisation constant
        r_max: float = 0.99  # warm-up cap
        warmup: float = 0.025  # warm-up H as a fraction of training
        lmd_normalize: bool = True  # normalise R in the LMD variant (unconfirmed)

        def __post_init__(self) -> None:
            if self.variant not in VARIANTS:
                raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
            if self.std <= 0 or self.c < 0 or not 0 <= self.r_max <= 1 or self.warmup < 0:
                raise ValueError("need std > 0, c >= 0, 0 <= r_max <= 1, warmup >= 0")

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(s, t), s <= t: two i.i.d. logit-normal(mean, std) draws, sorted."""
        like = like_or_default(like)
        a = logit_normal(n, like, self.cfg.mean, self.cfg.std, generator)
        b = logit_normal(n, like, self.cfg.mean, self.cfg.std, generator)
        return torch.minimum(a, b), torch.maximum(a, b)

    def warmup_r(self, step: int) -> float:
        h = self.cfg.warmup * self.total_steps
        return self.cfg.r_max if h <= 0 else min(self.cfg.r_max, step / h)

    def normalise(self, y: Tensor) -> Tensor:
        return y / bcast(y.flatten(1).norm(dim=1) + self.cfg.c, y)

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        s, t = self.sample_times(x1.shape[0], step, like=x1)
        xs = self.interpolant.sample(x0, x1, s).xt
        if self.cfg.variant == "emd":
            with torch.no_grad():
                u = self.teacher.velocity(xs, s)
            v, res = eulerian_tangent(flow_map, xs, s, t, u, self.warmup_r(step))  # v with graph
            res = res.detach()
            target = (v + self.normalise(res)).detach()
        else:
            with torch.no_grad():
                x, dx_dt = map_dt(flow_map, xs, s, t)
                res = dx_dt - self.teacher.velocity(x, t)  # Lagrangian residual R
                res_hat = self.normalise(res) if self.cfg.lmd_normalize else res
            v = flow_map.avg_velocity(xs, s, t)
            target = (v - res_hat).detach()
        loss = (v - target).pow(2).flatten(1).sum(1).mean()
        norm = res.flatten(1).norm(dim=1).mean()
        return loss, {"tangent_norm": norm, "loss": loss.detach()}
