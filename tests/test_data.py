"""Data loaders on tiny fakes in the official on-disk formats, and the resumable sampler."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.data import loaders as D
from benchmarks.data.batches import BatchSampler
from benchmarks.data.loaders import (
    DataError,
    checkerboard,
    cifar10,
    cifar10_labeled,
    imagenet32,
    npz_images,
    to_uint8,
)


def _known_images(n: int, c: int = 3, size: int = 32) -> np.ndarray:
    """uint8 (n, c, size, size) whose value encodes (image, channel, row, col)."""
    i, ch, h, w = np.meshgrid(*(np.arange(k) for k in (n, c, size, size)), indexing="ij")
    return ((7 * i + 80 * ch + 3 * h + w) % 256).astype(np.uint8)


def _expected(images_nchw: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images_nchw.astype(np.float32) / 127.5 - 1.0)


# --------------------------------------------------------------------------- CIFAR-10


def _write_fake_cifar(root: Path, per_batch: int = 2) -> dict[str, np.ndarray]:
    """Write the python-pickle layout of cifar-10-python.tar.gz with a few images per batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for k, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        images = np.roll(_known_images(per_batch), k, axis=0) + k
        entry = {
            b"batch_label": name.encode(),
            b"labels": list(range(per_batch)),
            b"data": images.reshape(per_batch, 3072),  # rows: R plane, G plane, B plane
            b"filenames": [f"{name}_{j}.png".encode() for j in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
        written[name] = images
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"c%d" % i for i in range(10)]}, f)
    return written


def test_cifar10_reads_fake_batches(tmp_path: Path) -> None:
    written = _write_fake_cifar(tmp_path)
    train = cifar10(tmp_path, train=True, download=False)
    expected = np.concatenate([written[f"data_batch_{i}"] for i in range(1, 6)])
    assert train.shape == (10, 3, 32, 32) and train.dtype == torch.float32
    torch.testing.assert_close(train, _expected(expected))
    test = cifar10(str(tmp_path), train=False, download=True)  # present: no download attempted
    torch.testing.assert_close(test, _expected(written["test_batch"]))


def test_cifar10_labeled_reads_uint8_and_labels(tmp_path: Path) -> None:
    written = _write_fake_cifar(tmp_path)
    images, labels = cifar10_labeled(tmp_path, train=False, download=False)
    assert images.dtype == np.uint8 and images.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(images, written["test_batch"])
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1]
    images, labels = cifar10_labeled(tmp_path, train=True, download=False)
    assert images.shape == (10, 3, 32, 32) and labels.tolist() == [0, 1] * 5
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:  # no labels
        pickle.dump({b"data": written["test_batch"].reshape(2, 3072)}, f)
    with pytest.raises(DataError, match="labels"):
        cifar10_labeled(tmp_path, train=False, download=False)
    assert cifar10(tmp_path, train=False, download=False).shape == (2, 3, 32, 32)  # images only


def test_cifar10_missing_raises_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cifar-10-batches-py") as info:
        cifar10(tmp_path, download=False)
    assert "cifar-10-python.tar.gz" in str(info.value)


def test_cifar10_download_failure_is_wrapped(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match="no network") as info:
        cifar10(tmp_path, download=True)
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_cifar10_malformed_batch(tmp_path: Path) -> None:
    _write_fake_cifar(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8)}, f)
    with pytest.raises(DataError, match="test_batch"):
        cifar10(tmp_path, train=False, download=False)


# --------------------------------------------------------------------------- ImageNet-32


def _write_imagenet32(folder: Path, names: tuple[str, ...], n: int = 3) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    images = _known_images(n)
    for name in names:
        data = images.reshape(n, 3072)  # official layout: CHW flattened per row
        np.savez(folder / name, data=data, labels=np.arange(1, n + 1))
    return images


def test_imagenet32_val_in_subfolder(tmp_path: Path) -> None:
    images = _write_imagenet32(tmp_path / "Imagenet32_val_npz", D.IMAGENET32_VAL)
    out = imagenet32(tmp_path, train=False)
    torch.testing.assert_close(out, _expected(images))
    # channel-first unflattening: channel c of image i at (h, w) is 7i + 80c + 3h + w
    assert to_uint8(out)[1, 2, 4, 5].item() == 7 + 160 + 12 + 5


def test_imagenet32_train_in_root(tmp_path: Path) -> None:
    images = _write_imagenet32(tmp_path, D.IMAGENET32_TRAIN, n=2)
    out = imagenet32(tmp_path, train=True)
    assert out.shape == (20, 3, 32, 32)
    torch.testing.assert_close(out[-2:], _expected(images))


def test_imagenet32_missing(tmp_path: Path) -> None:
    _write_imagenet32(tmp_path, D.IMAGENET32_TRAIN[:3])
    with pytest.raises(DataError, match="train_data_batch_10.npz") as info:
        imagenet32(tmp_path, train=True)
    assert str(tmp_path) in str(info.value) and "image-net.org" in str(info.value)


# --------------------------------------------------------------------------- npz folder


