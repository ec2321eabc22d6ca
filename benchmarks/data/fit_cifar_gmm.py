"""Fit the cifar-gmm mixture to a copy of CIFAR-10, and the oracle a run uses.

    python -m benchmarks.data.fit_cifar_gmm --data-root PATH [--split test] [--out FILE]

``PATH`` is a folder holding torchvision's ``cifar-10-batches-py`` (what
``torchvision.datasets.CIFAR10(PATH, download=True)`` leaves; nothing is downloaded here), or an
``.npz`` with uint8 ``images`` (N, 32, 32, 3) or (N, 3, 32, 32) and integer ``labels`` (N,)
(``--split`` is then ignored). Every resolution of ``cifar_gmm.RESOLUTIONS`` is fitted at its
``MAX_RANK`` and written to ``--out`` (default: the committed ``cifar_gmm.FIT_FILE``, which runs
read) with U stored in ``STORE_DTYPES`` and the source's content hash. A run with
``--data-root PATH`` refits on PATH instead (a folder: its training split), at the run's
resolution and rank only, cached in ``cifar-gmm-cache`` beside the data.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.base.cli import OneLineParser
from benchmarks.data import cifar_gmm as C
from benchmarks.data import loaders as D
from benchmarks.data.loaders import DataError

#: dtype of the stored U per resolution. float64 at 8 keeps the small budgets' oracle exactly the
#: fit; float32 (16) and float16 (32) move the exact flow map by ~1e-8 and ~1e-4 per pixel (rms)
STORE_DTYPES = {8: np.float64, 16: np.float32, 32: np.float16}
SOURCE_EXPECTED = (
    f"expected a folder holding {D.CIFAR10_DIR}, or an .npz with uint8 'images' (N, 32, 32, 3) "
    "or (N, 3, 32, 32) and integer 'labels' (N,)"
)


def _folder(root: Path) -> Path:
    """The folder holding ``cifar-10-batches-py`` (``root``, or its parent if it is that)."""
    return root.parent if root.name == D.CIFAR10_DIR else root


def check_source(root: Path, split: str = "test") -> None:
    """A cheap check (file names, npz headers) that ``root`` is a CIFAR-10 copy to fit on."""
    if root.is_dir():
        D.cifar10_check(_folder(root), train=split == "train", download=False)
        return
    if not root.is_file():
        raise DataError(f"{root}: no such file or folder; {SOURCE_EXPECTED}")
    (shape, dtype), (lshape, ldtype) = (D.npz_header(root, k) for k in ("images", "labels"))
    layout_ok = len(shape) == 4 and (shape[1:] == (32, 32, 3) or shape[1:] == (3, 32, 32))
    if dtype != np.uint8 or not layout_ok or lshape != shape[:1] or ldtype.kind not in "iu":
        found = f"images {dtype} {shape}, labels {ldtype} {lshape}"
        raise DataError(f"{root}: {found}; {SOURCE_EXPECTED}")


def load_source(root: Path, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(N, 3, 32, 32)`` images and int64 labels ``(N,)`` of a CIFAR-10 copy."""
    check_source(root, split)
    if root.is_dir():
        return D.cifar10_labeled(_folder(root), train=split == "train", download=False)
    images, labels = D.read_npz(root, ("images", "labels"), SOURCE_EXPECTED)
    return C.to_chw(images), labels.astype(np.int64)


def fit_all(
    images: np.ndarray, labels: np.ndarray, resolutions: tuple[int, ...] = C.RESOLUTIONS
) -> dict[int, dict[str, np.ndarray]]:
    """``{resolution: spectra(...)}`` at each resolution's ``MAX_RANK``."""
    return {r: C.spectra(images, labels, r, C.MAX_RANK[r]) for r in resolutions}


def _info(m: Any, source: str, digest: str, resolution: int, rank: int) -> dict[str, Any]:
    return dict(
        source=source,
        fit_sha=digest[:12],
        resolution=resolution,
        rank=rank,
        variance_captured=[round(float(v), 4) for v in C.variance_captured(m)],
        weights=[round(float(w), 4) for w in m.weights],
    )


def oracle(resolution: int, rank: int, data_root: str | None = None) -> tuple[Any, dict]:
    """The mixture a run uses and its description: the committed fit, or with ``data_root`` a
    fit of that copy's training split (cached beside it)."""
    if not data_root:
        m, meta = C.committed(resolution, rank), C.load_fit(C.FIT_FILE)[1]
        return m, _info(m, meta.get("name", "committed fit"), meta["source"], resolution, rank)
    root = Path(data_root)
    images, labels = load_source(root, "train")
    cache = (root if root.is_dir() else root.parent) / "cifar-gmm-cache"
    m = C.fit_cached(images, labels, resolution, rank, cache)
    name = "CIFAR-10 train" if root.is_dir() else root.name
    return m, _info(m, name, C.source_hash(images, labels), resolution, rank)


def check(resolution: int, rank: int, data_root: str | None = None) -> None:
    """What a cifar-gmm run needs, checked before anything is written (DataError otherwise)."""
    if resolution not in C.RESOLUTIONS:
        allowed = ", ".join(map(str, C.RESOLUTIONS))
        raise DataError(f"cifar-gmm: data.resolution={resolution}; allowed: {allowed}")
    if not data_root:
        C.committed(resolution, rank)
        return
    check_source(Path(data_root), "train")
    if not 1 <= rank < 3 * resolution**2:
        raise DataError(f"cifar-gmm: data.rank={rank}; allowed: 1 to {3 * resolution**2 - 1}")


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m benchmarks.data.fit_cifar_gmm", description=__doc__)
    p.add_argument("--data-root", required=True, type=Path, help="CIFAR-10 folder or .npz")
    p.add_argument("--split", default="test", choices=("test", "train"), help="of a folder")
    p.add_argument("--out", type=Path, default=C.FIT_FILE, help="fit file to write")
    p.add_argument("--name", help="the source's description kept in the file (default: PATH's)")
    p.add_argument("--resolutions", default=",".join(map(str, C.RESOLUTIONS)), help="comma list")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        res = tuple(int(r) for r in args.resolutions.split(","))
        if not res or any(r not in C.RESOLUTIONS for r in res):
            raise ValueError(f"allowed: {', '.join(map(str, C.RESOLUTIONS))}")
    except ValueError as err:
        print(f"error: bad --resolutions {args.resolutions!r}: {err}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        images, labels = load_source(args.data_root, args.split)
        fits = fit_all(images, labels, res)
    except ValueError as err:  # DataError, or a class too small for its rank
        print(f"error: {err}", file=sys.stderr)
        return 2
    default = f"{args.data_root.name} ({args.split})" if args.data_root.is_dir() else None
    name = args.name or default or args.data_root.name
    digest = C.source_hash(images, labels)
    out = C.save_fit(args.out, fits, STORE_DTYPES, source=digest, name=name, n_images=len(images))
    held = ", ".join(f"{r}x{r} rank {C.MAX_RANK[r]}" for r in res)
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.0f} s: "
        f"{len(fits[res[0]]['counts'])} classes of {len(images)} images ({name}, sha256 "
        f"{digest[:12]}), {held}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
