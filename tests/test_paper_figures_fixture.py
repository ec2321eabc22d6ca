"""The hand-made results folder the paper-figure tests draw from (no tests here; no binaries).

It mimics what ``python -m benchmarks.run`` writes, with numbers chosen so a test can say what
must be drawn: metrics rows (two seeds of lmd, an n/a cell, a method of every family plus an
unknown one, fm-* and exact-* baselines, the exact floor, a ``teacher`` column), and per cell a
``config.json``, ``samples.npz`` (known points: errors against the exact map are round numbers),
``log.jsonl`` and ``convergence.csv``. The image set ``cifar-gmm`` has tiny 4x4 images.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

N = 100  # n_samples of every row; seconds are 0.01 s per sample per NFE
# (method, seed) -> {nfe: w2}; NaN = n/a. flowmap_err = w2 / 2.
W2 = {
    ("lmd", 0): {1: 0.4, 2: 0.3, 4: 0.2},
    ("lmd", 1): {1: 0.6, 2: 0.3, 4: 0.2},
    ("pd", 0): {1: 0.65, 2: math.nan, 4: math.nan},
    ("meanflow", 0): {1: 0.7, 2: 0.25, 4: 0.22},
    ("ct", 0): {1: 0.9, 2: 0.8, 4: 0.85},
    ("mystery", 0): {1: 1.1, 2: 1.0},
    ("fm-euler", 0): {1: 3.0, 2: 1.5, 4: 0.8},
    ("fm-heun", 0): {2: 2.0, 4: 0.6},
    ("fm-dopri5", 0): {100: 0.15},
    ("exact-euler", 0): {1: 2.5, 2: 1.2, 4: 0.5},
    ("exact-heun", 0): {2: 1.0, 4: 0.3},
    ("exact-dopri5", 0): {50: 0.11},
    ("exact", 0): {1: 0.1, 2: 0.1, 4: 0.1},
}
FID = {
    ("meanflow", 0): {1: 30.0, 4: 20.0},
    ("pd", 0): {1: 25.0, 4: math.nan},
    ("exact", 0): {1: 5.0, 4: 5.0},
}
TEACHER = {"lmd": "exact", "pd": "exact"}  # the velocity each method learned from ("" = data)
TRAIN = {"fm": 10.0, "lmd": 20.0, "meanflow": 15.0, "pd": 30.0, "ct": 5.0, "mystery": 1.0}
TEACHER_SECONDS = {"lmd": 10.0, "pd": 10.0}
LOSSES = {"fm": [3.0, 2.0, 1.5], "lmd": [5.0, 1.0, 0.5], "pd": [0.9, 0.3, 0.1]}

# samples.npz of gmm, seed 0: x0 on a grid, the exact map 2 x0; offsets chosen exact in float16
X0 = ((np.arange(24).reshape(12, 2) - 12) / 4).astype(np.float16)
TARGET = (2 * X0.astype(np.float32)).astype(np.float16)
OFFSETS = {  # (method, nfe) -> offset from the exact map; flow-map error = its length
    ("lmd", 1): (0.75, 1.0),  # 1.25
    ("lmd", 2): (0.0, 0.25),  # 0.25
    ("lmd", 4): (0.0, 0.0),
    ("pd", 1): (0.0, 0.5),  # 0.50
    ("mystery", 1): (0.0, 1.0),
    **{("fm", k): (1.0, 0.0) for k in (1, 2, 4, 8)},
    **{("meanflow", k): (0.5, 0.0) for k in (1, 2, 4)},
}
TIMES = np.array([0.0, 0.5, 1.0], dtype=np.float32)  # 2 trajectories at 3 times
EVAL_NFE = {"fm": [1, 2, 4, 8]}  # others: [1, 2, 4]
# convergence.csv: (method, seed) -> {nfe: values at steps 10, 20}
STEPS = (10, 20)
CONVERGENCE = {
    ("lmd", 0): {1: (1.0, 0.5), 2: (0.9, 0.4)},
    ("lmd", 1): {1: (2.0, 0.7), 2: (1.5, 0.6)},
    ("pd", 0): {4: (3.0, 1.0)},
    ("mystery", 0): {1: (4.0, 2.0)},
}


def row_dicts(dataset: str, table: dict, metrics: dict[str, float], teacher: bool) -> list[dict]:
    """Tidy metrics rows of ``table`` (the harness's columns; ``teacher`` adds teacher/init/weights)."""
    out = []
    for (m, seed), by_nfe in table.items():
        cell = "fm" if m.startswith("fm-") else "exact" if m.startswith("exact") else m
        for nfe, v in by_nfe.items():
            for metric, scale in metrics.items():
                na = math.isnan(v)
                row = dict(
                    method=m,
                    dataset=dataset,
                    seed=seed,
                    nfe=nfe,
                    metric=metric,
                    value=v * scale,
                    n_samples=N,
                    sample_seconds=math.nan if na else 0.01 * N * nfe,
                    note="n/a" if na else "",
                    train_steps=10,
                    train_images=1280,
                    train_seconds=TRAIN.get(cell, 0.0),
                    train_flops=1e9 * TRAIN.get(cell, 0.0),
                    train_flops_once=0.0,
                    teacher_steps=0,
                    teacher_seconds=TEACHER_SECONDS.get(m, 0.0),
                    budget="smoke",
                    git_sha="x",
                    run=f"{cell}-s{seed}",
                )
                if teacher:
                    row |= dict(teacher=TEACHER.get(m, ""), init="scratch", weights="raw")
                out.append(row)
    return out


def cell(root: Path, dataset: str, name: str, arrays: dict | None, nfes: list[int]) -> Path:
    """A finished-looking cell folder: config.json and, unless ``arrays`` is None, samples.npz."""
    d = root / dataset / "runs" / name
    d.mkdir(parents=True, exist_ok=True)
    method = name.rpartition("-s")[0]
    conf = dict(dataset=dataset, budget="smoke", eval=dict(nfe=nfes), teacher="exact")
    (d / "config.json").write_text(json.dumps(conf | dict(method={method: {}})))
    if arrays is not None:
        np.savez_compressed(d / "samples.npz", **arrays)
    return d


def points(method: str) -> dict[str, np.ndarray]:
    """The kept 2D arrays of a gmm cell of seed 0 (x0, nfe<k>, 2 paths at ``TIMES``)."""
    arrays = {"x0": X0, "path_times": TIMES}
    for (m, k), off in OFFSETS.items():
        if m == method:
            arrays[f"nfe{k}"] = (TARGET + np.float16(off)).astype(np.float16)
    if method == "meanflow":  # another noise: no pointwise error can be drawn
        arrays["x0"] = (X0 + 1).astype(np.float16)
    lift = {"exact": 0.0, "lmd": 0.5}.get(method, 0.25)
    path = np.stack([(1 - t) * X0[:2] + t * TARGET[:2] + lift * t * (1 - t) for t in TIMES])
    arrays["paths"] = path.astype(np.float16).reshape(-1, 2)
    return arrays


def images(seed: int) -> np.ndarray:
    """16 uint8 images (16, 3, 4, 4), different per ``seed``."""
    return np.random.default_rng(seed).integers(0, 256, (16, 3, 4, 4), dtype=np.uint8)


def write_samples(root: Path) -> None:
    """gmm: cells of seed 0 with samples (ct without), one of seed 1; cifar-gmm image cells."""
    for m in ("exact", "fm", "lmd", "pd", "meanflow", "mystery"):
        arrays = points(m)
        if m == "exact":
            arrays = {k: v for k, v in arrays.items() if k != "nfe1"} | {"nfe1": TARGET}
        cell(root, "gmm", f"{m}-s0", arrays, EVAL_NFE.get(m, [1, 2, 4]))
    cell(root, "gmm", "ct-s0", None, [1, 2, 4])
    cell(root, "gmm", "lmd-s1", points("lmd"), [1, 2, 4])
    cell(root, "cifar-gmm", "exact-s0", {"nfe1": images(0)}, [1, 4])
    cell(root, "cifar-gmm", "meanflow-s0", {"nfe1": images(1), "nfe4": images(2)}, [1, 4])
    cell(root, "cifar-gmm", "pd-s0", {"nfe1": images(3)}, [1, 4])


def write_logs(root: Path) -> None:
    """log.jsonl (losses ``LOSSES`` at steps 10, 20, 30) and convergence.csv of gmm cells."""
    for m, losses in LOSSES.items():
        d = root / "gmm" / "runs" / f"{m}-s0"
        log = [
            {"step": 10 * (i + 1), "loss": v, "lr": 1e-3, "seconds": i}
            for i, v in enumerate(losses)
        ]
        (d / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    for (m, seed), by_nfe in CONVERGENCE.items():
        d = root / "gmm" / "runs" / f"{m}-s{seed}"
        d.mkdir(parents=True, exist_ok=True)
        rows = [
            dict(step=s, method=m, seed=seed, nfe=k, metric=metric, value=v * scale)
            for k, values in by_nfe.items()
            for s, v in zip(STEPS, values)
            for metric, scale in (("w2", 1.0), ("flowmap_err", 0.5))
        ]
        pd.DataFrame(rows).to_csv(d / "convergence.csv", index=False)


def write_results(root: Path, teacher: bool = True) -> Path:
    """The whole folder under ``root`` (``teacher=False``: metrics.csv without teacher columns)."""
    gmm = row_dicts("gmm", W2, {"w2": 1.0, "flowmap_err": 0.5}, teacher)
    (root / "gmm").mkdir(parents=True)
    pd.DataFrame(gmm).to_csv(root / "gmm" / "metrics.csv", index=False)
    (root / "cifar-gmm").mkdir()
    images_rows = row_dicts("cifar-gmm", FID, {"fid": 1.0}, teacher)
    pd.DataFrame(images_rows).to_csv(root / "cifar-gmm" / "metrics.csv", index=False)
    write_samples(root)
    write_logs(root)
    return root


def unsaved(fig, out: Path, stem: str) -> list[Path]:
    """Stands in for ``paper_figures.style.save`` in tests of what is drawn: rendering the files
    is most of a figure's time; the CLI tests write every file for real."""
    return [Path(out) / f"{stem}.pdf", Path(out) / f"{stem}.png"]


def lines(ax, gid: str) -> list:
    """The Line2D objects of ``ax`` with this gid."""
    return [ln for ln in ax.get_lines() if ln.get_gid() == gid]


def by_gid(fig) -> dict:
    """The Axes of ``fig`` by gid."""
    return {ax.get_gid(): ax for ax in fig.axes if ax.get_gid()}


def panel(fig, title: str) -> Axes:
    """The Axes whose (centre or left) title is ``title``."""
    return next(ax for ax in fig.axes if title in (ax.get_title(), ax.get_title(loc="left")))


def draw(results: Path, out: Path, modules: list) -> dict:
    """``make`` of each figure module with ``style.save`` stubbed by ``unsaved``: the Made results
    by module name, their Figures drawn and nothing written (rendering is most of the time)."""
    from paper_figures import style

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(style, "save", unsaved)
        return {m.__name__.rsplit(".", 1)[1]: m.make(results, out) for m in modules}
