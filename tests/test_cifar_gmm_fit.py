"""The committed cifar-gmm fit (shapes, dtypes, source hash) and the command that refits it from a
CIFAR-10 copy (an npz, or torchvision's python batches), on small synthetic images."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.data import cifar_gmm as C
from benchmarks.data import fit_cifar_gmm as F
from benchmarks.data.loaders import CIFAR10_DIR, DataError


def synthetic(n_per_class: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 32, 32, 3) images of 3 classes (labels 1, 4, 7), each with its own mean colour
    and smooth random structure."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([1, 4, 7], n_per_class)
    rng.shuffle(labels)
    grid = np.linspace(0, 1, 32)
    waves = np.stack([np.sin(np.pi * (k + 1) * grid) for k in range(5)])  # (5, 32)
    coef = rng.normal(size=(len(labels), 5, 5, 3)) * (1 + labels[:, None, None, None] / 4)
    x = np.einsum("nijc,ih,jw->nhwc", coef, waves, waves) * 12 + 20 * labels[:, None, None, None]
    x = x + 60 + 8 * rng.normal(size=x.shape)
    return np.clip(x, 0, 255).astype(np.uint8), labels


def test_the_committed_fit_holds_every_budget_resolution_and_rank() -> None:
    """Every (resolution, rank) of configs/cifar-gmm.yaml and the schema's default (16, 16)."""
    fits, meta = C.load_fit(C.FIT_FILE)
    assert C.FIT_FILE.stat().st_size < 4e6
    assert sorted(fits) == list(C.RESOLUTIONS) and meta["version"] == str(C.FIT_VERSION)
    assert len(meta["source"]) == 64 and meta["n_images"] == "10000" and "CIFAR-10" in meta["name"]
    for res, sp in fits.items():
        d, r = 3 * res * res, C.MAX_RANK[res]
        assert sp["counts"].tolist() == [1000] * 10
        assert sp["means"].shape == (10, d) and sp["U"].shape == (10, d, r)
        assert sp["eig"].shape == (10, r) and sp["trace"].shape == (10,)
        assert sp["U"].dtype == F.STORE_DTYPES[res] and sp["trace"].dtype == np.float64
        assert bool((np.diff(sp["eig"], axis=1) <= 0).all()), "eigenvalues descend"
    for res, rank in ((8, 4), (8, 8), (16, 16), (32, 32)):
        m = C.committed(res, rank)
        assert m.shape == (3, res, res) and m.rank == rank
        F.check(res, rank)
    with pytest.raises(DataError, match="8x8 up to rank 8"):
        F.check(8, 9)
    with pytest.raises(DataError, match="allowed: 8, 16, 32"):
        F.check(12, 4)


def test_oracle_of_a_run_reads_the_committed_fit() -> None:
    m, info = F.oracle(8, 4)
    assert info["fit_sha"] == C.load_fit(C.FIT_FILE)[1]["source"][:12]
    assert "CIFAR-10" in info["source"] and info["rank"] == 4 and len(info["weights"]) == 10
    assert m.sample(3, torch.Generator().manual_seed(0)).shape == (3, 3, 8, 8)


def test_refit_command_from_an_npz_round_trips(tmp_path: Path, capsys) -> None:
    images, labels = synthetic()
    np.savez(tmp_path / "copy.npz", images=images, labels=labels)
    out = tmp_path / "fit.npz"
    argv = ["--data-root", str(tmp_path / "copy.npz"), "--out", str(out), "--resolutions", "8"]
    assert F.main(argv) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "3 classes of 120 images" in printed[0], printed
    fits, meta = C.load_fit(out)
    assert sorted(fits) == [8] and meta["source"] == C.source_hash(images, labels)
    assert meta["name"] == "copy.npz"
    stored, direct = C.committed(8, 8, out), C.fit(images, labels, 8, 8)
    for name in ("weights", "means", "U", "lam", "s"):  # float64 at 8: bit for bit
        assert torch.equal(getattr(stored, name), getattr(direct, name)), name
    assert F.check_source(tmp_path / "copy.npz") is None


