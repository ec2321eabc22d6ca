"""convergence (metric vs training step per family), and one colour per method in every figure."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from test_paper_figures_fixture import by_gid, draw, lines, panel
from test_paper_figures_fixture import write_results as build

from benchmarks.report.style import method_color
from paper_figures import (
    convergence,
    fid_vs_nfe,
    flow_map_2d,
    samples,
    speedup,
    training,
)
from paper_figures.common import Skip

MODULES = (convergence, fid_vs_nfe, flow_map_2d, samples, speedup, training)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def figs(results, tmp_path_factory) -> dict:
    """Every figure's Figures by file stem, drawn (not written: see ``unsaved``)."""
    made = draw(results, tmp_path_factory.mktemp("out"), list(MODULES))
    return {k: f for m in made.values() for k, f in m.figures.items()}


def test_convergence_is_the_mean_over_seeds_per_family(figs):
    axes = by_gid(figs["convergence"])
    assert set(axes) == {"gmm/teacher-distilled", "gmm/other"}
    ax = axes["gmm/teacher-distilled"]
    (lmd,) = lines(ax, "lmd")
    np.testing.assert_allclose(lmd.get_xdata(), [10, 20])
    np.testing.assert_allclose(lmd.get_ydata(), [1.5, 0.6])  # w2 at NFE 1, mean of two seeds
    (band,) = [c for c in ax.collections if c.get_gid() == "lmd/band"]
    top = band.get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(1.5 + np.std([1.0, 2.0], ddof=1))
    (pd_line,) = lines(ax, "pd")  # pd was scored at NFE 4 only: its own smallest NFE
    np.testing.assert_allclose(pd_line.get_ydata(), [3.0, 1.0])
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert labels == {"lmd", "pd (NFE 4)"}
    np.testing.assert_allclose(lines(axes["gmm/other"], "mystery")[0].get_ydata(), [4.0, 2.0])
    assert ax.get_ylabel() == "w2" and ax.get_xlabel() == "training step"


def test_convergence_skips_naming_the_command_when_no_cell_has_one(results, tmp_path):
    copy = tmp_path / "res"
    shutil.copytree(results / "gmm", copy / "gmm")
    for f in (copy / "gmm" / "runs").glob("*/convergence.csv"):
        f.unlink()
    with pytest.raises(Skip) as e:
        convergence.make(copy, tmp_path / "out")
    assert e.value.reason == f"no cell has a convergence.csv under {copy}/<dataset>/runs"
    assert e.value.command.startswith("python -m benchmarks.run --methods ct,exact,fm,lmd,")
    assert e.value.command.endswith("--dataset gmm --budget smoke --seeds 0,1 --force")


def test_a_method_has_one_colour_in_every_figure(figs):
    want = to_rgba(method_color("lmd"))
    fid = by_gid(figs["fid_vs_nfe_gmm"])
    sp = by_gid(figs["speedup"])
    got = {
        "fid_vs_nfe": lines(fid["gmm/w2/teacher-distilled"], "lmd")[0].get_color(),
        "fid_vs_nfe band": fid["gmm/w2/teacher-distilled"].collections[0].get_facecolor()[0],
        "speedup": lines(sp["gmm/exact/nfe"], "lmd")[0].get_color(),
        "convergence": lines(by_gid(figs["convergence"])["gmm/teacher-distilled"], "lmd")[
            0
        ].get_color(),
        "training": lines(panel(figs["training"], "gmm: training loss"), "lmd/s0")[0].get_color(),
        "samples": by_gid(figs["samples_gmm"])["lmd/nfe1"].collections[-1].get_facecolor()[0],
        "flow_map_2d": by_gid(figs["flow_map_2d"])["lmd/nfe1"].collections[-1].get_facecolor()[0],
        "trajectories": lines(by_gid(figs["flow_map_2d"])["lmd/traj"], "lmd/learned/0")[
            0
        ].get_color(),
    }
    for where, c in got.items():
        np.testing.assert_allclose(to_rgba(c)[:3], want[:3], err_msg=where)
