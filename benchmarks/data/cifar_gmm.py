"""cifar-gmm: a labelled low-rank Gaussian mixture fitted to CIFAR-10 pixels, an exact image oracle.

One component per class k with weight n_k / N. Images are average-pooled to ``resolution`` and
mapped to [-1, 1] in (3, H, W) flattened order (d = 3 H W); each class gets the probabilistic-PCA
maximum-likelihood fit (Tipping & Bishop 1999) of its pixels: with the class covariance
S = (1 / n_k) sum_i (x_i - m_k)(x_i - m_k)^T and eigenpairs e_1 >= e_2 >= ... (u_j),

    s_k^2 = (tr S - sum_{j <= r} e_j) / (d - r),   lam_kj = e_j - s_k^2,   U_k = [u_1 .. u_r],

so U_k diag(lam_k) U_k^T + s_k^2 I has S's top-r eigenpairs, the mean of the others on the rest,
and the same trace. Eigenvector signs are fixed (largest-|.| entry positive). A fit is kept as
its *spectrum* per resolution (``spectra``: class counts, means, top eigenpairs and tr S), from
which the mixture of any rank up to the stored one follows (``mixture``). ``FIT_FILE``, committed
with the code and written by ``python -m benchmarks.data.fit_cifar_gmm``, holds the spectra of
the CIFAR-10 test set at every resolution (``MAX_RANK``); ``committed`` reads it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from benchmarks.data.loaders import DataError
from unify.lowrank import LowRankGaussianMixture

FIT_VERSION = 2  # bump when the fit or the file format changes
RESOLUTIONS = (8, 16, 32)
#: the largest rank the committed fit holds at each resolution
MAX_RANK = {8: 8, 16: 16, 32: 32}
#: the committed fit (``python -m benchmarks.data.fit_cifar_gmm`` rewrites it)
FIT_FILE = Path(__file__).with_name("cifar_gmm_fit.npz")
_PARTS = ("means", "U", "eig", "trace")  # per resolution; plus the shared "counts"


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


def top_eigen(x: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Rows x ``(n, d)``: (mean, top-``rank`` eigenvectors ``(d, r)`` and eigenvalues ``(r,)``,
    descending, of the MLE covariance, its trace)."""
    n, d = x.shape
    if not 1 <= rank < d:
        raise ValueError(f"need 1 <= rank < d = {d}, got {rank}")
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / n
    e, v = scipy.linalg.eigh(cov, subset_by_index=[d - rank, d - 1])  # ascending
    e, v = e[::-1], v[:, ::-1]
    v = v * np.sign(v[np.abs(v).argmax(0), np.arange(rank)])  # largest-|.| entry positive
    return mean, np.ascontiguousarray(v), np.ascontiguousarray(e), float(np.trace(cov))


def residual(e: np.ndarray, trace: float, d: int) -> tuple[np.ndarray, float]:
    """(lam, s^2) of the top eigenvalues ``e`` (r,): s^2 = (trace - sum e) / (d - r), lam = e - s^2."""
    s2 = (trace - e.sum()) / (d - len(e))
    if not s2 > 0:
        raise ValueError(f"rank {len(e)} leaves no residual variance")
    return np.clip(e - s2, 0.0, None), float(s2)


