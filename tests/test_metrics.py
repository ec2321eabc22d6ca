"""Metrics against closed forms: W2 of translations and Gaussians, flow-map error, offline FID,
pixel-space Frechet distance to known moments and its finite-sample floor."""

import math

import numpy as np
import pytest
import torch
from conftest import write_random_inception_weights

from benchmarks.evaluation import metrics
from benchmarks.evaluation.metrics import (
    fid,
    fid_cache_path,
    flowmap_err,
    flowmap_err_per_dim,
    frechet_distance,
    frechet_floor,
    frechet_to_moments,
    w2,
)

# --------------------------------------------------------------------------- W2


def test_w2_self_is_zero():
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    assert w2(x, x) == pytest.approx(0.0, abs=1e-7)


def test_w2_translation_is_exact():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 1, generator=g)
    y = x[torch.randperm(300, generator=g)] + 0.75  # shuffled: the solver must find the pairing
    assert w2(x, y) == pytest.approx(0.75, abs=1e-9)
    # unequal sizes: 50 points against the same 50 points twice is the same measure
    z = torch.randn(50, 2, generator=g)
    assert w2(z, torch.cat([z, z])) == pytest.approx(0.0, abs=1e-7)
    assert w2(z, torch.cat([z, z]) + torch.tensor([0.0, 2.0])) == pytest.approx(2.0, abs=1e-7)


def test_w2_gaussians_shifted():
    g = torch.Generator().manual_seed(2)
    m = torch.tensor([3.0, -1.5])
    x, y = torch.randn(1000, 2, generator=g), torch.randn(1000, 2, generator=g) + m
    assert w2(x, y) == pytest.approx(float(m.norm()), rel=0.05)


def test_w2_reports_nonconvergence():
    g = torch.Generator().manual_seed(3)
    with pytest.raises(RuntimeError, match="did not converge"):
        w2(torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g), num_iter_max=5)


# --------------------------------------------------------------------------- flow-map error


def test_flowmap_err():
    x = torch.zeros(4, 2)
    y = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0], [-2.0, 0.0]])
    assert flowmap_err(x, y) == pytest.approx((5 + 1 + 0 + 2) / 4)
    imgs = torch.randn(3, 1, 2, 2)
    assert flowmap_err(imgs, imgs + 0.5) == pytest.approx(1.0)  # |0.5 * ones(4)| = 1
    with pytest.raises(ValueError):
        flowmap_err(torch.zeros(3, 2), torch.zeros(4, 2))


def test_flowmap_err_per_dim():
    imgs = torch.randn(3, 3, 4, 4)
    assert flowmap_err_per_dim(imgs, imgs + 0.5) == pytest.approx(0.5)  # every pixel off by 0.5
    x, y = torch.zeros(2, 2), torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert flowmap_err_per_dim(x, y) == pytest.approx(3 / math.sqrt(2))


# --------------------------------------------------------------------------- Frechet to moments


