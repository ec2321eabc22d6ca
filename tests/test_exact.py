"""Exact oracles: the Gaussian target (closed-form map) and the Gaussian mixture (exact velocity).

Gaussian target, per coordinate: I_t ~ N(b m, c^2), c^2 = a^2 + b^2 std^2, and the flow map is the
affine X_{s,t}(x) = b(t) m + c(t) / c(s) (x - b(s) m). Its checks are identities that hold to
rounding (semigroup, Lagrangian and Eulerian residuals, X_{0,1} = m + std x0) plus one Monte-Carlo
check of the transported law. The mixture's velocity and density are checked against an
independent closed form (linear solves and Cholesky instead of the class's eigh route), against an
independent self-normalised importance-sampling estimate of E[dI_t/dt | I_t = x], and its ODE
against the moments and component masses of the mixture. Monte-Carlo tolerances are stated in
standard errors (SE).
"""

import itertools
import math

import pytest
import torch
from torch.func import jvp

from unify import FlowMap, Linear, Trig, map_ds, map_dt
from unify.exact import GaussianMixture, GaussianTarget, OracleNet

F64 = torch.float64
INTERPOLANTS = [Linear(), Trig()]
IDS = ["linear", "trig"]
PER_INTERP = pytest.mark.parametrize("interp", INTERPOLANTS, ids=IDS)
MEAN, STD = [1.0, -2.0], [0.5, 1.5]
# Closed-form identities: a few dozen float64 operations on O(1) numbers (the map's gain c(t)/c(s)
# is at most 1 / 0.5 = 2 here), so 1e-12 leaves ~100x headroom over rounding.
EXACT = {"rtol": 1e-12, "atol": 1e-12}
# The OracleNet route goes through 24-point Gauss-Legendre divided differences; c(t) is analytic
# with its nearest complex branch point >= 0.35 from [0, 1] for these std, so the quadrature error
# is <~1e-14 (Bernstein-ellipse bound rho^-48, rho >= 2); 1e-10 leaves 1e4x headroom.
ORACLE = {"rtol": 1e-10, "atol": 1e-10}
# Monte-Carlo comparisons: |estimate - truth| <= Z * SE. Z = 4 gives a two-sided false-alarm rate of
# 6e-5 per comparison for a Gaussian estimator (seeds are fixed, so runs are deterministic anyway).
Z = 4.0


def _target() -> GaussianTarget:
    return GaussianTarget(torch.tensor(MEAN), torch.tensor(STD))


