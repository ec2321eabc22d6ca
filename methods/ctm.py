"""Consistency Trajectory Models (Kim et al. 2023), anytime-to-anytime, in flow-map form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

import unify
from methods.base import Logs, Method, ema_update, frozen_copy, register
from methods.common import (
    edm_time_grid,
    karras_grid,
    like_or_default,
    noise_like,
    pseudo_huber_edm,
    run_length_decay,
)
from unify.edm import data_scale, edm_sigma, time_of_edm_sigma
from unify.flowmap import FlowMap

HEUN_N = ("batch", "sample")


def last_layer(module: nn.Module) -> nn.Parameter:
    """The weight of the output layer: the last trainable parameter of two or more dimensions
    registered (the project's MLP and UNet register their output layer last); the last trainable
    parameter of any shape when there is none (an oracle's scalar)."""
    params = [p for p in module.parameters() if p.requires_grad]
    return ([p for p in params if p.ndim >= 2] or params)[-1]


def adaptive_weight(loss1: Tensor, loss2: Tensor, layer: nn.Parameter) -> Tensor:
    """sony/ctm ``calculate_adaptive_weight``: |grad_W loss1| / (|grad_W loss2| + 1e-4), clamped to
    [0, 1e4] and detached, W the output layer's weight."""
    norms = []
    for loss in (loss1, loss2):
        (grad,) = torch.autograd.grad(loss, layer, retain_graph=True, allow_unused=True)
        norms.append(grad.norm() if grad is not None else loss.new_zeros(()))
    return torch.clamp(norms[0] / (norms[1] + 1e-4), 0.0, 1e4).detach()


@register("ctm")
class ConsistencyTrajectory(Method):
    """L_CTM = E d(X^-_{u,1}(X_{s,u}(I_s)), sg X^-_{u,1}(X^{sg}_{m,u}(X'_{s,m}(I_s)))), s < m <= u,
    X' the teacher ODE step s -> m, X^- the target map (weights frozen, graph through its input).

    Source: Kim et al. 2023 (CTM, arXiv 2310.02279), Eq. 6-7 (soft consistency matching);
    sony/ctm ``code/cm/karras_diffusion.py`` (``ctm_losses``) and ``code/cm/resample.py``. CTM's
    G(x_t, t, s) is our X_{s,u}, EDM sigma translated by ``unify.edm`` (docs/recipes.md).
    Defaults kept: N = 18 Karras points; one n in {1..N-1} per batch, p(n) ~ n, s ~ U{0..N-1-n},
    m = s + n, u ~ U{m..N-1}; target inner map under no_grad (``model_sg``); teacher init; + DSM
    lambda(sigma) |D - x|^2 weighted by |grad_W L_CTM| / |grad_W L_DSM| (last layer W).
    Deviations:
    - theta^- EMA run_length_decay(0.999, 50_000, steps): CTM's 0.999 as a fraction of the run;
    - Karras grid ends pinned to t = 0 and 1;
    - d = pseudo-Huber (iCT's c, EDM units) instead of LPIPS (downloaded weights, images only);
    - no GAN term; sampler gamma = 0 (deterministic composition) on the Karras grid of nfe steps.
    """

    @dataclass(frozen=True)
    class Config:
        n_points: int = 18  # Karras grid points
        mu: float | None = None  # theta^- EMA; None: CTM's 0.999 at 50k steps, scaled
        dsm_weight: float = 1.0  # sony/ctm denoising_weight; 0 = no DSM term
        adaptive: bool = True  # sony/ctm apply_adaptive_weight (False: fixed dsm_weight)
        dsm_p_mean: float = -1.2  # the lognormal half of the DSM sigma law
        dsm_p_std: float = 1.2
        dsm_karras_frac: float = 0.7  # the other half: Karras sigma at U[0, 0.7] (diffusion_mult)
        heun_n: str = "batch"  # teacher steps n: one per batch (sony/ctm) | "sample"

        def __post_init__(self) -> None:
            if self.heun_n not in HEUN_N:
                raise ValueError(f"heun_n must be one of {HEUN_N}, got {self.heun_n!r}")

    family = "consistency"
    needs_teacher = True
    init_from_teacher = True
    exact_terms = ("ctm",)
    summary = {
        "paper": "Kim et al. 2023 (CTM)",
        "times": "Karras grid N = 18: s < m <= u, m - s ~ n, p(n) ~ n",
        "target": "sg X^-_{u,1} X_{m,u}(teacher step s -> m), pseudo-Huber at the data end; + DSM (adaptive weight)",
        "nfe": "any (flow-map composition, Karras grid)",
    }

    def setup(self, flow_map: FlowMap, total_steps: int) -> None:
        super().setup(flow_map, total_steps)
        self.nets["target"] = frozen_copy(flow_map)
        mu = self.cfg.mu
        self.mu = run_length_decay(0.999, 50_000, self.total_steps) if mu is None else mu

    def _indices(
        self, batch: int, like: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Grid indices i_s < i_m <= i_u of CTM's sample_t / sample_s, each (B,)."""
        n_pts, kw = self.cfg.n_points, {"dtype": like.dtype, "device": like.device}
        steps = torch.arange(1, n_pts, **kw)
        draws = 1 if self.cfg.heun_n == "batch" else batch
        n = torch.multinomial(steps, draws, replacement=True, generator=generator) + 1  # p(n) ~ n
        n = n.expand(batch)
        u01 = torch.rand(2, batch, generator=generator, **kw)
        i_s = (u01[0] * (n_pts - n)).long()  # U{0..N-1-n}
        i_m = i_s + n
        i_u = i_m + (u01[1] * (n_pts - i_m)).long()  # U{i_m..N-1}
        return i_s, i_m, i_u

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(s, m, u), s < m <= u on the Karras grid: CTM's (t, t_dt, s) of ``ctm_losses``."""
        like = like_or_default(like)
        times, _ = karras_grid(self.cfg.n_points, self.interpolant, like, self.sigma_data)
        i_s, i_m, i_u = self._indices(n, like, generator)
        return times[i_s], times[i_m], times[i_u]

    def dsm_times(
        self, n: int, generator: torch.Generator | None = None, like: Tensor | None = None
    ) -> Tensor:
        """Times of the DSM term (``HalfLogNormalHalfUniformSampler``): n // 2 with ln sigma ~
        N(dsm_p_mean, dsm_p_std^2), the rest sigma = Karras(U[0, dsm_karras_frac])."""
        like, c = like_or_default(like), self.cfg
        kw = {"generator": generator, "dtype": like.dtype, "device": like.device}
        sigma = (c.dsm_p_mean + c.dsm_p_std * torch.randn(n // 2, **kw)).exp()
        frac = c.dsm_karras_frac * torch.rand(n - n // 2, **kw)
        lo, hi = 0.002 ** (1 / 7), 80.0 ** (1 / 7)
        sigma = torch.cat([sigma, (hi + frac * (lo - hi)) ** 7])
        return time_of_edm_sigma(self.interpolant, sigma, self.sigma_data)

    def dsm(self, flow_map: FlowMap, x1: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """Per-sample DSM loss of ``get_DSM_loss`` in EDM units: lambda(sigma) mean((k D - k x1)^2),
        lambda = (sigma^2 + 0.25) / (0.5 sigma)^2 (``karras_weight``), D the data estimate of the
        model's velocity v(I_t, t, t) (CTM's g_theta(x, t, t)), k = 0.5 / sigma_data."""
        path = self.interpolant.sample(noise, x1, t)
        den = self.interpolant.denoise(path.xt, flow_map.velocity(path.xt, t), t)
        sigma = edm_sigma(self.interpolant, t, self.sigma_data)
        lam = (sigma**2 + 0.25) / (0.5 * sigma) ** 2
        return lam * (data_scale(self.sigma_data) * (den - x1)).pow(2).flatten(1).mean(1)

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        s, m, u = self.sample_times(x1.shape[0], step, like=x1)
        one = torch.ones_like(s)
        outer = self.nets["target"]
        xs = self.interpolant.sample(x0, x1, s).xt
        with torch.no_grad():
            y = self.teacher.step(xs, s, m)
            x_tgt = outer(flow_map(y, m, u), u, one)
        x_est = outer(flow_map(xs, s, u), u, one)  # weights of outer frozen, graph kept
        ctm = pseudo_huber_edm(x_est, x_tgt, self.sigma_data).mean()
        logs = {"ctm": ctm.detach()}
        loss = ctm
        if self.cfg.dsm_weight > 0:
            t = self.dsm_times(x1.shape[0], like=x1)
            dsm = self.dsm(flow_map, x1, torch.randn_like(x1), t).mean()  # fresh noise (sony/ctm)
            w = ctm.new_ones(()).detach()
            if self.cfg.adaptive:
                w = adaptive_weight(ctm, dsm, last_layer(flow_map))
            loss = loss + self.cfg.dsm_weight * w * dsm
            logs["dsm"], logs["dsm_balance"] = dsm.detach(), w
        return loss, logs

    def after_step(self, flow_map: FlowMap, step: int) -> None:
        ema_update(self.nets["target"], flow_map, self.mu)

    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """gamma = 0 CTM sampling: X over the Karras grid of nfe steps (nfe NFE)."""
        self.check_nfe(nfe)
        grid = edm_time_grid(nfe, self.interpolant, self.sigma_data)
        return unify.sample(flow_map, x0, nfe, grid)
