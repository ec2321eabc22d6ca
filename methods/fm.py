"""Flow matching / stochastic-interpolant velocity: the teacher and the many-step ODE baseline."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods.base import Logs, Method, register
from methods.common import like_or_default, noise_like, sqdist, uniform
from unify.flowmap import FlowMap
from unify.ode import solve


@register("fm")
class FlowMatching(Method):
    """L = E_t |v(I_t, t, t) - dI_t/dt|^2, t ~ U[0, 1]; minimiser b_t(x) = E[dI_t/dt | I_t = x].

    Source: stochastic interpolants, Albergo & Vanden-Eijnden 2023 (arXiv 2209.15571), Eq. 2.9;
    flow matching, Lipman et al. 2023 (arXiv 2210.02747).
    Sampler: it trains only the diagonal v(x, t, t), so the Euler method on that velocity over a
    uniform grid (N steps, N NFE); Heun and dopri5 baselines come from the harness.
    """

    @dataclass(frozen=True)
    class Config:
        t_min: float = 0.0
        t_max: float = 1.0

    family = "teacher"
    summary = {
        "paper": "Lipman et al. 2023; Albergo & Vanden-Eijnden 2023",
        "times": "diagonal s = t ~ U[0, 1]",
        "target": "dI_t/dt (conditional velocity)",
        "nfe": "any (Euler on b_t)",
    }

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor]:
        """(t,): t ~ U[t_min, t_max] on the diagonal."""
        like = like_or_default(like)
        return (uniform(n, like, self.cfg.t_min, self.cfg.t_max, generator),)

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        (t,) = self.sample_times(x1.shape[0], step, like=x1)
        path = self.interpolant.sample(x0, x1, t)
        loss = sqdist(flow_map.velocity(path.xt, t), path.vt).mean()
        return loss, {"fm": loss.detach()}

    @torch.no_grad()
    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Euler on the learned velocity b_t(x) = v(x, t, t): nfe uniform steps, nfe NFE."""
        self.check_nfe(nfe)
        return solve(flow_map.velocity, x0, 0.0, 1.0, "euler", steps=nfe)[0]