def _rand(b: int, seed: int, d: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(b, d, generator=g, dtype=F64)
    s, u, t = (torch.rand(b, generator=g, dtype=F64) for _ in range(3))
    return x, s, u, t


def _oracle_fm(target: GaussianTarget, interp, eps: float = 0.0) -> FlowMap:
    return FlowMap(OracleNet(target, interp, eps=eps)).requires_grad_(False)


# --------------------------------------------------------------------------- Gaussian target


@PER_INTERP
def test_gaussian_x01_is_the_affine_transport(interp):
    """c(0) = 1 and c(1) = std, so X_{0,1}(x0) = m + std * x0: the optimal map N(0, I) -> target."""
    tg = _target()
    x, _, _, _ = _rand(256, 0)
    b = x.shape[0]
    out = tg.flow_map(x, torch.zeros(b, dtype=F64), torch.ones(b, dtype=F64), interp)
    torch.testing.assert_close(out, tg.mean + tg.std * x, **EXACT)
    back = tg.flow_map(out, torch.ones(b, dtype=F64), torch.zeros(b, dtype=F64), interp)
    torch.testing.assert_close(back, x, **EXACT)


@PER_INTERP
def test_gaussian_velocity_is_conditional_expectation(interp):
    """denoise(x, b_t(x)) must be the textbook Gaussian posterior mean E[x1 | I_t = x]."""
    tg = _target()
    x, _, _, t = _rand(256, 1)
    t = t.clamp(1e-3, 1 - 1e-3)
    a, b, _, _ = (c[:, None] for c in interp.coeffs(t))
    m, var = tg.mean, tg.std**2
    post_mean = m + b * var / (a**2 + b**2 * var) * (x - b * m)  # Cov(x1, I) / Var(I) (x - E I)
    torch.testing.assert_close(interp.denoise(x, tg.velocity(x, t, interp), t), post_mean, **EXACT)


@PER_INTERP
def test_gaussian_semigroup(interp):
    """X_{u,t}(X_{s,u}(x)) = X_{s,t}(x) for random s, u, t in any order (closed form and OracleNet)."""
    tg = _target()
    x, s, u, t = _rand(512, 2)
    lhs = tg.flow_map(tg.flow_map(x, s, u, interp), u, t, interp)
    torch.testing.assert_close(lhs, tg.flow_map(x, s, t, interp), **EXACT)
    fm = _oracle_fm(tg, interp)
    torch.testing.assert_close(fm(fm(x, s, u), u, t), fm(x, s, t), **ORACLE)
    torch.testing.assert_close(fm(x, s, t), tg.flow_map(x, s, t, interp), **ORACLE)
    # the check has teeth: a perturbed net (eps = 0.05) breaks the semigroup visibly
    bad = _oracle_fm(tg, interp, eps=0.05)
    assert float((bad(bad(x, s, u), u, t) - bad(x, s, t)).abs().max()) > 1e-3


@PER_INTERP
def test_gaussian_lagrangian_residual(interp):
    """d/dt X_{s,t}(x) = b_t(X_{s,t}(x)): closed form by jvp, and FlowMap(OracleNet) by map_dt."""
    tg = _target()
    x, s, _, t = _rand(512, 3)
    zx, zs = torch.zeros_like(x), torch.zeros_like(s)
    X, dX = jvp(lambda tt: tg.flow_map(x, s, tt, interp), (t,), (torch.ones_like(t),))
    torch.testing.assert_close(dX, tg.velocity(X, t, interp), **EXACT)
    fm = _oracle_fm(tg, interp)
    X2, dX2 = map_dt(fm, x, s, t)
    torch.testing.assert_close(X2, X, **ORACLE)
    torch.testing.assert_close(dX2, dX, **ORACLE)
    # the same through a jvp of (x, s, t) -> X with tangent (0, 0, 1), i.e. what map_dt claims to do
    _, dX3 = jvp(
        lambda a, b, c: tg.flow_map(a, b, c, interp), (x, s, t), (zx, zs, torch.ones_like(t))
    )
    torch.testing.assert_close(dX3, dX, **EXACT)
    # a perturbed net does not satisfy it (so the residual check can fail)
    X4, dX4 = map_dt(_oracle_fm(tg, interp, eps=0.05), x, s, t)
    assert float((dX4 - tg.velocity(X4, t, interp)).abs().max()) > 1e-3


@PER_INTERP
def test_gaussian_eulerian_residual(interp):
    """d/ds X_{s,t}(x) + grad X_{s,t}(x) b_s(x) = 0: closed form by jvp, FlowMap(OracleNet) by map_ds."""
    tg = _target()
    x, s, _, t = _rand(512, 4)
    bs = tg.velocity(x, s, interp)
    tangents = (bs, torch.ones_like(s), torch.zeros_like(t))
    X, res = jvp(lambda a, b, c: tg.flow_map(a, b, c, interp), (x, s, t), tangents)
    torch.testing.assert_close(res, torch.zeros_like(res), **EXACT)
    fm = _oracle_fm(tg, interp)
    X2, res2 = map_ds(fm, x, s, t, bs)
    torch.testing.assert_close(X2, X, **ORACLE)
    torch.testing.assert_close(res2, torch.zeros_like(res2), **ORACLE)
    # with a tangent that is not the velocity, map_ds must equal the closed-form directional derivative
    w = torch.randn_like(x)
    _, d_exact = jvp(
        lambda a, b, c: tg.flow_map(a, b, c, interp), (x, s, t), (w, torch.ones_like(s), 0 * t)
    )
    torch.testing.assert_close(map_ds(fm, x, s, t, w)[1], d_exact, **ORACLE)
    assert float(d_exact.abs().max()) > 1e-2  # non-trivial, so the zero above is not vacuous
    _, res4 = map_ds(_oracle_fm(tg, interp, eps=0.05), x, s, t, bs)
    assert float(res4.abs().max()) > 1e-3


@PER_INTERP
def test_gaussian_oracle_net_is_exact(interp):
    """OracleNet(eps=0) in a FlowMap is target.flow_map, its velocity target.velocity, including s = t."""
    tg = _target()
    x, s, _, t = _rand(512, 5)
    t[:32] = s[:32]  # some points exactly on the diagonal
    fm = _oracle_fm(tg, interp)
    torch.testing.assert_close(fm(x, s, t), tg.flow_map(x, s, t, interp), **ORACLE)
    torch.testing.assert_close(fm.velocity(x, t), tg.velocity(x, t, interp), **ORACLE)
    torch.testing.assert_close(
        tg.map_velocity(x, t, t, interp), tg.velocity(x, t, interp), **ORACLE
    )
    # map_velocity is continuous across the diagonal: |t - s| = 1e-7 moves it by O(1e-7)
    # (|d/dt v*| <= ~20 for these |x| <= 8, so the shift is <= 2e-6; 1e-5 allows for that)
    near = tg.map_velocity(x, s, s + 1e-7, interp)
    torch.testing.assert_close(near, tg.velocity(x, s, interp), rtol=0, atol=1e-5)
    # eps != 0 changes the map off the diagonal (but never on it: X_{s,s} = id by construction)
    bad = _oracle_fm(tg, interp, eps=0.1)
    assert float((bad(x, s, t) - tg.flow_map(x, s, t, interp))[32:].abs().max()) > 1e-3
    assert torch.equal(bad(x[:32], s[:32], s[:32]), x[:32])


@PER_INTERP
def test_gaussian_pushforward_moments(interp):
    """X_{0,1} pushes N(0, I) (n = 200k) to N(mean, diag std^2): mean and variance within 4 SE."""
    tg = _target()
    n = 200_000
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    ones = torch.ones(n, dtype=F64)
    # closed form (OracleNet == flow_map pointwise is checked above; 200k GL evaluations are slow)
    y = tg.flow_map(x0, 0 * ones, ones, interp)
    m, v = tg.mean, tg.std**2
    se_mean = (v / n).sqrt()  # SE of a sample mean
    se_var = v * math.sqrt(2 / (n - 1))  # SE of a Gaussian sample variance
    assert bool(((y.mean(0) - m).abs() <= Z * se_mean).all()), (y.mean(0), m)
    assert bool(((y.var(0) - v).abs() <= Z * se_var).all()), (y.var(0), v)
    corr = torch.corrcoef(y.T)[0, 1]
    assert abs(float(corr)) <= Z / math.sqrt(n)  # SE of a null correlation is 1 / sqrt(n)


EDGE = [0.0, 1e-6, 1 - 1e-6, 1.0]


@PER_INTERP
def test_gaussian_edge_times_are_finite(interp):
    """s, t in {0, 1e-6, 1 - 1e-6, 1} (all 16 pairs): map, velocity and both jvps finite."""
    tg = _target()
    pairs = torch.tensor(list(itertools.product(EDGE, EDGE)), dtype=F64)
    s, t = pairs[:, 0].contiguous(), pairs[:, 1].contiguous()
    x = torch.randn(s.shape[0], 2, generator=torch.Generator().manual_seed(7), dtype=F64)
    fm = _oracle_fm(tg, interp)
    outs = [
        tg.flow_map(x, s, t, interp),
        tg.velocity(x, t, interp),
        tg.map_velocity(x, s, t, interp),
        fm.velocity(x, s),
        *map_dt(fm, x, s, t),
        *map_ds(fm, x, s, t, tg.velocity(x, s, interp)),
    ]
    for o in outs:
        assert bool(torch.isfinite(o).all())
    torch.testing.assert_close(fm(x, s, t), tg.flow_map(x, s, t, interp), **ORACLE)
    # continuity at the ends: the 1e-6 shifts move the map by O(1e-6)
    far = tg.flow_map(x, 0 * s + 1e-6, 0 * t + 1 - 1e-6, interp)
    torch.testing.assert_close(far, tg.flow_map(x, 0 * s, 0 * t + 1, interp), rtol=0, atol=1e-4)


def test_gaussian_oracle_on_image_shaped_data():
    """Per-pixel Gaussian data (C, H, W): OracleNet's flatten/reshape and the broadcasting of
    per-sample times give the closed-form map and velocity on (B, C, H, W) states."""
    g = torch.Generator().manual_seed(15)
    tg = GaussianTarget(torch.randn(2, 3, 3, generator=g), 0.3 + torch.rand(2, 3, 3, generator=g))
    x = torch.randn(8, 2, 3, 3, generator=g, dtype=F64)
    s, t = torch.rand(8, generator=g, dtype=F64), torch.rand(8, generator=g, dtype=F64)
    for interp in INTERPOLANTS:
        fm = _oracle_fm(tg, interp)
        torch.testing.assert_close(fm(x, s, t), tg.flow_map(x, s, t, interp), **ORACLE)
        torch.testing.assert_close(fm.velocity(x, t), tg.velocity(x, t, interp), **ORACLE)
        # pixel (c, i, j) only sees its own mean and std: compare one pixel with a 1-D target
        one = GaussianTarget(tg.mean[1, 2, 0].reshape(1), tg.std[1, 2, 0].reshape(1))
        torch.testing.assert_close(
            tg.flow_map(x, s, t, interp)[:, 1, 2, 0],
            one.flow_map(x[:, 1, 2, 0, None], s, t, interp)[:, 0],
            **EXACT,
        )


def test_gaussian_target_rejects_bad_std():
    with pytest.raises(ValueError):
        GaussianTarget(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError):
        GaussianTarget(torch.tensor([0.0]), torch.tensor([-1.0]))


# --------------------------------------------------------------------------- Gaussian mixture

W3 = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
MU3 = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -3.0]], dtype=F64)
COV3 = torch.tensor(
    [[[1.0, 0.6], [0.6, 0.8]], [[0.3, -0.2], [-0.2, 0.5]], [[0.5, 0.1], [0.1, 0.2]]], dtype=F64
)  # all non-diagonal, eigenvalues in [0.17, 1.51]


