"""cifar-gmm: pooling, the per-class PPCA fit and its spectra, its cache, and the committed fit's
oracle (its ODE reproduces the mixture's moments). The fitting command: test_cifar_gmm_fit.py."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.data import cifar_gmm as C
from benchmarks.evaluation.metrics import frechet_floor, frechet_to_moments
from unify import Linear


def _images(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 3, size, size) images with class-dependent smooth structure, labels in {0, 2, 5}."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([0, 2, 5], size=n, p=[0.5, 0.3, 0.2])
    grid = np.linspace(0, 1, size)
    waves = np.stack([np.sin(2 * np.pi * (k + 1) * grid) for k in range(4)])  # (4, size)
    coef = rng.normal(size=(n, 3, 4)) * (1 + labels[:, None, None])
    x = 128 + 20 * np.einsum("ncj,jw->ncw", coef, waves)[:, :, None, :]
    x = x + 10 * rng.normal(size=(n, 3, size, size)) + 10 * labels[:, None, None, None]
    return np.clip(x, 0, 255).astype(np.uint8), labels


def test_pool_layout_and_errors():
    blocks = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    img = blocks.repeat(8, axis=2).repeat(8, axis=3)  # 32x32 made of constant 8x8 blocks
    x = C.pool(img, 4)
    np.testing.assert_array_equal(x, blocks.reshape(2, -1) / 127.5 - 1.0)  # (3, H, W) order
    assert C.pool(img, 32).shape == (2, 3 * 32 * 32) and C.pool(img, 8).shape == (2, 192)
    np.testing.assert_array_equal(C.to_chw(img.transpose(0, 2, 3, 1)), img)
    with pytest.raises(ValueError, match="ambiguous"):
        C.to_chw(np.zeros((2, 3, 5, 3), np.uint8))
    with pytest.raises(ValueError):
        C.to_chw(img.astype(np.float32))
    with pytest.raises(ValueError):
        C.pool(img, 5)


def test_ppca_is_the_top_eigenpairs_plus_mean_residual():
    """U diag(lam) U^T + s^2 I has the class covariance's top-r eigenpairs, s^2 on the rest, the
    same trace; U is orthonormal with each column's largest-|.| entry positive."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 48)) @ rng.normal(size=(48, 48)) * 0.1 + rng.normal(size=48)
    mean, U, lam, s2 = C.ppca(x, 5)
    cov = np.cov(x.T, bias=True)  # the MLE covariance, by numpy
    e, v = np.linalg.eigh(cov)
    np.testing.assert_allclose(mean, x.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lam + s2, e[::-1][:5], rtol=1e-10)
    np.testing.assert_allclose(s2, e[:-5].mean(), rtol=1e-10)
    np.testing.assert_allclose(U @ U.T, v[:, -5:] @ v[:, -5:].T, atol=1e-10)  # same subspace
    np.testing.assert_allclose(U.T @ U, np.eye(5), atol=1e-12)
    assert bool((U[np.abs(U).argmax(0), np.arange(5)] > 0).all())
    model = U @ np.diag(lam) @ U.T + s2 * np.eye(48)
    assert np.trace(model) == pytest.approx(np.trace(cov), rel=1e-12)
    with pytest.raises(ValueError):
        C.ppca(x, 48)


def test_fit_weights_means_traces_and_determinism():
    images, labels = _images(400, 1)
    m = C.fit(images, labels, 8, 4)
    assert m.shape == (3, 8, 8) and m.dim == 192 and m.rank == 4 and m.means.shape[0] == 3
    counts = np.array([(labels == c).sum() for c in (0, 2, 5)])
    np.testing.assert_allclose(m.weights.numpy(), counts / 400, rtol=1e-12)
    comp_covs = m.component_covs().numpy()
    for k, c in enumerate((0, 2, 5)):
        x = C.pool(images[labels == c], 8)
        np.testing.assert_allclose(m.means[k].numpy(), x.mean(0), atol=1e-12)
        assert np.trace(comp_covs[k]) == pytest.approx(np.trace(np.cov(x.T, bias=True)), rel=1e-10)
    frac = C.variance_captured(m)
    assert frac.shape == (3,) and bool(((frac > 0) & (frac < 1)).all())
    again = C.fit(images.transpose(0, 2, 3, 1), labels, 8, 4)  # NHWC input: the same fit, bitwise
    for name in ("weights", "means", "U", "lam", "s"):
        assert torch.equal(getattr(m, name), getattr(again, name)), name
    with pytest.raises(ValueError, match="label"):
        C.fit(images, labels[:-1], 8, 4)


