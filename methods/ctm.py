"""Consistency Trajectory Models (Kim et al. 2023), anytime-to-anytime, in flow-map form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

import unify
from methods.base import Logs, Method, ema_update, frozen_copy, register
from methods.common import karras_grid, noise_like, pseudo_huber, run_length_decay, sqdist
from unify.flowmap import FlowMap


@register("ctm")
class ConsistencyTrajectory(Method):
    """L_CTM = E d(X^-_{u,1}(X_{s,u}(I_s)), sg X^-_{u,1}(X^{sg}_{m,u}(X'_{s,m}(I_s)))), s < m <= u,
    X' the teacher ODE step s -> m, X^- the target map (weights frozen, graph through its input).

    Source: Kim et al. 2023 (CTM, arXiv 2310.02279), Eq. 6-7 (soft consistency matching);
    sony/ctm ``code/cm/karras_diffusion.py`` (``ctm_losses``) and ``code/cm/resample.py``. CTM's
    G(x_t, t, s) is our X_{s,u}, EDM sigma translated to our time (docs/methods.md).
    Defaults kept: N = 18 Karras points; n in {1..N-1} with p(n) ~ n, s ~ U{0..N-1-n}, m = s + n,
    u ~ U{m..N-1}; inner target map with the current weights under no_grad (``model_sg``);
    fine-tuned from the teacher (``init_from_teacher``); DSM term optional (``dsm_weight``).
    Deviations:
    - theta^- EMA run_length_decay(0.999, 50_000, steps): CTM's 0.999 as a fraction of the run;
    - Karras grid ends pinned to t = 0 and 1;
    - d = pseudo-Huber (iCT's c) instead of LPIPS (downloaded weights, images only);
    - DSM term in velocity form, fixed weight, no lambda(sigma), only its lognormal sigma law;
    - no GAN term; sampler gamma = 0 (deterministic composition) on the Karras grid of nfe steps.
    """

    @dataclass(frozen=True)
    class Config:
        n_points: int = 18  # Karras grid points
        mu: float | None = None  # theta^- EMA; None: CTM's 0.999 at 50k steps, scaled
        dsm_weight: float = 0.0  # 0 = no DSM term
        dsm_p_mean: float = -1.2  # ln sigma law of the DSM term
        dsm_p_std: float = 1.2

    family = "consistency"
    needs_teacher = True
    init_from_teacher = True
    exact_terms = ("ctm",)
    summary = {
        "paper": "Kim et al. 2023 (CTM)",
        "times": "Karras grid N = 18: s < m <= u, m - s ~ n, p(n) ~ n",
        "target": "sg X^-_{u,1} X_{m,u}(teacher step s -> m), pseudo-Huber at the data end",
        "nfe": "any (flow-map composition, Karras grid)",
    }

    def setup(self, flow_map: FlowMap, total_steps: int) -> None:
        super().setup(flow_map, total_steps)
        self.nets["target"] = frozen_copy(flow_map)
        mu = self.cfg.mu
        self.mu = run_length_decay(0.999, 50_000, self.total_steps) if mu is None else mu

    def _indices(self, batch: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Grid indices i_s < i_m <= i_u of CTM's sample_t / sample_s, each (B,)."""
        n_pts = self.cfg.n_points
        steps = torch.arange(1, n_pts, dtype=like.dtype, device=like.device)
        n = torch.multinomial(steps, batch, replacement=True) + 1  # p(n) ~ n
        u01 = torch.rand(2, batch, dtype=like.dtype, device=like.device)
        i_s = (u01[0] * (n_pts - n)).long()  # U{0..N-1-n}
        i_m = i_s + n
        i_u = i_m + (u01[1] * (n_pts - i_m)).long()  # U{i_m..N-1}
        return i_s, i_m, i_u

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        times, _ = karras_grid(self.cfg.n_points, self.interpolant, x1)
        i_s, i_m, i_u = self._indices(x1.shape[0], x1)
        s, m, u = times[i_s], times[i_m], times[i_u]
        one = torch.ones_like(s)
        outer = self.nets["target"]
        xs = self.interpolant.sample(x0, x1, s).xt
        with torch.no_grad():
            y = self.teacher.step(xs, s, m)
            x_tgt = outer(flow_map(y, m, u), u, one)
        x_est = outer(flow_map(xs, s, u), u, one)  # weights of outer frozen, graph kept
        ctm = pseudo_huber(x_est, x_tgt).mean()
        logs = {"ctm": ctm.detach()}
        loss = ctm
        if self.cfg.dsm_weight > 0:
            z = torch.randn(x1.shape[0], dtype=x1.dtype, device=x1.device)
            t = self.interpolant.time_of_sigma((self.cfg.dsm_p_mean + self.cfg.dsm_p_std * z).exp())
            path = self.interpolant.sample(x0, x1, t)
            dsm = sqdist(flow_map.velocity(path.xt, t), path.vt).mean()
            loss = loss + self.cfg.dsm_weight * dsm
            logs["dsm"] = dsm.detach()
        return loss, logs

    def after_step(self, flow_map: FlowMap, step: int) -> None:
        ema_update(self.nets["target"], flow_map, self.mu)

    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """gamma = 0 CTM sampling: X over the Karras grid of nfe steps (nfe NFE)."""
        self.check_nfe(nfe)
        grid = unify.time_grid(nfe, "edm", interpolant=self.interpolant, dtype=torch.float64)
        return unify.sample(flow_map, x0, nfe, grid)
