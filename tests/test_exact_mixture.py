"""Exact oracle: the Gaussian mixture (exact velocity, numerical flow map).

The mixture's velocity and density are checked against an independent closed form (linear solves
and Cholesky instead of the class's eigh route), against an independent self-normalised
importance-sampling estimate of E[dI_t/dt | I_t = x], and its ODE against the moments and
component masses of the mixture. Monte-Carlo tolerances are stated in standard errors (SE).
"""

import math

import pytest
import torch
from oracle_checks import (
    EXACT,
    F64,
    INTERPOLANTS,
    PER_INTERP,
    Z,
    draw_points,
    gaussian_target,
    log_component,
    mc_velocity,
    moment_checks,
    rand_points,
)

from unify import Linear
from unify.exact import GaussianMixture

# --------------------------------------------------------------------------- Gaussian mixture

W3 = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
MU3 = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -3.0]], dtype=F64)
COV3 = torch.tensor(
    [[[1.0, 0.6], [0.6, 0.8]], [[0.3, -0.2], [-0.2, 0.5]], [[0.5, 0.1], [0.1, 0.2]]], dtype=F64
)  # all non-diagonal, eigenvalues in [0.17, 1.51]


def _gm3() -> GaussianMixture:
    return GaussianMixture(W3, MU3, COV3)


@PER_INTERP
def test_mixture_one_component_equals_gaussian_target(interp):
    tg = gaussian_target()
    gm = GaussianMixture(torch.ones(1), tg.mean[None], torch.diag(tg.std**2)[None])
    x, s, _, t = rand_points(64, 8)
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
    logc = log_component(x, w, b[..., 0] * mu, var)  # (B, K)
    ref = (torch.softmax(logc, -1)[..., None] * vk).sum(1)
    # condition numbers of a^2 I + b^2 S are <= ~1e2 here: 1e-12 is still ~100x rounding
    torch.testing.assert_close(gm.velocity(x, t, interp), ref, **EXACT)
    torch.testing.assert_close(gm.log_prob(x, t, interp), torch.logsumexp(logc, -1), **EXACT)


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
    x1s = draw_points(W3, MU3, COV3, m, g)
    x0s = torch.randn(m, 2, generator=g, dtype=F64)
    n_checked = 0
    for t in [0.02, 0.25, 0.5, 0.75, 0.98]:
        for name, (est, se, ess, xq, tt) in mc_velocity(
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
        ref = torch.logsumexp(log_component(x, W3, b * MU3, cov_t), -1)
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
    moment_checks(y, gm.mean(), gm.cov())
    resp = torch.softmax(log_component(y, W3, MU3, COV3), -1)
    se = resp.std(0) / math.sqrt(n)
    assert bool(((resp.mean(0) - W3).abs() <= Z * se).all()), (resp.mean(0), W3, se)
    ring = GaussianMixture.ring()
    y = ring.flow_map(torch.randn(n, 2, generator=g, dtype=F64), 0 * ones, ones, interp, rtol=1e-4)
    moment_checks(y, ring.mean(), ring.cov())
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
    x, s, u, t = rand_points(64, 13)
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
    moment_checks(x.double(), gm.mean(), gm.cov())
    with pytest.raises(ValueError):
        GaussianMixture(W3[:2], MU3, COV3)  # weights of the wrong length
    with pytest.raises(ValueError):
        GaussianMixture(torch.tensor([0.5, 0.5, 0.0]), MU3, COV3)  # non-positive weight
    with pytest.raises(ValueError):
        GaussianMixture(W3, MU3, COV3[:, :1, :1])  # wrong covariance shape
    with pytest.raises(ValueError):
        GaussianMixture(W3, MU3, COV3 - 0.5 * torch.eye(2, dtype=F64))  # not positive definite
