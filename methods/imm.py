"""Inductive Moment Matching (Zhou, Ermon & Song 2025), in flow-map form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

import unify
from methods.base import Logs, Method, register
from methods.common import noise_like, uniform
from unify.flowmap import FlowMap, full_precision

ESTIMATORS = ("v", "u")


@register("imm")
class InductiveMomentMatching(Method):
    """L = E_groups w(tau_t) MMD^2({X_{tau_t,tau_s}(I^i_{tau_t})}_i, {sg X_{tau_r,tau_s}(I^i_{tau_r})}_i),
    k(y, y') = exp(-|y - y'|_2 / (|c_out| D)),  w = 1/2 sigmoid(beta - lam) lam' b^a / (a^2 + b^2),
    lam = 2 ln(b / a); M particles per group share tau_t < tau_r <= tau_s, each its own (x0, x1).

    Source: Zhou, Ermon & Song 2025 (IMM, arXiv 2503.07565); lumalabs/imm (inference code only),
    the loss as in stockeh/imm ``training/loss.py``; IMM time t = 1 - tau (docs/methods.md).
    Defaults kept (CIFAR-10): M = 4, a = 1, beta = 5, k = 15, eta_max = 160, eta_min = 0 (tau_r by
    a constant eta = a / b decrement), tau_t ~ U[0.006, 0.994], tau_s ~ U[tau_t, 0.994]; Laplace
    kernel, V-statistic; target in float32 with the same dropout mask; 2 steps through eta = 1.4.
    Deviations:
    - the project's euler FlowMap instead of the CIFAR ``simple_edm`` head (an official option);
    - kernel |c_out| = tau_s - tau_t of that map (stockeh's euler branch uses sigma_d t);
    - samplers run from tau = 0 to 1 (published 0.006 -> 0.994); other NFEs on the uniform grid.
    """

    needs_teacher = False
    exact_terms = ()
    semigradient = True  # the target particles come from the same weights under no_grad
    loss_is_progress = False  # the value starts near 0 (tau_r ~ tau_t) and moves with the target
    summary = {
        "paper": "Zhou, Ermon, Song 2025 (IMM)",
        "times": "groups of 4 share tau_t < tau_r <= tau_s; tau_t ~ U, tau_s ~ U[tau_t, .994], r by eta step",
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
        t_min: float = 0.006  # tau bounds (IMM's eps and T)
        t_max: float = 0.994
        estimator: str = "v"  # "v": published V-statistic; "u": unbiased U-statistic
        mid_eta: float | None = 1.4  # 2-step sampler's intermediate eta; None = uniform grid

        def __post_init__(self) -> None:
            if self.estimator not in ESTIMATORS:
                raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
            if self.m < 1 or (self.estimator == "u" and self.m < 2):
                raise ValueError(f"need m >= 1 (m >= 2 for the U-statistic), got {self.m}")
            if not 0 < self.t_min < self.t_max < 1:
                raise ValueError(f"need 0 < t_min < t_max < 1, got {self.t_min}, {self.t_max}")

    def times(self, groups: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """(tau_t, tau_s) per group: tau_t ~ U[t_min, t_max], tau_s ~ U[tau_t, t_max]."""
        tau_t = uniform(groups, like, self.cfg.t_min, self.cfg.t_max)
        return tau_t, tau_t + (self.cfg.t_max - tau_t) * uniform(groups, like)

    def tau_r(self, tau_t: Tensor, tau_s: Tensor) -> Tensor:
        """Constant decrement in eta = a / b: eta_r = eta_t - (eta_max - eta_min) / 2^k."""
        cfg, interp = self.cfg, self.interpolant
        eta_r = interp.sigma(tau_t) - (cfg.eta_max - cfg.eta_min) / 2**cfg.k
        eta_r = eta_r.clamp_min(float(interp.sigma(torch.tensor(cfg.t_max, dtype=torch.float64))))
        return torch.minimum(interp.time_of_sigma(eta_r), tau_s)

    def weight(self, tau: Tensor) -> Tensor:
        """w = 1/2 sigmoid(beta - lam) lam' b^a / (a^2 + b^2), lam = 2 ln(b / a) (VDM-style)."""
        a, b, da, db = self.interpolant.coeffs(tau)
        lam, dlam = 2 * torch.log(b / a), 2 * (db / b - da / a)
        return 0.5 * torch.sigmoid(self.cfg.beta - lam) * dlam * b**self.cfg.a / (a * a + b * b)

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
        groups = x1.shape[0] // m
        tau_t, tau_s = self.times(groups, x1)
        tau_r = self.tau_r(tau_t, tau_s)
        t, r, s = (z.repeat_interleave(m) for z in (tau_t, tau_r, tau_s))
        it = self.interpolant.sample(x0, x1, t).xt
        ir = self.interpolant.sample(x0, x1, r).xt  # the same (x0, x1)
        with torch.random.fork_rng(devices=[x1.device] if x1.device.type == "cuda" else []):
            y = flow_map(it, t, s)  # the target below sees the same dropout mask
        with torch.no_grad():  # the target in float32 (``force_fp32`` of the IMMLoss port)
            y_target = full_precision(flow_map)(ir, r, s)
        y, y_target = (z.reshape(groups, m, -1) for z in (y, y_target))
        bandwidth = 1 / ((tau_s - tau_t).abs().clamp_min(1e-12) * y.shape[-1])
        mmd = self.mmd(y, y_target, bandwidth)
        loss = (self.weight(tau_t) * mmd).mean()
        return loss, {"mmd": mmd.detach().mean()}

    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Push-forward composition; 2 steps through eta = a/b = ``mid_eta`` (IMM's CIFAR-10
        sampler: tau = 0.417 linear, 0.395 trig), other NFEs on the uniform grid."""
        self.check_nfe(nfe)
        if nfe != 2 or self.cfg.mid_eta is None:
            return unify.sample(flow_map, x0, nfe, "uniform")
        mid = self.interpolant.time_of_sigma(torch.tensor(self.cfg.mid_eta, dtype=torch.float64))
        return unify.sample(
            flow_map, x0, nfe, torch.stack([mid.new_zeros(()), mid, mid.new_ones(())])
        )