@pytest.mark.parametrize("channels", [1, 3])
def test_npz_images(tmp_path: Path, channels: int) -> None:
    nchw = _known_images(4, c=channels, size=8)
    np.savez(tmp_path / "imgs.npz", images=nchw.transpose(0, 2, 3, 1), labels=np.zeros(4))
    for path in (tmp_path / "imgs.npz", tmp_path):  # the file, or its folder
        torch.testing.assert_close(npz_images(path), _expected(nchw))


@pytest.mark.parametrize(
    "arrays, problem",
    [
        ({"pictures": np.zeros((2, 8, 8, 3), np.uint8)}, "no key 'images'"),
        ({"images": np.full((2, 8, 8, 3), 2.0, np.float32)}, r"float32 in \[2, 2\]"),
        ({"images": np.full((2, 8, 8, 3), np.nan, np.float32)}, r"float32 in \[nan, nan\]"),
        ({"images": np.zeros((2, 8, 8, 3), np.int64)}, "dtype int64"),
        ({"images": np.zeros((0, 8, 8, 3), np.uint8)}, "shape"),
        ({"images": np.zeros((2, 8, 8), np.uint8)}, "shape"),
        ({"images": np.zeros((2, 3, 8, 8), np.uint8)}, "shape"),
    ],
)
def test_npz_images_malformed(tmp_path: Path, arrays: dict, problem: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=problem) as info:
        npz_images(path)
    assert "bad.npz" in str(info.value) and "(N, H, W, C)" in str(info.value)


def test_npz_images_bad_files(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="junk.npz"):
        npz_images(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="no such"):
        npz_images(tmp_path / "absent.npz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="exactly one .npz file, found 0"):
        npz_images(empty)
    (empty / "a.npz").write_bytes(b"")
    (empty / "b.npz").write_bytes(b"")
    with pytest.raises(DataError, match="found 2"):
        npz_images(empty)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_npz_float_images_in_unit_range(tmp_path: Path, dtype: type) -> None:
    """Floats in [0, 1] are read as 2 x - 1, and said so (the note names the file and dtype)."""
    x = np.random.default_rng(0).random((3, 4, 4, 3)).astype(dtype)
    x[0, 0, 0] = (0.0, 1.0, 0.5)
    np.savez(tmp_path / "f.npz", images=x)
    expected = torch.from_numpy(x.astype(np.float32) * 2 - 1).permute(0, 3, 1, 2)
    torch.testing.assert_close(npz_images(tmp_path / "f.npz"), expected)
    note = D.npz_array(tmp_path / "f.npz")[1]
    assert "f.npz" in note and np.dtype(dtype).name in note and "[0, 1]" in note
    assert D.npz_array(tmp_path / "f.npz")[0].dtype == dtype


def test_to_uint8_roundtrip() -> None:
    u = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(to_uint8(D.uint8_to_float(u)), u)
    assert to_uint8(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]


# --------------------------------------------------------------------------- 2D toys


def test_checkerboard() -> None:
    x = checkerboard(4000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2) and x.dtype == torch.float32
    assert x.abs().max() <= 4
    cells = torch.floor(x / 2).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    assert len({tuple(c) for c in cells.tolist()}) == 8
    same = checkerboard(4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, same)


# --------------------------------------------------------------------------- sampler


def test_sampler_covers_each_epoch_and_is_deterministic() -> None:
    data = torch.arange(10).float()
    a, b = BatchSampler(data, 4, seed=3), BatchSampler(data, 4, seed=3)
    stream = torch.cat([a.next() for _ in range(5)])  # 20 items = 2 epochs, batches straddle
    assert torch.equal(stream, torch.cat([next(b) for _ in range(5)]))
    assert sorted(stream[:10].tolist()) == sorted(stream[10:].tolist()) == list(range(10))
    other = BatchSampler(data, 4, seed=4)
    assert not torch.equal(stream, torch.cat([other.next() for _ in range(5)]))


def test_sampler_batch_larger_than_data() -> None:
    s = BatchSampler(torch.arange(3), 7, seed=0)
    assert s.next().shape == (7,) and s.state_dict()["epoch"] == 2


@pytest.mark.parametrize("hflip", [False, True])
def test_sampler_resume(hflip: bool) -> None:
    data = torch.randn(13, 1, 2, 5)
    run = BatchSampler(data, 4, seed=7, hflip=hflip)
    for _ in range(6):
        run.next()
    state = run.state_dict()
    expected = [run.next() for _ in range(5)]
    fresh = BatchSampler(data, 4, seed=7, hflip=hflip)
    fresh.load_state_dict(state)
    assert all(torch.equal(e, fresh.next()) for e in expected)


def test_sampler_hflip_flips_some() -> None:
    data = torch.arange(40.0).reshape(4, 1, 2, 5)
    batch = BatchSampler(data, 64, seed=0, hflip=True).next()
    flipped = sum(any(torch.equal(img, d.flip(-1)) for d in data) for img in batch)
    assert 0 < flipped < 64
    assert all(
        any(torch.equal(img, d) or torch.equal(img, d.flip(-1)) for d in data) for img in batch
    )


def test_sampler_rejects_other_seed() -> None:
    state = BatchSampler(torch.arange(5), 2, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        BatchSampler(torch.arange(5), 2, seed=2).load_state_dict(state)
