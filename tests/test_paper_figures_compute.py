"""Figure 7 and its table (``paper_figures.compute``): map error at equal training compute, on a
hand-made results folder whose FLOP counts and probes give round answers."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from paper_figures import compute

S = 90  # steps of every run; fm's levels: 10, 30, 90 steps = 1000, 3000, 9000 FLOPs
# run -> (FLOPs per step, one-time FLOPs, {seed: {nfe: {step: flowmap_err}}})
RUNS = {
    "fm": (100.0, 0.0, {0: {1: {10: 3.0, 30: 2.0, 90: 1.5}, 4: {10: 0.9, 30: 0.6, 90: 0.5}}}),
    "lmd": (
        300.0,
        0.0,
        {
            0: {1: {10: 1.0, 30: 0.5, 90: 0.25}, 2: {10: 0.8, 30: 0.45, 90: 0.3}},
            1: {1: {10: 1.2, 30: 0.7, 90: 0.35}, 2: {10: 1.0, 30: 0.65, 90: 0.3}},
        },
    ),
    "no": (100.0, 5000.0, {0: {1: {10: 0.9, 30: 0.6, 90: 0.3}}}),
    "meanflow": (50.0, 0.0, {0: {1: {10: 0.8, 30: 0.7, 90: 0.6}}}),
}


def write(folder: Path, runs: dict = RUNS) -> None:
    rows = []
    for m, (per, once, seeds) in runs.items():
        for seed, by_nfe in seeds.items():
            run, conv = f"{m}-s{seed}", []
            for nfe, curve in by_nfe.items():
                conv += [
                    dict(step=k, method=m, seed=seed, nfe=nfe, metric="flowmap_err", value=v)
                    for k, v in curve.items()
                ]
                name = "fm-euler" if m == "fm" else m
                rows.append(
                    dict(
                        method=name,
                        dataset="gmm",
                        seed=seed,
                        nfe=nfe,
                        metric="flowmap_err",
                        value=curve[S],
                        run=run,
                        train_steps=S,
                        train_flops=once + per * S,
                        train_flops_once=once,
                    )
                )
            (folder / "runs" / run).mkdir(parents=True)
            pd.DataFrame(conv).to_csv(folder / "runs" / run / "convergence.csv", index=False)
    rows.append(
        dict(
            method="exact",
            dataset="gmm",
            seed=0,
            nfe=1,
            metric="flowmap_err",
            value=0.0,
            run="exact-s0",
            train_steps=0,
            train_flops=0.0,
            train_flops_once=0.0,
        )
    )
    (folder / "runs" / "exact-s0").mkdir()
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, str]:
    results = tmp_path_factory.mktemp("results")
    write(results / "gmm")
    out = results.parent / "out"
    compute.make(results, out)
    return results, (out / "compute.md").read_text()


def row(md: str, view: str, method: str) -> list[str]:
    section = md.split(f": {view}\n", 1)[1].split("\n## ", 1)[0] if view else md
    line = next(x for x in section.splitlines() if x.startswith(f"| {method} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_error_at_fms_compute_levels(made) -> None:
    """lmd costs 3x fm's step: fm's 1000 FLOPs come before its first probe, its 3000 and 9000
    are its steps 10 and 30 (mean ± std of its two seeds); no's 5000 one-time FLOPs come first;
    meanflow, at half fm's step, ended its run at 4500 FLOPs."""
    _, md = made
    assert "fm x 10 steps (1e+03 FLOPs) | fm x 30 steps (3e+03 FLOPs) | fm x 90 steps (9e+03" in md
    sd = f"{math.sqrt(0.02):.2g}"
    assert row(md, "NFE 1", "lmd") == ["—", f"1.1 ± {sd}", f"0.6 ± {sd}"]
    # no at 9000 FLOPs: between its probes at 8000 (0.6) and 14000 (0.3), in log compute
    w = math.log(9000 / 8000) / math.log(14000 / 8000)
    assert row(md, "NFE 1", "no") == ["—", "—", f"{0.6 - 0.3 * w:.3g} ± 0"]
    # meanflow at 1000 and 3000 FLOPs: its steps 20 and 60, a third of the way (in log) on
    w = math.log(2) / math.log(3)
    assert row(md, "NFE 1", "meanflow") == [
        f"{0.8 - 0.1 * w:.3g} ± 0",
        f"{0.7 - 0.1 * w:.3g} ± 0",
        "> run",
    ]
    assert "| fm |" not in md.split("NFE <= 4")[0], "the velocity has no one-step row"


