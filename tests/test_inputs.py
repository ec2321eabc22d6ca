"""Every malformed input exits 2 with one line naming it, before anything is written; floats in
[0, 1] are accepted and said so; a folder whose every cell failed is reported as such (issue #23)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from benchmarks.config import Here, load_config
from benchmarks.report import collect
from benchmarks.run import main

U8 = np.zeros((4, 8, 8, 3), np.uint8)


def _npz(**arrays: np.ndarray) -> Callable[[Path], None]:
    return lambda path: np.savez(path, **arrays)


def _truncated(path: Path) -> None:
    np.savez(path, images=U8)
    path.write_bytes(path.read_bytes()[:200])


def _bad_crc(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:  # stored, not deflated: the bytes are there to flip
        z.writestr("images.npy", b"\x93NUMPY" + bytes(300))
    data = bytearray(path.read_bytes())
    data[100:110] = b"x" * 10
    path.write_bytes(bytes(data))


def _plain_npy(path: Path) -> None:
    with open(path, "wb") as f:  # np.save would append .npy to a path
        np.save(f, U8)


NPZ_CASES = {
    "floats 0-255": (_npz(images=np.full((4, 8, 8, 3), 200.0, np.float32)), "in [200, 200]"),
    "floats NaN": (_npz(images=np.full((4, 8, 8, 3), np.nan)), "float64 in [nan, nan]"),
    "int64": (_npz(images=U8.astype(np.int64)), "dtype int64"),
    "wrong key": (_npz(pictures=U8), "no key 'images'"),
    "3-D": (_npz(images=U8[..., 0]), "shape (4, 8, 8)"),
    "2 channels": (_npz(images=U8[..., :2]), "shape (4, 8, 8, 2)"),
    "N = 0": (_npz(images=U8[:0]), "shape (0, 8, 8, 3)"),
    "not a zip": (lambda p: p.write_bytes(b"not an npz at all"), "not an .npz file"),
    "truncated": (_truncated, "not an .npz file"),
    "bad CRC": (_bad_crc, "not a readable .npz"),
    "plain npy": (_plain_npy, "not an .npz file"),
}


def _exits_2(tmp_path: Path, capsys, argv: list[str], named: str) -> str:
    """``main(argv)`` exits 2, one line on stderr that starts ``error:`` and names ``named``,
    nothing under --out; returns the line."""
    out = tmp_path / "out"
    try:
        code = main(["--budget", "smoke", "--out", str(out), "--quiet", *argv])
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert named in err, err
    assert not out.exists(), "bad input must write nothing"
    return err


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
def test_malformed_npz_exits_2_writing_nothing(tmp_path: Path, capsys, case: str) -> None:
    make, text = NPZ_CASES[case]
    path = tmp_path / "images.npz"
    make(path)
    argv = ["--methods", "fm", "--dataset", "npz", "--data-root", str(path)]
    assert f"error: {path}: " in _exits_2(tmp_path, capsys, argv, text)


def test_float_images_in_unit_range_are_accepted_with_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "images.npz"
    np.savez(path, images=np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32))
    load_config("npz", "smoke", {"data_root": str(path)}, [], ["fm"], Here())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("note: ") and "float32 in [0, 1]" in err[0], err


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--methods", "fm,,lmd"], "'fm,,lmd'"),
        (["--methods", "fm,"], "'fm,'"),
        (["--methods", ",fm"], "',fm'"),
        (["--methods", "fm", "--nfe", "1,,2"], "--nfe '1,,2'"),
        (["--methods", "fm", "--nfe", "1,2,"], "--nfe '1,2,'"),
        (["--methods", "fm", "--seeds", "0,,1"], "--seeds '0,,1'"),
        (["--methods", "fm", "--seeds", "0,"], "--seeds '0,'"),
        (["--methods", "fm", "eval.nfe=1,,2"], "eval.nfe"),
    ],
)
def test_an_empty_entry_in_a_comma_list_exits_2(
    tmp_path: Path, capsys, argv: list[str], named: str
) -> None:
    err = _exits_2(tmp_path, capsys, [*argv, "--dataset", "gmm"], named)
    assert "an empty entry in the comma list" in err


@pytest.mark.parametrize(
    "extra, named",
    [
        (["data.rank=9"], "rank 9 needs a refit"),
        (["data.resolution=12"], "allowed: 8, 16, 32"),
        (["--data-root", "BAD"], "labels"),
    ],
)
def test_cifar_gmm_inputs_exit_2(tmp_path: Path, capsys, extra: list[str], named: str) -> None:
    bad = tmp_path / "copy.npz"
    np.savez(bad, images=np.zeros((4, 32, 32, 3), np.uint8))  # no labels
    argv = [
        "--methods",
        "fm",
        "--dataset",
        "cifar-gmm",
        *(str(bad) if a == "BAD" else a for a in extra),
    ]
    _exits_2(tmp_path, capsys, argv, named)


def test_a_folder_whose_every_cell_failed(tmp_path: Path, capsys) -> None:
    """The run and the report say so with a table of the failure notes, exit 1, no traceback."""
    argv = ["--methods", "fm", "--dataset", "checkerboard", "--budget", "smoke", "--quiet"]
    assert main([*argv, "--out", str(tmp_path), "train.lr=1e30", "train.clip=0"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    folder = tmp_path / "checkerboard"
    assert f"{folder}: every cell failed" in out and "| fm-s0 | diverged (step " in out, out
    assert "diverged (step " in (folder / "table.md").read_text()
    (folder / "metrics.csv").unlink()  # the report alone, from the cell folders
    assert collect.main([str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "| fm-s0 | diverged (step " in out
    assert "every cell failed" in out and (folder / "metrics.csv").exists()
