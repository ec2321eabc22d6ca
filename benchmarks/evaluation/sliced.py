"""Sliced W2 against an exact Gaussian-mixture law: the oracle datasets' distributional metric.

Along a unit direction theta a Gaussian mixture ``sum_k w_k N(mu_k, Sigma_k)`` projects to the 1D
mixture ``F_theta = sum_k w_k N(theta . mu_k, theta^T Sigma_k theta)``, whose CDF and partial
first moment are closed forms. The 1D W2 between the empirical law of N samples and F_theta is
then exact (no reference sample, no quadrature), so only the model's own sample noise remains.

Use (``sliced_w2_table`` with a cached ``slice_table``; evaluation noise from ``sobol_normal``):
on gmm (8-ring, radius 4, std 0.4) the exact flow map of 2048 Sobol points scores 0.023 +- 0.001
(3 seeds), 1.2 % of the 1.92 between N(0, I) and the data; i.i.d. noise scores 0.15 +- 0.04.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from unify.exact import GaussianMixture

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def directions(n_proj: int, dim: int, generator: torch.Generator | None = None) -> Tensor:
    """Unit directions ``(P, dim)`` float64: an unbiased design for the mean over the sphere.

    dim 1: ``[[1]]`` (every direction gives the same 1D W2). dim 2: the angles
    ``pi (j + U) / n_proj``, j < n_proj, one U for all, uniform if a generator is given, else
    1/2 (a rotated grid on the half circle; W2 is even in theta): its error falls fast in n_proj
    for a smooth integrand. dim >= 3: ``ceil(n_proj / dim)`` Haar-random orthonormal frames, so P
    is n_proj rounded up to a multiple of dim and a quadratic form (a translation) is exact.
    """
    if n_proj < 1 or dim < 1:
        raise ValueError(f"need n_proj >= 1 and dim >= 1, got {n_proj}, {dim}")
    if dim == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    if dim == 2:
        u = torch.rand((), generator=generator, dtype=torch.float64) if generator else 0.5
        ang = math.pi * (torch.arange(n_proj, dtype=torch.float64) + u) / n_proj
        return torch.stack([ang.cos(), ang.sin()], -1)
    g = torch.randn(-(-n_proj // dim), dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]  # Haar: fix the signs
    return q.transpose(1, 2).reshape(-1, dim)


def project(oracle: GaussianMixture, dirs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Weights ``(K,)``, means ``(P, K)`` and stds ``(P, K)`` of the projected 1D mixtures."""
    dirs = dirs.to(torch.float64)
    m = dirs @ oracle.means.T
    s = torch.einsum("pi,kij,pj->pk", dirs, oracle.covs, dirs).sqrt()
    return oracle.weights, m, s