def test_the_few_step_view_takes_the_best_nfe_by_its_mean(made) -> None:
    """lmd at step 10: NFE 2's mean 0.9 beats NFE 1's 1.1; at step 30 NFE 2's 0.55 beats 0.6."""
    _, md = made
    sd = f"{math.sqrt(0.02):.2g}"
    assert row(md, "best NFE <= 4", "lmd")[1:] == [f"0.9 ± {sd}", f"0.55 ± {sd}"]
    assert row(md, "best NFE <= 4", "fm") == ["0.9 ± 0", "0.6 ± 0", "0.5 ± 0"]


def test_the_longest_tier_is_read_and_the_figure_has_a_line_per_method(made, tmp_path) -> None:
    results, _ = made
    assert compute.tiers(results) == {"gmm": results / "gmm"}
    write(tmp_path / "long" / "gmm", {"lmd": RUNS["lmd"], "fm": RUNS["fm"]})
    write(tmp_path / "gmm")
    assert compute.tiers(tmp_path) == {"gmm": tmp_path / "long" / "gmm"}
    fig = compute.make(results, tmp_path / "out").figures[compute.NAME]
    drawn = {ln.get_gid() for ax in fig.axes for ln in ax.get_lines()}
    assert drawn == {"fm", "lmd", "no", "meanflow"}


def test_skips_without_flop_counts(tmp_path) -> None:
    from paper_figures.common import Skip

    write(tmp_path / "gmm")
    rows = pd.read_csv(tmp_path / "gmm" / "metrics.csv").drop(columns="train_flops")
    rows.to_csv(tmp_path / "gmm" / "metrics.csv", index=False)
    with pytest.raises(Skip, match="train_flops"):
        compute.make(tmp_path, tmp_path / "out")


def test_three_verdicts_rank_each_method_at_steps_compute_and_convergence(tmp_path) -> None:
    """Equal steps and converged: the final NFE-1 rows of the small and long tiers; equal
    compute: fm's whole small run (9000 FLOPs) read off the long tier's probes, as compute.md."""
    from paper_figures import verdicts

    write(tmp_path / "gmm")
    long = {**RUNS, "lmd": (300.0, 0.0, {0: {1: {10: 0.5, 30: 0.2, 90: 0.1}}})}
    write(tmp_path / "long" / "gmm", long)
    verdicts.make(tmp_path, tmp_path / "out")
    md = (tmp_path / "out" / "verdicts.md").read_text()
    assert "## gmm: flowmap_err at NFE 1 (small tier: 90 steps)" in md
    w = math.log(9000 / 8000) / math.log(14000 / 8000)
    assert row(md, "", "lmd") == [
        f"0.3 ± {math.sqrt(0.005):.2g}",
        "1",
        "0.2 ± 0",
        "1",
        "0.1 ± 0",
        "1",
    ]
    assert row(md, "", "no") == ["0.3 ± 0", "1", f"{0.6 - 0.3 * w:.3g} ± 0", "2", "0.3 ± 0", "2"]
    assert row(md, "", "meanflow") == ["0.6 ± 0", "3", "> run", "", "0.6 ± 0", "3"]


def test_the_long_tiers_daggers_come_with_their_curves(tmp_path) -> None:
    """A † in the converged column is explained by its curve: lmd's long run fell from 0.2 at
    its half to 0.1 at its end (-50 %)."""
    from paper_figures import verdicts

    write(tmp_path / "gmm")
    long = tmp_path / "long" / "gmm"
    write(long, {**RUNS, "lmd": (300.0, 0.0, {0: {1: {10: 0.5, 30: 0.2, 90: 0.1}}})})
    conv = [pd.read_csv(f) for f in sorted(long.glob("runs/*/convergence.csv"))]
    pd.concat(conv).to_csv(long / "convergence.csv", index=False)
    verdicts.make(tmp_path, tmp_path / "out")
    md = (tmp_path / "out" / "verdicts.md").read_text()
    assert row(md, "", "lmd")[4] == "0.1 ± 0 †"
    curves = md.split("The † of the long tier", 1)[1]
    line = next(x for x in curves.splitlines() if x.startswith("| lmd |"))
    assert line.endswith("| 0.1 | -50 % | 0 % |"), line
