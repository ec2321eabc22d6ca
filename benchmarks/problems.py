"""A benchmark problem: training data, held-out data, an exact oracle where one exists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from benchmarks import data as D
from benchmarks.config import ConfigError, RunConfig
from unify.exact import GaussianMixture

TOY = ("gmm", "checkerboard")
IMAGES = ("cifar10", "imagenet32", "npz")


@dataclass
class Problem:
    name: str
    train: Tensor  # (N, ...) float32
    test: Tensor | None  # held-out points for 2D metrics
    oracle: GaussianMixture | None  # exact velocity and flow map, when known

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.train.ndim == 4


def gmm_oracle() -> GaussianMixture:
    """Eight Gaussians on a ring of radius 4, std 0.4 (DESIGN.md's reference problem)."""
    return GaussianMixture.ring(8, radius=4.0, std=0.4)


def load_problem(cfg: RunConfig, seed: int) -> Problem:
    """Build the problem of ``cfg.dataset``; 2D sets are drawn from seeds derived from ``seed``."""
    name, n = cfg.dataset, cfg.data.n_train
    train_gen = torch.Generator().manual_seed(seed)
    test_gen = torch.Generator().manual_seed(1_000_003 + seed)
    if name == "gmm":
        oracle = gmm_oracle()
        return Problem(
            name, oracle.sample(n, train_gen), oracle.sample(cfg.data.n_test, test_gen), oracle
        )
    if name == "checkerboard":
        return Problem(
            name, D.checkerboard(n, train_gen), D.checkerboard(cfg.data.n_test, test_gen), None
        )
    root = Path(cfg.data_root) if cfg.data_root else Path("data")
    if name == "cifar10":
        images = D.cifar10(root, train=True)
    elif name == "imagenet32":
        images = D.imagenet32(root, train=True)
    elif name == "npz":
        if not cfg.data_root:
            raise ConfigError("dataset 'npz' needs --data-root PATH to an .npz file with 'images'")
        images = D.npz_images(root)
    else:
        raise ConfigError(f"unknown dataset {name!r}; allowed: {', '.join(TOY + IMAGES)}")
    if n and n < len(images):
        images = images[:n]
    return Problem(name, images, None, None)