def _gm3() -> GaussianMixture:
    return GaussianMixture(W3, MU3, COV3)


def _draw(w: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor, n: int, g: torch.Generator):
    """float64 mixture samples drawn here, independently of GaussianMixture.sample."""
    k = torch.multinomial(w, n, replacement=True, generator=g)
    chol = torch.linalg.cholesky(cov)
    return mu[k] + (chol[k] @ torch.randn(n, mu.shape[1], 1, generator=g, dtype=F64))[..., 0]


def _log_comp(y: torch.Tensor, w: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor):
    """log w_k N(y; mu_k, cov_k) by Cholesky (not eigh): y (..., d), mu (..., K, d), cov
    (..., K, d, d), leading dimensions broadcast; returns (..., K)."""
    chol = torch.linalg.cholesky(cov)
    inv = torch.linalg.inv(chol)  # L_k^{-1}, so |L_k^{-1} (y - mu_k)|^2 is the Mahalanobis form
    z = torch.einsum("...kij,...kj->...ki", inv, y[..., None, :] - mu)
    logdet = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    d = mu.shape[-1]
    return w.log() - 0.5 * (z.pow(2).sum(-1) + logdet + d * math.log(2 * math.pi))


@PER_INTERP
def test_mixture_one_component_equals_gaussian_target(interp):
    tg = _target()
    gm = GaussianMixture(torch.ones(1), tg.mean[None], torch.diag(tg.std**2)[None])
    x, s, _, t = _rand(64, 8)
    # same formula through eigh of a diagonal matrix: agreement to rounding
    torch.testing.assert_close(gm.velocity(x, t, interp), tg.velocity(x, t, interp), **EXACT)
    # float32 inputs come back float32 (computed in float64 inside)
    v32 = gm.velocity(x.float(), t.float(), interp)
    assert v32.dtype == torch.float32  # and float32 rounding of x, t (6e-8 relative) moves v < 1e-5
    torch.testing.assert_close(v32.double(), tg.velocity(x, t, interp), rtol=1e-5, atol=1e-5)
    # the flow map is a dopri5 solve at rtol = atol = 1e-8: its global error is a small multiple of
    # the tolerance (measured <= 8e-9 here), so 1e-6 is 100x headroom and 1e5x below O(0.1) bugs
    torch.testing.assert_close(
        gm.flow_map(x, s, t, interp), tg.flow_map(x, s, t, interp), rtol=1e-6, atol=1e-6
    )


