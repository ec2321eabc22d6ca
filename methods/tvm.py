"""Terminal Velocity Matching (Zhou et al. 2025, arXiv 2511.19797), in the project's time convention."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods.base import Logs, Method, ema_update, frozen_copy, register
from methods.common import like_or_default, logit_normal, noise_like, uniform
from unify.flowmap import FlowMap, map_dt


@register("tvm")
class TerminalVelocityMatching(Method):
    """L = E[ |d/dt X_{s,t}(I_s) - sg v^-(sg X_{s,t}(I_s), t, t)|^2 + |v(I_r, r, r) - dI_r/dr|^2 ],

    TVM of Zhou et al. 2025 (arXiv 2511.19797; lumalabs/tvm ``training/wrapper.py``, ``loss.py``):
    the terminal (Lagrangian) condition d/dt X = b_t(X) with b_t the 0.99-EMA copy's own diagonal,
    one jvp (0, 0, 1) differentiated through (reverse-over-forward), plus a diagonal FM anchor at
    an independent time r; per-sample means over coordinates, terminal term 0 where s ~ t.
    Times (loss.py, MeanFlow time t_c = 1 - tau): gap t - s ~ logit-normal(-0.8, 1); end t ~
    logit-normal(+0.4, 1) truncated to t >= gap, s = t - gap; r ~ logit-normal(+0.4, 1).
    Kept: these laws, EMA target 0.99 per step, weight 1:1, NaN samples -> 0, chain sampler.
    Deviations: no labels, so no CFG (w = 1, beta = 1; published w = 2 on ImageNet); any
    interpolant through dI/dr (published: linear); ``detach_jvp`` (default off) not exposed.
    The exact map zeroes the terminal term sample by sample; see docs/methods.md.
    """

    needs_teacher = False
    family = "self-distilled"
    exact_terms = ("terminal",)
    semigradient = True  # the terminal target is the EMA copy at sg X, under no_grad
    loss_is_progress = False  # the target moves with the EMA copy
    summary = {
        "paper": "Zhou et al. 2025 (TVM)",
        "times": "gap ~ logit-normal(-0.8, 1), t ~ logit-normal(+0.4, 1) given t >= gap, s = t - gap",
        "target": "d/dt X_{s,t} = sg EMA v(sg X, t, t) (one jvp, differentiated), plus diagonal FM",
        "nfe": "any (composition)",
    }

    @dataclass(frozen=True)
    class Config:
        mean: float = 0.4  # logit-normal mean of the end t and of r on our tau (code: -0.4)
        std: float = 1.0
        gap_mean: float = -0.8  # logit-normal mean of the gap t - s (code: same)
        gap_std: float = 1.0
        target_decay: float = 0.99  # EMA of the terminal-velocity network; 0 = sg of the online

        def __post_init__(self) -> None:
            if self.std <= 0 or self.gap_std <= 0 or not 0.0 <= self.target_decay < 1.0:
                raise ValueError("need std > 0, gap_std > 0, 0 <= target_decay < 1")

    def setup(self, flow_map: FlowMap, total_steps: int) -> None:
        super().setup(flow_map, total_steps)
        if self.cfg.target_decay > 0:
            self.nets["target"] = frozen_copy(flow_map)

    def target_net(self, flow_map: FlowMap) -> FlowMap:
        return self.nets["target"] if self.cfg.target_decay > 0 else flow_map

    def after_step(self, flow_map: FlowMap, step: int) -> None:
        if self.cfg.target_decay > 0:
            ema_update(self.nets["target"], flow_map, self.cfg.target_decay)

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(s, t, r), each (n,): gap = t - s, t truncated to t >= gap by inverse-CDF sampling as
        in the official ``sample_ts`` (there on s_c = 1 - t), and the independent FM time r."""
        like, c = like_or_default(like), self.cfg
        gap = logit_normal(n, like, c.gap_mean, c.gap_std, generator)
        # z = (logit t - mean) / std ~ N(0, 1) given z >= a: -z = ndtri(U * ndtr(-a))
        a = (torch.logit(gap) - c.mean) / c.std
        u = uniform(n, like, generator=generator)
        t = torch.sigmoid(c.mean - c.std * torch.special.ndtri(u * torch.special.ndtr(-a)))
        s = (t - gap).clamp(min=0.0)  # code: t_c = min(s_c + gap, 1)
        r = logit_normal(n, like, c.mean, c.std, generator)
        return s, t, r

    def terminal_residual(self, flow_map: FlowMap, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """d/dt X_{s,t}(x) - sg v^-(sg X_{s,t}(x), t, t), with the graph through the first term."""
        xt, dx_dt = map_dt(flow_map, x, s, t)
        with torch.no_grad():
            target = self.target_net(flow_map).velocity(xt.detach().to(x.dtype), t)
        return dx_dt - target

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        s, t, r = self.sample_times(x1.shape[0], step, like=x1)
        xs = self.interpolant.sample(x0, x1, s).xt
        terminal = self.terminal_residual(flow_map, xs, s, t).pow(2).flatten(1).mean(1)
        same = torch.isclose(1 - t, 1 - s)  # the code's isclose(s_c, t_c)
        terminal = torch.where(same, 0.0, terminal)
        path = self.interpolant.sample(x0, x1, r)  # the same (x0, x1) at the FM time
        fm = (flow_map.velocity(path.xt, r) - path.vt).pow(2).flatten(1).mean(1)
        per_sample = (terminal + fm).nan_to_num(nan=0.0)
        loss = per_sample.mean()
        return loss, {"terminal": terminal.detach().mean(), "fm": fm.detach().mean()}
