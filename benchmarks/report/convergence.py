"""Reading the convergence rows (``convergence.csv``, written by the probes of
``benchmarks.evaluation.convergence``): the NFE a method is judged by, and whether it was still
improving when its budget ran out (the dagger of ``table.md``)."""

from __future__ import annotations

import math

import pandas as pd

from methods import METHODS

IMPROVING = 0.05  # "still improving": the last half of training lowered the metric by > 5 %


def probe_nfe(conv: pd.DataFrame) -> pd.DataFrame:
    """The convergence rows a method is judged by: its smallest NFE (1, its one-step quality,
    unless it cannot sample there), except the fm teacher, a velocity, judged at its largest."""
    teacher = conv["method"].map(lambda m: m in METHODS and METHODS[m].family == "teacher")
    nfe = conv.groupby("method")["nfe"]
    return conv[conv["nfe"] == nfe.transform("max").where(teacher, nfe.transform("min"))]


def improving(conv: pd.DataFrame, metric: str) -> set[str]:
    """Methods whose ``metric`` at their ``probe_nfe`` (mean over seeds) fell by more than
    ``IMPROVING`` between half of training and its end: still improving when the budget ran out."""
    sub = probe_nfe(conv[conv["metric"] == metric])
    out = set()
    for method, g in sub.groupby("method"):
        last = g["step"].max()
        half = g.loc[g["step"] <= last / 2, "step"].max()
        if math.isnan(half):
            continue
        end, mid = g[g["step"] == last]["value"].mean(), g[g["step"] == half]["value"].mean()
        if end < (1 - IMPROVING) * mid:
            out.add(method)
    return out