def _random_mixture(k: int, d: int, seed: int):
    """Random full covariances A A^T + 0.3 I (eigenvectors generic: in d = 3 the eigh basis U is
    not symmetric, so a U vs U^T mix-up cannot hide as it can for 2x2 reflections)."""
    g = torch.Generator().manual_seed(seed)
    w = 0.5 + torch.rand(k, generator=g, dtype=F64)
    mu = 2 * torch.randn(k, d, generator=g, dtype=F64)
    a = torch.randn(k, d, d, generator=g, dtype=F64)
    return w / w.sum(), mu, a @ a.transpose(1, 2) + 0.3 * torch.eye(d, dtype=F64)


@PER_INTERP
@pytest.mark.parametrize(
    "kd", [(1, 2), (3, 2), (1, 3), (4, 3)], ids=lambda kd: f"K{kd[0]}-d{kd[1]}"
)
def test_mixture_velocity_and_log_prob_closed_form(interp, kd):
    """Full covariances, by linear solves and Cholesky instead of the class's eigh route:

    b_t(x) = sum_k p(k | x) [b' mu_k + (a a' I + b b' S_k)(a^2 I + b^2 S_k)^{-1} (x - b mu_k)],
    p(k | x) ∝ w_k N(x; b mu_k, a^2 I + b^2 S_k); this is E[dI/dt | I_t = x] of jointly Gaussian
    (I_t, dI_t/dt) given the component, averaged over the component posterior.
    """
    k, d = kd
    w, mu, cov = (W3, MU3, COV3) if kd == (3, 2) else _random_mixture(k, d, seed=20 + k + d)
    gm = GaussianMixture(w, mu, cov)
    g = torch.Generator().manual_seed(9)
    x = 3 * torch.randn(130, d, generator=g, dtype=F64)
    t = torch.cat([torch.rand(128, generator=g, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)])
    a, b, da, db = (c[:, None, None, None] for c in interp.coeffs(t))  # (B, 1, 1, 1)
    eye = torch.eye(d, dtype=F64)
    cross = a * da * eye + b * db * cov  # (B, K, d, d): Cov(dI/dt, I_t | k)
    var = a**2 * eye + b**2 * cov  # Cov(I_t | k)
    y = (x[:, None, :] - b[..., 0] * mu)[..., None]  # (B, K, d, 1)
    vk = db[..., 0] * mu + (cross @ torch.linalg.solve(var, y))[..., 0]
    logc = _log_comp(x, w, b[..., 0] * mu, var)  # (B, K)
    ref = (torch.softmax(logc, -1)[..., None] * vk).sum(1)
    # condition numbers of a^2 I + b^2 S are <= ~1e2 here: 1e-12 is still ~100x rounding
    torch.testing.assert_close(gm.velocity(x, t, interp), ref, **EXACT)
    torch.testing.assert_close(gm.log_prob(x, t, interp), torch.logsumexp(logc, -1), **EXACT)


