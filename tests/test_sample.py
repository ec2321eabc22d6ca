"""Time grids and the two samplers over a FlowMap: NFE accounting, grid use, exactness.

NFE is counted by wrapping the network in a module that records every call and its (s, t), so the
tests see exactly which maps a sampler composes.
"""

import math

import pytest
import torch
from torch import nn

from unify import FlowMap, Linear, Trig, consistency_sample, sample, time_grid
from unify.exact import GaussianTarget, OracleNet

F64 = torch.float64
INTERPOLANTS = [Linear(), Trig()]
IDS = ["linear", "trig"]
PER_INTERP = pytest.mark.parametrize("interp", INTERPOLANTS, ids=IDS)


# --------------------------------------------------------------------------- grids


def _karras_sigmas(n: int, rho: float = 7.0, smin: float = 0.002, smax: float = 80.0):
    """Karras et al. (2022) Eq. 5, written out in plain Python floats."""
    lo, hi = smin ** (1 / rho), smax ** (1 / rho)
    return [(hi + i / n * (lo - hi)) ** rho for i in range(n + 1)]


@pytest.mark.parametrize("nfe", [1, 2, 3, 8, 50])
def test_uniform_grid(nfe):
    g = time_grid(nfe)
    assert g.dtype == torch.float32 and g.shape == (nfe + 1,)
    assert float(g[0]) == 0.0 and float(g[-1]) == 1.0
    ref = torch.tensor([i / nfe for i in range(nfe + 1)], dtype=F64)
    torch.testing.assert_close(time_grid(nfe, "uniform", dtype=F64), ref, rtol=0, atol=1e-15)


@PER_INTERP
@pytest.mark.parametrize("nfe", [1, 2, 4, 8, 40])
def test_edm_grid(interp, nfe):
    """Increasing, pinned to [0, 1], interior t_i = time_of_sigma(sigma_i) of the Karras sigmas."""
    g = time_grid(nfe, "edm", interpolant=interp, dtype=F64)
    assert g.shape == (nfe + 1,) and g.dtype == F64
    assert float(g[0]) == 0.0 and float(g[-1]) == 1.0
    assert bool((g[1:] > g[:-1]).all()), g
    sig = _karras_sigmas(nfe)
    interior = interp.time_of_sigma(torch.tensor(sig[1:-1], dtype=F64))
    torch.testing.assert_close(g[1:-1], interior, rtol=1e-14, atol=1e-15)
    # cross-check the sigma axis: sigma(t_i) = sigma_i at interior points
    if nfe > 1:
        torch.testing.assert_close(
            interp.sigma(g[1:-1]), torch.tensor(sig[1:-1], dtype=F64), rtol=1e-9, atol=0
        )
    # float32 default dtype is the float64 grid rounded
    torch.testing.assert_close(time_grid(nfe, "edm", interpolant=interp), g.float(), rtol=0, atol=0)


def test_edm_grid_defaults_to_linear_and_respects_parameters():
    torch.testing.assert_close(
        time_grid(6, "edm", dtype=F64), time_grid(6, "edm", interpolant=Linear(), dtype=F64)
    )
    # Trig and Linear grids differ (the interpolant is used)
    assert not torch.allclose(
        time_grid(6, "edm", interpolant=Trig(), dtype=F64), time_grid(6, "edm", dtype=F64)
    )
    g = time_grid(5, "edm", rho=3.0, sigma_min=0.01, sigma_max=10.0, dtype=F64)
    ref = Linear().time_of_sigma(torch.tensor(_karras_sigmas(5, 3.0, 0.01, 10.0), dtype=F64))
    torch.testing.assert_close(g[1:-1], ref[1:-1], rtol=1e-14, atol=1e-15)
    # explicit Karras sigma spacing, not a uniform grid: for Linear, nfe = 8, t_1 = 1 / (1 + 38.8)
    g = time_grid(8, "edm", dtype=F64)
    assert float(g[1]) == pytest.approx(1 / (1 + _karras_sigmas(8)[1]), rel=1e-14)
    assert float(g[1]) < 0.03 and float(g[-2]) > 0.97


