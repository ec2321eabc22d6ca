"""sCD: continuous-time consistency distillation (Lu & Song 2024, ICLR 2025), in flow-map form."""

from __future__ import annotations

from torch import Tensor

import unify
from methods._scm import SCM
from methods.base import register


@register("scd")
class ContinuousConsistencyDistillation(SCM):
    """L = E[lambda(t_T) e^{-u_phi(t_T)} (1/D) |F_theta - F^- - g^|^2 + u_phi(t_T)],
    g^ = g_r / (|g_r| + c),  g_r = -cos^2 t_T (sigma_d F^- - dx^TF/dt) - r cos t_T sin t_T (x^TF +
    sigma_d dF^-/dt_T),  dx^TF/dt = sigma_d F_teacher (our teacher velocity, in TrigFlow time t_T).

    Source: sCD of Lu & Song 2024 (sCM, arXiv 2410.11081); no official code, ports
    EpiGenomicsCode/edm2_sCM ``training/loss_scm.py`` and NVlabs/FastGen ``sCM.py``; the TrigFlow
    frame is in :mod:`methods._scm` (translation: docs/methods.md).
    Defaults, unconfirmed choices and deviations: those of ``sct`` (ln(sigma_d tan t_T) ~
    N(-1.0, 1.4^2), c = 0.1 per-sample L2 in TrigFlow units, warm-up 2.5% of training, learned
    log-variance, prior weight on, t_mid = 1.1), plus:
    - no CFG (unconditional data);
    - starts from the teacher's weights when it is a trained fm, from scratch with the exact oracle.
    """

    needs_teacher = True
    family = "consistency"
    init_from_teacher = True  # edm2_sCM presets: sCD starts from its TrigFlow diffusion teacher
    exact_terms = ("tangent_norm",)
    summary = {
        "paper": "Lu & Song 2024 (sCM), sCD",
        "times": "tau -> 1; ln(sigma_d tan t_T) ~ N(-1.0, 1.4^2), t_T the TrigFlow time",
        "target": "sg F + normalised cos t_T df/dt_T (jvp along the teacher), warm-up, learned log-var",
        "nfe": "any (consistency multistep; 2 steps re-noise at t_T = 1.1)",
    }

    def velocity(self, path: unify.PathSample) -> Tensor:
        return self.teacher.velocity(path.xt, path.t)
