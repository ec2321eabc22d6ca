"""Shared constants and independent reference computations for the exact-oracle tests.

The references here (direct mixture sampling, Cholesky log-densities, self-normalised importance
sampling of E[dI_t/dt | I_t = x], moment checks in standard errors) never go through the oracle
classes' own eigh/Woodbury routes, so tests that use them are independent checks.
"""

import math

import pytest
import torch

from unify import Linear, Trig
from unify.exact import GaussianTarget
from unify.lowrank import LowRankGaussianMixture

F64 = torch.float64
INTERPOLANTS = [Linear(), Trig()]
IDS = ["linear", "trig"]
PER_INTERP = pytest.mark.parametrize("interp", INTERPOLANTS, ids=IDS)
MEAN, STD = [1.0, -2.0], [0.5, 1.5]
# Closed-form identities: a few dozen float64 operations on O(1) numbers (the map's gain c(t)/c(s)
# is at most 1 / 0.5 = 2 here), so 1e-12 leaves ~100x headroom over rounding.
EXACT = {"rtol": 1e-12, "atol": 1e-12}
# Monte-Carlo comparisons: |estimate - truth| <= Z * SE. Z = 4 gives a two-sided false-alarm rate of
# 6e-5 per comparison for a Gaussian estimator (seeds are fixed, so runs are deterministic anyway).
Z = 4.0


def gaussian_target() -> GaussianTarget:
    return GaussianTarget(torch.tensor(MEAN), torch.tensor(STD))


def rand_points(b: int, seed: int, d: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(b, d, generator=g, dtype=F64)
    s, u, t = (torch.rand(b, generator=g, dtype=F64) for _ in range(3))
    return x, s, u, t


def draw_points(w: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor, n: int, g: torch.Generator):
    """float64 mixture samples drawn here, independently of GaussianMixture.sample."""
    k = torch.multinomial(w, n, replacement=True, generator=g)
    chol = torch.linalg.cholesky(cov)
    return mu[k] + (chol[k] @ torch.randn(n, mu.shape[1], 1, generator=g, dtype=F64))[..., 0]


def log_component(y: torch.Tensor, w: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor):
    """log w_k N(y; mu_k, cov_k) by Cholesky (not eigh): y (..., d), mu (..., K, d), cov
    (..., K, d, d), leading dimensions broadcast; returns (..., K)."""
    chol = torch.linalg.cholesky(cov)
    inv = torch.linalg.inv(chol)  # L_k^{-1}, so |L_k^{-1} (y - mu_k)|^2 is the Mahalanobis form
    z = torch.einsum("...kij,...kj->...ki", inv, y[..., None, :] - mu)
    logdet = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    d = mu.shape[-1]
    return w.log() - 0.5 * (z.pow(2).sum(-1) + logdet + d * math.log(2 * math.pi))


def mc_velocity(interp, t: float, w, mu, cov, x1s, x0s, g):
    """Independent SNIS estimate of E[dI_t/dt | I_t = x] at fresh typical queries x = I_t.

    x1-weighting: p(x1 | I_t = x) ∝ p(x1) N(x; b x1, a^2 I), so with x1_j ~ p the normalised weights
    w_j ∝ N(x; b x1_j, a^2 I) give E[x1|x]; then E[x0|x] = (x - b E[x1|x]) / a. Good at small t.
    x0-weighting: p(x0 | I_t = x) ∝ N(x0; 0, I) p((x - a x0) / b), so with x0_j ~ N(0, I) the weights
    w_j ∝ p((x - a x0_j) / b) give E[x0|x]; then E[x1|x] = (x - a E[x0|x]) / b. Good at large t.
    Returns, per estimator used, (estimate, SE, ESS, exact-velocity query points).
    SE is the delta-method SE of a self-normalised estimate: sqrt(sum_j w_j^2 (f_j - mean)^2).
    """
    q = 6
    tt = torch.full((q,), t, dtype=F64)
    a, b, da, db = (float(c[0]) for c in interp.coeffs(tt))
    xq = a * torch.randn(q, mu.shape[1], generator=g, dtype=F64) + b * draw_points(w, mu, cov, q, g)
    out = {}
    if t <= 0.5:
        logw = -0.5 * ((xq[:, None, :] - b * x1s[None]) ** 2).sum(-1) / a**2
        wn = torch.softmax(logw, -1)
        m1 = wn @ x1s
        se1 = ((wn**2)[..., None] * (x1s[None] - m1[:, None]) ** 2).sum(1).sqrt()
        coef = db - da * b / a  # v = (a'/a) x + (b' - a' b / a) E[x1|x]
        out["x1"] = (da / a * xq + coef * m1, abs(coef) * se1, 1 / (wn**2).sum(-1), xq, tt)
    if t >= 0.5:
        logw = torch.logsumexp(log_component((xq[:, None, :] - a * x0s[None]) / b, w, mu, cov), -1)
        wn = torch.softmax(logw, -1)
        m0 = wn @ x0s
        se0 = ((wn**2)[..., None] * (x0s[None] - m0[:, None]) ** 2).sum(1).sqrt()
        coef = da - db * a / b  # v = (b'/b) x + (a' - b' a / b) E[x0|x]
        out["x0"] = (db / b * xq + coef * m0, abs(coef) * se0, 1 / (wn**2).sum(-1), xq, tt)
    return out


def moment_checks(y: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> None:
    """Sample mean and covariance within Z SE, with SEs estimated from the sample itself."""
    n = y.shape[0]
    c = y - y.mean(0)
    se_mean = c.std(0) / math.sqrt(n)
    assert bool(((y.mean(0) - mean).abs() <= Z * se_mean).all()), (y.mean(0), mean, se_mean)
    prod = c[:, :, None] * c[:, None, :]  # (n, d, d): the sample covariance is its mean
    se_cov = prod.std(0) / math.sqrt(n)  # SE of a mean of products (delta method)
    err = (prod.mean(0) * n / (n - 1) - cov).abs()
    assert bool((err <= Z * se_cov).all()), (prod.mean(0), cov, se_cov)


def one_gaussian_lowrank(
    g: torch.Generator, lam: list[float], noise: float, d: int = 48
) -> LowRankGaussianMixture:
    """A one-component low-rank mixture (a Gaussian) in d dimensions: random orthonormal U
    (d x len(lam)), mean 0.5 N(0, I), eigenvalues ``lam`` plus ``noise`` isotropic; draws from
    ``g`` in that order."""
    u = torch.linalg.qr(torch.randn(d, len(lam), generator=g, dtype=torch.float64))[0]
    mean = 0.5 * torch.randn(1, d, generator=g, dtype=torch.float64)
    lam_ = torch.tensor([lam], dtype=torch.float64)
    return LowRankGaussianMixture(torch.ones(1), mean, u[None], lam_, torch.tensor([noise]))
