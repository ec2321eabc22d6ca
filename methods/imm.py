"""Inductive Moment Matching (Zhou, Ermon & Song 2025), in flow-map form."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

import unify
from methods.base import Logs, Method, ema_update, frozen_copy, register
from methods.common import like_or_default, noise_like, uniform
from unify.edm import EDM_SIGMA_DATA, data_scale, edm_sigma, time_of_edm_sigma
from unify.flowmap import FlowMap, full_precision

ESTIMATORS = ("v", "u")
SCHEDULES = ("fm", "vp_cosine")
BANDWIDTHS = ("port", "gap")
TARGETS = ("ema", "online")


@register("imm")
class InductiveMomentMatching(Method):
    """L = E_groups w(tau_t) MMD^2({X_{tau_t,tau_s}(I^i_{tau_t})}_i, {sg X_{tau_r,tau_s}(I^i_{tau_r})}_i),
    k(y, y') = exp(-|y - y'|_2 / (|c_out| D)),  w = 1/2 sigmoid(beta - lam) (-lam') alpha^a / (alpha^2
    + sigma^2), lam = 2 ln(alpha / sigma) in IMM's t; M particles per group share tau_t < tau_r <= tau_s.

    Source: Zhou, Ermon & Song 2025 (IMM, arXiv 2503.07565); lumalabs/imm (inference code only),
    the loss as in stockeh/imm ``training/loss.py``; IMM's eta = sigma_EDM / 0.5 (docs/recipes.md).
    Defaults kept (CIFAR-10): M = 4, a = 1, beta = 5, k = 15, eta_max = 160, eta_min = 0 (tau_r by
    a constant eta decrement), t ~ U[0.006, 0.994], s ~ U[0.006, t] in IMM's fm time; Laplace
    kernel 1/(sigma_d t), V-statistic; y_r in float32; 2 steps through eta 1.4.
    Deviations:
    - the project's euler FlowMap instead of the CIFAR ``simple_edm`` head (an official option);
    - y_r from the online weights under no_grad (``target="online"``), not the port's EDM-style EMA
      (``target="ema"``: 2.15 vs 0.41 one-step on gmm small, docs/recipes.md); ``bandwidth="gap"``;
    - samplers run from tau = 0 to 1 (published 0.006 -> 0.994); other NFEs on the uniform grid.
    """

    needs_teacher = False
    exact_terms = ()
    semigradient = True  # the target particles come from the same weights under no_grad
    loss_is_progress = False  # the value starts near 0 (tau_r ~ tau_t) and moves with the target
    summary = {
        "paper": "Zhou, Ermon, Song 2025 (IMM)",
        "times": "groups of 4 share tau_t < tau_r <= tau_s; IMM's t ~ U, s ~ U[.006, t], r by eta step",
        "target": "MMD^2 (Laplace) of X_{tau_t,tau_s}(I_t) vs sg X_{tau_r,tau_s}(I_r) particles, VDM weight",
        "nfe": "any (composition; 2 steps through eta = 1.4)",
    }

    @dataclass(frozen=True)
    class Config:
        m: int = 4  # particles per group
        a: int = 1  # weight exponent (a = 2: the multi-step / FP16 setting)
        beta: float = 5.0  # sigmoid shift (IMM's b)
        k: int = 15  # eta decrement (eta_max - eta_min) / 2^k
        eta_max: float = 160.0
        eta_min: float = 0.0
        t_min: float = 0.006  # IMM-time bounds (IMM's eps and T)
        t_max: float = 0.994
        estimator: str = "v"  # "v": published V-statistic; "u": unbiased U-statistic
        mid_eta: float | None = 1.4  # 2-step sampler's intermediate eta; None = uniform grid
        schedule: str = "fm"  # IMM's noise_schedule (CIFAR-10 config: fm) | "vp_cosine"
        bandwidth: str = "port"  # 1/|c_out|: c_out = -t sigma_d (stockeh euler_fm) | "gap": t - s
        target: str = "online"  # y_r: same weights, no_grad | "ema": EMA network (stockeh port)
        ema_halflife_kimg: float = 500.0  # EDM training-loop EMA: half-life min(500k images,
        ema_rampup: float = 0.05  # 0.05 x images seen)

        def __post_init__(self) -> None:
            for key, allowed in (
                ("schedule", SCHEDULES),
                ("bandwidth", BANDWIDTHS),
                ("target", TARGETS),
            ):
                if getattr(self, key) not in allowed:
                    raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
            if self.estimator not in ESTIMATORS:
                raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
            if self.m < 1 or (self.estimator == "u" and self.m < 2):
                raise ValueError(f"need m >= 1 (m >= 2 for the U-statistic), got {self.m}")
            if not 0 < self.t_min < self.t_max < 1:
                raise ValueError(f"need 0 < t_min < t_max < 1, got {self.t_min}, {self.t_max}")

    # ------------------------------------------------- IMM time t (data at 0) <-> our tau
    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """IMM's (alpha_t, sigma_t) of its ``noise_schedule``: fm (1 - t, t) or vp_cosine."""
        if self.cfg.schedule == "fm":
            return 1 - t, t
        return torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)

    def imm_time(self, tau: Tensor) -> Tensor:
        """IMM's t of our tau: eta = sigma / alpha = sigma_EDM / sigma_d, sigma_d = 0.5."""
        eta = edm_sigma(self.interpolant, tau, self.sigma_data) / EDM_SIGMA_DATA
        return eta / (1 + eta) if self.cfg.schedule == "fm" else (2 / math.pi) * torch.atan(eta)

    def our_time(self, eta: Tensor) -> Tensor:
        """Our tau at IMM's eta (``unify.edm``: sigma_EDM = sigma_d eta)."""
        return time_of_edm_sigma(self.interpolant, EDM_SIGMA_DATA * eta, self.sigma_data)

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(tau_t, tau_r, tau_s) for n groups: stockeh's t ~ U(eps, T), s ~ U(eps, t), r =
        max(s, eta^-1(eta_t - (eta_max - eta_min) / 2^k)) in IMM time, mapped to ours."""
        like, cfg = like_or_default(like), self.cfg
        t = uniform(n, like, cfg.t_min, cfg.t_max, generator)
        s = cfg.t_min + (t - cfg.t_min) * uniform(n, like, generator=generator)
        (alpha_t, sigma_t), (alpha_s, sigma_s) = self.alpha_sigma(t), self.alpha_sigma(s)
        eta_t, eta_s = sigma_t / alpha_t, sigma_s / alpha_s
        eta_r = torch.maximum(eta_t - (cfg.eta_max - cfg.eta_min) / 2**cfg.k, eta_s)
        return self.our_time(eta_t), self.our_time(eta_r), self.our_time(eta_s)

    def weight(self, tau: Tensor) -> Tensor:
        """stockeh ``loss_weight``: 1/2 sigmoid(beta - lam) (-dlam/dt) alpha^a / (alpha^2 +
        sigma^2), lam = 2 ln(alpha / sigma), at IMM's t of our tau."""
        t = self.imm_time(tau)
        alpha, sigma = self.alpha_sigma(t)
        lam = 2 * torch.log(alpha / sigma)
        if self.cfg.schedule == "fm":
            dlam = 2 / (t * (1 - t))
        else:
            dlam = 2 * math.pi / torch.sin(math.pi * t)
        return (
            0.5
            * torch.sigmoid(self.cfg.beta - lam)
            * dlam
            * alpha**self.cfg.a
            / (alpha**2 + sigma**2)
        )

    def imm_scale(self, tau: Tensor) -> Tensor:
        """x^IMM = alpha x_d + sigma sigma_d eps (x_d = k x1, eps = x0) is imm_scale * I_tau, the
        factor alpha k / b of the same signal-to-noise ratio."""
        _, b, _, _ = self.interpolant.coeffs(tau)
        return self.alpha_sigma(self.imm_time(tau))[0] * data_scale(self.sigma_data) / b

    def bandwidth(self, tau_t: Tensor, tau_s: Tensor, dim: int) -> Tensor:
        """The Laplace kernel's factor on our distances |Y - Y'|: stockeh ``kernel_weight`` w =
        1 / |c_out| (euler_fm: c_out = -t sigma_d; ``"gap"``: (t - s) sigma_d) on IMM-unit
        distances (imm_scale(tau_s) |Y - Y'|), / D."""
        t, s = self.imm_time(tau_t), self.imm_time(tau_s)
        c_out = t if self.cfg.bandwidth == "port" else (t - s).abs()
        w = 1 / (c_out.clamp_min(1e-12) * EDM_SIGMA_DATA)
        return w * self.imm_scale(tau_s) / dim

    def setup(self, flow_map: FlowMap, total_steps: int) -> None:
        super().setup(flow_map, total_steps)
        self._batch = 1
        if self.cfg.target == "ema":  # EDM's ema: a copy in eval mode (no dropout)
            self.nets["target"] = frozen_copy(flow_map).eval()

    def after_step(self, flow_map: FlowMap, step: int) -> None:
        """EDM ``training_loop``: half-life min(ema_halflife_kimg, ema_rampup x images seen)."""
        if self.cfg.target != "ema":
            return
        seen = step * self._batch
        half = min(self.cfg.ema_halflife_kimg * 1000, seen * self.cfg.ema_rampup)
        ema_update(self.nets["target"], flow_map, 0.5 ** (self._batch / max(half, 1e-8)))

    def mmd(self, y: Tensor, y_target: Tensor, bandwidth: Tensor) -> Tensor:
        """Per-group MMD^2, (G,), of particle sets (G, M, D) under the Laplace kernel."""

        def kernel(p: Tensor, q: Tensor) -> Tensor:
            d = torch.cdist(p, q, compute_mode="donot_use_mm_for_euclid_dist").clamp_min(1e-8)
            k = torch.exp(-bandwidth[:, None, None] * d)
            if self.cfg.estimator == "v":
                return k.mean((1, 2))
            m = k.shape[1]
            return (k.sum((1, 2)) - k.diagonal(dim1=1, dim2=2).sum(1)) / (m * (m - 1))

        return kernel(y, y) + kernel(y_target, y_target) - 2 * kernel(y, y_target)

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0, m = noise_like(x1, x0), self.cfg.m
        if x1.shape[0] % m:
            raise ValueError(f"imm: batch {x1.shape[0]} is not a multiple of m = {m}")
        groups, self._batch = x1.shape[0] // m, x1.shape[0]
        tau_t, tau_r, tau_s = self.sample_times(groups, step, like=x1)
        t, r, s = (z.repeat_interleave(m) for z in (tau_t, tau_r, tau_s))
        it = self.interpolant.sample(x0, x1, t).xt
        ir = self.interpolant.sample(x0, x1, r).xt  # the same (x0, x1)
        with torch.random.fork_rng(devices=[x1.device] if x1.device.type == "cuda" else []):
            y = flow_map(it, t, s)  # the target below sees the same dropout mask
        target = self.nets["target"] if self.cfg.target == "ema" else flow_map
        with torch.no_grad():  # the target in float32 (``force_fp32`` of the IMMLoss port)
            y_target = full_precision(target)(ir, r, s)
        y, y_target = (z.reshape(groups, m, -1) for z in (y, y_target))
        mmd = self.mmd(y, y_target, self.bandwidth(tau_t, tau_s, y.shape[-1]))
        loss = (self.weight(tau_t) * mmd).mean()
        return loss, {"mmd": mmd.detach().mean()}

    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Push-forward composition; 2 steps through IMM's eta = ``mid_eta`` (its CIFAR-10 sampler;
        sigma_EDM = 0.5 eta by ``unify.edm``), other NFEs on the uniform grid."""
        self.check_nfe(nfe)
        if nfe != 2 or self.cfg.mid_eta is None:
            return unify.sample(flow_map, x0, nfe, "uniform")
        mid = self.our_time(torch.tensor(self.cfg.mid_eta, dtype=torch.float64))
        return unify.sample(
            flow_map, x0, nfe, torch.stack([mid.new_zeros(()), mid, mid.new_ones(())])
        )