def _mc_velocity(interp, t: float, w, mu, cov, x1s, x0s, g):
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
    xq = a * torch.randn(q, 2, generator=g, dtype=F64) + b * _draw(w, mu, cov, q, g)
    out = {}
    if t <= 0.5:
        logw = -0.5 * ((xq[:, None, :] - b * x1s[None]) ** 2).sum(-1) / a**2
        wn = torch.softmax(logw, -1)
        m1 = wn @ x1s
        se1 = ((wn**2)[..., None] * (x1s[None] - m1[:, None]) ** 2).sum(1).sqrt()
        coef = db - da * b / a  # v = (a'/a) x + (b' - a' b / a) E[x1|x]
        out["x1"] = (da / a * xq + coef * m1, abs(coef) * se1, 1 / (wn**2).sum(-1), xq, tt)
    if t >= 0.5:
        logw = torch.logsumexp(_log_comp((xq[:, None, :] - a * x0s[None]) / b, w, mu, cov), -1)
        wn = torch.softmax(logw, -1)
        m0 = wn @ x0s
        se0 = ((wn**2)[..., None] * (x0s[None] - m0[:, None]) ** 2).sum(1).sqrt()
        coef = da - db * a / b  # v = (b'/b) x + (a' - b' a / b) E[x0|x]
        out["x0"] = (db / b * xq + coef * m0, abs(coef) * se0, 1 / (wn**2).sum(-1), xq, tt)
    return out