def ppca(x: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Probabilistic-PCA MLE of rows x ``(n, d)``: (mean, U ``(d, r)``, lam ``(r,)``, s^2)."""
    mean, U, e, trace = top_eigen(x, rank)
    return mean, U, *residual(e, trace, x.shape[1])


def spectra(
    images: np.ndarray, labels: np.ndarray, resolution: int, rank: int
) -> dict[str, np.ndarray]:
    """Per class (sorted labels): ``counts`` (K,), ``means`` (K, d), ``U`` (K, d, r), ``eig``
    (K, r) and ``trace`` (K,) of the pooled pixels (float64)."""
    chw, labels = to_chw(images), np.asarray(labels)
    if labels.shape != (len(chw),):
        raise ValueError(f"need one label per image: {labels.shape} vs {len(chw)} images")
    classes, counts = np.unique(labels, return_counts=True)
    parts = [top_eigen(pool(chw[labels == c], resolution), rank) for c in classes]
    out = {name: np.stack([p[i] for p in parts]) for i, name in enumerate(_PARTS)}
    return {"counts": counts.astype(np.int64), **out}


def _orthonormal(U: np.ndarray) -> np.ndarray:
    """U (K, d, r) with exactly orthonormal columns: float64 input as is, a rounded one (stored
    in float32) by QR, column signs kept."""
    if U.dtype == np.float64:
        return U
    q, r = np.linalg.qr(U.astype(np.float64))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


def mixture(sp: dict[str, np.ndarray], resolution: int, rank: int) -> LowRankGaussianMixture:
    """The rank-``rank`` mixture of a spectrum (``rank`` <= the rank stored in it)."""
    d = sp["means"].shape[1]
    if not 1 <= rank <= sp["U"].shape[2]:
        raise ValueError(f"need 1 <= rank <= {sp['U'].shape[2]} (the fitted rank), got {rank}")
    parts = [
        residual(e[:rank].astype(np.float64), float(t), d) for e, t in zip(sp["eig"], sp["trace"])
    ]
    lam, s2 = np.stack([p[0] for p in parts]), np.array([p[1] for p in parts])
    counts = sp["counts"].astype(np.float64)
    U = _orthonormal(np.ascontiguousarray(sp["U"][:, :, :rank]))
    return LowRankGaussianMixture(
        torch.from_numpy(counts / counts.sum()),
        *(torch.from_numpy(np.asarray(a, np.float64)) for a in (sp["means"], U, lam, np.sqrt(s2))),
        shape=(3, resolution, resolution),
    )


def fit(
    images: np.ndarray, labels: np.ndarray, resolution: int, rank: int
) -> LowRankGaussianMixture:
    """One PPCA component per class (sorted label order), weight = class frequency."""
    return mixture(spectra(images, labels, resolution, rank), resolution, rank)


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


def save_fit(
    path: str | Path,
    fits: dict[int, dict[str, np.ndarray]],
    dtypes: dict[int, type] | None = None,
    **meta: str | int,
) -> Path:
    """Write spectra ``{resolution: spectra(...)}`` (all of the same classes) atomically to a
    compressed npz: ``counts``, ``r<R>_<part>`` in float64 but ``r<R>_U`` in ``dtypes[R]`` (float64
    by default; a rounded U is made orthonormal again on load) and ``meta_<key>`` scalars."""
    path, dtypes = Path(path), dtypes or {}
    arrays: dict[str, np.ndarray] = {"counts": next(iter(fits.values()))["counts"]}
    for res, sp in fits.items():
        if not np.array_equal(sp["counts"], arrays["counts"]):
            raise ValueError("the spectra of one file must share their classes")
        for part in _PARTS:
            dtype = dtypes.get(res, np.float64) if part == "U" else np.float64
            arrays[f"r{res}_{part}"] = sp[part].astype(dtype)
    meta = {"version": FIT_VERSION, **meta}
    arrays |= {f"meta_{k}": np.asarray(v) for k, v in meta.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
    return path


def load_fit(path: str | Path) -> tuple[dict[int, dict[str, np.ndarray]], dict[str, str]]:
    """``({resolution: spectrum}, {meta key: text})`` of a file written by :func:`save_fit`; a
    missing, unreadable or foreign file is a DataError naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: not a readable cifar-gmm fit ({err})") from None
    meta = {k[5:]: str(v) for k, v in arrays.items() if k.startswith("meta_")}
    if "counts" not in arrays or meta.get("version") != str(FIT_VERSION):
        raise DataError(f"{path}: not a cifar-gmm fit of version {FIT_VERSION} (meta: {meta})")
    fits: dict[int, dict[str, np.ndarray]] = {}
    for key in arrays:
        head, _, part = key.partition("_")
        if head[:1] == "r" and head[1:].isdigit() and part in _PARTS:
            fits.setdefault(int(head[1:]), {"counts": arrays["counts"]})[part] = arrays[key]
    return fits, meta


def committed(resolution: int, rank: int, path: str | Path = FIT_FILE) -> LowRankGaussianMixture:
    """The mixture of ``resolution`` and ``rank`` from the committed fit (DataError if absent)."""
    fits, _ = load_fit(path)
    stored = fits[resolution]["U"].shape[2] if resolution in fits else 0
    if not 1 <= rank <= stored:
        held = ", ".join(f"{r}x{r} up to rank {f['U'].shape[2]}" for r, f in sorted(fits.items()))
        raise DataError(
            f"cifar-gmm: {path} holds {held}; resolution {resolution} rank {rank} needs a refit "
            "(--data-root PATH to a CIFAR-10 copy)"
        )
    return mixture(fits[resolution], resolution, rank)


def cache_path(cache_dir: str | Path, resolution: int, rank: int, digest: str) -> Path:
    """Where ``fit_cached`` keeps the fit of (resolution, rank, source hash, FIT_VERSION)."""
    name = f"cifar_gmm-v{FIT_VERSION}-res{resolution}-r{rank}-{digest[:16]}.npz"
    return Path(cache_dir) / name


def fit_cached(
    images: np.ndarray, labels: np.ndarray, resolution: int, rank: int, cache_dir: str | Path
) -> LowRankGaussianMixture:
    """``fit`` read from ``cache_path(...)`` when present, else computed and saved there."""
    digest = source_hash(images, labels)
    path = cache_path(cache_dir, resolution, rank, digest)
    if not path.is_file():
        save_fit(path, {resolution: spectra(images, labels, resolution, rank)}, source=digest)
    return mixture(load_fit(path)[0][resolution], resolution, rank)
