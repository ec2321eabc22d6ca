"""cifar-gmm: a labelled low-rank Gaussian mixture fitted to CIFAR-10 pixels, an exact image oracle.

One component per class k with weight n_k / N. Images are average-pooled to ``resolution`` and
mapped to [-1, 1] in (3, H, W) flattened order (d = 3 H W); each class gets the probabilistic-PCA
maximum-likelihood fit (Tipping & Bishop 1999) of its pixels: with the class covariance
S = (1 / n_k) sum_i (x_i - m_k)(x_i - m_k)^T and eigenpairs e_1 >= e_2 >= ... (u_j),

    s_k^2 = (tr S - sum_{j <= r} e_j) / (d - r),   lam_kj = e_j - s_k^2,   U_k = [u_1 .. u_r],

so U_k diag(lam_k) U_k^T + s_k^2 I has S's top-r eigenpairs, the mean of the others on the rest,
and the same trace. Eigenvector signs are fixed (largest-|.| entry positive). Fits are pure and
deterministic; ``fit_cached`` stores them as small npz files keyed by resolution, rank, a hash of
the source images and labels, and ``FIT_VERSION``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from benchmarks.data import loaders as D
from unify.lowrank import LowRankGaussianMixture

FIT_VERSION = 1  # bump when the fit changes: it is part of the cache key
RESOLUTIONS = (8, 16, 32)
#: the JPEG copy of the CIFAR-10 test set, in the folder ``shared/data`` beside the repository
JPEG_TEST_NPZ = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10_jpeg_test.npz"
_KEYS = ("weights", "means", "U", "lam", "s", "shape")


def to_chw(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` or ``(N, 3, H, W)`` -> uint8 ``(N, 3, H, W)`` (contiguous)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or 3 not in (images.shape[1], images.shape[3]):
        raise ValueError(
            f"need uint8 (N, H, W, 3) or (N, 3, H, W), got {images.dtype} {images.shape}"
        )
    if images.shape[1] == 3 and images.shape[3] == 3:
        raise ValueError(f"ambiguous layout {images.shape}: both axis 1 and axis 3 have size 3")
    return np.ascontiguousarray(images if images.shape[1] == 3 else images.transpose(0, 3, 1, 2))


def pool(images_chw: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 ``(N, 3, H, W)`` -> float64 ``(N, 3 R R)`` in [-1, 1]: mean over f x f blocks, f = H / R."""
    n, c, h, w = images_chw.shape
    if resolution < 1 or h % resolution or w != h:
        raise ValueError(f"cannot pool {h}x{w} images to {resolution}x{resolution}")
    f = h // resolution
    x = images_chw.astype(np.float64).reshape(n, c, resolution, f, resolution, f).mean((3, 5))
    return x.reshape(n, -1) / 127.5 - 1.0


