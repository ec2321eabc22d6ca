"""Consistency distillation (Song, Dhariwal, Chen & Sutskever 2023), in flow-map form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods._consistency import ConsistencyMethod
from methods.base import Logs, register
from methods.common import (
    karras_grid,
    like_or_default,
    noise_like,
    pseudo_huber_edm,
    run_length_decay,
)
from unify.flowmap import FlowMap


@register("cd")
class ConsistencyDistillation(ConsistencyMethod):
    """L = E_n d(X_{t_n,1}(I_{t_n}), sg X^-_{t_{n+1},1}(X'_{t_n,t_{n+1}}(I_{t_n}))), n ~ U{0..N-2},
    X' one teacher step (Heun for a trained velocity, the exact map for an oracle).

    Source: consistency distillation, Song, Dhariwal, Chen & Sutskever 2023 (arXiv 2303.01469),
    Eq. 7 / Alg. 2; openai/consistency_models_cifar10 ``jcm/losses.py``. f(x_sigma, sigma) is our
    X_{t,1}(I_t), EDM sigma translated to our time (docs/methods.md); X_{1,1} = id, no c_skip.
    Defaults kept: N = 18 Karras points (rho = 7, sigma in [0.002, 80]), n uniform, lambda = 1;
    target mu = 0 (theta^- = sg theta) when started from the trained teacher (init_from_teacher).
    Deviations:
    - from scratch (exact oracle) mu = run_length_decay(0.95, 1_500, steps): measured, unpublished;
    - grid ends pinned to t = 0 (sigma = inf) and t = 1 (data), not sigma = 80 and 0.002;
    - d = pseudo-Huber of iCT (c = 0.00054 sqrt(d)) instead of LPIPS (downloaded VGG weights);
    - the sampler re-noises on the Karras grid of nfe steps (2 steps: iCT's sigma = 0.821), not at
      CM's ternary-searched times.
    """

    @dataclass(frozen=True)
    class Config:
        n_points: int = 18  # Karras grid points (N of the paper), N - 1 adjacent pairs
        mu: float | None = None  # target EMA; None: 0 from the teacher (CD CIFAR), else scaled 0.95
        mid_sigma: float | None = 0.821  # 2-step sampler re-noise (iCT); None = Karras grid

    family = "consistency"
    needs_teacher = True
    init_from_teacher = True
    loss_is_progress = False  # the target net moves with the model: the value can rise as it learns
    exact_terms = ("cd",)
    summary = {
        "paper": "Song et al. 2023 (CD)",
        "times": "adjacent Karras pair (t_n, t_{n+1}), N = 18, to the data end",
        "target": "sg X^-_{t_{n+1},1}(teacher step t_n -> t_{n+1}), pseudo-Huber",
        "nfe": "any (consistency multistep, re-noising)",
    }

    def target_decay(self) -> float:
        if self.cfg.mu is not None:
            return self.cfg.mu
        return 0.0 if self.init == "teacher" else run_length_decay(0.95, 1_500, self.total_steps)

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(s, s_next), s < s_next: an adjacent pair of the Karras grid, index ~ U{0..N-2}."""
        like = like_or_default(like)
        times, _ = karras_grid(self.cfg.n_points, self.interpolant, like, self.sigma_data)
        k = torch.randint(0, self.cfg.n_points - 1, (n,), generator=generator, device=like.device)
        return times[k], times[k + 1]  # s < s_next: noisier point first

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        s, s_next = self.sample_times(x1.shape[0], step, like=x1)
        one = torch.ones_like(s)
        xs = self.interpolant.sample(x0, x1, s).xt
        with torch.no_grad():
            y = self.teacher.step(xs, s, s_next)
            target = self.target_net(flow_map)(y, s_next, one)
        loss = pseudo_huber_edm(flow_map(xs, s, one), target, self.sigma_data).mean()
        return loss, {"cd": loss.detach()}
