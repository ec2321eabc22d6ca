"""The harness through its CLI: every method end to end at smoke budget, bad input, kill/resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.rows import read_rows
from benchmarks.run import main
from methods import METHODS

ROOT = Path(__file__).resolve().parent.parent
VALUES = ["method", "seed", "nfe", "metric", "value", "note"]


def _run(tmp: Path, *extra: str) -> int:
    return main(["--dataset", "gmm", "--budget", "smoke", "--out", str(tmp), "--quiet", *extra])


def test_every_method_end_to_end(tmp_path: Path) -> None:
    assert _run(tmp_path, "--methods", "all") == 0
    d = tmp_path / "gmm"
    rows = read_rows(d / "metrics.csv")
    learned = set(METHODS) - {"fm"}
    assert learned <= set(rows["method"]), "every learned method has rows"
    assert {"fm-euler", "fm-heun", "fm-dopri5", "exact"} <= set(rows["method"])
    for name in learned:
        sub = rows[(rows["method"] == name) & (rows["note"] != "n/a")]
        assert len(sub) > 0, f"{name} produced no numbers"
        assert sub["value"].notna().all()
    for f in ("table.md", "table.tex", "w2_vs_nfe.png", "w2_vs_nfe.pdf", "speedup.md"):
        assert (d / f).stat().st_size > 0, f
    # a rerun skips finished cells and never duplicates rows
    before = len(rows)
    t0 = time.perf_counter()
    assert _run(tmp_path, "--methods", "all") == 0
    assert len(read_rows(d / "metrics.csv")) == before
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize(
    "argv",
    [
        ["--methods", "nosuch"],
        ["--methods", "all", "--dataset", "nosuch"],
        ["--methods", "all", "--budget", "huge"],
        ["--methods", "all", "--nfe", "0"],
        ["--methods", "all", "--nfe", "-2"],
        ["--methods", "all", "--nfe", "1.5"],
        ["--methods", "all", "--nfe", "two"],
        ["--methods", "all", "--dataset", "npz", "--data-root", "/no/such/file.npz"],
        ["--methods", "all", "train.nosuch=1"],
        ["--methods", "all", "train.steps=abc"],
        ["--methods", "all", "train.lr=fast"],
        ["--methods", "all", "--seeds", "x"],
        ["--methods", "all", f"method.{sorted(METHODS)[0]}.nosuch=1"],
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, argv: list[str], capsys) -> None:
    out = tmp_path / "out"
    code = None
    try:
        code = main(["--out", str(out), "--budget", "smoke", *argv])
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert not out.exists(), "bad input must write nothing"


def test_malformed_npz_root(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    assert (
        main(
            [
                "--methods",
                "all",
                "--dataset",
                "npz",
                "--data-root",
                str(bad),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "bad.npz" in capsys.readouterr().err


def test_dry_run_writes_nothing(tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "--methods",
                "all",
                "--dataset",
                "gmm",
                "--budget",
                "smoke",
                "--out",
                str(tmp_path / "o"),
                "--dry-run",
            ]
        )
        == 0
    )
    assert not (tmp_path / "o").exists()
    assert "cells" in capsys.readouterr().out


def _cli(out: Path, method: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--methods",
        method,
        "--dataset",
        "gmm",
        "--budget",
        "smoke",
        "--out",
        str(out),
        "--quiet",
        "train.steps=400",
        "train.log_every=10",
        "train.ckpt_every=20",
    ]


def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    method = next(m for m in sorted(METHODS) if not METHODS[m].needs_teacher and m != "fm")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(_cli(ref, method), check=True, cwd=ROOT, env=env)
    proc = subprocess.Popen(_cli(cut, method), cwd=ROOT, env=env)
    ckpt = cut / "gmm" / "runs" / f"{method}-s0" / "ckpt.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    if proc.poll() is not None:
        pytest.fail("the run finished before it could be killed; raise train.steps")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "gmm" / "metrics.csv").exists()
    subprocess.run(_cli(cut, method), check=True, cwd=ROOT, env=env)
    a = (
        pd.read_csv(ref / "gmm" / "metrics.csv")[VALUES]
        .sort_values(VALUES[:4])
        .reset_index(drop=True)
    )
    b = (
        pd.read_csv(cut / "gmm" / "metrics.csv")[VALUES]
        .sort_values(VALUES[:4])
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(a, b)
    assert not list(cut.rglob("*.tmp")), "partial files left behind"


def test_image_path_npz_tiny_unet_with_fid(tmp_path: Path, inception_weights: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(48, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "tiny.npz", images=images)
    two = [m for m in sorted(METHODS) if not METHODS[m].needs_teacher and m != "fm"][:2]
    code = main(
        [
            "--methods",
            ",".join(two),
            "--dataset",
            "npz",
            "--data-root",
            str(tmp_path / "tiny.npz"),
            "--budget",
            "smoke",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
            "--fid-weights",
            str(inception_weights),
            "data.n_train=32",
            "eval.n_samples=12",
        ]
    )
    assert code == 0
    rows = pd.read_csv(tmp_path / "out" / "npz" / "metrics.csv")
    # random Inception weights: a Frechet distance, but not an FID, and named so everywhere
    assert "fid" not in set(rows["metric"])
    fid = rows[(rows["metric"] == "fid_nonstd") & rows["method"].isin(two)]
    fid = fid.dropna(subset=["value"])
    assert set(fid["method"]) == set(two)
    assert (fid["value"] >= 0).all() and np.isfinite(fid["value"]).all()
    assert (tmp_path / "out" / "npz" / "fid_nonstd_vs_nfe.png").exists()
    assert "## fid_nonstd (npz)" in (tmp_path / "out" / "npz" / "table.md").read_text()
    grids = list((tmp_path / "out" / "npz" / "runs").glob("*/grid_nfe1.png"))
    assert len(grids) == 2, "an 8x8 grid of the scored samples per method and NFE"
