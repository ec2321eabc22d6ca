"""paper_figures: every figure from a small results fixture made here (no committed binaries).

The fixture mimics what ``python -m benchmarks.run`` writes: metrics rows with known numbers
(a two-seed method, an n/a cell, teacher baselines, the exact floor, a second dataset), run logs
with known losses, and real tiny checkpoints (``build_model`` + the method's own state, e.g.
PD's finished stage) with their ``config.json``. Tests check what is drawn, not just files.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgba

from benchmarks.cells import Cell, cell_config
from benchmarks.config import load_config
from benchmarks.factory import model as build_model
from benchmarks.report import method_color
from methods import METHODS, build_config
from paper_figures import (
    FIGURES,
    fid_vs_nfe,
    flow_map_2d,
    samples,
    speedup,
    table_main,
    training,
)
from paper_figures import make as cli
from paper_figures.common import NoTeacher, Skip, load_run, noise, runs, threads
from unify import make_interpolant
from unify.ode import solve

# (method, seed) -> {nfe: w2}; NaN = n/a. flowmap_err = w2 / 2. Seconds: 0.01 s/sample per NFE.
W2 = {
    ("lmd", 0): {1: 0.4, 2: 0.3, 4: 0.2},
    ("lmd", 1): {1: 0.6, 2: 0.3, 4: 0.2},
    ("meanflow", 0): {1: 0.7, 2: 0.25, 4: 0.22},
    ("pd", 0): {1: 0.65, 2: math.nan, 4: math.nan},
    ("fm-euler", 0): {1: 3.0, 2: 1.5, 4: 0.8},
    ("fm-heun", 0): {2: 2.0, 4: 0.6},
    ("fm-dopri5", 0): {100: 0.15},
    ("exact", 0): {1: 0.1, 2: 0.1, 4: 0.1},
}
FID = {("lmd", 0): {1: 30.0, 2: 20.0}, ("meanflow", 0): {1: 25.0, 2: 22.0}}
TRAIN = {"fm": 10.0, "lmd": 20.0, "meanflow": 15.0, "pd": 30.0, "exact": 0.0}
TEACHER = {"lmd": 10.0, "pd": 10.0}  # distillation methods carry the fm run's time
N = 100


def rows_of(dataset: str, table: dict, metrics: dict[str, float]) -> list[dict]:
    out = []
    for (m, seed), cells in table.items():
        run = ("fm" if m.startswith("fm-") else m) + f"-s{seed}"
        for nfe, v in cells.items():
            for metric, scale in metrics.items():
                na = math.isnan(v)
                out.append(dict(
                    method=m, dataset=dataset, seed=seed, nfe=nfe, metric=metric,
                    value=v * scale, n_samples=N, sample_seconds=math.nan if na else 0.01 * N * nfe,
                    note="n/a" if na else "", train_steps=10, train_images=1280,
                    train_seconds=TRAIN[run.rpartition("-s")[0]], teacher_steps=0,
                    teacher_seconds=TEACHER.get(m, 0.0), budget="smoke", git_sha="x", run=run,
                ))  # fmt: skip
    return out


def write_cell(
    root: Path, method: str, dataset: str = "gmm", seed: int = 0, steps: int = 10
) -> Path:
    """A finished-looking cell: config.json, a checkpoint with ema + method state."""
    cfg = load_config(dataset, "smoke", {}, [f"train.steps={steps}", "train.log_every=1"])
    d = root / dataset / "runs" / f"{method}-s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cell_config(cfg, Cell(method, seed))))
    torch.manual_seed(seed)
    fm = build_model(cfg, (2,) if dataset == "gmm" else (3, 32, 32))
    with torch.no_grad():  # a non-trivial map: scale the last layer so X_{0,t} moves points
        for p in fm.parameters():
            p.mul_(3.0)
    cls = METHODS[method]
    teacher = NoTeacher() if cls.needs_teacher else None
    m = cls(build_config(cls), make_interpolant(cfg.interpolant), teacher)
    m.setup(fm, steps)
    if method == "pd":  # as after training: the final stage (N = 1) is reached
        m.nets["progress"].done.fill_(steps)
    state = {"step": steps, "model": fm.state_dict(), "ema": copy.deepcopy(fm).state_dict()}
    torch.save(state | {"method": m.state_dict()}, d / "ckpt.pt")
    return d


LOSSES = {"fm": [3.0, 2.0, 1.5], "lmd": [5.0, 1.0, 0.5], "pd": [0.9, 0.3, 0.1]}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny 2D tensors: one torch thread is much faster than a few contended ones."""
    with threads(1):
        yield


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    gmm = rows_of("gmm", W2, {"w2": 1.0, "flowmap_err": 0.5})
    (root / "gmm").mkdir()
    pd.DataFrame(gmm).to_csv(root / "gmm" / "metrics.csv", index=False)
    (root / "cifar10").mkdir()
    pd.DataFrame(rows_of("cifar10", FID, {"fid": 1.0})).to_csv(
        root / "cifar10" / "metrics.csv", index=False
    )
    write_cell(root, "meanflow", "cifar10")  # a tiny U-Net: the image path of ``samples``
    for m in ("fm", "lmd", "pd"):
        d = write_cell(root, m)
        log = [
            {"step": 10 * (i + 1), "loss": v, "lr": 1e-3, "seconds": i}
            for i, v in enumerate(LOSSES[m])
        ]
        (d / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    return root


@pytest.fixture(scope="module")
def made(results, tmp_path_factory) -> dict:
    """Every figure built once from the fixture (2D clouds kept small)."""
    out = tmp_path_factory.mktemp("figures")
    mp = pytest.MonkeyPatch()
    mp.setattr(samples, "N_POINTS", 200)
    mp.setattr(flow_map_2d, "N_POINTS", 200)
    built = {name: mod.make(results, out) for name, mod in (
        ("fid_vs_nfe", fid_vs_nfe), ("samples", samples), ("flow_map_2d", flow_map_2d),
        ("speedup", speedup), ("training", training), ("table_main", table_main))}  # fmt: skip
    mp.undo()
    return built


def lines(ax, gid: str):
    return [ln for ln in ax.get_lines() if ln.get_gid() == gid]


def panel(fig, title: str):
    return next(
        ax
        for ax in fig.axes
        if ax.get_title(loc="center") == title or ax.get_title(loc="left") == title
    )


def test_every_figure_writes_pdf_and_png(made):
    for name, paths in made.items():
        assert paths, name
        for p in paths:
            assert p.is_file() and p.stat().st_size > 500, p
        if name != "table_main":
            assert {p.suffix for p in paths} == {".pdf", ".png"}


def test_fid_vs_nfe_plots_the_fixture_means_and_leaves_na_out(made):
    fig = made["fid_vs_nfe"].figures["fid_vs_nfe"]
    ax = panel(fig, "gmm (fm-dopri5: 100 NFE)")
    (lmd,) = lines(ax, "lmd")
    np.testing.assert_allclose(lmd.get_xdata(), [1, 2, 4])
    np.testing.assert_allclose(lmd.get_ydata(), [0.5, 0.3, 0.2])  # mean of seeds 0.4 and 0.6
    (pd_line,) = lines(ax, "pd")
    np.testing.assert_allclose(pd_line.get_xdata(), [1])  # n/a at NFE 2, 4: not plotted at all
    np.testing.assert_allclose(pd_line.get_ydata(), [0.65])
    np.testing.assert_allclose(lines(ax, "fm-heun")[0].get_ydata(), [2.0, 0.6])
    assert lines(ax, "exact")[0].get_ydata()[0] == pytest.approx(0.1)
    assert lines(ax, "fm-dopri5")[0].get_ydata()[0] == pytest.approx(0.15)
    assert ax.get_xscale() == "log"
    err = panel(fig, "gmm: flowmap_err")
    np.testing.assert_allclose(lines(err, "lmd")[0].get_ydata(), [0.25, 0.15, 0.1])
    cifar = panel(fig, "cifar10")
    assert cifar.get_ylabel().startswith("fid")
    np.testing.assert_allclose(lines(cifar, "meanflow")[0].get_ydata(), [25.0, 22.0])


def test_samples_grid_is_methods_by_nfe_from_the_same_noise(made, results):
    fig = made["samples"].figures["samples_gmm"]
    gids = {ax.get_gid(): ax for ax in fig.axes}
    want = {f"{m}/nfe{k}" for m in ("fm", "lmd", "pd") for k in samples.NFES}
    assert set(gids) == want
    x0 = noise((2,), 200)  # the shared noise, drawn independently here
    for m, k in (("lmd", 1), ("lmd", 4), ("fm", 2), ("pd", 1)):
        loaded = load_run(next(r for r in runs(results, "gmm") if r.method == m))
        with torch.no_grad():
            if m == "fm":  # fm's sampler: Euler on its velocity
                want_x = solve(loaded.fm.velocity, x0, 0.0, 1.0, "euler", steps=k)[0]
            else:  # composition on the uniform grid
                ts = torch.linspace(0, 1, k + 1)
                want_x = x0
                for s, t in zip(ts[:-1], ts[1:]):
                    want_x = loaded.fm(want_x, s.expand(200), t.expand(200))
        got = gids[f"{m}/nfe{k}"].collections[-1].get_offsets()
        np.testing.assert_allclose(got, want_x.numpy(), rtol=1e-4, atol=1e-5)
    for k in (2, 4, 8):  # PD's final stage samples only at NFE 1
        ax = gids[f"pd/nfe{k}"]
        assert not ax.collections and [t.get_text() for t in ax.texts] == ["n/a"]


def test_samples_of_an_image_dataset_are_mosaics_of_the_shared_noise(made, results):
    fig = made["samples"].figures["samples_cifar10"]
    gids = {ax.get_gid(): ax for ax in fig.axes}
    assert set(gids) == {f"meanflow/nfe{k}" for k in samples.NFES}
    mf = load_run(next(r for r in runs(results, "cifar10") if r.method == "meanflow"))
    x0 = noise((3, 32, 32), samples.N_IMAGES)
    with torch.no_grad():
        want = samples.mosaic(mf.fm(x0, torch.zeros(4), torch.ones(4)))
    (image,) = gids["meanflow/nfe1"].get_images()
    assert image.get_array().shape == (64, 64, 3)
    np.testing.assert_array_equal(image.get_array(), want)


def test_flow_map_2d_trajectories_match_the_learned_and_exact_maps(made, results):
    fig = made["flow_map_2d"].figures["flow_map_2d"]
    gids = {ax.get_gid(): ax for ax in fig.axes}
    assert {f"lmd/nfe{k}" for k in (1, 2, 4)} | {"lmd/traj", "pd/traj"} <= set(gids)
    assert [t.get_text() for t in gids["pd/nfe2"].texts] == ["n/a"]
    traj = gids["lmd/traj"]
    x0 = noise((2,), 200)[: flow_map_2d.N_PATHS]
    oracle = flow_map_2d.gmm_oracle()
    one = torch.ones(len(x0), dtype=torch.float64)
    end = oracle.flow_map(x0.double(), 0 * one, one, make_interpolant("linear"), rtol=1e-8)
    lmd = load_run(next(r for r in runs(results, "gmm") if r.method == "lmd"))
    with torch.no_grad():
        learned_half = lmd.fm(x0, 0 * one.float(), 0.5 * one.float())
    mid = (flow_map_2d.N_TIMES - 1) // 2  # t = 0.5
    for i in range(len(x0)):
        (ex,) = lines(traj, f"exact/{i}")
        np.testing.assert_allclose(ex.get_xydata()[-1], end[i].numpy(), atol=1e-3)
        np.testing.assert_allclose(ex.get_xydata()[0], x0[i].numpy(), atol=1e-6)
        (le,) = lines(traj, f"lmd/learned/{i}")
        np.testing.assert_allclose(le.get_xydata()[mid], learned_half[i].numpy(), atol=1e-5)


def test_speedup_uses_seconds_per_sample_and_marks_dopri5(made):
    fig = made["speedup"].figures["speedup"]
    time_ax = panel(fig, "gmm: quality vs sampling time")
    (lmd,) = lines(time_ax, "lmd")
    np.testing.assert_allclose(lmd.get_xdata(), [0.01, 0.02, 0.04])  # sample_seconds / n_samples
    (dop,) = lines(time_ax, "fm-dopri5")
    assert dop.get_marker() == "*" and dop.get_xdata()[0] == pytest.approx(1.0)
    nfe_ax = panel(fig, "gmm: quality vs NFE")
    assert lines(nfe_ax, "fm-dopri5")[0].get_xdata()[0] == pytest.approx(100)
    box = next(
        leg for leg in nfe_ax.findobj() if getattr(leg, "get_gid", lambda: None)() == "ratio"
    )
    assert "lmd at NFE 1: 100x fewer NFE" in box.get_title().get_text()  # lmd 0.5 beats 0.65, 0.7
    assert len(lines(panel(fig, "cifar10: quality vs NFE"), "lmd")) == 1


def test_training_losses_and_stacked_costs(made):
    fig = made["training"].figures["training"]
    ax = panel(fig, "gmm: training loss")
    (lmd,) = lines(ax, "lmd/s0")
    np.testing.assert_allclose(lmd.get_xdata(), [10, 20, 30])
    np.testing.assert_allclose(lmd.get_ydata(), LOSSES["lmd"])
    bars = {p.get_gid(): p for p in panel(fig, "gmm: training cost").patches}
    for m in ("fm", "lmd", "meanflow", "pd"):
        assert bars[f"{m}/train"].get_width() == pytest.approx(TRAIN[m])
        assert bars[f"{m}/teacher"].get_width() == pytest.approx(TEACHER.get(m, 0.0))
        assert bars[f"{m}/teacher"].get_x() == pytest.approx(TRAIN[m])  # stacked after
    assert "exact/train" not in bars


def test_table_main_bolds_the_best_per_column(made):
    tex = made["table_main"][0].read_text()
    body = {
        ln.split(" & ")[0]: ln.rstrip(" \\").split(" & ")[1:]
        for ln in tex.splitlines()
        if " & " in ln and not ln.startswith((" &", "NFE"))
    }
    header = next(ln for ln in tex.splitlines() if ln.startswith("NFE"))
    cols = header.rstrip(" \\").split(" & ")[1:]
    assert "\\multicolumn{2}{c}{cifar10 (FID)}" in tex and "{gmm (w2)}" in tex
    assert cols == ["1", "2", "1", "2", "4", "adaptive"]
    bold = {(i, m) for m, cells in body.items() for i, c in enumerate(cells) if "textbf" in c}
    # cifar10: meanflow 25 @1, lmd 20 @2; gmm: lmd 0.5 @1, meanflow 0.25 @2, lmd 0.2 @4
    assert bold == {(0, "meanflow"), (1, "lmd"), (2, "lmd"), (3, "meanflow"), (4, "lmd")}
    assert body["pd"][3] == "n/a" and body["exact"][2].startswith("0.1")
    assert "\\textbf" not in " ".join(body["exact"])  # the floor is never "best"


def test_a_method_has_one_colour_in_every_figure(made):
    want = to_rgba(method_color("lmd"))
    fid = lines(panel(made["fid_vs_nfe"].figures["fid_vs_nfe"], "gmm (fm-dopri5: 100 NFE)"), "lmd")[
        0
    ]
    sp = lines(panel(made["speedup"].figures["speedup"], "gmm: quality vs NFE"), "lmd")[0]
    tr = lines(panel(made["training"].figures["training"], "gmm: training loss"), "lmd/s0")[0]
    bar = next(
        p
        for p in made["training"].figures["training"].axes[1].patches
        if p.get_gid() == "lmd/train"
    )
    sample_ax = next(
        ax for ax in made["samples"].figures["samples_gmm"].axes if ax.get_gid() == "lmd/nfe1"
    )
    fmap_ax = next(
        ax for ax in made["flow_map_2d"].figures["flow_map_2d"].axes if ax.get_gid() == "lmd/nfe1"
    )
    got = [
        to_rgba(fid.get_color()),
        to_rgba(sp.get_color()),
        to_rgba(tr.get_color()),
        bar.get_facecolor(),
    ]
    got += [
        tuple(sample_ax.collections[-1].get_facecolor()[0]),
        tuple(fmap_ax.collections[-1].get_facecolor()[0]),
    ]
    for g in got:
        np.testing.assert_allclose(g, want)


def test_missing_inputs_skip_with_the_command(tmp_path, capsys):
    empty = tmp_path / "empty"
    for name in FIGURES:
        with pytest.raises(Skip) as e:
            __import__(f"paper_figures.{name}", fromlist=["make"]).make(empty, tmp_path / "out")
        assert "python -m benchmarks.run --methods" in str(e.value), name
    assert cli.main(["--results", str(empty), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(FIGURES) and all(ln.startswith("skip ") for ln in out)
    assert any(
        ln.startswith("skip samples: no checkpoints under")
        and "(run: python -m benchmarks.run" in ln
        for ln in out
    )
    assert not (tmp_path / "out").exists() or not any(
        (tmp_path / "out").iterdir()
    )  # no empty figures


def test_a_missing_checkpoint_is_named(results, tmp_path, monkeypatch):
    partial = tmp_path / "partial"
    shutil.copytree(results, partial)
    (partial / "gmm" / "runs" / "pd-s0" / "ckpt.pt").unlink()
    monkeypatch.setattr(samples, "N_POINTS", 50)
    monkeypatch.setattr(samples, "NFES", (1,))
    made = samples.make(partial, tmp_path / "out")
    assert {ax.get_gid() for ax in made.figures["samples_gmm"].axes} == {"fm/nfe1", "lmd/nfe1"}
    assert len(made.notes) == 1 and made.notes[0].startswith("gmm/pd: no checkpoint")
    assert "--methods pd --dataset gmm" in made.notes[0]
    for name in ("fm", "lmd"):
        (partial / "gmm" / "runs" / f"{name}-s0" / "ckpt.pt").unlink()
    with pytest.raises(Skip) as e:
        flow_map_2d.make(partial, tmp_path / "out")
    assert str(e.value) == (
        f"no checkpoints under {partial / 'gmm' / 'runs'} (run: python -m benchmarks.run "
        "--methods fm,lmd,pd --dataset gmm --budget smoke --seeds 0 --force)"
    )


def test_an_unloadable_checkpoint_is_a_note_not_a_crash(results, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(results / "gmm", broken / "gmm")
    (broken / "gmm" / "runs" / "lmd-s0" / "ckpt.pt").write_bytes(b"not a checkpoint")
    monkeypatch.setattr(flow_map_2d, "N_POINTS", 50)
    made = flow_map_2d.make(broken, tmp_path / "out")
    assert not any(ax.get_gid().startswith("lmd/") for ax in made.figures["flow_map_2d"].axes)
    assert any("lmd-s0: checkpoint not loadable" in n for n in made.notes)


def test_cli_bad_name_and_selection(results, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--only", "nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'nope'" in err and all(n in err for n in FIGURES)
    assert (
        cli.main(
            ["--results", str(results), "--out", str(tmp_path), "--only", "table_main,fid_vs_nfe"]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"wrote {tmp_path / f}" for f in ("fid_vs_nfe.pdf", "fid_vs_nfe.png", "table_main.tex")
    ]
