"""AlphaFlow (Zhang et al. 2025, arXiv 2510.20771), in the project's time convention."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

import unify
from methods.base import Logs, Method, register
from methods.common import like_or_default, logit_normal, noise_like, split_count
from unify.flowmap import FlowMap, eulerian_tangent
from unify.interpolant import bcast

SAMPLERS = ("chain", "consistency")


@register("alphaflow")
class AlphaFlow(Method):
    """l = mean_D |v(I_s, s, t) - V_tgt|^2,  L = mean w l / sg(l + eps),  delta = alpha (t - s),
    V_tgt = clip(alpha u + (1 - alpha) sg v(I_s + delta u, s + delta, t), +-4)  (w = alpha),
    V_tgt = sg[u + (t - s)(d/ds v + grad v . u)] at alpha = 0 (MeanFlow, w = 1), u on s = t,

    alpha-Flow of Zhang et al. 2025 (arXiv 2510.20771; snap-research/alphaflow
    ``src/training/loss.py:AlphaFlowLoss``), u = dI_s/ds. alpha: sigmoid curriculum 1 -> 0 over
    the run (gamma 25, clamped to 0 / 1 within 0.005: trajectory FM, then alpha-Flow, then
    MeanFlow); a fraction ``fm_frac`` = 0.5 of each batch has s = t (B/2 ``ratio_fm``).
    Times (official minmax pairs, t_c = 1 - tau): FM tau and both pair draws logit-normal(+0.4, 1).
    Unconfirmed (config file not published, kept as knobs): eps = 1e-3, clip 4.0, the time law.
    Deviations: no CFG (no labels); any interpolant through dI/ds (published: linear); the
    curriculum spans ``change_start``..``change_end`` of our run (published 0..400k of 400k).
    Only alpha -> 0 makes the exact map stationary (``exact_with``); see docs/methods.md.
    """

    needs_teacher = False
    family = "self-distilled"
    semigradient = True  # targets from the online weights under no_grad
    loss_is_progress = False  # the target moves with the model and alpha
    exact_with = {"alpha": 0.0}
    summary = {
        "paper": "Zhang et al. 2025 (AlphaFlow), B/2 recipe; no CFG",
        "times": "50% s = t; else s < t, two logit-normal(+0.4, 1) draws sorted",
        "target": "alpha u + (1 - alpha) sg v(I_s + alpha (t - s) u, ., t); alpha 1 -> 0 (MeanFlow jvp)",
        "nfe": "any (composition; 1 and 2 published)",
    }

    @dataclass(frozen=True)
    class Config:
        alpha_init: float = 1.0  # curriculum start (trajectory flow matching)
        alpha_end: float = 0.0  # curriculum end (MeanFlow)
        gamma: float = 25.0  # sigmoid steepness
        clamp_value: float = 0.005  # alpha below -> 0, above 1 - clamp_value -> 1
        change_start: float = 0.0  # curriculum start as a fraction of training
        change_end: float = 1.0  # curriculum end as a fraction of training
        alpha: float | None = None  # a constant alpha instead of the curriculum
        fm_frac: float = 0.5  # ratio_fm: the share of each batch with s = t
        mean: float = 0.4  # logit-normal mean on our tau (code: -0.4 on t_c; unconfirmed)
        std: float = 1.0
        eps: float = 1e-3  # adaptive weight offset (unconfirmed)
        clamp_target: float = 4.0  # clamp_utgt on the alpha > 0 target (unconfirmed)
        sampler: str = "chain"  # "chain": X_{tau_k, tau_k+1}; "consistency": X_{tau_k,1} + re-noise

        def __post_init__(self) -> None:
            if self.sampler not in SAMPLERS:
                raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
            if not 0.0 <= self.fm_frac <= 1.0 or not 0.0 <= self.change_start < self.change_end:
                raise ValueError("need 0 <= fm_frac <= 1 and 0 <= change_start < change_end")
            if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
                raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
            if self.std <= 0 or self.eps <= 0 or self.clamp_target <= 0:
                raise ValueError("need std > 0, eps > 0, clamp_target > 0")

    def alpha(self, step: int) -> float:
        """The official ``get_ratio`` (sigmoid scheduler, then clamping) at ``step`` of our run."""
        c = self.cfg
        if c.alpha is not None:
            a = c.alpha
        else:
            k0, k1 = c.change_start * self.total_steps, c.change_end * self.total_steps
            if step < k0:
                a = c.alpha_init
            elif step > k1:
                a = c.alpha_end
            else:
                progress = (step - (k0 + (k1 - k0) / 2)) / (k1 - k0)
                sig = 1 / (1 + math.exp(-progress * c.gamma))
                a = c.alpha_init + (c.alpha_end - c.alpha_init) * sig
        if a < c.clamp_value:
            return 0.0
        return 1.0 if a > 1 - c.clamp_value else a

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(s, t), each (n,): the first ``split_count(n, fm_frac)`` on the diagonal s = t, the rest
        a sorted pair of logit-normal draws (the official FM part first, then the minmax pairs)."""
        like, n_fm = like_or_default(like), split_count(n, self.cfg.fm_frac)

        def draw(k: int) -> Tensor:
            return logit_normal(k, like, self.cfg.mean, self.cfg.std, generator)

        tau = draw(n_fm)
        a, b = draw(n - n_fm), draw(n - n_fm)
        s = torch.cat([tau, torch.minimum(a, b)])
        t = torch.cat([tau, torch.maximum(a, b)])
        return s, t

    def target(
        self, flow_map: FlowMap, x: Tensor, s: Tensor, t: Tensor, u: Tensor, alpha: float
    ) -> tuple[Tensor, Tensor]:
        """(V_tgt, weight before 1 / (l + eps)), no grad: the branches of the official loss."""
        delta = alpha * (t - s)
        target, weight = u.clone(), torch.ones_like(s)
        cont = delta == 0  # official mask_c: s = t, or alpha = 0
        mf = cont & ~torch.isclose(1 - t, 1 - s)  # official mask_mf on (r, t_c): the jvp target
        if bool(mf.any()):
            v, tangent = eulerian_tangent(flow_map, x[mf], s[mf], t[mf], u[mf])
            target[mf] = (v + tangent).to(target.dtype)  # u + (t - s)(d/ds v + grad v . u)
        d = ~cont
        if bool(d.any()):
            xd, sd, td, dd, ud = x[d], s[d], t[d], delta[d], u[d]
            if bool(torch.isclose(1 - dd / (td - sd), torch.zeros_like(sd)).all()):  # alpha = 1
                nxt = torch.zeros_like(xd)
            else:
                nxt = flow_map.avg_velocity(xd + bcast(dd, xd) * ud, sd + dd, td)
            mean = (bcast(dd, xd) * ud + bcast(td - sd - dd, xd) * nxt) / bcast(td - sd, xd)
            target[d] = mean.clamp(-self.cfg.clamp_target, self.cfg.clamp_target)
            weight[d] = alpha
        return target, weight

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        s, t = self.sample_times(x1.shape[0], step, like=x1)
        alpha = self.alpha(step)
        path = self.interpolant.sample(x0, x1, s)
        with torch.no_grad():
            target, weight = self.target(flow_map, path.xt, s, t, path.vt, alpha)
        v = flow_map.avg_velocity(path.xt, s, t)
        ell = (v - target).pow(2).flatten(1).mean(1)
        loss = (weight / (ell.detach() + self.cfg.eps) * ell).mean()
        logs = {
            "mse": ell.detach().mean(),
            "tfm": (v.detach() - path.vt).pow(2).flatten(1).mean(1).mean(),  # trajectory FM
            "alpha": torch.tensor(alpha, dtype=x1.dtype, device=x1.device),
        }
        return loss, logs

    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """``chain``: composition over the uniform grid (1 NFE = X_{0,1}); ``consistency``: map to
        the data end and re-noise at tau_k = k / nfe (the official consistency sampling)."""
        self.check_nfe(nfe)
        if self.cfg.sampler == "chain":
            return unify.sample(flow_map, x0, nfe)
        return unify.consistency_sample(flow_map, x0, nfe, self.interpolant, "uniform", generator)