def test_explicit_grid():
    times = [0.0, 0.1, 0.5, 0.9, 1.0]
    g = time_grid(4, times, dtype=F64)
    torch.testing.assert_close(g, torch.tensor(times, dtype=F64), rtol=0, atol=0)
    g32 = time_grid(4, torch.tensor(times))
    assert g32.dtype == torch.float32 and g32.shape == (5,)
    torch.testing.assert_close(time_grid(1, (0, 1), dtype=F64), torch.tensor([0.0, 1.0], dtype=F64))


@pytest.mark.parametrize("nfe", [0, -1, 2.5, True, False, "4", None])
def test_bad_nfe_raises(nfe):
    for kind in ["uniform", "edm", [0.0, 1.0]]:
        with pytest.raises(ValueError, match="nfe"):
            time_grid(nfe, kind)


@pytest.mark.parametrize(
    "nfe, times",
    [
        (2, [0.0, 1.0]),  # too few times
        (1, [0.0, 0.5, 1.0]),  # too many times
        (2, [0.1, 0.5, 1.0]),  # does not start at 0
        (2, [0.0, 0.5, 0.9]),  # does not end at 1
        (3, [0.0, 0.6, 0.4, 1.0]),  # not increasing
        (3, [0.0, 0.5, 0.5, 1.0]),  # repeated time
        (2, [0.0, float("nan"), 1.0]),  # NaN
        (2, [0.0, 1.5, 1.0]),  # outside [0, 1]
    ],
)
def test_bad_explicit_grid_raises(nfe, times):
    with pytest.raises(ValueError, match="grid"):
        time_grid(nfe, times)


def test_bad_grid_kind_raises():
    for kind in ["cosine", "Uniform", ""]:
        with pytest.raises(ValueError, match="unknown grid kind"):
            time_grid(4, kind)


# --------------------------------------------------------------------------- samplers


