"""EDM noise levels of the project's times: the one translation rule of every sigma-based recipe.

Recipes published in EDM's sigma (Karras et al. 2022: CM, iCT, CTM, sCM, PD, DSNO, IMM) were tuned
for data of standard deviation ``EDM_SIGMA_DATA`` = 0.5 (images in [-1, 1]). Our I_t = a x0 + b x1
has data x1 of per-coordinate standard deviation ``sigma_data``; in EDM's units y = k x1,
k = 0.5 / sigma_data, and k I_t / b = y + sigma n with n = x0, so

    sigma_EDM(t) = (a(t) / b(t)) * 0.5 / sigma_data        (``edm_sigma`` / ``time_of_edm_sigma``).

``sigma_data = 0.5`` is the variant without a data scale (sigma_EDM = a / b). TrigFlow (sCM) writes
x = cos t_T y + sin t_T sigma_d n with sigma_d = 0.5, so sigma_EDM = sigma_d tan t_T
(``edm_sigma_of_trigflow`` / ``trigflow_time``); IMM's eta (noise scaled by sigma_d = 0.5) is
sigma_EDM / 0.5 and PD's cosine-VP sigma / alpha is sigma_EDM, each in its method's file.
"""

from __future__ import annotations

import torch
from torch import Tensor

from unify.interpolant import Interpolant

#: the data standard deviation every EDM-family recipe was published for
EDM_SIGMA_DATA = 0.5


def data_scale(sigma_data: float) -> float:
    """k = 0.5 / sigma_data: EDM's data y = k x1 (standard deviation 0.5)."""
    if not sigma_data > 0:
        raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
    return EDM_SIGMA_DATA / sigma_data


def edm_sigma(interpolant: Interpolant, t: Tensor, sigma_data: float = EDM_SIGMA_DATA) -> Tensor:
    """sigma_EDM(t) = (a / b) * 0.5 / sigma_data (infinite at t = 0, zero at t = 1)."""
    return interpolant.sigma(t) * data_scale(sigma_data)


def time_of_edm_sigma(
    interpolant: Interpolant, sigma: Tensor | float, sigma_data: float = EDM_SIGMA_DATA
) -> Tensor:
    """Our time t at which sigma_EDM(t) = sigma: the inverse of ``edm_sigma``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64) if not isinstance(sigma, Tensor) else sigma
    return interpolant.time_of_sigma(sigma / data_scale(sigma_data))


def edm_sigma_of_trigflow(t_trig: Tensor, sigma_d: float = EDM_SIGMA_DATA) -> Tensor:
    """sigma_EDM = sigma_d tan t_T (TrigFlow time t_T, sCM's sigma_d = 0.5)."""
    return sigma_d * torch.tan(t_trig)


def trigflow_time(sigma: Tensor, sigma_d: float = EDM_SIGMA_DATA) -> Tensor:
    """t_T = arctan(sigma_EDM / sigma_d): the inverse of ``edm_sigma_of_trigflow``."""
    return torch.atan(sigma / sigma_d)
