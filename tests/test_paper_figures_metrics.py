"""Figures from metrics rows: fid_vs_nfe (panels by family), speedup (by teacher), table, training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from test_paper_figures_fixture import (
    LOSSES,
    TEACHER_SECONDS,
    TRAIN,
    by_gid,
    draw,
    lines,
    panel,
    unsaved,
)
from test_paper_figures_fixture import write_results as build

from benchmarks.report.style import baseline_style, method_color
from paper_figures import fid_vs_nfe, speedup, style, table_main, training


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def figs(results, tmp_path_factory) -> dict:
    """The figures drawn (not written: see ``unsaved``), table_main written."""
    modules = [fid_vs_nfe, speedup, training, table_main]
    return draw(results, tmp_path_factory.mktemp("out"), modules)


def test_fid_vs_nfe_one_panel_per_family_with_an_other_panel(figs):
    fig = figs["fid_vs_nfe"].figures["fid_vs_nfe_gmm"]
    axes = by_gid(fig)
    families = ("consistency", "teacher-distilled", "self-distilled", "other")
    assert set(axes) == {f"gmm/{m}/{f}" for m in ("w2", "flowmap_err") for f in families}
    members = {
        "consistency": {"ct"},
        "teacher-distilled": {"lmd", "pd"},
        "self-distilled": {"meanflow"},
        "other": {"mystery"},
    }
    learned = {"ct", "lmd", "pd", "meanflow", "mystery"}
    for f, want in members.items():
        ax = axes[f"gmm/w2/{f}"]
        drawn = {ln.get_gid() for ln in ax.get_lines()} & learned
        assert drawn == want, f
        assert ax.get_title() == f"gmm: {f}"
    assert [p.get_gid() for p in fig.axes if p.get_gid().startswith("cifar")] == []


def test_fid_vs_nfe_draws_means_and_the_seed_spread_and_leaves_na_out(figs):
    axes = by_gid(figs["fid_vs_nfe"].figures["fid_vs_nfe_gmm"])
    ax = axes["gmm/w2/teacher-distilled"]
    (lmd,) = lines(ax, "lmd")
    np.testing.assert_allclose(lmd.get_xdata(), [1, 2, 4])
    np.testing.assert_allclose(lmd.get_ydata(), [0.5, 0.3, 0.2])  # mean of seeds 0.4 and 0.6
    (band,) = [c for c in ax.collections if c.get_gid() == "lmd/band"]
    v = band.get_paths()[0].vertices
    std = np.std([0.4, 0.6], ddof=1)
    assert v[:, 1].max() == pytest.approx(0.5 + std) and v[:, 1].min() == pytest.approx(0.2)
    (pd_line,) = lines(ax, "pd")
    np.testing.assert_allclose(pd_line.get_xdata(), [1])  # n/a at NFE 2, 4: not drawn at all
    assert not [c for c in ax.collections if c.get_gid() == "pd/band"]  # one seed: no spread
    err = axes["gmm/flowmap_err/teacher-distilled"]
    np.testing.assert_allclose(lines(err, "lmd")[0].get_ydata(), [0.25, 0.15, 0.1])


def test_fid_vs_nfe_repeats_fm_and_exact_baselines_as_distinct_references(figs):
    axes = by_gid(figs["fid_vs_nfe"].figures["fid_vs_nfe_gmm"])
    for ax in axes.values():
        for m in ("fm-euler", "fm-heun", "fm-dopri5", "exact-euler", "exact-heun", "exact-dopri5"):
            (ln,) = lines(ax, m)
            want = baseline_style(m)
            assert to_rgba(ln.get_color()) == to_rgba(want["color"]), m
            assert (ln.get_linestyle(), ln.get_marker()) == (
                {"--": "--", "-.": "-.", "none": "None"}[want["linestyle"]],
                want["marker"],
            )
            assert ln.get_linewidth() < min(x.get_linewidth() for x in lines(ax, _learned(ax)))
        assert lines(ax, "exact")[0].get_linestyle() == ":"
    ax = axes["gmm/w2/self-distilled"]
    assert lines(ax, "exact-dopri5")[0].get_xdata()[0] == pytest.approx(50)  # counted NFE
    assert lines(ax, "fm-heun")[0].get_ydata().tolist() == [2.0, 0.6]
    assert to_rgba(baseline_style("fm-euler")["color"]) != to_rgba(
        baseline_style("exact-euler")["color"]
    )


def _learned(ax) -> str:
    """The name of a learned method drawn in ``ax``."""
    return min({ln.get_gid() for ln in ax.get_lines()} & {"ct", "lmd", "pd", "meanflow", "mystery"})


def test_fid_vs_nfe_of_an_image_dataset_is_its_own_file(figs):
    fig = figs["fid_vs_nfe"].figures["fid_vs_nfe_cifar-gmm"]
    axes = by_gid(fig)
    assert set(axes) == {"cifar-gmm/fid/teacher-distilled", "cifar-gmm/fid/self-distilled"}
    np.testing.assert_allclose(
        lines(axes["cifar-gmm/fid/self-distilled"], "meanflow")[0].get_ydata(), [30, 20]
    )
    assert {p.name for p in figs["fid_vs_nfe"]} == {
        f"fid_vs_nfe_{d}.{e}" for d in ("gmm", "cifar-gmm") for e in ("pdf", "png")
    }


def test_speedup_compares_each_method_with_its_teachers_baselines(figs):
    axes = by_gid(figs["speedup"].figures["speedup"])
    exact, fm = axes["gmm/exact/nfe"], axes["gmm/fm/nfe"]
    on = {ax: {ln.get_gid() for ln in ax.get_lines()} for ax in (exact, fm)}
    assert {"lmd", "pd", "exact-euler", "exact-heun", "exact-dopri5", "exact"} == on[exact]
    assert {"ct", "meanflow", "mystery", "fm-euler", "fm-heun", "fm-dopri5", "exact"} == on[fm]
    box = {
        ax: next(a for a in ax.findobj() if getattr(a, "get_gid", lambda: None)() == "ratio")
        for ax in (exact, fm)
    }
    assert "lmd at NFE 1: 50x fewer NFE\nthan exact-dopri5" in box[exact].get_title().get_text()
    assert "meanflow at NFE 1: 100x fewer NFE\nthan fm-dopri5" in box[fm].get_title().get_text()
    (lmd,) = lines(axes["gmm/exact/sec"], "lmd")
    np.testing.assert_allclose(lmd.get_xdata(), [0.01, 0.02, 0.04])  # sample_seconds / n_samples
    assert set(axes) >= {"cifar-gmm/exact/nfe", "cifar-gmm/fm/nfe"}


def test_speedup_falls_back_to_fm_without_a_teacher_column(tmp_path, monkeypatch):
    monkeypatch.setattr(style, "save", unsaved)
    made = speedup.make(build(tmp_path / "res", teacher=False), tmp_path / "out")
    axes = by_gid(made.figures["speedup"])
    assert "gmm/exact/nfe" not in axes
    drawn = {ln.get_gid() for ln in axes["gmm/fm/nfe"].get_lines()}
    assert {"lmd", "pd", "meanflow", "fm-dopri5"} <= drawn and "exact-dopri5" not in drawn
    assert any("no teacher column" in n for n in made.notes)


def test_training_losses_and_stacked_costs(figs):
    fig = figs["training"].figures["training"]
    ax = panel(fig, "gmm: training loss")
    (lmd,) = lines(ax, "lmd/s0")
    np.testing.assert_allclose(lmd.get_xdata(), [10, 20, 30])
    np.testing.assert_allclose(lmd.get_ydata(), LOSSES["lmd"])
    bars = {p.get_gid(): p for p in panel(fig, "gmm: training cost").patches}
    for m in ("fm", "lmd", "meanflow", "pd"):
        assert bars[f"{m}/train"].get_width() == pytest.approx(TRAIN[m])
        assert bars[f"{m}/teacher"].get_width() == pytest.approx(TEACHER_SECONDS.get(m, 0.0))
        assert bars[f"{m}/teacher"].get_x() == pytest.approx(TRAIN[m])  # stacked after
    assert "exact/train" not in bars
    assert bars["lmd/train"].get_facecolor() == to_rgba(method_color("lmd"))


def test_table_main_bolds_the_best_per_column(figs):
    tex = figs["table_main"][0].read_text()
    body = {
        ln.split(" & ")[0]: ln.rstrip(" \\").split(" & ")[1:]
        for ln in tex.splitlines()
        if " & " in ln and not ln.startswith((" &", "NFE"))
    }
    header = next(ln for ln in tex.splitlines() if ln.startswith("NFE"))
    assert header.rstrip(" \\").split(" & ")[1:] == ["1", "4", "1", "2", "4", "adaptive"]
    assert "{cifar-gmm (FID)}" in tex and "{gmm (w2)}" in tex
    bold = {(i, m) for m, cells in body.items() for i, c in enumerate(cells) if "textbf" in c}
    # cifar-gmm: pd 25 @1, meanflow 20 @4; gmm: lmd 0.5 @1, meanflow 0.25 @2, lmd 0.2 @4
    assert bold == {(0, "pd"), (1, "meanflow"), (2, "lmd"), (3, "meanflow"), (4, "lmd")}
    assert body["pd"][3] == "n/a" and "\\textbf" not in " ".join(body["exact"])
    text = tex.splitlines()
    first_baseline = min(i for i, ln in enumerate(text) if ln.startswith(("fm-", "exact")))
    assert text[first_baseline - 1] == "\\midrule"  # between learned methods and baselines
