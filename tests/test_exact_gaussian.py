"""Exact oracle: the Gaussian target (closed-form map) and OracleNet.

Gaussian target, per coordinate: I_t ~ N(b m, c^2), c^2 = a^2 + b^2 std^2, and the flow map is the
affine X_{s,t}(x) = b(t) m + c(t) / c(s) (x - b(s) m). Its checks are identities that hold to
rounding (semigroup, Lagrangian and Eulerian residuals, X_{0,1} = m + std x0) plus one Monte-Carlo
check of the transported law. Monte-Carlo tolerances are stated in standard errors (SE).
"""

import itertools
import math

import pytest
import torch
from oracle_checks import EXACT, F64, INTERPOLANTS, PER_INTERP, Z, gaussian_target, rand_points
from torch.func import jvp

from unify import FlowMap, map_ds, map_dt
from unify.exact import GaussianTarget, OracleNet

# The OracleNet route goes through 24-point Gauss-Legendre divided differences; c(t) is analytic
# with its nearest complex branch point >= 0.35 from [0, 1] for these std, so the quadrature error
# is <~1e-14 (Bernstein-ellipse bound rho^-48, rho >= 2); 1e-10 leaves 1e4x headroom.
ORACLE = {"rtol": 1e-10, "atol": 1e-10}


def _oracle_fm(target: GaussianTarget, interp, eps: float = 0.0) -> FlowMap:
    return FlowMap(OracleNet(target, interp, eps=eps)).requires_grad_(False)


# --------------------------------------------------------------------------- Gaussian target


@PER_INTERP
def test_gaussian_x01_is_the_affine_transport(interp):
    """c(0) = 1 and c(1) = std, so X_{0,1}(x0) = m + std * x0: the optimal map N(0, I) -> target."""
    tg = gaussian_target()
    x, _, _, _ = rand_points(256, 0)
    b = x.shape[0]
    out = tg.flow_map(x, torch.zeros(b, dtype=F64), torch.ones(b, dtype=F64), interp)
    torch.testing.assert_close(out, tg.mean + tg.std * x, **EXACT)
    back = tg.flow_map(out, torch.ones(b, dtype=F64), torch.zeros(b, dtype=F64), interp)
    torch.testing.assert_close(back, x, **EXACT)


@PER_INTERP
def test_gaussian_velocity_is_conditional_expectation(interp):
    """denoise(x, b_t(x)) must be the textbook Gaussian posterior mean E[x1 | I_t = x]."""
    tg = gaussian_target()
    x, _, _, t = rand_points(256, 1)
    t = t.clamp(1e-3, 1 - 1e-3)
    a, b, _, _ = (c[:, None] for c in interp.coeffs(t))
    m, var = tg.mean, tg.std**2
    post_mean = m + b * var / (a**2 + b**2 * var) * (x - b * m)  # Cov(x1, I) / Var(I) (x - E I)
    torch.testing.assert_close(interp.denoise(x, tg.velocity(x, t, interp), t), post_mean, **EXACT)


@PER_INTERP
def test_gaussian_semigroup(interp):
    """X_{u,t}(X_{s,u}(x)) = X_{s,t}(x) for random s, u, t in any order (closed form and OracleNet)."""
    tg = gaussian_target()
    x, s, u, t = rand_points(512, 2)
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
    tg = gaussian_target()
    x, s, _, t = rand_points(512, 3)
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
    tg = gaussian_target()
    x, s, _, t = rand_points(512, 4)
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
    tg = gaussian_target()
    x, s, _, t = rand_points(512, 5)
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
    tg = gaussian_target()
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
    tg = gaussian_target()
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