class Counting(nn.Module):
    """Counts calls of the wrapped net and records the (s, t) it was called with."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x, s, t):
        self.calls.append((s.clone(), t.clone()))
        return self.net(x, s, t)


class TinyNet(nn.Module):
    def __init__(self, d: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(d + 2, 16), nn.SiLU(), nn.Linear(16, d))

    def forward(self, x, s, t):
        return self.body(torch.cat([x, s[:, None], t[:, None]], -1))


GRIDS = ["uniform", "edm"]


@pytest.mark.parametrize("nfe", [1, 2, 4, 8])
@pytest.mark.parametrize("grid", GRIDS)
def test_sample_calls_net_nfe_times_on_consecutive_grid_times(nfe, grid):
    net = Counting(TinyNet())
    x0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    out = sample(FlowMap(net), x0, nfe, grid=grid)
    assert len(net.calls) == nfe
    times = time_grid(nfe, grid)
    for i, (s, t) in enumerate(net.calls):
        assert s.shape == t.shape == (5,)
        assert bool((s == times[i]).all()) and bool((t == times[i + 1]).all())
    # and the output is that composition
    fm, x = FlowMap(TinyNet()), x0
    for s, t in zip(times[:-1], times[1:]):
        x = fm(x, s.expand(5), t.expand(5))
    torch.testing.assert_close(out, x, rtol=0, atol=0)
    assert not out.requires_grad  # samplers run under no_grad


def test_sample_with_explicit_grid():
    net = Counting(TinyNet())
    times = [0.0, 0.3, 0.7, 1.0]
    sample(FlowMap(net), torch.randn(3, 2), 3, grid=times)
    assert len(net.calls) == 3
    got = [(float(s[0]), float(t[0])) for s, t in net.calls]
    exp = [(0.0, 0.3), (0.3, 0.7), (0.7, 1.0)]
    for (s, t), (es, et) in zip(got, exp):
        assert s == pytest.approx(es, abs=1e-7) and t == pytest.approx(et, abs=1e-7)  # float32 grid
    with pytest.raises(ValueError):
        sample(FlowMap(net), torch.randn(3, 2), 2, grid=times)  # nfe and grid length disagree


def gaussian_target() -> GaussianTarget:
    return GaussianTarget(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.5]))


@PER_INTERP
@pytest.mark.parametrize(
    "grid", ["uniform", "edm", [0.0, 0.05, 0.2, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0]]
)
def test_sample_with_exact_map_is_exact_at_any_nfe(interp, grid):
    """With the exact flow map, composition over any grid is X_{0,1}: nfe = 1 and 8 agree to 1e-10.

    Each of the 8 maps is exact to ~1e-15 (Gauss-Legendre divided differences), so the composition
    is exact to a few 1e-15; 1e-10 is the brief's bar.
    """
    tg = gaussian_target()
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    ones = torch.ones(256, dtype=F64)
    ref = tg.flow_map(x0, 0 * ones, ones, interp)
    fm = FlowMap(Counting(OracleNet(tg, interp)))
    for nfe in [1, 8]:
        g = grid if isinstance(grid, str) or nfe == 8 else "uniform"
        fm.net.calls.clear()
        out = sample(fm, x0, nfe, grid=g)
        assert len(fm.net.calls) == nfe
        assert out.dtype == F64
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("nfe", [1, 2, 4, 8])
@pytest.mark.parametrize("grid", GRIDS)
def test_consistency_sample_nfe_and_call_pattern(nfe, grid):
    """nfe calls: first (0, 1), then (t_k, 1) for every interior grid time t_k, in order."""
    net = Counting(TinyNet())
    x0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    consistency_sample(FlowMap(net), x0, nfe, Linear(), grid=grid)
    assert len(net.calls) == nfe
    times = time_grid(nfe, grid)
    for k, (s, t) in enumerate(net.calls):
        assert bool((t == 1).all())
        assert bool((s == times[k]).all())  # s = t_0 = 0 first, then t_1, ..., t_{N-1}


def test_consistency_sample_explicit_grid_and_generator():
    net = Counting(TinyNet())
    x0 = torch.randn(5, 2)
    times = [0.0, 0.4, 0.8, 1.0]
    a = consistency_sample(
        FlowMap(net), x0, 3, Trig(), grid=times, generator=torch.Generator().manual_seed(0)
    )
    assert len(net.calls) == 3
    assert [round(float(s[0]), 6) for s, _ in net.calls] == [0.0, 0.4, 0.8]
    b = consistency_sample(
        FlowMap(net), x0, 3, Trig(), grid=times, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # reproducible given the generator
    c = consistency_sample(
        FlowMap(net), x0, 3, Trig(), grid=times, generator=torch.Generator().manual_seed(1)
    )
    assert not torch.allclose(a, c)  # and the re-noising does draw fresh noise


@PER_INTERP
@pytest.mark.parametrize("nfe", [1, 4])
def test_consistency_sample_with_exact_map_is_distributionally_exact(interp, nfe):
    """With the exact map, every round lands exactly on the target law (re-noise to p_t, then
    X_{t,1}: p_t -> p_1), so the output of n = 50k samples has the target's mean and variance
    within 4 standard errors. Pointwise it differs from X_{0,1}(x0) when nfe > 1 (fresh noise)."""
    tg = gaussian_target()
    n = 50_000
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    fm = FlowMap(Counting(OracleNet(tg, interp)))
    gen = torch.Generator().manual_seed(5)
    y = consistency_sample(fm, x0, nfe, interp, generator=gen)
    assert len(fm.net.calls) == nfe and y.dtype == F64
    m, v = tg.mean, tg.std**2
    se_mean, se_var = (v / n).sqrt(), v * math.sqrt(2 / (n - 1))  # Gaussian sample mean / variance
    assert bool(((y.mean(0) - m).abs() <= 4 * se_mean).all()), (y.mean(0), m)
    assert bool(((y.var(0) - v).abs() <= 4 * se_var).all()), (y.var(0), v)
    assert abs(float(torch.corrcoef(y.T)[0, 1])) <= 4 / math.sqrt(n)  # null-correlation SE
    ones = torch.ones(n, dtype=F64)
    det = tg.flow_map(x0, 0 * ones, ones, interp)
    if nfe == 1:
        torch.testing.assert_close(y, det, rtol=1e-10, atol=1e-10)
    else:
        # re-noised: correlation with the deterministic sample drops well below 1
        rho = torch.corrcoef(torch.stack([y[:, 0], det[:, 0]]))[0, 1]
        assert float(rho) < 0.99, float(rho)