def _gaussian(d: int, seed: int):
    """Anisotropic covariance Q diag(l) Q^T with eigenvalues from 4 down to 0.05, a random mean."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    lam = np.geomspace(4.0, 0.05, d)
    return rng, rng.normal(size=d), q @ np.diag(lam) @ q.T, q * np.sqrt(lam)


@pytest.mark.parametrize("n", [300, 12])  # sample covariance full-rank (N > D) and rank N - 1 < D
def test_frechet_to_moments_closed_form(n):
    """|m_N - mu|^2 + tr S + tr C - 2 tr (C^1/2 S C^1/2)^1/2 with S = np.cov (unbiased), C^1/2
    by eigh and the inner root by eigvalsh: an independent route to the same number."""
    rng, mu, cov, half = _gaussian(20, 0)
    x = mu + rng.normal(size=(n, 20)) @ half.T
    e, v = np.linalg.eigh(cov)
    root = v @ np.diag(np.sqrt(e)) @ v.T
    s = np.cov(x.T)
    inner = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s @ root), 0, None)).sum()
    ref = ((x.mean(0) - mu) ** 2).sum() + np.trace(s) + np.trace(cov) - 2 * inner
    samples = torch.from_numpy(x).reshape(n, 4, 5)  # (N, ...) is flattened per sample
    # for N < D the reference's D - N + 1 zero eigenvalues come out as ~1e-16, whose square roots
    # add ~1e-8 each: it, not frechet_to_moments (which stops at the rank), is off by ~1e-7
    tol = 1e-9 if n > 20 else 1e-6
    assert frechet_to_moments(samples, mu, cov) == pytest.approx(ref, rel=tol)
    got = frechet_to_moments(samples.float(), torch.from_numpy(mu), torch.from_numpy(cov))
    assert got == pytest.approx(ref, rel=1e-4)  # float32 samples are upcast
    with pytest.raises(ValueError):
        frechet_to_moments(samples, mu[:-1], cov)
    with pytest.raises(ValueError):
        frechet_to_moments(samples[:1], mu, cov)


def test_frechet_floor_predicts_exact_sample_bias():
    """Mean FD of 1000 draws of n = 200 exact Gaussian samples (d = 6) within 4 SE + 2% of the
    leading-order floor (the neglected terms are O(1/n) relative; measured ratios 1.000, 0.995,
    1.005 at n = 100, 500, 2000 over 4000 draws each), and the closed forms of the two extremes."""
    rng, mu, cov, half = _gaussian(6, 1)
    n = 200
    fds = np.array(
        [
            frechet_to_moments(torch.from_numpy(mu + rng.normal(size=(n, 6)) @ half.T), mu, cov)
            for _ in range(1000)
        ]
    )
    floor = frechet_floor(cov, n)
    assert abs(fds.mean() - floor) <= 4 * fds.std(ddof=1) / math.sqrt(1000) + 0.02 * floor
    assert floor > 1.5 * np.trace(cov) / n  # the Bures term dominates the tr / n mean term
    d, var = 50, 0.3  # isotropic: (d + 5) tr / (4 n) to leading order; rank one: 3 tr / (2 n)
    iso = frechet_floor(var * np.eye(d), 1001)
    assert iso == pytest.approx(d * var / 1001 + (d * d * var / 2 + d * var / 2) / 2000, rel=1e-12)
    one = np.zeros((3, 3))
    one[0, 0] = var
    assert frechet_floor(one, 1001) == pytest.approx(var / 1001 + var / 2000, rel=1e-12)


# --------------------------------------------------------------------------- FID


@pytest.mark.parametrize("n", [200, 20])  # full-rank and rank-deficient covariances
def test_frechet_distance_matches_torch_fidelity(n):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = torch.Generator().manual_seed(n)
    s1 = fid_features_to_statistics(torch.randn(n, 64, generator=g))
    s2 = fid_features_to_statistics(2 * torch.randn(n, 64, generator=g) + 0.3)
    ref = fid_statistics_to_metric(s1, s2, False)["frechet_inception_distance"]
    ours = frechet_distance(s1["mu"], s1["sigma"], s2["mu"], s2["sigma"])
    assert ours == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(s1["mu"], s1["sigma"], s1["mu"], s1["sigma"]) == pytest.approx(
        0.0, abs=1e-6 * ref
    )


@pytest.mark.slow
def test_fid_offline_with_random_weights(tmp_path):
    weights = str(write_random_inception_weights(tmp_path / "inception.pth"))
    g = torch.Generator().manual_seed(4)
    a = torch.randint(0, 128, (8, 3, 32, 32), generator=g, dtype=torch.uint8)
    b = torch.randint(128, 256, (8, 1, 32, 32), generator=g, dtype=torch.uint8)  # brighter, gray
    cache = tmp_path / "cache"

    with pytest.raises(ValueError, match="no reference"):
        fid(a, None, "ref", cache, weights)

    same = fid(a, a, "ref", cache, weights, batch_size=8)
    assert fid_cache_path(cache, "ref").is_file()
    other = fid(b, None, "ref", cache, weights, batch_size=8)  # reference from the cache only
    assert math.isfinite(same) and math.isfinite(other)
    assert other > 0.0 and abs(same) <= 1e-3 * other


def test_fid_without_weights_gives_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    x = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="--fid-weights PATH") as err:
        fid(x, x, "ref", tmp_path / "cache", None)
    assert metrics.INCEPTION_URL in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not found"):
        fid(x, x, "ref", tmp_path / "cache", str(tmp_path / "missing.pth"))
