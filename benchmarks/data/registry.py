"""The dataset registry: what each dataset is, in one place.

``DATASETS[name]`` gives its kind (``points`` or ``images``), its per-sample shape (known without
loading any data), whether an exact oracle exists and which teacher distillation uses by default,
a cheap ``check`` that the data can be had (run before anything is written), and ``load`` that
builds the :class:`Problem` of one seed. Presets (budgets, networks) live in
``configs/<name>.yaml``; everything else a caller needs to know about a dataset comes from here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmarks.base.schema import RunConfig
from benchmarks.data import loaders as D
from benchmarks.data.loaders import DataError
from unify.exact import GaussianMixture


@dataclass
class Problem:
    """Training data, held-out data and the exact oracle of one dataset and seed."""

    name: str
    train: Tensor  # (N, ...) float32
    test: Tensor | None  # held-out points (2D metrics)
    oracle: Any | None  # exact velocity and flow map (unify.exact), when known
    info: dict[str, Any] = field(default_factory=dict)  # e.g. fitted oracle parameters

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.train.ndim == 4


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # "points" | "images"
    shape: Callable[[RunConfig], tuple[int, ...]]
    load: Callable[[RunConfig, int], Problem]
    has_oracle: bool = False
    default_teacher: str = "auto"  # "exact": the oracle's velocity; "auto": a trained fm
    check: Callable[[RunConfig], None] = lambda cfg: None
    doc: str = ""
    #: per-coordinate std of the data x1, the scale sigma-based recipes read (``unify.edm``);
    #: 0.5 for images in [-1, 1] (EDM's value; the CIFAR-10 test set measures 0.500)
    sigma_data: float = 0.5


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} registered twice")
    DATASETS[spec.name] = spec
    return spec


def get(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; allowed: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def _gens(seed: int) -> tuple[torch.Generator, torch.Generator]:
    """Generators of the training and held-out draws of a 2D set."""
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(1_000_003 + seed)


# ------------------------------------------------------------------------------ 2D sets
def gmm_oracle() -> GaussianMixture:
    """Eight Gaussians on a ring of radius 4, std 0.4 (the README's reference problem)."""
    return GaussianMixture.ring(8, radius=4.0, std=0.4)


#: the ring's per-coordinate std: sqrt(radius^2 / 2 + std^2) = sqrt(8.16)
GMM_SIGMA_DATA = 8.16**0.5


def _load_gmm(cfg: RunConfig, seed: int) -> Problem:
    oracle, (g_train, g_test) = gmm_oracle(), _gens(seed)
    train, test = oracle.sample(cfg.data.n_train, g_train), oracle.sample(cfg.data.n_test, g_test)
    return Problem("gmm", train, test, oracle)


def _load_checkerboard(cfg: RunConfig, seed: int) -> Problem:
    g_train, g_test = _gens(seed)
    train = D.checkerboard(cfg.data.n_train, g_train)
    return Problem("checkerboard", train, D.checkerboard(cfg.data.n_test, g_test), None)


register(
    DatasetSpec(
        "gmm",
        "points",
        lambda cfg: (2,),
        _load_gmm,
        True,
        "exact",
        doc="8 Gaussians on a ring",
        sigma_data=GMM_SIGMA_DATA,
    )
)
register(
    DatasetSpec(
        "checkerboard",
        "points",
        lambda cfg: (2,),
        _load_checkerboard,
        doc="2D checkerboard",
        sigma_data=8 / 12**0.5,  # each coordinate uniform on [-4, 4]
    )
)


# ------------------------------------------------------------------------------ image sets
def _root(cfg: RunConfig) -> Path:
    return Path(cfg.data_root) if cfg.data_root else Path("data")


def _subset(images: Tensor, cfg: RunConfig) -> Tensor:
    n = cfg.data.n_train
    return images[:n] if n and n < len(images) else images


def _image_loader(name: str, read: Callable[[Path], Tensor]) -> Callable[[RunConfig, int], Problem]:
    def load(cfg: RunConfig, seed: int) -> Problem:
        return Problem(name, _subset(read(_root(cfg)), cfg), None, None)

    return load


def _npz_path(cfg: RunConfig) -> Path:
    if not cfg.data_root:
        raise DataError("dataset 'npz' needs --data-root PATH to an .npz file with 'images'")
    return D.npz_file(Path(cfg.data_root))


def _npz_shape(cfg: RunConfig) -> tuple[int, ...]:
    n, h, w, c = D.check_image_shape(_npz_path(cfg), D.npz_header(_npz_path(cfg))[0])
    return (c, h, w)


def _check_npz(cfg: RunConfig) -> None:
    """The whole ``images`` array is read and checked (key, shape, N, dtype, values); floats in
    [0, 1] are accepted and said so on one line (stderr)."""
    note = D.npz_array(_npz_path(cfg))[1]
    if note:
        print(f"note: {note}", file=sys.stderr)


# 32x32 image folders: (name, reader of the images, cheap check, description)
for _name, _read, _check, _doc in (
    ("cifar10", lambda root: D.cifar10(root, train=True), D.cifar10_check,
     "CIFAR-10 train set (torchvision download into --data-root)"),
    ("imagenet32", lambda root: D.imagenet32(root, train=True), D.imagenet32_folder,
     "ImageNet 32x32 (official npz batches in --data-root)"),
):  # fmt: skip
    register(
        DatasetSpec(
            _name,
            "images",
            lambda cfg: (3, 32, 32),
            _image_loader(_name, _read),
            check=lambda cfg, _check=_check: _check(_root(cfg)) and None,
            doc=_doc,
        )
    )
register(
    DatasetSpec(
        "npz",
        "images",
        _npz_shape,
        lambda cfg, seed: Problem("npz", _subset(D.npz_images(_npz_path(cfg)), cfg), None, None),
        check=_check_npz,
        doc="any npz with 'images' (N, H, W, C): uint8, or floats in [0, 1]",
    )
)


# ------------------------------------------------------------------------------ image oracle
def _load_cifar_gmm(cfg: RunConfig, seed: int) -> Problem:
    """Training images drawn from the fitted mixture (its exact flow map is the ground truth)."""
    from benchmarks.data import fit_cifar_gmm as F

    oracle, info = F.oracle(cfg.data.resolution, cfg.data.rank, cfg.data_root)
    train = oracle.sample(cfg.data.n_train, torch.Generator().manual_seed(seed)).float()
    return Problem("cifar-gmm", train, None, oracle, info)


def _check_cifar_gmm(cfg: RunConfig) -> None:
    """The committed fit holds the resolution and rank, or ``--data-root`` is a CIFAR-10 copy."""
    from benchmarks.data import fit_cifar_gmm as F

    F.check(cfg.data.resolution, cfg.data.rank, cfg.data_root)


register(
    DatasetSpec(
        "cifar-gmm",
        "images",
        lambda cfg: (3, cfg.data.resolution, cfg.data.resolution),
        _load_cifar_gmm,
        has_oracle=True,
        default_teacher="exact",
        check=_check_cifar_gmm,
        doc="a low-rank Gaussian mixture fitted to CIFAR-10 classes: an exact image oracle",
    )
)
