"""FLOPs per training step (``benchmarks.training.flops.step_flops``) on a tiny MLP, on the CPU."""

from __future__ import annotations

import contextlib
import warnings

import pandas as pd
import torch

from benchmarks.config import RunConfig, load_config
from benchmarks.training import factory
from benchmarks.training.flops import step_flops
from benchmarks.training.loop import train_step


def tiny_cfg() -> RunConfig:
    """gmm smoke with a 2-layer, width-16 MLP."""
    return load_config("gmm", "smoke", {"net": {"hidden": 16, "depth": 2}}, [])


def tiny_parts(name: str) -> factory.Parts:
    """Fresh parts of ``name`` (no teacher) on the CPU, seeded."""
    torch.manual_seed(0)
    return factory.parts(tiny_cfg(), name, (2,), None, torch.device("cpu"))


def flops_of(name: str, batch: int) -> float:
    """FLOPs of one training step of ``name`` at ``batch`` (mean of 2 after one warm-up step)."""
    x1 = torch.randn(batch, 2, generator=torch.Generator().manual_seed(1))
    return step_flops(tiny_parts(name), x1, 0, tiny_cfg().train, n=2)


def test_the_jvp_is_counted() -> None:
    """meanflow's step adds one jvp of the net (3 forwards' products in torch 2.14) to fm's."""
    with warnings.catch_warnings():  # nor does the copy's lr schedule warn on a fresh model
        warnings.simplefilter("error", UserWarning)
        fm, meanflow = flops_of("fm", 64), flops_of("meanflow", 64)
    assert fm > 0 and meanflow > 1.4 * fm, (fm, meanflow)


def test_count_is_deterministic_and_leaves_the_parts_alone() -> None:
    """Two calls agree; the parts (mid-training: gradients set) and the random state are as before."""
    parts, x1, cfg = tiny_parts("meanflow"), torch.randn(32, 2), tiny_cfg().train
    train_step(parts, x1, 0, cfg, contextlib.nullcontext())
    weights = [p.clone() for p in parts.fm.parameters()]
    rng = torch.get_rng_state()
    first = step_flops(parts, x1, 0, cfg, n=3, every=5)
    assert step_flops(parts, x1, 0, cfg, n=3, every=5) == first > 0
    assert all(torch.equal(a, b) for a, b in zip(weights, parts.fm.parameters()))
    assert torch.equal(rng, torch.get_rng_state()), "the caller's random state is restored"
    assert parts.sched.last_epoch == 1, "the original schedule did not move"


def test_count_scales_linearly_with_batch() -> None:
    for name in ("fm", "meanflow"):
        small, large = flops_of(name, 32), flops_of(name, 128)
        assert abs(large / small - 4) < 0.2, (name, small, large)


def test_cells_write_train_flops_and_the_backfill_recounts_them(tmp_path) -> None:
    """Every row of a run carries its cell's ``train_flops``: 0 for the exact floor, fm's the
    least, a distillation method's teacher charged (lmd's exact-teacher solves cost a network's
    forward) and no's one-time trajectory pool counted. ``benchmarks.perf.backfill`` recounts a
    cell whose rows lack the column to the same number."""
    from benchmarks.perf.backfill import backfill
    from benchmarks.run import main

    out = tmp_path / "r"
    argv = ["--methods", "fm,lmd,no", "--dataset", "gmm", "--budget", "smoke", "--out", str(out)]
    main([*argv, "--quiet", "net.hidden=16", "net.depth=2"])
    rows = pd.read_csv(out / "gmm" / "metrics.csv")
    assert rows["train_flops"].notna().all()
    per = rows.groupby("run")["train_flops"].agg(["min", "max"])
    assert (per["min"] == per["max"]).all(), "one count per cell"
    f = per["min"]
    assert f["exact-s0"] == 0 and 0 < f["fm-s0"] < f["lmd-s0"] < f["no-s0"], f
    once = rows.groupby("run")["train_flops_once"].first()
    assert once["no-s0"] > 0.5 * f["no-s0"], "no's pool is one-time work"
    assert once["fm-s0"] < 0.01 * f["fm-s0"], "fm has none"
    cell = out / "gmm" / "runs" / "no-s0" / "metrics.csv"
    pd.read_csv(cell).drop(columns=["train_flops", "train_flops_once"]).to_csv(cell, index=False)
    assert backfill(out) == 1
    again = pd.read_csv(cell)
    assert (
        again["train_flops"].eq(f["no-s0"]).all()
        and again["train_flops_once"].eq(once["no-s0"]).all()
    )
