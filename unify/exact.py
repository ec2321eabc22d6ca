"""Exact oracles: targets whose velocity b_t and flow map X_{s,t} are known in closed form.

They are the known-velocity teachers of the distillation losses and the ground truth of the tests
and of the 2D benchmark. All oracles work with any :class:`~unify.interpolant.Interpolant`.
:class:`LowRankGaussianMixture` (low-rank-plus-isotropic covariances, for image dimensions) lives in
:mod:`unify.lowrank` and is re-exported here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from unify.interpolant import Interpolant, bcast
from unify.ode import solve

__all__ = ["GaussianMixture", "GaussianTarget", "OracleNet"]

_GL_NODES, _GL_WEIGHTS = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(24))


def _gauss_legendre(s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Nodes tau = s + r (t - s), shape (B, Q), and weights (Q,) of 24-point Gauss-Legendre on [0, 1].

    sum_q w_q f'(tau_q) = int_0^1 f'(s + r (t - s)) dr = (f(t) - f(s)) / (t - s): a divided difference
    that is smooth in (s, t), equals f'(t) on the diagonal, and is safe under torch.func.jvp.
    """
    r = 0.5 * (_GL_NODES.to(s) + 1)
    return s[:, None] + r[None, :] * (t - s)[:, None], 0.5 * _GL_WEIGHTS.to(s)


class GaussianTarget:
    """Data x1 ~ N(mean, diag(std^2)); I_t ~ N(b m, c(t)^2) per coordinate, c^2 = a^2 + b^2 std^2."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.std = torch.as_tensor(std, dtype=torch.float64).expand_as(self.mean).clone()
        if bool((self.std <= 0).any()):
            raise ValueError(f"std must be positive, got {self.std.tolist()}")

    def _m_var(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.mean.to(x), self.std.to(x) ** 2

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, *self.mean.shape, generator=generator, dtype=torch.float64)
        return (self.mean + self.std * z).float()

    def velocity(self, x: Tensor, t: Tensor, interpolant: Interpolant) -> Tensor:
        """b_t(x) = b' m + (a a' + b b' std^2) / c^2 (x - b m): the Gaussian conditional mean of dI/dt."""
        m, var = self._m_var(x)
        a, b, da, db = (bcast(c, x) for c in interpolant.coeffs(t))
        return db * m + (a * da + b * db * var) / (a**2 + b**2 * var) * (x - b * m)

    def flow_map(self, x: Tensor, s: Tensor, t: Tensor, interpolant: Interpolant) -> Tensor:
        """X_{s,t}(x) = b(t) m + (c(t) / c(s)) (x - b(s) m), the affine solution of the ODE."""
        m, var = self._m_var(x)
        a_s, b_s, _, _ = (bcast(c, x) for c in interpolant.coeffs(s))
        a_t, b_t, _, _ = (bcast(c, x) for c in interpolant.coeffs(t))
        ratio = ((a_t**2 + b_t**2 * var) / (a_s**2 + b_s**2 * var)).sqrt()
        return b_t * m + ratio * (x - b_s * m)

    def map_velocity(self, x: Tensor, s: Tensor, t: Tensor, interpolant: Interpolant) -> Tensor:
        """v*(x, s, t) = (X_{s,t}(x) - x) / (t - s), smooth across s = t (where it equals b_t).

        v* = DD[b](s, t) m + DD[c](s, t) / c(s) (x - b(s) m), with DD the divided difference.
        """
        m, var = self._m_var(x)
        flat = x.reshape(x.shape[0], -1)
        mf, vf = m.reshape(-1), var.reshape(-1)

        def db(tau: Tensor) -> Tensor:  # (B, Q) -> (B, Q, 1)
            return interpolant.coeffs(tau)[3][..., None]

        def dc(tau: Tensor) -> Tensor:  # c' = (a a' + b b' var) / c, (B, Q, D)
            a, b, da, db_ = (c[..., None] for c in interpolant.coeffs(tau))
            return (a * da + b * db_ * vf) / (a**2 + b**2 * vf).sqrt()

        tau, w = _gauss_legendre(s, t)
        ddb = (db(tau) * w[:, None]).sum(1)  # (B, 1)
        ddc = (dc(tau) * w[:, None]).sum(1)  # (B, D)
        a_s, b_s, _, _ = (c[:, None] for c in interpolant.coeffs(s))
        c_s = (a_s**2 + b_s**2 * vf).sqrt()
        v = ddb * mf + ddc / c_s * (flat - b_s * mf)
        return v.reshape(x.shape)


