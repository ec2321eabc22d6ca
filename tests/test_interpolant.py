"""Interpolants I_t = a(t) x0 + b(t) x1: end points, derivatives, sigma axis, denoise and DDIM map.

Everything runs in float64, so "exact" comparisons use tolerances of a few ulps (~1e-15 relative)
unless the identity holds bit for bit, in which case torch.equal is used.
"""

import math

import pytest
import torch
from torch.func import jvp

from unify import Interpolant, Linear, Trig, make_interpolant

INTERPOLANTS = [Linear(), Trig()]
IDS = ["linear", "trig"]
F64 = torch.float64
# Identities below involve a handful of float64 operations on O(1) numbers: a few ulps, so 1e-13
# absolute/relative is ~500 ulps of headroom yet would catch any wrong coefficient (errors O(1e-2+)).
TIGHT = {"rtol": 1e-13, "atol": 1e-13}


def _batch(b: int = 64, d: tuple[int, ...] = (3, 2), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, *d, generator=g, dtype=F64)
    x1 = torch.randn(b, *d, generator=g, dtype=F64)
    t = torch.rand(b, generator=g, dtype=F64)
    return x0, x1, t


@pytest.mark.parametrize("interp", INTERPOLANTS, ids=IDS)
def test_endpoints(interp: Interpolant):
    x0, x1, _ = _batch()
    zeros, ones = torch.zeros(x0.shape[0], dtype=F64), torch.ones(x0.shape[0], dtype=F64)
    # a(0) = 1, b(0) = 0 exactly for both (cos 0 = 1, sin 0 = 0), so I_0 = x0 bit for bit.
    assert torch.equal(interp.sample(x0, x1, zeros).xt, x0)
    a1, b1, _, _ = interp.coeffs(ones)
    # b(1) = 1 exactly; a(1) = cos(pi/2) = 6.1e-17 in floating point for Trig, 0 for Linear.
    assert torch.equal(b1, ones)
    assert float(a1.abs().max()) <= 1e-16
    torch.testing.assert_close(interp.sample(x0, x1, ones).xt, x1, rtol=0, atol=1e-15)
    if isinstance(interp, Linear):
        assert torch.equal(interp.sample(x0, x1, ones).xt, x1)


