"""Datasets as tensors (``benchmarks.data.batches`` draws minibatches from them).

Images come back as float32 ``(N, C, H, W)`` in ``[-1, 1]``; 2D toys as float32 ``(N, 2)``.
Loaders never download silently into odd places: a missing dataset raises :class:`DataError`
with the folder searched, the expected files and where to get them.
"""

from __future__ import annotations

import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
IMAGENET_URL = "https://image-net.org/download-images"
IMAGENET32_TRAIN = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
IMAGENET32_VAL = ("val_data.npz",)


class DataError(ValueError):
    """A dataset is missing or malformed; the message says what was expected and where."""


def uint8_to_float(images: np.ndarray | Tensor) -> Tensor:
    """uint8 images (any layout) -> float32 in ``[-1, 1]``, same layout."""
    return torch.as_tensor(images).float().div_(127.5).sub_(1.0)


def to_uint8(x: Tensor) -> Tensor:
    """Float images ``(N, C, H, W)`` in ``[-1, 1]`` -> uint8 ``(N, C, H, W)`` in ``[0, 255]``.

    The layout is kept channel-first, as torch-fidelity expects; values are clamped and rounded.
    """
    return ((x.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- 2D toys


def checkerboard(n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` points uniform on the black squares of a 4x4 checkerboard on ``[-4, 4]^2``.

    The squares have side 2; a point ``(x, y)`` is kept iff ``floor(x / 2) + floor(y / 2)`` is
    even, so 8 of the 16 squares are filled. Returns float32 ``(n, 2)``.
    """
    u = torch.rand(n, 2, generator=generator)
    cell = torch.randint(0, 8, (n,), generator=generator)
    row = cell // 2  # 0..3
    col = 2 * (cell % 2) + row % 2  # 0..3, with row + col even
    corner = torch.stack([col, row], dim=1).float() * 2.0 - 4.0
    return corner + 2.0 * u


# --------------------------------------------------------------------------- CIFAR-10


def _cifar_missing_message(folder: Path, missing: list[str], reason: str = "") -> str:
    """One clear message on where CIFAR-10 must live and where to get it."""
    why = f" (download failed: {reason})" if reason else ""
    return (
        f"CIFAR-10 not found{why}: expected the folder {folder} holding "
        f"{', '.join(CIFAR10_TRAIN + CIFAR10_TEST)}; missing: {', '.join(missing)}. "
        f"Download {CIFAR10_URL} and extract it into {folder.parent} so that "
        f"{folder.parent / CIFAR10_DIR} exists."
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """One CIFAR-10 python pickle batch -> uint8 ``(N, 3, 32, 32)`` and int64 labels ``(N,)``.

    The labels are ``None`` when the key ``labels`` is missing or not N ints in ``[0, 10)``.
    """
    with open(path, "rb") as f:
        entry: dict[Any, Any] = pickle.load(f, encoding="bytes")
    data = entry.get(b"data", entry.get("data"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (3072,):
        raise DataError(f"{path}: key 'data' must be uint8 (N, 3072) as in {CIFAR10_URL}")
    y = np.asarray(entry.get(b"labels", entry.get("labels", [])))
    ok = y.shape == (len(data),) and y.dtype.kind in "iu" and bool(((y >= 0) & (y < 10)).all())
    return data.reshape(-1, 3, 32, 32), y.astype(np.int64) if ok else None


def cifar10(root: str | Path, train: bool = True, download: bool = True) -> Tensor:
    """CIFAR-10 images as float32 ``(N, 3, 32, 32)`` in ``[-1, 1]`` (50,000 train / 10,000 test).

    Reads the python pickle batches under ``root/cifar-10-batches-py`` directly. If they are
    missing and ``download`` is true, torchvision downloads them first; any failure (offline,
    bad archive, torchvision absent) becomes a :class:`DataError`.
    """
    files = _cifar_files(root, train, download)
    return uint8_to_float(np.concatenate([_read_cifar_batch(p)[0] for p in files]))


def cifar10_check(root: str | Path, train: bool = True, download: bool = True) -> Path:
    """The CIFAR-10 batch folder under ``root`` (downloaded first when missing and allowed)."""
    return _cifar_files(root, train, download)[0].parent


def cifar10_labeled(
    root: str | Path, train: bool = True, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 as stored: uint8 images ``(N, 3, 32, 32)`` and int64 class labels ``(N,)``.

    Same files, search and download behaviour as :func:`cifar10`.
    """
    images, labels = [], []
    for path in _cifar_files(root, train, download):
        x, y = _read_cifar_batch(path)
        if y is None:
            raise DataError(
                f"{path}: key 'labels' must be {len(x)} ints in [0, 10) ({CIFAR10_URL})"
            )
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def _cifar_files(root: str | Path, train: bool, download: bool) -> list[Path]:
    """The batch files of a split, downloaded by torchvision first if missing and allowed.

    Any failure (offline, bad archive, torchvision absent) becomes a :class:`DataError`.
    """
    folder = Path(root) / CIFAR10_DIR
    names = CIFAR10_TRAIN if train else CIFAR10_TEST

    def missing() -> list[str]:
        return [n for n in names if not (folder / n).is_file()]

    if missing() and download:
        try:
            from torchvision.datasets import CIFAR10

            CIFAR10(str(root), train=train, download=True)
        except Exception as err:  # offline, truncated archive, no torchvision: all the same
            reason = f"{type(err).__name__}: {err}"
            raise DataError(_cifar_missing_message(folder, missing(), reason)) from None
    if missing():
        raise DataError(_cifar_missing_message(folder, missing()))
    return [folder / n for n in names]


# --------------------------------------------------------------------------- ImageNet-32


def imagenet32_folder(root: str | Path, train: bool = True) -> Path:
    """The folder holding the ImageNet-32 npz batches (``root`` or its official subfolder)."""
    names = IMAGENET32_TRAIN if train else IMAGENET32_VAL
    root = Path(root)
    sub = root / ("Imagenet32_train_npz" if train else "Imagenet32_val_npz")
    folder = next((d for d in (root, sub) if all((d / n).is_file() for n in names)), None)
    if folder is None:
        missing = [n for n in names if not (root / n).is_file()]
        raise DataError(
            f"ImageNet-32 not found: searched {root} and {sub} for {', '.join(names)} "
            f"(missing in {root}: {', '.join(missing)}). Download 'Downsampled ImageNet 32x32' "
            f"(npz) from {IMAGENET_URL} and unpack the files into {root}."
        )
    return folder


def imagenet32(root: str | Path, train: bool = True) -> Tensor:
    """Downsampled ImageNet 32x32 as float32 ``(N, 3, 32, 32)`` in ``[-1, 1]``.

    Expects the official npz batches (``train_data_batch_1..10.npz`` or ``val_data.npz``, key
    ``data`` uint8 ``(N, 3072)`` in channel-first order) in ``root`` or in
    ``root/Imagenet32_train_npz`` / ``root/Imagenet32_val_npz``. The full train split is
    1,281,167 images, about 15.7 GB as float32.
    """
    names = IMAGENET32_TRAIN if train else IMAGENET32_VAL
    folder = imagenet32_folder(root, train)
    arrays = []
    for name in names:
        with np.load(folder / name, allow_pickle=False) as z:
            data = z["data"] if "data" in z.files else None
        if data is None or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{folder / name}: expected key 'data' uint8 (N, 3072), CHW order")
        arrays.append(data)
    out = torch.empty(sum(len(a) for a in arrays), 3, 32, 32)
    start = 0
    for a in arrays:  # fill in place: peak memory is the float result plus the uint8 batches
        out[start : start + len(a)] = uint8_to_float(a.reshape(-1, 3, 32, 32))
        start += len(a)
    return out


# --------------------------------------------------------------------------- npz folder


NPZ_EXPECTED = (
    "expected key 'images': uint8 (N, H, W, C) in [0, 255] or floats in [0, 1], N >= 1, C in {1, 3}"
)
_UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def npz_file(path: Path) -> Path:
    """``path`` itself, or the one ``.npz`` in the folder ``path``."""
    if path.is_dir():
        found = sorted(path.glob("*.npz"))
        if len(found) != 1:
            raise DataError(f"{path}: expected exactly one .npz file, found {len(found)}")
        path = found[0]
    if not path.is_file():
        raise DataError(f"{path}: no such .npz file")
    return path


def npz_header(path: Path, key: str = "images") -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the array ``key`` of an npz, read from its header alone."""
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0}
            shape, _, dtype = read.get(version, np.lib.format.read_array_header_2_0)(f)
    except _UNREADABLE as err:
        raise DataError(f"{path}: not a readable .npz with key {key!r} ({err})") from None
    return tuple(shape), dtype


def read_npz(path: Path, keys: tuple[str, ...], expected: str = NPZ_EXPECTED) -> list[np.ndarray]:
    """The arrays ``keys`` of the npz ``path``; an unreadable file or a missing key is a DataError
    naming it and ``expected``."""
    if not zipfile.is_zipfile(path):  # np.load would try a plain .npy, then pickle
        raise DataError(f"{path}: not an .npz file (not a zip archive); {expected}")
    try:
        with open(path, "rb") as f:
            z = np.load(f, allow_pickle=False)
            found = list(getattr(z, "files", []))
            arrays = [z[k] for k in keys if k in found]
    except _UNREADABLE as err:
        raise DataError(f"{path}: not a readable .npz ({err}); {expected}") from None
    missing = [k for k in keys if k not in found]
    if missing:
        raise DataError(f"{path}: no key {missing[0]!r} (keys: {found}); {expected}")
    return arrays


def check_image_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` if it is (N >= 1, H >= 1, W >= 1, C in {1, 3}), else a DataError naming it."""
    if len(shape) != 4 or shape[-1] not in (1, 3) or min(shape[:3]) < 1:
        raise DataError(f"{path}: 'images' has shape {tuple(shape)}; {NPZ_EXPECTED}")
    return tuple(shape)


def npz_array(path: str | Path) -> tuple[np.ndarray, str]:
    """The checked ``images`` of an npz (the file, or a folder holding exactly one) and a note:
    empty for uint8, else the line that says how floats in [0, 1] are read."""
    path = npz_file(Path(path))
    (images,) = read_npz(path, ("images",))
    check_image_shape(path, images.shape)
    if images.dtype == np.uint8:
        return images, ""
    if images.dtype.kind != "f":
        raise DataError(f"{path}: 'images' has dtype {images.dtype}; {NPZ_EXPECTED}")
    lo, hi = float(images.min()), float(images.max())
    if not (0 <= lo and hi <= 1):  # NaN fails too
        raise DataError(
            f"{path}: 'images' are {images.dtype} in [{lo:.4g}, {hi:.4g}]; {NPZ_EXPECTED}"
        )
    return images, f"{path}: 'images' are {images.dtype} in [0, 1]; read as 2 x - 1 in [-1, 1]"


def npz_images(path: str | Path) -> Tensor:
    """Images from an ``.npz`` with key ``images`` ``(N, H, W, C)``, ``C`` in {1, 3}: uint8 in
    [0, 255] or floats in [0, 1] (see :func:`npz_array`). Returns float32 ``(N, C, H, W)`` in
    ``[-1, 1]``."""
    images, _ = npz_array(path)
    if images.dtype == np.uint8:
        x = uint8_to_float(images)
    else:
        x = torch.from_numpy(images.astype(np.float32)).mul_(2.0).sub_(1.0)
    return x.permute(0, 3, 1, 2).contiguous()
