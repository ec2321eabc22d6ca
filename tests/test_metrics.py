"""Metrics against closed forms: W2 of translations and Gaussians, flow-map error, offline FID."""

import math

import pytest
import torch
from conftest import write_random_inception_weights

from benchmarks import metrics
from benchmarks.metrics import fid, fid_cache_path, flowmap_err, frechet_distance, w2

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
    assert w2(z, torch.cat([z, z]) + torch.tensor([0.0, 2.0])) == pytest.approx(2.0, abs=1e-9)


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
