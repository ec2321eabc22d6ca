"""Figures from the kept samples (``samples.npz``): samples and flow_map_2d, no model anywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_paper_figures_fixture import OFFSETS, TARGET, X0, by_gid, draw, images, lines, unsaved
from test_paper_figures_fixture import write_results as build

from benchmarks.data.registry import gmm_oracle
from paper_figures import flow_map_2d, samples, style
from paper_figures.common import Skip
from unify import Linear


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def figs(results, tmp_path_factory) -> dict:
    """samples and flow_map_2d drawn from the fixture (not written: see ``unsaved``)."""
    return draw(results, tmp_path_factory.mktemp("out"), [samples, flow_map_2d])


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_samples_rows_are_the_exact_map_then_methods_and_columns_nfe(figs):
    fig = figs["samples"].figures["samples_gmm"]
    axes = by_gid(fig)
    rows = [
        "exact",
        "fm",
        "lmd",
        "meanflow",
        "mystery",
        "pd",
    ]  # ct kept no samples: a note, not a row
    assert set(axes) == {f"{m}/nfe{k}" for m in rows for k in (1, 2, 4, 8)}
    firsts = sorted(
        (ax for ax in fig.axes if ax.get_gid().endswith("/nfe1")),
        key=lambda ax: -ax.get_position().y0,
    )
    assert [ax.get_ylabel() for ax in firsts] == ["exact map", *rows[1:]]
    assert [axes[f"exact/nfe{k}"].axison for k in (1, 2, 4, 8)] == [True, False, False, False]


def test_samples_scatter_the_stored_points(figs):
    axes = by_gid(figs["samples"].figures["samples_gmm"])
    np.testing.assert_array_equal(axes["exact/nfe1"].collections[-1].get_offsets(), TARGET)
    for (m, k), off in OFFSETS.items():
        got = axes[f"{m}/nfe{k}"].collections[-1].get_offsets()
        want = TARGET.astype(np.float32) + np.float32(off)
        np.testing.assert_array_equal(got, want, err_msg=f"{m}/nfe{k}")
        ref = axes[f"{m}/nfe{k}"].collections[0].get_offsets()  # the exact map in grey beneath
        np.testing.assert_array_equal(ref, TARGET)


def test_samples_mark_na_and_not_run_cells(figs):
    axes = by_gid(figs["samples"].figures["samples_gmm"])
    assert texts(axes["pd/nfe2"]) == ["n/a"] and not axes["pd/nfe2"].collections  # evaluated at 2
    assert texts(axes["pd/nfe8"]) == ["not run"]  # its eval.nfe is 1, 2, 4
    assert texts(axes["lmd/nfe8"]) == ["not run"] and texts(axes["fm/nfe8"]) == []


def test_a_cell_without_samples_is_a_note_with_the_command(figs):
    notes = figs["samples"].notes
    want = (
        "gmm: no samples.npz for ct at seed 0, left out (rerun: python -m benchmarks.run "
        "--methods ct --dataset gmm --budget smoke --seeds 0 --force)"
    )
    assert want in notes
    assert want in figs["flow_map_2d"].notes


def test_image_samples_are_mosaics_of_the_kept_images_beside_the_exact_map(figs):
    axes = by_gid(figs["samples"].figures["samples_cifar-gmm"])
    assert set(axes) == {f"{m}/nfe{k}" for m in ("exact", "meanflow", "pd") for k in (1, 4)}
    for gid, seed in (
        ("exact/nfe1", 0),
        ("meanflow/nfe1", 1),
        ("meanflow/nfe4", 2),
        ("pd/nfe1", 3),
    ):
        (image,) = axes[gid].get_images()
        want = np.zeros((16, 16, 3), np.uint8)  # a 4x4 mosaic of 4x4 images, row by row
        for i, img in enumerate(images(seed)):
            r, c = divmod(i, 4)
            want[4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = img.transpose(1, 2, 0)
        np.testing.assert_array_equal(image.get_array(), want, err_msg=gid)
    assert texts(axes["pd/nfe4"]) == ["n/a"]
    assert axes["exact/nfe1"].get_ylabel() == "exact map"


def test_mosaic_falls_back_to_2x2():
    x = np.arange(5 * 1 * 2 * 2, dtype=np.uint8).reshape(5, 1, 2, 2)
    got = samples.mosaic(x, 2)
    np.testing.assert_array_equal(got[:2, 2:], x[1, 0])
    np.testing.assert_array_equal(got[2:, :2], x[2, 0])


def test_flow_map_2d_annotates_the_hand_computed_error(figs):
    axes = by_gid(figs["flow_map_2d"].figures["flow_map_2d"])
    for (m, k), want in {
        ("lmd", 1): "1.25",
        ("lmd", 2): "0.25",
        ("lmd", 4): "0.00",
        ("pd", 1): "0.50",
        ("fm", 1): "1.00",
    }.items():
        assert texts(axes[f"{m}/nfe{k}"]) == [f"err {want}"], (m, k)
    assert texts(axes["pd/nfe2"]) == ["n/a"]
    # meanflow kept another noise: its points are drawn, an error would be meaningless
    assert texts(axes["meanflow/nfe1"]) == [] and axes["meanflow/nfe1"].collections
    assert any("meanflow kept another x0" in n for n in figs["flow_map_2d"].notes)
    assert not any(g.startswith("exact/") for g in axes)


def test_flow_map_2d_trajectories_are_the_stored_paths(figs):
    axes = by_gid(figs["flow_map_2d"].figures["flow_map_2d"])
    ax = axes["lmd/traj"]
    x0, end = X0[:2].astype(np.float32), TARGET[:2].astype(np.float32)
    for i in range(2):
        (ex,) = lines(ax, f"exact/{i}")
        np.testing.assert_allclose(ex.get_xydata()[[0, -1]], [x0[i], end[i]], atol=1e-3)
        (le,) = lines(ax, f"lmd/learned/{i}")
        mid = 0.5 * x0[i] + 0.5 * end[i] + 0.5 * 0.25  # the fixture's lift at t = 0.5
        np.testing.assert_allclose(le.get_xydata()[1], mid, atol=1e-3)
    assert not lines(axes["meanflow/traj"], "exact/0")  # another noise: no exact paths


def test_flow_map_2d_density_is_the_oracle_at_t1(figs):
    ax = by_gid(figs["flow_map_2d"].figures["flow_map_2d"])["lmd/nfe1"]
    (im,) = ax.get_images()
    n = im.get_array().shape[0]
    c = (n // 2) * (2 * flow_map_2d.LIM / (n - 1)) - flow_map_2d.LIM  # a grid point near 0
    point, one = torch.tensor([[c, c]], dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    want = gmm_oracle().log_prob(point, one, Linear()).exp().item()
    assert im.get_array()[n // 2, n // 2] == pytest.approx(want, rel=1e-6)


def test_without_an_exact_cell_errors_are_left_out_with_the_command(results, tmp_path, monkeypatch):
    monkeypatch.setattr(style, "save", unsaved)
    copy = tmp_path / "res"
    shutil.copytree(results / "gmm", copy / "gmm")
    shutil.rmtree(copy / "gmm" / "runs" / "exact-s0")
    made = flow_map_2d.make(copy, tmp_path / "out")
    axes = by_gid(made.figures["flow_map_2d"])
    assert texts(axes["lmd/nfe1"]) == [] and not lines(axes["lmd/traj"], "exact/0")
    assert (
        "gmm: no exact cell at seed 0, errors and exact paths left out (run: "
        "python -m benchmarks.run --methods exact --dataset gmm --seeds 0)"
    ) in made.notes
    assert "exact/nfe1" not in by_gid(samples.make(copy, tmp_path / "out").figures["samples_gmm"])


def test_no_samples_at_all_is_a_skip_naming_the_rerun(results, tmp_path):
    copy = tmp_path / "res"
    shutil.copytree(results / "gmm", copy / "gmm")
    for f in (copy / "gmm" / "runs").glob("*/samples.npz"):
        f.unlink()
    for module in (samples, flow_map_2d):
        with pytest.raises(Skip) as e:
            module.make(copy, tmp_path / "out")
        assert e.value.reason == f"no samples.npz under {copy / 'gmm' / 'runs'}"
        assert e.value.command == (
            "python -m benchmarks.run --methods ct,exact,fm,lmd,meanflow,"
            "mystery,pd --dataset gmm --budget smoke --seeds 0,1 --force"
        )