class RotatedGaussian:
    """x1 ~ N(mean, Q diag(std^2) Q^T) for an orthonormal basis Q (columns): a GaussianTarget in
    the coordinates y = x Q, so velocity, flow map and map velocity stay closed forms; e.g. a
    one-component low-rank mixture (``from_lowrank``) at image dimension."""

    def __init__(self, mean: Tensor, std: Tensor, basis: Tensor) -> None:
        self.Q = torch.as_tensor(basis, dtype=torch.float64)
        err = float(
            (self.Q.T @ self.Q - torch.eye(self.Q.shape[1], dtype=torch.float64)).abs().max()
        )
        if self.Q.shape[0] != self.Q.shape[1] or err > 1e-8:
            raise ValueError(f"basis must be square and orthonormal (|Q^T Q - I| = {err:.1e})")
        self.inner = GaussianTarget(torch.as_tensor(mean, dtype=torch.float64) @ self.Q, std)

    @classmethod
    def from_lowrank(cls, m) -> RotatedGaussian:
        """The law of a one-component ``LowRankGaussianMixture``: U diag(lam) U^T + s^2 I."""
        if len(m.weights) != 1:
            raise ValueError(f"need one component, got {len(m.weights)}")
        u = m.U[0].to(torch.float64)
        q = torch.linalg.qr(torch.cat([u, torch.eye(m.dim, dtype=torch.float64)], 1))[0]
        q = torch.cat([u, q[:, m.rank :]], 1)  # U first (exact), then a completion
        var = torch.cat([m.lam[0] + m.s[0] ** 2, (m.s[0] ** 2).expand(m.dim - m.rank)])
        return cls(m.means[0], var.to(torch.float64).sqrt(), q)

    def _apply(self, f, x: Tensor, *args) -> Tensor:
        y = f(x.reshape(x.shape[0], -1) @ self.Q.to(x), *args)
        return (y @ self.Q.to(x).T).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return (self.inner.sample(n, generator).double() @ self.Q.T).float()

    def velocity(self, x: Tensor, t: Tensor, interpolant: Interpolant) -> Tensor:
        return self._apply(self.inner.velocity, x, t, interpolant)

    def flow_map(self, x: Tensor, s: Tensor, t: Tensor, interpolant: Interpolant) -> Tensor:
        return self._apply(self.inner.flow_map, x, s, t, interpolant)

    def map_velocity(self, x: Tensor, s: Tensor, t: Tensor, interpolant: Interpolant) -> Tensor:
        return self._apply(self.inner.map_velocity, x, s, t, interpolant)