def ppca(x: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Probabilistic-PCA MLE of rows x ``(n, d)``: (mean, U ``(d, r)``, lam ``(r,)``, s^2).

    s^2 = mean of the d - r smallest eigenvalues of the MLE covariance, lam = top eigenvalues - s^2.
    """
    n, d = x.shape
    if not 1 <= rank < d:
        raise ValueError(f"need 1 <= rank < d = {d}, got {rank}")
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / n
    e, v = scipy.linalg.eigh(cov, subset_by_index=[d - rank, d - 1])  # ascending
    e, v = e[::-1], v[:, ::-1]
    v = v * np.sign(v[np.abs(v).argmax(0), np.arange(rank)])  # largest-|.| entry positive
    s2 = (np.trace(cov) - e.sum()) / (d - rank)
    if not s2 > 0:
        raise ValueError(f"rank {rank} leaves no residual variance (class of {n} images)")
    return mean, np.ascontiguousarray(v), np.clip(e - s2, 0.0, None), float(s2)


def fit(
    images: np.ndarray, labels: np.ndarray, resolution: int, rank: int
) -> LowRankGaussianMixture:
    """One PPCA component per class (sorted label order), weight = class frequency."""
    chw, labels = to_chw(images), np.asarray(labels)
    if labels.shape != (len(chw),):
        raise ValueError(f"need one label per image: {labels.shape} vs {len(chw)} images")
    classes, counts = np.unique(labels, return_counts=True)
    parts = [ppca(pool(chw[labels == c], resolution), rank) for c in classes]
    means, U, lam, s2 = (np.stack([p[i] for p in parts]) for i in range(4))
    return LowRankGaussianMixture(
        torch.from_numpy(counts / counts.sum()),
        *(torch.from_numpy(a) for a in (means, U, lam, np.sqrt(s2))),
        shape=(3, resolution, resolution),
    )


def variance_captured(m: LowRankGaussianMixture) -> np.ndarray:
    """Per class, the fraction of tr S_k in the top r directions: (sum lam + r s^2) / tr S_k."""
    lam, s2 = m.lam.numpy(), m.s.numpy() ** 2
    return (lam.sum(1) + m.rank * s2) / (lam.sum(1) + m.dim * s2)


def source_hash(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of the (3, H, W) uint8 images, their shape and the int64 labels (layout-independent)."""
    chw = to_chw(images)
    h = hashlib.sha256(str(chw.shape).encode())
    h.update(chw.tobytes())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def cache_path(cache_dir: str | Path, resolution: int, rank: int, digest: str) -> Path:
    """Where ``fit_cached`` keeps the fit of (resolution, rank, source hash, FIT_VERSION)."""
    name = f"cifar_gmm-v{FIT_VERSION}-res{resolution}-r{rank}-{digest[:16]}.npz"
    return Path(cache_dir) / name


def save(m: LowRankGaussianMixture, path: str | Path, **meta: str | int) -> Path:
    """Write the mixture's float64 parameters (plus ``meta`` scalars) atomically to an npz."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(getattr(m, k)) for k in _KEYS}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays, **{f"meta_{k}": np.asarray(v) for k, v in meta.items()})
    os.replace(tmp, path)
    return path


def load(path: str | Path) -> LowRankGaussianMixture:
    """Read a mixture written by :func:`save`."""
    with np.load(path, allow_pickle=False) as z:
        a = {k: z[k] for k in _KEYS}
    tensors = (torch.from_numpy(a[k]) for k in _KEYS[:-1])
    return LowRankGaussianMixture(*tensors, shape=tuple(int(n) for n in a["shape"]))


def fit_cached(
    images: np.ndarray, labels: np.ndarray, resolution: int, rank: int, cache_dir: str | Path
) -> LowRankGaussianMixture:
    """``fit`` read from ``cache_path(...)`` when present, else computed and saved there."""
    digest = source_hash(images, labels)
    path = cache_path(cache_dir, resolution, rank, digest)
    if path.is_file():
        return load(path)
    m = fit(images, labels, resolution, rank)
    meta = {"resolution": resolution, "rank": rank, "source": digest, "version": FIT_VERSION}
    save(m, path, **meta)
    return m


def load_source(
    train_root: str | Path | None = None, npz: str | Path = JPEG_TEST_NPZ
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(N, 3, 32, 32)`` images and int64 labels ``(N,)`` to fit on.

    The CIFAR-10 training set under ``train_root`` (python batches, see ``data.cifar10_labeled``;
    no download) if given, else the JPEG copy of the test set in ``npz`` (keys ``images``
    ``(N, 32, 32, 3)`` and ``labels``).
    """
    if train_root is not None:
        return D.cifar10_labeled(train_root, train=True, download=False)
    if not Path(npz).is_file():
        raise D.DataError(f"{npz}: no such file; pass train_root=PATH to CIFAR-10's python batches")
    with np.load(npz, allow_pickle=False) as z:
        if "images" not in z.files or "labels" not in z.files:
            raise D.DataError(f"{npz}: need keys 'images' and 'labels', found {z.files}")
        images, labels = z["images"], z["labels"].astype(np.int64)
    return to_chw(images), labels
