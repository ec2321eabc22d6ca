"""Consistency Mid-Training (Hu et al. 2025, arXiv 2509.24526): a stage, and the pipelines using it.

``ConsistencyMidTraining`` is the mid-training objective (not registered alone: the paper uses it
only as the stage between a diffusion teacher and flow-map post-training). ``ct+cmt`` and
``meanflow+cmt`` run it for ``mid_frac`` of the steps, then hand the same weights to ``ct`` or
``meanflow`` (``methods._pipeline``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

import unify
from methods._pipeline import two_stage
from methods.base import Logs, Method
from methods.common import consistency_grid, like_or_default, noise_like, pseudo_huber
from methods.ct import ConsistencyTraining
from methods.meanflow import MeanFlow
from unify.edm import data_scale, time_of_edm_sigma
from unify.flowmap import FlowMap

SOLVERS = ("dpm++", "teacher")
DISTANCES = ("pseudo_huber", "mse", "l2")


def dpm_solver_pp(denoise, x: Tensor, sigmas: list[float]) -> list[Tensor]:
    """Multistep DPM-Solver++ (Lu et al. 2022, data prediction) on x_sigma = data + sigma noise, from
    ``sigmas[0]`` to ``sigmas[-1]`` (0 allowed: lambda = inf, a first-order step returns D): order
    min(k, 3, N + 1 - k) at step k (lower order at the first two and the last two steps), one
    ``denoise(x, i)`` call at each sigma but the last. Returns the N + 1 states."""
    lam = [-math.log(s) if s > 0 else math.inf for s in sigmas]
    n, states, ds = len(sigmas) - 1, [x], [denoise(x, 0)]
    for k in range(1, n + 1):
        order = min(k, 3, n + 1 - k)
        h = lam[k] - lam[k - 1]
        phi1 = math.expm1(-h)
        x = (sigmas[k] / sigmas[k - 1]) * x - phi1 * ds[-1]
        if order >= 2:
            r0 = (lam[k - 1] - lam[k - 2]) / h
            d10 = (ds[-1] - ds[-2]) / r0
            if order == 2:
                x = x - 0.5 * phi1 * d10
            else:
                r1 = (lam[k - 2] - lam[k - 3]) / h
                d11 = (ds[-2] - ds[-3]) / r1
                phi2 = phi1 / h + 1.0
                phi3 = phi2 / h - 0.5
                x = x + phi2 * (d10 + r0 / (r0 + r1) * (d10 - d11)) - phi3 * (d10 - d11) / (r0 + r1)
        states.append(x)
        if k < n:
            ds.append(denoise(x, k))
    return states


class ConsistencyMidTraining(Method):
    """L = mean_i d(X_{tau_i,1}(I^_i), x^_end),  i = 0..N-1, one teacher trajectory per N points,

    CMT-CM of Hu et al. 2025 (arXiv 2509.24526; sony/cmt ``training/loss.py:DPMSolverLoss``):
    B / N data x1 start at sigma_max = 80 (I_{tau_0} = a x0 + b x1, forward-noised data), the
    teacher ODE is solved by multistep DPM-Solver++ (order 3, lower order at both ends) over N = 16
    steps uniform in log sigma down to sigma_min = 0.002; the student maps each of the N states to
    the data end and is regressed onto the last state x^_end = I^_end / b. A true regression onto a
    fixed target: no stop-gradient, no EMA target; per point, no time weight.
    Kept: N = 16, sigma 80 -> 0.002 in EDM units (``unify.edm``), the solver, the 2-step sampler's
    sigma = 0.77569. Deviations: pseudo-Huber (iCT's c, EDM units) instead of LPIPS-VGG (``mse``,
    ``l2`` are the code's MSE / "MAE"); the teacher is the run's (trained fm or oracle velocity).
    ``solver = "teacher"`` steps by the teacher's ODE step and ``pin_end`` ends at tau = 1: then the
    exact map is the minimiser (``exact_with``); see docs/methods.md.
    """

    needs_teacher = True
    family = "consistency"
    init_from_teacher = True  # the student starts from the teacher's weights (sony/cmt)
    exact_terms = ("cmt",)
    exact_with = {"solver": "teacher", "pin_end": True}
    summary = {
        "paper": "Hu et al. 2025 (CMT)",
        "times": "the 16 points of a teacher DPM-Solver++ trajectory, sigma 80 -> 0.002",
        "target": "the trajectory's end (regression of X_{tau_i,1}, pseudo-Huber)",
        "nfe": "any (consistency multistep; 2 steps re-noise at sigma = 0.77569)",
    }

    @dataclass(frozen=True)
    class Config:
        nfe: int = 16  # teacher steps = student points per trajectory
        sigma_max: float = 80.0  # EDM sigma of the trajectory start
        sigma_min: float = 0.002  # EDM sigma of the trajectory end
        solver: str = "dpm++"  # multistep DPM-Solver++ (published) | "teacher": its ODE step
        pin_end: bool = False  # end the trajectory at tau = 1 (sigma 0) instead of sigma_min
        distance: str = "pseudo_huber"  # stands in for LPIPS-VGG | "mse" (sum) | "l2" (norm)
        mid_sigma: float | None = 0.77569  # 2-step sampler re-noise level (sony/cmt CIFAR-10)

        def __post_init__(self) -> None:
            if self.solver not in SOLVERS or self.distance not in DISTANCES:
                raise ValueError(f"solver in {SOLVERS}, distance in {DISTANCES}")
            if self.nfe < (3 if self.solver == "dpm++" else 1):
                raise ValueError(f"nfe must be >= 3 with dpm++ (>= 1 else), got {self.nfe}")
            if not 0 < self.sigma_min < self.sigma_max:
                raise ValueError("need 0 < sigma_min < sigma_max")

    def grid(self) -> tuple[list[float], Tensor]:
        """(EDM sigmas, our times), nfe + 1 each: the official ``get_time_steps('logSNR')``."""
        lam_t, lam_0 = -math.log(self.cfg.sigma_max), -math.log(self.cfg.sigma_min)
        lam = torch.linspace(0, 1, self.cfg.nfe + 1, dtype=torch.float64) * (lam_0 - lam_t) + lam_t
        sigmas = torch.exp(-lam)
        if self.cfg.pin_end:
            sigmas[-1] = 0.0
        taus = time_of_edm_sigma(self.interpolant, sigmas, self.sigma_data)
        return sigmas.tolist(), taus

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(s, t) of the student points of a batch of n: the grid times tau_0..tau_{N-1}, each for
        max(1, n // N) trajectories (time-major, as the official ``timesteps.T``), and t = 1."""
        like = like_or_default(like)
        taus = self.grid()[1][:-1].to(dtype=like.dtype, device=like.device)
        s = taus.repeat_interleave(max(1, n // self.cfg.nfe))
        return s, torch.ones_like(s)

    @torch.no_grad()
    def trajectory(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(taus (N + 1,), states (N, n, ...) in I-space at tau_0..tau_{N-1}, target (n, ...))."""
        sigmas, taus = self.grid()
        taus = taus.to(x1)
        ones = torch.ones(x1.shape[0], dtype=x1.dtype, device=x1.device)
        a, b, _, _ = self.interpolant.coeffs(taus)
        states = [a[0] * x0 + b[0] * x1]
        if self.cfg.solver == "teacher":
            for i in range(self.cfg.nfe):
                states.append(self.teacher.step(states[-1], taus[i] * ones, taus[i + 1] * ones))
            target = states[-1] / b[-1]
        else:  # in the variance-exploding x = I / b = x1 + (a / b) x0 (EDM units up to scale)
            k = data_scale(self.sigma_data)

            def denoise(x: Tensor, i: int) -> Tensor:
                xi, ti = b[i] * x, taus[i] * ones
                return self.interpolant.denoise(xi, self.teacher.velocity(xi, ti).to(x), ti)

            ve = dpm_solver_pp(denoise, states[0] / b[0], [s / k for s in sigmas])
            states = [b[i] * y for i, y in enumerate(ve)]
            target = ve[-1]
        return taus, torch.stack(states[:-1]), target

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """Per-sample distance in EDM data units (y = k x1, k = 0.5 / sigma_data)."""
        k = data_scale(self.sigma_data)
        if self.cfg.distance == "pseudo_huber":
            return pseudo_huber(k * a, k * b)
        sq = (k * (a - b)).pow(2).flatten(1).sum(1)
        return sq if self.cfg.distance == "mse" else sq.sqrt()

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        n = max(1, x1.shape[0] // self.cfg.nfe)  # official: images[: B // NFE]
        taus, states, target = self.trajectory(x0[:n], x1[:n])
        s = taus[:-1].repeat_interleave(n)
        pred = flow_map(states.flatten(0, 1), s, torch.ones_like(s))
        per_point = self.distance(pred, target.repeat(self.cfg.nfe, *[1] * (target.ndim - 1)))
        loss = per_point.mean()
        return loss, {"cmt": loss.detach()}

    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Consistency multistep (map to the data end, re-noise); 2 steps re-noise at mid_sigma."""
        self.check_nfe(nfe)
        grid = consistency_grid(nfe, self.interpolant, self.cfg.mid_sigma, self.sigma_data)
        return unify.consistency_sample(flow_map, x0, nfe, self.interpolant, grid, generator)


_KEPT = """Kept: mid_frac = 0.75 (sony/cmt CIFAR-10: 300k mid-training + 100k post-training
iterations at batch 128); the learning rate decays linearly to 0 within each stage, the post stage
at half the run's (2e-4 then 1e-4); the mid stage starts from the teacher's weights when that is a
trained fm; the evaluation EMA restarts at the hand-off. Deviations: the online weights are handed
over (published: the mid-training EMA, 0.999); the run's optimiser and its state continue
(published: a fresh RAdam). See docs/methods.md."""

two_stage(
    "ct+cmt",
    ConsistencyMidTraining,
    ConsistencyTraining,
    prefix="cmt_",
    frac_name="mid_frac",
    frac=0.75,
    anneal=True,
    post_lr=0.5,
    module=__name__,
    summary={
        "paper": "Hu et al. 2025 (CMT), then ct (published post-training: ECT)",
        "times": "75%: the 16 points of teacher DPM-Solver++ trajectories; then ct's Karras pairs",
        "target": "CMT: the trajectory's end; then ct's sg X_{t_{n+1},1}(I_{t_{n+1}})",
        "nfe": "any (consistency multistep, re-noising)",
    },
    doc="""CMT mid-training (Hu et al. 2025, arXiv 2509.24526; sony/cmt) for ``mid_frac`` of the
steps, then consistency training (``ct``) from the same weights:
  L_mid = mean_i d(X_{tau_i,1}(I^_i), x^_end) on teacher DPM-Solver++ trajectories (16 points),
  L_post = ct's loss, its schedules run over the post-training steps.
The released CIFAR-10 pipeline post-trains with ECT; ``ct`` (iCT recipe) is this project's
nearest consistency-training loss. Options: ct's by name, CMT's prefixed ``cmt_``.
"""
    + _KEPT,
)

two_stage(
    "meanflow+cmt",
    ConsistencyMidTraining,
    MeanFlow,
    prefix="cmt_",
    frac_name="mid_frac",
    frac=0.75,
    anneal=True,
    post_lr=0.5,
    module=__name__,
    summary={
        "paper": "Hu et al. 2025 (CMT), then Geng et al. 2025 (MeanFlow)",
        "times": "75%: the 16 points of teacher DPM-Solver++ trajectories; then MeanFlow's pairs",
        "target": "CMT: the trajectory's end; then MeanFlow's one-jvp target",
        "nfe": "any (composition; 1 published)",
    },
    doc="""CMT mid-training (Hu et al. 2025, arXiv 2509.24526; sony/cmt) for ``mid_frac`` of the
steps, then MeanFlow (``meanflow``, Geng et al. 2025) from the same weights:
  L_mid = mean_i d(X_{tau_i,1}(I^_i), x^_end) on teacher DPM-Solver++ trajectories (16 points),
  L_post = MeanFlow's loss. The paper's ImageNet-256 CMT+MeanFlow (two-time mid-training, its
solver and split) is unreleased: the released CMT-CM objective and CIFAR-10 split stand in.
Options: MeanFlow's by name, CMT's prefixed ``cmt_``.
"""
    + _KEPT,
)