def test_fit_cached_key_save_and_load(tmp_path: Path, monkeypatch):
    images, labels = _images(120, 2)
    digest = C.source_hash(images, labels)
    assert digest == C.source_hash(images.transpose(0, 2, 3, 1), labels)  # layout-independent
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    assert C.source_hash(changed, labels) != digest
    relabelled = labels.copy()
    relabelled[0] = 7
    assert C.source_hash(images, relabelled) != digest
    m = C.fit_cached(images, labels, 8, 3, tmp_path)
    path = C.cache_path(tmp_path, 8, 3, digest)
    assert path.is_file() and "res8-r3" in path.name and path.stat().st_size < 100_000
    assert C.cache_path(tmp_path, 8, 4, digest) != path != C.cache_path(tmp_path, 16, 3, digest)

    def no_refit(*args, **kwargs):
        raise AssertionError("refitted although the cache file exists")

    monkeypatch.setattr(C, "spectra", no_refit)
    cached = C.fit_cached(images, labels, 8, 3, tmp_path)
    for name in ("weights", "means", "U", "lam", "s"):
        assert torch.equal(getattr(m, name), getattr(cached, name)), name
    assert cached.shape == (3, 8, 8)
    with np.load(path) as z:
        assert str(z["meta_source"]) == digest and int(z["meta_version"]) == C.FIT_VERSION


def test_a_lower_rank_from_the_spectrum_is_the_direct_fit():
    """The rank-3 mixture read off a rank-6 spectrum is the rank-3 fit (to rounding), and a U
    stored in float16 is made orthonormal again."""
    images, labels = _images(300, 4)
    sp = C.spectra(images, labels, 8, 6)
    low, direct = C.mixture(sp, 8, 3), C.fit(images, labels, 8, 3)
    for name in ("weights", "means", "U", "lam", "s"):
        torch.testing.assert_close(getattr(low, name), getattr(direct, name), rtol=1e-9, atol=1e-12)
    rounded = C.mixture({**sp, "U": sp["U"].astype(np.float16)}, 8, 6)
    gram = rounded.U.transpose(1, 2) @ rounded.U
    torch.testing.assert_close(gram, torch.eye(6, dtype=torch.float64).expand(3, 6, 6))
    assert float((rounded.U - torch.from_numpy(sp["U"])).abs().max()) < 1e-3
    with pytest.raises(ValueError, match="rank"):
        C.mixture(sp, 8, 7)


def test_committed_fit_and_its_ode_reproduce_the_moments():
    """8x8, r = 8 of the committed fit (the JPEG copy of the CIFAR-10 test set): 10 equal classes,
    68-80% of each class's variance in the top 8 directions (measured). The oracle's flow map
    X_{0,1} of n = 1000 noise draws (dopri5, rtol = 1e-3) must match the mixture's moments:
    - mean: n (ybar - m)^T Cov^-1 (ybar - m) ~ chi^2_192 under the CLT, so <= 192 + 4 sqrt(2 192);
    - covariance: the pixel Frechet distance to (mean, cov) <= 1.4 frechet_floor(cov, n). Exact
      samples score 1.04 +- 0.08 floors (measured, n = 2000, 5 draws), so 1.4 is ~4 SD above.
    """
    m = C.committed(8, 8)
    np.testing.assert_allclose(m.weights.numpy(), 0.1, rtol=1e-12)
    frac = C.variance_captured(m)
    assert bool(((frac > 0.6) & (frac < 0.85)).all()), frac
    n = 1000
    x0 = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ones = torch.ones(n, dtype=torch.float64)
    y = m.flow_map(x0, 0 * ones, ones, Linear(), rtol=1e-3)
    assert y.shape == (n, 3, 8, 8)
    mean, cov = m.mean(), m.cov()
    dm = y.reshape(n, -1).mean(0) - mean
    chi2 = float(n * dm @ torch.linalg.solve(cov, dm))
    assert chi2 <= 192 + 4 * math.sqrt(2 * 192), chi2
    fd, floor = frechet_to_moments(y, mean, cov), frechet_floor(cov, n)
    assert fd <= 1.4 * floor, (fd, floor)