class GaussianMixture:
    """x1 ~ sum_k w_k N(mu_k, Sigma_k) in R^d with full covariances.

    Given component k, I_t ~ N(b mu_k, C_k), C_k = a^2 I + b^2 Sigma_k = U_k diag(a^2 + b^2 lam_k) U_k^T
    with Sigma_k = U_k diag(lam_k) U_k^T, so nothing divides by a(t) or b(t).
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor) -> None:
        w = torch.as_tensor(weights, dtype=torch.float64)
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.covs = torch.as_tensor(covs, dtype=torch.float64)
        k, d = self.means.shape
        if w.shape != (k,) or self.covs.shape != (k, d, d) or bool((w <= 0).any()):
            raise ValueError(
                f"need weights (K,) > 0, means (K, d), covs (K, d, d); got {tuple(w.shape)}, "
                f"{tuple(self.means.shape)}, {tuple(self.covs.shape)}"
            )
        self.weights = w / w.sum()
        self.lam, self.U = torch.linalg.eigh(self.covs)  # (K, d), (K, d, d)
        if bool((self.lam <= 0).any()):
            raise ValueError("every covariance must be positive definite")
        self.chol = torch.linalg.cholesky(self.covs)

    @classmethod
    def ring(cls, k: int = 8, radius: float = 4.0, std: float = 0.4) -> GaussianMixture:
        """k equal-weight isotropic Gaussians evenly spaced on a circle (the classic 2D toy)."""
        ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
        means = radius * torch.stack([ang.cos(), ang.sin()], -1)
        return cls(torch.ones(k), means, std**2 * torch.eye(2, dtype=torch.float64).expand(k, 2, 2))

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(
        self, n: int, generator: torch.Generator | None = None, return_labels: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Draw n points (float32) and, if asked, their component labels."""
        ks = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = (self.means[ks] + torch.einsum("nij,nj->ni", self.chol[ks], z)).float()
        return (x, ks) if return_labels else x

    def mean(self) -> Tensor:
        return (self.weights[:, None] * self.means).sum(0)

    def cov(self) -> Tensor:
        second = self.covs + self.means[:, :, None] * self.means[:, None, :]
        m = self.mean()
        return (self.weights[:, None, None] * second).sum(0) - m[:, None] * m[None, :]

    def _parts(self, x: Tensor, t: Tensor, interpolant: Interpolant):
        """Per-component log-density of I_t at x, whitened coordinates and coefficients."""
        xd = x.double()
        a, b, da, db = (c[:, None, None] for c in interpolant.coeffs(t.double()))  # (B, 1, 1)
        y = xd[:, None, :] - b * self.means[None]  # (B, K, d)
        z = torch.einsum("kdj,bkd->bkj", self.U, y)  # U_k^T y
        dvar = a**2 + b**2 * self.lam[None]  # (B, K, d)
        logp = self.weights.log()[None] - 0.5 * (dvar.log() + z**2 / dvar).sum(-1)
        logp = logp - 0.5 * self.dim * math.log(2 * math.pi)
        return logp, z, dvar, (a, b, da, db)

    def log_prob(self, x: Tensor, t: Tensor, interpolant: Interpolant) -> Tensor:
        """log p_t(x), the density of I_t (t = 1 gives the data density)."""
        return torch.logsumexp(self._parts(x, t, interpolant)[0], -1).to(x.dtype)

    def velocity(self, x: Tensor, t: Tensor, interpolant: Interpolant) -> Tensor:
        """b_t(x) = sum_k p(k | x) [b' mu_k + U_k diag((a a' + b b' lam) / (a^2 + b^2 lam)) U_k^T (x - b mu_k)].

        p(k | x) is a softmax of the component log-densities (log-sum-exp stable at t = 0 and 1).
        """
        logp, z, dvar, (a, b, da, db) = self._parts(x, t, interpolant)
        post = torch.softmax(logp, -1)  # (B, K)
        gain = (a * da + b * db * self.lam[None]) / dvar
        vk = db * self.means[None] + torch.einsum("kdj,bkj->bkd", self.U, gain * z)
        return (post[..., None] * vk).sum(1).to(x.dtype)

    def flow_map(
        self, x: Tensor, s: Tensor, t: Tensor, interpolant: Interpolant, rtol: float = 1e-8
    ) -> Tensor:
        """X_{s,t}(x) by an adaptive dopri5 solve of the exact velocity in float64 (rtol = atol)."""

        def vel(y: Tensor, tau: Tensor) -> Tensor:
            return self.velocity(y, tau, interpolant)

        out, _ = solve(vel, x.double(), s.double(), t.double(), "dopri5", rtol=rtol, atol=rtol)
        return out.to(x.dtype)


class OracleNet(nn.Module):
    """net(x, s, t) = v*(x, s, t) + eps * g(x, s, t) for a GaussianTarget or RotatedGaussian
    (anything with ``map_velocity``): exact at eps = 0.

    Wrapped in a FlowMap it is the exact flow map; ``eps`` is a perturbation parameter for checking
    that a loss is minimal (zero gradient, larger value when perturbed) at the exact solution.
    """

    def __init__(self, target, interpolant: Interpolant, eps: float = 0.0) -> None:
        super().__init__()
        self.target, self.interpolant = target, interpolant
        self.eps = nn.Parameter(torch.tensor(float(eps)))

    def forward(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        g = torch.tanh(x) * bcast(1 + 0.5 * s + t, x) + bcast(torch.cos(3 * t), x)
        return self.target.map_velocity(x, s, t, self.interpolant) + self.eps * g
