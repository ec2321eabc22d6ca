"""Align Your Flow (Sabour, Fidler & Kreis 2025): AYF-EMD and AYF-LMD, in flow-map form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods.base import Logs, Method, register
from methods.common import logit_normal, noise_like
from unify.flowmap import FlowMap, eulerian_tangent, map_dt
from unify.interpolant import bcast

VARIANTS = ("emd", "lmd")


@register("ayf")
class AlignYourFlow(Method):
    """EMD: L = E_{s<t} |v(I_s, s, t) - sg(v + T^)|^2,  T^ = T / (|T| + c),
         T = (u - v) + r (t - s)(d/ds v + grad_x v . u),  u = b_s(I_s) the teacher velocity;
    LMD: L = E_{s<t} |v(I_s, s, t) - sg(v - R^)|^2,  R = d/dt X_{s,t}(I_s) - b_t(X_{s,t}(I_s)),

    AYF-EMD / AYF-LMD of Sabour, Fidler & Kreis 2025 (arXiv 2506.14603; METHODS_SPEC Sec. 12): the
    Eulerian (Lagrangian) residual of Flow Map Matching used as a semi-gradient target from the same
    weights, normalised and, for EMD, warmed up. Their AYF-time form f = x + (s_A - t_A) F with
    data at t_A = 0 is ours with tau = 1 - t_A, v = -F (Sec. 0'.3); the gradient moves v along +T^,
    X along the tangent toward the data end (the ports' df/dt_A with the sign of d/dtau). T is the
    shared tangent of Sec. 0'.4 (``unify.eulerian_tangent``): with u = dI/ds, r = 1 and no
    normalisation this is MeanFlow's target. At r = 1 and an exact teacher T = 0 on the exact map.

    Published defaults kept: c = 0.1 on the per-sample L2 norm, r = min(r_max, step / H) with
    r_max = 0.99, teacher velocity without grad, v^- = sg v (no EMA target), squared L2 summed over
    coordinates (the spec; FastGen ``mean_flow.py`` ``opt_grad``), deterministic composition
    sampler on the uniform grid. Not implemented (say so in any table): autoguidance (needs a
    second, weaker teacher; unconditional data have no CFG alternative) and the adversarial
    fine-tuning stage (a GAN outside the flow-map objective, unmatched in compute).
    Unconfirmed details, chosen by majority of the cited implementations and exposed in ``Config``:
    (s, t) = two i.i.d. logit-normal(-0.8, 1.0) AYF times sorted (revsic ``alignyourflow.py``;
    FastGen's AYF-style config sorts i.i.d. logit-normal(-0.8, 1.6)), i.e. logit-normal(+0.8, 1.0)
    on tau, all pairs off the diagonal, s < t only; the loss on v (FastGen, FlowWithMe; revsic puts
    it on the map f, a (t - s)^2 weight); LMD normalises R like EMD (the spec's pseudocode; no
    implementation of LMD exists) and has no warm-up. Deviation: H scales with the run
    (``warmup`` = 2.5% of training, sCM's 10k of 400k; the AYF paper's H is unreported).

    Stationarity: with r_max = 0.99 the tangent keeps -0.01 (t - s)(d/ds v + grad v . u) on the
    exact map ("some straightness regularisation"), so the exact map is a stationary point only at
    r_max = 1 (``exact_with``), where T = 0 pointwise for an exact teacher (exact Gaussian test:
    dL/deps = +0.075 linear, -0.169 trig at r_max = 0.99 against slopes of 3.3 and 3.6 at +-0.2;
    ~1e-15 at r_max = 1).
    """

    needs_teacher = True
    family = "teacher-distilled"
    init_from_teacher = True  # [unconf] as FlowWithMe and FastGen do (spec Sec. 12.4)
    exact_terms = ("tangent_norm",)
    semigradient = True
    loss_is_progress = False  # the value is |T^|^2 ~ 1 whatever the map (spec Sec. 0'.4)
    exact_with = {"r_max": 1.0}
    summary = {
        "paper": "Sabour, Fidler, Kreis 2025 (AYF), AYF-EMD; no autoguidance, no GAN stage",
        "times": "s < t, two logit-normal(+0.8, 1.0) draws sorted",
        "target": "sg(v + T / (norm T + 0.1)), T the Eulerian tangent along the teacher, warm-up r <= 0.99",
        "nfe": "any (composition)",
    }

    @dataclass(frozen=True)
    class Config:
        variant: str = "emd"  # "emd" (AYF-EMD, the paper's method) | "lmd" (AYF-LMD ablation)
        mean: float = 0.8  # logit-normal mean on our tau (revsic: -0.8 on t_A)
        std: float = 1.0
        c: float = 0.1  # tangent normalisation constant
        r_max: float = 0.99  # warm-up cap
        warmup: float = 0.025  # warm-up H as a fraction of training
        lmd_normalize: bool = True  # normalise R in the LMD variant (unconfirmed)

        def __post_init__(self) -> None:
            if self.variant not in VARIANTS:
                raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
            if self.std <= 0 or self.c < 0 or not 0 <= self.r_max <= 1 or self.warmup < 0:
                raise ValueError("need std > 0, c >= 0, 0 <= r_max <= 1, warmup >= 0")

    def times(self, n: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """(s, t), s <= t: two i.i.d. logit-normal(mean, std) draws, sorted."""
        a = logit_normal(n, like, self.cfg.mean, self.cfg.std)
        b = logit_normal(n, like, self.cfg.mean, self.cfg.std)
        return torch.minimum(a, b), torch.maximum(a, b)

    def warmup_r(self, step: int) -> float:
        h = self.cfg.warmup * self.total_steps
        return self.cfg.r_max if h <= 0 else min(self.cfg.r_max, step / h)

    def normalise(self, y: Tensor) -> Tensor:
        return y / bcast(y.flatten(1).norm(dim=1) + self.cfg.c, y)

    def loss(
        self, fm: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        x0 = noise_like(x1, x0)
        s, t = self.times(x1.shape[0], x1)
        xs = self.interpolant.sample(x0, x1, s).xt
        if self.cfg.variant == "emd":
            with torch.no_grad():
                u = self.teacher.velocity(xs, s)
            v, res = eulerian_tangent(fm, xs, s, t, u, self.warmup_r(step))  # v with graph
            res = res.detach()
            target = (v + self.normalise(res)).detach()
        else:
            with torch.no_grad():
                x, dx_dt = map_dt(fm, xs, s, t)
                res = dx_dt - self.teacher.velocity(x, t)  # Lagrangian residual R
                res_hat = self.normalise(res) if self.cfg.lmd_normalize else res
            v = fm.avg_velocity(xs, s, t)
            target = (v - res_hat).detach()
        loss = (v - target).pow(2).flatten(1).sum(1).mean()
        norm = res.flatten(1).norm(dim=1).mean()
        return loss, {"tangent_norm": norm, "loss": loss.detach()}