@PER_INTERP
def test_mixture_velocity_matches_monte_carlo(interp):
    """b_t(x) = E[dI_t/dt | I_t = x] against an independent SNIS estimate (M = 200k draws).

    Tolerance: 5 SE per coordinate, where SE is the self-normalised delta-method standard error
    (it already accounts for the effective sample size, ESS). We also demand ESS >= 1000 so the SE
    estimate itself is reliable and SE <= 0.02 so a real error of O(0.1) cannot hide. 5 rather
    than 4 SE because the 72 comparisons per interpolant (6 estimators x 6 queries x 2 coordinates)
    share the same M draws and SNIS has an O(1/ESS) bias. Measured: ESS >= 23k, SE <= 0.0094,
    max |error| / SE = 2.3.
    """
    gm = _gm3()
    g = torch.Generator().manual_seed(10)
    m = 200_000
    x1s = _draw(W3, MU3, COV3, m, g)
    x0s = torch.randn(m, 2, generator=g, dtype=F64)
    n_checked = 0
    for t in [0.02, 0.25, 0.5, 0.75, 0.98]:
        for name, (est, se, ess, xq, tt) in _mc_velocity(
            interp, t, W3, MU3, COV3, x1s, x0s, g
        ).items():
            assert float(ess.min()) >= 1000, (t, name, ess)
            assert float(se.max()) <= 0.02, (t, name, se)
            err = (est - gm.velocity(xq, tt, interp)).abs()
            assert bool((err <= 5 * se).all()), (t, name, err / se)
            n_checked += 1
    assert n_checked == 6  # x1-weighting at t <= 0.5, x0-weighting at t >= 0.5 (both at 0.5)


def test_mixture_log_prob_matches_direct_density():
    gm = _gm3()
    interp = Linear()
    g = torch.Generator().manual_seed(11)
    x = 3 * torch.randn(500, 2, generator=g, dtype=F64)
    for tv in [1.0, 0.3, 0.0]:
        t = torch.full((500,), tv, dtype=F64)
        a, b = 1 - tv, tv
        # I_t | k ~ N(b mu_k, a^2 I + b^2 S_k): computed by Cholesky, independently of the eigh route
        cov_t = a**2 * torch.eye(2, dtype=F64) + b**2 * COV3
        ref = torch.logsumexp(_log_comp(x, W3, b * MU3, cov_t), -1)
        torch.testing.assert_close(gm.log_prob(x, t, interp), ref, **EXACT)
    # at t = 0 it is the standard normal; at t = 1 and 0.5 it integrates to one: 2D Riemann sum on
    # a 201^2 grid over [-10, 10]^2, spacing h = 0.1 <= 0.25 of the smallest component std (0.41).
    # For Gaussians the Riemann sum is spectrally accurate (aliasing error ~exp(-2 pi^2 std^2 / h^2)
    # < 1e-100) and the mass outside the box is < 1e-7 (>= 5.7 std away), so 1e-6 is safe.
    t0 = torch.zeros(500, dtype=F64)
    ref0 = -0.5 * (x**2).sum(-1) - math.log(2 * math.pi)
    torch.testing.assert_close(gm.log_prob(x, t0, interp), ref0, **EXACT)
    for gmx in [gm, GaussianMixture.ring()]:
        for interp_ in INTERPOLANTS:
            grid = torch.linspace(-10, 10, 201, dtype=F64)
            h = float(grid[1] - grid[0])
            pts = torch.cartesian_prod(grid, grid)
            for tv in [1.0, 0.5]:
                lp = gmx.log_prob(pts, torch.full((pts.shape[0],), tv, dtype=F64), interp_)
                total = float(lp.exp().sum()) * h * h
                assert abs(total - 1) < 1e-6, (tv, total)


