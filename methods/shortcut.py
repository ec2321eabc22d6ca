"""Shortcut models (Frans, Hafner, Levine & Abbeel 2024) as a loss over one FlowMap."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from methods.base import Logs, Method, ema_update, frozen_copy, register
from methods.common import (
    like_or_default,
    mean_or_zero,
    noise_like,
    run_length_decay,
    split_count,
    sqdist,
    uniform,
)
from unify.flowmap import FlowMap
from unify.interpolant import bcast


@register("shortcut")
class Shortcut(Method):
    """L = (1/B) [sum_FM |v(I_t, t, t + h) - dI_t/dt|^2 + sum_SC |v(I_t, t, t + 2d) - sg V_tgt|^2],
    V_tgt = 1/2 [v^-(I_t, t, t + d) + v^-(x', t + d, t + 2d)],  x' = I_t + d v^-(I_t, t, t + d).

    Source: Frans, Hafner, Levine & Abbeel 2024 (shortcut models, arXiv 2410.12557), Sec. 3;
    kvfrans/shortcut-models ``targets_shortcut.py``; our v(x, t, t + d) is their s_theta(x, t, d).
    Defaults kept: M = ``levels`` = 128; the last B/8 pairs take SC with 2d in {1, ..., 2/M}, t on
    the multiples of 2d; FM at h = 1/M, t on {0, 1/M, ..} (the code; ``anchor="diagonal"``: the
    paper's h = 0); v^- an EMA; sampler: composition on K uniform steps, K a power of two <= M.
    Deviations:
    - EMA decay run_length_decay(0.999, 400_000, steps): the published 0.999 kept as a run fraction;
    - SC levels assigned cyclically, so every level is present from log2(M) samples on;
    - the published clipping of x' and V_tgt to +-4 is off (``clip`` = None; a float c clips);
    - any interpolant (the code's is linear with a 1e-5 noise floor); no CFG / labels.
    """

    needs_teacher = False
    exact_terms = ("sc",)
    summary = {
        "paper": "Frans et al. 2024 (shortcut models), Sec. 3",
        "times": "7/8 at (t, t + 1/128), t on the 1/128-grid; 1/8 t on the 2d-grid, 2d in {1, ..., 1/64}",
        "target": "dI_t/dt at the smallest level; sg mean of two EMA half-steps for v(x, t, t + 2d)",
        "nfe": "powers of two up to 128 (composition)",
    }

    @dataclass(frozen=True)
    class Config:
        bootstrap_frac: float = 1 / 8  # fraction of the batch with the self-consistency term
        levels: int = 128  # M: the smallest step is 1/M, the largest bootstrap 2d is 1
        target_ema: float | None = None  # decay of theta^-; None: 0.999 at 400k steps, scaled
        clip: float | None = None  # published +-4 on x' and V_tgt (image space); None = off
        anchor: str = "smallest"  # flow-matching level: "smallest" (code) | "diagonal" (paper)

        def __post_init__(self) -> None:
            if not 0.0 <= self.bootstrap_frac <= 1.0:
                raise ValueError(f"bootstrap_frac must lie in [0, 1], got {self.bootstrap_frac}")
            if self.levels < 2 or self.levels & (self.levels - 1):
                raise ValueError(f"levels must be a power of two >= 2, got {self.levels}")
            if self.target_ema is not None and not 0.0 <= self.target_ema < 1.0:
                raise ValueError(f"target_ema must lie in [0, 1), got {self.target_ema}")
            if self.anchor not in ("smallest", "diagonal"):
                raise ValueError(f"anchor must be 'smallest' or 'diagonal', got {self.anchor!r}")

    def setup(self, flow_map: FlowMap, total_steps: int) -> None:
        super().setup(flow_map, total_steps)
        self.nets["target"] = frozen_copy(flow_map)
        mu = self.cfg.target_ema
        self.target_ema = run_length_decay(0.999, 400_000, self.total_steps) if mu is None else mu

    def after_step(self, flow_map: FlowMap, step: int) -> None:
        ema_update(self.nets["target"], flow_map, self.target_ema)

    def supports(self, nfe: int) -> bool:
        return 1 <= nfe <= self.cfg.levels and nfe & (nfe - 1) == 0

    def _clip(self, x: Tensor) -> Tensor:
        return x if self.cfg.clip is None else x.clamp(-self.cfg.clip, self.cfg.clip)

    def flow_matching_times(
        self, n: int, like: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """t on the grid k/M, k ~ U{0..M-1} (the code's anchor), or t ~ U[0, 1] (the paper's)."""
        t = uniform(n, like, generator=generator)
        if self.cfg.anchor == "smallest":
            m = self.cfg.levels
            t = torch.floor(t * m).clamp(max=m - 1) / m
        return t

    def flow_matching(self, flow_map: FlowMap, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """|v(I_t, t, t + h) - dI_t/dt|^2 per sample: h = 1/M with t on the grid k/M (the code's
        anchor), or h = 0 with t ~ U[0, 1] (the paper's)."""
        path = self.interpolant.sample(x0, x1, t)
        h = 1.0 / self.cfg.levels if self.cfg.anchor == "smallest" else 0.0
        return sqdist(flow_map.avg_velocity(path.xt, t, t + h), path.vt)

    def consistency_times(
        self, n: int, like: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(t, d), each (n,): 2d = 2^-j with j = K-1 - (i mod K), t = k 2d with k ~ U{0..1/(2d)-1}."""
        k = int(math.log2(self.cfg.levels))
        j = (k - 1) - torch.arange(n, device=like.device) % k
        sections = (2**j).to(like.dtype)  # 1 / (2d)
        t = uniform(n, like, generator=generator)
        t = torch.floor(t * sections).clamp(max=sections - 1) / sections
        return t, 0.5 / sections

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(t_fm, t_sc, d) of a batch of n: the first n - int(n bootstrap_frac) take flow matching
        at t_fm, the rest self-consistency at (t_sc, d)."""
        like = like_or_default(like)
        nd = n - split_count(n, self.cfg.bootstrap_frac)
        t_fm = self.flow_matching_times(nd, like, generator)
        return (t_fm, *self.consistency_times(n - nd, like, generator))

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        if "target" not in self.nets:
            raise RuntimeError(
                "shortcut: call setup(flow_map, total_steps) before loss (EMA target)"
            )
        x0 = noise_like(x1, x0)
        n = x1.shape[0]
        t_fm, t, d = self.sample_times(n, step, like=x1)
        nd = t_fm.shape[0]
        diag = sc = x1.new_zeros(0)
        if nd > 0:
            diag = self.flow_matching(flow_map, x0[:nd], x1[:nd], t_fm)
        if n > nd:
            xt = self.interpolant.sample(x0[nd:], x1[nd:], t).xt
            target_map = self.nets["target"]
            with torch.no_grad():
                v1 = target_map.avg_velocity(xt, t, t + d)
                x_mid = self._clip(xt + bcast(d, xt) * v1)
                v2 = target_map.avg_velocity(x_mid, t + d, t + 2 * d)
                target = self._clip(0.5 * (v1 + v2))
            sc = sqdist(flow_map.avg_velocity(xt, t, t + 2 * d), target)
        loss = (diag.sum() + sc.sum()) / n
        return loss, {"fm": mean_or_zero(diag).detach(), "sc": mean_or_zero(sc).detach()}
