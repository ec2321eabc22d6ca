"""What sCT and sCD share: the sCM loss of Lu & Song 2024 (ICLR 2025, arXiv 2410.11081; no official
code, ports EpiGenomicsCode/edm2_sCM ``training/loss_scm.py`` and NVlabs/FastGen ``sCM.py``) in our
time, its time law, the learned log-variance weight u_phi and the consistency sampler.

TrigFlow frame of any interpolant (signal-to-noise matched, as FastGen's ``TrigFlowPrecond``):
tan t_T = a(tau) / b(tau), x~ = I_tau / n(tau), n = sqrt(a^2 + b^2), and our map to the data end
X_{tau,1}(I) = cos t_T x~ - sin t_T F. The tangent g_r is computed from the shared Eulerian
tangent T_{tau,1}[u] (``unify.eulerian_tangent``, one jvp); its split, normalisation and c act
in TrigFlow units, as published. Derivation: docs/methods.md (Conventions and translations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import unify
from methods.base import Logs, Method
from methods.common import consistency_grid, noise_like
from unify.flowmap import FlowMap, eulerian_tangent, full_precision
from unify.interpolant import Interpolant, bcast

NORMS = ("l2", "rms")
LOGVAR_INPUTS = ("log_sigma", "t")


class LogVarHead(nn.Module):
    """u_phi(c): positional embedding (cos, sin of c / 10000^(i/half)) of a time input c ->
    Linear(channels, 1), as edm2_sCM's ``PositionalEmbedding -> Linear(128, 1)``; zero-initialised
    (u = 0 at the start, no random draw)."""

    def __init__(self, channels: int = 128, max_positions: float = 10_000.0) -> None:
        super().__init__()
        half = channels // 2
        freqs = max_positions ** (-torch.arange(half, dtype=torch.float64) / half)
        self.register_buffer("freqs", freqs.float(), persistent=False)
        self.weight = nn.Parameter(torch.zeros(2 * half))
        self.bias = nn.Parameter(torch.zeros(()))

    @full_precision  # float32 under the harness's bf16 autocast, like the loss it weights
    def forward(self, t: Tensor) -> Tensor:
        """(B,) time inputs -> (B,) log-variances."""
        arg = t[:, None] * self.freqs.to(t.dtype)
        return torch.cat([arg.cos(), arg.sin()], 1) @ self.weight + self.bias


def trig_frame(interpolant: Interpolant, t_trig: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(tau, n, n' / n, dtau/dt_T), each (B,): our time and the frame factors at TrigFlow time t_T."""
    tau = interpolant.time_of_sigma(torch.tan(t_trig))
    a, b, da, db = interpolant.coeffs(tau)
    n2 = a * a + b * b
    return tau, n2.sqrt(), (a * da + b * db) / n2, n2 / (b * da - a * db)