@pytest.mark.parametrize("interp", INTERPOLANTS, ids=IDS)
def test_vt_is_time_derivative_of_xt(interp: Interpolant):
    """Forward-mode AD of t -> I_t(x0, x1) equals the returned dI_t/dt."""
    x0, x1, t = _batch()
    t = torch.cat([t, torch.tensor([0.0, 1.0], dtype=F64)])  # include the end points
    x0, x1 = torch.cat([x0, x0[:2]]), torch.cat([x1, x1[:2]])
    xt, dxt = jvp(lambda tt: interp.sample(x0, x1, tt).xt, (t,), (torch.ones_like(t),))
    path = interp.sample(x0, x1, t)
    torch.testing.assert_close(xt, path.xt, rtol=0, atol=0)
    torch.testing.assert_close(dxt, path.vt, **TIGHT)
    # and a central finite difference, independent of AD (h^2 truncation ~1e-10, roundoff 1e-11)
    h = 1e-5
    tin = t.clamp(h, 1 - h)
    fd = (interp.sample(x0, x1, tin + h).xt - interp.sample(x0, x1, tin - h).xt) / (2 * h)
    torch.testing.assert_close(fd, interp.sample(x0, x1, tin).vt, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("interp", INTERPOLANTS, ids=IDS)
def test_coeff_derivatives_match_autograd(interp: Interpolant):
    t = torch.linspace(0, 1, 101, dtype=F64).requires_grad_(True)
    a, b, da, db = interp.coeffs(t)
    (ga,) = torch.autograd.grad(a.sum(), t)
    (gb,) = torch.autograd.grad(b.sum(), t)
    torch.testing.assert_close(da.detach(), ga, **TIGHT)
    torch.testing.assert_close(db.detach(), gb, **TIGHT)
    # boundary conditions of the class docstring
    ends = torch.tensor([0.0, 1.0], dtype=F64)
    a_e, b_e, _, _ = interp.coeffs(ends)
    torch.testing.assert_close(a_e, torch.tensor([1.0, 0.0], dtype=F64), rtol=0, atol=1e-16)
    torch.testing.assert_close(b_e, torch.tensor([0.0, 1.0], dtype=F64), rtol=0, atol=1e-16)


@pytest.mark.parametrize("interp", INTERPOLANTS, ids=IDS)
def test_sigma_and_time_of_sigma_are_inverse(interp: Interpolant):
    t = torch.cat([torch.tensor([0.0, 1e-6], dtype=F64), torch.linspace(0.01, 1, 100, dtype=F64)])
    sig = interp.sigma(t)
    assert math.isinf(float(sig[0]))  # sigma = a / b is infinite at t = 0 ...
    assert float(interp.time_of_sigma(sig[:1])) == 0.0  # ... and maps back to exactly 0
    # time_of_sigma(sigma(t)): condition number ~1 on these t, so a few ulps.
    torch.testing.assert_close(interp.time_of_sigma(sig), t, rtol=1e-12, atol=1e-14)
    # the other direction, over EDM's sigma range [0.002, 80] and beyond
    s = torch.logspace(-4, 3, 200, dtype=F64)
    torch.testing.assert_close(interp.sigma(interp.time_of_sigma(s)), s, rtol=1e-10, atol=0)
    # sigma is decreasing in t (so time_of_sigma is too): needed for increasing EDM grids
    assert bool((sig[1:] < sig[:-1]).all())
    # sigma = a / b, so x_sigma = I_t / b = x1 + sigma x0 (the EDM variable)
    x0, x1, tt = _batch()
    tt = tt.clamp_min(1e-3)
    p = interp.sample(x0, x1, tt)
    _, b, _, _ = interp.coeffs(tt)
    lhs = p.xt / b[:, None, None]
    torch.testing.assert_close(
        lhs, x1 + interp.sigma(tt)[:, None, None] * x0, rtol=1e-11, atol=1e-11
    )


@pytest.mark.parametrize("interp", INTERPOLANTS, ids=IDS)
def test_denoise_recovers_x1(interp: Interpolant):
    """(xt, vt) determine x1 for each path: the 2x2 system has determinant a b' - a' b != 0."""
    x0, x1, t = _batch()
    t = torch.cat([t, torch.tensor([0.0, 1.0], dtype=F64)])
    x0, x1 = torch.cat([x0, x0[:2]]), torch.cat([x1, x1[:2]])
    p = interp.sample(x0, x1, t)
    # the determinant a b' - a' b is >= 1 for both paths on [0, 1], so no error amplification
    torch.testing.assert_close(interp.denoise(p.xt, p.vt, t), x1, **TIGHT)


@pytest.mark.parametrize("interp", INTERPOLANTS, ids=IDS)
def test_ddim_map(interp: Interpolant):
    x0, x1, s = _batch()
    s = 0.999 * s  # a(s) > 0
    b = s.shape[0]
    ones = torch.ones(b, dtype=F64)
    x = torch.randn_like(x0)
    out = interp.ddim_map(x, x1, s, ones)
    if isinstance(interp, Linear):
        assert torch.equal(out, x1)  # a(1) = 0 exactly: the map lands on D bit for bit
    # Trig: a(1) = 6e-17, so out = x1 + O(6e-17 |x| / a(s)); a(s) >= cos(0.999 pi / 2) = 1.6e-3
    torch.testing.assert_close(out, x1, rtol=0, atol=1e-12)
    # X_{s,s} = id
    torch.testing.assert_close(interp.ddim_map(x, x1, s, s), x, **TIGHT)
    # with the true x1 the DDIM map transports the conditional path: I_s(x0, x1) -> I_t(x0, x1)
    t = torch.rand(b, generator=torch.Generator().manual_seed(5), dtype=F64)
    xs = interp.sample(x0, x1, s).xt
    # 1 / a(s) can reach ~600 (Trig at s = 0.999), amplifying ulp errors of O(1) numbers: 1e-11
    torch.testing.assert_close(
        interp.ddim_map(xs, x1, s, t), interp.sample(x0, x1, t).xt, rtol=1e-11, atol=1e-11
    )


def test_make_interpolant():
    assert isinstance(make_interpolant("linear"), Linear)
    assert isinstance(make_interpolant("trig"), Trig)
    for bad in ["cosine", "Linear", "", "vp"]:
        with pytest.raises(ValueError, match="allowed: linear, trig"):
            make_interpolant(bad)
