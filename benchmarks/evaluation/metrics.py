"""Sample-quality metrics: exact W2, flow-map error, FID and pixel-space Frechet distance to known
moments. No training knowledge here.

Every metric is "lower is better". ``w2`` and ``flowmap_err`` take point clouds ``(N, D)`` (or
``(N, ...)``, flattened per sample); ``fid`` takes uint8 images ``(N, C, H, W)`` and wraps
torch-fidelity, caching the reference statistics under ``cache_root``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import ot
import torch
from scipy.linalg import lapack
from torch import Tensor
from torch.utils.data import Dataset

#: torch-fidelity's FID feature extractor and layer; they name the cached statistics file
FID_EXTRACTOR = "inception-v3-compat"
FID_LAYER = "2048"
#: where torch-fidelity downloads its Inception weights from (torch_fidelity.feature_extractor_inceptionv3)
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)


def _flat64(x: Tensor) -> np.ndarray:
    """``(N, ...)`` tensor -> ``(N, D)`` float64 numpy array."""
    return x.detach().reshape(x.shape[0], -1).to(device="cpu", dtype=torch.float64).numpy()


def w2(x: Tensor, y: Tensor, num_iter_max: int = 10_000_000) -> float:
    """Exact Wasserstein-2 distance between two empirical measures with uniform weights.

    ``sqrt(min_P sum_ij P_ij |x_i - y_j|^2)`` solved by network simplex (POT ``ot.emd2``) in
    float64. ``x``: ``(N, D)``, ``y``: ``(M, D)``; N and M may differ. Raises ``RuntimeError``
    when POT stops before optimality (raise ``num_iter_max``).
    """
    a, b = _flat64(x), _flat64(y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"w2: dimension mismatch {tuple(x.shape)} vs {tuple(y.shape)}")
    if len(a) == 0 or len(b) == 0:
        raise ValueError("w2: empty point cloud")
    cost = ot.dist(a, b, metric="sqeuclidean")
    wa, wb = np.full(len(a), 1.0 / len(a)), np.full(len(b), 1.0 / len(b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # POT warns; we raise below instead
        value, log = ot.emd2(wa, wb, cost, numItermax=int(num_iter_max), log=True)
    if log.get("warning") is not None:
        raise RuntimeError(f"w2: POT emd2 did not converge: {log['warning']}")
    return float(np.sqrt(max(float(value), 0.0)))


def flowmap_err(x: Tensor, y: Tensor) -> float:
    """Mean Euclidean error ``E_i |x_i - y_i|`` between paired samples ``(N, ...)``.

    Typically the same noise pushed through the learned and the exact flow map.
    """
    if x.shape != y.shape:
        raise ValueError(f"flowmap_err: shape mismatch {tuple(x.shape)} vs {tuple(y.shape)}")
    diff = (x.detach().double() - y.detach().double().to(x.device)).reshape(x.shape[0], -1)
    return float(diff.norm(dim=1).mean())


def flowmap_err_per_dim(x: Tensor, y: Tensor) -> float:
    """``E_i |x_i - y_i| / sqrt(D)``: ``flowmap_err`` in per-coordinate units.

    A map off by ``e`` in every pixel scores ``e`` at any resolution, so errors at 8x8, 16x16 and
    32x32 compare directly (and a 2D error is the plain error divided by sqrt(2)).
    """
    return flowmap_err(x, y) / float(np.sqrt(x[0].numel()))


class _Images(Dataset):
    """uint8 ``(N, C, H, W)`` tensor -> items uint8 ``(3, H, W)`` (grayscale repeated)."""

    def __init__(self, images: Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"fid expects uint8 (N, 1|3, H, W) images, got {images.dtype} {tuple(images.shape)}"
            )
        self.images = images.detach().cpu()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        img = self.images[i]
        return img.expand(3, -1, -1).contiguous() if img.shape[0] == 1 else img


def fid_cache_path(cache_root: str | Path, cache_name: str) -> Path:
    """The file torch-fidelity writes the cached reference FID statistics to."""
    return Path(cache_root) / f"{cache_name}-{FID_EXTRACTOR}-stat-fid-{FID_LAYER}.pt"


def _check_weights(weights_path: str | None) -> None:
    """Fail early, in one line, when the Inception weights cannot be had."""
    hint = (
        "pass --fid-weights PATH to a pt_inception-2015-12-05 weights file "
        f"(torch-fidelity downloads it from {INCEPTION_URL})"
    )
    if weights_path is not None:
        if not Path(weights_path).is_file():
            raise ValueError(f"FID weights file {weights_path!r} not found: {hint}")
        return
    if (Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_URL.rsplit("/", 1)[1]).is_file():
        return  # torch-fidelity will find it in the torch hub cache
    try:
        torch.hub.load_state_dict_from_url(INCEPTION_URL, progress=False, map_location="cpu")
    except Exception as err:  # offline, proxy, corrupt download: all end the same way
        raise ValueError(f"cannot obtain Inception weights ({type(err).__name__}): {hint}") from err


def sqrt_factor(sigma: np.ndarray) -> np.ndarray:
    """``H`` of shape ``(D, rank)`` with ``H @ H.T == sigma`` for a symmetric PSD ``sigma``.

    Cholesky with complete pivoting (LAPACK ``dpstrf``): exact for rank-deficient covariances
    and stops at the numerical rank, so a covariance of n < D samples costs O(D^2 n).
    """
    sigma = np.asarray(sigma, np.float64)
    c, piv, rank, info = lapack.dpstrf((sigma + sigma.T) / 2, lower=1)
    if info < 0:
        raise ValueError(f"dpstrf: illegal argument {-info}")
    low = np.tril(c)[:, :rank]  # P.T sigma P = low @ low.T
    half = np.empty_like(low)
    half[piv - 1] = low
    return half


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``, as torch-fidelity computes FID.

    ``S1 S2`` has the nonzero eigenvalues of the symmetric ``H.T S1 H`` where ``S2 = H H.T``
    (``sqrt_factor``), so a pivoted Cholesky and one symmetric eigensolve replace
    torch-fidelity's general ``eigvals`` (about 40 s at 2048 dims on these CPUs), with no
    complex round-off for rank-deficient covariances. Agrees with it to ~1e-9 relative.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    half = sqrt_factor(s2)
    inner = half.T @ s1 @ half
    ev = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = np.sqrt(np.clip(ev, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_to_moments(
    samples: Tensor, mean: Tensor | np.ndarray, cov: Tensor | np.ndarray
) -> float:
    """Pixel-space Frechet distance of ``samples`` ``(N, ...)`` to N(``mean``, ``cov``), float64.

    ``frechet_distance(mean, cov, m_N, S_N)`` with the sample mean m_N and unbiased covariance
    S_N = X_c^T X_c / (N - 1) of the flattened samples; ``sqrt_factor`` of S_N stops at its rank
    (at most N - 1), so N < D costs O(N D^2) and never a D x D eigensolve. Exact samples do not
    score 0: see ``frechet_floor`` for the expected finite-sample value.
    """
    x = _flat64(samples)
    mu, sigma = (
        np.asarray(a.cpu() if isinstance(a, Tensor) else a, np.float64) for a in (mean, cov)
    )
    if x.shape[0] < 2 or mu.shape != (x.shape[1],) or sigma.shape != (x.shape[1],) * 2:
        raise ValueError(
            f"frechet_to_moments: need N >= 2 samples of dimension D = len(mean) and cov (D, D); "
            f"got samples {tuple(samples.shape)}, mean {mu.shape}, cov {sigma.shape}"
        )
    m = x.mean(0)
    xc = x - m
    return frechet_distance(mu, sigma, m, xc.T @ xc / (len(x) - 1))


def frechet_floor(cov: Tensor | np.ndarray, n: int) -> float:
    """Leading-order E[FD] of n exact samples of N(mu, cov) scored by ``frechet_to_moments``.

    E|m_N - mu|^2 = tr(cov) / n, plus the Bures term: FD(cov, cov + E) = sum_ij E_ij^2 /
    (2 (l_i + l_j)) + O(E^3) in cov's eigenbasis (eigenvalues l), with Gaussian E[E_ij^2] =
    l_i l_j (1 + delta_ij) / (n - 1):

        floor = tr(cov) / n + (sum_ij l_i l_j / (l_i + l_j) + tr(cov) / 2) / (2 (n - 1)),

    which lies between 3 tr(cov) / (2 n) (rank one) and (d + 5) tr(cov) / (4 n) (isotropic).
    A mixture's fourth moments are not Gaussian, so for it this is a guide, not a bound.
    """
    c = np.asarray(cov.cpu() if isinstance(cov, Tensor) else cov, np.float64)
    lam = np.clip(np.linalg.eigvalsh((c + c.T) / 2), 0.0, None)
    lam = lam[lam > 0]
    pair = (lam[:, None] * lam[None, :] / (lam[:, None] + lam[None, :])).sum()
    return float(lam.sum() / n + (pair + lam.sum() / 2) / (2 * (n - 1)))


def fid(
    samples: Tensor,
    reference: Tensor | None,
    cache_name: str,
    cache_root: str | Path,
    weights_path: str | None,
    device: str = "cpu",
    batch_size: int = 64,
) -> float:
    """Frechet Inception Distance between uint8 ``samples`` and ``reference`` ``(N, 1|3, H, W)``.

    torch-fidelity extracts the Inception pool features and their statistics, caching the
    reference statistics as ``fid_cache_path(cache_root, cache_name)`` (``input2_cache_name``);
    once that file exists ``reference`` may be ``None`` (and is ignored if given). The cache key
    does not include the weights: use a distinct ``cache_name``/``cache_root`` per weights file.
    ``weights_path``: a torch-fidelity Inception state_dict (downloaded when ``None``).
    The distance is ``frechet_distance``: torch-fidelity's formula with a faster solver.
    """
    from torch_fidelity.metric_fid import fid_input_id_to_statistics_cached
    from torch_fidelity.utils import create_feature_extractor

    cached = fid_cache_path(cache_root, cache_name).is_file()
    if reference is None and not cached:
        raise ValueError(
            f"fid: no reference images given and no cached statistics at "
            f"{fid_cache_path(cache_root, cache_name)}"
        )
    _check_weights(weights_path)
    Path(cache_root).mkdir(parents=True, exist_ok=True)
    kwargs = dict(
        input1=_Images(samples),
        input2=None if cached else _Images(reference),  # type: ignore[arg-type]
        input2_cache_name=cache_name,
        cache_root=str(cache_root),
        cache=True,
        fid=True,
        feature_extractor_weights_path=weights_path,
        cuda=device.startswith("cuda"),
        batch_size=batch_size,
        save_cpu_ram=True,
        verbose=False,
    )
    extractor = create_feature_extractor(FID_EXTRACTOR, [FID_LAYER], **kwargs)
    stats1 = fid_input_id_to_statistics_cached(1, extractor, FID_LAYER, **kwargs)
    stats2 = fid_input_id_to_statistics_cached(2, extractor, FID_LAYER, **kwargs)
    return frechet_distance(stats1["mu"], stats1["sigma"], stats2["mu"], stats2["sigma"])