class SCM(Method):
    """Base of sCT and sCD; subclasses give the velocity u = dI/dtau the tangent is taken along."""

    semigradient = True  # F^- = sg F_theta, the same weights
    loss_is_progress = False  # the value is ~ e^{-u} ||g^||^2 / D + u whatever the map

    @dataclass(frozen=True)
    class Config:
        p_mean: float = -1.0  # ln(sigma_d tan t_T) ~ N(p_mean, p_std^2), CIFAR-10
        p_std: float = 1.4
        sigma_d: float = 0.5  # TrigFlow data scale: x^TF = sigma_d * x~
        c: float = 0.1  # tangent normalisation constant
        norm: str = "l2"  # per-sample L2 (Sana, edm2_sCM) | "rms" (FastGen, sCM-mnist forks)
        warmup: float = 0.025  # tangent warm-up H as a fraction of training (10k of 400k steps)
        prior_weight: bool = True  # lambda = 1 / (sigma_d tan t_T) (Sana, FastGen, sCM-mnist)
        t_min: float = 0.004  # clamp of t_T: EDM's sigma_min = 0.002 (FastGen's min_t)
        t_max: float = 0.5 * math.pi - 1e-4  # FastGen's clamp
        t_mid: float | None = 1.1  # 2-step sampler (edm2_sCM); None = the Karras grid
        logvar_channels: int = 128
        logvar_input: str = "log_sigma"  # EDM c_noise = ln(sigma_d tan t_T) / 4 (FastGen) | "t"

        def __post_init__(self) -> None:
            if self.norm not in NORMS:
                raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
            if self.logvar_input not in LOGVAR_INPUTS:
                raise ValueError(f"logvar_input must be one of {LOGVAR_INPUTS}")
            if not 0 < self.t_min < self.t_max < 0.5 * math.pi:
                raise ValueError(f"need 0 < t_min < t_max < pi/2, got {self.t_min}, {self.t_max}")
            if self.p_std <= 0 or self.sigma_d <= 0 or self.c < 0 or self.warmup < 0:
                raise ValueError("need p_std > 0, sigma_d > 0, c >= 0, warmup >= 0")

    def velocity(self, path: unify.PathSample) -> Tensor:
        """The velocity dI/dtau at (path.xt, path.t) along which the tangent is taken (no grad)."""
        raise NotImplementedError

    def setup(self, flow_map: FlowMap, total_steps: int) -> None:
        super().setup(flow_map, total_steps)
        p = next(flow_map.parameters())
        head = LogVarHead(self.cfg.logvar_channels).to(device=p.device, dtype=p.dtype)
        self.nets["logvar"] = head

    def parameters(self) -> list[nn.Parameter]:
        return list(self.nets["logvar"].parameters())

    def warmup_r(self, step: int) -> float:
        """r = min(1, step / H), H = warmup * total_steps (published: 10k of 400k steps)."""
        h = self.cfg.warmup * self.total_steps
        return 1.0 if h <= 0 else min(1.0, step / h)

    def times(self, n: int, like: Tensor) -> Tensor:
        """t_T = arctan(e^xi / sigma_d), xi ~ N(p_mean, p_std^2), clamped to [t_min, t_max]."""
        xi = self.cfg.p_mean + self.cfg.p_std * torch.randn(n, device=like.device, dtype=like.dtype)
        return torch.atan(xi.exp() / self.cfg.sigma_d).clamp(self.cfg.t_min, self.cfg.t_max)

    def logvar_input(self, t_trig: Tensor) -> Tensor:
        """The head's input: EDM's c_noise = ln(sigma_EDM) / 4, sigma_EDM = sigma_d tan t_T, in
        which u* = ln(lambda E[l | t]) is smooth where lambda = 1 / sigma_EDM diverges; or t_T."""
        if self.cfg.logvar_input == "t":
            return t_trig
        return 0.25 * torch.log(self.cfg.sigma_d * torch.tan(t_trig))

    def tangent(self, g: Tensor) -> Tensor:
        """g / (||g|| + c) per sample: L2 or RMS norm over all coordinates."""
        norm = g.flatten(1).norm(dim=1)
        if self.cfg.norm == "rms":
            norm = norm / math.sqrt(g[0].numel())
        return g / bcast(norm + self.cfg.c, g)

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0, sd, r = noise_like(x1, x0), self.cfg.sigma_d, self.warmup_r(step)
        t_trig = self.times(x1.shape[0], x1)
        tau, n, dn, dtau = trig_frame(self.interpolant, t_trig)
        path = self.interpolant.sample(x0, x1, tau)
        with torch.no_grad():
            u = self.velocity(path)
        v, tan_t = eulerian_tangent(flow_map, path.xt, tau, torch.ones_like(tau), u)  # v with graph
        cos, sin = bcast(t_trig.cos(), x1), bcast(t_trig.sin(), x1)
        tau, n, dn, dtau = (bcast(y, x1) for y in (tau, n, dn, dtau))
        xs = path.xt / n  # x~ = x^TF / sigma_d
        dxs = dtau / n * (u - dn * path.xt)  # dx~/dt_T
        kappa = torch.tan(0.5 * bcast(t_trig, x1)) + (n * n - 1) / ((n + 1) * sin)
        F = -kappa * xs - (1 - tau) / sin * v  # F_theta; the gradient flows through v only
        F_minus = F.detach()
        g0 = -(cos**2) * (F_minus - dxs)  # the r = 0 part, / sigma_d
        g1 = cos * dtau * tan_t.detach()  # cos t_T df/dt_T, / sigma_d
        g = sd * ((1 - r) * g0 + r * g1)
        ell = (F - F_minus - self.tangent(g)).pow(2).flatten(1).mean(1)
        lam = 1 / (sd * torch.tan(t_trig)) if self.cfg.prior_weight else torch.ones_like(t_trig)
        logvar = self.nets["logvar"](self.logvar_input(t_trig))
        loss = (lam * torch.exp(-logvar) * ell + logvar).mean()
        logs = {
            "tangent_norm": g.detach().flatten(1).norm(dim=1).mean(),  # unnormalised (FastGen)
            "logvar": logvar.detach().mean(),
            "r": torch.tensor(r, dtype=x1.dtype, device=x1.device),
        }
        return loss, logs

    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Consistency sampling (CM Alg. 1): X_{0,1}(x0), then re-noise and map to the data end.
        2 steps re-noise at tan t_T = tan(t_mid) (t_mid = 1.1: tau = 0.300 trig, 0.337 linear);
        other NFEs use the Karras grid, as the project's other consistency models."""
        self.check_nfe(nfe)
        mid = None if self.cfg.t_mid is None else math.tan(self.cfg.t_mid)
        grid = consistency_grid(nfe, self.interpolant, mid)
        return unify.consistency_sample(flow_map, x0, nfe, self.interpolant, grid, generator)