ENDS = [0.0, 1e-8, 1 - 1e-8, 1.0]


@PER_INTERP
def test_mixture_velocity_stable_at_end_times_and_far_points(interp):
    """Log-sum-exp stability: finite at t in {0, 1e-8, 1 - 1e-8, 1} with |x| up to 50, and the exact
    end values v(x, 0) = a'(0) x + b'(0) E[x1] (I_0 = x0 is independent of x1) and v(x, 1) = b'(1) x
    (E[x0 | I_1 = x] = E[x0] = 0)."""
    for gm in [_gm3(), GaussianMixture.ring()]:
        pts = torch.tensor([[50.0, 50.0], [-50.0, 3.0], [0.0, -50.0], [1e-3, 0.0], [2.0, 1.0]])
        for dtype in [F64, torch.float32]:
            x = pts.to(dtype)
            vs = {}
            for tv in ENDS:
                t = torch.full((x.shape[0],), tv, dtype=dtype)
                v = gm.velocity(x, t, interp)
                assert v.dtype == dtype and bool(torch.isfinite(v).all()), (tv, v)
                assert bool(torch.isfinite(gm.log_prob(x, t, interp)).all())
                vs[tv] = v.double()
            _, _, da0, db0 = (float(c) for c in interp.coeffs(torch.zeros(1, dtype=F64)))
            _, _, _, db1 = (float(c) for c in interp.coeffs(torch.ones(1, dtype=F64)))
            xd = x.double()
            # float32: t = 1 gives coeffs rounded in float32 (Trig: cos(fl32(pi/2)) = -4.4e-8, not
            # 6e-17), which moves v by ~|x| 1e-7 / min eig ~ 2e-5 at |x| = 50; hence 1e-4
            tol = 1e-10 if dtype == F64 else 1e-4
            torch.testing.assert_close(vs[0.0], da0 * xd + db0 * gm.mean(), rtol=tol, atol=tol)
            torch.testing.assert_close(vs[1.0], db1 * xd, rtol=tol, atol=tol)
            # continuity: 1e-8 away from the ends the velocity moves by O(1e-8 |x| / min eig) << 1e-4
            torch.testing.assert_close(vs[1e-8], vs[0.0], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(vs[1 - 1e-8], vs[1.0], rtol=1e-4, atol=1e-4)


def _moment_checks(y: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> None:
    """Sample mean and covariance within Z SE, with SEs estimated from the sample itself."""
    n = y.shape[0]
    c = y - y.mean(0)
    se_mean = c.std(0) / math.sqrt(n)
    assert bool(((y.mean(0) - mean).abs() <= Z * se_mean).all()), (y.mean(0), mean, se_mean)
    prod = c[:, :, None] * c[:, None, :]  # (n, d, d): the sample covariance is its mean
    se_cov = prod.std(0) / math.sqrt(n)  # SE of a mean of products (delta method)
    err = (prod.mean(0) * n / (n - 1) - cov).abs()
    assert bool((err <= Z * se_cov).all()), (prod.mean(0), cov, se_cov)


@PER_INTERP
def test_mixture_ode_transports_noise_to_the_mixture(interp):
    """gm.flow_map(0 -> 1) of N(0, I) (n = 4000): mean, covariance and component masses.

    Masses: 3-component mixture by the mean soft responsibility p(k | y) over generated y (exactly
    w_k in expectation under the mixture, even with overlapping components); ring by nearest mean
    (components 3.06 apart at std 0.4, misassignment ~1e-4), within Z binomial SEs.
    """
    n = 4000
    g = torch.Generator().manual_seed(12)
    ones = torch.ones(n, dtype=F64)
    # dopri5 at rtol = atol = 1e-4: solver error ~1e-4, 100x below the Monte-Carlo SEs (~0.02)
    gm = _gm3()
    y = gm.flow_map(torch.randn(n, 2, generator=g, dtype=F64), 0 * ones, ones, interp, rtol=1e-4)
    _moment_checks(y, gm.mean(), gm.cov())
    resp = torch.softmax(_log_comp(y, W3, MU3, COV3), -1)
    se = resp.std(0) / math.sqrt(n)
    assert bool(((resp.mean(0) - W3).abs() <= Z * se).all()), (resp.mean(0), W3, se)
    ring = GaussianMixture.ring()
    y = ring.flow_map(torch.randn(n, 2, generator=g, dtype=F64), 0 * ones, ones, interp, rtol=1e-4)
    _moment_checks(y, ring.mean(), ring.cov())
    label = torch.cdist(y, ring.means).argmin(1)
    frac = torch.bincount(label, minlength=8).double() / n
    se = math.sqrt(1 / 8 * 7 / 8 / n)
    assert bool(((frac - 1 / 8).abs() <= Z * se).all()), frac
    # and each point sits on its component (not smeared between them): E|y - mu_k|^2 = 2 std^2.
    # |y - mu|^2 / std^2 ~ chi^2_2 (mean 2, sd 2): relative SE 1 / sqrt(n) = 1.6% on the mean,
    # 0.8% on the RMS, so rel = 5% is ~6 SE and a smeared or collapsed component would fail
    dist = (y - ring.means[label]).norm(dim=1)
    assert float(dist.pow(2).mean().sqrt()) == pytest.approx(0.4 * math.sqrt(2), rel=0.05)


@PER_INTERP
def test_mixture_flow_map_semigroup_and_inverse(interp):
    """The numerical map is consistent: X_{u,t} o X_{s,u} = X_{s,t} and X_{t,s} o X_{s,t} = id,
    per-sample times in any order."""
    gm = _gm3()
    x, s, u, t = _rand(64, 13)
    # each solve has global error ~rtol = 1e-8 times a modest Lipschitz factor: 1e-6 is safe
    xst = gm.flow_map(x, s, t, interp)
    lhs = gm.flow_map(gm.flow_map(x, s, u, interp), u, t, interp)
    torch.testing.assert_close(lhs, xst, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gm.flow_map(xst, t, s, interp), x, rtol=1e-6, atol=1e-6)
    assert float((xst - x).abs().max()) > 0.1  # it does move points


def test_mixture_sample_and_validation():
    gm = _gm3()
    n = 100_000
    x, k = gm.sample(n, generator=torch.Generator().manual_seed(14), return_labels=True)
    assert x.dtype == torch.float32 and x.shape == (n, 2) and k.shape == (n,)
    frac = torch.bincount(k, minlength=3).double() / n
    assert bool(((frac - W3).abs() <= Z * (W3 * (1 - W3) / n).sqrt()).all()), frac
    _moment_checks(x.double(), gm.mean(), gm.cov())
    with pytest.raises(ValueError):
        GaussianMixture(W3[:2], MU3, COV3)  # weights of the wrong length
    with pytest.raises(ValueError):
        GaussianMixture(torch.tensor([0.5, 0.5, 0.0]), MU3, COV3)  # non-positive weight
    with pytest.raises(ValueError):
        GaussianMixture(W3, MU3, COV3[:, :1, :1])  # wrong covariance shape
    with pytest.raises(ValueError):
        GaussianMixture(W3, MU3, COV3 - 0.5 * torch.eye(2, dtype=F64))  # not positive definite
