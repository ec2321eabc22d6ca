"""sCT: continuous-time consistency training (Lu & Song 2024, ICLR 2025), in flow-map form."""

from __future__ import annotations

from torch import Tensor

import unify
from methods._scm import SCM
from methods.base import register


@register("sct")
class ContinuousConsistencyTraining(SCM):
    """L = E[lambda(t_T) e^{-u_phi(t_T)} (1/D) |F_theta - F^- - g^|^2 + u_phi(t_T)], F^- = sg F,
    g^ = g_r / (|g_r| + c),  g_r = -cos^2 t_T (sigma_d F^- - dx^TF/dt) - r cos t_T sin t_T (x^TF +
    sigma_d dF^-/dt_T),  dx^TF/dt = cos t_T z - sin t_T x_d (our dI/dtau of the same pair).

    Source: sCT of Lu & Song 2024 (sCM, arXiv 2410.11081); no official code, ports edm2_sCM
    ``training/loss_scm.py``, FastGen ``sCM.py``; TrigFlow frame in :mod:`methods._scm`.
    Defaults kept: ln(sigma_d tan t_T) ~ N(-1.0, 1.4^2), sigma_d = 0.5, c = 0.1, r = min(1, step/H),
    learned u_phi, t_mid = 1.1; by majority of the ports (``Config``): per-sample L2 norm, prior
    lambda = 1 / (sigma_d tan t_T) on, e^{-u} l + u per sample, u_phi of ln(sigma_d tan t_T) / 4.
    Deviations:
    - H = 2.5% of the run (``warmup``; published 10k of 400k steps);
    - t_T clamped to [0.004, pi/2 - 1e-4] (EDM's sigma_min = 0.002, FastGen's upper clamp);
    - samplers start at tau = 0 (sigma = inf), not sigma = 80; 3+ steps re-noise on the Karras grid;
    - starts from the teacher's weights when it is a trained fm, from scratch with the exact oracle.
    """

    needs_teacher = False
    family = "consistency"
    init_from_teacher = True  # edm2_sCM presets: sCT starts from a TrigFlow diffusion model
    exact_terms = ()
    summary = {
        "paper": "Lu & Song 2024 (sCM), sCT",
        "times": "tau -> 1; ln(sigma_d tan t_T) ~ N(-1.0, 1.4^2), t_T the TrigFlow time",
        "target": "sg F + normalised cos t_T df/dt_T (jvp along dI/dtau), warm-up, learned log-var",
        "nfe": "any (consistency multistep; 2 steps re-noise at t_T = 1.1)",
    }

    def velocity(self, path: unify.PathSample) -> Tensor:
        return path.vt
