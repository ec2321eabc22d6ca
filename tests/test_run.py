"""The harness through its CLI: every method end to end at smoke budget, bad input, kill/resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.base.rows import read_rows
from benchmarks.run import main
from methods import METHODS

ROOT = Path(__file__).resolve().parent.parent
VALUES = ["method", "seed", "nfe", "metric", "value", "note"]


def _run(tmp: Path, *extra: str) -> int:
    return main(["--dataset", "gmm", "--budget", "smoke", "--out", str(tmp), "--quiet", *extra])


@pytest.mark.slow
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
    # a rerun skips finished cells (their files untouched) and never duplicates rows
    before = len(rows)
    stamps = {p: p.stat().st_mtime_ns for p in d.glob("runs/*/*") if p.is_file()}
    assert _run(tmp_path, "--methods", "all") == 0
    assert len(read_rows(d / "metrics.csv")) == before
    assert stamps == {p: p.stat().st_mtime_ns for p in d.glob("runs/*/*") if p.is_file()}


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
        ["--methods", "all", "net.kind=foo"],
        ["--methods", "all", "interpolant=foo"],
        ["--methods", "all", "train.ema=median"],
        ["--methods", "lmd", "--teacher", "CORRUPT"],
        ["--methods", "all", "--dataset", "npz", "--data-root", "EMPTY"],
        ["--methods", "all", "--jobs", "0"],
        pytest.param(
            ["--methods", "all", "--device", "cuda"],
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here"),
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, argv: list[str], capsys) -> None:
    out = tmp_path / "out"
    files = {"CORRUPT": tmp_path / "teacher.pt", "EMPTY": tmp_path / "empty.npz"}
    files["CORRUPT"].write_bytes(b"\x80\x02 not a checkpoint")
    np.savez(files["EMPTY"], images=np.zeros((0, 8, 8, 3), np.uint8))
    argv = [str(files.get(a, a)) for a in argv]
    code = None
    try:
        code = main(["--out", str(out), "--budget", "smoke", *argv])
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert not out.exists(), "bad input must write nothing"
    named = {"net.kind=foo": "'foo'", "interpolant=foo": "linear, trig", "--jobs": "--jobs 0"}
    for key, text in named.items():
        if any(key in a for a in argv):
            assert text in err, err


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


def test_dry_run_writes_nothing_and_loads_no_data(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    assert main(["--methods", "all", "--budget", "smoke", "--out", str(out), "--dry-run"]) == 0
    assert not out.exists()
    assert "cells" in capsys.readouterr().out
    # ImageNet-32 is nowhere here: a dry run plans it without looking for the data...
    empty = tmp_path / "no-imagenet"
    empty.mkdir()
    argv = ["--methods", "fm,lmd", "--dataset", "imagenet32", "--data-root", str(empty)]
    assert main([*argv, "--out", str(out), "--dry-run"]) == 0
    assert "lmd-s0" in capsys.readouterr().out
    # ...while the real run names what is missing, before writing anything
    assert main([*argv, "--out", str(out)]) == 2
    assert "ImageNet-32 not found" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_compare_gives_the_reproducibility_verdict(tmp_path: Path, capsys) -> None:
    """The verdict line comes first (``NEW vs REFERENCE: identical | consistent | differs: ...``),
    then the rows behind it; exit 0 for identical or consistent, 1 for differs, 2 without
    metrics."""
    from benchmarks.report.compare import main as compare

    assert _run(tmp_path / "a", "--methods", "lmd") == 0
    assert _run(tmp_path / "b", "--methods", "lmd") == 0
    a, b = tmp_path / "a" / "gmm", tmp_path / "b" / "gmm"
    capsys.readouterr()
    assert compare([str(a), str(b), "--check"]) == 0  # --check is kept as a no-op
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{a} vs {b}: identical: ") and len(lines) == 1, lines
    rows = read_rows(b / "metrics.csv")
    num = rows["note"] == ""
    # far inside the band (one seed: the 1% floor): consistent, every changed row differs in bits
    rows.loc[num, "value"] *= 1 + 1e-4
    rows.to_csv(b / "metrics.csv", index=False)
    assert compare([str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{a} vs {b}: consistent: ") and len(lines) == 1, lines
    assert "all within the seed-noise band" in lines[0] and "reference has one seed" in lines[0]
    rows.loc[rows["method"] == "lmd", "value"] *= 1.5
    rows.to_csv(b / "metrics.csv", index=False)
    assert compare([str(a), str(b)]) == 1
    lines = capsys.readouterr().out.splitlines()
    # one seed in the reference: no seed spread, the band is the 1% floor; 1/1.5 is far past it
    assert lines[0].startswith(f"{a} vs {b}: differs: "), lines
    assert "outside the seed-noise band" in lines[0] and "reference has one seed" in lines[0]
    assert lines[1].startswith("  outside: method=lmd") and all(
        line.startswith("  outside: ") for line in lines[1:]
    )
    # --methods keeps those cells' rows (and the exact cell's): lmd's drift is out of view
    assert compare([str(a), str(b), "--methods", "fm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{a} vs {b}: consistent: ") and "method=lmd" not in "".join(lines)
    assert compare([str(a), str(tmp_path)]) == 2
    assert "no metrics.csv" in capsys.readouterr().err


@pytest.mark.slow
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