def _cdf_pdf(q: Tensor, w: Tensor, m: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Mixture CDF and density at ``q`` ``(P, n)``; ``m, s``: ``(P, K)``."""
    z = (q[..., None] - m[:, None, :]) / s[:, None, :]
    cdf = (w * 0.5 * torch.special.erfc(-z / _SQRT2)).sum(-1)
    pdf = (w / s[:, None, :] * _INV_SQRT_2PI * torch.exp(-0.5 * z * z)).sum(-1)
    return cdf, pdf


def quantiles(
    u: Tensor,
    w: Tensor,
    m: Tensor,
    s: Tensor,
    grid: int = 4096,
    tol: float = 1e-13,
    max_iter: int = 30,
) -> Tensor:
    """``F_theta^{-1}(u)`` for ``u`` ``(n,)`` in (0, 1), per projection: ``(P, n)``, float64.

    A CDF table on ``grid`` points over [min m - 40 s, max m + 40 s] brackets each root and gives
    a linear first guess; safeguarded Newton steps (bisection whenever a step leaves the bracket)
    then reach ``max |F(q) - u| <= tol`` (or stop after ``max_iter``).
    """
    lo = (m - 40 * s).min(1).values
    hi = (m + 40 * s).max(1).values
    x = lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, grid, dtype=torch.float64)
    fx, _ = _cdf_pdf(x, w, m, s)
    uu = u.to(torch.float64).expand(len(m), -1).contiguous()
    j = torch.searchsorted(fx, uu).clamp(1, grid - 1)
    a, b = x.gather(1, j - 1), x.gather(1, j)
    fa, fb = fx.gather(1, j - 1), fx.gather(1, j)
    q = a + (b - a) * ((uu - fa) / (fb - fa).clamp_min(1e-300)).clamp(0, 1)
    for _ in range(max_iter):
        f, p = _cdf_pdf(q, w, m, s)
        if float((f - uu).abs().max()) <= tol:
            break
        below = f < uu
        a, b = torch.where(below, q, a), torch.where(below, b, q)
        step = q - (f - uu) / p.clamp_min(1e-300)
        q = torch.where((step >= a) & (step <= b), step, 0.5 * (a + b))
    return q


def _partial_mean(q: Tensor, w: Tensor, m: Tensor, s: Tensor) -> Tensor:
    """``M(q) = int_{-inf}^q x dF(x) = sum_k w_k [m_k Phi(z_k) - s_k phi(z_k)]``, z = (q - m) / s."""
    z = (q[..., None] - m[:, None, :]) / s[:, None, :]
    phi = _INV_SQRT_2PI * torch.exp(-0.5 * z * z)
    big_phi = 0.5 * torch.special.erfc(-z / _SQRT2)
    return (w * (m[:, None, :] * big_phi - s[:, None, :] * phi)).sum(-1)


@dataclass(frozen=True)
class SliceTable:
    """What the exact side of ``sliced_w2_exact`` needs for N samples: built once, reused.

    ``dirs`` ``(P, d)``; ``cum`` ``(P, N + 1)``: the partial first moments ``M(q_i)`` at the
    quantiles ``q_i = Q_theta(i / N)`` (``M(q_0) = 0``, ``M(q_N) = E X``); ``second`` ``(P,)``:
    ``E_theta[X^2]``. Depends on the oracle, N and the directions only, not on any samples.
    """

    dirs: Tensor
    cum: Tensor
    second: Tensor

    @property
    def n(self) -> int:
        return self.cum.shape[1] - 1


def slice_table(
    oracle: GaussianMixture, n: int, n_proj: int = 64, generator: torch.Generator | None = None
) -> SliceTable:
    """The exact projected laws of ``oracle`` along ``directions(n_proj, d, generator)`` for n."""
    dirs = directions(n_proj, oracle.dim, generator)
    w, m, s = project(oracle, dirs)
    u = torch.arange(1, n, dtype=torch.float64) / n
    step = max(1, 2**22 // (n * len(w)))  # projections per chunk: ~32 MB temporaries
    mq = torch.cat(
        [
            _partial_mean(quantiles(u, w, mc, sc), w, mc, sc)
            for mc, sc in zip(m.split(step), s.split(step))
        ]
    )
    mean = (w * m).sum(1, keepdim=True)
    cum = torch.cat([torch.zeros_like(mean), mq, mean], 1)
    return SliceTable(dirs, cum, (w * (m * m + s * s)).sum(1))


def sliced_w2_table(samples: Tensor, table: SliceTable) -> float:
    """``sliced_w2_exact`` against a prebuilt ``SliceTable`` (its N must equal len(samples)).

    Per direction, exactly: ``W2^2 = int_0^1 (Q_N(u) - Q(u))^2 du = (1/N) sum_i x_(i)^2 -
    2 sum_i x_(i) (M(q_i) - M(q_{i-1})) + E[X^2]``, x_(i) the sorted projected samples.
    """
    x = samples.detach().reshape(samples.shape[0], -1).to("cpu", torch.float64)
    if x.shape != (table.n, table.dirs.shape[1]):
        raise ValueError(
            f"sliced_w2: samples {tuple(samples.shape)} vs table for {table.n} x {table.dirs.shape[1]}"
        )
    xs = (table.dirs @ x.T).sort(dim=1).values
    w2sq = (xs * xs).mean(1) - 2 * (xs * table.cum.diff(dim=1)).sum(1) + table.second
    return float(w2sq.clamp_min(0.0).mean().sqrt())


def sliced_w2_exact(
    samples: Tensor,
    oracle: GaussianMixture,
    n_proj: int = 64,
    generator: torch.Generator | None = None,
) -> float:
    """Sliced W2 between the samples ``(N, d)`` and the oracle's exact law, in data units.

    ``SW2 = sqrt(mean_theta W2^2(theta # q_N, theta # p*))`` over ``directions(n_proj, d,
    generator)``, each 1D term exact (``sliced_w2_table``); ``= sliced_w2_table(samples,
    slice_table(oracle, N, n_proj, generator))``; build the table once to score many sample sets.

    Bias: ``E SW2^2 = SW2^2(q, p*) + b_N``, ``b_N > 0`` the distance of N samples to their own
    law. For i.i.d. samples of a multimodal law the mode counts are off by ~sqrt(w / N) and moving
    that mass across a gap D costs D^2 |dw|, so ``b_N ~ N^-1/2`` and the floor SW2 ~ N^-1/4 (gmm:
    0.148 +- 0.038 at N = 2000, 0.055 +- 0.020 at 16384; 3 seeds). A deterministic sampler fed
    low-discrepancy noise (``sobol_normal``) keeps the counts right: 0.023 +- 0.001 at 2048,
    0.005 +- 0.0004 at 16384; a sampler that re-noises with i.i.d. noise keeps part of the
    term (the exact sampler re-noised at t = 0.5: 0.068 +- 0.014 at 2048). Variance: over noise
    draws, about the floor's spread (the same term; trained gmm models at 2048 Sobol points: std
    ~0.001); projection error with the 2D rotated grid < 1e-6 at n_proj = 64.
    Scale: a point mass at the data mean scores ``sqrt(tr Cov / d)`` (2.86 on gmm), N(0, I)
    scores 1.92 on gmm. Lower is better.
    """
    if samples.ndim < 2 or len(samples) < 1:
        raise ValueError(f"sliced_w2_exact: need (N, d) samples, got {tuple(samples.shape)}")
    table = slice_table(oracle, len(samples), n_proj, generator)
    return sliced_w2_table(samples, table)


def sliced_w2_floor(
    oracle: GaussianMixture,
    table: SliceTable,
    reps: int = 8,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Mean and std over ``reps`` draws of ``oracle.sample(table.n)`` scored by the table."""
    vals = torch.tensor(
        [sliced_w2_table(oracle.sample(table.n, generator), table) for _ in range(reps)]
    )
    return float(vals.mean()), float(vals.std()) if reps > 1 else 0.0


def sobol_normal(n: int, dim: int, seed: int) -> Tensor:
    """``(n, dim)`` float32 N(0, I) noise from an Owen-scrambled Sobol sequence (quasi-random).

    A helper for the harness's evaluation noise: pushed through a deterministic sampler, it fills
    each mode with its share of samples to O(log(n)^dim / n) instead of the i.i.d. O(n^-1/2), the
    dominant term of the metric's floor. Unbiased per point (scrambling); best for n = 2^m.
    """
    u = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(n, dtype=torch.float64)
    u = u.clamp(2.0**-60, 1 - 2.0**-53)
    return (_SQRT2 * torch.special.erfinv(2 * u - 1)).float()
