"""Convergence probes: each cell scores its evaluation model at a few points of training.

At the fractions ``eval.convergence`` of the steps (1/8, 1/4, 1/2 and the end by default) the
EMA model is scored on the first ``eval.convergence_samples`` evaluation noises at NFE 1, each NFE
up to 4 and the largest NFE the method can do (``benchmarks.evaluation.evaluate.probe``); the rows go to the cell's ``convergence.csv`` (one row per step,
NFE and metric, rewritten atomically). A probe reads the model and draws no training random
numbers, so a run that is stopped or killed and resumed writes the same rows as an
uninterrupted one: after a resume the probe of the checkpoint's step runs if its rows are missing.
The rows are read back by ``benchmarks.report.convergence``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from benchmarks.base.rows import CONVERGENCE, read_rows, write_csv
from benchmarks.evaluation.evaluate import probe
from benchmarks.evaluation.scorer import Scorer
from methods.base import Method
from unify.flowmap import FlowMap


def milestones(steps: int, fractions: tuple[float, ...]) -> list[int]:
    """Steps at which the model is probed: ceil(f * steps), sorted, without repeats."""
    return sorted({max(1, math.ceil(f * steps)) for f in fractions})


def prober(
    folder: Path, method: Method, fm: FlowMap, scorer: Scorer, steps: int, extra: dict
) -> Callable[[int], None]:
    """``on_step(done)`` for the training loop: probe at the milestones, once per step."""
    path, at = folder / CONVERGENCE, set(milestones(steps, scorer.cfg.convergence))
    n = min(scorer.cfg.convergence_samples, scorer.cfg.n_samples)

    def on_step(done: int) -> None:
        if done not in at:
            return
        old = read_rows(path) if path.exists() else pd.DataFrame(columns=["step"])
        if (old["step"] == done).any():
            return  # written before a stop or a kill
        was = fm.training
        fm.eval()
        rows = pd.DataFrame(probe(method, fm, scorer, n)).assign(step=done, **extra)
        fm.train(was)
        write_csv(
            pd.concat([old, rows], ignore_index=True).sort_values("step", kind="stable"), path
        )

    return on_step