def _write_batch(path: Path, images_nhwc: np.ndarray, labels: np.ndarray) -> None:
    """One CIFAR-10 python pickle batch: uint8 (N, 3072) in channel-first order, label list."""
    data = images_nhwc.transpose(0, 3, 1, 2).reshape(len(images_nhwc), -1)
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": labels.tolist()}, f)


def test_refit_command_from_torchvision_layout(tmp_path: Path, capsys) -> None:
    images, labels = synthetic(36, seed=1)
    (tmp_path / CIFAR10_DIR).mkdir()
    _write_batch(tmp_path / CIFAR10_DIR / "test_batch", images, labels)
    out = tmp_path / "fit.npz"
    assert F.main(["--data-root", str(tmp_path), "--out", str(out), "--resolutions", "8"]) == 0
    fits, meta = C.load_fit(out)
    assert meta["source"] == C.source_hash(images, labels) and "test" in meta["name"]
    np.testing.assert_allclose(fits[8]["means"], C.spectra(images, labels, 8, 8)["means"])
    capsys.readouterr()
    bad = ["--data-root", str(tmp_path), "--split", "train", "--out", str(tmp_path / "x.npz")]
    assert F.main(bad) == 2  # no training batches: one line, nothing written
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "data_batch_1" in err and not (tmp_path / "x.npz").exists()
    )


@pytest.mark.parametrize(
    "arrays, text",
    [
        ({"images": np.zeros((4, 32, 32, 3), np.uint8)}, "labels"),
        ({"images": np.zeros((4, 32, 32, 3), np.float32), "labels": np.zeros(4)}, "float32"),
        ({"images": np.zeros((4, 16, 16, 3), np.uint8), "labels": np.zeros(4, int)}, "(4, 16, 16"),
        ({"images": np.zeros((4, 32, 32, 3), np.uint8), "labels": np.zeros(3, int)}, "(3,)"),
    ],
)
def test_refit_command_refuses_a_bad_copy(tmp_path: Path, capsys, arrays: dict, text: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    out = tmp_path / "fit.npz"
    assert F.main(["--data-root", str(tmp_path / "bad.npz"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and text in err and "bad.npz" in err, err
    assert not out.exists()
    assert F.main(["--data-root", str(tmp_path / "bad.npz"), "--resolutions", "8,12"]) == 2
    assert "--resolutions" in capsys.readouterr().err


def test_a_run_with_data_root_refits_that_copy(tmp_path: Path) -> None:
    images, labels = synthetic(30, seed=2)
    np.savez(tmp_path / "copy.npz", images=images, labels=labels)
    F.check(8, 4, str(tmp_path / "copy.npz"))
    m, info = F.oracle(8, 4, str(tmp_path / "copy.npz"))
    assert info["source"] == "copy.npz" and info["fit_sha"] == C.source_hash(images, labels)[:12]
    assert list((tmp_path / "cifar-gmm-cache").glob("*.npz")), "the fit is cached beside the data"
    assert torch.equal(m.U, C.fit(images, labels, 8, 4).U)
    with pytest.raises(DataError, match="allowed: 1 to 191"):
        F.check(8, 192, str(tmp_path / "copy.npz"))
    with pytest.raises(DataError, match=CIFAR10_DIR):
        F.check(8, 4, str(tmp_path))  # a folder without the batches


@pytest.mark.slow
def test_a_cifar_gmm_smoke_run_uses_the_committed_fit(tmp_path: Path) -> None:
    """``benchmarks.run --methods fm,lmd --dataset cifar-gmm --budget smoke`` with no data at all."""
    from benchmarks.base.rows import read_rows
    from benchmarks.run import main

    argv = ["--methods", "fm,lmd", "--dataset", "cifar-gmm", "--budget", "smoke", "--quiet"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    rows = read_rows(tmp_path / "cifar-gmm" / "metrics.csv")
    assert {"fm-euler", "lmd", "exact"} <= set(rows["method"])
    assert rows.loc[rows["note"] == "", "value"].notna().all()
    conf = json.loads((tmp_path / "cifar-gmm" / "runs" / "lmd-s0" / "config.json").read_text())
    assert conf["problem"]["fit_sha"] == C.load_fit(C.FIT_FILE)[1]["source"][:12]
