"""The CLI and its files: every figure from results alone, skips naming commands, identical bytes."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest
import torch
from test_paper_figures_fixture import write_results as build

import benchmarks.training.factory
from paper_figures import FIGURES
from paper_figures import make as cli
from paper_figures.common import Skip

STEMS = (
    "fid_vs_nfe_gmm fid_vs_nfe_cifar-gmm samples_gmm samples_cifar-gmm flow_map_2d speedup "
    "convergence compute training"
).split()
WRITTEN = {
    *(f"{s}.{e}" for s in STEMS for e in ("pdf", "png")),
    "table_main.tex",
    "compute.md",
    "verdicts.md",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("results"))


def refuse(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("a figure loaded a checkpoint or built a model")


@pytest.mark.slow
def test_every_figure_is_drawn_from_the_results_alone(results, tmp_path, monkeypatch, capsys):
    (results / "gmm" / "runs" / "lmd-s0" / "ckpt.pt").write_bytes(b"never read")
    for name in ("model", "load_problem", "load_weights", "parts"):
        monkeypatch.setattr(benchmarks.training.factory, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert cli.main(["--results", str(results), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert not [ln for ln in out if ln.startswith(("skip", "error"))]
    assert {p.name for p in tmp_path.iterdir()} == WRITTEN
    assert {ln.split()[1] for ln in out if ln.startswith("wrote")} == {
        str(tmp_path / n) for n in WRITTEN
    }
    assert all((tmp_path / n).stat().st_size > 500 for n in WRITTEN)
    assert any(ln.startswith("note samples: gmm: no samples.npz for ct") for ln in out)


@pytest.mark.slow
def test_regenerating_a_figure_writes_identical_bytes(results, tmp_path, monkeypatch):
    """Another SOURCE_DATE_EPOCH (matplotlib's clock for a PDF's date) must not change a byte."""
    only = ["--results", str(results), "--out", str(tmp_path), "--only", "flow_map_2d,convergence"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert cli.main(only) == 0
    first = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert cli.main(only) == 0
    second = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert len(first) == 4 and first == second
    for name, data in first.items():
        if name.endswith(".pdf"):
            assert b"/CreationDate" not in data and b"/ModDate" not in data, name
        else:
            assert "tIME" not in png_chunks(data), name
            assert not [k for k in png_text(data) if "date" in k.lower() or "time" in k.lower()]


def png_chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG file, in order."""
    names, i = [], 8
    while i < len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        names.append(data[i + 4 : i + 8].decode("latin-1"))
        i += 12 + n
    return names


def png_text(data: bytes) -> list[str]:
    """The keywords of a PNG's text chunks."""
    from io import BytesIO

    from PIL import Image

    return list(Image.open(BytesIO(data)).text)


def test_missing_inputs_skip_with_the_command(tmp_path, capsys):
    empty = tmp_path / "empty"
    for name in FIGURES:
        with pytest.raises(Skip) as e:
            __import__(f"paper_figures.{name}", fromlist=["make"]).make(empty, tmp_path / "out")
        assert "python -m benchmarks.run --methods" in e.value.command, name
    assert cli.main(["--results", str(empty), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(FIGURES) and all(ln.startswith("skip ") for ln in out)
    assert "skip samples: no metrics" not in out
    assert not (tmp_path / "out").exists()  # no empty figures


def test_cli_bad_name_and_selection(results, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--only", "nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'nope'" in err and all(n in err for n in FIGURES)
    argv = ["--results", str(results), "--out", str(tmp_path), "--only", "table_main,convergence"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"wrote {tmp_path / f}" for f in ("convergence.pdf", "convergence.png", "table_main.tex")
    ]
