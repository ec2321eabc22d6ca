"""Sliced W2 against an exact Gaussian mixture: closed forms, floor, ladder, mode collapse."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from benchmarks.evaluation.sliced import (
    directions,
    project,
    quantiles,
    slice_table,
    sliced_w2_exact,
    sliced_w2_floor,
    sliced_w2_table,
    sobol_normal,
)
from unify.exact import GaussianMixture

RING = GaussianMixture.ring(8, radius=4.0, std=0.4)


def gaussian(mean: list[float], std: float) -> GaussianMixture:
    d = len(mean)
    eye = torch.eye(d, dtype=torch.float64)[None]
    return GaussianMixture(torch.ones(1), torch.tensor([mean], dtype=torch.float64), std**2 * eye)


def ring_qmc(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ring samples with n / 8 per mode, each mode the same low-discrepancy N(0, I) set."""
    z = sobol_normal(n // 8, 2, seed=0).double().repeat(8, 1)
    lab = torch.arange(8).repeat_interleave(n // 8)
    return (RING.means[lab] + 0.4 * z).float(), lab


def test_quantiles_invert_the_mixture_cdf():
    u = torch.tensor([1e-9, 1e-4, 0.1, 0.5, 0.625, 0.9, 1 - 1e-6], dtype=torch.float64)
    q = quantiles(u, *project(gaussian([0.3], 1.5), torch.ones(1, 1)))
    ref = 0.3 + 1.5 * norm.ppf(u.numpy())
    assert q[0].numpy() == pytest.approx(ref, abs=1e-9)
    w, m, s = project(RING, directions(16, 2))  # separated projected modes: flat CDF stretches
    q = quantiles(u, w, m, s).numpy()
    cdf = (w.numpy() * norm.cdf((q[..., None] - m.numpy()[:, None]) / s.numpy()[:, None])).sum(-1)
    assert cdf == pytest.approx(np.broadcast_to(u.numpy(), cdf.shape), rel=1e-9, abs=1e-14)


def test_1d_w2_matches_brute_force_integral():
    """W2^2 = int_0^1 (Q_N - Q_F)^2 du, by a fine quadrature of both quantile functions."""
    x = torch.tensor([[-3.0], [-2.5], [0.2], [3.9], [5.0]])  # 5 points: tails matter
    oracle = GaussianMixture(
        torch.tensor([1.0, 2.0]), torch.tensor([[-2.0], [2.5]]), torch.tensor([[[0.25]], [[1.0]]])
    )
    grid = np.linspace(-12, 14, 2_000_001)
    cdf = (2 * norm.cdf(grid, 2.5, 1.0) + norm.cdf(grid, -2.0, 0.5)) / 3
    u = (np.arange(1_000_000) + 0.5) / 1_000_000
    q_f = np.interp(u, cdf, grid)
    q_n = np.sort(x[:, 0].numpy())[np.floor(u * 5).astype(int)]
    ref = math.sqrt(np.mean((q_n - q_f) ** 2))
    assert sliced_w2_exact(x, oracle, n_proj=1) == pytest.approx(ref, rel=1e-4)


def test_1d_gaussians_closed_form():
    """W2(N(m1, s1^2), N(m2, s2^2)) = sqrt((m1 - m2)^2 + (s1 - s2)^2); samples at mid-quantiles."""
    n = 100_000
    x = torch.tensor(1.0 + 0.7 * norm.ppf((np.arange(n) + 0.5) / n))[:, None]
    assert sliced_w2_exact(x, gaussian([0.3], 1.5), 1) == pytest.approx(
        math.sqrt(0.7**2 + 0.8**2), rel=1e-4
    )


def test_sliced_isotropic_gaussians_closed_form():
    """SW2^2(N(m1, s1^2 I), N(m2, s2^2 I)) = |m1 - m2|^2 / d + (s1 - s2)^2 in d dimensions."""
    for d, n_proj in ((2, 16), (3, 12)):
        x = 0.5 + 2.0 * sobol_normal(4096, d, seed=0).double()  # N(0.5, 4 I), low discrepancy
        target = gaussian([-2.0] + [2.0] * (d - 1), 1.2)
        diff2 = float(((target.means[0] - 0.5) ** 2).sum())
        exact = math.sqrt(diff2 / d + (2.0 - 1.2) ** 2)
        gen = torch.Generator().manual_seed(1)  # 3D: random frames, exact for the mean term
        assert sliced_w2_exact(x, target, n_proj, gen) == pytest.approx(exact, rel=3e-3), d


def test_exact_samples_score_near_zero():
    """The floor, as a fraction of the metric between N(0, I) and the data (~1.92)."""
    table = slice_table(RING, 4096, n_proj=32)
    scale = sliced_w2_table(torch.randn(4096, 2, generator=torch.Generator().manual_seed(0)), table)
    assert 1.85 < scale < 2.0
    assert sliced_w2_table(ring_qmc(4096)[0], table) < 0.01 * scale  # balanced modes
    floor, spread = sliced_w2_floor(RING, table, reps=3, generator=torch.Generator().manual_seed(1))
    assert 0.02 * scale < floor < 0.08 * scale and spread < 0.03 * scale  # i.i.d.: mode counts vary
    assert sliced_w2_table(torch.zeros(4096, 2), table) == pytest.approx(
        math.sqrt(RING.cov().trace() / 2),
        rel=1e-9,  # a point mass at the mean: sqrt(E|X|^2 / 2)
    )


def test_grows_along_distortion_ladders():
    x, lab = ring_qmc(4096)
    table = slice_table(RING, 4096, n_proj=32)
    radial = (RING.means[0] / RING.means[0].norm()).float()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    ladders = {
        "scale": [x * (1 + d) for d in (0.0, 0.01, 0.02, 0.05)],
        "blur": [x + d * noise for d in (0.0, 0.05, 0.1, 0.2)],
        "shift": [x + d * radial * (lab == 0)[:, None] for d in (0.0, 0.05, 0.1, 0.2)],
        "spread": [
            torch.where((lab == 0)[:, None], x - d * (x - RING.means[0].float()), x)
            for d in (0.0, 0.1, 0.25, 0.5)
        ],
    }
    for name, samples in ladders.items():
        values = [sliced_w2_table(v, table) for v in samples]
        assert all(a < b for a, b in zip(values, values[1:])), (name, values)
    scaled = 0.05 * math.sqrt(RING.cov().trace() / 2)  # SW2(p*, 1.05 p*): monotone in 1D
    assert sliced_w2_table(ladders["scale"][-1], table) == pytest.approx(scaled, rel=0.05)


def test_detects_mode_collapse_that_fools_sample_nll():
    """Samples on the mode centres: higher p* likelihood than exact samples, but a bad SW2."""
    x, lab = ring_qmc(4096)
    centres = RING.means[lab].float()
    ones = torch.ones(len(x))
    from unify.interpolant import make_interpolant

    interp = make_interpolant("linear")
    nll_exact = -RING.log_prob(x, ones, interp).mean()
    nll_collapsed = -RING.log_prob(centres, ones, interp).mean()
    assert nll_collapsed < nll_exact  # the one-sided score prefers the collapsed sampler
    table = slice_table(RING, 4096, n_proj=32)
    exact, collapsed = sliced_w2_table(x, table), sliced_w2_table(centres, table)
    assert collapsed > 0.3 and collapsed > 3 * exact


def test_deterministic_given_generator():
    x = RING.sample(512, torch.Generator().manual_seed(4))
    assert sliced_w2_exact(x, RING) == sliced_w2_exact(x, RING)  # 2D default: the midpoint grid
    a, b = (sliced_w2_exact(x, RING, 16, torch.Generator().manual_seed(5)) for _ in range(2))
    assert a == b
    x3 = torch.randn(256, 3, generator=torch.Generator().manual_seed(6))
    g3 = gaussian([0.0, 0.0, 1.0], 1.0)
    v = [sliced_w2_exact(x3, g3, 8, torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert v[0] == v[1] != v[2]
    assert torch.equal(sobol_normal(64, 2, seed=9), sobol_normal(64, 2, seed=9))


def test_shapes_and_errors():
    d = directions(5, 3, torch.Generator().manual_seed(0))  # rounded up to two orthonormal frames
    assert d.shape == (6, 3) and torch.allclose(d[:3] @ d[:3].T, torch.eye(3, dtype=d.dtype))
    assert directions(7, 2).shape == (7, 2) and directions(3, 1).shape == (1, 1)
    with pytest.raises(ValueError):
        sliced_w2_exact(torch.zeros(10, 3), RING)
    with pytest.raises(ValueError):
        sliced_w2_table(torch.zeros(10, 2), slice_table(RING, 11))


def test_sobol_normal_balances_sectors():
    """Low-discrepancy noise: angular sectors (the ring's modes under the exact map) stay balanced."""
    for seed in (0, 1):
        z = sobol_normal(2048, 2, seed=seed)
        assert z.dtype == torch.float32 and bool(torch.isfinite(z).all())
        assert float(z.mean(0).abs().max()) < 0.01 and float((z.std(0) - 1).abs().max()) < 0.01
        sector = ((torch.atan2(z[:, 1], z[:, 0]) + math.pi) / (2 * math.pi) * 8).long().clamp(0, 7)
        counts = torch.bincount(sector, minlength=8)
        assert int((counts - 256).abs().max()) <= 6, counts  # i.i.d.: +-15 (one std) per sector
