"""What sCT and sCD share: the sCM loss of Lu & Song 2024 (ICLR 2025, arXiv 2410.11081; no official
code, ports EpiGenomicsCode/edm2_sCM ``training/loss_scm.py`` and NVlabs/FastGen ``sCM.py``) in our
time, its time law, the learned log-variance weight u_phi and the consistency sampler.

TrigFlow frame of any interpolant (signal-to-noise matched, as FastGen's ``TrigFlowPrecond``):
sigma_d tan t_T = sigma_EDM(tau) by the translation rule (``unify.edm``), x^TF = c(tau) I_tau, and
k X_{tau,1}(I) = cos t_T x^TF - sin t_T sigma_d F in EDM units (docs/recipes.md). The tangent g_r
is computed from the shared Eulerian tangent T_{tau,1}[u] (``unify.eulerian_tangent``, one jvp);
its split, normalisation and c act in TrigFlow units, as published. Derivation: docs/methods.md (Conventions and translations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import unify
from methods.base import Logs, Method
from methods.common import consistency_grid, like_or_default, noise_like
from unify.edm import data_scale, edm_sigma_of_trigflow, time_of_edm_sigma
from unify.flowmap import FlowMap, eulerian_tangent, full_precision
from unify.interpolant import bcast

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

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor]:
        """(tau,): t_T = arctan(e^xi / sigma_d), xi ~ N(p_mean, p_std^2), clamped to [t_min, t_max],
        read as EDM sigma = sigma_d tan t_T and mapped to our time (``unify.edm``)."""
        like, c = like_or_default(like), self.cfg
        xi = c.p_mean + c.p_std * torch.randn(
            n, generator=generator, device=like.device, dtype=like.dtype
        )
        t_trig = torch.atan(xi.exp() / c.sigma_d).clamp(c.t_min, c.t_max)
        sigma = edm_sigma_of_trigflow(t_trig, c.sigma_d)
        return (time_of_edm_sigma(self.interpolant, sigma, self.sigma_data),)

    def trig_frame(self, tau: Tensor) -> dict[str, Tensor]:
        """The TrigFlow frame at our time tau, each (B,) in tau's dtype (computed in float64):
        tan t_T = a / (q b), q = sigma_d / k, k = 0.5 / sigma_data (so sigma_d tan t_T = sigma_EDM);
        x^TF = c I with c = sigma_d / m, m = sqrt(a^2 + q^2 b^2); ``dc`` = c'/c; ``dtau`` = dtau/dt_T;
        the head F = F_I I + F_v v(I, tau, 1) from k X_{tau,1} = cos t_T x^TF - sin t_T sigma_d F."""
        sd = self.cfg.sigma_d
        q, t64 = sd / data_scale(self.sigma_data), tau.double()
        a, b, da, db = self.interpolant.coeffs(t64)
        m = torch.sqrt(a * a + (q * b) ** 2)
        frame = {
            "t_trig": torch.atan2(a, q * b),
            "c": sd / m,
            "dc": -(a * da + q * q * b * db) / (m * m),
            "dtau": m * m / (q * (da * b - a * db)),
            "F_I": (q * q * b * (1 - b) / a - a) / (q * m),
            "F_v": -(1 - t64) * m / (q * a),
        }
        return {key: val.to(tau.dtype) for key, val in frame.items()}

    @staticmethod
    def trigflow_velocity(x: Tensor, u: Tensor, frame: dict[str, Tensor]) -> Tensor:
        """dx^TF/dt_T of a velocity u = dI/dtau at I = x: (dtau/dt_T) c (u + (c'/c) x)."""
        f = {key: bcast(val, x) for key, val in frame.items()}
        return f["dtau"] * f["c"] * (u + f["dc"] * x)

    @staticmethod
    def trigflow_head(x: Tensor, v: Tensor, frame: dict[str, Tensor]) -> Tensor:
        """TrigFlow's F_theta of our v(x, tau, 1) at I = x (finite as t_T -> 0)."""
        return bcast(frame["F_I"], x) * x + bcast(frame["F_v"], x) * v

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
        (tau,) = self.sample_times(x1.shape[0], step, like=x1)
        frame = self.trig_frame(tau)
        t_trig = frame["t_trig"]
        path = self.interpolant.sample(x0, x1, tau)
        with torch.no_grad():
            u = self.velocity(path)
        v, tan_t = eulerian_tangent(flow_map, path.xt, tau, torch.ones_like(tau), u)  # v with graph
        cos = bcast(t_trig.cos(), x1)
        dx = self.trigflow_velocity(path.xt, u, frame)  # dx^TF/dt_T
        F = self.trigflow_head(path.xt, v, frame)  # F_theta; the gradient flows through v only
        F_minus = F.detach()
        g0 = -(cos**2) * (sd * F_minus - dx)  # the r = 0 part
        k_dtau = data_scale(self.sigma_data) * bcast(frame["dtau"], x1)
        g1 = cos * k_dtau * tan_t.detach()  # cos t_T df/dt_T, f = k X_{tau,1}
        g = (1 - r) * g0 + r * g1
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
        2 steps re-noise at EDM sigma = sigma_d tan(t_mid) (t_mid = 1.1); other NFEs use the Karras
        grid, as the project's other consistency models (both by ``unify.edm``)."""
        self.check_nfe(nfe)
        mid = None if self.cfg.t_mid is None else self.cfg.sigma_d * math.tan(self.cfg.t_mid)
        grid = consistency_grid(nfe, self.interpolant, mid, self.sigma_data)
        return unify.consistency_sample(flow_map, x0, nfe, self.interpolant, grid, generator)
