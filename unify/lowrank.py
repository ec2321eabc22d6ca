"""A Gaussian mixture with low-rank-plus-isotropic covariances, exact at image dimensions.

x1 ~ sum_k w_k N(m_k, S_k), S_k = U_k diag(lam_k) U_k^T + s_k^2 I, U_k orthonormal (d, r). Given
component k, I_t = a x0 + b x1 ~ N(b m_k, C_k) with

    C_k = a^2 I + b^2 S_k = alpha_k I + U_k diag(beta_k) U_k^T,  alpha_k = a^2 + b^2 s_k^2,
                                                                 beta_k = b^2 lam_k,

and Cov(dI/dt, I_t | k) = gamma_k I + U_k diag(delta_k) U_k^T, gamma_k = a a' + b b' s_k^2,
delta_k = b b' lam_k. Woodbury, (A + U B U^T)^-1 = A^-1 - A^-1 U (B^-1 + U^T A^-1 U)^-1 U^T A^-1,
with A = alpha I and U^T U = I gives C_k^-1 = I / alpha - U diag(beta / (alpha (alpha + beta))) U^T,
so the inverse, the log-determinant and the conditional mean of dI/dt cost O(d r) per point and
component; no d x d matrix is formed and nothing divides by a(t) or b(t): the only divisor is
alpha = a^2 + b^2 s^2 >= min(1, s^2) (a^2 + b^2) > 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unify.exact import GaussianMixture
from unify.interpolant import Interpolant
from unify.ode import solve

_F64 = torch.float64


def _as64(x: Tensor) -> Tensor:
    """A float64 CPU copy, detached from any graph."""
    return torch.as_tensor(x, dtype=_F64).detach().cpu().clone()


def _check(w: Tensor, means: Tensor, U: Tensor, lam: Tensor, s: Tensor, tol: float) -> None:
    """Shapes (K,), (K, d), (K, d, r), (K, r), (K,); w > 0, lam >= 0, s > 0, U_k^T U_k = I."""
    k, d = means.shape if means.ndim == 2 else (-1, -1)
    r = U.shape[-1] if U.ndim == 3 else -1
    shapes = (w.shape, U.shape, lam.shape, s.shape)
    if k < 1 or shapes != ((k,), (k, d, r), (k, r), (k,)) or not 0 <= r <= d:
        raise ValueError(
            "need weights (K,), means (K, d), U (K, d, r), lam (K, r), s (K,) with r <= d; got "
            + ", ".join(str(tuple(a.shape)) for a in (w, means, U, lam, s))
        )
    if bool((w <= 0).any()) or bool((lam < 0).any()) or bool((s <= 0).any()):
        raise ValueError("need weights > 0, lam >= 0 and s > 0")
    gram = U.transpose(1, 2) @ U
    err = float((gram - torch.eye(r, dtype=_F64)).abs().max()) if r else 0.0
    if err > tol:
        raise ValueError(f"U_k must have orthonormal columns: max |U^T U - I| = {err:.2e} > {tol}")


class LowRankGaussianMixture:
    """x1 ~ sum_k w_k N(m_k, U_k diag(lam_k) U_k^T + s_k^2 I): exact velocity in O(K d r) per point.

    The interface of :class:`unify.exact.GaussianMixture` (``velocity``, ``log_prob``,
    ``flow_map``, ``sample``, ``mean``, ``cov``, ``dim``), so ``ExactMapTeacher`` and the metrics
    take it as is. States may be flat ``(B, d)`` or shaped ``(B, *shape)`` (e.g. images
    ``(B, 3, H, W)`` with d = 3 H W in that flattened order); ``sample`` returns ``(n, *shape)``.
    Parameters are kept in float64 (treat them as read-only: copies per device and dtype are
    cached); ``velocity`` and ``log_prob`` compute in ``compute_dtype`` (float64 by default, float32
    is ~3x faster on CPU) and return the input's dtype; ``flow_map`` always solves in float64.
    """

    def __init__(
        self,
        weights: Tensor,
        means: Tensor,
        U: Tensor,
        lam: Tensor,
        s: Tensor,
        shape: tuple[int, ...] | None = None,
        compute_dtype: torch.dtype = _F64,
        orth_tol: float = 1e-8,
    ) -> None:
        w, self.means, self.U, self.lam, self.s = (_as64(a) for a in (weights, means, U, lam, s))
        _check(w, self.means, self.U, self.lam, self.s, orth_tol)
        self.weights = w / w.sum()
        self.shape = (self.dim,) if shape is None else tuple(int(n) for n in shape)
        if math.prod(self.shape) != self.dim:
            raise ValueError(f"shape {self.shape} does not hold d = {self.dim} values")
        self.compute_dtype = compute_dtype
        self._cache: dict[tuple[torch.device, torch.dtype], dict[str, Tensor]] = {}

    @property
    def dim(self) -> int:
        """d, the length of a flattened state."""
        return self.means.shape[1]

    @property
    def rank(self) -> int:
        """r, the number of principal directions per component."""
        return self.U.shape[2]

    def _params(self, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        """Parameters on ``device`` in ``dtype``, built once per (device, dtype)."""
        key = (device, dtype)
        if key not in self._cache:
            names = ("weights", "means", "U", "lam", "s")
            p = {n: getattr(self, n).to(device=device, dtype=dtype) for n in names}
            p["logw"] = p["weights"].log()
            p["Ut"] = p["U"].transpose(1, 2).reshape(-1, self.dim)  # (K r, d): stacked U_k^T
            self._cache[key] = p
        return self._cache[key]

    def _pass1(
        self, x: Tensor, t: Tensor, interpolant: Interpolant, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, ...], dict[str, Tensor]]:
        """log w_k N(x; b m_k, C_k) (B, K) and z_k = U_k^T (x - b m_k) (B, K, r).

        Mahalanobis by Woodbury: y^T C^-1 y = (|y|^2 - |z|^2) / alpha + sum_j z_j^2 / (alpha + beta_j)
        (|y|^2 - |z|^2 = |(I - U U^T) y|^2); log det C = (d - r) log alpha + sum_j log(alpha + beta_j).
        """
        p = self._params(x.device, dtype)
        xf = x.reshape(x.shape[0], self.dim).to(dtype)
        a, b, da, db = (c[:, None] for c in interpolant.coeffs(t.to(dtype)))  # (B, 1)
        alpha = a**2 + b**2 * p["s"] ** 2  # (B, K)
        beta = b[..., None] * b[..., None] * p["lam"]  # (B, K, r)
        zs, logp = [], []
        for k in range(self.means.shape[0]):
            y = xf - b * p["means"][k]  # (B, d), formed explicitly: no cancellation in |y|^2
            z = y @ p["U"][k]  # (B, r)
            perp = ((y * y).sum(-1) - (z * z).sum(-1)).clamp_min(0)
            ak, bk = alpha[:, k], beta[:, k]
            maha = perp / ak + (z * z / (ak[:, None] + bk)).sum(-1)
            logdet = (self.dim - self.rank) * ak.log() + (ak[:, None] + bk).log().sum(-1)
            logp.append(p["logw"][k] - 0.5 * (maha + logdet + self.dim * math.log(2 * math.pi)))
            zs.append(z)
        return xf, torch.stack(logp, 1), torch.stack(zs, 1), (a, b, da, db, alpha, beta), p

    def log_prob(self, x: Tensor, t: Tensor, interpolant: Interpolant) -> Tensor:
        """log p_t(x) = logsumexp_k [log w_k + log N(x; b m_k, C_k)] (t = 1: the data density)."""
        logp = self._pass1(x, t, interpolant, self.compute_dtype)[1]
        return torch.logsumexp(logp, -1).to(x.dtype)

    def velocity(self, x: Tensor, t: Tensor, interpolant: Interpolant) -> Tensor:
        """b_t(x) = E[dI_t/dt | I_t = x], computed in ``compute_dtype`` (see ``_velocity``)."""
        return self._velocity(x, t, interpolant, self.compute_dtype)

    def _velocity(
        self, x: Tensor, t: Tensor, interpolant: Interpolant, dtype: torch.dtype
    ) -> Tensor:
        """b_t(x) = sum_k p(k | x) [b' m_k + G_k (x - b m_k)], p(k | x) = softmax_k of ``_pass1``.

        G_k = Cov(dI/dt, I_t | k) C_k^-1 = (gamma / alpha) I + U_k diag(c_k) U_k^T with, by Woodbury,
        c = (delta alpha - gamma beta) / (alpha (alpha + beta)) = a b lam (a b' - a' b) / (alpha
        (alpha + beta)) (no cancellation). With g_k = gamma_k / alpha_k and z_k = U_k^T (x - b m_k),
        b_t(x) = x sum_k p_k g_k + sum_k p_k (b' - b g_k) m_k + sum_k U_k (p_k c_k z_k); the last
        sum is one (B, K r) x (K r, d) product with the stacked U_k^T.
        """
        xf, logp, z, (a, b, da, db, alpha, beta), p = self._pass1(x, t, interpolant, dtype)
        post = torch.softmax(logp, -1)  # (B, K)
        g = (a * da + b * db * p["s"] ** 2) / alpha  # gamma / alpha, (B, K)
        c = (
            (a * b * (a * db - da * b))[..., None]
            * p["lam"]
            / (alpha[..., None] * (alpha[..., None] + beta))
        )
        v = (post * g).sum(-1, keepdim=True) * xf + (post * (db - b * g)) @ p["means"]
        v = v + (post[..., None] * c * z).flatten(1) @ p["Ut"]
        return v.reshape(x.shape).to(x.dtype)

    def flow_map(
        self, x: Tensor, s: Tensor, t: Tensor, interpolant: Interpolant, rtol: float = 1e-8
    ) -> Tensor:
        """X_{s,t}(x) by an adaptive dopri5 solve of the exact velocity in float64 (rtol = atol)."""

        def vel(y: Tensor, tau: Tensor) -> Tensor:
            return self._velocity(y, tau, interpolant, _F64)

        out, _ = solve(vel, x.double(), s.double(), t.double(), "dopri5", rtol=rtol, atol=rtol)
        return out.to(x.dtype)

    def sample(
        self, n: int, generator: torch.Generator | None = None, return_labels: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """n draws (float32, shape (n, *shape)): x = m_k + U_k (sqrt(lam_k) e) + s_k e', e, e' ~ N(0, I)."""
        ks = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        e = torch.randn(n, self.rank, generator=generator, dtype=_F64)
        x = torch.randn(n, self.dim, generator=generator, dtype=_F64)
        for k in range(self.means.shape[0]):
            i = (ks == k).nonzero()[:, 0]
            x[i] = self.means[k] + (e[i] * self.lam[k].sqrt()) @ self.U[k].T + self.s[k] * x[i]
        x = x.float().reshape(n, *self.shape)
        return (x, ks) if return_labels else x

    def mean(self) -> Tensor:
        """E[x1] = sum_k w_k m_k, (d,)."""
        return self.weights @ self.means

    def cov_factor(self) -> tuple[float, Tensor]:
        """(sigma2, F) with Cov[x1] = sigma2 I + F F^T, F of shape (d, K (r + 1)).

        Law of total covariance: sum_k w_k S_k + sum_k w_k (m_k - m)(m_k - m)^T, so sigma2 =
        sum_k w_k s_k^2 and F's columns are sqrt(w_k lam_kj) U_k[:, j] and sqrt(w_k) (m_k - m).
        """
        w = self.weights
        within = (self.U * (w[:, None] * self.lam).sqrt()[:, None, :]).permute(1, 0, 2)
        between = (w.sqrt()[:, None] * (self.means - self.mean())).T
        return float(w @ self.s**2), torch.cat([within.reshape(self.dim, -1), between], 1)

    def cov(self) -> Tensor:
        """Cov[x1] = sigma2 I + F F^T as a dense (d, d) float64 matrix (see ``cov_factor``)."""
        sigma2, f = self.cov_factor()
        return sigma2 * torch.eye(self.dim, dtype=_F64) + f @ f.T

    def component_covs(self) -> Tensor:
        """S_k = U_k diag(lam_k) U_k^T + s_k^2 I, dense (K, d, d) (small d: tests, ``to_full``)."""
        iso = self.s[:, None, None] ** 2 * torch.eye(self.dim, dtype=_F64)
        return (self.U * self.lam[:, None, :]) @ self.U.transpose(1, 2) + iso

    def to_full(self) -> GaussianMixture:
        """The same law as a full-covariance :class:`unify.exact.GaussianMixture` (small d only)."""
        return GaussianMixture(self.weights, self.means, self.component_covs())
