"""Solution Flow Models (Luo, Yuan & Liu 2025, arXiv 2512.15657), in the project's time convention."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

import unify
from methods.base import Logs, Method, register
from methods.common import like_or_default, logit_normal, noise_like, split_count
from unify.flowmap import FlowMap
from unify.interpolant import bcast

SCHEDULES = ("exponent", "const", "linear")


@register("soflow")
class SolutionFlow(Method):
    """L_cons ~ mean w |X_{s,t}(I_s) - sg X_{l,t}(I_s + (l - s) u)|^2 / (2 (t - s)(l - s)),
    w = sg 1 / (mean_D dq^2 + eps)^p,  dq = (X_{s,t}(I_s) - X_{l,t}(.)) / (l - s),  u = dI_s/ds,
    L_FM = mean sg(1 / (l_FM + eps)^p) l_FM,  l_FM = mean_D |v(I_r, r, r) - dI_r/dr|^2,

    SoFlow of Luo, Yuan & Liu 2025 (arXiv 2512.15657; zlab-princeton/SoFlow ``models.py``): the
    JVP-free solution-consistency loss (online weights under no_grad for the target), written as
    the official surrogate mean_D(v . sg(w dq)) (the same gradient, no division by the gap);
    l = s + r_k (t - s), r_k = r_init (r_end / r_init)^(k / K), l >= s + 1e-4.
    Defaults kept (CIFAR-10 config, the unconditional one): FM share 0, p = 0.75, eps = 1e-3,
    r 1.0 -> 3.125e-4 with K = the run, start s ~ logit-normal(0.9, 1.6), end t ~ logit-normal(4.0,
    1.6), t >= s + 1e-4 (code means -0.9, -4.0 on t_c = 1 - tau); consistency sampler, uniform grid.
    Deviation: no CFG (unconditional); Euler solution map only (our FlowMap).
    Stationary at the exact map only as r -> 0 (``exact_with``); see docs/methods.md.
    """

    needs_teacher = False
    family = "self-distilled"
    semigradient = True  # the target X_{l,t} is the online map under no_grad
    loss_is_progress = False  # the surrogate's value is no distance; ``mse`` logs mean_D dq^2
    exact_with = {"r_init": 1e-4, "r_end": 1e-4}
    summary = {
        "paper": "Luo, Yuan, Liu 2025 (SoFlow), CIFAR-10 recipe",
        "times": "s ~ logit-normal(0.9, 1.6), t ~ logit-normal(4.0, 1.6), l = s + r (t - s), r 1 -> 3e-4",
        "target": "sg X_{l,t}(I_s + (l - s) dI/ds), adaptive weight p = 0.75 (no jvp)",
        "nfe": "any (consistency multistep, uniform re-noising)",
    }

    @dataclass(frozen=True)
    class Config:
        fm_frac: float = 0.0  # share of the batch on the FM loss (ImageNet: 0.75)
        p: float = 0.75  # adaptive weight power (ImageNet: 1.0)
        eps: float = 1e-3  # adaptive weight offset (ImageNet: 0.01)
        r_init: float = 1.0  # (l - s) / (t - s) at the start (ImageNet: 0.1)
        r_end: float = 3.125e-4  # ... at the end of the run (ImageNet: 0.002)
        r_schedule: str = "exponent"  # "exponent" (published) | "const" (r_end) | "linear"
        fm_mean: float = 0.9  # FM time, logit-normal on our tau (code: -0.9 on t_c)
        fm_std: float = 1.6
        start_mean: float = 0.9  # start s (code t_c: -0.9)
        start_std: float = 1.6
        end_mean: float = 4.0  # end t (code s_c: -4.0)
        end_std: float = 1.6

        def __post_init__(self) -> None:
            if self.r_schedule not in SCHEDULES:
                raise ValueError(f"r_schedule must be one of {SCHEDULES}, got {self.r_schedule!r}")
            if not 0.0 <= self.fm_frac <= 1.0 or self.p < 0 or self.eps <= 0:
                raise ValueError("need 0 <= fm_frac <= 1, p >= 0, eps > 0")
            if not (0 < self.r_end <= 1 and 0 < self.r_init <= 1):
                raise ValueError("need 0 < r_init, r_end <= 1")
            if min(self.fm_std, self.start_std, self.end_std) <= 0:
                raise ValueError("time-law stds must be positive")

    def ratio(self, step: int) -> float:
        """r(k, K) with K = the run's total steps (the official ``get_r``, exponent by default)."""
        c, k = self.cfg, min(max(step, 0), self.total_steps) / self.total_steps
        if c.r_schedule == "const":
            return c.r_end
        if c.r_schedule == "linear":
            return c.r_init + (c.r_end - c.r_init) * k
        return c.r_init * math.exp(k * math.log(c.r_end / c.r_init))

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(r_fm, s, t, l): FM times (first ``split_count(n, fm_frac)``) and the consistency
        triples of the rest, s < l <= t, as the official ``train.py`` / ``get_l`` draw them."""
        like, c, n_fm = like_or_default(like), self.cfg, split_count(n, self.cfg.fm_frac)

        def ln(k: int, mean: float, std: float) -> Tensor:
            return logit_normal(k, like, mean, std, generator)

        r_fm = ln(n_fm, c.fm_mean, c.fm_std)
        s = ln(n - n_fm, c.start_mean, c.start_std).clamp(max=1 - 1e-4)  # code: t_c >= 1e-4
        t = torch.maximum(ln(n - n_fm, c.end_mean, c.end_std), s + 1e-4)  # s_c <= t_c - 1e-4
        l_ = torch.maximum(s + self.ratio(step) * (t - s), s + 1e-4)  # l_c <= t_c - 1e-4
        return r_fm, s, t, l_

    def consistency(
        self, flow_map: FlowMap, xs: Tensor, u: Tensor, s: Tensor, t: Tensor, l_: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(v(x_s, s, t) with graph, dq (no grad)): dq = (X_{s,t}(x_s) - X_{l,t}(x_s + (l - s) u))
        / (l - s), the target map at the same online weights under no_grad."""
        v = flow_map.avg_velocity(xs, s, t)
        with torch.no_grad():
            gap = bcast(l_ - s, xs)
            target = flow_map(xs + gap * u, l_, t)
            dq = (xs + bcast(t - s, xs) * v.detach() - target) / gap
        return v, dq

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        r_fm, s, t, l_ = self.sample_times(x1.shape[0], step, like=x1)
        n_fm, p, eps = len(r_fm), self.cfg.p, self.cfg.eps
        total = x1.new_zeros(())
        logs: Logs = {"r": torch.tensor(self.ratio(step), dtype=x1.dtype, device=x1.device)}
        if n_fm:
            path = self.interpolant.sample(x0[:n_fm], x1[:n_fm], r_fm)
            ell = (flow_map.velocity(path.xt, r_fm) - path.vt).pow(2).flatten(1).mean(1)
            total = total + ((ell.detach() + eps).pow(-p) * ell).sum()
            logs["fm"] = ell.detach().mean()
        if n_fm < x1.shape[0]:
            path = self.interpolant.sample(x0[n_fm:], x1[n_fm:], s)
            v, dq = self.consistency(flow_map, path.xt, path.vt, s, t, l_)
            mse = dq.pow(2).flatten(1).mean(1)
            w = (mse + eps).pow(-p)
            total = total + (v * (bcast(w, dq) * dq)).flatten(1).mean(1).sum()  # surrogate
            logs["mse"] = mse.mean()
        return total / x1.shape[0], logs

    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Official multistep: X_{tau_i,1}, re-noise to tau_{i+1} = (i + 1) / nfe, ..., X_{., 1}."""
        self.check_nfe(nfe)
        return unify.consistency_sample(flow_map, x0, nfe, self.interpolant, "uniform", generator)
